"""Held-out cross-entropy of Sudoku checkpoints, per band of native time.

    python bench/sudoku_loss.py bundled /tmp/sudoku_run [...] --threads 1

Training prints a noisy per-batch loss over random times and the training pool; generating 1,000
grids to compare two checkpoints takes a quarter of an hour on a CPU and its rate has a standard
error near 1.5 points. This is the cheap, paired measurement in between: every checkpoint sees the
same ``--grids`` grids (from a backtracking pool seeded apart from any training pool, under random
symmetries), at the same times (the process's training grid, cycled) and the same noise. It prints
the mean cross-entropy of the clean digits per cell (nats; log 9 = 2.197 is "no information"), over
all times and per band of native time tau.

The fixed evaluation is what makes small differences readable; the value is not a likelihood bound.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
import torch.nn.functional as F

from ddsm.precision import PRECISIONS
from ddsm.sudoku.generator import GridStream, base_grids
from ddsm.sudoku.model_io import load_sudoku_model

#: edges of the native-time bands reported (the bundled process runs tau from 0.01 to T = 5)
BANDS = (0.0, 0.3, 0.6, 1.0, 1.5, 2.0, 2.5, 3.5, 5.01)
_POOL_SEED = 987_654  # no training run uses this pool seed (their default is 0)


@torch.no_grad()
def heldout_ce(path: str | None, grids: torch.Tensor, *, precision: str, batch: int, seed: int) -> dict:
    """Per-board mean cross-entropy ``(N,)`` and the native time of each board."""
    sm = load_sudoku_model(path, precision=precision)
    proc = sm.process
    n = grids.shape[0]
    t = proc.train_times[torch.arange(n) % proc.n_train_times]
    tau = proc.native_time(t)
    gen = torch.Generator().manual_seed(seed)
    ce = torch.empty(n, dtype=torch.float64)
    for lo in range(0, n, batch):
        sl = slice(lo, lo + batch)
        noisy = proc.sample_noisy(grids[sl], t[sl], generator=gen)
        logits = proc.model_output(sm.model_fn, noisy.xt, t[sl])
        terms = F.cross_entropy(logits.float().reshape(-1, proc.K), grids[sl].reshape(-1), reduction="none")
        ce[sl] = terms.reshape(-1, grids.shape[1]).double().mean(1)
    row = {"model": str(sm.path), "step": sm.config.get("step"), "precision": sm.precision,
           "layers": sm.config["model"]["options"].get("n_layers"), "ce_all": round(float(ce.mean()), 4)}
    row["ce_by_tau"] = {f"[{a:g},{b:g})": round(float(ce[(tau >= a) & (tau < b)].mean()), 4)
                        for a, b in zip(BANDS[:-1], BANDS[1:]) if bool(((tau >= a) & (tau < b)).any())}
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="Sudoku checkpoint folders ('bundled': the shipped model)")
    p.add_argument("--grids", type=int, default=1024, help="held-out boards (one time each)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=5, help="seeds the held-out grids, their symmetries and noise")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pool = base_grids(512, seed=_POOL_SEED)
    grids = GridStream(pool).sample(args.grids, generator=torch.Generator().manual_seed(args.seed))
    print(json.dumps({"grids": args.grids, "seed": args.seed, "pool_seed": _POOL_SEED,
                      "threads": torch.get_num_threads()}), flush=True)
    for path in args.models:
        row = heldout_ce(None if path == "bundled" else path, grids, precision=args.precision,
                         batch=args.batch_size, seed=args.seed + 1)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
