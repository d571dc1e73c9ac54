"""A multistep use of past network outputs for the Jacobi process's held correction
(:meth:`ddsm.processes.JacobiProcess.sampling_model`)."""

from __future__ import annotations

import math
from typing import Callable, Optional

from torch import Tensor


class ExtrapolatedCorrection:
    """``model_fn`` (a posterior backbone's logit correction ``(B, L, K)``) returning, from its
    second call on, ``c_n + alpha (c_n - c_{n-1})`` with both centred over the categories.

    Why: the Jacobi process holds a call's correction over the call's SDE sub-steps (the exact
    local evidence is re-formed at each one, :meth:`ddsm.processes.JacobiProcess.step`). Between
    calls the correction drifts as the rest of the sequence decides, so a held value lags by about
    half a call's change; extrapolating with the previous call's change (the two-step rule that
    Adams-Bashforth and DPM-Solver's multistep samplers apply to past model outputs; alpha 0.5 is
    the value at the middle of the call's interval if c changes linearly) removes most of that lag
    for one stored tensor and no extra call.

    Stateful: one instance per sampling run, called in the run's order (a batch of another shape
    starts afresh). The process's ``step`` stays a pure function of one output.

    It is also the run's memory for a self-conditioned process: :attr:`estimate` holds the
    posterior ``(B, L, K)`` that the process formed from the previous call, and :meth:`raw` calls
    the network without touching the correction's memory (a run's first call, whose estimate
    needs a pass of its own).
    """

    def __init__(self, model_fn: Callable[..., Tensor], alpha: float) -> None:
        if not (math.isfinite(alpha) and alpha >= 0.0):
            raise ValueError(f"extrapolate must be a finite number >= 0, got {alpha}")
        self.model_fn, self.alpha = model_fn, float(alpha)
        self.previous: Optional[Tensor] = None
        self.estimate: Optional[Tensor] = None

    def raw(self, x: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        """The network's correction, not remembered and not extrapolated."""
        return self.model_fn(x, t, cond)

    def __call__(self, x: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        c = self.model_fn(x, t, cond).float()
        c = c - c.mean(-1, keepdim=True)
        previous, self.previous = self.previous, c
        if previous is None or previous.shape != c.shape:
            return c
        return c + self.alpha * (c - previous)
