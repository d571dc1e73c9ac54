"""Per-position signal-track conditioning, for every process, without touching the processes.

A track ``(B, L, S)`` (e.g. DDSM's promoter CAGE signal) is concatenated to the process's features,
so the backbone is built with ``in_channels = process.in_channels + S`` and stays an ordinary
``forward(x, t, cond)`` network; its checkpoint is an ordinary checkpoint. Only the track width,
channel names and the value transform are recorded, as ``config["track"]``
(:class:`TrackSpec`), so :func:`ddsm.api.load_run` rebuilds the network and sampling refuses to run
without a track (or with one the model never saw).

Binding. Processes call ``model(features, t, cond)`` and may call it on a *subset* of the batch
(``bits`` self-conditioning runs a first pass on ``xt[use]``, ``cond[use]``) or on a doubled batch
(classifier-free guidance). So the track cannot simply be appended to "the" batch. Instead
:class:`TrackBinding` holds one batch's tracks (and class labels), and the process is handed the
*row ids* ``0..B-1`` as ``cond``: every process already indexes ``cond`` exactly as it indexes the
state, so whatever rows reach the network, ``track[cond]`` and ``labels[cond]`` are theirs. The
binding is the outermost wrapper (classifier-free guidance goes inside it and sees real labels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..data.track import as_track_array
from ..errors import DDSMInputError
from ..models.base import takes_raw_state

#: value transforms applied to raw tracks before the network sees them (recorded in the config)
TRACK_TRANSFORMS = ("none", "log1p")


@dataclass(frozen=True)
class TrackSpec:
    """What a track-conditioned network expects; saved as ``config["track"]``.

    Attributes:
        n_track: S, channels per position.
        names: S channel names (for messages and provenance).
        transform: ``"none"`` or ``"log1p"`` (count-like signals), applied to raw tracks both in
            training and at sampling, so users always pass raw values.
    """

    n_track: int
    names: tuple[str, ...]
    transform: str = "none"

    def __post_init__(self) -> None:
        if self.n_track < 1 or len(self.names) != self.n_track:
            raise DDSMInputError(f"track spec: {len(self.names)} channel names for {self.n_track} channels")
        if self.transform not in TRACK_TRANSFORMS:
            raise DDSMInputError(f"track transform must be one of {', '.join(TRACK_TRANSFORMS)}, "
                                 f"got {self.transform!r}")

    @classmethod
    def for_width(cls, n_track: int, names: Optional[Sequence[str]] = None,
                  transform: str = "none") -> "TrackSpec":
        """A spec for S channels; default names ``track`` (S = 1) or ``track_0 ..``."""
        if names is None:
            names = ["track"] if n_track == 1 else [f"track_{i}" for i in range(n_track)]
        names = [str(n).strip() for n in names]
        if len(names) != n_track:
            raise DDSMInputError(f"{len(names)} track names given for a track with {n_track} channel(s)")
        return cls(int(n_track), tuple(names), transform)

    def to_config(self) -> dict[str, Any]:
        return {"n_track": self.n_track, "names": list(self.names), "transform": self.transform}

    @classmethod
    def from_config(cls, cfg: Optional[dict[str, Any]]) -> Optional["TrackSpec"]:
        """The spec of ``config.get("track")`` (None for runs without a track)."""
        if not cfg:
            return None
        try:
            return cls(int(cfg["n_track"]), tuple(str(n) for n in cfg["names"]), str(cfg.get("transform", "none")))
        except (KeyError, TypeError, ValueError) as e:
            raise DDSMInputError(f"config.json: malformed 'track' entry ({e})") from None

    def describe(self) -> str:
        return f"{self.n_track} channel(s): {', '.join(self.names)}"

    def apply(self, track: np.ndarray, what: str = "track") -> np.ndarray:
        """Raw ``(..., S)`` values -> what the network sees, float32 (checks the width)."""
        if track.shape[-1] != self.n_track:
            raise DDSMInputError(f"{what} has {track.shape[-1]} channel(s); the model expects {self.describe()}")
        if self.transform == "log1p":
            low = float(track.min())
            if low < 0:
                raise DDSMInputError(f"{what}: the log1p track transform needs values >= 0, found {low:g}")
            track = np.log1p(track)
        return np.ascontiguousarray(track, dtype=np.float32)


def design_track(spec: TrackSpec, array: object, n: int, length: int, what: str = "track") -> np.ndarray:
    """A sampling track -> ``(1, L, S)`` (shared by every design) or ``(n, L, S)`` (one per design),
    transformed for the network.

    Accepted shapes: ``(L,)`` (S = 1) and ``(L, S)`` for all designs; ``(n, L)`` (S = 1) and
    ``(n, L, S)`` one per design.
    """
    arr = as_track_array(array, what)
    S = spec.n_track
    if arr.ndim == 1 and arr.shape == (length,) and S == 1:
        arr = arr[None, :, None]
    elif arr.ndim == 2 and arr.shape == (length, S):
        arr = arr[None]
    elif arr.ndim == 2 and arr.shape == (n, length) and S == 1:
        arr = arr[:, :, None]
    elif arr.ndim == 3 and arr.shape == (n, length, S):
        pass
    else:
        shared = f"({length},)" if S == 1 else f"({length}, {S})"
        per = f"({n}, {length})" if S == 1 else f"({n}, {length}, {S})"
        raise DDSMInputError(f"{what} has shape {arr.shape}; expected {shared} for every design or {per} "
                             f"one per design (model: length {length}, {spec.describe()})")
    return spec.apply(arr, what)


class TrackBinding:
    """A network call with one batch's tracks (and labels) bound; the process passes row ids as cond.

    Args:
        model: ``model(x (B', L, C_in + S), t (B',), labels (B',) | None) -> (B', L, C_out)``
            (a backbone, or a wrapper such as classifier-free guidance); not a raw-state model
            (:func:`ddsm.models.base.takes_raw_state`), since the track is appended to the *features*.
        track: ``(B, L, S)`` float, already transformed.
        labels: ``(B,)`` long class ids, or None for unconditional networks.
    """

    #: a binding feeds features (the track is appended to them), never the raw state
    takes_state = False

    def __init__(self, model: Callable[..., Tensor], track: Tensor, labels: Optional[Tensor] = None) -> None:
        if takes_raw_state(model):
            raise ValueError("a track-conditioned network must take features, not the raw state (takes_state)")
        if track.dim() != 3:
            raise ValueError(f"bound track must be (B, L, S), got {tuple(track.shape)}")
        if labels is not None and labels.shape != track.shape[:1]:
            raise ValueError(f"labels {tuple(labels.shape)} do not match the track batch {track.shape[0]}")
        self.model, self.track, self.labels = model, track, labels

    def rows(self) -> Tensor:
        """``(B,)`` long row ids: the ``cond`` to hand to the process in place of the labels."""
        return torch.arange(self.track.shape[0], device=self.track.device)

    def __call__(self, x: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        if cond is None:
            raise RuntimeError("TrackBinding needs the row ids from rows() as cond")
        rows = cond.to(self.track.device)
        feats = torch.cat([x, self.track[rows].to(device=x.device, dtype=x.dtype)], dim=-1)
        labels = None if self.labels is None else self.labels[rows].to(x.device)
        return self.model(feats, t, labels)
