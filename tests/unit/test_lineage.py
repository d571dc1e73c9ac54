"""The lineage law q_m(t) (ddsm.special.lineage) against its slow multi-precision ground truth.

Three regimes are checked: the float64 series (t >= T_FLOAT64), the mpmath series
(T_NORMAL <= t < T_FLOAT64) and Griffiths' normal law (t < T_NORMAL). Independent checks that do
not rely on ``lineage_weights_reference`` at all: the Beta-mixture moments against the closed-form
moments of the Jacobi diffusion, and the Kolmogorov forward equation of the pure-death process.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import betaln

from ddsm.special import lineage as L
from ddsm.special.lineage import (
    T_FLOAT64,
    T_NORMAL,
    griffiths_moments,
    lineage_weights,
    lineage_weights_reference,
)
from ddsm.special.transition import jacobi_transition_logpdf

THETAS = [1.5, 2.0, 3.0, 4.0, 8.0]
T_ALL = [1e-3, 3e-3, 0.01, 0.03, 0.0499, 0.05, 0.1, 0.2, 0.2999, 0.3, 0.5, 1.0, 5.0, 20.0]


def _reference(t: float, theta: float) -> np.ndarray:
    """Exact q_m(t) for m in [0, hi + 10), hi the library's window end (tail mass there < 1e-40)."""
    _, hi = L._window(np.array([t]), theta)
    return lineage_weights_reference(t, theta, int(hi[0]) + 10)


def _dense(m_start: int, w: np.ndarray, size: int) -> np.ndarray:
    """Window (m_start, w) as a dense vector over m = 0 .. size - 1."""
    out = np.zeros(max(size, m_start + len(w)))
    out[m_start : m_start + len(w)] = w
    return out


def _analytic_moments(t: float, a: float, theta: float) -> tuple[float, float]:
    """E[x_t] and E[x_t^2] of the Jacobi diffusion started at x0 = 1 (exact, any t).

    Generator G f = (1/2)(a - theta x) f' + (1/2) x (1 - x) f''; G x = (a - theta x)/2 and
    G x^2 = (a + 1) x - (theta + 1) x^2 give two linear ODEs with closed-form solutions.
    """
    e = np.exp(-theta * t / 2.0)
    mu = a / theta
    m1 = mu + (1.0 - mu) * e
    m2_inf = a * (a + 1.0) / (theta * (theta + 1.0))
    A = 2.0 * (a + 1.0) * (1.0 - mu) / (theta + 2.0)
    m2 = m2_inf + A * e + (1.0 - m2_inf - A) * np.exp(-(theta + 1.0) * t)
    return m1, m2


# --------------------------------------------------------------------------------------------
# Normalisation. The public function renormalises, so its sum is 1 by construction; the raw
# (pre-normalisation) output of each regime is what can genuinely fail.


@pytest.mark.parametrize("theta", THETAS)
def test_public_weights_sum_to_one_and_are_probabilities(theta):
    t = np.array(T_ALL)
    start, w = lineage_weights(t, theta)
    assert start.shape == t.shape and w.shape[0] == len(t)
    assert np.all(w >= 0.0) and np.all(start >= 0)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=1e-14)


@pytest.mark.parametrize("theta", THETAS)
def test_raw_regime_sums_before_normalisation(theta):
    t_big = np.array([0.3, 0.5, 1.0, 5.0, 20.0])
    _, w = L._series_float64(t_big, theta)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=2e-13)
    for t in [0.05, 0.1, 0.2, 0.29]:
        _, w = L._series_mp(t, theta)
        assert abs(sum(w) - 1.0) < 1e-14, t
    _, w = L._normal(np.array([1e-3, 3e-3, 0.01, 0.03, 0.0499]), theta)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=1e-14)


def test_mixed_regimes_in_one_call_match_separate_calls():
    """Rows of different regimes (and widths) are padded and placed correctly."""
    theta = 4.0
    t = np.array([0.5, 0.002, 0.1, 20.0, 0.04, 0.5, 0.1])
    start, w = lineage_weights(t, theta)
    for i, ti in enumerate(t):
        s1, w1 = lineage_weights(np.array([ti]), theta)
        assert start[i] == s1[0]
        n = w1.shape[1]
        np.testing.assert_array_equal(w[i, :n], w1[0])
        assert np.all(w[i, n:] == 0.0)


