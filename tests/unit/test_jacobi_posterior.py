"""DDSM's posterior parameterisation: residual logits, mixture score, exact bounds on analytic laws."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from ddsm.processes import JacobiProcess, build_process
from ddsm.special.stick_posterior import category_loglik, mixture_score
from ddsm.special.transition import stats_at_one


def exact_stats(p: JacobiProcess, v: torch.Tensor, tau: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-stick statistics ``(B, L, K-1)`` from the exact (untabulated) transition law."""
    B, L, K1 = v.shape
    out = {k: torch.empty(B * L, K1, dtype=torch.float64) for k in
           ("logp_one", "logp_zero", "logp_stat", "score_one", "score_zero", "score_stat")}
    vf = v.reshape(B * L, K1)
    for i, ti in enumerate(p._stick_times(tau, L)):
        a, b = float(p.a[i]), float(p.b[i])
        y = vf[:, i]
        lp1, m1 = stats_at_one(y, ti, a, b)
        lp0, m0 = stats_at_one(1.0 - y, ti, b, a)
        out["logp_one"][:, i], out["logp_zero"][:, i] = lp1, lp0
        out["logp_stat"][:, i] = torch.distributions.Beta(a, b).log_prob(y)
        out["score_one"][:, i] = (a - 1.0 + m1) / y - (b - 1.0) / (1.0 - y)
        out["score_zero"][:, i] = (a - 1.0) / y - (b - 1.0 + m0) / (1.0 - y)
        out["score_stat"][:, i] = (a - 1.0) / y - (b - 1.0) / (1.0 - y)
    return {k: x.reshape(B, L, K1) for k, x in out.items()}


