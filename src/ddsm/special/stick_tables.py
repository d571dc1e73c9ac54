"""Exact statistics of Jacobi sticks started at a vertex, tabulated per time for speed.

The posterior parameterisation (``ddsm.sudoku.process``) needs, for every stick of every cell at
every step, the log-density and score of the stick under each clean category. The exact
per-element computation (a Beta mixture over the lineage count M) costs one window of M per
element. All elements of a sampling step share one time, so we tabulate once per time instead:

for stick i at vertex 1 and native stick time u = s_i tau, with r = -log(y),

    log p_u(y | 1) = G(r) + (b - 1) log(1 - y),   G(r) = log sum_m q_m(u) y^(a+m-1) / B(a+m, b),
    d/dy log p_u(y | 1) = (a - 1 + E[M | y]) / y - (b - 1) / (1 - y),   dG/dr = -(a - 1 + E[M | y]);

vertex 0 is the same with (a, b) swapped and y -> 1 - y. G is tabulated exactly (log-sum-exp over
the full lineage window, as ``ddsm.special.transition`` does) on a grid in log r and read back by
cubic Hermite interpolation using its exact derivative; E[M | y] likewise, with slope -r Var(M | y). The tables are
checked against the exact code in ``tests/unit/test_sudoku.py``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .. import rng as _rng
from .lineage import lineage_weights
from .transition import beta_sample

#: log r grid: y (or 1 - y) in [exp(-12), 1 - 1e-5] covers every clamped stick (eps = 1e-5)
_LOG_R = (math.log(1e-5), math.log(12.0))
_N_R = 128
_CHUNK_CELLS = 1 << 23  # tau x window x grid cells per chunk while building (64 MiB of float64)


def _log_beta(a: Tensor, b: float) -> Tensor:
    return torch.lgamma(a) + math.lgamma(b) - torch.lgamma(a + b)


def _vertex_rows(u: np.ndarray, a: float, b: float, log_r: Tensor) -> Tensor:
    """G, dG/dlog r, E[M | y] and its d/dlog r at vertex 1 for native times ``u (n,)``:
    ``(n, n_r, 4)``."""
    start, w = lineage_weights(u, a + b)
    # Rows are padded to the widest window; regroup rows of similar width so narrow windows
    # (large times) do not pay for the widest one (small times).
    nz = w > 0
    first = np.argmax(nz, axis=1)
    width = w.shape[1] - np.argmax(nz[:, ::-1], axis=1) - first
    r = torch.exp(log_r)
    out = torch.empty(len(u), len(r), 4, dtype=torch.float64)
    order = np.argsort(width, kind="stable")
    i = 0
    while i < len(order):
        W = int(width[order[i]])
        j = i + 1
        while j < len(order) and j - i < max(1, _CHUNK_CELLS // (int(width[order[j]]) * len(r))) \
                and width[order[j]] <= 2 * W:
            j += 1
        idx = order[i:j]
        W = int(width[idx].max())
        cols = first[idx, None] + np.arange(W)[None, :]
        ww = np.take_along_axis(w[idx], np.minimum(cols, w.shape[1] - 1), axis=1)
        ww[cols >= (first[idx] + width[idx])[:, None]] = 0.0
        m = torch.from_numpy((start[idx] + first[idx])[:, None] + np.arange(W)[None, :]).double()
        with np.errstate(divide="ignore"):
            logc = torch.from_numpy(np.log(ww)) - _log_beta(a + m, b)  # (n, W)
        logits = logc[:, :, None] - (a + m[:, :, None] - 1.0) * r[None, None, :]  # (n, W, n_r)
        top = logits.amax(1, keepdim=True)
        e = torch.exp(logits.sub_(top))  # one exp pass serves both the sum and the mean
        z = e.sum(1)
        em = torch.einsum("nwr,nw->nr", e, m) / z
        var = (torch.einsum("nwr,nw->nr", e, m * m) / z - em * em).clamp_min(0.0)
        # d/dlog r of G is -r (a - 1 + E[M | y]); of E[M | y] it is -r Var(M | y)
        out[torch.from_numpy(idx)] = torch.stack(
            [top.squeeze(1) + torch.log(z), -r * (a - 1.0 + em), em, -r * var], -1)
        i = j
    return out


class StickTables:
    """Vertex statistics of all K - 1 sticks at a set of native times ``taus``.

    ``values`` is ``(n_tau, 2, K-1, n_r, 4)``: [time, vertex (1, 0), stick, log r, (G, dG/dlog r,
    E[M | y], dE[M | y]/dlog r)].
    """

    def __init__(self, taus: np.ndarray, a: np.ndarray, b: np.ndarray, speed: np.ndarray) -> None:
        self.taus = np.asarray(taus, dtype=np.float64).reshape(-1)
        self.a, self.b, self.speed = (np.asarray(x, dtype=np.float64) for x in (a, b, speed))
        self.log_r = torch.linspace(_LOG_R[0], _LOG_R[1], _N_R, dtype=torch.float64)
        per_vertex = []
        for at_one in (True, False):
            sticks = []
            for ai, bi, si in zip(self.a, self.b, self.speed):
                pa, pb = (ai, bi) if at_one else (bi, ai)
                sticks.append(_vertex_rows(self.taus * si, float(pa), float(pb), self.log_r))
            per_vertex.append(torch.stack(sticks, dim=1))  # (n_tau, K-1, n_r, 3)
        self.values = torch.stack(per_vertex, dim=1)
        self._on: dict[tuple[torch.device, int], Tensor] = {}

    def _table(self, device: torch.device, part: int) -> Tensor:
        """Channels ``2 part, 2 part + 1`` of the values (part 0: G and its slope, part 1: E[M | y]
        and its slope) as ``(n_tau * 2 * (K-1) * n_r, 2)`` rows on ``device``: training reads
        only the log-densities, so it gathers half the bytes."""
        key = (device, part)
        if key not in self._on:
            self._on[key] = self.values[..., 2 * part : 2 * part + 2].reshape(-1, 2).contiguous().to(device)
        return self._on[key]

    def _cells(self, rows: Tensor, vertex: int, r: Tensor) -> tuple[Tensor, Tensor]:
        """Flat table row of the lower end of each element's log r cell ``(N, K-1)`` long, and
        the position in that cell ``(N, K-1)`` in [0, 1]."""
        K1 = r.shape[1]
        x0, h = float(self.log_r[0]), float(self.log_r[1] - self.log_r[0])
        f = ((torch.log(r) - x0) / h).clamp(0.0, _N_R - 1.0)
        i = f.floor().long().clamp(0, _N_R - 2)
        # flat row of (time, vertex, stick, log r cell): one index_select for both cell ends
        cell = ((rows[:, None] * 2 + vertex) * K1 + torch.arange(K1, device=r.device)[None, :]) * _N_R + i
        return cell, f - i

    def _lookup(self, cells: tuple[Tensor, Tensor], part: int) -> Tensor:
        """G (``part`` 0) or E[M | y] (1) at the cells of :meth:`_cells`, by cubic Hermite
        interpolation with the exact slopes: ``(N, K-1)``."""
        cell, s = cells
        vals = self._table(cell.device, part)
        flat = cell.reshape(-1)
        lo, hi = vals.index_select(0, torch.cat([flat, flat + 1])).view(2, *cell.shape, 2).unbind(0)
        h = float(self.log_r[1] - self.log_r[0])
        # the cubic Hermite interpolant in Horner form: p0 + s (m0 + s (c2 + s c3))
        p0, d = lo[..., 0], hi[..., 0] - lo[..., 0]
        m0, m1 = lo[..., 1] * h, hi[..., 1] * h
        c3 = m0 + m1 - 2.0 * d
        c2 = d - m0 - c3
        return p0 + s * (m0 + s * (c2 + s * c3))

    def stats(self, v: Tensor, rows: Tensor, *, scores: bool = True) -> dict[str, Tensor]:
        """Per-stick statistics of sticks ``v (N, K-1)`` float64 at table times ``rows (N,)`` long.

        Returns ``(N, K-1)`` float64 tensors: ``logp_one``, ``logp_zero``, ``logp_stat`` (log
        densities of the stick at vertex 1, at vertex 0, stationary) and, with ``scores``,
        ``score_one``, ``score_zero``, ``score_stat`` (their derivatives in v). Training needs
        only the log-densities (the network's input and the loss); the sampler also the scores.
        """
        a = torch.as_tensor(self.a, device=v.device)
        b = torch.as_tensor(self.b, device=v.device)
        log_v, log_1mv = torch.log(v), torch.log1p(-v)
        c1, c0 = self._cells(rows, 0, -log_v), self._cells(rows, 1, -log_1mv)
        log_beta_ab = torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)
        out = {
            "logp_one": self._lookup(c1, 0) + (b - 1.0) * log_1mv,
            "logp_zero": self._lookup(c0, 0) + (a - 1.0) * log_v,
            "logp_stat": (a - 1.0) * log_v + (b - 1.0) * log_1mv - log_beta_ab,
        }
        if scores:
            out.update(self.scores(v, rows, cells=(c1, c0)))
        return out

    def scores(self, v: Tensor, rows: Tensor, *, cells: Optional[tuple] = None) -> dict[str, Tensor]:
        """The ``score_*`` entries of :meth:`stats` alone (``cells``: that call's, if at hand)."""
        a = torch.as_tensor(self.a, device=v.device)
        b = torch.as_tensor(self.b, device=v.device)
        c1, c0 = cells if cells is not None else (self._cells(rows, 0, -torch.log(v)),
                                                   self._cells(rows, 1, -torch.log1p(-v)))
        m1, m0 = self._lookup(c1, 1), self._lookup(c0, 1)
        return {
            "score_one": (a - 1.0 + m1) / v - (b - 1.0) / (1.0 - v),
            "score_zero": (a - 1.0) / v - (b - 1.0 + m0) / (1.0 - v),
            "score_stat": (a - 1.0) / v - (b - 1.0) / (1.0 - v),
        }


class TableCache:
    """StickTables for single times, built on first use and kept (least recently used dropped).

    Sampling asks for the same times batch after batch, so each time is tabulated once.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, speed: np.ndarray, max_entries: int = 1024) -> None:
        self.a, self.b, self.speed = a, b, speed
        self.max_entries = max_entries
        self._cache: OrderedDict[float, StickTables] = OrderedDict()

    def get(self, tau: float) -> StickTables:
        key = float(tau)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        table = StickTables(np.array([key]), self.a, self.b, self.speed)
        self._cache[key] = table
        if len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return table

    def prepare(self, taus: np.ndarray) -> None:
        """Tabulate many times in one vectorised pass (e.g. a whole sampling grid)."""
        todo = sorted({float(t) for t in np.asarray(taus).reshape(-1)} - set(self._cache))
        if not todo:
            return
        bank = StickTables(np.array(todo), self.a, self.b, self.speed)
        for j, t in enumerate(todo):
            one = StickTables.__new__(StickTables)
            one.taus, one.a, one.b, one.speed = np.array([t]), bank.a, bank.b, bank.speed
            one.log_r, one.values, one._on = bank.log_r, bank.values[j : j + 1].clone(), {}
            self._cache[t] = one
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)


class LineageQuantiles:
    """Quantiles of the lineage count M of every stick at a fixed set of native times, for draws.

    Drawing M as one of ``n_q`` equally likely quantiles, then y ~ Beta, is an exact draw from the
    transition law with M's law discretised to ``n_q`` quantiles.
    """

    def __init__(self, taus: np.ndarray, a: np.ndarray, b: np.ndarray, speed: np.ndarray, n_q: int = 1024) -> None:
        levels = (np.arange(n_q) + 0.5) / n_q
        tables = []
        for ai, bi, si in zip(a, b, speed):
            start, w = lineage_weights(np.asarray(taus, dtype=np.float64) * float(si), float(ai + bi))
            cdf = np.cumsum(w, axis=1)
            cdf /= cdf[:, -1:]
            idx = np.stack([np.searchsorted(row, levels) for row in cdf])
            tables.append(start[:, None] + np.minimum(idx, w.shape[1] - 1))
        self.m = torch.from_numpy(np.stack(tables, axis=1))  # (G, K-1, n_q) long
        self.n_q = n_q
        self._on: dict[torch.device, Tensor] = {}

    def draw_m(self, rows: Tensor, *, generator: Optional[torch.Generator] = None) -> Tensor:
        """Lineage counts at time rows ``rows (N,)``: ``(N, K-1)`` float64 on ``rows``' device."""
        dev = rows.device
        if dev not in self._on:
            self._on[dev] = self.m.to(dev)
        m = self._on[dev]
        q = torch.randint(0, self.n_q, (rows.shape[0], m.shape[1]), generator=generator).to(dev)
        sticks = torch.arange(m.shape[1], device=dev)[None, :].expand_as(q)
        return m[rows[:, None].expand_as(q), sticks, q].double()


def draw_sticks(x0: Tensor, m: Tensor, a: np.ndarray, b: np.ndarray, *,
                generator: Optional[torch.Generator] = None) -> Tensor:
    """Exact draw of sticks given clean categories and lineage counts.

    Args:
        x0: ``(N,)`` long categories in [0, K).
        m: ``(N, K-1)`` float64 lineage counts of each stick (unused for stationary sticks).
    Returns:
        ``(N, K-1)`` float64: stick i is Beta(a + M, b) if x0 == i, 1 - Beta(b + M, a) if x0 > i,
        and Beta(a, b) (stationary: it never sees the data) if x0 < i.
    """
    ai = torch.as_tensor(a, dtype=torch.float64, device=m.device).expand_as(m)
    bi = torch.as_tensor(b, dtype=torch.float64, device=m.device).expand_as(m)
    i = torch.arange(m.shape[1], device=m.device)[None, :]
    k = x0[:, None]
    one, zero = k == i, k > i
    # one Beta draw per element, parameters chosen per case, flipped where at vertex 0
    alpha = torch.where(one, ai + m, torch.where(zero, bi + m, ai))
    beta = torch.where(one, bi, torch.where(zero, ai, bi))
    y = beta_sample(alpha, beta, generator=generator)
    return torch.where(zero, 1.0 - y, y)


class LineageDraws:
    """Exact draws of the lineage count M of every stick at a fixed set of native times.

    Row g, stick i holds the CDF of M ~ q(s_i tau_g; a_i + b_i) over its whole window (every
    non-zero weight). All (time, stick) CDFs are shifted into disjoint unit intervals and
    flattened, so one ``searchsorted`` draws M for every element and stick at once: no Python
    loop over sticks, which at K = 65 was most of the cost of a training batch.

    Args:
        taus: ``(G,)`` native times; a, b, speed: ``(K-1,)`` stick parameters.
    """

    def __init__(self, taus: np.ndarray, a: np.ndarray, b: np.ndarray, speed: np.ndarray) -> None:
        taus = np.asarray(taus, dtype=np.float64).reshape(-1)
        starts, cdfs = [], []
        for ai, bi, si in zip(a, b, speed):
            start, w = lineage_weights(taus * float(si), float(ai + bi))
            cdf = np.cumsum(w, axis=1)
            cdfs.append(cdf / cdf[:, -1:])
            starts.append(start)
        W = max(c.shape[1] for c in cdfs)
        # pad each CDF with ones to the common width: a uniform in [0, 1) never lands on the pad
        cdf = np.stack([np.pad(c, ((0, 0), (0, W - c.shape[1])), constant_values=1.0) for c in cdfs], axis=1)
        self.G, self.K1, self.W = len(taus), len(starts), W
        self.start = torch.from_numpy(np.stack(starts, axis=1).astype(np.float64))  # (G, K-1)
        offsets = 2.0 * np.arange(self.G * self.K1, dtype=np.float64).reshape(self.G, self.K1, 1)
        self.shifted = torch.from_numpy(np.minimum(cdf, 1.0) + offsets).reshape(-1)  # (G * (K-1) * W,)
        self._on: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def draw_m(self, rows: Tensor, *, generator: Optional[torch.Generator] = None) -> Tensor:
        """Lineage counts ``(N, K-1)`` float64 for elements at time rows ``rows (N,)`` long.

        Uniforms come from the CPU ``generator`` (draws do not depend on the device)."""
        dev = rows.device
        if dev not in self._on:
            self._on[dev] = (self.start.to(dev), self.shifted.to(dev))
        start, shifted = self._on[dev]
        cell = rows[:, None] * self.K1 + torch.arange(self.K1, device=dev)[None, :]  # (N, K-1)
        u = _rng.rand(cell.shape, generator=generator, dtype=torch.float64).to(dev)
        pos = torch.searchsorted(shifted, (u + 2.0 * cell).reshape(-1)).reshape(cell.shape)
        j = (pos - cell * self.W).clamp(0, self.W - 1)
        return start[rows] + j.double()
