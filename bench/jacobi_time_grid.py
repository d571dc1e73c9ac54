"""DDSM loss step with training times on the fixed grid vs continuous times.

    python bench/jacobi_time_grid.py [--device cuda] [--batch 128] [--length 200] [--reps 20]

Times one training step (``process.loss`` = times, exact noisy states and score targets, network
forward, loss; then backward) of the default conv for ``JacobiProcess(n_train_times=512)`` (the
default: lineage windows tabulated once per device) and ``n_train_times=0`` (continuous times:
lineage weights computed on the CPU for every batch and copied to the device).
"""

from __future__ import annotations

import argparse
import time

import torch

from ddsm.api import build_network
from ddsm.processes import build_process


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--length", type=int, default=200)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    x0 = torch.randint(0, 4, (args.batch, args.length), device=dev)
    for grid in (512, 0):
        proc = build_process("jacobi", 4, n_train_times=grid)
        torch.manual_seed(0)
        net = build_network(proc, "conv", 0, None).to(dev)
        g = torch.Generator().manual_seed(0)

        def step() -> None:
            proc.loss(net, x0, generator=g).loss.backward()

        for _ in range(3):  # tables, caches, kernels
            step()
        sync()
        t0 = time.perf_counter()
        for _ in range(args.reps):
            step()
        sync()
        ms = 1000 * (time.perf_counter() - t0) / args.reps
        print(f"jacobi n_train_times={grid}: loss forward+backward {ms:.1f} ms/step "
              f"(batch {args.batch} x {args.length}, default conv, {dev})", flush=True)


if __name__ == "__main__":
    main()
