"""Stick-breaking map between K - 1 sticks v in (0, 1)^(K-1) and the simplex x in Delta^(K-1).

    x_0 = v_0,  x_i = v_i prod_{j<i} (1 - v_j),  x_{K-1} = prod_{j<K-1} (1 - v_j)

Closed forms (no autograd), 0-based sticks, R_i = sum_{k>=i} x_k = prod_{j<i} (1 - v_j):

- inverse: v_i = x_i / R_i;
- log |det dx/dv| = sum_j (K - 2 - j) log(1 - v_j)  (dx/dv is triangular with diagonal R_i);
- a gradient g_x of f(x) over the K ambient coordinates maps to sticks as
  (J^T g_x)_i = R_i g_i - R_i / R_{i+1} sum_{k>i} x_k g_k. It is blind to adding a constant to
  g_x (sum_k dx_k/dv_i = 0), so x-space scores are defined up to that constant (we centre them).
"""

from __future__ import annotations

import torch
from torch import Tensor


def sticks_to_simplex(v: Tensor) -> Tensor:
    """``v (..., K-1)`` in (0, 1) -> ``x (..., K)`` on the simplex."""
    one_minus = torch.cumprod(1.0 - v, dim=-1)
    remaining = torch.cat([torch.ones_like(v[..., :1]), one_minus], dim=-1)  # R_0 .. R_{K-1}
    return torch.cat([v * remaining[..., :-1], remaining[..., -1:]], dim=-1)


def simplex_to_sticks(x: Tensor) -> Tensor:
    """``x (..., K)`` -> ``v (..., K-1)``; v_i = x_i / sum_{k>=i} x_k."""
    remaining = torch.flip(torch.cumsum(torch.flip(x, [-1]), -1), [-1])  # R_i
    return (x[..., :-1] / remaining[..., :-1].clamp_min(torch.finfo(x.dtype).tiny)).clamp(0.0, 1.0)


def log_det_dx_dv(v: Tensor) -> Tensor:
    """log |det dx/dv| for ``v (..., K-1)`` -> ``(...)``; equals -log |det dv/dx|."""
    K1 = v.shape[-1]
    powers = torch.arange(K1 - 1, -1, -1, device=v.device, dtype=v.dtype)  # K - 2 - j
    return (powers * torch.log1p(-v)).sum(-1)


def grad_log_det_dx_dv(v: Tensor) -> Tensor:
    """d/dv log |det dx/dv| = -(K - 2 - i) / (1 - v_i), ``(..., K-1)``."""
    K1 = v.shape[-1]
    powers = torch.arange(K1 - 1, -1, -1, device=v.device, dtype=v.dtype)  # K - 2 - i
    return -powers / (1.0 - v)


def pullback_x_to_v(g_x: Tensor, v: Tensor) -> Tensor:
    """``J^T g_x``: a gradient over the K ambient coordinates to the K - 1 sticks."""
    x = sticks_to_simplex(v)
    remaining = torch.flip(torch.cumsum(torch.flip(x, [-1]), -1), [-1])  # R_0 .. R_{K-1}
    xg = x * g_x
    tail = torch.flip(torch.cumsum(torch.flip(xg, [-1]), -1), [-1])  # sum_{k>=i} x_k g_k
    R_i, R_next = remaining[..., :-1], remaining[..., 1:]
    return R_i * g_x[..., :-1] - R_i / R_next * tail[..., 1:]


def score_x_to_v(s_x: Tensor, v: Tensor) -> Tensor:
    """Score of the x-density (ambient gradient) -> score of the v-density.

    log p_v(v) = log p_x(x(v)) + log |det dx/dv|.
    """
    return pullback_x_to_v(s_x, v) + grad_log_det_dx_dv(v)


def score_v_to_x(s_v: Tensor, v: Tensor) -> Tensor:
    """Inverse of ``score_x_to_v``, centred over K (the x-score is defined up to a constant).

    Solves J^T g = s_v - grad log det with the gauge g_{K-1} = 0 in closed form:
    g_i = h_i / R_i + u_{i+1}, u_i = sum_{j>=i} v_j h_j / R_j.
    """
    h = s_v - grad_log_det_dx_dv(v)
    x = sticks_to_simplex(v)
    remaining = torch.flip(torch.cumsum(torch.flip(x, [-1]), -1), [-1])[..., :-1]  # R_0..R_{K-2}
    hr = h / remaining
    u = torch.flip(torch.cumsum(torch.flip(v * hr, [-1]), -1), [-1])  # u_0 .. u_{K-2}
    u_next = torch.cat([u[..., 1:], torch.zeros_like(u[..., :1])], dim=-1)
    g = torch.cat([hr + u_next, torch.zeros_like(h[..., :1])], dim=-1)
    return g - g.mean(-1, keepdim=True)
