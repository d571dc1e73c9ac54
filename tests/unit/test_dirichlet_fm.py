"""Dirichlet flow matching (ddsm.processes.dirichlet_fm) against analytic ground truth.

- C(x, alpha) against a 60-digit mpmath evaluation of -dI/dalpha / ((1 - x) pdf), and the K = 2
  closed form; its autograd derivative against finite differences.
- The conditional ODE carries Dir(1) to Dir(1 + (alpha - 1) e_i): x_i follows the exact monotone
  map I^-1_(alpha, K-1)(I_(1, K-1)(x_i(1))) pointwise and is Beta(alpha, K - 1) (KS); the ratios
  x_j / (1 - x_i) stay Dir(1).
- The marginal field with the exact posterior of an i.i.d. categorical carries Dir(1) to the
  Dirichlet mixture (KS against the mixture CDF), through the process's own Euler ``step``.
- The ODE likelihood bound of the exact posterior equals its closed form per sample and is at
  least the entropy of the data.
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import betainc, betaincinv

from ddsm.processes import build_process
from ddsm.processes.dirichlet_fm import DirichletFMProcess, dirichlet_flow_c
from ddsm.sampling import sample

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------
# The C factor.


def _c_reference(x: float, a: float, K: int) -> float:
    """-dI_x(a, n)/da / ((1 - x) pdf(x)) at 60 digits; the upper tail uses I_x = 1 - I_(1-x)(n, a)
    so that nothing cancels."""
    n = K - 1
    with mp.workdps(60):
        x, a = mp.mpf(x), mp.mpf(a)
        y = 1 - x
        if mp.betainc(a, n, 0, x, regularized=True) < 0.5:
            dI = mp.diff(lambda aa: mp.betainc(aa, n, 0, x, regularized=True), a)
        else:
            dI = -mp.diff(lambda aa: mp.betainc(n, aa, 0, y, regularized=True), a)
        log_pdf = (a - 1) * mp.log(x) + (n - 1) * mp.log(y) - mp.log(mp.beta(a, n))
        return float(-dI / (y * mp.exp(log_pdf)))


@pytest.mark.parametrize("K", [2, 3, 4, 10, 20, 30])
def test_c_matches_high_precision_reference(K):
    ys = [1e-9, 1e-4, 0.03, 0.2, 0.5, 0.8, 0.99, 1 - 1e-7]
    for a in [1.0, 2.5, 8.0, 40.0]:
        c = dirichlet_flow_c(torch.tensor([1 - y for y in ys], dtype=F64), torch.tensor(a), K)
        ref = np.array([_c_reference(1 - y, a, K) for y in ys])
        assert bool((c > 0).all())
        np.testing.assert_allclose(c.numpy(), ref, rtol=1e-8, err_msg=f"K={K} alpha={a}")


def test_c_two_letters_closed_form():
    # K = 2: I_x(alpha, 1) = x^alpha, so C = -x log x / (alpha (1 - x)).
    x = torch.linspace(0.01, 0.99, 50, dtype=F64)
    for a in [1.0, 3.0, 12.0]:
        expected = -x * torch.log(x) / (a * (1 - x))
        torch.testing.assert_close(dirichlet_flow_c(x, torch.tensor(a), 2), expected, rtol=1e-12, atol=0)


def test_c_is_finite_and_differentiable_at_the_edges():
    x = torch.tensor([0.0, 1e-200, 0.3, 1 - 1e-12, 1.0], dtype=F64, requires_grad=True)
    for K in [3, 20]:
        c = dirichlet_flow_c(x, torch.tensor(4.0), K)
        (g,) = torch.autograd.grad(c.sum(), x)
        assert bool(torch.isfinite(c).all()) and bool(torch.isfinite(g).all())
    # at the vertex, C -> h_n / n (first tail term) with h_n = sum_{m<n} 1 / (alpha + m)
    n, a = 3, 4.0
    expected = sum(1.0 / (a + m) for m in range(n)) / n
    at_vertex = dirichlet_flow_c(torch.ones(1, dtype=F64), torch.tensor(a), n + 1)
    assert float(at_vertex) == pytest.approx(expected)


def test_c_gradient_matches_finite_differences():
    # one point in the finite-sum branch, one in the tail-series branch (K = 30, far upper tail)
    for K, x, a in [(4, 0.37, 2.5), (30, 0.75, 1.0)]:
        xt = torch.tensor([x], dtype=F64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda z: dirichlet_flow_c(z, torch.tensor(a), K), (xt,))


# --------------------------------------------------------------------------------------------
# The conditional flow: Dir(1) -> Dir(1 + (alpha - 1) e_i).


def _integrate_conditional(process, x, target, a_end, steps):
    """RK4 integration of dx/dalpha = u(x | e_target) from alpha = 1 to a_end."""
    a = torch.ones(x.shape[0], dtype=F64)
    h = (a_end - 1.0) / steps

    def f(z, al):
        return process.conditional_field(z, target, al)

    for _ in range(steps):
        k1 = f(x, a)
        k2 = f(x + 0.5 * h * k1, a + 0.5 * h)
        k3 = f(x + 0.5 * h * k2, a + 0.5 * h)
        k4 = f(x + h * k3, a + h)
        x, a = x + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4), a + h
    return x


@pytest.mark.parametrize("K", [3, 4, 10])
def test_conditional_flow_transports_dirichlet_path(K):
    p = DirichletFMProcess(K)
    n, a_end = 3000, 6.0
    x1 = p.prior((n, 1), generator=gen(K))
    target = torch.randint(0, K, (n, 1), generator=gen(100 + K))
    x = _integrate_conditional(p, x1, target, a_end, steps=50)
    assert bool(((x.sum(-1) - 1).abs() < 1e-12).all()) and bool((x > 0).all())
    idx = target[..., None]
    xi1, xi = x1.gather(-1, idx).reshape(-1).numpy(), x.gather(-1, idx).reshape(-1).numpy()
    # The 1D flow keeps the Beta CDF value: exact pointwise map. (The worst points start near
    # x_i = 0, where C ~ -x log x is not smooth and RK4 converges more slowly.)
    exact = betaincinv(a_end, K - 1, betainc(1.0, K - 1, xi1))
    err = np.abs(xi - exact)
    assert np.median(err) < 1e-7 and err.max() < 1e-4
    assert stats.kstest(xi, stats.beta(a_end, K - 1).cdf).pvalue > 1e-3
    # The other coordinates keep their ratios: x_j / (1 - x_i) ~ Beta(1, K - 2) for one j != i.
    j = (target + 1) % K
    ratio = (x.gather(-1, j[..., None]).reshape(-1) / (1 - x.gather(-1, idx).reshape(-1))).numpy()
    ratio1 = (x1.gather(-1, j[..., None]).reshape(-1) / (1 - x1.gather(-1, idx).reshape(-1))).numpy()
    np.testing.assert_allclose(ratio, ratio1, rtol=1e-9)
    if K > 2:
        assert stats.kstest(ratio, stats.beta(1, K - 2).cdf).pvalue > 1e-3


# --------------------------------------------------------------------------------------------
# Clock and forward process.


def test_clock_and_training_law():
    p = DirichletFMProcess(4, alpha_scale=2.0, alpha_max=8.0)
    a = torch.tensor([1.0, 2.0, 8.0, 30.0], dtype=F64)
    torch.testing.assert_close(p.alpha(p.public_time(a)), a)
    # uniform public times give alpha ~ 1 + alpha_scale * Exp(1) (the reference's training law)
    t = p.sample_time(4000, generator=gen(0))
    assert stats.kstest(((p.alpha(t) - 1) / 2.0).numpy(), "expon").pvalue > 1e-3
    grid = p.time_grid(8)
    assert grid.shape == (9,) and float(grid[0]) == 1.0 and float(grid[-1]) == 0.0
    alphas = p.alpha(grid[:-1])
    torch.testing.assert_close(alphas, torch.linspace(1, 8, 8, dtype=F64), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("t", [0.9, 0.3, 0.02])
def test_noisy_marginals_are_the_dirichlet_path(t):
    K, n = 4, 3000
    p = DirichletFMProcess(K)
    x0 = torch.randint(0, K, (n, 1), generator=gen(1))
    xt = p.sample_noisy(x0, torch.full((n,), t), generator=gen(2)).xt
    a = float(p.alpha(torch.tensor([t]))[0])
    on = xt.gather(-1, x0[..., None]).reshape(-1).numpy()
    off = xt.gather(-1, ((x0 + 1) % K)[..., None]).reshape(-1).numpy()
    assert stats.kstest(on, stats.beta(a, K - 1).cdf).pvalue > 1e-3
    assert stats.kstest(off, stats.beta(1, a + K - 2).cdf).pvalue > 1e-3


def test_loss_is_cross_entropy_and_oracle_is_point_mass():
    K = 5
    p = DirichletFMProcess(K)
    x0 = torch.randint(0, K, (3, 7), generator=gen(3))
    noisy = p.sample_noisy(x0, torch.rand(3, generator=gen(4)), generator=gen(5))
    out = torch.randn(3, 7, K, generator=gen(6))
    expected = -torch.log_softmax(out, -1).gather(-1, x0[..., None])[..., 0]
    torch.testing.assert_close(p.loss_terms(out, x0, noisy), expected)
    oracle = p.oracle_output(x0, noisy.xt, noisy.t)
    assert torch.equal(torch.softmax(oracle, -1).argmax(-1), x0)
    assert float(p.loss_terms(oracle, x0, noisy).max()) == 0.0


def test_oracle_round_trip_with_sampled_read_out():
    p = build_process("dirichlet-fm", 4, final_decode="sample")
    x0 = torch.randint(0, 4, (8, 10), generator=gen(7))

    class Oracle:
        takes_state = True

        def __call__(self, xt, t, cond=None):
            return p.oracle_output(x0, xt, t)

    assert torch.equal(sample(p, Oracle(), (8, 10), steps=5, generator=gen(8)), x0)


# --------------------------------------------------------------------------------------------
# The exact posterior of i.i.d. letters: marginal field and likelihood.


class ExactPosterior:
    """p(x_1 = e_k | x_alpha) for i.i.d. letters with law ``pi``: logits log pi_k + (alpha - 1) log x_k."""

    takes_state = True

    def __init__(self, process: DirichletFMProcess, pi: torch.Tensor):
        self.process, self.log_pi = process, torch.log(pi)

    def __call__(self, xt, t, cond=None):
        a = self.process.alpha(t)[:, None, None]
        return self.log_pi + (a - 1.0) * torch.log(xt.double().clamp_min(1e-300))


def test_marginal_field_transports_the_mixture():
    K, n = 3, 3000
    pi = torch.tensor([0.6, 0.3, 0.1], dtype=F64)
    p = DirichletFMProcess(K, alpha_max=5.0)
    model = ExactPosterior(p, pi)
    x = p.prior((n, 1), generator=gen(9))
    grid = p.time_grid(161)[:-1]  # Euler steps up to alpha_max, without the final read-out
    for t, s in zip(grid[:-1], grid[1:]):
        tb, sb = t.expand(n), s.expand(n)
        x = p.step(p.model_output(model, x, tb), x, tb, sb)
    a = p.alpha(grid[-1:]).item()
    for k in range(K):
        # x_k is Beta(a, K - 1) under letter k and Beta(1, a + K - 2) under the others
        def cdf(v, k=k):
            on = stats.beta(a, K - 1).cdf(v)
            return pi[k].item() * on + (1 - pi[k].item()) * stats.beta(1, a + K - 2).cdf(v)

        assert stats.kstest(x[:, 0, k].numpy(), cdf).pvalue > 1e-3


def _closed_form_bits(p: DirichletFMProcess, pi: torch.Tensor, x: torch.Tensor, a: float) -> torch.Tensor:
    """-log p_alpha(x) + sum_l log sum_k q(x_l | k) with p_alpha the exact mixture, in bits/token."""
    alpha = torch.full((x.shape[0],), a, dtype=F64)
    log_q = (torch.lgamma(alpha + p.K - 1) - torch.lgamma(alpha))[:, None, None] + (a - 1) * torch.log(x)
    log_p = torch.logsumexp(torch.log(pi) + log_q, -1).sum(-1)
    return (-log_p + p.decoder_log_normaliser(x, alpha)) / (x.shape[1] * math.log(2.0))


def test_ode_likelihood_of_the_exact_posterior():
    K, B, L = 3, 48, 2
    pi = torch.tensor([0.6, 0.3, 0.1], dtype=F64)
    p = DirichletFMProcess(K, alpha_max=6.0)
    model = ExactPosterior(p, pi)
    x0 = torch.multinomial(pi, B * L, replacement=True, generator=gen(10)).reshape(B, L)
    bits = p.bits_per_token(model, x0, generator=gen(11), steps=80, divergence="exact")
    # the same noisy points as bits_per_token drew (same generator stream)
    x = p.dirichlet_draw(x0, torch.full((B,), 6.0, dtype=F64), generator=gen(11))
    expected = _closed_form_bits(p, pi, x, 6.0)
    # Heun's error here is second order: about 2e-3 at 80 steps, 5e-4 at 160.
    np.testing.assert_allclose(bits.numpy(), expected.numpy(), atol=4e-3)
    assert abs(float((bits - expected).mean())) < 5e-4
    # the bound is above the entropy of the letters (in expectation: checked on many draws)
    entropy = float(-(pi * torch.log2(pi)).sum())
    x0_many = torch.multinomial(pi, 20000, replacement=True, generator=gen(12)).reshape(-1, 1)
    x_many = p.dirichlet_draw(x0_many, torch.full((20000,), 6.0, dtype=F64), generator=gen(13))
    bound = _closed_form_bits(p, pi, x_many, 6.0)
    assert float(bound.mean()) > entropy + 3 * float(bound.std()) / math.sqrt(20000)
    assert float(bits.mean()) > entropy


def test_hutchinson_is_exact_in_one_dimension():
    # K = 2, L = 1: the Jacobian is 1 x 1, so a Rademacher probe recovers it exactly.
    pi = torch.tensor([0.7, 0.3], dtype=F64)
    p = DirichletFMProcess(2)
    model = ExactPosterior(p, pi)
    x0 = torch.multinomial(pi, 16, replacement=True, generator=gen(14)).reshape(16, 1)
    exact = p.bits_per_token(model, x0, generator=gen(15), steps=20, divergence="exact")
    hutch = p.bits_per_token(model, x0, generator=gen(15), steps=20, divergence="hutchinson")
    torch.testing.assert_close(exact, hutch)


def test_bits_per_token_runs_with_a_network():
    from ddsm.models import build_model

    torch.manual_seed(0)
    p = DirichletFMProcess(4)
    model = build_model("mlp", p.in_channels, p.out_channels, hidden=16)
    x0 = torch.randint(0, 4, (4, 6), generator=gen(16))
    bits = p.bits_per_token(model, x0, generator=gen(17), steps=4)
    assert bits.shape == (4,) and bool(torch.isfinite(bits).all())
