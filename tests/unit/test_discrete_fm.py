"""Discrete flow matching (ddsm.processes.discrete_fm) against analytic ground truth.

The uniform-source ELBO is checked three independent ways on a single position (L = 1) with a
table model p_t(y | z) = (1 - t) delta_z(y) + t A(z, y), whose CTMC generator under the linear
schedule is the constant A - I, so the model's law at t = 0 is exactly u expm(A - I):
  1. the continuous formula (by quadrature) equals the KL between the discrete-time path
     measures of the conditional and model chains as the step goes to 0 (Girsanov, by brute force);
  2. it is >= -log p_model(x0) for every x0 (it is a bound);
  3. the library's Monte-Carlo estimate matches the quadrature.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from scipy.linalg import expm

from ddsm.processes import PROCESSES, build_process
from ddsm.processes.base import NoisySample
from ddsm.processes.discrete_fm import DiscreteFMProcess
from ddsm.processes.masked import MaskedProcess
from ddsm.sampling import sample

torch.set_num_threads(1)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class ExactPosterior:
    """p(x0^l | z_t) of a distribution over the rows of ``seqs`` under the process's path."""

    takes_state = True

    def __init__(self, proc: DiscreteFMProcess, seqs: torch.Tensor, probs: torch.Tensor) -> None:
        self.proc, self.seqs, self.probs = proc, seqs, probs.double()

    def __call__(self, z, t, cond=None):
        kap = self.proc.kappa(t)[:, None, None]  # (B, 1, 1)
        same = (z[:, None, :] == self.seqs[None]).double()  # (B, N, L)
        if self.proc.source == "mask":
            src = (z[:, None, :] == self.proc.K).double()
        else:
            src = torch.full_like(same, 1.0 / self.proc.K)
        lik = (kap * same + (1 - kap) * src).prod(-1)  # q_t(z | x) (B, N)
        w = lik * self.probs[None]
        onehot = torch.nn.functional.one_hot(self.seqs, self.proc.K).double()
        post = torch.einsum("bn,nlk->blk", w, onehot) / w.sum(-1)[:, None, None]
        return torch.log(post.clamp_min(1e-300)).float()


class PointMass:
    takes_state = True

    def __init__(self, proc, x0):
        self.proc, self.x0 = proc, x0

    def __call__(self, z, t, cond=None):
        return self.proc.oracle_output(self.x0, z, t)


def test_registered_config_and_options():
    assert PROCESSES["discrete-fm"] is DiscreteFMProcess
    p = build_process("discrete-fm", 5, source="uniform", schedule="polynomial", exponent=3.0,
                      weighting="elbo")
    assert DiscreteFMProcess(**p.config()).config() == p.config()
    assert (p.in_channels, p.out_channels) == (5, 5)
    assert build_process("discrete-fm", 5).in_channels == 6
    for bad in ({"source": "gauss"}, {"schedule": "cosine"}, {"weighting": "l2"}, {"exponent": 0.0}):
        with pytest.raises(ValueError):
            DiscreteFMProcess(4, **bad)


@pytest.mark.parametrize("schedule,n", [("linear", 1.0), ("polynomial", 2.5)])
def test_schedule_and_rate(schedule, n):
    proc = DiscreteFMProcess(4, schedule=schedule, exponent=n)
    t = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    assert torch.allclose(proc.kappa(t), (1 - t) ** n)
    assert torch.allclose(proc.one_minus_kappa(t), 1 - (1 - t) ** n)
    tt = torch.tensor([1e-4, 0.2, 0.6, 0.95], dtype=torch.float64)
    h = 1e-7
    dk = (proc.kappa(tt + h) - proc.kappa(tt - h)) / (2 * h)
    assert torch.allclose(proc.rate(tt), -dk / (1 - proc.kappa(tt)), rtol=1e-5)


@pytest.mark.parametrize("source", ["mask", "uniform"])
@pytest.mark.parametrize("t", [0.1, 0.5, 0.9])
def test_forward_marginal(source, t):
    """z_t = x0 with probability kappa, else a source draw: counts over all symbols by chi-square."""
    K, B, L = 4, 300, 16
    proc = DiscreteFMProcess(K, source=source, schedule="polynomial", exponent=2.0)
    x0 = torch.full((B, L), 1)
    z = proc.sample_noisy(x0, torch.full((B,), t), generator=gen(1)).xt
    kap = (1 - t) ** 2
    if source == "mask":
        expected = np.array([0, kap, 0, 0, 1 - kap])
    else:
        expected = np.full(K, (1 - kap) / K)
        expected[1] += kap
    counts = np.bincount(z.reshape(-1).numpy(), minlength=len(expected))
    keep = expected > 0
    assert counts[~keep].sum() == 0
    assert stats.chisquare(counts[keep], expected[keep] / expected[keep].sum() * B * L).pvalue > 1e-3


