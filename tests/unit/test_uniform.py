"""Analytic checks of the uniform-noise process (D3PM-uniform / UDLM in continuous time)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from ddsm.processes import build_process
from ddsm.processes.base import NoisySample
from ddsm.processes.uniform import UniformProcess

torch.set_num_threads(1)

SCHEDULES = ("loglinear", "cosine")
PARAMS = ("posterior", "udlm")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def q_t(p: UniformProcess, t: float, x0: int) -> np.ndarray:
    """q(x_t = . | x0) ``(K,)``."""
    a = float(p.alpha(torch.tensor([t], dtype=torch.float64))[0])
    v = np.full(p.K, (1.0 - a) / p.K)
    v[x0] += a
    return v


# ---------------------------------------------------------------------------- forward process
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedule_endpoints_and_derivative(schedule):
    p = UniformProcess(5, schedule=schedule, eps=1e-3)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    alpha, one_minus, _ = p.alpha(t)
    assert torch.allclose(alpha, torch.tensor([1.0, 1e-3], dtype=torch.float64))
    assert torch.allclose(alpha + one_minus, torch.ones(2, dtype=torch.float64))
    t = torch.linspace(0.05, 0.95, 7, dtype=torch.float64)
    h = 1e-6
    fd = (p.alpha(t + h)[0] - p.alpha(t - h)[0]) / (2 * h)
    assert torch.allclose(p.alpha(t)[2], fd, rtol=1e-6)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_forward_marginals_chi_square(schedule):
    K, n = 4, 4000
    p = UniformProcess(K, schedule=schedule)
    x0 = torch.full((n, 5), 2)
    for i, t in enumerate([0.1, 0.5, 0.9]):
        xt = p.sample_noisy(x0, torch.full((n,), t), generator=gen(i)).xt
        counts = np.bincount(xt.reshape(-1).numpy(), minlength=K)
        expected = q_t(p, t, 2) * counts.sum()
        assert stats.chisquare(counts, expected).pvalue > 1e-3


def test_sample_time_range():
    p = UniformProcess(4, t_min=0.01)
    t = p.sample_time(1000, generator=gen(0))
    assert float(t.min()) >= 0.01 and float(t.max()) <= 1.0


# ---------------------------------------------------------------------------- reverse process
def explicit_reverse(p: UniformProcess, logits: np.ndarray, i: int, t: float, s: float) -> np.ndarray:
    """p(x_s = . | x_t = i) from K x K transition matrices and Bayes' rule, ``(K,)``."""
    K = p.K
    at = float(p.alpha(torch.tensor([t], dtype=torch.float64))[0])
    as_ = float(p.alpha(torch.tensor([s], dtype=torch.float64))[0])
    ats = at / as_
    Q = ats * np.eye(K) + (1 - ats) / K  # Q[j, i] = q(x_t = i | x_s = j)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if p.parameterization == "posterior":
        out = np.zeros(K)
        for x in range(K):
            post = Q[:, i] * q_t(p, s, x)
            out += probs[x] * post / post.sum()
        return out
    v = Q[:, i] * sum(probs[x] * q_t(p, s, x) for x in range(K))
    return v / v.sum()


