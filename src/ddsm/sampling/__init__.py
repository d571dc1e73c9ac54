"""Sampling: the one reverse loop and likelihood estimators."""

from .loop import FixedPositions, dilated_pairs, sample

__all__ = ["FixedPositions", "dilated_pairs", "sample"]
