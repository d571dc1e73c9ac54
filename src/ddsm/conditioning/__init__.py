"""Conditioning inputs beyond class labels: per-position signal tracks."""

from .track import TRACK_TRANSFORMS, TrackBinding, TrackSpec, design_track

__all__ = ["TRACK_TRANSFORMS", "TrackBinding", "TrackSpec", "design_track"]
