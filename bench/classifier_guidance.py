"""Classifier (oracle) guidance on a bundled model: does it move designs toward their class?

    OMP_NUM_THREADS=1 python bench/classifier_guidance.py [--model dhs4] [--n 32] [--weights 0,2,5]

For every class of the model, designs ``--n`` sequences at each classifier-guidance weight (with
classifier-free guidance ``--cfg`` throughout) and prints the fraction the bundled oracle assigns
to the target class, and the 3-mer Jensen-Shannon distance to the model's bundled held-out
sequences of that class (to see what the guidance costs in realism). Note the guide and the judge
are the same oracle here, so the target fraction measures that the guidance works, not that the
designs are better biology.
"""

from __future__ import annotations

import argparse
import time

from ddsm.api import design, load_run
from ddsm.data import bundled_path, read_fasta
from ddsm.demo import BUNDLED_REFERENCE
from ddsm.metrics import kmer_js
from ddsm.metrics.oracle import load_oracle
from ddsm.seeding import seed_everything


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="dhs4", choices=sorted(BUNDLED_REFERENCE))
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--cfg", type=float, default=1.0)
    ap.add_argument("--weights", default="0,2,5")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    run = load_run(args.model)
    oracle = load_oracle(args.model)
    ref_file, key = BUNDLED_REFERENCE[args.model]
    ref = read_fasta(bundled_path(ref_file))
    weights = [float(w) for w in args.weights.split(",")]
    acc = oracle.info.get("metrics", {}).get("valid_accuracy", float("nan"))
    print(f"{args.model}: {args.n} designs per class, {args.steps} steps, classifier-free guidance {args.cfg:g}; "
          f"oracle validation accuracy {acc:.3f}")
    print(f"{'class':12s} " + " ".join(f"{'w=' + format(w, 'g') + ' frac':>11s} {'3-mer JS':>9s}" for w in weights))
    totals = {w: [] for w in weights}
    t0 = time.time()
    for cls in run.classes:
        real = [r.seq for r in ref if r.meta.get(key) == cls]
        cells = []
        for w in weights:
            gen = seed_everything(args.seed)
            seqs = [s for s in design(run, args.n, steps=args.steps, class_name=cls, guidance=args.cfg,
                                      classifier_guidance=w, generator=gen).sequences if s is not None]
            frac = sum(p == cls for p in oracle.predict(seqs)) / len(seqs)
            totals[w].append(frac)
            cells.append(f"{frac:11.3f} {kmer_js(seqs, real, 3, run.alphabet.letters):9.4f}")
        print(f"{cls:12s} " + " ".join(cells), flush=True)
    print(f"{'mean':12s} " + " ".join(f"{sum(v) / len(v):11.3f} {'':9s}" for v in totals.values())
          + f"   ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
