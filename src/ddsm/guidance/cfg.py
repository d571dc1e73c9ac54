"""Classifier-free guidance as a model wrapper, for every process.

The wrapped network is called once on a doubled batch (labels, then the null class) and returns

    out = out_uncond + (1 + w) (out_cond - out_uncond) = (1 + w) out_cond - w out_uncond.

What that means depends on what the process's network outputs, and each is the standard form:
- score outputs (``jacobi``): guidance in score space, grad log p(x | y)^(1+w) p(x)^(-w);
- logits (``masked``, ``uniform``, ``discrete-fm``, ``dirichlet-fm``, ``autoregressive``):
  D-CFG in probability space, p(x0 | z, y)^(1+w) p(x0 | z)^(-w) renormalised by the softmax that
  follows (Schiff et al. 2024 with gamma = 1 + w);
- x0 predictions (``bits``): the usual CFG extrapolation of the denoiser.
w = 0 is the plain conditional model.

``interval = (lo, hi)`` limits guidance to public times lo <= t <= hi (Kynkaanniemi et al. 2024,
"Applying guidance in a limited interval improves sample and distribution quality"): outside it
the plain conditional output is returned from one network call on the undoubled batch, so steps
outside the interval cost half.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn


class ClassifierFreeGuidance(nn.Module):
    """``model`` wrapped so that a call with labels returns the guided output.

    Args:
        model: a backbone trained with label dropout (null class id ``null_class``).
        weight: guidance weight w >= 0.
        null_class: the id of the unconditional class (``n_classes``).
        interval: ``(lo, hi)`` public times between which to guide (default: the whole run).
    """

    def __init__(self, model: nn.Module, weight: float, null_class: int,
                 interval: Optional[tuple[float, float]] = None) -> None:
        super().__init__()
        if weight < 0:
            raise ValueError("guidance weight must be >= 0")
        self.model, self.weight, self.null_class = model, float(weight), int(null_class)
        self.interval = check_interval(interval)

    def forward(self, x: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        if cond is None or self.weight == 0.0 or not in_interval(self.interval, t):
            return self.model(x, t, cond)
        null = torch.full_like(cond, self.null_class)
        both = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, null]))
        out_c, out_u = both.chunk(2)
        # rows asking for the null class itself are not guided (out_c == out_u there anyway)
        return out_c + self.weight * (out_c - out_u)

    def forward_step(self, *args, **kwargs):  # pragma: no cover - KV-cache generation is unguided
        raise NotImplementedError("guided generation uses the sampling loop, not the KV cache")


def check_interval(interval: Optional[tuple[float, float]]) -> Optional[tuple[float, float]]:
    """``(lo, hi)`` as floats with 0 <= lo < hi, or None (guide everywhere)."""
    if interval is None:
        return None
    lo, hi = (float(v) for v in interval)
    if not (math.isfinite(lo) and lo >= 0 and hi > lo):
        raise ValueError(f"guidance interval must be LO,HI with 0 <= LO < HI, got {interval}")
    return lo, hi


def in_interval(interval: Optional[tuple[float, float]], t: Tensor) -> bool:
    """Whether the step at public times ``t (B,)`` is guided. The sampling loop calls the network
    with one time for the whole batch; rows at different times (per-row samplers) are guided when
    any row is inside, which keeps such batches on one code path."""
    if interval is None:
        return True
    lo, hi = interval
    return bool(((t >= lo - 1e-12) & (t <= hi + 1e-12)).any())
