"""Exact constrained design: every returned sequence satisfies every constraint, or is reported.

Fixed positions are imposed inside the sampler (and checked). For variable-length models (an
end letter, see ``Alphabet.end``) a design is its row up to the first end letter; a length window is
repaired like a motif: a design too long gets end letters fixed from the window's maximum on, one
too short keeps its letters and has the positions from its end up to the maximum re-sampled.
Forbidden motifs are removed by
*repair*: the positions of each hit (plus a small margin) are freed and re-sampled by the model
with the rest of the sequence held fixed (inpainting), which keeps the design close to the model's
distribution instead of throwing it away. A sequence outside the GC window is re-drawn. Rounds
repeat on the still-failing rows until all pass or the budget of rounds is spent; failures are
returned with their reason, never emitted silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .gc import GCWindow
from .motifs import ForbiddenMotifs

#: draw(rows, tokens (R, L), mask (R, L)[, index (R,)]) -> R sequences; mask marks positions to keep
#: at tokens; index (only with ``indexed_draw=True``) holds the design ids of the rows (per-design
#: inputs such as signal tracks follow their design through repair rounds)
DrawFn = Callable[..., list[str]]


@dataclass
class DesignResult:
    """Designs and what happened to each.

    Attributes:
        sequences: one entry per requested design; None where the budget ran out.
        samples_used: sampler calls (full draws or repairs) spent on each design.
        failures: index -> reason, for the designs that are None.
        rewards: the reward of each design, when sampling was reward-guided.
    """

    sequences: list[Optional[str]]
    samples_used: list[int]
    failures: dict[int, str] = field(default_factory=dict)
    #: with reward-guided sampling, each design's reward (None where it failed)
    rewards: Optional[list[Optional[float]]] = None


def _check(seq: str, forbid: Optional[ForbiddenMotifs], gc: Optional[GCWindow],
           end: str = "") -> tuple[list[tuple[int, int]], bool]:
    body = seq[: seq.find(end)] if end and end in seq else seq
    hits = forbid.hits(body) if forbid is not None else []
    gc_ok = gc.ok(body) if gc is not None else True
    return hits, gc_ok


def constrained_design(
    draw: DrawFn,
    n: int,
    length: int,
    letters: str,
    *,
    fixed: Optional[tuple[np.ndarray, np.ndarray]] = None,
    forbid: Optional[ForbiddenMotifs] = None,
    gc: Optional[GCWindow] = None,
    rounds: int = 20,
    margin: int = 2,
    indexed_draw: bool = False,
    end: str = "",
    length_range: Optional[tuple[int, int]] = None,
) -> DesignResult:
    """Draw ``n`` designs of ``length`` letters that satisfy all constraints.

    Args:
        draw: the model's sampler with per-row fixed positions.
        fixed: user-fixed ``(tokens (L,), mask (L,))``, kept in every draw.
        rounds: at most this many sampling rounds (the first draws everything).
        margin: letters freed on each side of a forbidden-motif hit when repairing.
        indexed_draw: also pass ``draw`` the design ids ``(R,)`` of its rows, as a 4th argument.
        end: the end letter of a variable-length model (last of ``letters``); designs are returned
            cut at their first end letter.
        length_range: ``(lo, hi)`` lengths a design may have (needs ``end``).
    """
    if length_range is not None and not end:
        raise ValueError("length_range needs a variable-length alphabet (end letter)")
    base_tok = np.zeros(length, dtype=np.int64) if fixed is None else fixed[0].astype(np.int64)
    base_mask = np.zeros(length, dtype=bool) if fixed is None else fixed[1].astype(bool)
    index = {c: i for i, c in enumerate(letters)}
    seqs: list[Optional[str]] = [None] * n
    used = [0] * n
    failures: dict[int, str] = {}
    current: dict[int, str] = {}
    # rows to draw: index -> (tokens, mask) to keep
    todo: dict[int, tuple[np.ndarray, np.ndarray]] = {i: (base_tok, base_mask) for i in range(n)}
    for _ in range(rounds):
        if not todo:
            break
        order = sorted(todo)
        tok = np.stack([todo[i][0] for i in order])
        msk = np.stack([todo[i][1] for i in order])
        drawn = draw(len(order), tok, msk, np.asarray(order)) if indexed_draw else draw(len(order), tok, msk)
        todo = {}
        for i, s in zip(order, drawn):
            used[i] += 1
            current[i] = s
            if fixed is not None and any(s[j] != letters[base_tok[j]] for j in np.flatnonzero(base_mask)):
                raise RuntimeError("sampler did not keep the fixed positions")  # a bug, not user input
            hits, gc_ok = _check(s, forbid, gc, end)
            cut = s.find(end) if end and end in s else length
            long = length_range is not None and cut > length_range[1]
            short = length_range is not None and cut < length_range[0]
            if not hits and gc_ok and not long and not short:
                seqs[i] = s[:cut]
                continue
            if long or short:
                keep_tok = np.array([index[c] for c in s], dtype=np.int64)
                keep = np.ones(length, dtype=bool)
                # end the design at the window's maximum at the latest
                keep_tok[length_range[1]:] = index[end]
                if short:  # keep the design, re-draw from its end up to the maximum: a new end there
                    keep[cut : length_range[1]] = False
                keep |= base_mask
                keep_tok = np.where(base_mask, base_tok, keep_tok)
                todo[i] = (keep_tok, keep)
                continue
            if not gc_ok:  # composition is global: draw the whole row again
                todo[i] = (base_tok, base_mask)
                continue
            stuck = [(a, b) for a, b in hits if base_mask[a:b].all()]
            if stuck:  # no re-sampling can remove a hit made of fixed letters
                failures[i] = f"forbidden motif at {stuck[0][0] + 1}-{stuck[0][1]} lies in the fixed positions"
                continue
            free = np.zeros(length, dtype=bool)
            for a, b in hits:
                free[max(0, a - margin) : min(length, b + margin)] = True
            free &= ~base_mask
            keep_tok = np.array([index[c] for c in s], dtype=np.int64)
            todo[i] = (keep_tok, ~free)
    for i in range(n):
        if seqs[i] is None and i not in failures:
            hits, gc_ok = _check(current.get(i, ""), forbid, gc, end) if i in current else ([], False)
            why = []
            if hits:
                why.append(f"{len(hits)} forbidden motif hit(s)")
            if length_range is not None and i in current:
                cut = current[i].find(end) if end in current[i] else length
                if not length_range[0] <= cut <= length_range[1]:
                    why.append(f"length {cut} outside [{length_range[0]}, {length_range[1]}]")
            if not gc_ok and gc is not None and i in current:
                why.append(f"GC {gc.gc(current[i].split(end)[0] if end else current[i]):.3f} "
                           f"outside [{gc.lo:g}, {gc.hi:g}]")
            failures[i] = "budget of sampling rounds spent: " + (", ".join(why) or "unsatisfied")
    return DesignResult(seqs, used, failures)
