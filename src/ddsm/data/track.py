"""Per-position signal tracks (e.g. DDSM's promoter CAGE track) read from NumPy ``.npy`` files.

A training track file holds one row per sequence, aligned with the FASTA/TSV records in file
order: ``(N, L)`` for one signal or ``(N, L, S)`` for S signals, where L is the length of the
*encoded* sequences (after ``--length``). Sampling takes ``(L,)`` / ``(L, S)`` (one track for
every design) or ``(N, L)`` / ``(N, L, S)`` (one per design); see
:func:`ddsm.conditioning.track.design_track`.

Files are read with ``np.load(allow_pickle=False)``: object arrays are refused, nothing is
unpickled. Every problem is a one-line :class:`DDSMInputError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

from ddsm.errors import DDSMInputError

PathLike = Union[str, "os.PathLike[str]"]

#: the first bytes of every .npy file (format spec: numpy.lib.format)
_NPY_MAGIC = b"\x93NUMPY"


def read_track(path: PathLike) -> np.ndarray:
    """Load a track file as float32, 1 to 3 dimensions, every value finite (not reshaped).

    Raises:
        DDSMInputError: missing file, not a ``.npy`` file, a pickled/object array, a non-numeric
            dtype, an empty array, more than 3 dimensions or a NaN/inf value.
    """
    path = Path(path)
    if not path.is_file():
        raise DDSMInputError(f"track file {path}: no such file")
    try:
        with open(path, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
    except OSError as e:
        raise DDSMInputError(f"track file {path}: cannot read ({e.strerror or e})") from None
    if head != _NPY_MAGIC:  # also keeps np.load from ever trying its pickle fallback
        raise DDSMInputError(f"track file {path}: not a NumPy .npy file (write one with numpy.save)")
    try:
        raw = np.load(path, allow_pickle=False)
    except ValueError as e:  # object arrays need pickling: refused by allow_pickle=False
        raise DDSMInputError(f"track file {path}: not a plain numeric .npy array "
                             f"({str(e).split('.')[0]})") from None
    except (OSError, EOFError) as e:
        raise DDSMInputError(f"track file {path}: cannot read it as a NumPy .npy file ({e})") from None
    return as_track_array(raw, f"track file {path}")


def as_track_array(array: object, what: str = "track") -> np.ndarray:
    """Validate an in-memory track (any array-like): float32, 1-3 dimensions, finite."""
    arr = np.asarray(array)
    if arr.dtype.kind not in "biuf":
        raise DDSMInputError(f"{what}: expected numbers, got an array of dtype {arr.dtype}")
    if not 1 <= arr.ndim <= 3 or arr.size == 0:
        raise DDSMInputError(f"{what}: expected a non-empty array with 1 to 3 dimensions, got shape {arr.shape}")
    arr = arr.astype(np.float32)
    bad = ~np.isfinite(arr)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DDSMInputError(f"{what}: non-finite value at index {where} ({int(bad.sum())} in all)")
    return arr


def dataset_track(array: np.ndarray, n: int, length: int, what: str = "track") -> np.ndarray:
    """A training track ``(N, L)`` or ``(N, L, S)`` checked against ``n`` records of ``length``
    -> ``(N, L, S)`` float32."""
    arr = as_track_array(array, what)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[0] != n:
        raise DDSMInputError(f"{what} has shape {arr.shape}; expected ({n}, L) or ({n}, L, S): one row per "
                             f"record of the sequence file ({n} records), in file order")
    if arr.shape[1] != length:
        raise DDSMInputError(f"{what} has length {arr.shape[1]} but the sequences are encoded to length "
                             f"{length}; tracks must align with the encoded sequences (after --length)")
    return np.ascontiguousarray(arr)
