"""Batched constraint propagation on candidate tables.

A candidate table ``cand (B, 81, 9)`` bool marks the digits still possible in each cell. Two
classic deductions are iterated to a fixed point, for a whole batch at once:

- naked single: a cell with one candidate fixes that digit, which is removed from its 20 peers;
- hidden single: a digit with one possible cell in a unit must go there.

A board whose table empties a cell, or leaves a digit without a cell in some unit, is a
contradiction: no completion of it obeys the rules.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .board import N_CELLS, N_DIGITS, peers, units


def candidates(puzzles: Tensor) -> Tensor:
    """Candidate table of the givens alone: ``(B, 81)`` (blanks negative) -> ``(B, 81, 9)`` bool."""
    given = puzzles >= 0
    onehot = torch.nn.functional.one_hot(puzzles.clamp_min(0), N_DIGITS).bool()
    return torch.where(given[..., None], onehot, torch.ones_like(onehot))


def eliminate(cand: Tensor, fixed: Tensor) -> Tensor:
    """Remove the digits of ``fixed`` cells from their peers.

    Args:
        cand: ``(B, 81, 9)`` bool; fixed: ``(B, 81, 9)`` bool one-hot rows for fixed cells (zeros
            elsewhere).
    Returns:
        the narrowed ``(B, 81, 9)`` table (a fixed cell keeps its digit unless a peer has it too).
    """
    taken = fixed[:, peers().to(cand.device)].any(2)  # (B, 81, 9): digit fixed in some peer
    return cand & ~taken


def _hidden_singles(cand: Tensor) -> tuple[Tensor, Tensor]:
    """Digits forced into a cell by a unit, ``(B, 81, 9)`` bool, and per-board contradictions
    (a digit with no cell left in some unit), ``(B,)``."""
    u = units().to(cand.device)  # (27, 9)
    per_unit = cand[:, u]  # (B, 27, 9 cells, 9 digits)
    count = per_unit.sum(2)  # (B, 27, 9 digits)
    only = per_unit & (count == 1)[:, :, None, :]
    forced = torch.zeros(cand.shape[0], N_CELLS, N_DIGITS, device=cand.device)
    forced.index_add_(1, u.reshape(-1), only.reshape(cand.shape[0], u.numel(), N_DIGITS).float())
    return forced > 0, (count == 0).any(-1).any(-1)


def propagate(cand: Tensor, max_rounds: int = 81) -> tuple[Tensor, Tensor]:
    """Iterate naked and hidden singles to a fixed point.

    Args:
        cand: ``(B, 81, 9)`` bool candidate table (not modified).
    Returns:
        ``(cand, contradiction)``: the narrowed table ``(B, 81, 9)`` and ``(B,)`` bool. Boards in
        contradiction keep whatever table they reached.
    """
    cand = cand.clone()
    dead = torch.zeros(cand.shape[0], dtype=torch.bool, device=cand.device)
    for _ in range(max_rounds):
        single = cand.sum(-1) == 1
        new = eliminate(cand, cand & single[..., None])
        forced, no_cell = _hidden_singles(new)
        has_forced = forced.any(-1, keepdim=True)
        new = torch.where(has_forced, new & forced, new)
        dead |= no_cell | (new.sum(-1) == 0).any(-1) | (forced.sum(-1) > 1).any(-1)
        if torch.equal(new, cand):
            break
        cand = new
    return cand, dead


def fixed_digits(cand: Tensor) -> Tensor:
    """Digit of each cell with exactly one candidate, else -1: ``(B, 81, 9)`` -> ``(B, 81)`` long."""
    single = cand.sum(-1) == 1
    return torch.where(single, cand.float().argmax(-1), torch.full_like(single, -1, dtype=torch.long))
