"""``ddsm demo``: the bundled models' designs, evaluations and reports, and Sudoku puzzles
(the work is :func:`ddsm.demo.run_demo`; this module checks the flags and seeds)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DDSMInputError
from .common import add_common_options, check_positive, check_seed, select_device


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``ddsm demo``."""
    d = sub.add_parser("demo", help="design DNA for every class of the bundled models, evaluate against real "
                       "sequences, write reports, solve Sudoku puzzles")
    d.add_argument("--out", default="ddsm_demo", help="output folder")
    d.add_argument("--steps", type=int, default=None,
                   help="sampling steps (default: each bundled model's recorded default, else 50)")
    d.add_argument("-n", type=int, default=48, help="designs per class")
    d.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance weight (default: each bundled model's recorded default, else 1)")
    d.add_argument("--force", action="store_true", help="write into an existing --out folder")
    add_common_options(d)
    d.set_defaults(func=run)
    return d


def run(args: argparse.Namespace) -> int:
    """Check the flags, seed the global generators, run the demo."""
    from ..demo import run_demo
    from ..seeding import seed_everything

    check_positive(steps=args.steps)
    if args.n < 1:
        raise DDSMInputError("-n must be at least 1")
    check_seed(args.seed)
    device = select_device(args.device)
    # the demo draws from explicit generators built from --seed; the global generators are seeded
    # here (only the CLI seeds them) for third-party code and device-side draws
    seed_everything(args.seed)
    return run_demo(out=Path(args.out), steps=args.steps, seed=args.seed, n=args.n, force=args.force,
                    quiet=args.quiet, device=device, guidance=args.guidance,
                    say=lambda msg: print(msg, flush=True))
