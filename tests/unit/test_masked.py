"""MDLM masked diffusion (ddsm.processes.masked) against analytic ground truth.

Exact models used here (no training): the posterior p(x0^l | z) of a tiny distribution over all
K^L sequences computed by enumeration; its first-hitting samples must follow the distribution and
its continuous-time ELBO must equal -log p(x0) (any-order autoregression). An arbitrary table
model for L = 2 has a closed-form ELBO and a closed-form model distribution (a mixture of the two
orders), so the bound's direction is checked on a model that is not exact.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from ddsm.models import build_model
from ddsm.processes import PROCESSES, build_process
from ddsm.processes.masked import CachedDenoiser, MaskedProcess
from ddsm.sampling import FixedPositions, sample

torch.set_num_threads(1)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TableModel:
    """Exact posterior p(x0^l | z) of the distribution ``probs`` over the rows of ``seqs``."""

    takes_state = True

    def __init__(self, seqs: torch.Tensor, probs: torch.Tensor, K: int) -> None:
        self.seqs, self.probs, self.K = seqs, probs.double(), K
        self.calls = 0

    def __call__(self, z: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        self.calls += 1
        ok = ((z[:, None, :] == self.K) | (z[:, None, :] == self.seqs[None])).all(-1)  # (B, N)
        w = ok.double() * self.probs[None]
        onehot = torch.nn.functional.one_hot(self.seqs, self.K).double()  # (N, L, K)
        post = torch.einsum("bn,nlk->blk", w, onehot) / w.sum(-1)[:, None, None]
        return torch.log(post.clamp_min(1e-300)).float()


def all_sequences(K: int, L: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(K), repeat=L)), dtype=torch.long)


def correlated_distribution(K: int, L: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    seqs = all_sequences(K, L)
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(len(seqs), 0.7))
    return seqs, torch.from_numpy(p)


def test_registered_and_config_round_trip():
    assert PROCESSES["masked"] is MaskedProcess
    p = build_process("masked", 5, eps=0.01, sampler="first-hitting", time_conditioning=True)
    assert MaskedProcess(**p.config()).config() == p.config()
    assert (p.in_channels, p.out_channels) == (6, 5)
    with pytest.raises(ValueError):
        MaskedProcess(4, sampler="euler")
    with pytest.raises(ValueError):
        MaskedProcess(4, eps=1.0)


@pytest.mark.parametrize("t", [0.05, 0.3, 0.7, 1.0])
def test_forward_marginal(t):
    """Each token is masked independently with probability (1 - eps) t, else kept."""
    proc = MaskedProcess(4, eps=0.01)
    x0 = torch.randint(0, 4, (400, 20), generator=gen(0))
    xt = proc.sample_noisy(x0, torch.full((400,), t), generator=gen(1)).xt
    masked = xt == 4
    assert torch.equal(xt[~masked], x0[~masked])
    n, k = masked.numel(), int(masked.sum())
    assert stats.binomtest(k, n, (1 - 0.01) * t).pvalue > 1e-3
    # independence of positions: masks of neighbours are uncorrelated
    if 0 < t < 1:
        a, b = masked[:, :-1].reshape(-1).double(), masked[:, 1:].reshape(-1).double()
        assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.03


def test_subs_and_loss_weights():
    """SUBS: unmasked positions are point masses on their token; the loss is (1/t) CE on masked
    positions and exactly 0 elsewhere; the network sees t = 0 unless time-conditioned."""
    K = 3
    proc = MaskedProcess(K)
    seen = []

    def net(x, t, cond=None):
        seen.append(t.clone())
        return torch.zeros(*x.shape[:2], K)  # uniform logits

    x0 = torch.tensor([[0, 1, 2, 1]])
    xt = torch.tensor([[0, K, 2, K]])
    out = proc.model_output(net, xt, torch.tensor([0.5]))
    assert torch.equal(seen[-1], torch.zeros(1))
    probs = out.softmax(-1)
    assert torch.equal(probs[0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(probs[0, 1], torch.full((K,), 1 / K))
    from ddsm.processes.base import NoisySample

    terms = proc.loss_terms(out, x0, NoisySample(xt=xt, t=torch.tensor([0.25])))
    expected = torch.tensor([[0.0, 4 * math.log(K), 0.0, 4 * math.log(K)]])
    assert torch.allclose(terms, expected)
    MaskedProcess(K, time_conditioning=True).model_output(net, xt, torch.tensor([0.5]))
    assert torch.equal(seen[-1], torch.tensor([0.5]))


def test_step_unmask_probability_and_carry_over():
    """From t to s a masked token unmasks with probability (t - s)/t; unmasked tokens never move,
    whatever the output says; s = 0 unmasks everything."""
    proc = MaskedProcess(4)
    B, L = 200, 50
    xt = torch.full((B, L), 4)
    xt[:, :10] = 2
    out = torch.randn(B, L, 4, generator=gen(2))
    t, s = torch.full((B,), 0.8), torch.full((B,), 0.6)
    xs = proc.step(out, xt, t, s, generator=gen(3))
    assert torch.equal(xs[:, :10], xt[:, :10])
    k = int((xs[:, 10:] != 4).sum())
    assert stats.binomtest(k, B * 40, 0.25).pvalue > 1e-3
    xs = proc.step(out, xt, t, torch.zeros(B), generator=gen(4))
    assert bool((xs != 4).all())


def test_ancestral_sampler_independent_data():
    """Independent positions: the exact posterior is time- and context-free, so the ancestral
    sampler is exact for any number of steps."""
    K, L, N = 3, 4, 3000
    pi = torch.tensor([0.6, 0.3, 0.1])

    class Indep:
        takes_state = True

        def __call__(self, z, t, cond=None):
            return torch.log(pi).expand(*z.shape, K).clone()

    tokens = sample(MaskedProcess(K), Indep(), (N, L), steps=7, generator=gen(5))
    counts = np.bincount(tokens.reshape(-1).numpy(), minlength=K)
    expected = pi.double().numpy() / pi.double().sum().item() * N * L
    assert stats.chisquare(counts, expected).pvalue > 1e-3


def test_first_hitting_sampler_exact_on_correlated_data():
    """First hitting simulates the continuous-time reverse process exactly: with the exact
    posterior the samples follow the data law, using exactly L network calls."""
    K, L, N = 2, 3, 4000
    seqs, probs = correlated_distribution(K, L)
    model = TableModel(seqs, probs, K)
    proc = MaskedProcess(K, sampler="first-hitting")
    tokens = proc.sample_first_hitting(model, (N, L), generator=gen(6))
    assert model.calls == L
    idx = (tokens * (K ** torch.arange(L - 1, -1, -1))).sum(-1)
    counts = np.bincount(idx.numpy(), minlength=len(seqs))
    assert stats.chisquare(counts, probs.numpy() * N).pvalue > 1e-3


def test_first_hitting_fixed_positions_and_seed():
    K, B, L = 4, 8, 6
    x0 = torch.randint(0, K, (B, L), generator=gen(7))
    other = (x0 + 1) % K

    class Oracle:
        takes_state = True
        calls = 0

        def __call__(self, z, t, cond=None):
            Oracle.calls += 1
            return torch.log(torch.nn.functional.one_hot(other, K).float().clamp_min(1e-30))

    mask = torch.zeros(B, L, dtype=torch.bool)
    mask[:, ::2] = True
    proc = MaskedProcess(K)
    a = proc.sample_first_hitting(Oracle(), (B, L), fixed=FixedPositions(x0, mask), generator=gen(8))
    assert Oracle.calls == L // 2
    assert torch.equal(a[mask], x0[mask]) and torch.equal(a[~mask], other[~mask])
    b = proc.sample_first_hitting(Oracle(), (B, L), fixed=FixedPositions(x0, mask), generator=gen(8))
    assert torch.equal(a, b)


def test_elbo_perfect_model_is_zero():
    proc = MaskedProcess(4)
    x0 = torch.randint(0, 4, (5, 9), generator=gen(9))

    class Oracle:
        takes_state = True

        def __call__(self, z, t, cond=None):
            return proc.oracle_output(x0, z, t)

    bits = proc.bits_per_token(Oracle(), x0, generator=gen(10), steps=20)
    assert bits.shape == (5,) and torch.equal(bits, torch.zeros(5))


def test_elbo_equals_nll_for_exact_posterior():
    """Continuous-time ELBO with exact posteriors = -log p(x0) for every x0 (correlated data)."""
    K, L = 2, 3
    seqs, probs = correlated_distribution(K, L, seed=1)
    model = TableModel(seqs, probs, K)
    proc = MaskedProcess(K)
    reps = 200
    x0 = seqs.repeat(reps, 1)  # every sequence, many independent estimates
    bits = proc.bits_per_token(model, x0, generator=gen(11), steps=16).double()
    est = bits.reshape(reps, -1) * L * math.log(2)  # nats per sequence
    nll = -torch.log(probs)
    mean, se = est.mean(0), est.std(0) / math.sqrt(reps)
    assert bool(((mean - nll).abs() < 4 * se + 1e-3).all()), (mean, nll, se)
    # averaged over the data it is the entropy
    H = float((probs * nll).sum())
    assert abs(float((probs * mean).sum()) - H) < 0.03


def test_elbo_bounds_nll_of_inexact_model():
    """L = 2, arbitrary (inconsistent) conditionals: ELBO = mean of the two orders' AR losses,
    the model's law is the mixture of the two orders, and ELBO >= -log p_model (Jensen)."""
    K = 3
    rng = np.random.default_rng(3)
    m1, m2 = rng.dirichlet(np.ones(K)), rng.dirichlet(np.ones(K))  # p(x1 | -), p(x2 | -)
    c12 = rng.dirichlet(np.ones(K), size=K)  # c12[x1] = p(x2 | x1)
    c21 = rng.dirichlet(np.ones(K), size=K)  # c21[x2] = p(x1 | x2)

    class Arbitrary:
        takes_state = True

        def __call__(self, z, t, cond=None):
            z1, z2 = z[:, 0], z[:, 1]
            t21, t12 = torch.from_numpy(c21), torch.from_numpy(c12)
            first = torch.where((z2 == K)[:, None], torch.from_numpy(m1), t21[z2.clamp(max=K - 1)])
            second = torch.where((z1 == K)[:, None], torch.from_numpy(m2), t12[z1.clamp(max=K - 1)])
            return torch.log(torch.stack([first, second], dim=1)).float()

    proc = MaskedProcess(K)
    pairs = all_sequences(K, 2)
    reps = 200
    bits = proc.bits_per_token(Arbitrary(), pairs.repeat(reps, 1), generator=gen(12), steps=64)
    draws = bits.double().reshape(reps, -1) * 2 * math.log(2)
    est, se = draws.mean(0).numpy(), draws.std(0).numpy() / math.sqrt(reps)
    x1, x2 = pairs[:, 0].numpy(), pairs[:, 1].numpy()
    lp12 = np.log(m1[x1]) + np.log(c12[x1, x2])
    lp21 = np.log(m2[x2]) + np.log(c21[x2, x1])
    elbo = -(lp12 + lp21) / 2
    nll_model = -np.log((np.exp(lp12) + np.exp(lp21)) / 2)
    assert np.all(elbo >= nll_model - 1e-12)
    assert np.all(np.abs(est - elbo) < 4 * se), (est, elbo, se)
    # and the first-hitting sampler draws from that mixture
    tokens = proc.sample_first_hitting(Arbitrary(), (3000, 2), generator=gen(13))
    counts = np.bincount((tokens[:, 0] * K + tokens[:, 1]).numpy(), minlength=K * K)
    p_model = np.exp(-nll_model)
    assert stats.chisquare(counts, p_model / p_model.sum() * 3000).pvalue > 1e-3


