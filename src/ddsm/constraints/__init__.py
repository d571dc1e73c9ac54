"""Constraints on designs: fixed positions, forbidden motifs, GC window; exact enforcement."""

from .design import DesignResult, constrained_design
from .fixed import parse_fixed
from .gc import GCWindow
from .motifs import ForbiddenMotifs, reverse_complement

__all__ = ["DesignResult", "constrained_design", "parse_fixed", "GCWindow", "ForbiddenMotifs",
           "reverse_complement"]
