"""Train the bundled oracle classifiers (CPU, a few minutes each) and print their validation accuracy.

    python bench/train_oracles.py [--only dhs4] [--epochs N] [--minutes 15] [--out src/ddsm/resources/oracles]

dhs4: 200 bp DHS sequences labelled by ``cell_type`` (4 cell types); strand-free, so training uses
random reverse complements and prediction averages both strands. epd_promoters: 300 bp TATA-box
promoters labelled by ``species`` (4 species), oriented around the TSS, so no strand flips.
Both read ../shared/data/<name>/{train,valid}.fasta and write <out>/<name>/{model.safetensors,
config.json}.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ddsm.data import read_fasta
from ddsm.metrics.oracle import OracleTrainConfig, train_oracle

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OUT = Path(__file__).resolve().parents[1] / "src" / "ddsm" / "resources" / "oracles"

SETS = {
    # epochs: what fits ~8 minutes on one CPU thread (dhs4 has 3x the data of epd_promoters)
    "dhs4": {"label_key": "cell_type", "rc_augment": True, "epochs": 4, "source": "shared/data/dhs4"},
    "epd_promoters": {"label_key": "species", "rc_augment": False, "epochs": 7,
                      "source": "shared/data/epd_promoters"},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=sorted(SETS), default=None)
    ap.add_argument("--epochs", type=int, default=None, help="default: 4 for dhs4, 7 for epd_promoters")
    ap.add_argument("--minutes", type=float, default=15.0, help="time limit per oracle (a safety stop)")
    ap.add_argument("--channels", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1 is fastest for this small net on a shared 2-core machine)")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval", action="store_true",
                    help="train the independent *evaluation* oracle instead: another architecture (kernel 9, "
                         "64 channels, pools 2 and 4), seed 1, and its own split of train.fasta (90/10 by seed 1; "
                         "valid.fasta unused), written to <out>/eval/<name>; it judges designs steered by the "
                         "bundled oracle (ddsm evaluate reports both)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, spec in SETS.items():
        if args.only and name != args.only:
            continue
        key = spec["label_key"]
        train = read_fasta(DATA / name / "train.fasta")
        valid = read_fasta(DATA / name / "valid.fasta")
        options = {"channels": args.channels}
        seed, out_dir = args.seed, Path(args.out) / name
        if args.eval:
            import numpy as np

            order = np.random.default_rng(1).permutation(len(train))
            cut = len(train) // 10
            train, valid = [train[i] for i in order[cut:]], [train[i] for i in order[:cut]]
            options = {"channels": 64, "kernel_size": 9, "pools": [2, 4]}
            seed, out_dir = 1, Path(args.out) / "eval" / name
        cfg = OracleTrainConfig(epochs=args.epochs or spec["epochs"], max_seconds=args.minutes * 60,
                                rc_augment=spec["rc_augment"], batch_size=args.batch_size, seed=seed)
        t0 = time.time()
        oracle = train_oracle(
            [r.seq for r in train], [r.meta[key] for r in train],
            [r.seq for r in valid], [r.meta[key] for r in valid],
            label_key=key, name=name + ("_eval" if args.eval else ""), model_options=options, config=cfg,
            on_epoch=lambda e, row: print(f"  {name} epoch {e}: loss {row['train_loss']:.4f} "
                                          f"valid acc {row['valid_accuracy']:.4f} ({row['seconds']:.0f} s)",
                                          flush=True),
        )
        oracle.info["data"] = ({"source": spec["source"], "train": "train.fasta", "valid": "valid.fasta"}
                               if not args.eval else
                               {"source": spec["source"], "train": "90% of train.fasta (permutation seed 1)",
                                "valid": "the other 10% of train.fasta"})
        folder = oracle.save(out_dir)
        size = sum(p.stat().st_size for p in folder.iterdir())
        m = oracle.info["metrics"]
        per = ", ".join(f"{c} {a:.3f}" for c, a in m["valid_accuracy_per_class"].items())
        print(f"{name}: valid accuracy {m['valid_accuracy']:.4f} ({per}); {len(train)} train / {len(valid)} "
              f"valid; {time.time() - t0:.0f} s; {size / 1e6:.2f} MB -> {folder}")


if __name__ == "__main__":
    main()
