"""DDSM with the paper's network output: the normalised stick score (``--set output=score``).

Same forward process, clocks, reverse SDE and likelihood as :class:`JacobiProcess`; the network
regresses the score itself. Output (``out_channels = K - 1``) is the *normalised* stick score

    o_i = sqrt(v_i (1 - v_i) / lambda_i(tau)) * d/dv_i log p_tau(v),

where lambda_i(tau) = E[v_i (1 - v_i) (d/dv_i log p_tau(v_i | x0))^2] (x0 uniform over categories).
The DDSM loss sum_i v_i (1 - v_i) (s_theta - s)^2 / lambda_i(tau) is then a plain squared error on
o with a unit-scale target at every time. Uniform public training times are tau^(-1/2)-distributed,
the DDSM promoter recipe's importance sampling. Kept for fidelity to the paper: it learns far slower
than the posterior parameterisation (docs/design.md, "Why DDSM learned slowly"). The network sees
the simplex point ``x (B, L, K)``.
"""

from __future__ import annotations

import math
from functools import cached_property, lru_cache
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..special.stickbreaking import sticks_to_simplex
from ..special.transition import LineageWindows, WindowGrid, beta_sample, draw_at_one, stats_at_one
from .base import ModelFn, NoisySample, Process
from .jacobi import JacobiProcess

_LAMBDA_GRID = 48  # time points of the lambda_i(tau) table (interpolated in log tau)


