"""Category likelihoods and the mixture score of stick-broken Jacobi sticks.

Stick-breaking (a_i = 1, b_i = K - 1 - i, 0-based) ties each clean category k to its sticks: stick
i sits at vertex 0 if k > i, at vertex 1 if k = i, and is stationary Beta(a_i, b_i) if k < i (a
later stick never sees the data once an earlier one has taken the mass). So, per position,

    log q_tau(v | k) = sum_{i<k} log p(v_i | 0) + log p(v_k | 1) + sum_{i>k} log Beta(v_i; a_i, b_i)

and, for any posterior P(x0 = k | v) of a data law, the stick score of the marginal is the mixture

    d/dv_i log p_tau(v) = P(k < i) d log Beta(v_i) + P(k = i) d log p(v_i | 1) + P(k > i) d log p(v_i | 0).

``stats`` below is the dict of per-stick ``(..., K-1)`` tensors that
:meth:`ddsm.special.stick_tables.StickTables.stats` returns (``logp_one``, ``logp_zero``,
``logp_stat``, ``score_one``, ``score_zero``, ``score_stat``).
"""

from __future__ import annotations

import torch
from torch import Tensor


def category_loglik(stats: dict[str, Tensor]) -> Tensor:
    """log q_tau(v_l | k) for every category k: ``(..., K)`` float64 from per-stick ``(..., K-1)``."""
    zero, one, stat = stats["logp_zero"], stats["logp_one"], stats["logp_stat"]
    pad = torch.zeros_like(zero[..., :1])
    zero_before = torch.cat([pad, torch.cumsum(zero, -1)], -1)  # sum_{i<k}
    stat_from = torch.cat([torch.flip(torch.cumsum(torch.flip(stat, [-1]), -1), [-1]), pad], -1)
    stat_after = torch.cat([stat_from[..., 1:], pad], -1)  # sum_{i>k}
    return zero_before + torch.cat([one, pad], -1) + stat_after  # k = K-1 has no stick of its own


def mixture_score(probs: Tensor, stats: dict[str, Tensor]) -> Tensor:
    """Stick score ``(..., K-1)`` float64 of the marginal, from the posterior ``probs (..., K)``."""
    p = probs.double()
    K1 = p.shape[-1] - 1
    below = torch.cumsum(p, -1)[..., :K1] - p[..., :K1]  # P(k < i)
    above = (1.0 - below - p[..., :K1]).clamp_min(0.0)  # P(k > i)
    return below * stats["score_stat"] + p[..., :K1] * stats["score_one"] + above * stats["score_zero"]


def score_error(dp: Tensor, stats: dict[str, Tensor]) -> Tensor:
    """``(..., K-1)`` float64 stick-score difference sum_k dp_k grad log q(v | k) for a posterior
    difference ``dp (..., K)`` (entries summing to 0): :func:`mixture_score` is linear in the
    posterior, so the difference of two mixture scores is this, without forming either (near a
    vertex both are ~1e10 while their difference is small)."""
    K1 = dp.shape[-1] - 1
    below = torch.cumsum(dp, -1)[..., :K1] - dp[..., :K1]  # sum_{k < i} dp_k
    above = torch.flip(torch.cumsum(torch.flip(dp, [-1]), -1), [-1])[..., 1:]  # sum_{k > i} dp_k
    return below * stats["score_stat"] + dp[..., :K1] * stats["score_one"] + above * stats["score_zero"]
