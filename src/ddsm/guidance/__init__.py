"""Guidance: steering a trained model toward a class at sampling time."""

from .cfg import ClassifierFreeGuidance

__all__ = ["ClassifierFreeGuidance"]
