"""Validity-preserving transformations of Sudoku boards.

A symmetry is a cell permutation plus a digit relabelling: ``new[:, j] = digit_perm[old[:, cell_perm[j]]]``.
The cell permutations generated here are the ones that map rows to rows, columns to columns and
boxes to boxes (up to a transpose): rows permuted within their band, bands permuted, the same for
columns and stacks, and an optional transpose. With the 9! digit relabellings they form the
group under which the set of valid grids is invariant; the 8 rotations/reflections of the square
(the "board symmetries" of the DDSM notebook) are among them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .board import N_CELLS, N_DIGITS


@dataclass
class Symmetry:
    """A batch of symmetries.

    Attributes:
        cell_perm: ``(n, 81)`` long; output cell j takes input cell ``cell_perm[:, j]``.
        digit_perm: ``(n, 9)`` long; digit d becomes ``digit_perm[:, d]``.
    """

    cell_perm: Tensor
    digit_perm: Tensor

    def apply(self, boards: Tensor) -> Tensor:
        """``(n, 81)`` boards (blanks negative, kept blank) -> transformed ``(n, 81)``."""
        moved = torch.gather(boards, 1, self.cell_perm.to(boards.device))
        relabelled = torch.gather(self.digit_perm.to(boards.device), 1, moved.clamp_min(0))
        return torch.where(moved >= 0, relabelled, moved)

    def apply_cells(self, values: Tensor) -> Tensor:
        """Move per-cell values ``(n, 81, ...)`` (no relabelling): e.g. masks or confidences."""
        idx = self.cell_perm.to(values.device)
        idx = idx.reshape(*idx.shape, *([1] * (values.dim() - 2))).expand_as(values)
        return torch.gather(values, 1, idx)

    def apply_candidates(self, cand: Tensor) -> Tensor:
        """Transform per-cell digit tables ``(n, 81, 9)`` (e.g. allowed-digit masks)."""
        moved = self.apply_cells(cand)
        # new digit digit_perm[d] holds old digit d: scatter along the digit axis
        inv = torch.argsort(self.digit_perm.to(cand.device), dim=1)
        return torch.gather(moved, 2, inv[:, None, :].expand_as(moved))

    def inverse(self) -> "Symmetry":
        return Symmetry(torch.argsort(self.cell_perm, dim=1), torch.argsort(self.digit_perm, dim=1))


def _block_perm(n: int, generator: Optional[torch.Generator]) -> Tensor:
    """``(n, 9)`` permutations of 0..8 that keep the three blocks {0,1,2},{3,4,5},{6,7,8} intact."""
    outer = torch.argsort(torch.rand(n, 3, generator=generator), dim=1)  # block order
    inner = torch.argsort(torch.rand(n, 3, 3, generator=generator), dim=2)  # order inside blocks
    return (3 * outer[:, :, None] + torch.gather(inner, 1, outer[:, :, None].expand(-1, -1, 3))).reshape(n, 9)


def _cells(rowperm: Tensor, colperm: Tensor, transpose: Tensor) -> Tensor:
    """Cell permutation ``(n, 81)`` with new[r, c] = old[rowperm[r], colperm[c]], transposed where asked."""
    n = rowperm.shape[0]
    grid = rowperm[:, :, None] * 9 + colperm[:, None, :]  # (n, 9, 9)
    grid = torch.where(transpose[:, None, None], grid.transpose(1, 2), grid)
    return grid.reshape(n, N_CELLS)


def random_symmetries(n: int, *, generator: Optional[torch.Generator] = None, relabel: bool = True,
                      transpose: bool = True) -> Symmetry:
    """``n`` independent uniformly random symmetries (CPU tensors).

    Args:
        relabel: include a random digit relabelling (else digits are kept).
        transpose: include a random transpose.
    """
    rows, cols = _block_perm(n, generator), _block_perm(n, generator)
    flip = (torch.rand(n, generator=generator) < 0.5) if transpose else torch.zeros(n, dtype=torch.bool)
    digits = (torch.argsort(torch.rand(n, N_DIGITS, generator=generator), dim=1) if relabel
              else torch.arange(N_DIGITS).expand(n, -1).clone())
    return Symmetry(_cells(rows, cols, flip), digits)


def dihedral(k: Tensor) -> Symmetry:
    """The 8 rotations/reflections of the square: ``k (n,)`` in 0..7 -> symmetries (digits kept).

    k = 0..3 rotate by k quarter turns; 4..7 transpose first, then rotate.
    """
    k = k.long()
    idx = torch.arange(N_CELLS).reshape(9, 9)
    views = []
    for j in range(8):
        g = idx.t() if j >= 4 else idx
        views.append(torch.rot90(g, j % 4).reshape(-1))
    table = torch.stack(views)
    return Symmetry(table[k], torch.arange(N_DIGITS).expand(len(k), -1).clone())
