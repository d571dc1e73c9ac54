"""How DDSM's likelihood bounds converge in their step count, on a trained model with a known truth.

    OMP_NUM_THREADS=1 python bench/ode_convergence.py [--train-steps 740] [--ode 100,200,400,800] [--sde 200,800]

Trains the default jacobi process (conv backbone) on bench/entropy.py's order-2 chain (seed 0, the
README's) for a fixed number of steps, then prints, on the same held-out sequences, the paired
excess of each bound over every sequence's exact -log2 p(x) / L: the probability-flow ODE bound at
each Heun step count (a fixed-step ODE can land *below* the truth when too coarse) and the reverse
SDE's bound at each cell count (unbiased at any count; more cells only lower its variance).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from ddsm.api import build_network
from ddsm.processes import build_process
from ddsm.training import TrainConfig, train
from entropy import draw, markov_chain, sequence_bits


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-steps", type=int, default=740, help="about what 120 s buys in bench/entropy.py")
    ap.add_argument("--ode", default="100,200,400,800", help="Heun step counts of the ODE bound")
    ap.add_argument("--sde", default="200,800", help="time cells of the SDE bound")
    ap.add_argument("--n-test", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    P, pi = markov_chain(2, 4, rng)
    train_x = torch.from_numpy(draw(P, pi, 20000, 64, 2, 4, rng))
    test_x = torch.from_numpy(draw(P, pi, args.n_test, 64, 2, 4, rng))
    truth = torch.from_numpy(sequence_bits(test_x.numpy(), P, pi, 2, 4))
    torch.manual_seed(args.seed)
    proc = build_process("jacobi", 4)
    net = build_network(proc, "conv", 0)
    cfg = TrainConfig(steps=args.train_steps, batch_size=64, lr=2e-3, warmup_steps=100, eval_every=0,
                      checkpoint_every=0, seed=args.seed, ema_decay=0.999, log_every=0, schedule="cosine")
    t0 = time.time()
    summary = train(proc, net, train_x, config=cfg, model_name="conv")
    summary["ema"].copy_to(net)
    net.eval()
    print(f"jacobi trained {args.train_steps} steps in {time.time() - t0:.0f} s; {args.n_test} test sequences, "
          f"truth {truth.mean().item():.4f} bits/token")
    runs = [("ode", int(s)) for s in args.ode.split(",") if s] + [("sde", int(s)) for s in args.sde.split(",") if s]
    for bound, steps in runs:
        g = torch.Generator().manual_seed(args.seed + 1)  # the same noisy starts for every ODE run
        t0 = time.time()
        bits = torch.cat([proc.bits_per_token(net, test_x[i : i + 64], generator=g, steps=steps, bound=bound)
                          for i in range(0, len(test_x), 64)]).double()
        ex = bits - truth
        print(f"{bound} {steps:4d} {'steps' if bound == 'ode' else 'cells'}: bits/token {bits.mean().item():.4f}, "
              f"paired excess {ex.mean().item():+.4f} +- {ex.std().item() / math.sqrt(len(ex)):.4f} "
              f"({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
