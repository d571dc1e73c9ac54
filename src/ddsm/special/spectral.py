"""Spectral (Jacobi polynomial) form of the Jacobi transition density: a cross-check only.

With P_n the Jacobi polynomials orthogonal under Beta(a, b) on [0, 1] (``P_n^(b-1, a-1)(2y - 1)``)
and eigenvalues lambda_n = n (n + a + b - 1) / 2 (native clock, speed 1),

    p_t(y | x) = Beta(y; a, b) sum_n exp(-lambda_n t) P_n(x) P_n(y) / E_Beta[P_n^2],
    E_Beta[P_n^2] = Gamma(n + a) Gamma(n + b) / ((2n + a + b - 1) Gamma(n + a + b - 1) n! B(a, b)).

The series converges slowly for small t (hundreds of terms at t = 0.01 are not enough), which is
why the library uses the lineage mixture; here it serves as independent ground truth for t >= 0.05.
"""

from __future__ import annotations

import mpmath
import numpy as np
from scipy.special import betaln, eval_jacobi, gammaln


def jacobi_spectral_density(y: np.ndarray, x0: float, t: float, a: float, b: float, n_terms: int = 400) -> np.ndarray:
    """p_t(y | x0) by the Jacobi polynomial series (float64, numpy)."""
    y = np.asarray(y, dtype=np.float64)
    n = np.arange(n_terms, dtype=np.float64)
    lam = n * (n + a + b - 1.0) / 2.0
    # log E[P_n^2] under Beta(a, b); the n = 0, a + b = 1 corner is excluded by requiring a + b > 1.
    log_norm = (gammaln(n + a) + gammaln(n + b) - np.log(2 * n + a + b - 1.0)
                - gammaln(n + a + b - 1.0) - gammaln(n + 1.0) - betaln(a, b))
    log_norm[0] = 0.0  # P_0 = 1
    px = eval_jacobi(n, b - 1.0, a - 1.0, 2.0 * x0 - 1.0)
    py = eval_jacobi(n[:, None], b - 1.0, a - 1.0, 2.0 * y[None, :] - 1.0)
    coef = np.exp(-lam * t - log_norm) * px
    beta_pdf = np.exp((a - 1.0) * np.log(y) + (b - 1.0) * np.log1p(-y) - betaln(a, b))
    return beta_pdf * (coef[:, None] * py).sum(axis=0)


def jacobi_spectral_density_mp(y: float, x0: float, t: float, a: float, b: float,
                               n_terms: int = 160, dps: int = 60) -> float:
    """The same series in multi-precision arithmetic (slow; for tests at moderate t)."""
    with mpmath.workdps(dps):
        a_, b_, t_, y_ = (mpmath.mpf(v) for v in (a, b, t, y))
        total = mpmath.mpf(0)
        for n in range(n_terms):
            norm = (mpmath.gamma(n + a_) * mpmath.gamma(n + b_)
                    / ((2 * n + a_ + b_ - 1) * mpmath.gamma(n + a_ + b_ - 1) * mpmath.factorial(n)
                       * mpmath.beta(a_, b_))) if n > 0 else mpmath.mpf(1)
            # zeroprec: where a polynomial value is exactly zero (a = b at y = 1/2, odd n: P_n(0) = 0),
            # mpmath's hypergeometric sum cannot reach *relative* accuracy and raised
            # "hypsum() failed to converge" (found by tests/unit/test_transition.py, (a, b) = (1, 1)).
            # Values cancelling beyond 4x the working precision are returned as 0, which is exact
            # to far below the absolute accuracy of the series.
            zp = 4 * mpmath.mp.prec
            px = mpmath.jacobi(n, b_ - 1, a_ - 1, 2 * mpmath.mpf(x0) - 1, zeroprec=zp)
            py = mpmath.jacobi(n, b_ - 1, a_ - 1, 2 * y_ - 1, zeroprec=zp)
            total += mpmath.exp(-n * (n + a_ + b_ - 1) * t_ / 2) * px * py / norm
        dens = y_ ** (a_ - 1) * (1 - y_) ** (b_ - 1) / mpmath.beta(a_, b_) * total
        return float(dens)
