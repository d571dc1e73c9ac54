"""Batched constraint propagation on candidate tables.

A candidate table ``cand (B, 81, 9)`` bool marks the digits still possible in each cell. Two
classic deductions are iterated to a fixed point, for a whole batch at once:

- naked single: a cell with one candidate fixes that digit, which is removed from its 20 peers;
- hidden single: a digit with one possible cell in a unit must go there.

A board whose table empties a cell, or leaves a digit without a cell in some unit, is a
contradiction: no completion of it obeys the rules.

``probe`` adds failed-literal probing on top: a candidate whose placement alone propagates to a
contradiction is removed. It is what separates "hard" from "hardest" puzzles: probing every cell
to a fixed point solves all of norvig_top95 and 9 of norvig_hardest11 outright, and none of
forum_hardest_1905_dev1000, but cuts a depth-first search on its first 30 puzzles from a median of
80.5 nodes (singles only) to 3.5 (every cell probed), 5 (cells with up to three candidates) or 13.5
(two; ``bench/sudoku_probe.py``).
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from .board import N_CELLS, N_DIGITS, peers, units


def candidates(puzzles: Tensor) -> Tensor:
    """Candidate table of the givens alone: ``(B, 81)`` (blanks negative) -> ``(B, 81, 9)`` bool."""
    given = puzzles >= 0
    onehot = torch.nn.functional.one_hot(puzzles.clamp_min(0), N_DIGITS).bool()
    return torch.where(given[..., None], onehot, torch.ones_like(onehot))


@lru_cache(maxsize=None)
def _incidence(device: str) -> tuple[Tensor, Tensor]:
    """Peer matrix ``(81, 81)`` (1 where two cells share a unit) and unit membership ``(27, 81)``,
    float32 on ``device``: eliminations and unit counts become small matrix products, several
    times faster on a CPU than gathering the 20 peers of every cell."""
    peer = torch.zeros(N_CELLS, N_CELLS)
    peer.scatter_(1, peers(), 1.0)
    member = torch.zeros(27, N_CELLS)
    member.scatter_(1, units(), 1.0)
    return peer.to(device), member.to(device)


def eliminate(cand: Tensor, fixed: Tensor) -> Tensor:
    """Remove the digits of ``fixed`` cells from their peers.

    Args:
        cand: ``(B, 81, 9)`` bool; fixed: ``(B, 81, 9)`` bool one-hot rows for fixed cells (zeros
            elsewhere).
    Returns:
        the narrowed ``(B, 81, 9)`` table (a fixed cell keeps its digit unless a peer has it too).
    """
    peer, _ = _incidence(str(cand.device))
    taken = torch.matmul(peer, fixed.float()) > 0  # (B, 81, 9): digit fixed in some peer
    return cand & ~taken


def _round(x: Tensor) -> tuple[Tensor, Tensor]:
    """One round of naked then hidden singles on cell-major tables ``x (81, b, 9)`` float 0/1.

    Cell-major so that each deduction is one matrix product over all boards, ``(81, 81) @ (81,
    b * 9)``, rather than ``b`` small ones, which a CPU runs far less efficiently.

    Returns:
        ``(x, contradiction (b,))``.
    """
    peer, member = _incidence(str(x.device))
    b = x.shape[1]
    single = (x * (x.sum(-1, keepdim=True) == 1)).reshape(N_CELLS, b * N_DIGITS)
    x = x.reshape(N_CELLS, b * N_DIGITS) * (peer @ single == 0)  # a peer's fixed digit is out
    count = member @ x  # (27, b * 9): cells left for each digit in each unit
    # a candidate is forced when some unit of its cell has no other cell for that digit
    forced = ((member.T @ (count == 1).float()) > 0).float().mul_(x).view(N_CELLS, b, N_DIGITS)
    n_forced = forced.sum(-1, keepdim=True)
    x = torch.where(n_forced > 0, forced, x.view(N_CELLS, b, N_DIGITS))
    dead = ((count.view(27, b, N_DIGITS) == 0).any(-1).any(0) | (x.sum(-1) == 0).any(0)
            | (n_forced.squeeze(-1) > 1).any(0))
    return x, dead


def propagate(cand: Tensor, max_rounds: int = 81) -> tuple[Tensor, Tensor]:
    """Iterate naked and hidden singles to a fixed point.

    Each round works only on the boards still changing: a board leaves the batch once it reaches
    its fixed point or a contradiction (most do within a few rounds, a few need ten or more).

    Args:
        cand: ``(B, 81, 9)`` bool candidate table (not modified).
    Returns:
        ``(cand, contradiction)``: the narrowed table ``(B, 81, 9)`` and ``(B,)`` bool. A board in
        contradiction keeps the table of the round that found it.
    """
    B = cand.shape[0]
    out = cand.permute(1, 0, 2).float()  # (81, B, 9) cell-major, a copy
    dead = torch.zeros(B, dtype=torch.bool, device=cand.device)
    idx = torch.arange(B, device=cand.device)  # boards still moving
    x = out
    for _ in range(max_rounds):
        if len(idx) == 0:
            break
        new, died = _round(x)
        moving = ~died & (new != x).any(-1).any(0)
        dead[idx[died]] = True
        if bool(moving.all()):
            x = new
            continue
        out[:, idx[~moving]] = new[:, ~moving]  # boards leaving the batch keep their table
        x, idx = new[:, moving], idx[moving]
    if len(idx):  # out of rounds
        out[:, idx] = x
    return out.permute(1, 0, 2).bool(), dead


def place(cand: Tensor, board: Tensor, cell: Tensor, digit: Tensor) -> Tensor:
    """Copies of tables ``cand[board]`` with ``digit[i]`` placed alone in ``cell[i]``: ``cand (B, 81,
    9)`` bool and ``(n,)`` long indices -> ``(n, 81, 9)`` bool (a probe, or a commitment)."""
    out = cand[board].clone()
    i = torch.arange(len(board), device=cand.device)
    out[i, cell] = False
    out[i, cell, digit] = True
    return out


def probe(cand: Tensor, max_candidates: int = 9, max_rounds: int = 81) -> tuple[Tensor, Tensor]:
    """Failed-literal probing to a fixed point: place each candidate of every open cell with at most
    ``max_candidates`` candidates alone, propagate, and remove the placements that contradict; then
    propagate the narrowed tables and probe again until nothing is removed. Each removal is a
    deduction from the rules, so no solution is lost.

    All probes of all boards run as one batch of tables, so a board with ``n`` open candidates costs
    one :func:`propagate` of ``n`` tables per round. A smaller ``max_candidates`` (2: the
    two-candidate cells) probes fewer tables but prunes less; in the solver that costs more than it
    saves (README, Sudoku).

    Args:
        cand: ``(B, 81, 9)`` bool (not modified).
    Returns:
        ``(cand, contradiction)`` as :func:`propagate`.
    """
    cand, dead = propagate(cand)
    for _ in range(max_rounds):
        n = cand.sum(-1)
        open_ = (n > 1) & (n <= max_candidates) & ~dead[:, None]
        board, cell, digit = torch.nonzero(cand & open_[..., None], as_tuple=True)
        if len(board) == 0:
            break
        _, bad = propagate(place(cand, board, cell, digit))
        if not bool(bad.any()):
            break
        cand = cand.clone()
        cand[board[bad], cell[bad], digit[bad]] = False
        redo = torch.zeros_like(dead)
        redo[board[bad]] = True
        cand[redo], again = propagate(cand[redo])
        dead[redo] |= again
    return cand, dead


def fixed_digits(cand: Tensor) -> Tensor:
    """Digit of each cell with exactly one candidate, else -1: ``(B, 81, 9)`` -> ``(B, 81)`` long."""
    single = cand.sum(-1) == 1
    return torch.where(single, cand.float().argmax(-1), torch.full_like(single, -1, dtype=torch.long))
