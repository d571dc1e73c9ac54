"""DDSM speed on this machine: exact noisy draws, loss overhead, sampler overhead.

    python bench/jacobi_overhead.py [--reps 5] [--batch 64] [--length 200]

Prints:
- seconds per 1e5 exact noisy draws with score targets for K = 4 (JacobiProcess.sample_noisy,
  500 x 200 positions, fresh training times each repetition; target < 1 s);
- the DDSM loss step (draw t, exact noisy state, network, loss, backward) against a plain
  forward + backward of the same backbone on the same batch (target: < 10 % overhead);
- the sampler step (JacobiProcess.step + loop bookkeeping) against the network forward alone
  (target: < 10 % overhead).
Medians over repetitions; the first (warm-up) repetition is discarded.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ddsm.api import DEFAULT_MODEL_OPTIONS
from ddsm.models import build_model
from ddsm.processes import JacobiProcess
from ddsm.sampling import sample


def timed(fn, reps: int) -> float:
    fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--length", type=int, default=200)
    ap.add_argument("--model", default="conv")
    args = ap.parse_args()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    p = JacobiProcess(4)
    t0 = time.perf_counter()
    # evaluated only to build (and cache) the lambda table before timing: one-off per process
    # (part of its definition), not per step
    _ = p._lambda_table
    print(f"torch threads: {torch.get_num_threads()}; one-off lambda table: {time.perf_counter() - t0:.2f} s")

    def draws():
        x0 = torch.randint(0, 4, (500, 200), generator=g)
        p.sample_noisy(x0, p.sample_time(500, generator=g), generator=g)

    print(f"exact noisy draws + score targets, 1e5 positions (K=4): {timed(draws, args.reps):.3f} s")

    B, L = args.batch, args.length
    net = build_model(args.model, p.in_channels, p.out_channels, **DEFAULT_MODEL_OPTIONS[args.model])
    x0 = torch.randint(0, 4, (B, L), generator=g)
    feats = torch.rand(B, L, 4)
    feats = feats / feats.sum(-1, keepdim=True)
    tt = torch.rand(B)

    def plain():
        net.zero_grad(set_to_none=True)
        net(feats, tt).pow(2).mean().backward()

    def ddsm_loss():
        net.zero_grad(set_to_none=True)
        p.loss(net, x0, generator=g).loss.backward()

    tp, tl = timed(plain, args.reps), timed(ddsm_loss, args.reps)
    print(f"{args.model} forward+backward, batch {B}x{L}: {tp:.3f} s; DDSM loss step: {tl:.3f} s; "
          f"overhead {100 * (tl / tp - 1):.1f} %")

    steps = 20

    @torch.no_grad()
    def forward_only():
        for _ in range(steps):
            net(feats, tt)

    def sampler():
        sample(p, net, (B, L), steps=steps, generator=g)

    tf, ts = timed(forward_only, max(2, args.reps // 2)), timed(sampler, max(2, args.reps // 2))
    print(f"{steps} network forwards: {tf:.3f} s; {steps}-step sampler: {ts:.3f} s; "
          f"per-step overhead {100 * (ts / tf - 1):.1f} %")


if __name__ == "__main__":
    main()
