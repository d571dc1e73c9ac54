"""Evaluation metrics on real data: the "real data" baseline, and designs next to it.

    python bench/evaluate_real.py [--data ../shared/data/dhs4] [--designs designs.fasta] [--report out.html]
    python bench/evaluate_real.py --model dhs4 --n-per-class 100            # the bundled model's designs
    python bench/evaluate_real.py --data ../shared/data/epd_promoters --label-key species --model epd_promoters

Baseline: the held-out sequences (valid.fasta) evaluated as if they were designs, against the
training sequences (train.fasta) as reference and training set. These are the values a perfect
generator would reach (k-mer / GC distances at the sampling-noise floor, motif correlation near 1,
discriminator AUROC near 0.5, oracle fraction = the oracle's validation accuracy, no memorisation).

With --model (a run directory or bundled model name): first design --n-per-class sequences for every
class of the model (--steps, --guidance, --seed), then evaluate them as with --designs.

With --designs: the designs are evaluated against valid.fasta (reference) and train.fasta
(novelty), and every metric of the ``all`` row is printed next to the baseline. k-mer and GC
distances have a floor that grows as the compared sets shrink, so the baseline then uses a random
subsample of valid.fasta as large as the design set (``--full-baseline`` keeps all of it).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from ddsm.data import read_sequences
from ddsm.evaluate import evaluate_detailed, format_table

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dhs4"


def _fmt(v) -> str:
    if isinstance(v, (int, np.integer)):
        return f"{int(v)}"
    return "-" if v is None or not math.isfinite(float(v)) else f"{float(v):.4f}"


def design_all(model: str, n: int, *, steps: int, guidance: float, seed: int, label_key: str) -> list:
    """``n`` designs for every class of ``model``, labelled ``label_key=<class>`` like the real data."""
    from ddsm.api import design, load_run
    from ddsm.data import Record
    from ddsm.seeding import seed_everything

    run = load_run(model)
    gen = seed_everything(seed)
    t0 = time.time()
    records = []
    for cls in run.classes:
        res = design(run, n, steps=steps, class_name=cls, guidance=guidance, generator=gen)
        records += [Record(f"{cls}_{i}", s, {label_key: cls}) for i, s in enumerate(res.sequences) if s is not None]
    print(f"designed {len(records)} sequences with {model} ({steps} steps, guidance {guidance:g}, seed {seed}) "
          f"in {time.time() - t0:.0f} s")
    return records


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DATA), help="folder with train.fasta and valid.fasta")
    ap.add_argument("--label-key", default="cell_type")
    ap.add_argument("--designs", default=None, help="designed sequences (FASTA) to evaluate")
    ap.add_argument("--model", default=None, help="design with this model (run directory or bundled name) first")
    ap.add_argument("--n-per-class", type=int, default=100)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--oracle", default="auto")
    ap.add_argument("--max-seqs", type=int, default=1000)
    ap.add_argument("--report", default=None, help="HTML report of the designs (or of the baseline)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--full-baseline", action="store_true",
                    help="with --designs, still use all of valid.fasta for the baseline")
    args = ap.parse_args()
    data = Path(args.data)
    train = read_sequences(data / "train.fasta")
    valid = read_sequences(data / "valid.fasta")
    print(f"{data.name}: {len(train)} train, {len(valid)} valid sequences; label key {args.label_key}")
    designs = read_sequences(args.designs) if args.designs else None
    if args.model:
        designs = design_all(args.model, args.n_per_class, steps=args.steps, guidance=args.guidance,
                             seed=args.seed, label_key=args.label_key)
        args.designs = f"{args.model} designs"
    baseline_set = valid
    if designs is not None and not args.full_baseline and len(designs) < len(valid):
        pick = np.sort(np.random.default_rng(args.seed).choice(len(valid), len(designs), replace=False))
        baseline_set = [valid[i] for i in pick]

    t0 = time.time()
    base = evaluate_detailed(baseline_set, train, label_key=args.label_key, train=train, oracle=args.oracle,
                             max_seqs=args.max_seqs, seed=args.seed)
    print(f"\n== real data baseline: valid.fasta ({len(baseline_set)} sequences) vs train.fasta "
          f"({time.time() - t0:.0f} s)")
    print(format_table(base.table))
    if base.oracle:
        print(f"oracle: {base.oracle['name']} (validation accuracy {base.oracle['valid_accuracy']:.4f})")
    shown = base

    if designs is not None:
        t0 = time.time()
        ev = evaluate_detailed(designs, valid, label_key=args.label_key, train=train, oracle=args.oracle,
                               max_seqs=args.max_seqs, seed=args.seed)
        print(f"\n== designs: {args.designs} vs valid.fasta ({time.time() - t0:.0f} s)")
        print(format_table(ev.table))
        print("\n== all classes: designs vs the real data baseline")
        print(f"{'metric':<24}  {'designs':>10}  {'baseline':>10}")
        for col in ev.table.columns:
            print(f"{col:<24}  {_fmt(ev.table.loc['all', col]):>10}  {_fmt(base.table.loc['all', col]):>10}")
        shown = ev
    if args.report:
        from ddsm.data.io import atomic_write_text
        from ddsm.report import build_report

        shown.settings.update({"designs": args.designs or str(data / "valid.fasta"),
                               "reference": str(data / ("valid.fasta" if args.designs else "train.fasta"))})
        atomic_write_text(args.report, build_report(shown, title=f"ddsm bench: {data.name}"), force=True)
        print(f"report: {args.report}")


if __name__ == "__main__":
    main()