@pytest.mark.parametrize("source", ["mask", "uniform"])
def test_step_jump_probability(source):
    """A movable position is redrawn with probability (kappa_s - kappa_t) / (1 - kappa_t); with
    the mask source unmasked positions never move."""
    K, B, L = 4, 200, 40
    proc = DiscreteFMProcess(K, source=source, schedule="polynomial", exponent=2.0)
    start = K if source == "mask" else 0
    xt = torch.full((B, L), start)
    xt[:, :5] = 3
    target = torch.full((B, L), 2)
    out = proc.oracle_output(target, xt, torch.ones(B))
    t, s = torch.full((B,), 0.7), torch.full((B,), 0.5)
    xs = proc.step(out, xt, t, s, generator=gen(2))
    if source == "mask":
        assert torch.equal(xs[:, :5], xt[:, :5])
    p = ((1 - 0.5) ** 2 - (1 - 0.7) ** 2) / (1 - (1 - 0.7) ** 2)
    moved = xs[:, 5:] == 2
    assert bool(((xs[:, 5:] == start) | moved).all())
    assert stats.binomtest(int(moved.sum()), B * (L - 5), p).pvalue > 1e-3
    assert bool((proc.step(out, xt, t, torch.zeros(B), generator=gen(3))[:, 5:] == 2).all())


@pytest.mark.parametrize("source", ["mask", "uniform"])
def test_sampler_with_exact_posterior_independent_data(source):
    """Independent positions with the exact (time-dependent) posterior: the CTMC sampler's
    per-position law converges to the data law."""
    K, L, N = 3, 2, 4000
    pi = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    seqs = torch.tensor(list(itertools.product(range(K), repeat=L)))
    probs = pi[seqs].prod(-1)
    proc = DiscreteFMProcess(K, source=source)
    tokens = sample(proc, ExactPosterior(proc, seqs, probs), (N, L), steps=100, generator=gen(4))
    freq = np.bincount(tokens.reshape(-1).numpy(), minlength=K) / (N * L)
    assert np.abs(freq - pi.numpy()).sum() / 2 < 0.02


# ---------------------------------------------------------------------- uniform-source ELBO
K1 = 3
A = np.random.default_rng(0).dirichlet(np.ones(K1), size=K1)  # A[z] = jump law from z


class TableModel:
    """p_t(y | z) = (1 - t) delta_z(y) + t A[z, y] at a single position."""

    takes_state = True

    def __call__(self, z, t, cond=None):
        t = t.double()[:, None, None]
        p = (1 - t) * torch.nn.functional.one_hot(z, K1).double() + t * torch.from_numpy(A)[z]
        return torch.log(p).float()


def _table_p(t: float) -> np.ndarray:
    return (1 - t) * np.eye(K1) + t * A


def _elbo_quadrature(x0: int) -> float:
    """int_0^1 r(t) sum_z q_t(z | x0) term(z, t) dt for the linear schedule (r = 1/t)."""

    def integrand(t: float) -> float:
        p = _table_p(t)
        total = 0.0
        for z in range(K1):
            q = (1 - t) * (z == x0) + t / K1
            term = 1 - p[z, x0] if z == x0 else -math.log(p[z, x0]) - p[z, z]
            total += q * term
        return total / t

    return integrate.quad(integrand, 0.0, 1.0, limit=200)[0]


def _path_kl_discrete(x0: int, n: int = 4000) -> float:
    """KL between the discrete-time chains (conditional on x0 vs model) on a fine grid, summed
    step by step under the conditional chain's exact marginals."""
    grid = np.concatenate([np.geomspace(1.0, 1e-7, n), [0.0]])
    kl = 0.0
    for t, s in zip(grid[:-1], grid[1:]):
        jump = (t - s) / t  # (kappa_s - kappa_t) / (1 - kappa_t), linear schedule
        p = _table_p(t)
        for z in range(K1):
            q_z = (1 - t) * (z == x0) + t / K1
            cond = np.zeros(K1)
            cond[z] += 1 - jump
            cond[x0] += jump  # the conditional chain jumps to x0
            model = (1 - jump) * np.eye(K1)[z] + jump * p[z]  # resets to a draw from p_t(. | z)
            nz = cond > 0
            kl += q_z * float(np.sum(cond[nz] * np.log(cond[nz] / model[nz])))
    return kl


def test_uniform_elbo_formula_is_the_path_kl_and_a_bound():
    p_model = np.full(K1, 1.0 / K1) @ expm(A - np.eye(K1))
    for x0 in range(K1):
        quad = _elbo_quadrature(x0)
        assert abs(quad - _path_kl_discrete(x0)) < 5e-3 * max(1.0, quad)
        assert quad >= -math.log(p_model[x0]) + 1e-6


