"""The Sudoku part of ``ddsm demo``: a few of Norvig's hardest puzzles with the bundled model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from ..data import bundled_path


def solve_demo(out: Path, *, seed: int, quiet: bool, say: Callable[[str], None], n: int = 3) -> None:
    """Solve the first ``n`` bundled hard puzzles; print which solver found each answer."""
    from .board import format_board, is_solution, parse_board
    from .csvio import read_puzzles
    from .model_io import load_sudoku_model
    from .propagation import candidates, probe
    from .solve import SolveConfig, solve_puzzles

    rows, _ = read_puzzles(str(bundled_path("sudoku_puzzles/norvig_hardest11.csv")))
    # the rules alone (propagation with probing) settle most of this set before any network call:
    # show first the ones they leave open, where the sampler does the work
    cand, _ = probe(candidates(torch.stack([parse_board(r.puzzle) for r in rows])))
    still_open = (cand.sum(-1) > 1).any(-1).tolist()
    rows = [rows[i] for i in sorted(range(len(rows)), key=lambda i: not still_open[i])[:n]]
    puzzles = torch.stack([parse_board(r.puzzle) for r in rows])
    sm = load_sudoku_model()
    say(f"\n== sudoku: {len(rows)} of Norvig's hardest puzzles ({sum(still_open)} of {len(still_open)} are "
        "left open by the rules alone, shown first), bundled DDSM model, constraint-aware sampler")
    t0 = time.time()
    res = solve_puzzles(sm, puzzles, SolveConfig(), generator=torch.Generator().manual_seed(seed))
    ok = is_solution(res.solutions, puzzles)
    lines = ["puzzle,solution,valid,solver,samples_used,seconds"]
    for i, r in enumerate(rows):
        sol = format_board(res.solutions[i]) if bool(res.valid[i]) else ""
        say(f"  puzzle {i + 1} ({sum(c != '.' and c != '0' for c in r.puzzle)} givens): "
            f"{'solved' if bool(ok[i]) else 'unsolved'} by {res.solver[i]} with {int(res.samples_used[i])} "
            f"sampling runs' worth of network calls in {float(res.seconds[i]):.1f} s")
        lines.append(f"{r.puzzle},{sol},{bool(ok[i])},{res.solver[i]},{int(res.samples_used[i])},{float(res.seconds[i]):.3f}")
    (out / "sudoku_solutions.csv").write_text("\n".join(lines) + "\n")
    say(f"solved {int(ok.sum())}/{len(rows)} in {time.time() - t0:.1f} s -> {out / 'sudoku_solutions.csv'}")
