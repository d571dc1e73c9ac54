"""Sampling: the one reverse loop, reward-guided sampling, and likelihood estimators."""

from .loop import FixedPositions, dilated_pairs, sample
from .smc import GuidedSample, RewardGuidance, guided_sample, systematic_resample

__all__ = ["FixedPositions", "dilated_pairs", "sample", "GuidedSample", "RewardGuidance", "guided_sample",
           "systematic_resample"]