def test_uniform_sampler_matches_model_law():
    """The step sampler with the table model converges to u expm(A - I)."""
    proc = DiscreteFMProcess(K1, source="uniform")
    N = 8000
    tokens = sample(proc, TableModel(), (N, 1), steps=200, generator=gen(5))
    freq = np.bincount(tokens.reshape(-1).numpy(), minlength=K1) / N
    p_model = np.full(K1, 1.0 / K1) @ expm(A - np.eye(K1))
    assert np.abs(freq - p_model).sum() / 2 < 0.025


def test_uniform_elbo_monte_carlo_matches_quadrature():
    proc = DiscreteFMProcess(K1, source="uniform")
    reps = 400
    x0 = torch.arange(K1).repeat(reps)[:, None]
    bits = proc.bits_per_token(TableModel(), x0, generator=gen(6), steps=128).double()
    nats = bits.reshape(reps, K1) * math.log(2)
    est, se = nats.mean(0), nats.std(0) / math.sqrt(reps)
    for x in range(K1):
        assert abs(float(est[x]) - _elbo_quadrature(x)) < 4 * float(se[x]) + 1e-3


@pytest.mark.parametrize("schedule", ["linear", "polynomial"])
def test_uniform_elbo_above_nll_with_exact_posterior(schedule):
    """Correlated data, exact posteriors: the sampler's continuous-time law is the data law, so
    E[ELBO(x0)] >= -log p(x0) for every x0 (strictly, for the uniform source)."""
    K, L = 2, 2
    seqs = torch.tensor(list(itertools.product(range(K), repeat=L)))
    probs = torch.tensor([0.45, 0.05, 0.1, 0.4], dtype=torch.float64)
    proc = DiscreteFMProcess(K, source="uniform", schedule=schedule, exponent=2.0)
    reps = 300
    bits = proc.bits_per_token(ExactPosterior(proc, seqs, probs), seqs.repeat(reps, 1),
                               generator=gen(7), steps=32).double()
    nats = bits.reshape(reps, -1) * L * math.log(2)
    est, se = nats.mean(0), nats.std(0) / math.sqrt(reps)
    nll = -torch.log(probs)
    assert bool((est > nll - 4 * se).all()), (est, nll, se)
    # the data-averaged bound is above the entropy by more than the noise
    assert float((probs * (est - nll)).sum()) > 4 * float((probs * se).sum())


@pytest.mark.parametrize("source", ["mask", "uniform"])
@pytest.mark.parametrize("schedule", ["linear", "polynomial"])
def test_elbo_perfect_model_is_zero(source, schedule):
    proc = DiscreteFMProcess(4, source=source, schedule=schedule, exponent=3.0)
    x0 = torch.randint(0, 4, (6, 10), generator=gen(8))
    bits = proc.bits_per_token(PointMass(proc, x0), x0, generator=gen(9), steps=10)
    assert bits.shape == (6,) and float(bits.abs().max()) < 1e-6


def test_mask_source_elbo_is_mdlm():
    """Mask source + linear schedule: the same estimator as MDLM, draw for draw."""
    K, L = 2, 3
    seqs = torch.tensor(list(itertools.product(range(K), repeat=L)))
    probs = torch.from_numpy(np.random.default_rng(1).dirichlet(np.ones(len(seqs))))
    fm = DiscreteFMProcess(K, source="mask")
    model = ExactPosterior(fm, seqs, probs)
    x0 = seqs.repeat(20, 1)
    a = fm.bits_per_token(model, x0, generator=gen(10), steps=8)
    b = MaskedProcess(K, eps=0.0).bits_per_token(model, x0, generator=gen(10), steps=8)
    assert torch.allclose(a, b, atol=1e-6)


def test_loss_weightings():
    """"ce": cross-entropy at every position; "elbo": r(t) times the NELBO integrand."""
    K = 3
    x0 = torch.tensor([[0, 1, 2]])
    xt = torch.tensor([[0, 2, 2]])
    out = torch.log(torch.tensor([[[0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8]]]))
    noisy = NoisySample(xt=xt, t=torch.tensor([0.25]))
    ce = DiscreteFMProcess(K, source="uniform").loss_terms(out, x0, noisy)
    assert torch.allclose(ce, -torch.log(torch.tensor([[0.5, 0.3, 0.8]])))
    elbo = DiscreteFMProcess(K, source="uniform", weighting="elbo").loss_terms(out, x0, noisy)
    expected = torch.tensor([[1 - 0.5, -math.log(0.3) - 0.5, 1 - 0.8]]) / 0.25
    assert torch.allclose(elbo, expected, atol=1e-6)
