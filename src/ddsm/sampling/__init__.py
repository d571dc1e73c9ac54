"""Sampling: the one reverse loop, reward-guided sampling, and likelihood estimators."""

from .loop import FixedPositions, dilated_pairs, sample
from ..processes.multistep import ExtrapolatedCorrection
from .smc import GuidedSample, RewardGuidance, guided_sample, systematic_resample

__all__ = ["ExtrapolatedCorrection", "FixedPositions", "dilated_pairs", "sample", "GuidedSample", "RewardGuidance",
           "guided_sample", "systematic_resample"]
