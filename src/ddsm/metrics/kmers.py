"""k-mer spectra, GC content and distances between sequence sets."""

from __future__ import annotations

from itertools import product
from typing import Sequence

import numpy as np


def kmer_spectrum(seqs: Sequence[str], k: int, alphabet: str = "ACGT") -> np.ndarray:
    """Normalised counts of all ``len(alphabet)**k`` overlapping k-mers (lexicographic order).

    k-mers containing letters outside ``alphabet`` are skipped.
    """
    index = {"".join(p): i for i, p in enumerate(product(alphabet, repeat=k))}
    counts = np.zeros(len(index), dtype=np.float64)
    for s in seqs:
        for j in range(len(s) - k + 1):
            i = index.get(s[j : j + k])
            if i is not None:
                counts[i] += 1
    total = counts.sum()
    return counts / total if total > 0 else counts


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
