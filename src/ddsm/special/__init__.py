"""Numerics with no torch.nn: the lineage law, the exact Jacobi transition, stick-breaking."""

from .lineage import lineage_weights, lineage_weights_reference
from .spectral import jacobi_spectral_density, jacobi_spectral_density_mp
from .stickbreaking import (
    log_det_dx_dv,
    score_v_to_x,
    score_x_to_v,
    simplex_to_sticks,
    sticks_to_simplex,
)
from .transition import jacobi_transition_logpdf, jacobi_transition_sample, jacobi_transition_score

__all__ = [
    "lineage_weights",
    "lineage_weights_reference",
    "jacobi_spectral_density",
    "jacobi_spectral_density_mp",
    "jacobi_transition_sample",
    "jacobi_transition_logpdf",
    "jacobi_transition_score",
    "sticks_to_simplex",
    "simplex_to_sticks",
    "log_det_dx_dv",
    "score_x_to_v",
    "score_v_to_x",
]