def test_elbo_independent_data_and_padding():
    """Independent categorical model: E[ELBO] = sum_l -log pi(x0_l) over real tokens; padding
    is neither scored nor counted."""
    K = 4
    pi = torch.tensor([0.5, 0.25, 0.125, 0.125])

    class Indep:
        takes_state = True

        def __call__(self, z, t, cond=None):
            return torch.log(pi).expand(*z.shape, K).clone()

    x0 = torch.tensor([[0, 1, 2, 3, 0, 0]]).repeat(400, 1)
    pad = torch.ones_like(x0, dtype=torch.bool)
    pad[:, 4:] = False
    bits = MaskedProcess(K).bits_per_token(Indep(), x0, pad_mask=pad, generator=gen(14), steps=10)
    exact = float(-torch.log2(pi[torch.tensor([0, 1, 2, 3])]).mean())
    assert abs(float(bits.mean()) - exact) < 4 * float(bits.std()) / 20 + 1e-3


def test_cached_denoiser_same_samples_fewer_calls():
    """With a time-agnostic network, reusing the output where the state did not change gives
    exactly the same samples as calling the network every step."""
    torch.manual_seed(0)
    proc = MaskedProcess(4)
    net = build_model("mlp", proc.in_channels, proc.out_channels, hidden=16)
    counter = {"n": 0}

    def counted(x, t, cond=None):
        counter["n"] += 1
        return net(x, t, cond)

    a = sample(proc, counted, (4, 5), steps=60, generator=gen(15))
    cached = CachedDenoiser(proc, counted)
    b = sample(proc, cached, (4, 5), steps=60, generator=gen(15))
    assert torch.equal(a, b)
    assert counter["n"] == 60 + cached.calls and cached.calls < 40
    assert not MaskedProcess(4, time_conditioning=True).cached_output_valid(a, a)


def test_training_reaches_entropy_not_below():
    """A briefly trained network's ELBO lies above the data entropy and well below log2 K."""
    torch.manual_seed(1)
    K, L = 4, 4
    pi = torch.tensor([0.7, 0.1, 0.1, 0.1])
    H = float(-(pi * torch.log2(pi)).sum())
    proc = MaskedProcess(K)
    net = build_model("mlp", proc.in_channels, proc.out_channels, hidden=32)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = gen(16)
    for _ in range(150):
        x0 = torch.multinomial(pi, 128 * L, replacement=True, generator=g).reshape(128, L)
        opt.zero_grad()
        proc.loss(net, x0, generator=g).loss.backward()
        opt.step()
    x0 = torch.multinomial(pi, 512 * L, replacement=True, generator=g).reshape(512, L)
    bits = float(proc.bits_per_token(net, x0, generator=g, steps=8).mean())
    assert H - 0.03 < bits < H + 0.15, (bits, H)
