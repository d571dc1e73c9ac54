"""Strings -> small integer matrices, shared by the vectorised metrics (internal)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def index_matrix(seqs: Sequence[str], alphabet: str = "ACGT", length: int | None = None) -> np.ndarray:
    """Letters -> ids in ``[0, K)``, ``-1`` for letters outside ``alphabet`` and for padding.

    Args:
        seqs: ``N`` strings (any lengths).
        alphabet: the letters in id order (matching is case-sensitive).
        length: output width ``L``; longer sequences are cut on the right. Default: the longest.

    Returns:
        ``(N, L)`` int8 array (``-1`` = not a letter of the alphabet, or past the sequence's end).
    """
    n = len(seqs)
    width = max((len(s) for s in seqs), default=0) if length is None else length
    table = np.full(max(256, max((ord(c) for c in alphabet), default=0) + 1), -1, dtype=np.int8)
    for i, c in enumerate(alphabet):
        table[ord(c)] = i
    out = np.full((n, width), -1, dtype=np.int8)
    if n == 0 or width == 0:
        return out
    if all(len(s) == width and s.isascii() for s in seqs):
        # The common case (equal-length ASCII DNA): one buffer, one gather.
        codes = np.frombuffer("".join(seqs).encode("ascii"), dtype=np.uint8).reshape(n, width)
        return table[codes]
    for i, s in enumerate(seqs):
        s = s[:width]
        codes = np.frombuffer(s.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.int64)
        inside = codes < table.shape[0]
        out[i, : len(s)] = np.where(inside, table[np.where(inside, codes, 0)], -1)
    return out


def one_hot(index: np.ndarray, K: int = 4) -> np.ndarray:
    """``(N, L)`` ids (``-1`` = none) -> ``(N, L, K)`` float32 one-hot (all-zero rows for ``-1``)."""
    out = np.zeros((*index.shape, K), dtype=np.float32)
    valid = index >= 0
    out[valid, index[valid]] = 1.0
    return out
