"""Guidance: steering a trained model toward a class at sampling time."""

from .cfg import ClassifierFreeGuidance
from .classifier import (
    GUIDED_PROCESSES,
    Classifier,
    ClassifierGuidance,
    bits_probabilities,
    grad_log_prob,
    supports_classifier_guidance,
)

__all__ = ["ClassifierFreeGuidance", "Classifier", "ClassifierGuidance", "GUIDED_PROCESSES",
           "bits_probabilities", "grad_log_prob", "supports_classifier_guidance"]
