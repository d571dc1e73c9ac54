"""How much failed-literal probing narrows a search: depth-first search nodes per puzzle.

    python bench/sudoku_probe.py --limit 30 --threads 1

A plain depth-first search (no network): at each node the table is propagated (naked and hidden
singles) and, unless ``--probe 0``, probed (``ddsm.sudoku.propagation.probe`` on cells with at most
K candidates); then it branches on an open cell with the fewest candidates, digits in order.
Prints one JSON line per K: nodes per puzzle (median, mean, max) and seconds per puzzle, on the
first ``--limit`` puzzles of a collection (default forum_hardest_1905_dev1000). Few nodes mean that
a sampler whose tables are probed has few choices to get right.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from ddsm.sudoku.board import is_solution
from ddsm.sudoku.propagation import candidates, probe, propagate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sudoku import DEFAULT_DATA, load_collection  # noqa: E402


def search(cand: Tensor, k: int, count: list[int]) -> Optional[Tensor]:
    """First solution of table ``cand (1, 81, 9)`` or None; ``count[0]`` counts nodes."""
    count[0] += 1
    cand, dead = probe(cand, k) if k else propagate(cand)
    if bool(dead[0]):
        return None
    n = cand[0].sum(-1)
    if bool((n == 1).all()):
        return cand[0].float().argmax(-1)
    cell = int(torch.where(n > 1, n, 10).argmin())
    for d in torch.nonzero(cand[0, cell]).flatten().tolist():
        trial = cand.clone()
        trial[0, cell] = False
        trial[0, cell, d] = True
        found = search(trial, k, count)
        if found is not None:
            return found
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--collection", default="forum_hardest_1905_dev1000")
    p.add_argument("--limit", type=int, default=30)
    p.add_argument("--probes", default="0,2,3,9", help="K values (0: singles only)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    puzzles = load_collection(Path(args.data) / f"{args.collection}.csv", args.limit)
    for k in (int(x) for x in args.probes.split(",")):
        nodes, t0 = [], time.perf_counter()
        for i in range(len(puzzles)):
            count = [0]
            grid = search(candidates(puzzles[i : i + 1]), k, count)
            if grid is None or not bool(is_solution(grid[None], puzzles[i : i + 1])[0]):
                raise SystemExit(f"puzzle {i}: no solution found")
            nodes.append(count[0])
        print(json.dumps({"collection": args.collection, "puzzles": len(puzzles), "probe": k,
                          "nodes_median": statistics.median(nodes), "nodes_mean": round(statistics.mean(nodes), 1),
                          "nodes_max": max(nodes),
                          "seconds_per_puzzle": round((time.perf_counter() - t0) / len(puzzles), 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
