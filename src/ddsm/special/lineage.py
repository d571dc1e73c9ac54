"""Law q_m(t) of the number of surviving lineages of the coalescent with mutation.

For the Wright-Fisher (Jacobi) diffusion with mutation parameters a, b (theta = a + b) in its
native clock, the number of lines of descent A(t) is a pure-death process started at infinity
with death rates m (m + theta - 1) / 2 (Griffiths 1979, Tavare 1984). Its law is

    q_m(t) = sum_{k >= m} (-1)^(k-m) (theta + 2k - 1) Gamma(theta + m + k - 1)
             / (m! (k - m)! Gamma(theta + m)) * exp(-k (k + theta - 1) t / 2).

The series alternates and its terms grow like exp(c / t) before they decay, so float64 loses
every digit for small t. Three regimes (all vectorised over unique t values):

- ``t >= T_FLOAT64``: the series in float64 (absolute error below 1e-13, checked in the tests);
- ``T_NORMAL <= t < T_FLOAT64``: the same series in multi-precision arithmetic (mpmath) at a few
  anchor times (cached; tens of milliseconds each), carried forward to t by the pure-death
  equation with uniformisation, a sum of non-negative terms that float64 computes exactly;
- ``t < T_NORMAL``: Griffiths' (1984) asymptotic normal law of the lineage count, as used by
  Jenkins & Spano (2017), with its O(1) mean correction of -1/6 (measured against the exact law:
  see tests/unit/test_lineage.py), discretised on the integers.

A law is returned as a window ``(m_start, weights)``: ``weights[j]`` is q at m = m_start + j.
"""

from __future__ import annotations

import math
from functools import lru_cache

import mpmath
import numpy as np
import torch
from scipy.special import gammaln

from .anchor_table import lookup

T_FLOAT64 = 0.3
T_NORMAL = 0.05
_TAIL_SD = 9.0  # window half-width in standard deviations of the lineage count


