"""Does the placement of the sampling steps limit Sudoku generation? Same network calls, other grids.

    python bench/sudoku_time_grid.py default focus:10:80:10:3.0:0.6 --grids 256 --threads 1

``bench/sudoku_loss.py`` shows the bundled model's held-out loss is 0 below native time tau = 0.6
and log 9 (no information) above tau = 3.5: the default grid (uniform in sqrt(tau / T), T = 5)
spends about 24 of 100 steps above tau = 3 and 32 below tau = 0.6. Grids:

- ``default``: the process's grid;
- ``focus:A:B:C:HI:LO``: A steps linear in tau from T to HI, B steps linear from HI to LO, C steps
  log-spaced from LO to t_min (A + B + C network calls).

Prints, per grid, the valid-grid rate (rows, columns, boxes) of ``--grids`` grids at dilation 1, the
same seed for every grid.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch

from ddsm.precision import PRECISIONS
from ddsm.sudoku.board import is_valid_grid
from ddsm.sudoku.generate import generate_grids
from ddsm.sudoku.model_io import load_sudoku_model


def public_grid(spec: str, proc, steps: int) -> torch.Tensor:
    """Decreasing public times for a grid spec (see the module docstring)."""
    if spec == "default":
        return proc.time_grid(steps).double()
    parts = spec.split(":")
    if parts[0] != "focus" or len(parts) != 6:
        raise SystemExit(f"grid must be 'default' or focus:A:B:C:HI:LO, got {spec!r}")
    a, b, c = (int(x) for x in parts[1:4])
    hi, lo = float(parts[4]), float(parts[5])
    tau = torch.cat([torch.linspace(proc.T, hi, a + 1, dtype=torch.float64),
                     torch.linspace(hi, lo, b + 1, dtype=torch.float64)[1:],
                     torch.logspace(math.log10(lo), math.log10(proc.t_min), c + 1, dtype=torch.float64)[1:]])
    return torch.sqrt(tau / proc.T)  # public t, with tau = T t^2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("grids_spec", nargs="+", metavar="GRID")
    p.add_argument("--model", default=None)
    p.add_argument("--grids", type=int, default=256)
    p.add_argument("--steps", type=int, default=100, help="steps of the default grid")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sm = load_sudoku_model(args.model, precision=args.precision)
    print(json.dumps({"model": str(sm.path), "precision": sm.precision, "threads": torch.get_num_threads(),
                      "seed": args.seed}), flush=True)
    for spec in args.grids_spec:
        times = public_grid(spec, sm.process, args.steps)
        t0 = time.perf_counter()
        grids = generate_grids(sm, args.grids, times=times, generator=torch.Generator().manual_seed(args.seed))
        print(json.dumps({"grid": spec, "network_calls": len(times) - 1, "grids": args.grids,
                          "valid": round(float(is_valid_grid(grids).float().mean()), 4),
                          "seconds_per_grid": round((time.perf_counter() - t0) / args.grids, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