def test_rejects_bad_times():
    for bad in [0.0, -1.0, np.nan, np.inf]:
        with pytest.raises(ValueError):
            lineage_weights(np.array([0.5, bad]), 2.0)


# --------------------------------------------------------------------------------------------
# Exact regimes against the ground truth.


@pytest.mark.parametrize("theta", THETAS)
def test_float64_regime_matches_reference(theta):
    ts = [0.3, 0.5, 1.0, 5.0, 20.0]
    start, w = lineage_weights(np.array(ts), theta)
    for i, t in enumerate(ts):
        assert t >= T_FLOAT64
        ref = _reference(t, theta)
        got = _dense(int(start[i]), w[i], len(ref))
        ref = np.pad(ref, (0, len(got) - len(ref)))
        err = np.abs(got - ref).max()
        assert err <= 1e-13, (t, theta, err)


@pytest.mark.parametrize("theta", THETAS)
def test_mp_regime_matches_reference(theta):
    for t in [0.05, 0.1, 0.2, 0.29]:
        assert T_NORMAL <= t < T_FLOAT64
        ref = _reference(t, theta)
        # The raw mp series agrees with the 60-digit reference to the last float64 bit ...
        lo, w = L._series_mp(t, theta)
        got = _dense(lo, np.array(w), len(ref))
        ref_p = np.pad(ref, (0, len(got) - len(ref)))
        err = np.abs(got - ref_p).max()
        assert err <= 1e-20, (t, theta, err)
        # ... and the public output only differs by the final renormalisation (a few ulps).
        start, wp = lineage_weights(np.array([t]), theta)
        got = _dense(int(start[0]), wp[0], len(ref))
        ref_p = np.pad(ref, (0, len(got) - len(ref)))
        assert np.abs(got - ref_p).max() <= 1e-15, (t, theta)


# --------------------------------------------------------------------------------------------
# Independent checks (no reference): moments of the Beta mixture and the forward equation.


@pytest.mark.parametrize("theta", THETAS)
def test_mixture_moments_equal_closed_form_diffusion_moments(theta):
    """sum_m q_m E[Beta(a + m, b)^k] equals the exact E[x_t^k | x0 = 1], k = 1, 2.

    Exact regimes to round-off; the normal regime to a relative error of 1e-3 on 1 - E[x_t]
    (which is what the lineage count controls): without the -1/6 mean shift the error at
    t = 0.0499 would be about 4e-3, so this also guards the shift.
    """
    a = 1.0
    start, w = lineage_weights(np.array(T_ALL), theta)
    for i, t in enumerate(T_ALL):
        m = start[i] + np.arange(w.shape[1])
        mean = np.sum(w[i] * (a + m) / (theta + m))
        mom2 = np.sum(w[i] * (a + m) * (a + m + 1) / ((theta + m) * (theta + m + 1)))
        m1, m2 = _analytic_moments(t, a, theta)
        var, var_mix = m2 - m1**2, mom2 - mean**2
        if t >= T_NORMAL:
            assert abs(mean - m1) <= 1e-13, (t, mean - m1)
            assert abs(var_mix / var - 1.0) <= 1e-11, (t, var_mix / var - 1.0)
        else:
            assert abs(mean - m1) <= 1e-3 * (1.0 - m1), (t, (mean - m1) / (1.0 - m1))
            assert abs(var_mix / var - 1.0) <= 2e-3, (t, var_mix / var - 1.0)


@pytest.mark.parametrize("theta", [1.5, 4.0, 8.0])
@pytest.mark.parametrize("t", [0.1, 0.2, 0.5, 2.0])
def test_forward_equation_of_the_death_process(theta, t):
    """dq_m/dt = lambda_{m+1} q_{m+1} - lambda_m q_m, lambda_m = m (m + theta - 1) / 2."""
    h = 1e-4 * t
    ts = np.array([t - h, t, t + h])
    start, w = lineage_weights(ts, theta)
    size = int(start.max()) + w.shape[1] + 1
    q = np.stack([_dense(int(start[i]), w[i], size)[:size] for i in range(3)])
    dq = (q[2] - q[0]) / (2 * h)
    m = np.arange(size, dtype=np.float64)
    lam = m * (m + theta - 1.0) / 2.0
    rhs = np.append(lam[1:] * q[1, 1:], 0.0) - lam * q[1]
    scale = np.abs(rhs).max()
    assert np.abs(dq - rhs).max() <= 1e-5 * scale, np.abs(dq - rhs).max() / scale