def griffiths_moments(t: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of Griffiths' normal approximation of A(t) (without the -1/6 shift).

    beta = (theta - 1) t / 2, eta = beta / (e^beta - 1);
    mean = 2 eta / t, var = 2 eta / t (eta + beta)^2 (1 + eta / (eta + beta) - 2 eta) / beta^2,
    with the limits eta = 1, var = 2 / (3 t) at beta = 0.
    """
    t = np.asarray(t, dtype=np.float64)
    beta = (theta - 1.0) * t / 2.0
    small = np.abs(beta) < 1e-6
    b = np.where(small, 1.0, beta)
    eta = np.where(small, 1.0 - beta / 2.0, b / np.expm1(b))
    mean = 2.0 * eta / t
    var = np.where(
        small,
        2.0 / (3.0 * t),
        2.0 * eta / t * (eta + b) ** 2 * (1.0 + eta / (eta + b) - 2.0 * eta) / b**2,
    )
    return mean, var


def _window(t: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer range [lo, hi) of m holding all but a negligible part of q(t)."""
    mean, var = griffiths_moments(t, theta)
    sd = np.sqrt(var)
    lo = np.maximum(0, np.floor(mean - _TAIL_SD * sd - 5)).astype(np.int64)
    hi = np.ceil(mean + _TAIL_SD * sd + 12).astype(np.int64)
    return lo, hi


def _series_float64(t: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """The alternating series in float64 for every m in [0, hi); accurate for t >= T_FLOAT64."""
    _, hi = _window(t, theta)
    M = int(hi.max())
    # k - m beyond J adds less than exp(-40) relative: exp(-(k^2 - m^2) t / 2) with t >= 0.2.
    J = int(math.ceil(math.sqrt(M**2 + 80.0 / float(t.min())))) + 2
    m = np.arange(M, dtype=np.float64)[None, :, None]
    j = np.arange(J, dtype=np.float64)[None, None, :]
    k = m + j
    tt = t[:, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        logc = (
            np.log(theta + 2 * k - 1)
            + gammaln(theta + m + k - 1)
            - gammaln(m + 1)
            - gammaln(j + 1)
            - gammaln(theta + m)
        )
    # m = k = 0: (theta - 1) Gamma(theta - 1) / Gamma(theta) = 1 exactly (also at theta = 1).
    logc[:, 0, 0] = 0.0
    terms = np.where(j % 2 == 0, 1.0, -1.0) * np.exp(logc - k * (k + theta - 1) * tt / 2.0)
    q = terms.sum(axis=2)
    return np.zeros(len(t), dtype=np.int64), np.clip(q, 0.0, None)


@lru_cache(maxsize=4096)
def _series_mp(t: float, theta: float) -> tuple[int, tuple[float, ...]]:
    """The alternating series in multi-precision arithmetic, for one (t, theta)."""
    lo, hi = (int(v[0]) for v in _window(np.array([t]), theta))
    # Largest term ~ exp(0.96 / t) (times polynomial factors): carry that many digits plus 30.
    dps = int(30 + (1.2 / t + 2 * math.log(hi + 10)) / math.log(10))
    with mpmath.workdps(dps):
        th, tm = mpmath.mpf(theta), mpmath.mpf(t)
        tol = mpmath.mpf(10) ** (-25)
        out: list[float] = []
        # c_{m,m} by recurrence in m: c_{0,0} = 1, c_{m+1,m+1}/c_{m,m} = (th+2m+1)(th+2m)/((m+1)(th+m)).
        cmm = mpmath.mpf(1)
        exp_cache: dict[int, mpmath.mpf] = {}

        def e(k: int) -> mpmath.mpf:
            if k not in exp_cache:
                exp_cache[k] = mpmath.exp(-k * (k + th - 1) * tm / 2)
            return exp_cache[k]

        for m in range(hi):
            if m >= lo:
                c, k = cmm, m
                total = c * e(k)
                peak = abs(total)
                while True:
                    if m == 0 and k == 0:
                        c = -c * (th + 1)
                    else:
                        c = -c * (th + 2 * k + 1) * (th + m + k - 1) / ((th + 2 * k - 1) * (k + 1 - m))
                    k += 1
                    term = c * e(k)
                    total += term
                    peak = max(peak, abs(term))
                    if abs(term) < tol * peak * mpmath.mpf(10) ** (-dps + 30) and k > m + 2:
                        break
                out.append(max(float(total), 0.0))
            cmm = cmm * (th + 2 * m + 1) * (th + 2 * m) / ((m + 1) * (th + m))
    return lo, tuple(out)


_N_ANCHORS = 12


@lru_cache(maxsize=4096)
def _anchor_law(j: int, t: float, theta: float) -> tuple[int, tuple[float, ...]]:
    """The exact law at anchor ``j`` (time ``t``): from the shipped table when it has this theta
    (see :mod:`ddsm.special.anchor_table`), else by the multi-precision series."""
    return lookup(j, t, theta) or _series_mp(t, theta)


def _anchors() -> np.ndarray:
    """Times in [T_NORMAL, T_FLOAT64) where the law is computed in multi-precision."""
    return np.geomspace(T_NORMAL, T_FLOAT64, _N_ANCHORS + 1)[:-1]


def _propagated(t: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """The law at times in [T_NORMAL, T_FLOAT64): the exact (multi-precision) law at the nearest
    anchor time below, carried forward by the pure-death equation

        dq_m/dt = -lambda_m q_m + lambda_{m+1} q_{m+1},   lambda_m = m (m + theta - 1) / 2,

    solved by uniformisation: q(t_a + d) = sum_n Poisson(n; Lambda d) (I + Q / Lambda)^n q(t_a).
    Every term is non-negative, so float64 loses nothing to cancellation, and one chain of
    bidiagonal products serves all times that share an anchor. Costs microseconds per time instead
    of the ~50 ms of a multi-precision series.
    """
    anchors = _anchors()
    which = np.clip(np.searchsorted(anchors, t, side="right") - 1, 0, len(anchors) - 1)
    laws: list[tuple[np.ndarray, np.ndarray]] = []  # (rows of t, their laws (S, width))
    for j in np.unique(which):
        sel = np.flatnonzero(which == j)
        lo, vals = _anchor_law(int(j), float(anchors[j]), theta)
        q = np.zeros(lo + len(vals))
        q[lo:] = vals
        m = np.arange(len(q), dtype=np.float64)
        lam = m * (m + theta - 1.0) / 2.0
        big = float(lam.max())
        rate = big * (t[sel] - anchors[j])  # (S,) Poisson means
        n_max = int(rate.max() + 12.0 * math.sqrt(rate.max()) + 30)
        stay, move = 1.0 - lam / big, lam / big
        # the chain (I + Q / Lambda)^n q for n = 0 .. n_max, shared by every time of this anchor
        chain = np.empty((n_max + 1, len(q)))
        v = q.copy()
        for n in range(n_max + 1):
            if n > 0:
                flow = v * move
                v = v * stay
                v[:-1] += flow[1:]
            chain[n] = v
        # Poisson(n; rate) weights of every time at once, then one product over n
        n_grid = np.arange(n_max + 1, dtype=np.float64)
        log_rate = np.log(np.where(rate > 0, rate, 1.0))
        pois = np.exp(-rate[:, None] + n_grid[None, :] * log_rate[:, None] - gammaln(n_grid + 1.0)[None, :])
        pois[rate <= 0] = (n_grid == 0).astype(np.float64)
        laws.append((sel, pois @ chain))
    w = np.zeros((len(t), max(law.shape[1] for _, law in laws)))
    for sel, law in laws:
        w[sel, : law.shape[1]] = law
    return np.zeros(len(t), dtype=np.int64), w


def _normal(t: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Discretised, mean-corrected normal law of A(t), for small t."""
    mean, var = griffiths_moments(t, theta)
    mean = mean - 1.0 / 6.0
    sd = np.sqrt(var)
    lo, hi = _window(t, theta)
    width = int((hi - lo).max())
    edges = lo[:, None] + np.arange(width + 1)[None, :] - 0.5  # m - 1/2 for m = lo .. lo + width
    z = torch.from_numpy((edges - mean[:, None]) / sd[:, None])
    # One normal tail per edge (erfc: several times faster than ndtr), the tail on the edge's own
    # side of the mean: c = P(Z > |z|). Cells on one side are differences of tails, which keeps
    # the relative precision of small cells (a difference of two CDFs near 1 would lose it).
    c = 0.5 * torch.special.erfc(z.abs() / math.sqrt(2.0))
    left, right = z[:, :-1], z[:, 1:]
    cells = torch.where(left >= 0, c[:, :-1] - c[:, 1:],  # both edges above the mean
                        torch.where(right <= 0, c[:, 1:] - c[:, :-1],  # both below
                                    1.0 - c[:, 1:] - c[:, :-1]))  # the cell holding the mean
    cells = cells.clamp_min(0.0).numpy()
    cells[np.arange(width)[None, :] >= (hi - lo)[:, None]] = 0.0  # each row's own window, padded
    return lo, cells


def normal_count(t: np.ndarray, theta: float, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws of the lineage count under the law of :func:`_normal` (times ``t (N,)``
    below ``T_NORMAL``, uniforms ``u (N,)``) without tabulating it: O(1) per element.

    That law is the normal N(mean - 1/6, var) rounded to the nearest integer and restricted to the
    window [lo, hi); so M = round(x) for x the same normal truncated to [lo - 1/2, hi - 1/2),
    drawn by inverting its CDF at u. Same law, and for the same u the same M as a search in the
    tabulated window, up to rounding of the CDF (the window's cumulative sums round too).
    """
    mean, var = griffiths_moments(t, theta)
    mean, sd = mean - 1.0 / 6.0, np.sqrt(var)
    lo, hi = _window(t, theta)
    zt = torch.from_numpy(np.stack([(lo - 0.5 - mean) / sd, (hi - 0.5 - mean) / sd]))
    c_lo, c_hi = (0.5 * torch.special.erfc(-zt / math.sqrt(2.0))).numpy()
    x = mean + sd * torch.special.ndtri(torch.from_numpy(c_lo + u * (c_hi - c_lo))).numpy()
    return np.clip(np.floor(x + 0.5), lo, hi - 1)


def lineage_weights(t: np.ndarray | float, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Law of the lineage count A(t) for each t, as windows.

    Args:
        t: ``(N,)`` native times, t > 0.
        theta: a + b.
    Returns:
        ``m_start (N,)`` int64 and ``weights (N, W)`` float64 (rows sum to 1, zero padded), such
        that ``P(A(t_n) = m_start[n] + j) = weights[n, j]``.
    """
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    if np.any(~np.isfinite(t)) or np.any(t <= 0):
        raise ValueError("lineage_weights needs finite t > 0")
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (indices, m_start, weights)
    big, mid, small = t >= T_FLOAT64, (t >= T_NORMAL) & (t < T_FLOAT64), t < T_NORMAL
    if big.any():
        uniq, inv = np.unique(t[big], return_inverse=True)
        s, w = _series_float64(uniq, theta)
        parts.append((np.flatnonzero(big), s[inv], w[inv]))
    if mid.any():
        uniq, inv = np.unique(t[mid], return_inverse=True)
        s, w = _propagated(uniq, float(theta))
        parts.append((np.flatnonzero(mid), s[inv], w[inv]))
    if small.any():
        uniq, inv = np.unique(t[small], return_inverse=True)
        s, w = _normal(uniq, theta)
        parts.append((np.flatnonzero(small), s[inv], w[inv]))
    width = max(p[2].shape[1] for p in parts)
    m_start = np.zeros(len(t), dtype=np.int64)
    weights = np.zeros((len(t), width))
    for idx, s, w in parts:
        m_start[idx] = s
        weights[idx, : w.shape[1]] = w
    weights /= weights.sum(axis=1, keepdims=True)
    return m_start, weights


def lineage_weights_reference(t: float, theta: float, m_max: int, dps: int = 60) -> np.ndarray:
    """q_m(t) for m in [0, m_max) by the alternating series at ``dps`` digits, term by term.

    Slow and plain: the ground truth the tests compare the fast paths against.
    """
    with mpmath.workdps(dps):
        th, tm = mpmath.mpf(theta), mpmath.mpf(t)
        out = []
        for m in range(m_max):
            total, k, peak = mpmath.mpf(0), m, mpmath.mpf(0)
            while True:
                if m == 0 and k == 0:
                    coef = mpmath.mpf(1)
                else:
                    coef = (th + 2 * k - 1) * mpmath.gamma(th + m + k - 1) / (
                        mpmath.factorial(m) * mpmath.factorial(k - m) * mpmath.gamma(th + m)
                    )
                term = (-1) ** (k - m) * coef * mpmath.exp(-k * (k + th - 1) * tm / 2)
                total += term
                peak = max(peak, abs(term))
                if k > m + 2 and abs(term) < peak * mpmath.mpf(10) ** (-dps + 5):
                    break
                k += 1
            out.append(float(total))
    return np.array(out)
