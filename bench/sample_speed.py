"""End-to-end wall time of ``ddsm sample MODEL -n 100`` (process start, model load, sampling, FASTA out).

    python bench/sample_speed.py [--model dhs4] [--n 100] [--threads 2] [--reps 3] [--extra "--steps 50"]

Runs the installed CLI in a fresh process each repetition (what a user waits for) with
``OMP_NUM_THREADS`` set, and prints the median and every repetition's seconds.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--model", default="dhs4")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--extra", default="", help="more ddsm sample options, e.g. '--class K562 --steps 50'")
    args = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.reps):
            out = Path(tmp) / f"designs_{r}.fasta"
            cmd = [sys.executable, "-m", "ddsm", "sample", args.model, "-n", str(args.n), "-o", str(out),
                   "--seed", str(r), "--quiet", *shlex.split(args.extra)]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
    print(f"ddsm sample {args.model} -n {args.n} {args.extra} ({args.threads} threads): median "
          f"{statistics.median(times):.1f} s over {args.reps} runs ({', '.join(f'{t:.1f}' for t in times)})")


if __name__ == "__main__":
    main()
