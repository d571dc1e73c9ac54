"""``ddsm sudoku solve`` and ``ddsm sudoku generate`` (the work is in :mod:`ddsm.sudoku`); ``ddsm sudoku
train`` is in :mod:`ddsm.cli.sudoku_train`.

Both use the bundled model unless ``--model DIR`` names another Sudoku checkpoint. Bad files or
options raise :class:`DDSMInputError` (one ``ddsm: error: ...`` line, exit 2); a bad puzzle only
fails its own row (``error`` column), the others are still solved. Outputs are written atomically
and never overwritten without ``--force``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from ..errors import DDSMInputError
from ..precision import PRECISIONS
from . import sudoku_train
from .common import check_output, check_seed, select_device


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``ddsm sudoku`` on the top-level sub-parser collection."""
    sp = sub.add_parser("sudoku", help="generate valid Sudoku grids and solve puzzles with the diffusion model")
    ssub = sp.add_subparsers(dest="sudoku_command", required=True)

    def shared(p: argparse.ArgumentParser) -> None:
        p.add_argument("-o", "--output", required=True, help="output CSV")
        p.add_argument("--model", default=None, help="Sudoku checkpoint folder (default: the bundled model)")
        p.add_argument("--steps", type=int, default=None, help="base steps of each sampling run")
        p.add_argument("--time-dilation", dest="time_dilation", type=float, default=1.0,
                       help="DDSM time dilation c >= 1 (c times as many steps)")
        p.add_argument("--batch-size", dest="batch_size", type=int, default=None,
                       help="boards per network call (default: 32 on a CPU, 512 on a GPU)")
        p.add_argument("--seed", type=int, default=0, help="seeds every random generator")
        p.add_argument("--device", default="auto", help="auto | cpu | cuda")
        p.add_argument("--precision", default="auto", choices=PRECISIONS,
                       help="network precision: bf16 autocast or fp32 (auto: bf16 where native: GPUs, CPUs with AMX)")
        p.add_argument("--threads", type=int, default=0,
                       help="CPU threads for torch (0: torch's default; 1 is often fastest on small machines)")
        p.add_argument("--compile", action="store_true",
                       help="torch.compile the network: the first call compiles (up to a minute on a CPU), "
                            "later ones run faster; worth it for large jobs")
        p.add_argument("--force", action="store_true", help="overwrite the output")
        p.add_argument("--quiet", action="store_true", help="no progress messages")

    s = ssub.add_parser("solve", help="solve the puzzles of a CSV file (column 'puzzle')")
    s.add_argument("puzzles", help="CSV with a 'puzzle' column (81 characters, '.' or '0' blank); "
                   "a 'solution' column is only compared against")
    shared(s)
    s.add_argument("--budget", type=int, default=16,
                   help="most network calls per puzzle, in full sampling runs (then exact search)")
    s.add_argument("--particles", type=int, default=1, help="boards per puzzle per round")
    s.add_argument("--probe", type=int, default=None,
                   help="failed-literal probing of cells with at most this many candidates (0-9), before "
                        "and during sampling; 0: naked and hidden singles only (default 9)")
    s.add_argument("--givens-only", dest="givens_only", action="store_true",
                   help="DDSM's original solver only: one run per puzzle, givens imposed, no rules")
    s.add_argument("--no-search", dest="search", action="store_false",
                   help="no exact search fallback after the diffusion budget")
    s.set_defaults(func=run)

    g = ssub.add_parser("generate", help="generate complete grids and check their validity")
    g.add_argument("-n", type=int, default=100, help="number of grids")
    g.add_argument("--constrained", action="store_true",
                   help="constraint-aware generation (the solver's rules + diffusion on an empty board: every grid "
                        "valid by construction, reported apart from the model-only rate; --steps default 20)")
    g.add_argument("--context-scale", type=float, default=1.0,
                   help="model-only generation: scale lambda on the network's correction to each cell's local "
                        "evidence (1: the model as trained, DDSM's metric; > 1 leans on the rows, columns and boxes "
                        "like a guidance scale; no rule is checked)")
    g.add_argument("--substeps", type=int, default=None,
                   help="model-only generation: SDE sub-steps per network call (default: the model's, 8); "
                        "--steps 25 --time-dilation 4 --substeps 32 runs dilation 4's dynamics with the 100 "
                        "network calls of dilation 1")
    g.add_argument("--extrapolate", type=float, default=0.0, metavar="ALPHA",
                   help="model-only generation: hold each call's correction extrapolated by ALPHA times its change "
                        "since the previous call (a multistep rule; 0: held as returned). --steps 12 --time-dilation 8 "
                        "--substeps 64 --extrapolate 0.5 runs dilation 8's dynamics with 96 network calls")
    shared(g)
    g.set_defaults(func=run)
    sudoku_train.add_parser(ssub)
    return sp