class JacobiScoreProcess(JacobiProcess, output="score"):
    """DDSM whose network regresses the normalised stick score (Avdeyev et al.'s parameterisation)."""

    final_draw = False  # a score network has no posterior to draw from: tokens are the argmax
    likelihood_bounds = ("ode",)  # the SDE bound is written for the posterior's mixture score
    classifier_guidance = "stick-score"  # guidance in score space, through stick-breaking

    def __init__(self, K: int, T: float = 10.0, t_min: float = 0.01, t_train_min: float = 0.004,
                 speed_balanced: bool = True, eps: float = 1e-5, n_train_times: int = 512,
                 output: str = "score") -> None:
        """
        Args: as for :class:`JacobiProcess`; ``n_train_times = 0`` draws continuous times. The
        lineage windows of the training grid are tabulated once per device
        (``special.transition.WindowGrid``), which spares every batch the CPU lineage computation.
        """
        if output != "score":
            raise ValueError(f"JacobiScoreProcess has output='score', got {output!r}")
        super().__init__(K, T=T, t_min=t_min, t_train_min=t_train_min, speed_balanced=speed_balanced, eps=eps,
                         n_train_times=n_train_times, output="posterior", focus=0.0, extrapolate=0.0,
                         self_condition=False)
        self.output = "score"
        self._grids: dict[tuple[int, str], WindowGrid] = {}

    # ------------------------------------------------------------------ network interface
    @property
    def in_channels(self) -> int:
        return self.K

    @property
    def out_channels(self) -> int:
        return self.K - 1

    def model_input(self, xt: Tensor, t: Tensor) -> Tensor:
        return sticks_to_simplex(xt).float()

    def model_output(self, model: ModelFn, xt: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        return Process.model_output(self, model, xt, t, cond)

    def predict_tokens(self, output: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        """A score has no x0 prediction: the simplex point's argmax (as ``decode``)."""
        return self.decode(xt)

    def drift_parts(self, model: ModelFn, v: Tensor, u: Tensor, cond: Optional[Tensor] = None, *,
                    split: bool = True) -> tuple[Tensor, Optional[Tensor]]:
        """The drift (see :meth:`JacobiProcess.drift_parts`); a score network has no local part."""
        out = self.model_output(model, v, u.float(), cond)
        return self.prob_flow_drift(self.score_from_output(out, v, self.native_time(u)), v), None

    # ------------------------------------------------------------------ score normalisation
    @property
    def _lambda_table(self) -> tuple[Tensor, Tensor]:
        """log tau grid ``(G,)`` and log lambda_i(tau) ``(G, K-1)`` (cached per configuration)."""
        return _lambda_table(self.K, self.T, self.t_train_min, self.speed_balanced)

    def lambda_(self, tau: Tensor) -> Tensor:
        """lambda_i(tau) ``(B, K-1)`` float64 by linear interpolation in log-log."""
        log_tau, log_lam = self._lambda_table
        x = torch.log(tau.double().cpu()).clamp(float(log_tau[0]), float(log_tau[-1]))
        j = torch.searchsorted(log_tau, x).clamp(1, len(log_tau) - 1)
        w = ((x - log_tau[j - 1]) / (log_tau[j] - log_tau[j - 1]))[:, None]
        return torch.exp((1 - w) * log_lam[j - 1] + w * log_lam[j]).to(tau.device)

    def score_from_output(self, output: Tensor, v: Tensor, tau: Tensor) -> Tensor:
        """Network output ``(B, L, K-1)`` -> stick score d/dv log p_tau(v), float64."""
        lam = self.lambda_(tau)[:, None, :]
        return output.double() * torch.sqrt(lam / (v * (1.0 - v)))

    def output_from_score(self, score: Tensor, v: Tensor, tau: Tensor) -> Tensor:
        lam = self.lambda_(tau)[:, None, :]
        return score * torch.sqrt(v * (1.0 - v) / lam)

    # ------------------------------------------------------------------ forward process
    def sample_time(self, batch: int, *, generator: Optional[torch.Generator] = None,
                    device: Optional[torch.device] = None) -> Tensor:
        lo = math.sqrt(self.t_train_min / self.T)
        u = Process.sample_time(self, batch, generator=generator, device=device).double()
        if self.n_train_times:  # the grid cell of each stratified uniform
            rows = (u * self.n_train_times).long().clamp_max(self.n_train_times - 1)
            return self._time_grid.to(u.device)[rows]
        return (lo + (1.0 - lo) * u).float()

    @cached_property
    def _time_grid(self) -> Tensor:
        """``(G,)`` float32 public training times: cell midpoints of [sqrt(t_train_min / T), 1]."""
        return self.train_times.float()

    def _grid_rows(self, t: Tensor) -> Optional[Tensor]:
        """Rows of the training-time grid equal to public times ``t (B,)``; None if any is off it."""
        if not self.n_train_times:
            return None
        grid = self._time_grid.to(t.device)
        tf = t.float().contiguous()
        rows = torch.searchsorted(grid, tf).clamp_max(len(grid) - 1)
        return rows if bool((grid[rows] == tf).all()) else None

    def _stick_grid(self, i: int, device: torch.device) -> WindowGrid:
        """Stick ``i``'s lineage windows at every grid time (theta = a_i + b_i), made once per device."""
        key = (i, str(device))
        if key not in self._grids:
            tau = self.native_time(self._time_grid).numpy() * float(self.speed[i])
            self._grids[key] = WindowGrid(tau, float(self.a[i] + self.b[i]), device)
        return self._grids[key]

    def _windows_of(self, rows: Optional[Tensor], L: int):
        """``windows(i, mask)`` for :meth:`conditional_score` and the draws: stick ``i``'s tabulated
        windows of the elements in ``mask`` (None when the times are off the grid)."""
        flat = None if rows is None else rows.repeat_interleave(L)

        def windows(i: int, mask: Tensor) -> Optional[LineageWindows]:
            return None if flat is None else self._stick_grid(i, flat.device).windows(flat[mask])

        return windows

    def sample_noisy(self, x0: Tensor, t: Tensor, *, generator: Optional[torch.Generator] = None) -> NoisySample:
        tau = self.native_time(t)
        B, L = x0.shape
        k = x0.reshape(-1)
        v = torch.empty(B * L, self.K - 1, dtype=torch.float64, device=x0.device)
        rows = self._grid_rows(t)
        win = self._windows_of(rows, L)
        for i, ti in enumerate(self._stick_times(tau, L)):
            a, b = float(self.a[i]), float(self.b[i])
            # stick i of category k: vertex 0 if k > i, vertex 1 if k == i, stationary if k < i
            at_one, at_zero, free = k == i, k > i, k < i
            if at_one.any():
                v[at_one, i] = draw_at_one(ti[at_one], a, b, generator=generator, windows=win(i, at_one))
            if at_zero.any():
                v[at_zero, i] = 1.0 - draw_at_one(ti[at_zero], b, a, generator=generator, windows=win(i, at_zero))
            if free.any():
                ones = torch.ones(int(free.sum()), dtype=torch.float64, device=x0.device)
                v[free, i] = beta_sample(a * ones, b * ones, generator=generator)
        v = v.reshape(B, L, self.K - 1).clamp(self.eps, 1 - self.eps)
        target = self.output_from_score(self.conditional_score(x0, v, tau, windows=win), v, tau)
        return NoisySample(xt=v, t=t, target=target.float())

    # ------------------------------------------------------------------ training
    def loss_terms(self, output: Tensor, x0: Tensor, noisy: NoisySample) -> Tensor:
        return ((output.float() - noisy.target) ** 2).sum(-1)

    def oracle_output(self, x0: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        tau = self.native_time(t)
        return self.output_from_score(self.conditional_score(x0, xt, tau), xt, tau).float()


@lru_cache(maxsize=32)
def _lambda_table(K: int, T: float, t_train_min: float, speed_balanced: bool) -> tuple[Tensor, Tensor]:
    """lambda_i(tau) on a log grid by exact Monte Carlo with a fixed seed: the table is part of the
    model's definition (it scales the network output), so it must be reproducible. Built once per
    configuration and process (a few seconds: it needs the lineage law at every grid time)."""
    gen = torch.Generator().manual_seed(1234)
    taus = torch.from_numpy(np.geomspace(t_train_min / 2, T, _LAMBDA_GRID))
    n = 512
    i = np.arange(K - 1)
    a_all, b_all = np.ones(K - 1), (K - 1 - i).astype(np.float64)
    speed = 2.0 / (a_all + b_all) if speed_balanced else np.ones(K - 1)
    cols = []
    for i in range(K - 1):
        a, b, s = float(a_all[i]), float(b_all[i]), float(speed[i])
        e_one = _vertex_fisher(taus * s, n, a, b, gen)
        e_zero = _vertex_fisher(taus * s, n, b, a, gen)
        stat = _stationary_fisher(a, b, gen)
        # x0 uniform over categories: stick i sees vertex 0 for k > i, vertex 1 for k = i,
        # and its stationary law for k < i.
        lam = ((K - 1 - i) * e_zero + e_one + i * stat) / K
        cols.append(torch.log(lam))
    return torch.log(taus), torch.stack(cols, dim=-1)


def _vertex_fisher(tau: Tensor, n: int, a: float, b: float, gen: torch.Generator) -> Tensor:
    """E[y (1 - y) (d/dy log p_tau(y | 1))^2] for each tau, by n exact draws."""
    tt = tau.repeat_interleave(n)
    y = draw_at_one(tt, a, b, generator=gen).clamp(1e-12, 1 - 1e-12)
    _, mean_m = stats_at_one(y, tt, a, b)
    score = (a - 1.0 + mean_m) / y - (b - 1.0) / (1.0 - y)
    return (y * (1 - y) * score**2).reshape(len(tau), n).mean(-1)


def _stationary_fisher(a: float, b: float, gen: torch.Generator) -> float:
    """E[y (1 - y) ((a - 1)/y - (b - 1)/(1 - y))^2] under Beta(a, b), in closed form when finite.

    = (a-1)^2 E[(1-y)/y] - 2 (a-1)(b-1) + (b-1)^2 E[y/(1-y)], with E[(1-y)/y] = b/(a-1) and
    E[y/(1-y)] = a/(b-1); a term whose coefficient vanishes is zero.
    """
    t1 = (a - 1.0) ** 2 * (b / (a - 1.0)) if a != 1.0 else 0.0
    t3 = (b - 1.0) ** 2 * (a / (b - 1.0)) if b != 1.0 else 0.0
    return max(t1 - 2 * (a - 1.0) * (b - 1.0) + t3, 1e-12)
