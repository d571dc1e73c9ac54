"""DDSM's reverse-SDE likelihood bound (``ddsm.processes._sde_likelihood``)."""

from __future__ import annotations

import math

import pytest
import torch

from ddsm.processes import build_process
from ddsm.processes._sde_likelihood import posterior_error, score_error
from ddsm.special.stick_posterior import mixture_score


def iid_model(log_rho: torch.Tensor):
    """Posterior-output network of the process's own iid-rho law: the residual logits' correction is
    log rho at every position, so the logits are the exact posterior of iid-rho sequences."""
    def model(features: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        B, L = features.shape[:2]
        return log_rho.to(features.dtype).expand(B, L, len(log_rho)).clone()
    return model


def test_score_error_is_the_difference_of_mixture_scores_and_posterior_error_sums_to_zero():
    p = build_process("jacobi", 5)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 5, (3, 7), generator=g)
    t = torch.full((3,), 0.4, dtype=torch.float64)
    v = p.sample_noisy(x0, t, generator=g).xt
    stats = p.stick_stats(v, p.native_time(t))
    logits = torch.randn(3, 7, 5, generator=g, dtype=torch.float64)
    dp = posterior_error(logits, x0)
    assert float(dp.sum(-1).abs().max()) < 1e-15
    onehot = torch.nn.functional.one_hot(x0, 5).double()
    ref = mixture_score(torch.softmax(logits, -1), stats) - mixture_score(onehot, stats)
    torch.testing.assert_close(score_error(dp, stats), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("K, pi, rho", [
    (4, None, None),  # iid uniform data, zero correction: exactly log2 K bits
    (4, [0.6, 0.2, 0.15, 0.05], [0.6, 0.2, 0.15, 0.05]),  # the exact model of iid-pi data: H(pi) per sequence
    (4, [0.6, 0.2, 0.15, 0.05], [0.25, 0.25, 0.25, 0.25]),  # a wrong iid model: its own NLL -log2 rho(x)
])
def test_sde_bound_equals_the_nll_of_an_iid_model(K, pi, rho):
    # A model whose reverse SDE has the exact score of iid-rho data is that law, and the forward
    # process given x0 does not depend on the data law, so its conditional reverse path is the
    # model's path given x0: the bound is then exactly -log2 rho(x0) in expectation, for any x0.
    p = build_process("jacobi", K)
    g = torch.Generator().manual_seed(1)
    B, L = 96, 24
    pi_t = torch.full((K,), 1.0 / K) if pi is None else torch.tensor(pi)
    log_rho = torch.zeros(K) if rho is None else torch.tensor(rho).log()
    x0 = torch.multinomial(pi_t, B * L, replacement=True, generator=g).reshape(B, L)
    bits = p.bits_per_token(iid_model(log_rho), x0, generator=g, steps=200, bound="sde").double()
    truth = -torch.log_softmax(log_rho.double(), 0)[x0].sum(-1) / (L * math.log(2.0))
    err = bits - truth
    se = err.std().item() / math.sqrt(B)
    # (the batch shares its cell times, so the spread across sequences understates the error a little)
    assert abs(err.mean().item()) < max(4 * se, 0.02), (err.mean().item(), se)
    assert bits.dtype == torch.float64 and bits.shape == (B,)


def test_sde_bound_options_are_checked():
    p = build_process("jacobi", 4)
    x0 = torch.zeros(2, 5, dtype=torch.long)
    model = iid_model(torch.zeros(4))
    with pytest.raises(ValueError, match="bound must be one of"):
        p.bits_per_token(model, x0, bound="elbo")
    with pytest.raises(ValueError, match="t_start applies to the ODE bound only"):
        p.bits_per_token(model, x0, bound="sde", t_start=1.0)
    assert build_process("jacobi", 4, output="score").likelihood_bounds == ("ode",)