@pytest.mark.parametrize("parameterization", PARAMS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_reverse_probs_match_bayes_rule(parameterization, schedule):
    K = 5
    p = UniformProcess(K, schedule=schedule, parameterization=parameterization)
    g = gen(0)
    logits = torch.randn(3, 4, K, generator=g, dtype=torch.float64) * 2
    xt = torch.randint(0, K, (3, 4), generator=g)
    t = torch.tensor([0.9, 0.4, 0.05], dtype=torch.float64)
    s = torch.tensor([0.8, 0.0, 0.01], dtype=torch.float64)
    got = p.reverse_probs(logits, xt, t, s)
    for b in range(3):
        for pos in range(4):
            want = explicit_reverse(p, logits[b, pos].numpy(), int(xt[b, pos]), float(t[b]), float(s[b]))
            np.testing.assert_allclose(got[b, pos].numpy(), want, rtol=1e-9, atol=1e-12)


def test_reverse_to_zero_draws_from_model_posterior():
    """At s = 0 the x0-parameterised step is a draw from p_theta(x0 | x_t) (posterior form)."""
    p = UniformProcess(4, parameterization="posterior")
    logits = torch.randn(2, 3, 4, generator=gen(1), dtype=torch.float64)
    xt = torch.randint(0, 4, (2, 3), generator=gen(2))
    got = p.reverse_probs(logits, xt, torch.full((2,), 0.3), torch.zeros(2))
    assert torch.allclose(got, torch.softmax(logits, -1), atol=1e-12)


@pytest.mark.parametrize("parameterization", PARAMS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_oracle_step_carries_marginals(schedule, parameterization):
    """x_t ~ q_t(. | x0), then one oracle step to s: x_s ~ q_s(. | x0) (chi-square)."""
    K, n, x0v = 4, 20000, 1
    p = UniformProcess(K, schedule=schedule, parameterization=parameterization)
    x0 = torch.full((n, 1), x0v)
    t, s = 0.7, 0.3
    xt = p.sample_noisy(x0, torch.full((n,), t), generator=gen(3)).xt
    out = p.oracle_output(x0, xt, torch.full((n,), t))
    xs = p.step(out, xt, torch.full((n,), t), torch.full((n,), s), generator=gen(4))
    counts = np.bincount(xs.reshape(-1).numpy(), minlength=K)
    assert stats.chisquare(counts, q_t(p, s, x0v) * n).pvalue > 1e-3


# ---------------------------------------------------------------------------- the ELBO
def _toy_logits(W: np.ndarray, V: np.ndarray, i: int, t: float) -> np.ndarray:
    return W[i] + t * V[i]


def _density_all_states(p: UniformProcess, W, V, x0: int, t: np.ndarray) -> np.ndarray:
    """E_{x_t ~ q_t(. | x0)} f(t) at each time of ``t`` (exact sum over the K states)."""
    K, n = p.K, len(t)
    tt = torch.tensor(np.repeat(t, K))
    xt = torch.arange(K).repeat(n)[:, None]
    out = torch.tensor(np.stack([_toy_logits(W, V, i, ti) for ti in t for i in range(K)]))
    f = p.loss_terms(out[:, None, :], torch.full((K * n, 1), x0), NoisySample(xt=xt, t=tt))
    f = f.double().numpy().reshape(n, K) / (1.0 - p.t_min)
    q = np.stack([q_t(p, float(ti), x0) for ti in t])
    return (q * f).sum(-1)


def _discrete_kl_sum(p: UniformProcess, W, V, x0: int, T: int) -> float:
    """D3PM's sum over T steps on [t_min, 1] of E_q KL(q(x_s | x_t, x0) || p_theta(x_s | x_t)),
    from explicit transition matrices (vectorised over the steps)."""
    K = p.K
    grid = torch.tensor(p.t_min + (1.0 - p.t_min) * np.arange(T + 1) / T)
    alpha = p.alpha(grid)[0].numpy()
    t, a_t, a_s = grid[1:].numpy(), alpha[1:], alpha[:-1]
    ats = (a_t / a_s)[:, None, None]
    Q = ats * np.eye(K) + (1 - ats) / K  # (T, j, i) = q(x_t = i | x_s = j)
    q_s = a_s[:, None, None] * np.eye(K) + ((1 - a_s) / K)[:, None, None]  # (T, x, j) = q(x_s = j | x)
    q_t = a_t[:, None] * np.eye(K)[x0] + ((1 - a_t) / K)[:, None]  # (T, i)
    post = np.einsum("nji,nxj->nixj", Q, q_s)
    post /= post.sum(-1, keepdims=True)  # (T, i, x, j) = q(x_s = j | x_t = i, x0 = x)
    logits = W[None] + t[:, None, None] * V[None]  # (T, i, x)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    if p.parameterization == "posterior":
        model = np.einsum("nix,nixj->nij", probs, post)
    else:
        model = np.einsum("nji,nix,nxj->nij", Q, probs, q_s)
        model /= model.sum(-1, keepdims=True)
    true = post[:, :, x0, :]
    return float(np.sum(q_t * np.sum(true * np.log(true / model), -1)))


@pytest.mark.parametrize("parameterization", PARAMS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_continuous_elbo_is_limit_of_discrete_kl_sum(parameterization, schedule):
    """int_{t_min}^1 E f dt equals the T -> infinity limit of the discrete D3PM KL sum: at T = 2000
    within 0.4% (the O(1/T) error), and within 1e-4 after Richardson extrapolation with T = 500."""
    K = 3
    p = UniformProcess(K, schedule=schedule, t_min=0.01, parameterization=parameterization)
    rng = np.random.default_rng(0)
    W, V = rng.normal(size=(K, K)) * 1.5, rng.normal(size=(K, K)) * 2.0
    nodes, weights = np.polynomial.legendre.leggauss(80)
    lo, hi = math.log(p.t_min), 0.0  # integrate in log t: the integrand varies on the scale of t
    u = 0.5 * (hi - lo) * nodes + 0.5 * (hi + lo)
    for x0 in range(K):
        cont = float(np.sum(0.5 * (hi - lo) * weights * np.exp(u) * _density_all_states(p, W, V, x0, np.exp(u))))
        d_coarse = _discrete_kl_sum(p, W, V, x0, 500)
        d_fine = _discrete_kl_sum(p, W, V, x0, 2000)
        assert abs(d_fine - cont) / cont < 4e-3
        assert abs(d_fine - cont) < abs(d_coarse - cont) / 3.0  # first-order convergence
        richardson = (4.0 * d_fine - d_coarse) / 3.0
        assert abs(richardson - cont) / cont < 1e-4


@pytest.mark.parametrize("parameterization", PARAMS)
def test_loss_terms_zero_for_oracle_and_positive_otherwise(parameterization):
    p = UniformProcess(6, parameterization=parameterization)
    x0 = torch.randint(0, 6, (32, 7), generator=gen(5))
    noisy = p.sample_noisy(x0, p.sample_time(32, generator=gen(6)), generator=gen(7))
    oracle = p.loss_terms(p.oracle_output(x0, noisy.xt, noisy.t), x0, noisy)
    assert float(oracle.abs().max()) < 1e-8
    wrong = p.loss_terms(torch.randn(32, 7, 6, generator=gen(8)), x0, noisy)
    assert bool((wrong > 0).all()) and bool(torch.isfinite(wrong).all())


def test_loss_gradient_finite_at_extreme_times():
    p = UniformProcess(4)
    x0 = torch.randint(0, 4, (4, 3), generator=gen(9))
    t = torch.tensor([p.t_min, 0.002, 0.999, 1.0])
    noisy = p.sample_noisy(x0, t, generator=gen(10))
    out = (torch.randn(4, 3, 4, generator=gen(11)) * 20).requires_grad_(True)
    p.loss_terms(out, x0, noisy).sum().backward()
    assert bool(torch.isfinite(out.grad).all())


# ---------------------------------------------------------------------------- likelihoods on a toy
class MixturePosterior:
    """The optimal output for data drawn from sequences ``S (M, L)`` with probabilities ``pi (M,)``:
    the exact p(x0^l | x_t) per position (``posterior``), divided by q_t(x_t^l | x0^l) and
    renormalised for ``udlm``. ``temper`` != 1 makes it wrong on purpose."""

    def __init__(self, p: UniformProcess, S: torch.Tensor, pi: torch.Tensor, temper: float = 1.0) -> None:
        self.p, self.S, self.log_pi, self.temper = p, S, pi.log(), temper

    def __call__(self, feats: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        xt = feats.argmax(-1)
        alpha, one_minus, _ = self.p.alpha(t)
        K = self.p.K
        hit, miss = torch.log(alpha + one_minus / K), torch.log(one_minus / K)
        same = xt[:, None, :] == self.S[None]  # (B, M, L)
        log_w = self.log_pi[None] + torch.where(same, hit[:, None, None], miss[:, None, None]).sum(-1)
        w = torch.softmax(log_w * self.temper, -1)
        probs = torch.einsum("bm,mlk->blk", w, F.one_hot(self.S, K).double())
        log_probs = probs.clamp_min(1e-300).log()
        if self.p.parameterization == "udlm":
            at_i = F.one_hot(xt, K).bool()
            log_probs = log_probs - torch.where(at_i, hit[:, None, None], miss[:, None, None])
        return torch.log_softmax(log_probs, -1)


def _toy(kind: str) -> tuple[int, torch.Tensor, torch.Tensor]:
    if kind == "copy":  # two positions that always agree: strongly correlated
        pi = torch.tensor([0.5, 0.25, 0.15, 0.1], dtype=torch.float64)
        return 4, torch.arange(4)[:, None].repeat(1, 2), pi
    marg = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)  # independent tokens
    S = torch.tensor(list(itertools.product(range(3), repeat=3)))
    return 3, S, marg[S].prod(-1)


@pytest.mark.parametrize("parameterization", PARAMS)
@pytest.mark.parametrize("kind", ["copy", "independent"])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_optimal_model_elbo_equals_entropy_by_quadrature(kind, schedule, parameterization):
    """With the optimal per-position output, the continuous-time bound is tight: summing the
    exact expectations over x_t (all K^L states) and integrating by quadrature gives H(data)
    up to the reconstruction and prior terms (< 2e-3 bits)."""
    K, S, pi = _toy(kind)
    M, L = S.shape
    p = UniformProcess(K, schedule=schedule, parameterization=parameterization)
    model = MixturePosterior(p, S, pi)
    states = torch.tensor(list(itertools.product(range(K), repeat=L)))  # (N, L)
    feats = F.one_hot(states, K).float()

    def q_states(t: float) -> torch.Tensor:  # q(x_t = state | x0 = S_m): (M, N)
        a = float(p.alpha(torch.tensor([t], dtype=torch.float64))[0])
        eq = states[None] == S[:, None]
        return torch.where(eq, a + (1 - a) / K, (1 - a) / K).prod(-1)

    def expected_density(t: float) -> float:
        N = len(states)
        tt = torch.full((N,), t, dtype=torch.float64)
        out = model(feats, tt)
        f = torch.stack([p.loss_terms(out, S[m].expand(N, L), NoisySample(xt=states, t=tt)).sum(-1)
                         for m in range(M)])  # (M, N)
        return float((pi[:, None] * q_states(t) * f).sum()) / (1.0 - p.t_min)

    nodes, weights = np.polynomial.legendre.leggauss(60)
    lo, hi = math.log(p.t_min), 0.0
    u = 0.5 * (hi - lo) * nodes + 0.5 * (hi + lo)
    diffusion = sum(0.5 * (hi - lo) * w * math.exp(ui) * expected_density(math.exp(ui)) for ui, w in zip(u, weights))
    t0 = torch.full((len(states),), p.t_min, dtype=torch.float64)
    logp0 = p.reverse_probs(model(feats, t0), states, t0, torch.zeros_like(t0)).log()  # decoder (N, L, K)
    recon = sum(float(pi[m] * (q_states(p.t_min)[m] * -logp0.gather(-1, S[m].expand(len(states), L)[..., None])
                                .squeeze(-1).sum(-1)).sum()) for m in range(M))
    bound = (diffusion + recon + L * p.prior_kl()) / math.log(2.0)
    entropy = float(-(pi * pi.log()).sum()) / math.log(2.0)
    assert entropy <= bound + 1e-9 and bound - entropy < 2e-3


@pytest.mark.parametrize("parameterization", PARAMS)
@pytest.mark.parametrize("kind", ["copy", "independent"])
def test_bits_per_token_matches_entropy_for_exact_model(kind, parameterization):
    """bits_per_token (Monte Carlo) with the optimal output: its excess over each sequence's
    -log2 P(x0) averages to ~0; a mis-specified model's bound is above the entropy."""
    K, S, pi = _toy(kind)
    M, L = S.shape
    p = UniformProcess(K, parameterization=parameterization)
    g = gen(12)
    idx = torch.multinomial(pi, 1024, replacement=True, generator=g)
    x0 = S[idx]
    bits = p.bits_per_token(MixturePosterior(p, S, pi), x0, generator=g, steps=50) * L
    gap = bits + pi[idx].log() / math.log(2.0)
    se = float(gap.std()) / math.sqrt(len(gap))
    assert abs(float(gap.mean())) < 4 * se + 2e-3
    entropy = float(-(pi * pi.log()).sum()) / math.log(2.0)
    worse = p.bits_per_token(MixturePosterior(p, S, torch.full_like(pi, 1.0 / M), temper=0.7), x0,
                             generator=g, steps=50) * L
    assert float(worse.mean()) > entropy + 0.1


def test_udlm_bound_tight_with_reweighted_output_and_loose_with_posterior():
    """For independent tokens the UDLM-optimal output is the data marginal (the posterior divided
    by q_t(x_t | x0)); plugging the posterior itself in gives a strictly looser bound (the two
    parameterisations differ)."""
    K = 3
    marg = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    p = UniformProcess(K, parameterization="udlm")
    g = gen(13)
    x0 = torch.multinomial(marg, 4096, replacement=True, generator=g).reshape(1024, 4)
    nll = -marg[x0].log().sum(-1) / (4 * math.log(2.0))

    def marginal_model(feats, t, cond=None):
        return marg.log().expand(*feats.shape[:2], K)

    tight = p.bits_per_token(marginal_model, x0, generator=g, steps=50) - nll
    se = float(tight.std()) / math.sqrt(len(tight))
    assert abs(float(tight.mean())) < 4 * se + 2e-3

    def posterior_model(feats, t, cond=None):  # log marg_k + log q_t(x_t | k), normalised
        alpha, one_minus, _ = p.alpha(t)
        log_q = torch.log(alpha[:, None, None] * feats.double() + (one_minus / K)[:, None, None])
        return torch.log_softmax(marg.log() + log_q, -1)

    loose = p.bits_per_token(posterior_model, x0, generator=g, steps=50) - nll
    assert float(loose.mean()) > float(tight.mean()) + 4 * se


def test_bits_per_token_padding_and_oracle():
    p = UniformProcess(4)
    x0 = torch.randint(0, 4, (3, 6), generator=gen(14))
    pad = torch.ones(3, 6, dtype=torch.bool)
    pad[:, 4:] = False

    class Oracle:
        takes_state = True

        def __call__(self, xt, t, cond=None):
            return p.oracle_output(x0[: xt.shape[0]], xt, t)

    bits = p.bits_per_token(Oracle(), x0, pad_mask=pad, generator=gen(15), steps=10)
    assert bits.shape == (3,)
    assert float(bits.max()) < 1e-3 and float(bits.min()) >= 0.0


def test_registry_and_config():
    p = build_process("uniform", 5, schedule="cosine", parameterization="udlm")
    assert isinstance(p, UniformProcess)
    assert UniformProcess(**p.config()).config() == p.config()
    with pytest.raises(ValueError):
        UniformProcess(5, schedule="nope")
