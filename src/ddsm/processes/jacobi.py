"""DDSM: Jacobi diffusion on the simplex via stick-breaking (Avdeyev et al., ICML 2023).

K - 1 independent Jacobi diffusions v_i with a_i = 1, b_i = K - 1 - i (0-based) mapped by
stick-breaking to the simplex have the flat Dirichlet as stationary law. Each stick runs at speed
s_i (``speed_balanced``: s_i = 2 / (a_i + b_i), so every stick's slowest mode decays as e^-tau).

Clocks: public t in [0, 1] maps to native tau = T t^2. Uniform public times are therefore
tau^(-1/2)-distributed, which is the DDSM promoter recipe's importance sampling (density
proportional to sqrt(lambda), lambda ~ 1/tau), and the sampling grid is uniform in t, i.e. finer
near the data where the score changes fastest.

Network output (``out_channels = K - 1``) is the *normalised* stick score
    o_i = sqrt(v_i (1 - v_i) / lambda_i(tau)) * d/dv_i log p_tau(v),
where lambda_i(tau) = E[v_i (1 - v_i) (d/dv_i log p_tau(v_i | x0))^2] (x0 uniform over categories).
The DDSM loss sum_i v_i (1 - v_i) (s_theta - s)^2 / lambda_i(tau) is then a plain squared error on
o, with a unit-scale target at every time: the same objective, better conditioned.

The state is the sticks ``v (B, L, K-1)`` in float64 (``state_kind = "sticks"``); the network
sees the simplex point ``x (B, L, K)``.
"""

from __future__ import annotations

import math
from functools import cached_property, lru_cache
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .. import rng as _rng

from ..special.stickbreaking import sticks_to_simplex
from ..special.transition import LineageWindows, WindowGrid, beta_sample, draw_at_one, stats_at_one
from .base import ModelFn, NoisySample, Process

_LAMBDA_GRID = 48  # time points of the lambda_i(tau) table (interpolated in log tau)


