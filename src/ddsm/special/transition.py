"""Exact transition law of one Jacobi (Wright-Fisher) diffusion started at a vertex.

    dx = (1/2) [a (1 - x) - b x] dt + sqrt(x (1 - x)) dW          (native clock, speed 1)

Started at x0 = 1, x_t is the Beta mixture sum_m q_m(t) Beta(a + m, b), with q the lineage law of
``ddsm.special.lineage``; started at x0 = 0 it is sum_m q_m(t) Beta(a, b + m) (the same law for
1 - x with a and b swapped). Sampling draws M ~ q(t) then a Beta; density and score sum over the
window of m that carries the mass. Everything is float64.

The batched core works on ``(B, L)`` values that share one time per row, which is how the DDSM
training loss uses it (one t per sequence); the public element-wise functions reshape to it.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .lineage import lineage_weights

_MAX_CELLS = 1 << 22  # (rows * L * W) float64 cells per chunk: bounds memory at about 32 MiB


def _windows(t: Tensor, theta: float) -> tuple[Tensor, Tensor]:
    """Lineage windows for times ``t (B,)``: ``m (B, W)`` float64 values and ``logw (B, W)``."""
    start, w = lineage_weights(t.detach().double().cpu().numpy(), theta)
    m = torch.from_numpy(start[:, None] + np.arange(w.shape[1])[None, :]).to(t.device, torch.float64)
    with np.errstate(divide="ignore"):
        logw = torch.from_numpy(np.log(w)).to(t.device)
    return m, logw


def _log_beta_fn(p: Tensor, q: Tensor) -> Tensor:
    return torch.lgamma(p) + torch.lgamma(q) - torch.lgamma(p + q)


def _component_logits(y: Tensor, m: Tensor, logw: Tensor, a: float, b: float) -> Tensor:
    """``log q_m + log Beta(y; a + m, b)`` for ``y (B, L)`` at vertex 1: ``(B, L, W)``."""
    am = a + m  # (B, W)
    const = logw - _log_beta_fn(am, torch.full_like(am, b))  # (B, W), independent of y
    logy, log1my = torch.log(y), torch.log1p(-y)
    return const[:, None, :] + (am[:, None, :] - 1.0) * logy[..., None] + (b - 1.0) * log1my[..., None]


def _chunks(B: int, L: int, W: int):
    step = max(1, _MAX_CELLS // max(1, L * W))
    for i in range(0, B, step):
        yield slice(i, min(B, i + step))


def _at_one_logpdf_and_mean_m(y: Tensor, t: Tensor, a: float, b: float) -> tuple[Tensor, Tensor]:
    """log p_t(y | 1) and the posterior mean E[M | y] for ``y (B, L)``, ``t (B,)`` native."""
    m, logw = _windows(t, a + b)
    logp = torch.empty_like(y)
    mean_m = torch.empty_like(y)
    for sl in _chunks(*y.shape, m.shape[1]):
        logits = _component_logits(y[sl], m[sl], logw[sl], a, b)
        lse = torch.logsumexp(logits, dim=-1)
        logp[sl] = lse
        mean_m[sl] = (torch.softmax(logits, dim=-1) * m[sl][:, None, :]).sum(-1)
    return logp, mean_m


def _rows_time(y: Tensor, t: Tensor | float) -> tuple[Tensor, Tensor]:
    """Flatten element-wise inputs to rows of length 1 with their own time."""
    y = torch.as_tensor(y, dtype=torch.float64)
    t = torch.as_tensor(t, dtype=torch.float64, device=y.device).expand_as(y).reshape(-1)
    return y.reshape(-1, 1), t


def _oriented(y: Tensor, x0: Tensor, a: float, b: float):
    """Map x0 = 0 to the x0 = 1 problem: y -> 1 - y, (a, b) -> (b, a)."""
    one = torch.as_tensor(x0, device=y.device).expand_as(y).reshape(y.shape) > 0.5
    return one, torch.where(one, y, 1.0 - y)


def jacobi_transition_logpdf(y: Tensor, x0: Tensor, t: Tensor | float, a: float, b: float) -> Tensor:
    """log p_t(y | x0) for x0 in {0, 1}, element-wise over tensors of one shape (float64)."""
    y_rows, t_rows = _rows_time(y, t)
    one, yy = _oriented(y_rows, torch.as_tensor(x0).reshape(-1, 1) if torch.as_tensor(x0).dim() else x0, a, b)
    out = torch.empty_like(yy)
    for flag, (aa, bb) in ((True, (a, b)), (False, (b, a))):
        sel = (one == flag).reshape(-1)
        if sel.any():
            out[sel] = _at_one_logpdf_and_mean_m(yy[sel], t_rows[sel], aa, bb)[0]
    return out.reshape(torch.as_tensor(y).shape)


def jacobi_transition_score(y: Tensor, x0: Tensor, t: Tensor | float, a: float, b: float) -> Tensor:
    """d/dy log p_t(y | x0), analytic, element-wise (float64).

    At vertex 1 the score is E[(a + M - 1) / y - (b - 1) / (1 - y) | y] with the posterior of M.
    """
    y_rows, t_rows = _rows_time(y, t)
    one, yy = _oriented(y_rows, torch.as_tensor(x0).reshape(-1, 1) if torch.as_tensor(x0).dim() else x0, a, b)
    out = torch.empty_like(yy)
    for flag, (aa, bb), sign in ((True, (a, b), 1.0), (False, (b, a), -1.0)):
        sel = (one == flag).reshape(-1)
        if sel.any():
            ys = yy[sel]
            _, mean_m = _at_one_logpdf_and_mean_m(ys, t_rows[sel], aa, bb)
            out[sel] = sign * ((aa - 1.0 + mean_m) / ys - (bb - 1.0) / (1.0 - ys))
    return out.reshape(torch.as_tensor(y).shape)


def numpy_rng(generator: Optional[torch.Generator]) -> np.random.Generator:
    """A NumPy generator seeded from ``generator`` so one torch seed controls NumPy draws too."""
    seed = torch.randint(0, 2**62, (1,), generator=generator).item()
    return np.random.default_rng(seed)


def sample_at_one(t: Tensor, L: int, a: float, b: float, *,
                  generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
    """Exact draws of x_t | x0 = 1 for ``t (B,)`` native, ``L`` draws per time.

    Returns ``y (B, L)`` float64 and the lineage counts ``M (B, L)``.
    """
    m, logw = _windows(t, a + b)
    cdf = torch.cumsum(torch.exp(logw), dim=-1)
    cdf = cdf / cdf[:, -1:]
    u = torch.rand((t.shape[0], L), generator=generator, dtype=torch.float64).to(t.device)
    idx = torch.searchsorted(cdf, u).clamp_max(m.shape[1] - 1)
    M = torch.gather(m, 1, idx)
    rng = numpy_rng(generator)
    alpha = (a + M).cpu().numpy()
    y = rng.beta(alpha, np.full_like(alpha, b))
    return torch.from_numpy(y).to(t.device), M


def jacobi_transition_sample(x0: Tensor, t: Tensor | float, a: float, b: float, *,
                             generator: Optional[torch.Generator] = None) -> Tensor:
    """Exact draws of x_t given x0 in {0, 1} (element-wise; any continuous t > 0), float64."""
    x0 = torch.as_tensor(x0)
    t_rows = torch.as_tensor(t, dtype=torch.float64).expand(x0.shape).reshape(-1)
    one = (x0.reshape(-1) > 0.5)
    out = torch.empty(t_rows.shape[0], dtype=torch.float64)
    for flag, (aa, bb) in ((True, (a, b)), (False, (b, a))):
        sel = one == flag
        if sel.any():
            y, _ = sample_at_one(t_rows[sel], 1, aa, bb, generator=generator)
            out[sel] = y[:, 0] if flag else 1.0 - y[:, 0]
    return out.reshape(x0.shape)
