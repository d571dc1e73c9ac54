"""Cost of each process's maths on top of the backbone.

    python bench/process_overhead.py [--batch 64] [--length 200] [--model conv] [--reps 11] [--processes jacobi,bits]

For every registered process: the training step (process.loss = draw times and noisy states,
network forward, loss; then backward) against a plain forward + backward of the same backbone on
a batch of the same shape, and one sampling step (network forward + process.step) against the
forward alone, the two timed alternately. Target: under 10 % overhead. Also prints seconds per
1e5 exact DDSM noisy draws with score targets (K = 4). Medians over repetitions after one warm-up.

Self-conditioning (``bits``) runs the network twice per training step by design: a no-gradient
forward on a random half of the batch, then the forward + backward. Its row is therefore followed
by one that counts that pass as backbone work (forward + backward plus a forward on half the
batch), which isolates the process's own maths, and by one for ``bits`` without self-conditioning.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ddsm.api import build_network
from ddsm.processes import PROCESSES, JacobiProcess, build_process  # noqa: F401


def timed(fn, reps: int) -> float:
    fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def timed_pair(fn_a, fn_b, reps: int) -> tuple[float, float]:
    """Medians of ``fn_a`` and ``fn_b`` timed alternately, so that drift in the machine's speed
    (frequency, other jobs, allocator state) hits both alike; one warm-up each."""
    fn_a(), fn_b()
    ta, tb = [], []
    for _ in range(reps):
        for fn, out in ((fn_a, ta), (fn_b, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--length", type=int, default=200)
    ap.add_argument("--model", default="conv")
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--K", type=int, default=4)
    ap.add_argument("--processes", default="", help="comma-separated subset of the registry (default: all)")
    args = ap.parse_args()
    B, L, K = args.batch, args.length, args.K
    g = torch.Generator().manual_seed(0)
    jac = JacobiProcess(4, output="score")
    _ = jac._lambda_table  # warm-up: builds (and caches) the one-off per-configuration table before timing
    x0 = torch.randint(0, 4, (500, 200), generator=g)
    t = timed(lambda: jac.sample_noisy(x0, jac.sample_time(500, generator=g), generator=g), args.reps)
    post = JacobiProcess(K)
    xk = torch.randint(0, K, (500, 200), generator=g)
    tp = timed(lambda: post.sample_noisy(xk, post.sample_time(500, generator=g), generator=g), args.reps)
    print(f"torch threads {torch.get_num_threads()}; DDSM exact noisy draws, 1e5 positions: with score targets "
          f"(output=score), K=4: {t:.3f} s; posterior output (no targets), K={K}: {tp:.3f} s")
    print(f"{'process':20s} {'fwd+bwd':>8s} {'loss step':>9s} {'overhead':>9s} | "
          f"{'forward':>8s} {'sample step':>11s} {'overhead':>9s}")
    names = [n for n in args.processes.split(",") if n] or sorted(PROCESSES)
    rows = [(n, {}) for n in names]
    if "bits" in names:
        rows.insert(names.index("bits") + 1, ("bits", {"self_condition": False}))
    for name, opts in rows:
        torch.manual_seed(0)
        proc = build_process(name, K, **opts)
        model = "transformer" if proc.causal else args.model
        net = build_network(proc, model, 0)
        x0 = torch.randint(0, K, (B, L), generator=g)
        t_b = torch.full((B,), 0.5)
        xt = proc.sample_noisy(x0, t_b, generator=g).xt
        feats = proc.model_input(xt, t_b)

        def plain():
            net.zero_grad(set_to_none=True)
            net(feats, t_b).pow(2).mean().backward()

        def loss_step():
            net.zero_grad(set_to_none=True)
            proc.loss(net, x0, generator=g).loss.backward()

        @torch.no_grad()
        def forward():
            net(feats, t_b)

        @torch.no_grad()
        def sample_step():
            out = proc.model_output(net, xt, t_b, None)
            proc.step(out, xt, t_b, torch.full((B,), 0.49), generator=g)

        def plain_self_conditioned():
            with torch.no_grad():
                net(feats[: B // 2], t_b[: B // 2])
            plain()

        label = name + ("" if not opts else " (no self-cond)")
        tp, tl = timed_pair(plain, loss_step, args.reps)
        tf, ts = timed_pair(forward, sample_step, args.reps)
        print(f"{label:20s} {tp:8.3f} {tl:9.3f} {100 * (tl / tp - 1):8.1f}% | "
              f"{tf:8.3f} {ts:11.3f} {100 * (ts / tf - 1):8.1f}%",
              flush=True)
        if getattr(proc, "self_condition", False):
            tp2, tl2 = timed_pair(plain_self_conditioned, loss_step, args.reps)
            print(f"{'  + half fwd':20s} {tp2:8.3f} {tl2:9.3f} {100 * (tl2 / tp2 - 1):8.1f}% | "
                  "(reference: forward + backward plus the self-conditioning forward on half the batch)", flush=True)


if __name__ == "__main__":
    main()
