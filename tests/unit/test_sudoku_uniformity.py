"""Uniformity statistics of generated grids: invariant under board symmetries, exact on known
grids, and able to tell a biased generator from the random one."""

from __future__ import annotations

import torch

from ddsm.sudoku.generator import base_grids
from ddsm.sudoku.symmetry import random_symmetries
from ddsm.sudoku.uniformity import band_triples, compare, rectangles

# the "shifted rows" grid: row r is 0..8 shifted by 3 (r mod 3) + r // 3
PATTERN = torch.tensor([[(3 * (r % 3) + r // 3 + c) % 9 for c in range(9)] for r in range(9)]).reshape(1, 81)


def _brute_rectangles(g: torch.Tensor) -> int:
    b = g.reshape(9, 9).tolist()
    n = 0
    for r1 in range(9):
        for r2 in range(r1 + 1, 9):
            for c1 in range(9):
                for c2 in range(c1 + 1, 9):
                    boxes = {(r // 3, c // 3) for r in (r1, r2) for c in (c1, c2)}
                    if len(boxes) == 2 and b[r1][c1] == b[r2][c2] and b[r1][c2] == b[r2][c1]:
                        n += 1
    return n


def test_statistics_match_brute_force_and_are_symmetry_invariant():
    grids = torch.cat([PATTERN, base_grids(6, seed=3)])
    assert rectangles(grids).tolist() == [_brute_rectangles(g) for g in grids]
    # the pattern's mini-rows repeat: each band holds 3 distinct triples, and so does each stack
    assert int(band_triples(PATTERN)[0]) == 18
    moved = random_symmetries(len(grids), generator=torch.Generator().manual_seed(0)).apply(grids)
    assert torch.equal(rectangles(moved), rectangles(grids))
    assert torch.equal(band_triples(moved), band_triples(grids))


def test_compare_tells_a_biased_generator_from_the_random_one():
    ref = base_grids(300, seed=1)
    same = base_grids(300, seed=2)
    gen = torch.Generator().manual_seed(4)
    biased = random_symmetries(300, generator=gen).apply(PATTERN.expand(300, 81))
    fair, bad = compare(same, ref), compare(biased, ref)
    assert fair["rectangles_p"] > 1e-3 and fair["band_triples_p"] > 1e-3
    assert bad["rectangles_p"] < 1e-6 and bad["band_triples_p"] < 1e-6
    # the per-cell counts cannot tell: random symmetries make every cell uniform
    assert bad["cell_chi2_p"] > 1e-3