def test_mean_lineage_count_equals_weighted_sum():
    """E[M] = sum_m m q_m of the fast law equals that of the reference law, and the Beta-mixture
    identity E[x_t | 1] = E[(a + M) / (theta + M)] holds with the analytic E[x_t]."""
    theta, a = 4.0, 1.0
    for t in [0.1, 0.5, 1.0]:
        start, w = lineage_weights(np.array([t]), theta)
        m = start[0] + np.arange(w.shape[1])
        mean_fast = np.sum(m * w[0])
        ref = _reference(t, theta)
        mr = np.arange(len(ref))
        mean_ref = np.sum(mr * ref)
        assert abs(mean_fast - mean_ref) <= 1e-12 * max(1.0, mean_ref), (t, mean_fast, mean_ref)
        m1, _ = _analytic_moments(t, a, theta)
        assert abs(np.sum(ref * (a + mr) / (theta + mr)) - m1) <= 1e-14


# --------------------------------------------------------------------------------------------
# The normal regime and the switch at T_NORMAL.


@pytest.mark.parametrize("t", [0.05, 0.04])
def test_normal_branch_close_to_exact_law_at_switch(t):
    """Seamless switch: the normal law vs the exact law at (and below) T_NORMAL, a = 1, b = 3.

    Measured: TV about 7.0e-3 (t = 0.05) / 6.3e-3 (0.04), dominated by the skewness the normal
    law lacks; the mean of M agrees to 3e-4, and the y-densities (what the user sees) to 1e-4 in L1.
    """
    a, b = 1.0, 3.0
    theta = a + b
    lo, w = L._normal(np.array([t]), theta)
    normal = _dense(int(lo[0]), w[0], 0)
    ref = lineage_weights_reference(t, theta, len(normal) + 10)
    normal = np.pad(normal, (0, len(ref) - len(normal)))
    m = np.arange(len(ref), dtype=np.float64)

    tv = 0.5 * np.abs(normal - ref).sum()
    assert tv < 0.01, tv
    assert abs(np.sum(m * normal) - np.sum(m * ref)) < 0.01

    y = np.linspace(0.0, 1.0, 40001)[1:-1]
    log_beta = (
        (a + m[:, None] - 1.0) * np.log(y)[None, :]
        + (b - 1.0) * np.log1p(-y)[None, :]
        - betaln(a + m, b)[:, None]
    )
    comp = np.exp(log_beta)
    dens_ref = ref @ comp
    dens_norm = normal @ comp
    assert abs(np.trapezoid(dens_ref, y) - 1.0) < 1e-6  # the grid resolves the density
    l1 = np.trapezoid(np.abs(dens_ref - dens_norm), y)
    assert l1 < 1e-3, l1


def test_griffiths_mean_correction_of_minus_one_sixth():
    """Exact E[A(t)] - Griffiths' 2 eta / t is -1/6 + o(1) (measured: -0.1670, -0.1671, -0.1668)."""
    theta = 4.0
    for t in [0.05, 0.1, 0.2]:
        ref = _reference(t, theta)
        exact_mean = np.sum(np.arange(len(ref)) * ref)
        g_mean, _ = griffiths_moments(np.array([t]), theta)
        assert abs(exact_mean - g_mean[0] + 1.0 / 6.0) < 0.005, (t, exact_mean - g_mean[0])


def test_griffiths_moments_small_beta_limit():
    """The beta -> 0 branch (theta = 1) matches the general formula as theta -> 1."""
    t = np.array([0.01, 0.04])
    m1, v1 = griffiths_moments(t, 1.0)
    np.testing.assert_allclose(m1, 2.0 / t, rtol=1e-12)
    np.testing.assert_allclose(v1, 2.0 / (3.0 * t), rtol=1e-12)
    m2, v2 = griffiths_moments(t, 1.0 + 1e-3)
    np.testing.assert_allclose(m2, m1, rtol=1e-4)
    np.testing.assert_allclose(v2, v1, rtol=1e-3)


