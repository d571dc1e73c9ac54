"""Log-densities from the probability-flow ODE: re-exported from the process layer.

The estimator is process maths (``JacobiProcess.bits_per_token`` uses it), so it lives in
``ddsm.processes._ode_likelihood``, where the processes can import it without reaching up into
the sampling layer. This module keeps the old import path.
"""

from __future__ import annotations

from ..processes._ode_likelihood import _MAX_EXACT_LOCAL, _drift_and_divergence, ode_log_density

__all__ = ["ode_log_density", "_drift_and_divergence", "_MAX_EXACT_LOCAL"]
