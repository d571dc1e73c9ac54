"""Reward-guided design on the bundled models, judged by an oracle that never steered.

    OMP_NUM_THREADS=1 python bench/reward_guidance.py --name dhs4 --n-per-class 32
    # any other process trained on the same data (bench/train_bundled.py --process masked ...):
    OMP_NUM_THREADS=1 python bench/reward_guidance.py --name dhs4 --model runs/dhs4_masked --methods none,smc,svdd
    # equal CPU time per design across processes: SMC / SVDD sized to 3 s per design
    OMP_NUM_THREADS=1 python bench/reward_guidance.py --name dhs4 --model runs/dhs4_uniform --budget 3

For every class of the bundled model, designs are drawn with each method (the shipped default
classifier-free guidance alone; plus classifier guidance with the bundled oracle; plus SMC and
SVDD toward the bundled oracle's log p(class | x)), and evaluated against valid.fasta: the
*guiding* oracle's target-class rate, the independent *evaluation* oracle's (other architecture,
seed and split, ``bench/train_oracles.py --eval``; never used for steering), 4-mer JS, 3-mer
correlation, JASPAR motif correlation, diversity and nearest-training identity, and CPU seconds per
design. The first row is real held-out sequences (a per-class subset of valid.fasta, as many as the
designs, judged against the rest of valid.fasta like the designs).
A gap between the two oracles, or a fall in naturalness, is what reward hacking looks like.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from ddsm.api import design, load_run
from ddsm.data import Record, read_fasta
from ddsm.evaluate import evaluate_detailed
from ddsm.seeding import seed_everything

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KEYS = {"dhs4": "cell_type", "epd_promoters": "species"}
COLS = [("oracle_target_frac", "guide"), ("eval_oracle_target_frac", "judge"), ("kmer4_js", "4mer JS"),
        ("kmer3_corr", "3mer r"), ("motif_corr", "JASPAR r"), ("diversity", "div"),
        ("nearest_train_identity", "near id")]


def calibrated_particles(run, method: str, args: argparse.Namespace, steps: int, cfg: float, d: dict) -> int:
    """Particles (SMC) or candidates (SVDD) that make one design cost ``args.budget`` CPU seconds:
    a timed draw of 4 designs at 2 particles gives the cost per particle-design (a design with P
    particles runs P chains, so its cost is close to linear in P)."""
    gen = seed_everything(args.seed + 1)  # not the bench's draws
    t0 = time.time()
    design(run, 4, class_name=run.classes[0], steps=steps, guidance=cfg, generator=gen,
           precision=d.get("precision", "fp32"), substeps=d.get("substeps"), grid_focus=d.get("grid_focus"),
           reward="oracle", reward_method=method,
           particles=2, alpha=args.alpha)
    per = (time.time() - t0) / 8
    p = max(1, int(args.budget / per))
    print(f"  {method}: {per:.3f} s per particle-design -> {p} particles for {args.budget:g} s per design", flush=True)
    return p


def main() -> None:
    ap = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--name", choices=sorted(KEYS), default="dhs4")
    ap.add_argument("--model", default=None,
                    help="run folder of a model trained on --name's data (default: the bundled model)")
    ap.add_argument("--n-per-class", type=int, default=32)
    ap.add_argument("--methods", default="none,classifier,smc,svdd")
    ap.add_argument("--particles", type=int, default=8)
    ap.add_argument("--budget", type=float, default=0.0,
                    help="CPU seconds per design for SMC / SVDD: their particle count is set from a timed "
                         "calibration draw so that every process and method spends the same time per design "
                         "(0: --particles)")
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--classifier-weight", type=float, default=2.0)
    ap.add_argument("--cfg", type=float, default=None,
                    help="classifier-free guidance weight (default: the shipped one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=str(DATA), help="folder holding <name>/train.fasta and valid.fasta")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    key = KEYS[args.name]
    run = load_run(args.model or args.name)
    if run.classes != load_run(args.name).classes:
        raise SystemExit(f"{args.model}: classes {run.classes} are not those of {args.name}")
    valid = read_fasta(Path(args.data_dir) / args.name / "valid.fasta")
    train = read_fasta(Path(args.data_dir) / args.name / "train.fasta")
    rng = np.random.default_rng(args.seed)
    per = {c: [r for r in valid if r.meta[key] == c] for c in run.classes}
    ref_sub = [r for c in run.classes for r in (per[c][i] for i in rng.permutation(len(per[c]))[: args.n_per_class])]
    held = {id(r) for r in ref_sub}
    valid = [r for r in valid if id(r) not in held]  # the reference of every row, the real row's excluded
    d = run.sampling_defaults
    steps, cfg = int(d.get("steps", 50)), float(d.get("guidance", 1.0)) if args.cfg is None else args.cfg
    print(f"{args.name} ({run.process.name} model {args.model or 'bundled'}): {args.n_per_class} designs per class, "
          f"{steps} steps (grid focus {d.get('grid_focus', 0)}), CFG {cfg:g}, precision "
          f"{d.get('precision', 'fp32')}; SMC/SVDD: {args.particles} particles, alpha {args.alpha:g}; "
          f"reference valid.fasta ({len(valid)}), novelty vs train.fasta ({len(train)})")
    header = f"{'method':22s} " + " ".join(f"{h:>8s}" for _, h in COLS) + f" {'s/design':>9s}"
    print(header)

    def report(label: str, recs: list, seconds: float) -> None:
        ev = evaluate_detailed(recs, valid, label_key=key, train=train, oracle=args.name, seed=args.seed)
        row = ev.table.loc["all"] if hasattr(ev.table, "loc") else ev.metrics["all"]
        vals = " ".join(f"{float(row[c]):8.3f}" if row[c] is not None and math.isfinite(float(row[c])) else f"{'-':>8s}"
                        for c, _ in COLS)
        print(f"{label:22s} {vals} {seconds:9.2f}", flush=True)

    report("real (valid subset)", ref_sub, float("nan"))
    for method in args.methods.split(","):
        particles = args.particles
        if args.budget > 0 and method in ("smc", "svdd"):
            particles = calibrated_particles(run, method, args, steps, cfg, d)
        gen = seed_everything(args.seed)
        kw = dict(steps=steps, guidance=cfg, generator=gen, precision=d.get("precision", "fp32"),
                  substeps=d.get("substeps"), grid_focus=d.get("grid_focus"))
        if method == "classifier":
            kw["classifier_guidance"] = args.classifier_weight
        elif method in ("smc", "svdd"):
            kw.update(reward="oracle", reward_method=method, particles=particles, alpha=args.alpha)
        elif method != "none":
            raise SystemExit(f"unknown method {method}")
        t0 = time.time()
        recs = []
        for c in run.classes:
            res = design(run, args.n_per_class, class_name=c, **kw)
            recs += [Record(f"{c}_{i}", s, {key: c}) for i, s in enumerate(res.sequences) if s is not None]
        report({"none": f"CFG {cfg:g}" + (" (shipped)" if args.cfg is None and args.model is None else ""),
                "classifier": f"+ classifier w={args.classifier_weight:g}",
                "smc": f"+ SMC P={particles}", "svdd": f"+ SVDD M={particles}"}[method], recs,
               (time.time() - t0) / max(1, len(recs)))


if __name__ == "__main__":
    main()
