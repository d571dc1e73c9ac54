"""Is a generator of valid grids drawing them uniformly? Statistics that can tell.

A generator that applies random board symmetries (digit relabelling, row/column/band/stack
permutations, transpose) makes every cell's digit uniform whatever else it does, so per-cell digit
frequencies say nothing about *which* grids it favours. The statistics here are invariant under
those symmetries, so they measure the grid's equivalence class, where a biased generator shows:

- ``rectangles``: unavoidable rectangles, i.e. four cells (r1, c1), (r1, c2), (r2, c1), (r2, c2)
  spanning exactly two boxes with digits a, b / b, a (swapping a and b there gives another valid
  grid). Solvers that commit "easy" cells first tend to leave such structure behind.
- ``band_triples``: per band (and per stack), how many distinct digit triples its nine mini-rows
  (mini-columns) hold, summed over the six bands and stacks (18 at the least, 54 at the most).

:func:`compare` runs a two-sample test of each statistic against reference grids (the random
backtracking generator's, under random symmetries) and a chi-square of the per-cell digit counts.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import torch
from scipy import stats as _stats
from torch import Tensor

from .board import N_DIGITS

#: pairs of rows in the same band, and pairs of columns in different stacks (a rectangle spanning
#: exactly two boxes has its two rows in one band and its columns in two stacks, or the transpose)
_SAME_BAND = [(a, b) for a, b in combinations(range(9), 2) if a // 3 == b // 3]
_OTHER_BAND = [(a, b) for a, b in combinations(range(9), 2) if a // 3 != b // 3]


def _rectangles_one_way(g: Tensor) -> Tensor:
    """Rectangles with both rows in one band and columns in different stacks: ``(N,)`` long,
    from grids ``g (N, 9, 9)``."""
    r = torch.tensor(_SAME_BAND)
    c = torch.tensor(_OTHER_BAND)
    top_left = g[:, r[:, 0]][:, :, c[:, 0]]  # (N, pairs of rows, pairs of columns)
    top_right = g[:, r[:, 0]][:, :, c[:, 1]]
    bottom_left = g[:, r[:, 1]][:, :, c[:, 0]]
    bottom_right = g[:, r[:, 1]][:, :, c[:, 1]]
    hit = (top_left == bottom_right) & (top_right == bottom_left)
    return hit.flatten(1).sum(-1)


def rectangles(grids: Tensor) -> Tensor:
    """Unavoidable rectangles of valid grids ``(N, 81)`` -> ``(N,)`` long (both orientations)."""
    g = grids.reshape(-1, 9, 9)
    return _rectangles_one_way(g) + _rectangles_one_way(g.transpose(1, 2))


def band_triples(grids: Tensor) -> Tensor:
    """Distinct mini-row digit sets per band plus mini-column sets per stack, ``(N,)`` long."""
    g = grids.reshape(-1, 9, 9)
    total = torch.zeros(g.shape[0], dtype=torch.long)
    for view in (g, g.transpose(1, 2)):
        # mini-rows: (N, band, row in band, stack, 3 cells) -> a digit-set bitmask per mini-row
        mini = view.reshape(-1, 3, 3, 3, 3)
        masks = (1 << mini).sum(-1).reshape(-1, 3, 9)  # (N, band, its 9 mini-rows)
        srt = masks.sort(-1).values
        distinct = 1 + (srt[..., 1:] != srt[..., :-1]).sum(-1)  # (N, band)
        total += distinct.sum(-1)
    return total


def cell_chi2(grids: Tensor) -> tuple[float, float]:
    """Chi-square statistic and p-value of the (cell, digit) counts against 1/9 each."""
    counts = torch.nn.functional.one_hot(grids.long(), N_DIGITS).sum(0).double().numpy()  # (81, 9)
    expected = grids.shape[0] / N_DIGITS
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    dof = counts.shape[0] * (N_DIGITS - 1)
    return chi2, float(_stats.chi2.sf(chi2, dof))


def compare(grids: Tensor, reference: Tensor) -> dict[str, float]:
    """Uniformity of valid ``grids (N, 81)`` against ``reference (M, 81)`` valid grids.

    Returns means of both statistics for both sets, a two-sample Mann-Whitney p-value for each
    (ties are many, so a rank test rather than KS) and the per-cell chi-square p-value of ``grids``.
    """
    out: dict[str, float] = {}
    for name, fn in (("rectangles", rectangles), ("band_triples", band_triples)):
        a, b = fn(grids).numpy(), fn(reference).numpy()
        out[f"{name}_mean"], out[f"{name}_mean_reference"] = float(np.mean(a)), float(np.mean(b))
        out[f"{name}_p"] = float(_stats.mannwhitneyu(a, b).pvalue) if np.ptp(np.r_[a, b]) else 1.0
    out["cell_chi2"], out["cell_chi2_p"] = cell_chi2(grids)
    return out
