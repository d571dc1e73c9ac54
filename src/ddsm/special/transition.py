"""Exact transition law of one Jacobi (Wright-Fisher) diffusion started at a vertex.

    dx = (1/2) [a (1 - x) - b x] dt + sqrt(x (1 - x)) dW          (native clock, speed 1)

Started at x0 = 1, x_t is the Beta mixture sum_m q_m(t) Beta(a + m, b), with q the lineage law of
``ddsm.special.lineage``; started at x0 = 0 it is sum_m q_m(t) Beta(a, b + m) (the law of 1 - x
with a and b swapped). Sampling draws M ~ q(t) then a Beta; density and score sum over the window
of m that carries the mass. Everything is float64.

The core works on flat element lists with one time per element. Times repeat (one per sequence in
training), so lineage windows are computed once per unique time; elements are processed in groups
of similar window width, so a batch mixing tiny and large times does not pay the widest window
everywhere.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .. import rng as _rng
from .lineage import T_NORMAL, lineage_weights, normal_count

_MAX_CELLS = 1 << 21  # element x window cells per group: bounds memory at about 16 MiB
_WIDTH_RATIO = 1.25  # widths in one group differ by at most this factor (padding <= 25 %)


class LineageWindows:
    """Lineage windows for a list of elements: one row per distinct time, elements point to rows.

    Attributes:
        m: ``(U, W)`` float64 lineage counts; logw: ``(U, W)`` log-probabilities (-inf padding);
        w: ``(U, W)`` probabilities; width: ``(U,)`` used width of each row; inv: ``(N,)`` element
        -> row; cache: per-row tables derived from these (shared by all windows of one grid).
    """

    def __init__(self, m: Tensor, logw: Tensor, w: Tensor, width: Tensor, inv: Tensor,
                 cache: Optional[dict] = None) -> None:
        self.m, self.logw, self.w, self.width, self.inv = m, logw, w, width, inv
        self.cache = {} if cache is None else cache

    def derived(self, key: tuple, make) -> Tensor:
        """``make()`` of the rows, computed once per key (per grid, for a grid's windows)."""
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    @classmethod
    def of_times(cls, t: Tensor, theta: float) -> "LineageWindows":
        """Windows for the unique values among element times ``t (N,)`` (computed on the CPU)."""
        uniq, inv = np.unique(t.detach().double().cpu().numpy(), return_inverse=True)
        m, logw, w, width = _window_tensors(uniq, theta, t.device)
        return cls(m, logw, w, width, torch.from_numpy(inv.reshape(-1)).to(t.device))

    def groups(self):
        """Yield ``(elements, width)``: element indices whose window widths lie within a factor
        ``_WIDTH_RATIO`` of each other (on the CPU), each group holding at most ``_MAX_CELLS``
        element x window cells. A group is padded to its widest window, so mixing widths (14 to
        300 on the training grid) would otherwise make most of the CPU's arithmetic padding."""
        ew = self.width[self.inv]
        order = torch.argsort(ew)
        sorted_w = ew[order]
        if ew.device.type == "cpu":
            # bucket b holds widths in (r^(b-1), r^b]; buckets are runs of the sorted order
            bucket = torch.ceil(torch.log(sorted_w.double()) / np.log(_WIDTH_RATIO)).long()
            counts = torch.unique_consecutive(bucket, return_counts=True)[1].tolist()
        else:
            # On an accelerator padding is nearly free and every group costs ~10 kernel launches,
            # which dominated the H100 step before: keep groups as large as the cell budget allows.
            counts = [len(order)]
        i = 0
        for n in counts:
            end = i + n
            while i < end:
                # widths grow along the order, so the widest of a chunk is its last element
                j = min(end, i + max(1, _MAX_CELLS // int(sorted_w[min(end, i + _MAX_CELLS) - 1])))
                yield order[i:j], int(sorted_w[j - 1])
                i = j


def _window_tensors(times: np.ndarray, theta: float, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``m, logw, w, width`` (see :class:`LineageWindows`) of native ``times (U,)`` on ``device``."""
    start, w = _trimmed_weights(times, theta)
    m = torch.from_numpy(start[:, None] + np.arange(w.shape[1])[None, :]).to(device, torch.float64)
    with np.errstate(divide="ignore"):
        logw = torch.from_numpy(np.log(w)).to(device)
    width = torch.from_numpy(w.shape[1] - np.argmax(w[:, ::-1] > 0, axis=1)).to(device)
    return m, logw, torch.from_numpy(w).to(device), width


class WindowGrid:
    """Lineage windows of a fixed grid of native times, tabulated once and kept on one device.

    Training draws its times from such a grid (``JacobiProcess(n_train_times=G)``): then no batch
    needs lineage weights computed on the CPU and copied over, which on a GPU cost several times
    the network's own step. The law at each grid time is still the exact one.

    Args:
        times: ``(G,)`` native times; theta: a + b of the diffusion; device: where the tables live.
    """

    def __init__(self, times: np.ndarray, theta: float, device: torch.device) -> None:
        self.times = np.asarray(times, dtype=np.float64)
        self.m, self.logw, self.w, self.width = _window_tensors(self.times, float(theta), torch.device(device))
        self.cache: dict = {}

    def windows(self, rows: Tensor) -> LineageWindows:
        """Windows of elements at grid rows ``rows (N,)`` long (on the grid's device)."""
        return LineageWindows(self.m, self.logw, self.w, self.width, rows, self.cache)


_CACHE: dict[tuple[float, bytes], tuple[np.ndarray, np.ndarray]] = {}


def _trimmed_weights(uniq: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """``lineage_weights`` with each row cut to the m carrying non-zero mass, re-packed left. The last
    few results are memoised because sampling and scoring one batch ask for the same times twice."""
    key = (float(theta), uniq.tobytes())
    if key in _CACHE:
        return _CACHE[key]
    start, w = lineage_weights(uniq, theta)
    # Keep every non-zero weight. A cut at 1e-18 of the peak (as before) is NOT harmless: in the
    # tails of y the Beta density of a low-weight component can exceed the peak component's by
    # far more than 1e18, so it dominates the mixture there. With the cut, at t = 0.05,
    # (a, b) = (1, 3): log-density off by 1e-2 .. 0.8 (relative) at y = 0.07 / 0.93 / 0.98 and the
    # score by 0.5% .. 31%, versus 3e-11 without it (tests/unit/test_transition.py, spectral mp
    # ground truth); 1e5 draws + scores took the same time either way.
    keep = w > 0.0
    first = np.argmax(keep, axis=1)
    last = w.shape[1] - np.argmax(keep[:, ::-1], axis=1)
    width = int((last - first).max())
    cols = first[:, None] + np.arange(width)[None, :]
    packed = np.take_along_axis(w, np.minimum(cols, w.shape[1] - 1), axis=1)
    packed[cols >= last[:, None]] = 0.0
    packed /= packed.sum(axis=1, keepdims=True)
    if len(_CACHE) >= 64:  # a draw and the score of the same draw meet again (one entry per time bucket)
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = (start + first, packed)
    return _CACHE[key]


_LOG_BETA: dict[tuple[float, float, torch.device], Tensor] = {}


def _log_beta_counts(m: Tensor, a: float, b: float) -> Tensor:
    """log B(a + m, b) for integer lineage counts ``m`` (float64 of any shape), from a table of
    m = 0, 1, ... per (a, b), grown on demand: three lgamma per window cell were most of the
    cost of a score at distinct times (windows of hundreds of counts each)."""
    key = (float(a), float(b), m.device)
    need = int(m.max().item()) + 1 if m.numel() else 1
    table = _LOG_BETA.get(key)
    if table is None or table.shape[0] < need:
        n = max(need, 2 * (0 if table is None else table.shape[0]), 1024)
        grid = torch.arange(n, dtype=torch.float64, device=m.device)
        table = torch.lgamma(a + grid) + math.lgamma(b) - torch.lgamma(a + b + grid)
        _LOG_BETA[key] = table
    return table[m.long()]


#: times within this factor share a bucket when windows are computed from the times (window widths
#: scale like t^(-1/2), so a bucket's widths differ by about sqrt(_TIME_RATIO))
_TIME_RATIO = 1.5


def _time_buckets(t: Tensor) -> list[Tensor]:
    """Element indices grouped by time bucket (log t in steps of ``_TIME_RATIO``), on the CPU.

    Elements at many distinct times (one per element) otherwise share one window table padded to
    the widest window of all of them (t = 1e-3 needs thousands of lineage counts, t = 4 a few), so
    nearly all of the arithmetic was padding."""
    key = torch.floor(torch.log(t.detach().double().cpu()) / np.log(_TIME_RATIO)).long()
    order = torch.argsort(key, stable=True)
    counts = torch.unique_consecutive(key[order], return_counts=True)[1].tolist()
    return list(torch.split(order.to(t.device), counts))


def stats_at_one(y: Tensor, t: Tensor, a: float, b: float, *,
                 windows: Optional[LineageWindows] = None) -> tuple[Tensor, Tensor]:
    """log p_t(y | 1) and the posterior mean E[M | y] of the lineage count.

    Args:
        y: ``(N,)`` float64 in (0, 1); t: ``(N,)`` native times; a, b: Jacobi parameters.
        windows: the elements' lineage windows when already tabulated (a :class:`WindowGrid`'s,
            for theta = a + b and the times ``t``); computed from ``t`` otherwise.
    Returns:
        ``logp (N,)`` and ``mean_m (N,)``; the score is (a - 1 + mean_m) / y - (b - 1) / (1 - y).
    """
    if windows is None:
        buckets = _time_buckets(t)
        if len(buckets) > 1:
            logp, mean_m = torch.empty_like(y), torch.empty_like(y)
            for idx in buckets:
                logp[idx], mean_m[idx] = stats_at_one(y[idx], t[idx], a, b,
                                                      windows=LineageWindows.of_times(t[idx], a + b))
            return logp, mean_m
    win = windows if windows is not None else LineageWindows.of_times(t, a + b)
    # log q_m - log B(a + m, b): per unique time, independent of y
    const = win.derived(("const", a, b), lambda: win.logw - _log_beta_counts(win.m, a, b))
    logp = torch.empty_like(y)
    mean_m = torch.empty_like(y)
    logy, log1my = torch.log(y), torch.log1p(-y)
    for idx, w in win.groups():
        u = win.inv[idx]
        start = win.m[u, 0]  # a window is the run start, start + 1, ... of lineage counts
        j = torch.arange(w, dtype=torch.float64, device=y.device)
        # Only the part that varies along the window goes through the (elements x window) arrays:
        # (a - 1 + start) log y and (b - 1) log(1 - y) are the same for every m of an element.
        logits = const[u, :w] + j * logy[idx, None]
        top = logits.max(-1, keepdim=True).values
        e = torch.exp(logits - top)
        z = e.sum(-1)
        logp[idx] = top.squeeze(-1) + torch.log(z) + (a - 1.0 + start) * logy[idx] + (b - 1.0) * log1my[idx]
        mean_m[idx] = start + (e * j).sum(-1) / z
    return logp, mean_m


def numpy_rng(generator: Optional[torch.Generator]) -> np.random.Generator:
    """A NumPy generator seeded from ``generator`` so one torch seed controls NumPy draws too."""
    seed = _rng.randint(0, 2**62, (1,), generator=generator).item()
    return np.random.default_rng(seed)


def beta_sample(alpha: Tensor, beta: Tensor, *, generator: Optional[torch.Generator] = None) -> Tensor:
    """Beta(alpha, beta) draws of ``alpha``'s shape and device, float64.

    On the CPU: NumPy's sampler seeded from ``generator`` (torch has no seeded gamma sampler). On an
    accelerator: torch's gamma sampler on the device, Beta = Ga / (Ga + Gb), so the draws stay on
    the device; they follow torch's global seed for that device (set by the CLI's ``--seed``),
    since torch's gamma sampler takes no generator.
    """
    alpha, beta = torch.broadcast_tensors(alpha.double(),
                                          torch.as_tensor(beta, dtype=torch.float64, device=alpha.device))
    if alpha.device.type == "cpu":
        y = numpy_rng(generator).beta(alpha.numpy(), beta.numpy())
        return torch.from_numpy(np.asarray(y, dtype=np.float64)).reshape(alpha.shape)
    ga, gb = torch._standard_gamma(alpha), torch._standard_gamma(beta)
    return ga / (ga + gb)


def draw_at_one(t: Tensor, a: float, b: float, *, generator: Optional[torch.Generator] = None,
                windows: Optional[LineageWindows] = None) -> Tensor:
    """Exact draws of x_t | x0 = 1 for element times ``t (N,)`` native: ``(N,)`` float64.

    ``windows``: as in :func:`stats_at_one`."""
    if windows is None:
        # one uniform per element in element order first, so the draws do not depend on the bucketing
        u = _uniform(t.shape[0], t.device, generator)
        M = torch.empty(t.shape[0], dtype=torch.float64, device=t.device)
        small = t < T_NORMAL
        if small.any():
            # the normal regime's law is inverted directly: its windows are the widest (hundreds
            # of counts at t = 1e-3), and a draw needs no window
            M[small] = torch.from_numpy(normal_count(t[small].cpu().numpy(), a + b, u[small].cpu().numpy())).to(M)
        rest = torch.nonzero(~small).flatten()
        if len(rest):
            for idx in _time_buckets(t[rest]):
                idx = rest[idx]
                M[idx] = _lineage_count(LineageWindows.of_times(t[idx], a + b), u[idx])
        return beta_sample(a + M, torch.full_like(M, b), generator=generator)
    win = windows if windows is not None else LineageWindows.of_times(t, a + b)
    M = _lineage_count(win, _uniform(t.shape[0], t.device, generator))
    return beta_sample(a + M, torch.full_like(M, b), generator=generator)


def _lineage_count(win: LineageWindows, u: Tensor) -> Tensor:
    """Inverse-CDF draws of the lineage count of every element of ``win`` from uniforms ``u (N,)``."""
    U, W = win.m.shape
    # One searchsorted over all rows: row r's CDF is shifted into [2r, 2r + 1].
    offsets = 2.0 * torch.arange(U, device=u.device, dtype=torch.float64)
    pos = torch.searchsorted(win.derived(("cdf",), lambda: _shifted_cdf(win.w, offsets)), u + offsets[win.inv])
    col = (pos - win.inv * W).clamp(0, W - 1)
    return win.m[win.inv, col]


def _shifted_cdf(w: Tensor, offsets: Tensor) -> Tensor:
    """Row CDFs of ``w (U, W)``, row r shifted by ``offsets[r]``, flattened ``(U * W,)``."""
    cdf = torch.cumsum(w, dim=-1)
    cdf = (cdf / cdf[:, -1:]).clamp_max(1.0)
    return (cdf + offsets[:, None]).reshape(-1)


def _uniform(n: int, device: torch.device, generator: Optional[torch.Generator]) -> Tensor:
    """Uniforms from the (CPU) ``generator`` moved to ``device``, so draws do not depend on it."""
    return _rng.rand(n, generator=generator, dtype=torch.float64).to(device)


def _flat(x0: Tensor, y: Optional[Tensor], t: Tensor | float):
    x0 = torch.as_tensor(x0)
    shape = x0.shape if y is None else torch.as_tensor(y).shape
    tt = torch.as_tensor(t, dtype=torch.float64).expand(shape).reshape(-1)
    one = torch.as_tensor(x0).expand(shape).reshape(-1) > 0.5
    return shape, tt, one


def jacobi_transition_sample(x0: Tensor, t: Tensor | float, a: float, b: float, *,
                             generator: Optional[torch.Generator] = None) -> Tensor:
    """Exact draws of x_t given x0 in {0, 1} (element-wise; any continuous t > 0), float64."""
    shape, tt, one = _flat(x0, None, t)
    out = torch.empty(tt.shape[0], dtype=torch.float64)
    if one.any():
        out[one] = draw_at_one(tt[one], a, b, generator=generator)
    if (~one).any():
        out[~one] = 1.0 - draw_at_one(tt[~one], b, a, generator=generator)
    return out.reshape(shape)


def _logpdf_and_score(y: Tensor, x0: Tensor, t: Tensor | float, a: float, b: float) -> tuple[Tensor, Tensor]:
    shape, tt, one = _flat(x0, y, t)
    yy = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
    logp, score = torch.empty_like(yy), torch.empty_like(yy)
    if one.any():
        lp, mm = stats_at_one(yy[one], tt[one], a, b)
        y1 = yy[one]
        logp[one], score[one] = lp, (a - 1.0 + mm) / y1 - (b - 1.0) / (1.0 - y1)
    if (~one).any():
        y0 = yy[~one]
        lp, mm = stats_at_one(1.0 - y0, tt[~one], b, a)
        logp[~one], score[~one] = lp, (a - 1.0) / y0 - (b - 1.0 + mm) / (1.0 - y0)
    return logp.reshape(shape), score.reshape(shape)


def jacobi_transition_logpdf(y: Tensor, x0: Tensor, t: Tensor | float, a: float, b: float) -> Tensor:
    """log p_t(y | x0) for x0 in {0, 1}, element-wise over tensors of one shape (float64)."""
    return _logpdf_and_score(y, x0, t, a, b)[0]


def jacobi_transition_score(y: Tensor, x0: Tensor, t: Tensor | float, a: float, b: float) -> Tensor:
    """d/dy log p_t(y | x0), analytic, element-wise (float64).

    At vertex 1 the score is E[(a + M - 1) / y - (b - 1) / (1 - y) | y] under the posterior of M.
    """
    return _logpdf_and_score(y, x0, t, a, b)[1]
