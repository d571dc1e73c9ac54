"""Sampling: the one reverse loop and likelihood estimators."""

from .loop import FixedPositions, sample

__all__ = ["FixedPositions", "sample"]