def toy_law(K: int, L: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """An enumerable, strongly dependent law: all K^L sequences ``(N, L)`` and their probabilities."""
    seqs = torch.tensor(list(itertools.product(range(K), repeat=L)))
    logits = torch.randn(len(seqs), generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2.0
    return seqs, torch.softmax(logits, 0)


class ExactPosterior:
    """Posterior logits of the toy law: p(x0_l = k | v) = sum over sequences with x_l = k of
    p(x) prod_l' q(v_l' | x_l'), from the exact category likelihoods."""

    takes_state = True

    def __init__(self, p: JacobiProcess, seqs: torch.Tensor, probs: torch.Tensor) -> None:
        self.p, self.seqs, self.log_prior = p, seqs, probs.log()

    def log_joint(self, v: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """log p(x) + log q(v | x) for every sequence x: ``(B, N)``."""
        ll = category_loglik(exact_stats(self.p, v, tau))  # (B, L, K)
        per_seq = ll[:, torch.arange(self.seqs.shape[1])[None, :], self.seqs].sum(-1)  # (B, N)
        return self.log_prior[None, :] + per_seq

    def __call__(self, v, t, cond=None):
        joint = self.log_joint(v, self.p.native_time(t))
        post = torch.softmax(joint, -1)  # (B, N)
        onehot = torch.nn.functional.one_hot(self.seqs, self.p.K).double()  # (N, L, K)
        marg = torch.einsum("bn,nlk->blk", post, onehot)
        return marg.clamp_min(1e-300).log()


@pytest.mark.parametrize("K", [3, 5])
def test_mixture_score_is_the_gradient_of_the_log_mixture_density(K):
    p = build_process("jacobi", K)
    seqs, probs = toy_law(K, 2, seed=K)
    model = ExactPosterior(p, seqs, probs)
    g = torch.Generator().manual_seed(1)
    for tau_val in (0.05, 0.4, 2.0):
        tau = torch.full((4,), tau_val, dtype=torch.float64)
        v = (torch.rand(4, 2, K - 1, generator=g, dtype=torch.float64) * 0.96 + 0.02).requires_grad_(True)
        log_p = torch.logsumexp(model.log_joint(v, tau), -1).sum()
        (auto,) = torch.autograd.grad(log_p, v)
        logits = model(v.detach(), p.public_time(tau))
        mix = mixture_score(torch.softmax(logits, -1), exact_stats(p, v.detach(), tau))
        torch.testing.assert_close(mix, auto, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("K", [4, 7])
def test_tabulated_statistics_match_the_exact_law(K):
    p = build_process("jacobi", K)
    g = torch.Generator().manual_seed(2)
    x0 = torch.randint(0, K, (6, 5), generator=g)
    t = torch.tensor([0.03, 0.1, 0.2, 0.4, 0.7, 1.0])
    v = p.sample_noisy(x0, t, generator=g).xt
    tau = p.native_time(t)
    tab, ex = p.stick_stats(v, tau), exact_stats(p, v, tau)
    for key in ex:
        torch.testing.assert_close(tab[key], ex[key], rtol=1e-5, atol=1e-5 * float(ex[key].abs().max()))


def test_log_densities_alone_then_scores_equal_the_full_statistics():
    """Training asks for the log-densities only; the sampler's later call on the same sticks adds
    the scores to the kept result, equal to computing everything at once."""
    p = build_process("jacobi", 5)
    g = torch.Generator().manual_seed(4)
    t = torch.tensor([0.05, 0.3, 0.9])
    v = p.sample_noisy(torch.randint(0, 5, (3, 7), generator=g), t, generator=g).xt
    tau = p.native_time(t)
    part = p.stick_stats(v, tau, scores=False)
    assert set(part) == {"logp_one", "logp_zero", "logp_stat"}
    full = p.stick_stats(v, tau)
    p._memo = None  # from scratch
    fresh = p.stick_stats(v.clone(), tau)
    assert set(full) == set(fresh) and len(full) == 6
    for key in fresh:
        torch.testing.assert_close(full[key], fresh[key], rtol=0, atol=0)


def test_zero_correction_is_exactly_log2_k_bits_on_uniform_data():
    K = 4
    p = build_process("jacobi", K)
    zero = lambda feats, t, cond=None: torch.zeros(*feats.shape[:2], K)  # noqa: E731
    x0 = torch.randint(0, K, (32, 4), generator=torch.Generator().manual_seed(0))
    bits = p.bits_per_token(zero, x0, generator=torch.Generator().manual_seed(1), steps=200, divergence="exact")
    # measured: 1.9929 / 1.9983 / 1.9996 at 100 / 200 / 400 steps (second order in the step)
    assert abs(bits.mean().item() - 2.0) < 4e-3, bits.mean()
    # and the zero correction really is the local posterior, the exact one for uniform data
    v = p.prior((2, 3), generator=torch.Generator().manual_seed(2))
    t = torch.full((2,), 0.4)
    logits = p.model_output(zero, v, t)
    torch.testing.assert_close(torch.softmax(logits, -1),
                               torch.softmax(p.conditional_logpdf_all(v, p.native_time(t)), -1), rtol=1e-5, atol=1e-6)


def test_exact_posterior_on_an_enumerable_law_gives_its_entropy():
    K, L = 3, 2
    p = build_process("jacobi", K)
    seqs, probs = toy_law(K, L, seed=3)
    H = float(-(probs * probs.log2()).sum()) / L
    idx = torch.multinomial(probs, 24, replacement=True, generator=torch.Generator().manual_seed(4))
    x0 = seqs[idx]
    bits = p.bits_per_token(ExactPosterior(p, seqs, probs), x0, generator=torch.Generator().manual_seed(5),
                            steps=200, divergence="exact")
    # the bound is -log2 P(x0) + a decoder gap (tiny at tau0 = t_min); averaged over draws of x0 it
    # estimates the entropy: compare with the exact cross-entropy of the same draws
    nll = float(-probs[idx].log2().mean()) / L
    assert abs(bits.mean().item() - nll) < 0.02, (bits.mean().item(), nll, H)


def test_residual_logits_are_centred_and_carry_the_evidence():
    K = 5
    p = build_process("jacobi", K)
    ll = torch.randn(2, 3, K, dtype=torch.float64) * 50
    c = torch.randn(2, 3, K) + 400.0  # a drifting constant does not move the logits
    logits = p.posterior_logits(ll, c)
    ref = ll + c.double() - c.double().mean(-1, keepdim=True)
    torch.testing.assert_close(torch.log_softmax(logits, -1), torch.log_softmax(ref, -1))
    assert float(logits.amax(-1).abs().max()) < 20


def test_focus_window_gets_the_promised_share_of_training_times():
    p = build_process("jacobi", 4, focus=0.5)
    t = p.sample_time(20000, generator=torch.Generator().manual_seed(0))
    tau = p.native_time(t)
    inside = ((tau >= p.focus_tau_min) & (tau <= p.focus_tau_max)).double().mean().item()
    grid_tau = p.native_time(p.train_times)
    base = ((grid_tau >= p.focus_tau_min) & (grid_tau <= p.focus_tau_max)).double().mean().item()
    assert abs(inside - (0.5 + 0.5 * base)) < 0.02
    assert t.dtype == torch.float64 and bool(torch.isin(t, p.train_times).all())


def test_entropy_focus_follows_the_rise_of_the_local_posterior_entropy():
    p = build_process("jacobi", 4, focus=1.0, focus_law="entropy")
    w = p.entropy_focus
    tau = p.native_time(p.train_times)
    assert w.dtype == torch.float64 and bool((w >= 0).all()) and abs(w.sum().item() - 1) < 1e-12
    # K = 4: the local evidence decides a token below tau ~ 0.2 and says nothing above tau ~ 4
    # (iid-uniform tokens), so almost no focused mass lies outside that range
    assert w[tau < 0.15].sum() < 0.01 and w[tau > 4.5].sum() < 0.01
    assert w[(tau > 0.5) & (tau < 1.5)].sum() > 0.4
    # the draws follow those probabilities, and the private estimate leaves the caller's stream alone
    g = torch.Generator().manual_seed(0)
    rows = p.focused_rows(torch.zeros(40000, dtype=torch.long), generator=g)
    freq = torch.bincount(rows, minlength=len(w)).double() / len(rows)
    assert (freq - w).abs().sum() < 0.06
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    fresh = build_process("jacobi", 4, focus=1.0, focus_law="entropy")
    torch.testing.assert_close(fresh.sample_time(64, generator=g1), p.sample_time(64, generator=g2))
    with pytest.raises(ValueError, match="focus_law"):
        build_process("jacobi", 4, focus_law="bands")


def test_grid_focus_places_sampling_steps_where_the_entropy_law_has_its_mass():
    plain = build_process("jacobi", 4)
    torch.testing.assert_close(plain.time_grid(20), torch.linspace(1.0, plain._t_end, 21))  # w = 0: unchanged
    tau_lo, tau_hi = 0.377, 2.10  # K = 4: 5 % and 95 % quantiles of the entropy law (tau)
    counts = []
    for w in (0.0, 0.5, 0.8):
        grid = build_process("jacobi", 4, grid_focus=w).time_grid(40).double()
        assert grid[0] == 1.0 and abs(grid[-1].item() - plain._t_end) < 1e-7 and bool((grid.diff() < 0).all())
        tau = plain.native_time(0.5 * (grid[1:] + grid[:-1]))  # step midpoints
        inside = ((tau > tau_lo) & (tau < tau_hi)).double().mean().item()
        # the mixture puts w x 0.9 of the steps in that band, plus the uniform part's share of it
        share = (math.sqrt(tau_hi / 10) - math.sqrt(tau_lo / 10)) / (1 - plain._t_end)
        assert abs(inside - (w * 0.9 + (1 - w) * share)) < 0.06
        counts.append(inside)
    assert counts[0] < counts[1] < counts[2]
    with pytest.raises(ValueError, match="grid_focus"):
        build_process("jacobi", 4, grid_focus=1.0)


def test_vectorised_draws_follow_the_exact_transition_law():
    """One stick (K = 2) at vertex 1: draws must match the exact marginal CDF (KS test)."""
    from scipy import stats as st

    p = build_process("jacobi", 2)
    n = 4000
    x0 = torch.zeros(n, 1, dtype=torch.long)  # category 0: stick 0 at vertex 1
    for t_val in (0.05, 0.3):
        t = torch.full((n,), t_val)
        v = p.sample_noisy(x0, t, generator=torch.Generator().manual_seed(7)).xt.reshape(-1)
        tau = float(p.native_time(t[:1])) * float(p.speed[0])
        # exact CDF by the Beta mixture: sum_m q_m Beta(1 + m, 1) = sum_m q_m y^(1+m)
        from ddsm.special.lineage import lineage_weights

        start, w = lineage_weights(tau, 2.0)
        m = start[0] + torch.arange(w.shape[1], dtype=torch.float64)
        weights = torch.from_numpy(w[0])

        def cdf(y):
            y = torch.as_tensor(y, dtype=torch.float64)
            return (weights[None, :] * y[:, None] ** (1.0 + m[None, :])).sum(-1).numpy()

        assert st.kstest(v.numpy(), cdf).pvalue > 1e-3


def test_saved_options_without_output_load_the_score_network():
    opts = {"K": 4, "T": 10.0, "t_min": 0.01, "t_train_min": 0.004, "speed_balanced": True, "eps": 1e-05}
    p = JacobiProcess(**JacobiProcess.upgrade_options(opts))
    assert p.output == "score" and p.out_channels == 3 and type(p).__name__ == "JacobiScoreProcess"
    assert type(p)(**p.config()).config() == p.config()
    q = JacobiProcess(4)
    assert q.output == "posterior" and q.out_channels == 4 and q.in_channels == 16  # 3 features + estimate
    with pytest.raises(ValueError):
        JacobiProcess(4, output="logits")
    assert math.isfinite(q.focus)


def test_last_step_draws_tokens_from_the_posterior():
    """The final reverse step ends on the vertex of a token drawn from the output posterior
    (one sub-step: the output is the posterior of the last sub-step)."""
    K = 4
    p = build_process("jacobi", K, substeps=1)
    g = torch.Generator().manual_seed(3)
    v = p.prior((2000, 1), generator=g)
    grid = p.time_grid(10)
    t, s = grid[-2].expand(2000), grid[-1].expand(2000)
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    out = probs.log().expand(2000, 1, K)
    end = p.step(out, v, t, s, generator=g)
    assert p.is_valid(end)
    freq = torch.bincount(p.decode(end).reshape(-1), minlength=K).double() / 2000
    assert float((freq - probs).abs().max()) < 0.04, freq
    mid = p.step(out, v, grid[2].expand(2000), grid[3].expand(2000), generator=g)  # not the last: SDE only
    assert not bool(((mid < 2 * p.eps) | (mid > 1 - 2 * p.eps)).all())


def test_bf16_autocast_wrapper_keeps_a_float32_head_close_to_fp32():
    from ddsm.api import build_network
    from ddsm.precision import Autocast, resolve_precision

    p = build_process("jacobi", 4)
    torch.manual_seed(0)
    net = build_network(p, "conv", 2, {"hidden": 16, "n_blocks": 2}).eval()
    x = torch.randn(3, 20, p.in_channels)
    t, c = torch.rand(3), torch.tensor([0, 1, 2])
    with torch.no_grad():
        ref, low = net(x, t, c), Autocast(net, torch.device("cpu"))(x, t, c)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, ref, rtol=0.05, atol=0.05)
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    with pytest.raises(ValueError):
        resolve_precision("fp8", torch.device("cpu"))


def test_substeps_hold_the_network_correction_fixed_and_refresh_the_local_evidence():
    """A step of n sub-steps is n one-sub-step steps whose logits after the first are the exact local
    evidence at the moved sticks plus the correction (output - evidence) at the step's start."""
    K, B, L = 4, 3, 5
    two, one = build_process("jacobi", K, substeps=2), build_process("jacobi", K, substeps=1)
    g = torch.Generator().manual_seed(0)
    grid = two.time_grid(6)
    t, s = grid[2].expand(B), grid[3].expand(B)
    v = two.prior((B, L), generator=g)
    out = torch.randn(B, L, K, generator=g, dtype=torch.float64)
    got = two.step(out, v, t, s, generator=torch.Generator().manual_seed(5))
    mid = two._substep_times(t, s)[1]
    assert torch.allclose(mid, (t.double() + s.double()) / 2)
    gen = torch.Generator().manual_seed(5)
    correction = out - one.local_loglik(v, one.native_time(t))
    v1 = one.step(out, v, t, mid, generator=gen)
    want = one.step(one.local_loglik(v1, one.native_time(mid)) + correction, v1, mid, s, generator=gen)
    assert torch.allclose(got, want, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="substeps"):
        build_process("jacobi", K, substeps=0)


def test_options_saved_before_focus_law_keep_the_window_law():
    from ddsm.processes.jacobi import JacobiProcess

    old = {"K": 4, "output": "posterior", "focus_tau_min": 0.05, "focus_tau_max": 3.0}
    p = JacobiProcess(**JacobiProcess.upgrade_options(old))
    assert p.focus_law == "window" and p.focus == 0.5
    score = JacobiProcess(**JacobiProcess.upgrade_options({"K": 4}))
    assert score.output == "score"
    fresh = JacobiProcess(**JacobiProcess.upgrade_options(build_process("jacobi", 4).config()))
    assert fresh.focus_law == "entropy" and fresh.focus == 1.0


def test_sub_step_default_and_what_older_checkpoints_and_sudoku_keep():
    from ddsm.sudoku.process import sudoku_process

    assert JacobiProcess(4).substeps == 8 and build_process("jacobi", 4).config()["substeps"] == 8
    # a checkpoint keeps what it records (round 2l's recorded 16); one without the option keeps 8
    saved = {k: v for k, v in JacobiProcess(4).config().items() if k != "substeps"}
    assert JacobiProcess(**JacobiProcess.upgrade_options(saved)).substeps == 8
    for n in (3, 16):
        assert JacobiProcess(**JacobiProcess.upgrade_options(JacobiProcess(4, substeps=n).config())).substeps == n
    assert sudoku_process().substeps == 8


def test_extrapolate_option_gives_each_sampling_run_a_fresh_multistep_wrapper():
    """``extrapolate`` is 1 by default and recorded, refused when negative or not finite, kept at 0
    by checkpoints saved before it existed (and by Sudoku's settings), and ``sampling_model`` wraps the network in a new
    :class:`ExtrapolatedCorrection` per run only when it is > 0 (posterior output)."""
    from ddsm.sampling import ExtrapolatedCorrection

    def net(x, t, cond=None):
        return x

    assert JacobiProcess(4, extrapolate=0.0, self_condition=False).sampling_model(net) is net
    assert JacobiProcess(4).extrapolate == 1.0 and build_process("jacobi", 4).config()["extrapolate"] == 1.0
    p = JacobiProcess(4, extrapolate=0.5)
    assert p.config()["extrapolate"] == 0.5
    first, second = p.sampling_model(net), p.sampling_model(net)
    assert isinstance(first, ExtrapolatedCorrection) and first.alpha == 0.5 and first is not second
    assert build_process("jacobi", 4, output="score").sampling_model(net) is net
    saved = {k: v for k, v in JacobiProcess(4, extrapolate=0.5).config().items() if k != "extrapolate"}
    assert JacobiProcess(**JacobiProcess.upgrade_options(saved)).extrapolate == 0.0
    from ddsm.sudoku.process import sudoku_process

    assert sudoku_process().extrapolate == 0.0
    for bad in (-0.1, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="extrapolate"):
            JacobiProcess(4, extrapolate=bad)


def test_fine_log_feature_and_checkpoints_saved_before_it():
    p = JacobiProcess(4, self_condition=False)
    x0 = torch.randint(0, 4, (2, 5), generator=torch.Generator().manual_seed(0))
    t = torch.full((2,), 0.3, dtype=torch.float64)
    v = p.sample_noisy(x0, t, generator=torch.Generator().manual_seed(1)).xt
    loglik = p.local_loglik(v, p.native_time(t))
    feats = p.model_input(v, t)
    assert feats.shape == (2, 5, 3 * 4) == (2, 5, p.in_channels)
    logpost = torch.log_softmax(loglik, -1)
    # the third block is the log posterior clamped at -4 nats, halved; the first two are unchanged
    assert torch.allclose(feats[..., 8:], (logpost.clamp_min(-4.0) / 2).float())
    plain = JacobiProcess(4, fine_log=False, self_condition=False)
    assert plain.in_channels == 8 and torch.equal(plain.model_input(v, t), feats[..., :8])
    # a posterior checkpoint saved before the option existed keeps its two features per category
    saved = {k: val for k, val in p.config().items() if k != "fine_log"}
    assert JacobiProcess(**JacobiProcess.upgrade_options(saved)).in_channels == 8
    assert JacobiProcess(**JacobiProcess.upgrade_options(p.config())).in_channels == 12


def test_prepared_sub_step_tables_give_identical_steps_in_one_table():
    """``prepare_steps`` tabulates every sub-step time of a dilated run in one go (one cached table
    instead of one per time); the steps it serves are bit-identical to those tabulated time by time."""
    from ddsm.sampling.loop import dilated_pairs

    def walk(prepare: bool) -> tuple[torch.Tensor, int]:
        p = build_process("jacobi", 4, substeps=3)
        pairs = list(dilated_pairs(p.time_grid(3), 2.0))
        if prepare:
            p.prepare_steps(pairs)
        v, g = p.prior((2, 5), generator=torch.Generator().manual_seed(1)), torch.Generator().manual_seed(2)
        for t, s, c in pairs:
            tb = t.expand(2)
            v = p.step(p.local_loglik(v, p.native_time(tb)), v, tb, s.expand(2), generator=g, dilation=c)
        return v, len(p._tables)

    (prepared, n_prepared), (plain, n_plain) = walk(True), walk(False)
    assert torch.equal(prepared, plain)
    assert n_prepared == 1 and n_plain == 3 * 2 * 3


@pytest.mark.parametrize("substeps", [1, 8])
def test_sampler_with_the_exact_posterior_of_iid_letters_draws_their_law(substeps):
    """Data = iid letters with law pi: the exact posterior is the local evidence plus the constant
    correction log pi, so the reverse SDE with that correction must end at pi (analytic ground
    truth for the sampler, sub-steps included; a wrong drift or noise term moves the frequencies)."""
    from ddsm.sampling.loop import sample

    pi = torch.tensor([0.55, 0.25, 0.15, 0.05])
    proc = build_process("jacobi", 4, substeps=substeps)
    model = lambda feats, t, cond=None: pi.log().expand(feats.shape[0], feats.shape[1], 4).clone()  # noqa: E731
    tokens = sample(proc, model, (256, 16), steps=20, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(tokens.reshape(-1), minlength=4).double() / tokens.numel()
    assert (freq - pi.double()).abs().sum() / 2 < 0.04, freq  # 0.014-0.019 here; a dropped Ito term: 0.67


def test_self_conditioning_reads_a_first_pass_in_training_and_the_bound_the_previous_call_in_sampling():
    """With ``self_condition`` the network reads K more channels: a posterior estimate. Training
    feeds its own no-gradient first pass to about half of the batch and zeros to the rest; the ODE
    bound's drift makes the same two passes (a function of (v, t)); a sampling run makes two passes
    at its first call and from then on feeds the posterior of the previous call, one pass each."""
    from ddsm.sampling import sample

    K, L = 4, 6
    p = build_process("jacobi", K, self_condition=True, extrapolate=0.0)
    assert p.in_channels == 4 * K and p.config()["self_condition"] is True
    assert build_process("jacobi", K).self_condition is True  # the default since round 2u
    score = build_process("jacobi", K, output="score")  # the paper's score network reads no estimate
    assert score.self_condition is False and score.in_channels == K
    from ddsm.api import build_network

    score_net = build_network(score, "conv", 0, {"hidden": 8, "n_blocks": 1})
    assert torch.isfinite(score.loss(score_net, torch.randint(0, K, (2, L))).loss)
    saved = {k: v for k, v in p.config().items() if k != "self_condition"}  # saved before the option
    assert JacobiProcess(**JacobiProcess.upgrade_options(saved)).in_channels == 3 * K

    class Recorder(torch.nn.Module):
        """A correction that depends on the estimate channels, recording every input."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(0.7))
            self.seen: list[torch.Tensor] = []

        def forward(self, feats, t, cond=None):
            self.seen.append(feats.detach().clone())
            return self.w * feats[..., :K] + 0.3 * feats[..., 3 * K:]

    net = Recorder()
    x0 = torch.randint(0, K, (64, L), generator=torch.Generator().manual_seed(0))
    out = p.loss(net, x0, generator=torch.Generator().manual_seed(1))
    out.loss.backward()
    first, second = net.seen
    est = second[..., 3 * K:]
    filled = est.abs().sum((-1, -2)) > 0
    assert 16 < int(filled.sum()) < 48 and first.shape[0] == int(filled.sum())
    assert torch.allclose(est[filled].sum(-1), torch.ones(int(filled.sum()), L), atol=1e-5)
    assert torch.equal(first[..., 3 * K:], torch.zeros_like(first[..., 3 * K:]))
    assert net.w.grad is not None and torch.isfinite(net.w.grad)

    # the bound's model output: the second pass reads the first pass's posterior
    net.seen.clear()
    v = p.sample_noisy(x0[:3], torch.full((3,), 0.4), generator=torch.Generator().manual_seed(2)).xt
    t = torch.full((3,), 0.4)
    logits = p.model_output(net, v, t)
    loglik = p.local_loglik(v, p.native_time(t))
    c1 = net.w * p.features(loglik)[..., :K]
    est1 = torch.softmax(p.posterior_logits(loglik, c1), -1)
    torch.testing.assert_close(net.seen[1][..., 3 * K:], est1.float())
    torch.testing.assert_close(torch.softmax(logits, -1), torch.softmax(p.posterior_logits(
        loglik, net(p.features(loglik, est1), t)), -1))

    # sampling: steps + 1 calls, and each call after the first reads the previous call's posterior
    net.seen.clear()
    with torch.no_grad():
        sample(p, net, (3, L), steps=5, generator=torch.Generator().manual_seed(3))
    assert len(net.seen) == 6
    assert torch.equal(net.seen[0][..., 3 * K:], torch.zeros(3, L, K))
    for a, b in zip(net.seen[1:], net.seen[2:]):
        # call n - 1's posterior: its local posterior (first K channels) times exp(its correction)
        weights = a[..., :K].double() * torch.exp(net.w.detach() * a[..., :K] + 0.3 * a[..., 3 * K:]).double()
        torch.testing.assert_close(b[..., 3 * K:].double(), weights / weights.sum(-1, keepdim=True),
                                   atol=1e-5, rtol=1e-4)
