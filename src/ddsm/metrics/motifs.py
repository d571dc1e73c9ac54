"""Transcription-factor motif occurrence: JASPAR matrices, a vectorised PWM scan, set comparisons.

A motif is a ``(w, 4)`` count matrix (A, C, G, T columns). The scan turns it into log-odds scores
``log2((count + pseudocount * bg) / (column total + pseudocount) / bg)``, scores every window on both
strands with one ``conv1d`` per width bucket, and calls a hit where the best strand reaches
``min + threshold * (max - min)`` of the motif's possible score range. Hit rates are hits per kb;
the set-level metric is the Pearson correlation of per-motif hit rates between two sequence sets.

The bundled matrices are JASPAR 2024 CORE vertebrates (879 profiles; CC BY 4.0, see
``ddsm/resources/jaspar/SOURCE.md``).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..errors import DDSMInputError
from ._encode import index_matrix

logger = logging.getLogger(__name__)

BUNDLED_JASPAR = "jaspar/JASPAR2024_CORE_vertebrates_latest.jaspar"

#: upper widths of the scan buckets: motifs are zero-padded to their bucket's width
_BUCKETS = (8, 12, 16, 24, 40)


@dataclass(frozen=True)
class MotifSet:
    """Count matrices of ``M`` motifs.

    Attributes:
        ids: matrix ids (``MA0002.3``).
        names: TF names (``Runx1``).
        counts: ``M`` arrays of shape ``(w_m, 4)``, columns A, C, G, T.
    """

    ids: tuple[str, ...]
    names: tuple[str, ...]
    counts: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def widths(self) -> np.ndarray:
        """``(M,)`` motif widths."""
        return np.array([c.shape[0] for c in self.counts], dtype=np.int64)

    def labels(self) -> list[str]:
        """``"ID name"`` of each motif, for tables and plots."""
        return [f"{i} {n}" for i, n in zip(self.ids, self.names)]

    def subset(self, index: Sequence[int]) -> MotifSet:
        """The motifs at ``index``, in that order."""
        return MotifSet(tuple(self.ids[i] for i in index), tuple(self.names[i] for i in index),
                        tuple(self.counts[i] for i in index))

    def log_odds(self, *, pseudocount: float = 0.8, background: Optional[Sequence[float]] = None) -> list[np.ndarray]:
        """Position weight matrices in bits, ``M`` arrays ``(w_m, 4)``.

        Args:
            pseudocount: total pseudo-count added per column, spread as the background.
            background: A, C, G, T probabilities (default uniform).
        """
        bg = _background(background)
        out = []
        for c in self.counts:
            probs = (c + pseudocount * bg) / (c.sum(1, keepdims=True) + pseudocount)
            out.append(np.log2(probs / bg))
        return out


def _background(background: Optional[Sequence[float]]) -> np.ndarray:
    if background is None:
        return np.full(4, 0.25)
    bg = np.asarray(background, dtype=np.float64)
    if bg.shape != (4,) or (bg <= 0).any():
        raise DDSMInputError(f"motif background needs 4 positive A, C, G, T probabilities, got {background!r}")
    return bg / bg.sum()


def parse_jaspar(text: str, *, source: str = "<text>") -> MotifSet:
    """Parse JASPAR text format: ``>ID<tab>name`` then rows ``A [ n n ... ]`` for A, C, G, T.

    Raises:
        DDSMInputError: a block without four equal-length A/C/G/T rows, or non-numeric counts.
    """
    ids: list[str] = []
    names: list[str] = []
    counts: list[np.ndarray] = []
    rows: dict[str, list[float]] = {}

    def finish() -> None:
        if not ids:
            return
        if set(rows) != set("ACGT") or len({len(v) for v in rows.values()}) != 1 or not rows["A"]:
            raise DDSMInputError(f"{source}: motif {ids[-1]} needs four equal-length A/C/G/T rows")
        counts.append(np.array([rows[b] for b in "ACGT"], dtype=np.float64).T)

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith(">"):
            finish()
            words = line[1:].split(None, 1)
            if not words:
                raise DDSMInputError(f"{source} line {number}: motif header without an id")
            ids.append(words[0])
            names.append(words[1].strip() if len(words) > 1 else words[0])
            rows = {}
            continue
        if not ids:
            raise DDSMInputError(f"{source} line {number}: text before the first '>' motif header")
        base, _, rest = line.partition(" ")
        base = base.upper()
        if base not in ("A", "C", "G", "T"):
            raise DDSMInputError(f"{source} line {number}: expected a row for A, C, G or T, got {line[:40]!r}")
        try:
            rows[base] = [float(v) for v in rest.replace("[", " ").replace("]", " ").split()]
        except ValueError:
            raise DDSMInputError(f"{source} line {number}: non-numeric count in {line[:40]!r}") from None
    finish()
    if not ids:
        raise DDSMInputError(f"{source}: no motifs")
    return MotifSet(tuple(ids), tuple(names), tuple(counts))


@functools.lru_cache(maxsize=4)
def _load_jaspar_cached(path: str) -> MotifSet:
    from ..data.io import read_text

    return parse_jaspar(read_text(path), source=path)


def load_jaspar(path: Union[str, Path, None] = None) -> MotifSet:
    """Read a JASPAR file (plain or gzip); default: the bundled JASPAR 2024 CORE vertebrates set."""
    if path is None:
        from ..data.bundled import bundled_path

        path = bundled_path(BUNDLED_JASPAR)
    return _load_jaspar_cached(str(path))


def scan_counts(
    seqs: Sequence[str],
    motifs: Optional[MotifSet] = None,
    *,
    threshold: float = 0.8,
    pseudocount: float = 0.8,
    background: Optional[Sequence[float]] = None,
    both_strands: bool = True,
    device=None,
    memory_mb: float = 256.0,
) -> np.ndarray:
    """Number of motif hits in each sequence.

    A window starting at position ``i`` is a hit for motif ``m`` when its best strand scores at least
    ``min_m + threshold * (max_m - min_m)``. Windows must lie inside the sequence; letters other than
    A/C/G/T score 0 (the background).

    Args:
        seqs: ``N`` DNA strings (any lengths).
        motifs: the matrices (default: bundled JASPAR 2024 CORE vertebrates).
        threshold: fraction of each motif's score range, in [0, 1].
        pseudocount, background: see :meth:`MotifSet.log_odds`.
        both_strands: also scan the reverse complement.
        device: torch device for the scan (default CPU).
        memory_mb: size of the score tensor per batch.

    Returns:
        ``(N, M)`` int32 hit counts.
    """
    import torch
    import torch.nn.functional as F

    if not 0.0 <= threshold <= 1.0:
        raise DDSMInputError(f"motif threshold must be in [0, 1], got {threshold}")
    motifs = motifs if motifs is not None else load_jaspar()
    pwms = motifs.log_odds(pseudocount=pseudocount, background=background)
    widths = motifs.widths
    N, M = len(seqs), len(motifs)
    out = np.zeros((N, M), dtype=np.int32)
    if N == 0 or M == 0:
        return out
    idx = torch.from_numpy(index_matrix(seqs, "ACGT").astype(np.int64))
    lengths = torch.tensor([len(s) for s in seqs])
    L = idx.shape[1]
    x = F.one_hot(idx.clamp(min=0), 4).float() * (idx >= 0).unsqueeze(-1).float()
    x = x.transpose(1, 2).contiguous()  # (N, 4, L)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    lo = 0
    for hi in _BUCKETS + (int(widths.max()),):
        members = np.flatnonzero((widths > lo) & (widths <= hi))
        lo = max(lo, hi)
        if members.size == 0:
            continue
        W = int(widths[members].max())
        fwd, rev, thresholds = [], [], []
        for m in members:
            w = pwms[m]
            best, worst = w.max(1).sum(), w.min(1).sum()
            thresholds.append(worst + threshold * (best - worst) - 1e-6)
            for strand, s in ((fwd, w), (rev, w[::-1, ::-1])):  # RC: reverse rows, A<->T, C<->G
                padded = np.zeros((W, 4))
                padded[: s.shape[0]] = s
                strand.append(padded.T)
        Mb = len(members)
        weight = torch.tensor(np.stack(fwd + rev if both_strands else fwd), dtype=torch.float32, device=dev)
        # A window starting at i is inside a sequence of length n when i + w <= n; for the common
        # equal-length case that is one (Mb, L) pattern, folded into the threshold as +inf.
        thr = torch.tensor(thresholds, dtype=torch.float32, device=dev)[:, None].expand(Mb, L).clone()
        pos = torch.arange(L, device=dev)[None, :]
        mw = torch.from_numpy(widths[members]).to(dev)[:, None]
        thr[pos + mw > L] = float("inf")
        batch = max(1, int(memory_mb * 2**20 / (4 * weight.shape[0] * L)))
        for start in range(0, N, batch):
            xb = F.pad(x[start : start + batch].to(dev), (0, W - 1))
            scores = F.conv1d(xb, weight)  # (B, S * Mb, L), strands in blocks of Mb
            if both_strands:
                scores = torch.maximum(scores[:, :Mb], scores[:, Mb:])
            lens = lengths[start : start + batch].to(dev)
            if (lens == L).all():
                hits = torch.count_nonzero(scores >= thr, dim=-1)
            else:
                inside = pos[None] + mw[None] <= lens[:, None, None]
                hits = torch.count_nonzero((scores >= thr) & inside, dim=-1)
            out[start : start + len(xb), members] = hits.cpu().numpy().astype(np.int32)
    return out


def hit_rates(counts: np.ndarray, total_length: int) -> np.ndarray:
    """Per-motif hits per kb of sequence: ``(N, M)`` counts -> ``(M,)``."""
    if total_length <= 0:
        return np.full(counts.shape[1], np.nan)
    return counts.sum(0) / total_length * 1000.0


def rate_correlation(rates_a: np.ndarray, rates_b: np.ndarray) -> float:
    """Pearson correlation of two per-motif rate vectors (NaN when either is constant)."""
    a, b = np.asarray(rates_a, dtype=np.float64), np.asarray(rates_b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def log2_enrichment(rates_designed: np.ndarray, rates_reference: np.ndarray, *, pseudo: float = 0.01) -> np.ndarray:
    """``log2((designed + pseudo) / (reference + pseudo))`` per motif (rates in hits per kb)."""
    return np.log2((np.asarray(rates_designed) + pseudo) / (np.asarray(rates_reference) + pseudo))


def motif_correlation(
    designed: Sequence[str], reference: Sequence[str], motifs: Optional[MotifSet] = None, **scan_options
) -> float:
    """Pearson correlation across motifs of hit rates (per kb) in two sequence sets."""
    a = hit_rates(scan_counts(designed, motifs, **scan_options), sum(map(len, designed)))
    b = hit_rates(scan_counts(reference, motifs, **scan_options), sum(map(len, reference)))
    return rate_correlation(a, b)
