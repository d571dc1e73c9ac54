"""Per-sequence noise of DDSM's likelihood bound: Hutchinson's probe fresh or fixed, local part exact or not.

    OMP_NUM_THREADS=1 python bench/bound_variance.py [--model dhs4] [--n 16] [--repeats 4] [--steps 100]

``ddsm score`` ranks single sequences, so the spread of one sequence's bound over repeated
estimates (a fresh noisy start and a fresh probe each time) matters as much as its mean. For the
first ``--n`` sequences of the model's ``valid.fasta``, prints the mean bound (bits/token), the
mean over sequences of the per-sequence standard deviation over ``--repeats`` estimates, and the
seconds, for the default estimator (the part of the divergence that holds the network's output
fixed computed exactly, K - 1 backward passes, and a fresh Rademacher probe at every evaluation),
the same with one probe fixed along the trajectory (FFJORD's), and the plain one (fixed probe on
everything).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from ddsm.api import load_run
from ddsm.data import encode_records, read_fasta

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--model", default="dhs4", help="bundled jacobi model (its data set's valid.fasta is read)")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = load_run(args.model)
    proc, net = run.process, run.model.eval()
    x0 = torch.from_numpy(encode_records(read_fasta(DATA / args.model / "valid.fasta")[: args.n], run.alphabet).tokens)
    split_parts = type(proc).drift_parts

    def plain_parts(self, *a, **k):
        return split_parts(self, *a, **k)[0], None

    print(f"{args.model}: {args.n} valid sequences, {args.repeats} estimates each, {args.steps} Heun steps, "
          f"unconditional, {torch.get_num_threads()} thread(s)")
    rows = (("local part exact, fresh probe (default)", split_parts, "fresh"),
            ("local part exact, fixed probe", split_parts, "fixed"),
            ("plain Hutchinson, fixed probe", plain_parts, "fixed"))
    for name, parts, probe in rows:
        type(proc).drift_parts = parts
        try:
            t0 = time.time()
            res = np.stack([proc.bits_per_token(net, x0, generator=torch.Generator().manual_seed(r),
                                                steps=args.steps, probe=probe).numpy()
                            for r in range(args.repeats)])
        finally:
            type(proc).drift_parts = split_parts
        print(f"{name:40s} mean {res.mean():.4f} bits/token, per-sequence sd {res.std(0, ddof=1).mean():.4f}, "
              f"{time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
