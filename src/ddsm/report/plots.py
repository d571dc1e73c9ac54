"""Figures of the evaluation report, each returned as PNG bytes.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never through pyplot's global
state, so that making a report does not change the caller's plotting backend or open windows.
"""

from __future__ import annotations

import io
from typing import Any, Optional, Sequence

import numpy as np

DESIGNED_COLOR = "#d95f02"
REFERENCE_COLOR = "#1b9e77"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _grid(fig, nrows: int, ncols: int, *, left: float = 0.8, right: float = 0.2, bottom: float = 0.6,
          top: float = 0.45, wspace: float = 0.3, hspace: float = 0.5) -> np.ndarray:
    """``(nrows, ncols)`` axes with margins in inches (a fixed layout: a layout engine would draw
    every figure several times, which dominates the report's run time)."""
    w, h = fig.get_size_inches()
    return fig.subplots(nrows, ncols, squeeze=False, gridspec_kw={
        "left": left / w, "right": 1 - right / w, "bottom": bottom / h, "top": 1 - top / h,
        "wspace": wspace, "hspace": hspace})


def to_png(fig) -> bytes:
    """Render a figure to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, facecolor="white")
    return buf.getvalue()


def position_probabilities(seqs: Sequence[str], alphabet: str = "ACGT", max_len: Optional[int] = None):
    """Per-position letter frequencies as a ``pandas.DataFrame`` (rows = positions, columns = letters).

    Positions past a sequence's end and letters outside ``alphabet`` are not counted.
    """
    import pandas as pd

    from ..metrics._encode import index_matrix

    idx = index_matrix(seqs, alphabet, max_len)
    counts = np.stack([(idx == i).sum(0) for i in range(len(alphabet))], axis=1).astype(np.float64)
    totals = counts.sum(1, keepdims=True)
    probs = np.divide(counts, totals, out=np.full_like(counts, 1.0 / len(alphabet)), where=totals > 0)
    return pd.DataFrame(probs, columns=list(alphabet))


def logo_letters(seqs: Sequence[str]) -> str:
    """The letters a logo shows: ACGT (or ACGU) for nucleotides, else the sorted distinct letters."""
    used = set().union(*map(set, seqs)) if seqs else set()
    for letters in ("ACGT", "ACGU"):
        if used <= set(letters):
            return letters
    return "".join(sorted(used))


def covered_length(sets: Sequence[Sequence[str]], min_share: float = 0.5) -> int:
    """The number of leading positions that at least ``min_share`` of the sequences of *every*
    set reach: variable-length designs and references are compared only where both have letters."""
    stops = []
    for seqs in sets:
        lengths = np.sort(np.array([len(s) for s in seqs]))[::-1]
        if lengths.size == 0:
            return 0
        stops.append(int(lengths[max(0, int(np.ceil(min_share * lengths.size)) - 1)]))
    return min(stops)


def logo_window(seqs: Sequence[str], width: int, alphabet: str = "ACGT", stop: Optional[int] = None) -> tuple[int, int]:
    """The ``width``-position window ``[start, stop)`` with the most information (bits) in ``seqs``.

    Long sequences make unreadable (and slow) logos, so the report shows the most informative part
    of the reference, e.g. the TATA box and TSS of promoters.
    """
    probs = position_probabilities(seqs, alphabet, max_len=stop).to_numpy()
    if stop is not None:
        probs = probs[:stop]
    L = probs.shape[0]
    if L <= width:
        return 0, L
    with np.errstate(divide="ignore", invalid="ignore"):
        info = np.log2(len(alphabet)) + np.nansum(np.where(probs > 0, probs * np.log2(probs), 0.0), axis=1)
    sums = np.convolve(info, np.ones(width), mode="valid")
    start = int(np.argmax(sums))
    return start, start + width


def logo_png(seqs_by_set: dict[str, Sequence[str]], title: str, *, window: Optional[tuple[int, int]] = None,
             alphabet: str = "ACGT") -> bytes:
    """Probability sequence logos (logomaker), one panel per set (e.g. reference, designed).

    Args:
        seqs_by_set: panel name -> sequences.
        title: figure title.
        window: 0-based ``[start, stop)`` positions to show (default: all).
    """
    import logomaker

    length = max(len(s) for seqs in seqs_by_set.values() for s in seqs)
    start, stop = window if window is not None else (0, length)
    width = min(16.0, max(6.0, 0.12 * (stop - start) + 2))
    fig = _figure(width, 1.7 * len(seqs_by_set) + 0.9)
    axes = _grid(fig, len(seqs_by_set), 1, top=0.7, hspace=0.6)[:, 0]
    for ax, (name, seqs) in zip(axes, seqs_by_set.items()):
        df = position_probabilities([s[start:stop] for s in seqs], alphabet, max_len=stop - start)
        df.index = df.index + start + 1  # 1-based positions on the axis
        logomaker.Logo(df, ax=ax, color_scheme="classic", show_spines=False)
        ax.set_ylim(0, 1)
        ax.set_ylabel("probability")
        ax.set_title(f"{name} (n = {len(seqs)})", fontsize=10, loc="left")
    axes[-1].set_xlabel("position")
    fig.suptitle(title)
    return to_png(fig)


def kmer_scatter_png(groups: dict[str, tuple[Sequence[str], Sequence[str]]], ks: Sequence[int]) -> bytes:
    """k-mer frequencies, reference (x) against designed (y), log-log; rows = classes, columns = k."""
    from matplotlib.ticker import NullFormatter

    from ..metrics.kmers import kmer_js, kmer_spectrum

    rows = list(groups)
    fig = _figure(3.0 * len(ks) + 0.6, 2.7 * len(rows) + 0.6)
    axes = _grid(fig, len(rows), len(ks), left=0.9, wspace=0.35, hspace=0.45)
    for r, name in enumerate(rows):
        designed, reference = groups[name]
        for j, k in enumerate(ks):
            ax = axes[r, j]
            p, q = kmer_spectrum(designed, k), kmer_spectrum(reference, k)
            floor = 0.5 / max(1, sum(max(len(s) - k + 1, 0) for s in designed + list(reference)))
            x, y = np.maximum(q, floor), np.maximum(p, floor)
            ax.scatter(x, y, s=4 if k < 5 else 1.5, alpha=0.5, color=DESIGNED_COLOR, linewidths=0)
            lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
            ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
            ax.set_xscale("log")
            ax.set_yscale("log")
            for axis in (ax.xaxis, ax.yaxis):  # minor-tick labels of narrow log ranges overlap
                axis.set_minor_formatter(NullFormatter())
            ax.set_title(f"{name}: {k}-mers, JS {kmer_js(designed, reference, k):.3f}", fontsize=9)
            if r == len(rows) - 1:
                ax.set_xlabel("reference frequency")
            if j == 0:
                ax.set_ylabel("designed frequency")
    return to_png(fig)


def gc_histogram_png(groups: dict[str, tuple[Sequence[str], Sequence[str]]]) -> bytes:
    """GC-content histograms of designed and reference sequences, one panel per class."""
    from ..metrics.kmers import gc_content

    rows = list(groups)
    cols = min(3, len(rows))
    nrows = (len(rows) + cols - 1) // cols
    fig = _figure(3.6 * cols + 0.6, 2.6 * nrows + 0.4)
    axes = _grid(fig, nrows, cols, left=0.5, hspace=0.55).ravel()
    bins = np.linspace(0, 1, 41)
    for ax, name in zip(axes, rows):
        designed, reference = groups[name]
        for seqs, color, label in ((reference, REFERENCE_COLOR, "reference"), (designed, DESIGNED_COLOR, "designed")):
            gc = gc_content(list(seqs))
            gc = gc[np.isfinite(gc)]
            if gc.size:
                ax.hist(gc, bins=bins, density=True, alpha=0.55, color=color, label=f"{label} ({gc.size})")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("GC content")
        ax.legend(fontsize=7)
    for ax in axes[len(rows):]:
        ax.set_visible(False)
    return to_png(fig)


def motif_enrichment_png(rates: dict[str, tuple[np.ndarray, np.ndarray]], labels: Sequence[str], *,
                         top: int = 15, min_rate: float = 0.5) -> bytes:
    """Horizontal bars of log2(designed / reference) motif hit rates: the ``top`` most changed motifs
    per class, among motifs with at least ``min_rate`` hits per kb in either set."""
    from ..metrics.motifs import log2_enrichment

    rows = list(rates)
    cols = min(2, len(rows))
    nrows = (len(rows) + cols - 1) // cols
    fig = _figure(6.0 * cols + 1.8 * cols, 0.22 * top * nrows + 1.0 * nrows + 0.4)
    axes = _grid(fig, nrows, cols, left=1.9, wspace=0.4, hspace=0.35).ravel()
    labels = np.asarray(labels, dtype=object)
    for ax, name in zip(axes, rows):
        a, b = rates[name]
        enr = log2_enrichment(a, b, pseudo=0.1)
        keep = np.flatnonzero((np.maximum(a, b) >= min_rate) & np.isfinite(enr))
        order = keep[np.argsort(-np.abs(enr[keep]))][:top][::-1]
        colors = [DESIGNED_COLOR if e > 0 else REFERENCE_COLOR for e in enr[order]]
        ax.barh(np.arange(len(order)), enr[order], color=colors)
        ax.set_yticks(np.arange(len(order)), labels[order], fontsize=7)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel("log2 hits/kb, designed / reference")
        ax.set_title(name, fontsize=10)
    for ax in axes[len(rows):]:
        ax.set_visible(False)
    return to_png(fig)


def training_curves_png(history: Sequence[dict[str, Any]]) -> Optional[bytes]:
    """Train and validation loss against step (None when the history has no losses)."""
    def series(key: str) -> tuple[list[float], list[float]]:
        pts = [(float(h["step"]), float(h[key])) for h in history
               if isinstance(h, dict) and h.get("step") is not None and isinstance(h.get(key), (int, float))
               and np.isfinite(h[key])]
        return [p[0] for p in pts], [p[1] for p in pts]

    train, valid = series("train_loss"), series("valid_loss")
    if not train[0] and not valid[0]:
        return None
    fig = _figure(7.0, 3.4)
    ax = _grid(fig, 1, 1)[0, 0]
    if train[0]:
        ax.plot(*train, color=DESIGNED_COLOR, label="train loss")
    if valid[0]:
        ax.plot(*valid, color=REFERENCE_COLOR, marker="o", ms=3, label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    return to_png(fig)