def run(args: argparse.Namespace) -> int:
    """``ddsm sudoku solve | generate``."""
    return cmd_solve(args) if args.sudoku_command == "solve" else cmd_generate(args)


def _setup(args: argparse.Namespace) -> tuple[Any, torch.Generator]:
    """Check the shared flags, load the model, seed; returns the model and the generator."""
    from ..seeding import seed_everything
    from ..sudoku.model_io import load_sudoku_model

    check_output(Path(args.output), args.force)
    check_seed(args.seed)
    if args.threads < 0:
        raise DDSMInputError(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.steps is not None and args.steps < 1:
        raise DDSMInputError(f"--steps must be at least 1, got {args.steps}")
    if args.batch_size is not None and args.batch_size < 1:
        raise DDSMInputError(f"--batch-size must be at least 1, got {args.batch_size}")
    if not (math.isfinite(args.time_dilation) and args.time_dilation >= 1):
        raise DDSMInputError("--time-dilation must be a finite number >= 1")
    device = select_device(args.device)
    sm = load_sudoku_model(args.model, device=device, precision=args.precision, compile=args.compile)
    return sm, seed_everything(args.seed)  # only the CLI seeds the global generators


def _say(args: argparse.Namespace, msg: str) -> None:
    if not args.quiet:
        print(msg, file=sys.stderr, flush=True)


def cmd_solve(args: argparse.Namespace) -> int:
    """``ddsm sudoku solve``: a bad puzzle fails only its own row (``error`` column)."""
    from ..sudoku.board import describe_problem, is_solution, parse_board
    from ..sudoku.csvio import read_puzzles, write_csv

    if args.budget < 1 or args.particles < 1:
        raise DDSMInputError("--budget and --particles must be at least 1")
    if args.probe is not None and not 0 <= args.probe <= 9:
        raise DDSMInputError(f"--probe must be between 0 and 9 candidates, got {args.probe}")
    rows, columns = read_puzzles(args.puzzles)
    sm, gen = _setup(args)
    errors = [describe_problem(r.puzzle) for r in rows]
    good = [i for i, e in enumerate(errors) if e is None]
    for i, e in enumerate(errors):
        if e is not None:
            _say(args, f"line {rows[i].line}: {e}")
    puzzles = torch.stack([parse_board(rows[i].puzzle) for i in good]) if good else torch.empty(0, 81, dtype=torch.long)
    t0 = time.perf_counter()
    res = _solve(args, sm, gen, puzzles)
    out_cols, out_rows, matches = _solution_rows(args, rows, columns, errors, good, res)
    write_csv(args.output, out_cols, out_rows, force=args.force)

    sols, ok, solver, secs = res["solutions"], res["valid"], res["solver"], res["seconds"]
    n_ok = int(ok.sum()) if len(good) else 0
    if len(good) and not bool(is_solution(sols[ok], puzzles[ok]).all()):  # pragma: no cover
        raise RuntimeError("a board reported valid breaks the rules (a bug in ddsm.sudoku)")
    med = statistics.median([float(s) for s in secs]) if len(good) else float("nan")
    by = Counter(s for s, v in zip(solver, ok.tolist()) if v) if len(good) else Counter()
    parts = ", ".join(f"{k} {v}" for k, v in sorted(by.items()))
    bad = len(rows) - len(good)
    print(f"solved {n_ok}/{len(rows)} ({100.0 * n_ok / len(rows):.1f}% valid"
          + (f"; {bad} bad puzzle(s)" if bad else "") + (f"), median {med:.3f} s per puzzle" if len(good) else ")")
          + (f"; by solver: {parts}" if parts else "")
          + (f"; {matches}/{len(rows)} match the given solutions" if "solution" in columns else "")
          + f"; total {time.perf_counter() - t0:.1f} s ({sm.precision}) -> {args.output}")
    return 0


def _solve(args: argparse.Namespace, sm: Any, gen: torch.Generator, puzzles: torch.Tensor) -> dict[str, Any]:
    """Solve the well-formed puzzles: solutions, valid, solver, samples_used, seconds, note."""
    from ..sudoku.solve import GIVENS_ONLY, SolveConfig, solve_givens_only, solve_puzzles

    n = len(puzzles)
    t0 = time.perf_counter()
    steps = args.steps or (100 if args.givens_only else SolveConfig.steps)
    if args.givens_only:
        boards, ok = solve_givens_only(sm, puzzles, steps=steps, dilation=args.time_dilation,
                                       batch_size=args.batch_size, generator=gen)
        per = (time.perf_counter() - t0) / max(n, 1)
        return {"solutions": boards, "valid": ok, "solver": [GIVENS_ONLY] * n,
                "samples_used": torch.ones(n, dtype=torch.long), "seconds": torch.full((n,), per), "note": [""] * n}
    cfg = SolveConfig(steps=steps, dilation=args.time_dilation, particles=args.particles, budget=args.budget,
                      batch_size=args.batch_size, probe=SolveConfig.probe if args.probe is None else args.probe,
                      search=args.search)

    def on_round(drawn: int, left: int) -> None:
        _say(args, f"sampled {drawn} boards; {left} puzzles unsolved")

    res = solve_puzzles(sm, puzzles, cfg, generator=gen, on_round=on_round if n else None)
    return {"solutions": res.solutions, "valid": res.valid, "solver": res.solver, "samples_used": res.samples_used,
            "seconds": res.seconds, "note": res.note}


def _solution_rows(args: argparse.Namespace, rows: list[Any], columns: list[str], errors: list[Any],
                   good: list[int], res: dict[str, Any]) -> tuple[list[str], list[dict[str, object]], int]:
    """The output CSV: the input columns (``solution`` renamed ``given_solution``) plus the results;
    also how many solutions match the given ones."""
    from ..sudoku.board import format_board

    sols, ok, solver, used, secs, notes = (res[k] for k in ("solutions", "valid", "solver", "samples_used",
                                                             "seconds", "note"))
    has_ref = "solution" in columns
    out_cols = [c if c != "solution" else "given_solution" for c in columns]
    out_cols += ["solution", "valid", "solver", "samples_used", "seconds", "seed"]
    out_cols += (["matches_given_solution"] if has_ref else []) + ["error"]
    out_rows: list[dict[str, object]] = []
    where = {i: j for j, i in enumerate(good)}
    matches = 0
    for i, r in enumerate(rows):
        rec: dict[str, object] = {("given_solution" if k == "solution" else k): v for k, v in r.fields.items()}
        rec["seed"] = args.seed
        if errors[i] is not None:
            rec.update(solution="", valid=False, solver="", samples_used=0, seconds="", error=errors[i])
        else:
            j = where[i]
            grid = sols[j]
            rec.update(solution=format_board(grid) if bool((grid >= 0).all()) else "", valid=bool(ok[j]),
                       solver=solver[j] if bool(ok[j]) else "", samples_used=int(used[j]),
                       seconds=f"{float(secs[j]):.4f}", error="" if bool(ok[j]) else notes[j])
        if has_ref:
            same = rec["solution"] != "" and rec["solution"] == (r.fields.get("solution") or "").strip()
            rec["matches_given_solution"] = same
            matches += int(same)
        out_rows.append(rec)
    return out_cols, out_rows, matches


def cmd_generate(args: argparse.Namespace) -> int:
    """``ddsm sudoku generate``: complete grids from the model (or constraint-aware) and their validity."""
    from ..sudoku.board import format_board, is_valid_grid
    from ..sudoku.constrained import run_length
    from ..sudoku.csvio import write_csv
    from ..sudoku.generate import generate_grids

    if args.n < 1:
        raise DDSMInputError("-n must be at least 1")
    if not (math.isfinite(args.context_scale) and args.context_scale >= 0):
        raise DDSMInputError(f"--context-scale must be a finite number >= 0, got {args.context_scale}")
    if args.constrained and args.context_scale != 1.0:
        raise DDSMInputError("--context-scale applies to model-only generation, not --constrained")
    if args.substeps is not None and args.substeps < 1:
        raise DDSMInputError(f"--substeps must be at least 1, got {args.substeps}")
    if args.constrained and args.substeps is not None:
        raise DDSMInputError("--substeps applies to model-only generation, not --constrained")
    if not (math.isfinite(args.extrapolate) and args.extrapolate >= 0):
        raise DDSMInputError(f"--extrapolate must be a finite number >= 0, got {args.extrapolate}")
    if args.constrained and args.extrapolate:
        raise DDSMInputError("--extrapolate applies to model-only generation, not --constrained")
    sm, gen = _setup(args)
    if args.constrained:
        return _generate_constrained(args, sm, gen)
    steps = args.steps or 100
    t0 = time.perf_counter()
    grids = generate_grids(sm, args.n, steps=steps, dilation=args.time_dilation, batch_size=args.batch_size,
                           generator=gen, context_scale=args.context_scale, substeps=args.substeps,
                           extrapolate=args.extrapolate)
    seconds = time.perf_counter() - t0
    calls = run_length(sm, steps, args.time_dilation)
    ok, rc = is_valid_grid(grids), is_valid_grid(grids, check_boxes=False)
    chosen = (("context_scale", args.context_scale, 1.0), ("extrapolate", args.extrapolate, 0.0))
    settings = [f"{name}={value:g}" for name, value, default in chosen if value != default]
    mode = ":".join(["model", *settings])  # the sampler settings that are not the model as trained
    rows = [{"grid": format_board(g), "valid": bool(v), "valid_rows_cols": bool(w), "mode": mode, "seed": args.seed}
            for g, v, w in zip(grids, ok, rc)]
    write_csv(args.output, ["grid", "valid", "valid_rows_cols", "mode", "seed"], rows, force=args.force)
    print(f"generated {args.n} grids: {100.0 * float(ok.float().mean()):.1f}% valid "
          f"(rows, columns and boxes; {100.0 * float(rc.float().mean()):.1f}% with rows and columns only), "
          f"time dilation {args.time_dilation:g}, {steps} steps ({calls} network calls, "
          f"{args.substeps or sm.process.substeps} sub-steps each), context scale {args.context_scale:g}, "
          f"extrapolation {args.extrapolate:g}, "
          f"{seconds / args.n:.3f} s per grid "
          f"({sm.precision}) -> {args.output}")
    return 0


def _generate_constrained(args: argparse.Namespace, sm: Any, gen: torch.Generator) -> int:
    """``generate --constrained``: the solver on empty boards; each row says which stage made it."""
    from ..sudoku.board import format_board, is_valid_grid
    from ..sudoku.csvio import write_csv
    from ..sudoku.generate import generate_constrained
    from ..sudoku.solve import SolveConfig

    steps = args.steps or SolveConfig.steps
    cfg = SolveConfig(steps=steps, dilation=args.time_dilation, batch_size=args.batch_size)
    t0 = time.perf_counter()
    res = generate_constrained(sm, args.n, cfg=cfg, generator=gen)
    seconds = time.perf_counter() - t0
    ok = is_valid_grid(res.solutions.clamp_min(0)) & res.valid
    rows = [{"grid": format_board(g), "valid": bool(v), "valid_rows_cols": bool(v), "mode": f"constrained:{how}",
             "seed": args.seed} for g, v, how in zip(res.solutions, ok, res.solver)]
    write_csv(args.output, ["grid", "valid", "valid_rows_cols", "mode", "seed"], rows, force=args.force)
    by_search = sum(how == "search" for how in res.solver)
    print(f"generated {args.n} grids constraint-aware (rules + diffusion, not the model alone): "
          f"{100.0 * float(ok.float().mean()):.1f}% valid, {by_search} finished by the exact search, "
          f"{steps} steps per run, {seconds / args.n:.3f} s per grid ({sm.precision}) -> {args.output}")
    return 0
