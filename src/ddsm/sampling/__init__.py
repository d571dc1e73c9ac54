"""Sampling: the one reverse loop, reward-guided sampling, and likelihood estimators."""

from ..processes.multistep import ExtrapolatedCorrection
from .loop import FixedPositions, dilated_pairs, sample
from .smc import GuidedSample, RewardGuidance, guided_sample, systematic_resample

__all__ = ["ExtrapolatedCorrection", "FixedPositions", "dilated_pairs", "sample", "GuidedSample", "RewardGuidance",
           "guided_sample", "systematic_resample"]