# --------------------------------------------------------------------------------------------
# Continuity of the transition density across the regime boundaries.


def _density_pair(T: float, x0: float, a: float = 1.0, b: float = 3.0):
    y = torch.linspace(0.0, 1.0, 20001, dtype=torch.float64)[1:-1]
    x = torch.full_like(y, x0)
    lo = jacobi_transition_logpdf(y, x, T * (1.0 - 1e-9), a, b).exp().numpy()
    hi = jacobi_transition_logpdf(y, x, T * (1.0 + 1e-9), a, b).exp().numpy()
    return y.numpy(), lo, hi


@pytest.mark.parametrize("x0", [0.0, 1.0])
def test_density_continuous_at_float64_boundary(x0):
    """float64 series vs mp series at T_FLOAT64 (1 +- 1e-9): measured max relative gap 2.6e-8,
    which is the genuine change of the density over dt = 6e-10."""
    y, lo, hi = _density_pair(T_FLOAT64, x0)
    rel = np.abs(hi / lo - 1.0)
    assert rel.max() < 1e-6, rel.max()


@pytest.mark.parametrize("x0", [0.0, 1.0])
def test_density_continuous_at_normal_boundary(x0):
    """normal law vs mp series at T_NORMAL (1 +- 1e-9): measured L1 gap 3e-5 (x0=0), 1.1e-4 (x0=1)."""
    y, lo, hi = _density_pair(T_NORMAL, x0)
    l1 = np.trapezoid(np.abs(hi - lo), y)
    assert l1 < 2e-3, l1


def test_shipped_anchor_table_equals_the_multiprecision_series():
    """The shipped anchor laws (resources/lineage_anchors.npz) are exactly what the multi-precision
    series computes; lineage_weights uses them and falls back to the series for other theta."""
    from ddsm.special import anchor_table
    from ddsm.special.lineage import _anchor_law, _anchors, _series_mp

    assert anchor_table.TABLE.is_file()
    anchors = _anchors()
    for theta, j in [(2, 0), (4, 5), (9, 11), (65, 0)]:
        hit = anchor_table.lookup(j, float(anchors[j]), float(theta))
        assert hit is not None
        _series_mp.cache_clear()
        assert hit == _series_mp(float(anchors[j]), float(theta))
    assert anchor_table.lookup(0, float(anchors[0]), 2.5) is None  # not tabulated: computed
    assert anchor_table.lookup(0, float(anchors[0]) * 1.01, 4.0) is None  # not an anchor time
    lo, vals = _anchor_law(3, float(anchors[3]), 2.5)
    assert abs(sum(vals) - 1.0) < 1e-9 and lo >= 0


@pytest.mark.parametrize("theta", [1.5, 4.0, 40.0])
def test_direct_normal_draw_is_the_windowed_inverse_cdf(theta):
    """normal_count inverts the normal regime's law without a table: for the same uniforms it
    gives the counts that a search in the tabulated window gives (up to CDF rounding), so the
    law of the draws is the tabulated one."""
    rng = np.random.default_rng(3)
    t = np.exp(rng.uniform(np.log(1e-3), np.log(0.0499), 4000))
    u = rng.random(4000)
    direct = L.normal_count(t, theta, u)
    start, w = L.lineage_weights(t, theta)
    cdf = np.cumsum(w, axis=1)
    searched = start + (u[:, None] > cdf / cdf[:, -1:]).sum(1)
    assert np.abs(direct - searched).max() <= 1
    assert np.mean(direct == searched) > 0.999
    # the tails are reached as the table has them: the extreme uniforms land on the window's ends
    lo, hi = L._window(t[:3], theta)
    np.testing.assert_array_equal(L.normal_count(t[:3], theta, np.zeros(3)), lo)
    assert np.all(L.normal_count(t[:3], theta, np.full(3, 1 - 1e-17)) <= hi - 1)