class JacobiProcess(Process):
    """Dirichlet diffusion score model: Jacobi diffusions on stick-broken simplex coordinates."""

    name = "jacobi"
    description = "DDSM: Jacobi diffusion on the simplex (stick-breaking), exact transition law, reverse SDE"
    state_kind = "sticks"
    supports_dilation = True

    def __init__(self, K: int, T: float = 10.0, t_min: float = 0.01, t_train_min: float = 0.004,
                 speed_balanced: bool = True, eps: float = 1e-5, n_train_times: int = 512) -> None:
        """
        Args:
            K: number of categories.
            T: largest native time (prior); all sticks are within e^-T of stationarity at T.
            t_min: native time where sampling stops (and where likelihoods are evaluated).
            t_train_min: smallest native training time.
            speed_balanced: stick speeds 2 / (a_i + b_i) instead of 1.
            eps: sticks are clamped to [eps, 1 - eps] during sampling.
            n_train_times: training times are drawn (stratified) from this many fixed public times,
                whose exact lineage tables are made once per device; 0 draws continuous times.
                The law at each time is exact either way; the grid only makes the time integral
                of the loss a fine quadrature, and spares every batch the CPU lineage computation
                (several times the network's own step on a GPU).
        """
        super().__init__(K)
        if not 0 < t_train_min <= t_min < T:
            raise ValueError(f"jacobi process needs 0 < t_train_min <= t_min < T, got "
                             f"t_train_min={t_train_min}, t_min={t_min}, T={T}")
        if not 0 < eps < 0.5:
            raise ValueError(f"jacobi process needs 0 < eps < 0.5, got {eps}")
        if int(n_train_times) != n_train_times or n_train_times < 0:
            raise ValueError(f"jacobi process needs an integer n_train_times >= 0, got {n_train_times}")
        self.n_train_times = int(n_train_times)
        self._grids: dict[tuple[int, str], WindowGrid] = {}
        self.T, self.t_min, self.t_train_min = float(T), float(t_min), float(t_train_min)
        self.speed_balanced, self.eps = bool(speed_balanced), float(eps)
        i = np.arange(K - 1)
        self.a = np.ones(K - 1)
        self.b = (K - 1 - i).astype(np.float64)
        self.speed = 2.0 / (self.a + self.b) if speed_balanced else np.ones(K - 1)

    # ------------------------------------------------------------------ clocks
    def native_time(self, t: Tensor) -> Tensor:
        """Public t (B,) -> native tau (B,) float64."""
        return self.T * t.double() ** 2

    def public_time(self, tau: Tensor) -> Tensor:
        return torch.sqrt(tau.double() / self.T)

    # ------------------------------------------------------------------ network interface
    @property
    def in_channels(self) -> int:
        return self.K

    @property
    def out_channels(self) -> int:
        return self.K - 1

    def model_input(self, xt: Tensor, t: Tensor) -> Tensor:
        return sticks_to_simplex(xt).float()

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
    def prior(self, shape: tuple[int, int], *, generator: Optional[torch.Generator] = None,
              device: Optional[torch.device] = None) -> Tensor:
        a = torch.as_tensor(self.a, dtype=torch.float64, device=device).expand(*shape, self.K - 1)
        b = torch.as_tensor(self.b, dtype=torch.float64, device=device).expand(*shape, self.K - 1)
        return beta_sample(a, b, generator=generator).clamp(self.eps, 1 - self.eps)

    def sample_time(self, batch: int, *, generator: Optional[torch.Generator] = None,
                    device: Optional[torch.device] = None) -> Tensor:
        lo = math.sqrt(self.t_train_min / self.T)
        u = super().sample_time(batch, generator=generator, device=device).double()
        if self.n_train_times:  # the grid cell of each stratified uniform
            rows = (u * self.n_train_times).long().clamp_max(self.n_train_times - 1)
            return self._time_grid.to(u.device)[rows]
        return (lo + (1.0 - lo) * u).float()

    @cached_property
    def _time_grid(self) -> Tensor:
        """``(G,)`` float32 public training times: cell midpoints of [sqrt(t_train_min / T), 1]."""
        lo = math.sqrt(self.t_train_min / self.T)
        g = torch.arange(self.n_train_times, dtype=torch.float64)
        return (lo + (1.0 - lo) * (g + 0.5) / self.n_train_times).float()

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

    def _windows(self, i: int, rows: Optional[Tensor], mask: Tensor) -> Optional[LineageWindows]:
        """Stick ``i``'s tabulated windows for the elements in ``mask``, given every element's
        training-grid row ``rows (B * L,)``; None when the times are off the grid (the windows are
        then computed from the times)."""
        return None if rows is None else self._stick_grid(i, rows.device).windows(rows[mask])

    def _stick_times(self, tau: Tensor, L: int) -> list[Tensor]:
        """Per stick, the native time of every element ``(B * L,)`` (speed s_i times tau)."""
        flat = tau.double().repeat_interleave(L)
        return [flat * float(sp) for sp in self.speed]

    def sample_noisy(self, x0: Tensor, t: Tensor, *, generator: Optional[torch.Generator] = None) -> NoisySample:
        tau = self.native_time(t)
        B, L = x0.shape
        k = x0.reshape(-1)
        v = torch.empty(B * L, self.K - 1, dtype=torch.float64, device=x0.device)
        rows = self._grid_rows(t)
        flat_rows = None if rows is None else rows.repeat_interleave(L)
        for i, ti in enumerate(self._stick_times(tau, L)):
            a, b = float(self.a[i]), float(self.b[i])
            # stick i of category k: vertex 0 if k > i, vertex 1 if k == i, stationary if k < i
            at_one, at_zero, free = k == i, k > i, k < i
            if at_one.any():
                v[at_one, i] = draw_at_one(ti[at_one], a, b, generator=generator,
                                           windows=self._windows(i, flat_rows, at_one))
            if at_zero.any():
                v[at_zero, i] = 1.0 - draw_at_one(ti[at_zero], b, a, generator=generator,
                                                  windows=self._windows(i, flat_rows, at_zero))
            if free.any():
                ones = torch.ones(int(free.sum()), dtype=torch.float64, device=x0.device)
                v[free, i] = beta_sample(a * ones, b * ones, generator=generator)
        v = v.reshape(B, L, self.K - 1).clamp(self.eps, 1 - self.eps)
        target = self.output_from_score(self.conditional_score(x0, v, tau, rows=rows), v, tau)
        return NoisySample(xt=v, t=t, target=target.float())

    def conditional_score(self, x0: Tensor, v: Tensor, tau: Tensor, *, rows: Optional[Tensor] = None) -> Tensor:
        """Exact d/dv log q_tau(v | x0), ``(B, L, K-1)`` float64.

        ``rows``: the training-grid rows of the times, when they lie on it (tabulated windows)."""
        B, L = x0.shape
        k = x0.reshape(-1)
        vf = v.reshape(B * L, self.K - 1)
        out = torch.empty_like(vf)
        flat_rows = None if rows is None else rows.repeat_interleave(L)
        for i, ti in enumerate(self._stick_times(tau, L)):
            a, b = float(self.a[i]), float(self.b[i])
            y = vf[:, i]
            out[:, i] = (a - 1.0) / y - (b - 1.0) / (1.0 - y)  # stationary sticks (k < i)
            at_one, at_zero = k == i, k > i
            if at_one.any():
                y1 = y[at_one]
                _, mm = stats_at_one(y1, ti[at_one], a, b, windows=self._windows(i, flat_rows, at_one))
                out[at_one, i] = (a - 1.0 + mm) / y1 - (b - 1.0) / (1.0 - y1)
            if at_zero.any():
                y0 = y[at_zero]
                _, mm = stats_at_one(1.0 - y0, ti[at_zero], b, a, windows=self._windows(i, flat_rows, at_zero))
                out[at_zero, i] = (a - 1.0) / y0 - (b - 1.0 + mm) / (1.0 - y0)
        return out.reshape(B, L, self.K - 1)

    def conditional_logpdf_all(self, v: Tensor, tau: Tensor) -> Tensor:
        """log q_tau(v | k) for every category k: ``(B, L, K)`` float64 (sticks factorise)."""
        B, L, _ = v.shape
        vf = v.reshape(B * L, self.K - 1)
        zero, one, stat = [], [], []
        for i, ti in enumerate(self._stick_times(tau, L)):
            a, b = float(self.a[i]), float(self.b[i])
            y = vf[:, i]
            one.append(stats_at_one(y, ti, a, b)[0])
            zero.append(stats_at_one(1.0 - y, ti, b, a)[0])
            stat.append(torch.distributions.Beta(a, b).log_prob(y))
        zero_t, one_t, stat_t = (torch.stack(z, -1).reshape(B, L, -1) for z in (zero, one, stat))
        # category k: sticks i < k at vertex 0, stick k at vertex 1, sticks i > k stationary.
        pad = torch.zeros_like(zero_t[..., :1])
        zero_before = torch.cat([pad, torch.cumsum(zero_t, -1)], -1)  # sum_{i<k}, k = 0..K-1
        stat_from = torch.cat([torch.flip(torch.cumsum(torch.flip(stat_t, [-1]), -1), [-1]), pad], -1)
        stat_after = torch.cat([stat_from[..., 1:], pad], -1)  # sum_{i>k}
        one_at = torch.cat([one_t, pad], -1)  # k = K-1 has no stick of its own
        return zero_before + one_at + stat_after

    def stationary_logpdf(self, v: Tensor) -> Tensor:
        """log density of the prior (product of Beta(a_i, b_i)) of sticks ``v (B, L, K-1)`` -> ``(B,)``."""
        a = torch.as_tensor(self.a, dtype=v.dtype, device=v.device)
        b = torch.as_tensor(self.b, dtype=v.dtype, device=v.device)
        return torch.distributions.Beta(a, b).log_prob(v).sum((-1, -2))

    # ------------------------------------------------------------------ training
    def loss_terms(self, output: Tensor, x0: Tensor, noisy: NoisySample) -> Tensor:
        return ((output.float() - noisy.target) ** 2).sum(-1)

    def oracle_output(self, x0: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        tau = self.native_time(t)
        return self.output_from_score(self.conditional_score(x0, xt, tau), xt, tau).float()

    # ------------------------------------------------------------------ reverse process
    def time_grid(self, steps: int, *, device: Optional[torch.device] = None) -> Tensor:
        return torch.linspace(1.0, math.sqrt(self.t_min / self.T), steps + 1, device=device)

    def _stick_params(self, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        as_t = lambda arr: torch.as_tensor(arr, dtype=torch.float64, device=v.device)  # noqa: E731
        return as_t(self.a), as_t(self.b), as_t(self.speed)

    def step(self, output: Tensor, xt: Tensor, t: Tensor, s: Tensor, *,
             generator: Optional[torch.Generator] = None, dilation: float = 1.0) -> Tensor:
        """Euler-Maruyama step of the reverse SDE from tau(t) to tau(s) (times ``dilation``).

        dv = s_i [ (a (1 - v) - b v) / 2 - (1 - 2 v) - v (1 - v) score ] (-dtau)
             + sqrt(s_i dtau v (1 - v)) dW
        """
        v = xt
        tau = self.native_time(t)
        dtau = ((tau - self.native_time(s)) * dilation)[:, None, None]
        a, b, sp = self._stick_params(v)
        score = self.score_from_output(output, v, tau)
        drift = sp * (0.5 * (a * (1 - v) - b * v) - (1 - 2 * v) - v * (1 - v) * score)
        noise = _rng.randn(v.shape, generator=generator, dtype=torch.float64, device="cpu").to(v.device)
        v = v - drift * dtau + torch.sqrt(sp * dtau * v * (1 - v)) * noise
        return v.clamp(self.eps, 1 - self.eps)

    def impose(self, xt: Tensor, x0: Tensor, known: Tensor, t: Tensor, *,
               generator: Optional[torch.Generator] = None) -> Tensor:
        """Replace known positions by an exact draw of q_tau(v | x0): the network then sees them
        as it saw data in training, unlike a reset to the clean vertex."""
        fresh = self.sample_noisy(x0.clamp(0, self.K - 1), t, generator=generator).xt
        return torch.where(known[..., None], fresh, xt)

    def decode(self, xt: Tensor) -> Tensor:
        return sticks_to_simplex(xt).argmax(-1)

    def is_valid(self, xt: Tensor) -> bool:
        return (xt.dim() == 3 and xt.shape[-1] == self.K - 1 and xt.dtype == torch.float64
                and bool(((xt > 0) & (xt < 1)).all()))

    # ------------------------------------------------------------------ likelihood
    def bits_per_token(self, model: ModelFn, x0: Tensor, *, cond: Optional[Tensor] = None,
                       pad_mask: Optional[Tensor] = None, generator: Optional[torch.Generator] = None,
                       steps: int = 100, divergence: str = "hutchinson", t_start: Optional[float] = None) -> Tensor:
        """Upper bound on -log2 P(x0) per token from the probability-flow ODE.

        -log P(x0) <= E_{v ~ q(v | x0, tau0)} [ -log p_theta,tau0(v) + sum_l log sum_k q(v_l | k, tau0) ]
        (a variational bound with the Bayes decoder r(x0 | v) under a uniform prior); the
        continuous log-density comes from the instantaneous change of variables along the ODE
        from tau0 to T, plus the stationary prior at T.

        ``t_start``: the native time tau0 (default ``t_min``). Every tau0 in (0, T) gives a valid
        bound: a later start loses a little in the decoder term (the noisy state names x0 less
        sharply) but skips the vertices, where a briefly trained network's score is worst. Choose
        it on held-out data, not on the sequences being scored.
        """
        from ..sampling.likelihood import ode_log_density

        if pad_mask is not None and not bool(pad_mask.all()):
            raise ValueError("likelihoods of padded sequences are not supported by the jacobi process")
        tau0 = self.t_min if t_start is None else float(t_start)
        if not 0.0 < tau0 < self.T:
            raise ValueError(f"t_start must be a native time in (0, T = {self.T}), got {t_start}")
        B, L = x0.shape
        t0 = torch.full((B,), math.sqrt(tau0 / self.T), dtype=torch.float64, device=x0.device)
        v0 = self.sample_noisy(x0, t0, generator=generator).xt
        log_p = ode_log_density(self, model, v0, t0, cond=cond, steps=steps, divergence=divergence,
                                generator=generator)
        log_norm = torch.logsumexp(self.conditional_logpdf_all(v0, self.native_time(t0)), dim=-1).sum(-1)
        nll = -log_p + log_norm
        return nll / (L * math.log(2.0))

    def prob_flow_drift(self, score: Tensor, v: Tensor) -> Tensor:
        """Native-time drift of the probability-flow ODE (forward in tau), ``(B, L, K-1)``:
        s_i [ (a (1 - v) - b v) / 2 - (1 - 2 v) / 2 - v (1 - v) score / 2 ]."""
        a, b, sp = self._stick_params(v)
        return sp * (0.5 * (a * (1 - v) - b * v) - 0.5 * (1 - 2 * v) - 0.5 * v * (1 - v) * score)


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
