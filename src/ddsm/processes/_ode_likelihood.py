"""Log-densities from the probability-flow ODE (instantaneous change of variables).

For an ODE dv/dtau = F(v, tau) that carries the data law at tau0 to the prior at T,
    log p_tau0(v(tau0)) = log p_T(v(T)) + int_{tau0}^{T} div F(v(tau), tau) dtau.
We integrate in public time u (tau = tau(u)) with Heun's method on a grid that is geometric in
native time (the flow changes fastest near the data). The divergence of the part of
F that involves the network is computed with autograd, exactly (one backward pass per
coordinate: cheap for short sequences and small K) or by Hutchinson's estimator (one backward
pass per evaluation, unbiased). The Rademacher probe is drawn afresh at every evaluation by
default: the trajectory is the deterministic drift's and does not depend on the probe, so each
evaluation's estimate stays unbiased given the path, and the errors of the ~2 x steps evaluations
average out in the integral instead of adding up coherently as with FFJORD's probe fixed along the
trajectory (which an adaptive solver needs, a fixed-step one does not). ``bench/bound_variance.py``
measures the per-sequence spread of both.

Process maths (the jacobi process's ``bits_per_token`` calls it), so it lives below the sampling
layer; ``ddsm.sampling.likelihood`` re-exports it under its old name.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .. import rng as _rng
from .base import ModelFn

#: most sticks per position for which the local part of the divergence is computed exactly
_MAX_EXACT_LOCAL = 8


def _drift_and_divergence(process, model: ModelFn, v: Tensor, u: Tensor, cond: Optional[Tensor],
                          probe: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """dv/du ``(B, L, K-1)`` and its divergence ``(B,)`` at public time ``u (B,)``.

    With a probe (Hutchinson), the part of the drift that holds the network's output fixed
    (``process.drift_parts``) is differentiated exactly: its Jacobian is block-diagonal per
    position, so one backward pass per stick index gives every block's diagonal. The probe then
    only estimates the network's part. Unbiased as before; the within-position terms no longer
    add noise (the per-sequence spread of the bound: ``bench/bound_variance.py``). The K - 1
    extra passes cost too much at large K (about 9x per evaluation at K = 65), so beyond
    ``_MAX_EXACT_LOCAL`` sticks the probe estimates the whole divergence as before."""
    dtau_du = (2.0 * process.T * u.double())  # tau = T u^2
    with torch.enable_grad():
        # float64 leaf: a network casts its input to float32 itself, an exact oracle keeps float64
        vg = v.detach().clone().requires_grad_(True)
        split = probe is not None and v.shape[-1] <= _MAX_EXACT_LOCAL
        drift, local = process.drift_parts(model, vg, u, cond, split=split)  # (B, L, K-1) native
        div = torch.zeros(drift.shape[0], dtype=torch.float64, device=v.device)
        if probe is not None:
            rest = drift
            if local is not None:
                for i in range(drift.shape[-1]):
                    (g,) = torch.autograd.grad(local[..., i].sum(), vg, retain_graph=True)
                    div = div + g[..., i].double().sum(-1)
                rest = drift - local
            (g,) = torch.autograd.grad((rest * probe).sum(), vg)
            div = div + (g.double() * probe).sum((-1, -2))
        else:
            flat = drift.reshape(drift.shape[0], -1)
            for d in range(flat.shape[1]):
                (g,) = torch.autograd.grad(flat[:, d].sum(), vg, retain_graph=True)
                div = div + g.reshape(g.shape[0], -1)[:, d].double()
    scale = dtau_du[:, None, None]
    return drift.detach() * scale, div.detach() * dtau_du


@torch.no_grad()
def ode_log_density(process, model: ModelFn, v0: Tensor, t0: Tensor, *, cond: Optional[Tensor] = None,
                    steps: int = 100, divergence: str = "hutchinson", probe: str = "fresh",
                    generator: Optional[torch.Generator] = None) -> Tensor:
    """log p_theta,tau(t0)(v0) of sticks ``v0 (B, L, K-1)`` under the model's probability flow, ``(B,)``.

    Args:
        process: a process exposing ``native_time``, ``T``, ``score_from_output``,
            ``prob_flow_drift``, ``stationary_logpdf`` and ``eps`` (the Jacobi process).
        t0: ``(B,)`` public start time.
        divergence: ``"hutchinson"`` or ``"exact"``.
        probe: with Hutchinson, ``"fresh"`` (a new Rademacher probe at every evaluation: the same
            mean, far less spread) or ``"fixed"`` (one probe along the whole trajectory, FFJORD's).
    """
    if divergence not in ("hutchinson", "exact"):
        raise ValueError("divergence must be 'hutchinson' or 'exact'")
    if probe not in ("fresh", "fixed"):
        raise ValueError("probe must be 'fresh' or 'fixed'")

    hutchinson = divergence == "hutchinson"

    def draw() -> Tensor:
        return _rng.rademacher(v0.shape, generator=generator, device=v0.device)

    fixed = draw() if hutchinson and probe == "fixed" else None

    def next_probe() -> Optional[Tensor]:
        return draw() if hutchinson and fixed is None else fixed

    v = v0.double()
    # Geometric grid in native time from tau0 to T: the flow changes fastest near the data.
    tau0 = process.native_time(t0.double())
    frac = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64, device=v.device)
    taus = tau0[:, None] * (process.T / tau0[:, None]) ** frac[None, :]  # (B, steps + 1)
    grid = process.public_time(taus)
    acc = torch.zeros(v.shape[0], dtype=torch.float64, device=v.device)
    eps = process.eps
    for k in range(steps):
        u, u_next = grid[:, k], grid[:, k + 1]
        h = u_next - u
        k1, d1 = _drift_and_divergence(process, model, v, u, cond, next_probe())
        v_pred = (v + h[:, None, None] * k1).clamp(eps, 1 - eps)
        k2, d2 = _drift_and_divergence(process, model, v_pred, u_next, cond, next_probe())
        v = (v + 0.5 * h[:, None, None] * (k1 + k2)).clamp(eps, 1 - eps)
        acc = acc + 0.5 * h * (d1 + d2)
    return process.stationary_logpdf(v) + acc
