"""Speed of exact Jacobi transition draws + scores (ddsm.special.transition).

    PYTHONPATH=src python bench/transition_speed.py [--reps 3] [--threads N]
    OMP_NUM_THREADS=1 python bench/transition_speed.py --distinct 20000 --reps 5 --threads 1

``--distinct N``: N elements, each at its own time (log-uniform on [1e-3, 4], no time repeats),
x0 = 1 / 0 alternating, (a, b) = (1, 3): microseconds per exact draw and per score (the
DDSM-learning issue's goal: <= 10 us per draw), medians over ``--reps`` fresh sets of times.

Workload: 1e5 elements = 500 rows x 200 positions, one time per row drawn log-uniformly on
[1e-3, 4] (native clock), x0 = 1 for half the rows and 0 for the rest, (a, b) = (1, 3).
Every repetition draws FRESH times, as training does with continuous t, so the multi-precision
lineage weights (T_NORMAL <= t < T_FLOAT64, cached per exact t) are recomputed each time; the
"same times again" line shows the cost once they are cached.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from ddsm.special.lineage import T_FLOAT64, T_NORMAL
from ddsm.special.transition import jacobi_transition_sample, jacobi_transition_score

ROWS, COLS = 500, 200
A, B = 1.0, 3.0


def make_batch(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = math.log(1e-3), math.log(4.0)
    t_row = torch.exp(lo + (hi - lo) * torch.rand(ROWS, generator=gen, dtype=torch.float64))
    t = t_row[:, None].expand(ROWS, COLS).contiguous()
    x0 = (torch.arange(ROWS) % 2).double()[:, None].expand(ROWS, COLS).contiguous()
    return x0, t


def draws_and_scores(x0: torch.Tensor, t: torch.Tensor, gen: torch.Generator) -> tuple[float, float]:
    t0 = time.perf_counter()
    y = jacobi_transition_sample(x0, t, A, B, generator=gen)
    t1 = time.perf_counter()
    s = jacobi_transition_score(y, x0, t, A, B)
    t2 = time.perf_counter()
    assert torch.isfinite(s).all()
    return t1 - t0, t2 - t1


def distinct_times(n: int, reps: int) -> None:
    """Per-element cost of draws and scores when no two elements share a time."""
    gen = torch.Generator().manual_seed(0)
    lo, hi = math.log(1e-3), math.log(4.0)
    x0 = (torch.arange(n) % 2).double()
    jacobi_transition_sample(x0[:64], torch.full((64,), 0.1, dtype=torch.float64), A, B, generator=gen)  # imports
    draw_us, score_us = [], []
    for _ in range(reps):
        t = torch.exp(lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64))
        ts, tsc = draws_and_scores(x0, t, gen)
        draw_us.append(1e6 * ts / n)
        score_us.append(1e6 * tsc / n)
        print(f"  {n} distinct times: {draw_us[-1]:.1f} us per draw, {score_us[-1]:.1f} us per score", flush=True)
    print(f"distinct times, N = {n}, {torch.get_num_threads()} thread(s): median {statistics.median(draw_us):.1f} us "
          f"per draw, {statistics.median(score_us):.1f} us per score (goal <= 10 us per draw)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave default)")
    ap.add_argument("--distinct", type=int, default=0, help="only the distinct-times timing, with this many elements")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.distinct:
        distinct_times(args.distinct, args.reps)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{ROWS} rows x {COLS} = {ROWS * COLS:.0e} elements, t ~ log-uniform[1e-3, 4]")

    gen = torch.Generator().manual_seed(0)
    for r in range(args.reps):
        x0, t = make_batch(gen)
        tr = t[:, 0]
        n_mp = int(((tr >= T_NORMAL) & (tr < T_FLOAT64)).sum())
        ts, tsc = draws_and_scores(x0, t, gen)
        print(f"exact draws+scores, 1e5 elements: {ts + tsc:.2f} s "
              f"(draws {ts:.2f} s, scores {tsc:.2f} s; {n_mp} rows in the mpmath regime), rep {r}")
    ts, tsc = draws_and_scores(x0, t, gen)
    print(f"exact draws+scores, 1e5 elements, same times again (mp weights cached): {ts + tsc:.2f} s "
          f"(draws {ts:.2f} s, scores {tsc:.2f} s)")

    # ------------------------------------------------------------------------------------------
    # TODO(jacobi-process): the target number is the time per 1e5 exact noisy draws WITH their
    # score targets for the K = 4 process (3 sticks per position), through JacobiProcess. Kept
    # tolerant while src/ddsm/processes/jacobi.py is being written.
    try:
        from ddsm.processes.jacobi import JacobiProcess
    except ImportError as err:
        print(f"process not available ({err})")
        return
    try:
        proc = JacobiProcess(K=4)
        x0k = torch.randint(0, 4, (ROWS, COLS), generator=gen)
        for r in range(args.reps):
            tp = torch.rand(ROWS, generator=gen)  # public time in [0, 1]
            t0 = time.perf_counter()
            noisy = proc.sample_noisy(x0k, tp, generator=gen)
            dt = time.perf_counter() - t0
            assert noisy.target is not None and torch.isfinite(noisy.target).all()
            print(f"JacobiProcess(K=4).sample_noisy, 1e5 positions (3 sticks each, with targets): "
                  f"{dt:.2f} s, rep {r}")
    except Exception as err:  # the process API is still moving: report instead of crashing
        print(f"process call failed: {type(err).__name__}: {err}")


if __name__ == "__main__":
    main()
