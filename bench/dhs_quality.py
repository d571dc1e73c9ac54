"""DDSM on real DHS sequences: train for a CPU budget, sample, compare with held-out data.

    python bench/dhs_quality.py [--minutes 15] [--n 500] [--out runs/dhs_bench]

Trains the default DDSM (Jacobi process, dilated CNN) on ../shared/data/dhs4/train.fasta for a
wall-clock budget, samples ``n`` sequences, and prints GC content and k-mer (3, 4) Jensen-Shannon
distances to ../shared/data/dhs4/valid.fasta for: the trained model, the same network untrained,
and real training sequences (the floor set by sampling noise).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ddsm.api import Run, build_network, fit, generate, sequence_summary
from ddsm.data import encode_records, read_fasta
from ddsm.processes import build_process
from ddsm.seeding import seed_everything
from ddsm.training import TrainConfig

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dhs4"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--steps", type=int, default=100, help="sampling steps")
    ap.add_argument("--out", default="runs/dhs_bench")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    train_recs = read_fasta(DATA / "train.fasta")
    valid_recs = read_fasta(DATA / "valid.fasta")
    ds = encode_records(train_recs)
    reference = [r.seq for r in valid_recs]
    seed_everything(args.seed)
    # steps for the budget, from a short timing run of the same configuration
    probe = TrainConfig(steps=6, batch_size=args.batch_size, warmup_steps=1, eval_every=0, checkpoint_every=0,
                        log_every=0, seed=args.seed)
    fit(ds.subset(range(2000)), None, train_config=probe)  # pays one-off costs (tables, caches)
    t0 = time.time()
    fit(ds.subset(range(2000)), None, train_config=probe)
    per_step = (time.time() - t0) / 6
    steps = max(50, int(args.minutes * 60 / per_step))
    print(f"dhs4: {len(ds)} training sequences; ~{per_step:.2f} s/step -> {steps} steps for {args.minutes:g} min; "
          f"torch threads {torch.get_num_threads()}")
    cfg = TrainConfig(steps=steps, batch_size=args.batch_size, lr=1e-3, warmup_steps=200, eval_every=0,
                      checkpoint_every=max(steps // 4, 1), seed=args.seed, schedule="cosine", log_every=0)
    t0 = time.time()
    run, summary = fit(ds, Path(args.out), train_config=cfg, extra_meta={"data_path": str(DATA / "train.fasta")})
    print(f"trained {steps} steps in {time.time() - t0:.0f} s, final train loss {summary['final_train_loss']:.4f}")
    t0 = time.time()
    designs = generate(run, args.n, steps=args.steps, generator=seed_everything(args.seed + 1))
    t_sample = time.time() - t0
    torch.manual_seed(args.seed)
    untrained = Run(build_process("jacobi", 4), build_network(run.process, "conv", 0).eval(), run.config)
    base = generate(untrained, args.n, steps=args.steps, generator=seed_everything(args.seed + 1))
    rows = {"untrained": sequence_summary(base, reference), "DDSM": sequence_summary(designs, reference),
            "real train": sequence_summary([r.seq for r in train_recs[: args.n]], reference)}
    print(f"sampled {args.n} sequences ({args.steps} steps) in {t_sample:.0f} s")
    print(f"{'vs dhs4 valid.fasta':22s} " + " ".join(f"{k:>11s}" for k in rows))
    for key in ("gc_designed", "gc_abs_diff", "kmer3_js", "kmer4_js"):
        print(f"{key:22s} " + " ".join(f"{rows[k][key]:11.4f}" for k in rows))
    print(f"held-out mean GC: {rows['DDSM']['gc_reference']:.4f}")


if __name__ == "__main__":
    main()
