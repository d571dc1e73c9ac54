"""Ablation of the constraint-aware sampler's settings on one set of hard puzzles.

    python bench/sudoku_sampler.py --threads 1 50:8:copy 50:8:rewind 50:8:rewind:learn 30:1:rewind:learn

Each configuration is ``steps:particles:on_dead[:learn]`` (``ddsm.sudoku.constrained``); all get the
same budget of network calls per puzzle (``--budget`` full runs) and no exact search. Puzzles:
norvig_hardest11 plus the first ``--top95`` of norvig_top95, solved in one batch. Prints one JSON
line per configuration: solved by the sampler (propagation alone included), by the 11 hardest,
seconds per puzzle, mean runs' worth of network calls used.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from ddsm.sudoku.model_io import load_sudoku_model
from ddsm.sudoku.solve import SolveConfig, solve_puzzles

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sudoku import DEFAULT_DATA, load_collection, untrained  # noqa: E402


def parse_config(text: str, budget: int, rewind: int, probe: int = 0) -> SolveConfig:
    parts = text.split(":")
    if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] != "learn"):
        raise SystemExit(f"configuration must be steps:particles:on_dead[:learn], got {text!r}")
    return SolveConfig(steps=int(parts[0]), particles=int(parts[1]), on_dead=parts[2], rewind=rewind,
                       learn=len(parts) == 4, budget=budget, search=False, probe=probe)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("configs", nargs="+", help="steps:particles:on_dead[:learn]")
    p.add_argument("--model", default=None, help="Sudoku checkpoint (default: bundled)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--budget", type=int, default=16, help="network calls per puzzle, in full runs")
    p.add_argument("--rewind", type=int, default=2)
    p.add_argument("--probe", type=int, default=SolveConfig.probe,
                   help="failed-literal probing of cells with at most this many candidates (0: singles only)")
    p.add_argument("--top95", type=int, default=40, help="first N puzzles of norvig_top95")
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--untrained", action="store_true",
                   help="control: the model's network freshly initialised (its posterior is each cell's "
                        "own evidence), to show what the trained network adds to the rules")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = Path(args.data)
    puzzles = torch.cat([load_collection(data / "norvig_hardest11.csv", 0),
                         load_collection(data / "norvig_top95.csv", args.top95)])
    sm = load_sudoku_model(args.model)
    if args.untrained:
        sm = untrained(sm, args.seed)
    print(json.dumps({"puzzles": len(puzzles), "precision": sm.precision, "threads": torch.get_num_threads(),
                      "budget": args.budget, "rewind": args.rewind, "probe": args.probe, "seed": args.seed,
                      "untrained": args.untrained}), flush=True)
    for text in args.configs:
        cfg = parse_config(text, args.budget, args.rewind, args.probe)
        t0 = time.perf_counter()
        res = solve_puzzles(sm, puzzles, cfg, generator=torch.Generator().manual_seed(args.seed))
        print(json.dumps({"config": text, "solved": int(res.valid.sum()), "of": len(puzzles),
                          "hardest11": int(res.valid[:11].sum()),
                          "seconds_per_puzzle": round((time.perf_counter() - t0) / len(puzzles), 3),
                          "mean_runs_used": round(float(res.samples_used.float().mean()), 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
