"""9x9 Sudoku boards: the cell layout, text parsing/formatting and the validity rules.

A board is 81 cells in row-major order. Internally a digit is ``0..8`` (the printed digit minus
one, so boards are K = 9 token sequences); a blank is ``BLANK = -1``. Boards travel as
``LongTensor (B, 81)``.

The validity check covers rows, columns *and* 3x3 boxes (the DDSM reference notebook repeated
its column check where the box check should be; ``check_boxes=False`` reproduces that metric).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import torch
from torch import Tensor

N_CELLS = 81
N_DIGITS = 9
BLANK = -1

_ROW = torch.arange(N_CELLS) // 9
_COL = torch.arange(N_CELLS) % 9
_BOX = (_ROW // 3) * 3 + _COL // 3


def rows_cols_boxes() -> tuple[Tensor, Tensor, Tensor]:
    """Row, column and box index of every cell, each ``(81,)`` long in ``0..8``."""
    return _ROW.clone(), _COL.clone(), _BOX.clone()


@lru_cache(maxsize=None)
def _units() -> Tensor:
    rows = [torch.nonzero(_ROW == r).flatten() for r in range(9)]
    cols = [torch.nonzero(_COL == c).flatten() for c in range(9)]
    boxes = [torch.nonzero(_BOX == b).flatten() for b in range(9)]
    return torch.stack(rows + cols + boxes)


def units(check_boxes: bool = True) -> Tensor:
    """Cell indices of the 27 units (9 rows, 9 columns, 9 boxes): ``(27, 9)`` long.

    With ``check_boxes=False`` the 18 rows and columns only: ``(18, 9)``.
    """
    u = _units()
    return u if check_boxes else u[:18]


@lru_cache(maxsize=None)
def _peers() -> Tensor:
    same = (_ROW[:, None] == _ROW[None, :]) | (_COL[:, None] == _COL[None, :]) | (_BOX[:, None] == _BOX[None, :])
    same.fill_diagonal_(False)
    return torch.stack([torch.nonzero(row).flatten() for row in same])


def peers() -> Tensor:
    """The 20 other cells sharing a row, column or box with each cell: ``(81, 20)`` long."""
    return _peers()


# ------------------------------------------------------------------------------ text
def parse_board(text: str) -> Tensor:
    """An 81-character string (digits 1-9; ``.`` or ``0`` for blanks) -> ``(81,)`` long.

    Surrounding whitespace is ignored.

    Raises:
        ValueError: wrong length or a character other than ``1-9 . 0``, with the position.
    """
    s = text.strip()
    if len(s) != N_CELLS:
        raise ValueError(f"a board needs 81 cells, got {len(s)} characters")
    out = torch.empty(N_CELLS, dtype=torch.long)
    for i, ch in enumerate(s):
        if ch in ".0":
            out[i] = BLANK
        elif "1" <= ch <= "9":
            out[i] = ord(ch) - ord("1")
        else:
            raise ValueError(f"bad character {ch!r} at position {i + 1} (expected 1-9, '.' or '0')")
    return out


def format_board(board: Tensor, blank: str = ".") -> str:
    """``(81,)`` digits 0..8 (or ``BLANK``) -> 81-character string of ``1-9`` and ``blank``."""
    return "".join(blank if int(d) < 0 else chr(ord("1") + int(d)) for d in board.tolist())


# ------------------------------------------------------------------------------ rules
def unit_counts(boards: Tensor, check_boxes: bool = True) -> Tensor:
    """How often each digit occurs in each unit: ``boards (B, 81)`` -> ``(B, U, 9)`` long.

    Blanks (negative values) count for nothing. ``U`` is 27 (18 without boxes).
    """
    u = units(check_boxes).to(boards.device)
    cells = boards[:, u]  # (B, U, 9)
    onehot = torch.zeros(*cells.shape, N_DIGITS, dtype=torch.long, device=boards.device)
    filled = cells >= 0
    onehot[filled] = torch.nn.functional.one_hot(cells[filled], N_DIGITS)
    return onehot.sum(-2)


def is_valid_grid(grids: Tensor, check_boxes: bool = True) -> Tensor:
    """Whether each complete grid obeys the rules: ``(B, 81)`` -> ``(B,)`` bool.

    A grid is valid when every cell holds a digit 0..8 and every row, column (and box, unless
    ``check_boxes=False``) holds each digit exactly once.
    """
    complete = ((grids >= 0) & (grids < N_DIGITS)).all(-1)
    counts = unit_counts(grids.clamp(-1, N_DIGITS - 1), check_boxes)
    return complete & (counts == 1).all(-1).all(-1)


def givens_conflict(puzzles: Tensor) -> Tensor:
    """Whether the givens already break a rule (a digit twice in a unit): ``(B, 81)`` -> ``(B,)``."""
    return (unit_counts(puzzles) > 1).any(-1).any(-1)


def conflict_cells(grids: Tensor) -> Tensor:
    """Cells whose digit repeats in one of their units: ``(B, 81)`` -> ``(B, 81)`` bool."""
    u = units().to(grids.device)
    counts = unit_counts(grids)  # (B, 27, 9)
    cells = grids[:, u]  # (B, 27, 9)
    dup = torch.gather(counts, 2, cells.clamp_min(0)) > 1  # (B, 27, 9): cell's digit repeats
    dup &= cells >= 0
    out = torch.zeros(grids.shape, dtype=torch.bool, device=grids.device)
    for j in range(u.shape[0]):  # 27 small scatters; a cell lies in 3 units
        out[:, u[j]] |= dup[:, j]
    return out


def keeps_givens(solutions: Tensor, puzzles: Tensor) -> Tensor:
    """Whether each solution agrees with its puzzle's givens: ``(B, 81)`` x2 -> ``(B,)`` bool."""
    given = puzzles >= 0
    return ((solutions == puzzles) | ~given).all(-1)


def is_solution(solutions: Tensor, puzzles: Tensor, check_boxes: bool = True) -> Tensor:
    """Valid complete grid that keeps the givens: ``(B, 81)`` x2 -> ``(B,)`` bool."""
    return is_valid_grid(solutions, check_boxes) & keeps_givens(solutions, puzzles)


def n_givens(puzzles: Tensor) -> Tensor:
    """Number of given cells: ``(B, 81)`` -> ``(B,)`` long."""
    return (puzzles >= 0).sum(-1)


def describe_problem(text: str) -> Optional[str]:
    """Why an 81-character puzzle string cannot be solved as given, or None if it is well formed.

    Checks length, characters and conflicting givens (not solvability).
    """
    try:
        board = parse_board(text)
    except ValueError as e:
        return str(e)
    counts = unit_counts(board[None])[0]  # (27, 9)
    bad = torch.nonzero(counts > 1)
    if len(bad):
        unit, digit = int(bad[0, 0]), int(bad[0, 1])
        kind = ("row", "column", "box")[unit // 9]
        return (f"conflicting givens: digit {digit + 1} appears {int(counts[unit, digit])} times in "
                f"{kind} {unit % 9 + 1}")
    return None
