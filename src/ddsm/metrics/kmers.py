"""k-mer spectra, GC content and distances between sequence sets."""

from __future__ import annotations

from itertools import product
from typing import Sequence

import numpy as np


def _kmer_codes(seqs: Sequence[str], k: int, alphabet: str) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``(N, W)`` of every k-mer window (lexicographic rank) and ``(N, W)`` validity."""
    from ._encode import index_matrix

    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    idx = index_matrix(seqs, alphabet).astype(np.int64)
    n, width = idx.shape
    windows = max(width - k + 1, 0)
    K = len(alphabet)
    codes = np.zeros((n, windows), dtype=np.int64)
    valid = np.ones((n, windows), dtype=bool)
    for j in range(k):
        part = idx[:, j : j + windows]
        codes = codes * K + np.maximum(part, 0)
        valid &= part >= 0
    return codes, valid


def kmer_counts(seqs: Sequence[str], k: int, alphabet: str = "ACGT") -> np.ndarray:
    """Per-sequence counts of the ``len(alphabet)**k`` overlapping k-mers (lexicographic order).

    k-mers containing letters outside ``alphabet`` are skipped. Memory is ``N * K**k`` floats, so
    keep ``N`` or ``k`` modest (a few thousand sequences for k <= 4).

    Returns:
        ``(N, K**k)`` float64 counts.
    """
    codes, valid = _kmer_codes(seqs, k, alphabet)
    size = len(alphabet) ** k
    rows = np.broadcast_to(np.arange(len(seqs))[:, None], codes.shape)
    flat = (rows * size + codes)[valid]
    return np.bincount(flat, minlength=len(seqs) * size).astype(np.float64).reshape(len(seqs), size)


def kmer_spectrum(seqs: Sequence[str], k: int, alphabet: str = "ACGT") -> np.ndarray:
    """Normalised counts of all ``len(alphabet)**k`` overlapping k-mers (lexicographic order).

    k-mers containing letters outside ``alphabet`` are skipped.
    """
    codes, valid = _kmer_codes(seqs, k, alphabet)
    counts = np.bincount(codes[valid], minlength=len(alphabet) ** k).astype(np.float64)
    total = counts.sum()
    return counts / total if total > 0 else counts


def kmer_names(k: int, alphabet: str = "ACGT") -> list[str]:
    """The k-mers in the order used by :func:`kmer_spectrum` and :func:`kmer_counts`."""
    return ["".join(p) for p in product(alphabet, repeat=k)]


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (square root of the divergence, base 2, in [0, 1])."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / b[nz])))

    return float(np.sqrt(max(0.0, 0.5 * kl(p, m) + 0.5 * kl(q, m))))


def kmer_js(designed: Sequence[str], reference: Sequence[str], k: int, alphabet: str = "ACGT") -> float:
    """Jensen-Shannon distance between the k-mer spectra of two sequence sets."""
    return js_distance(kmer_spectrum(designed, k, alphabet), kmer_spectrum(reference, k, alphabet))


def gc_content(seqs: Sequence[str]) -> np.ndarray:
    """Fraction of G or C per sequence (over A/C/G/T letters), ``(N,)``."""
    out = np.empty(len(seqs))
    for i, s in enumerate(seqs):
        acgt = sum(s.count(c) for c in "ACGT")
        out[i] = (s.count("G") + s.count("C")) / acgt if acgt else np.nan
    return out


def gc_distance(designed: Sequence[str], reference: Sequence[str]) -> float:
    """Wasserstein-1 (earth mover's) distance between the GC-content distributions of two sets.

    In GC-fraction units (0 = same distribution, at most 1); sequences without A/C/G/T are ignored.
    """
    from scipy.stats import wasserstein_distance

    a, b = gc_content(designed), gc_content(reference)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return float("nan")
    return float(wasserstein_distance(a, b))
