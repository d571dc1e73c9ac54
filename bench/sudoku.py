"""Sudoku benchmark: valid-grid generation rate and hard-puzzle solving, with measured numbers.

    python bench/sudoku.py                       # bundled model, everything (slow on a CPU)
    python bench/sudoku.py --grids 200 --limit 50 --dilations 1,2 --threads 1

Generation: ``--grids`` grids per time dilation (DDSM reference, 20-layer transformer: 94.7 / 98.9 /
99.96 / 100% valid at dilation 1 / 2 / 4 / 8), valid with the box check and with rows/columns only
(the reference notebook's metric), seconds per grid.

Solving, per collection of ../shared/data/sudoku_hard_collections:
- ``givens_only``: DDSM's solver, one run per puzzle, givens imposed (reference: 9.8% of hard
  puzzles at dilation 1);
- ``constraint_aware``: the constraint-aware sampler with particles and restarts up to ``--budget``
  samples per puzzle, no search (answers by propagation alone are counted separately);
- ``with_search``: the full solver, exact search after the budget.
Seconds are wall time per puzzle with puzzles solved in batches (the batch's time split evenly).

Constraint-aware generation (``--constrained-grids N``): the solver on N empty boards (rules +
diffusion, not the model alone; its rate is reported apart from the model-only one), with the
uniformity check of ``ddsm.sudoku.uniformity`` against N grids of the random backtracking generator
(also applied to the model-only valid grids).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Optional

import torch

from ddsm.models.sudoku_grid import SudokuDenoiser
from ddsm.precision import PRECISIONS
from ddsm.sudoku.board import is_valid_grid, parse_board
from ddsm.sudoku.constrained import ON_DEAD, run_length
from ddsm.sudoku.generate import generate_constrained, generate_grids
from ddsm.sudoku.generator import base_grids
from ddsm.sudoku.model_io import load_sudoku_model
from ddsm.sudoku.solve import SolveConfig, solve_givens_only, solve_puzzles
from ddsm.sudoku.uniformity import compare

COLLECTIONS = ("norvig_top95", "norvig_hardest11", "forum_hardest_1905_dev1000")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sudoku_hard_collections"


def _emit(rec: dict) -> None:
    print(json.dumps(rec), flush=True)


def _uniformity(grids: torch.Tensor, seed: int) -> dict:
    """``ddsm.sudoku.uniformity.compare`` against as many random backtracking grids (rounded)."""
    ref = base_grids(max(len(grids), 200), seed=10_000 + seed)
    return {k: round(v, 4) for k, v in compare(grids, ref).items()}


def bench_generation(sm, n: int, dilations: list[float], steps: int, batch: Optional[int], seed: int,
                     context_scale: float = 1.0, substeps: Optional[int] = None, extrapolate: float = 0.0) -> None:
    for c in dilations:
        t0 = time.perf_counter()
        grids = generate_grids(sm, n, steps=steps, dilation=c, batch_size=batch,
                               generator=torch.Generator().manual_seed(seed), context_scale=context_scale,
                               substeps=substeps, extrapolate=extrapolate)
        sec = (time.perf_counter() - t0) / n
        ok = is_valid_grid(grids)
        _emit({"task": "generate", "dilation": c, "steps": steps, "network_calls": run_length(sm, steps, c),
               "substeps": substeps or sm.process.substeps, "context_scale": context_scale,
               "extrapolate": extrapolate, "grids": n,
               "valid": round(float(ok.float().mean()), 4),
               # a sampler that collapsed onto a few grids would show here
               "distinct_valid": len({tuple(g) for g in grids[ok].tolist()}),
               "valid_rows_cols_only": round(float(is_valid_grid(grids, check_boxes=False).float().mean()), 4),
               "seconds_per_grid": round(sec, 4),
               "uniformity_of_valid": _uniformity(grids[ok], seed) if int(ok.sum()) >= 20 else None})


def bench_constrained(sm, n: int, cfg: SolveConfig, seed: int) -> None:
    t0 = time.perf_counter()
    res = generate_constrained(sm, n, cfg=cfg, generator=torch.Generator().manual_seed(seed + 2))
    sec = (time.perf_counter() - t0) / n
    ok = is_valid_grid(res.solutions.clamp_min(0)) & res.valid
    _emit({"task": "generate_constrained", "grids": n, "steps": cfg.steps, "valid": round(float(ok.float().mean()), 4),
           "by_solver": dict(Counter(res.solver)),
           "mean_samples_used": round(float(res.samples_used.float().mean()), 3),
           "seconds_per_grid": round(sec, 4), "uniformity": _uniformity(res.solutions[ok], seed)})


def untrained(sm, seed: int):
    """Control: ``sm`` with its network freshly initialised (same shape; its posterior is each
    cell's own evidence), to show what the trained network adds to the rules."""
    torch.manual_seed(seed)
    net = SudokuDenoiser(**sm.config["model"]["options"]).eval()
    return dataclasses.replace(sm, net=net.to(sm.device))


def load_collection(path: Path, limit: int) -> torch.Tensor:
    with path.open() as f:
        rows = list(csv.DictReader(f))[: limit or None]
    return torch.stack([parse_board(r["puzzle"]) for r in rows])


def bench_solving(sm, data: Path, names: list[str], limit: int, cfg: SolveConfig, givens_steps: int,
                  givens_dilation: float, seed: int, skip_givens: bool) -> None:
    for name in names:
        puzzles = load_collection(data / f"{name}.csv", limit)
        n = len(puzzles)
        rec: dict = {"task": "solve", "collection": name, "puzzles": n}
        if not skip_givens:
            t0 = time.perf_counter()
            _, ok = solve_givens_only(sm, puzzles, steps=givens_steps, dilation=givens_dilation,
                                      batch_size=cfg.batch_size, generator=torch.Generator().manual_seed(seed))
            rec["givens_only"] = {"rate": round(float(ok.float().mean()), 4), "steps": givens_steps,
                                  "dilation": givens_dilation,
                                  "seconds_per_puzzle": round((time.perf_counter() - t0) / n, 4)}
        t0 = time.perf_counter()
        res = solve_puzzles(sm, puzzles, cfg, generator=torch.Generator().manual_seed(seed + 1))
        wall = time.perf_counter() - t0
        by = Counter(s for s, v in zip(res.solver, res.valid.tolist()) if v)
        diffusion = by.get("constraint-aware", 0)
        rec["constraint_aware"] = {
            "rate": round((diffusion + by.get("propagation", 0)) / n, 4),
            "rate_diffusion_only": round(diffusion / n, 4),
            "solved_by_propagation_alone": by.get("propagation", 0),
            "budget": cfg.budget, "particles": cfg.particles, "steps": cfg.steps, "on_dead": cfg.on_dead,
            "rewind": cfg.rewind, "learn": cfg.learn, "probe": cfg.probe,
            "mean_samples_used": round(float(res.samples_used.float().mean()), 2),
            "mean_seconds": round(float((res.seconds - res.search_seconds).mean()), 4),
        }
        rec["with_search"] = {"rate": round(float(res.valid.float().mean()), 4), "by_solver": dict(by),
                              "median_seconds": round(statistics.median(res.seconds.tolist()), 4),
                              "mean_seconds": round(float(res.seconds.mean()), 4),
                              "wall_seconds_per_puzzle": round(wall / n, 4)}
        _emit(rec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="Sudoku checkpoint (default: bundled)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="network precision (auto: bf16 where native, e.g. CPUs with AMX)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grids", type=int, default=1000)
    p.add_argument("--dilations", default="1,2,4,8")
    p.add_argument("--steps", type=int, default=100, help="base steps for generation")
    p.add_argument("--substeps", type=int, default=None,
                   help="SDE sub-steps per network call in generation (default: the model's)")
    p.add_argument("--context-scale", type=float, default=1.0,
                   help="generation's scale on the network's correction (ddsm.sudoku.generate; 1: as trained)")
    p.add_argument("--extrapolate", type=float, default=0.0,
                   help="generation's multistep extrapolation of the held correction (ddsm.sudoku.generate; 0: held)")
    p.add_argument("--batch-size", type=int, default=None, help="boards per network call (default: by device)")
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--collections", default=",".join(COLLECTIONS))
    p.add_argument("--limit", type=int, default=0, help="first N puzzles per collection (0: all)")
    p.add_argument("--budget", type=int, default=16)
    p.add_argument("--particles", type=int, default=1)
    p.add_argument("--solve-steps", type=int, default=SolveConfig.steps)
    p.add_argument("--on-dead", default="rewind", choices=ON_DEAD,
                   help="what a particle ruled out by the rules does (ddsm.sudoku.constrained)")
    p.add_argument("--rewind", type=int, default=2, help="steps of a dead particle's first rewind")
    p.add_argument("--no-learn", dest="learn", action="store_false",
                   help="a rewinding particle keeps its table (no failed-literal exclusions)")
    p.add_argument("--probe", type=int, default=SolveConfig.probe,
                   help="failed-literal probing of cells with at most this many candidates (0: singles only)")
    p.add_argument("--solve-dilation", type=float, default=1.0)
    p.add_argument("--givens-steps", type=int, default=100)
    p.add_argument("--givens-dilation", type=float, default=1.0)
    p.add_argument("--skip-generate", action="store_true")
    p.add_argument("--constrained-grids", type=int, default=0,
                   help="also generate this many grids constraint-aware (solver on empty boards), "
                        "with the uniformity check")
    p.add_argument("--rounds", type=int, default=None,
                   help="run the network's weight-tied block this many times (default: as trained)")
    p.add_argument("--skip-solve", action="store_true")
    p.add_argument("--skip-givens-only", action="store_true")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network; the compilation is timed apart, by one warm-up call")
    p.add_argument("--untrained", action="store_true",
                   help="control: the network freshly initialised (seeded by --seed), to show what the "
                        "trained network adds")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sm = load_sudoku_model(args.model, device=args.device, precision=args.precision, compile=args.compile)
    if args.untrained:
        sm = untrained(sm, args.seed)
    if args.rounds is not None:
        if not sm.net.rounds:
            p.error("--rounds needs a network with recurrent rounds")
        sm.net.rounds = args.rounds
    compile_s = _warm_up(sm, args.batch_size) if args.compile else 0.0
    _emit({"model": str(sm.path), "model_options": sm.config["model"]["options"], "step": sm.config.get("step"),
           "device": args.device, "precision": sm.precision, "threads": torch.get_num_threads(),
           "compiled": sm.compiled, "compile_seconds": round(compile_s, 1), "untrained": args.untrained,
           "rounds": sm.net.rounds})
    if not args.skip_generate:
        bench_generation(sm, args.grids, [float(x) for x in args.dilations.split(",")], args.steps,
                         args.batch_size, args.seed, args.context_scale, args.substeps, args.extrapolate)
    cfg = SolveConfig(steps=args.solve_steps, dilation=args.solve_dilation, particles=args.particles,
                      budget=args.budget, batch_size=args.batch_size, on_dead=args.on_dead, rewind=args.rewind,
                      learn=args.learn, probe=args.probe)
    if args.constrained_grids:
        bench_constrained(sm, args.constrained_grids, cfg, args.seed)
    if not args.skip_solve:
        cfg = SolveConfig(steps=args.solve_steps, dilation=args.solve_dilation, particles=args.particles,
                          budget=args.budget, batch_size=args.batch_size, on_dead=args.on_dead, rewind=args.rewind,
                          learn=args.learn, probe=args.probe)
        bench_solving(sm, Path(args.data), args.collections.split(","), args.limit, cfg, args.givens_steps,
                      args.givens_dilation, args.seed, args.skip_givens_only)
    return 0


def _warm_up(sm, batch_size: int | None) -> float:
    """Seconds of the first network call (torch.compile compiles there), so that the timed runs
    after it measure the compiled network alone; the compile time is reported apart."""
    b = sm.batch_size(batch_size)
    x = torch.zeros(b, 81, sm.process.in_channels, device=sm.device)
    t0 = time.perf_counter()
    with torch.no_grad():
        sm.model_fn(x, torch.full((b,), 0.5, device=sm.device))
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())
