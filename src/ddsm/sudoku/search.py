"""Depth-first search with bitmasks: the exact fallback solver, and the grid generator's engine.

Each node fills the most constrained empty cell (fewest remaining digits) and tries its digits in
a given order: the diffusion model's preferences when solving (so the network guides the search),
a random order when generating grids. Plain Python on integer bitmasks: microseconds per node.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional, Sequence

N_CELLS = 81
_ROW = [i // 9 for i in range(N_CELLS)]
_COL = [i % 9 for i in range(N_CELLS)]
_BOX = [(i // 27) * 3 + (i % 9) // 3 for i in range(N_CELLS)]
_FULL = (1 << 9) - 1
_POPCOUNT = [bin(m).count("1") for m in range(1 << 9)]


@dataclass
class SearchResult:
    """``grid``: the 81 digits (0..8) or None when none was found; ``nodes``: cells tried."""

    grid: Optional[list[int]]
    nodes: int


class _Budget(Exception):
    pass


def backtrack(
    puzzle: Sequence[int],
    *,
    preference: Optional[Sequence[Sequence[float]]] = None,
    rng: Optional[random.Random] = None,
    max_nodes: int = 1_000_000,
) -> SearchResult:
    """Complete ``puzzle`` (81 ints, -1 = blank) by depth-first search.

    Args:
        preference: ``81 x 9`` scores; digits are tried best first (e.g. model log-probabilities).
        rng: shuffles the digit order instead (when ``preference`` is None); None keeps 0..8.
        max_nodes: give up (``grid=None``) after this many assignments.
    Returns:
        the first completion found (digits 0..8) and the number of nodes used. ``grid`` is None
        when the givens conflict, no completion exists, or the budget ran out.
    """
    grid = list(puzzle)
    rows, cols, boxes = [0] * 9, [0] * 9, [0] * 9
    for i, d in enumerate(grid):
        if d >= 0:
            bit = 1 << d
            if (rows[_ROW[i]] | cols[_COL[i]] | boxes[_BOX[i]]) & bit:
                return SearchResult(None, 0)
            rows[_ROW[i]] |= bit
            cols[_COL[i]] |= bit
            boxes[_BOX[i]] |= bit
    empty = [i for i in range(N_CELLS) if grid[i] < 0]
    order = None
    if preference is not None:
        order = [sorted(range(9), key=lambda d, p=preference[i]: -p[d]) for i in range(N_CELLS)]
    nodes = 0

    def solve() -> bool:
        nonlocal nodes
        if not empty:
            return True
        best, best_opts, best_n = -1, 0, 10
        for j, i in enumerate(empty):
            o = _FULL & ~(rows[_ROW[i]] | cols[_COL[i]] | boxes[_BOX[i]])
            n = _POPCOUNT[o]
            if n < best_n:
                best, best_opts, best_n = j, o, n
                if n <= 1:
                    break
        if best_n == 0:
            return False
        i = empty.pop(best)
        if order is not None:
            digits = [d for d in order[i] if best_opts >> d & 1]
        else:
            digits = [d for d in range(9) if best_opts >> d & 1]
            if rng is not None:
                rng.shuffle(digits)
        r, c, b = _ROW[i], _COL[i], _BOX[i]
        for d in digits:
            nodes += 1
            if nodes > max_nodes:
                raise _Budget
            bit = 1 << d
            rows[r] |= bit
            cols[c] |= bit
            boxes[b] |= bit
            grid[i] = d
            if solve():
                return True
            rows[r] &= ~bit
            cols[c] &= ~bit
            boxes[b] &= ~bit
        grid[i] = -1
        empty.insert(best, i)
        return False

    try:
        found = solve()
    except _Budget:
        return SearchResult(None, nodes)
    return SearchResult(grid if found else None, nodes)
