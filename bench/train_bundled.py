"""Train the bundled class-conditional DDSM models (``src/ddsm/resources/models/<name>``).

    python bench/train_bundled.py --name dhs4 --minutes 6 --device cuda
    python bench/train_bundled.py --name epd_promoters --minutes 6 --device cuda

Equivalent CLI (what this script runs, with the step count fixed up front):

    ddsm train --data ../shared/data/dhs4/train.fasta --valid ../shared/data/dhs4/valid.fasta \
        --label-key cell_type --process jacobi --model conv --set-model hidden=128 \
        --set-model n_blocks=8 --batch-size 128 --steps N --out src/ddsm/resources/models/dhs4

The script sizes the run by wall-clock (a short timing probe, then N steps), trains with label
dropout 0.1 (so classifier-free guidance works), and writes the checkpoint folder with only the
EMA weights and config (the training state is dropped to keep the package small).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from ddsm.api import fit, resolve_model
from ddsm.data import encode_records, read_fasta
from ddsm.seeding import seed_everything
from ddsm.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SETS = {"dhs4": "cell_type", "epd_promoters": "species"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", choices=sorted(SETS), required=True)
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--out", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default=None, help="warm-start from this checkpoint folder or bundled model name")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-steps", type=int, default=0, help="cap on steps (0: only the time budget)")
    ap.add_argument("--data-dir", default=str(DATA), help="folder holding <name>/train.fasta and valid.fasta")
    args = ap.parse_args()
    data = Path(args.data_dir)
    key = SETS[args.name]
    out = Path(args.out or ROOT / "src" / "ddsm" / "resources" / "models" / args.name)
    device = torch.device(args.device)
    train_ds = encode_records(read_fasta(data / args.name / "train.fasta"), label_key=key)
    valid_ds = encode_records(read_fasta(data / args.name / "valid.fasta"), train_ds.alphabet, label_key=key,
                              classes=train_ds.classes)
    model_options = {"hidden": args.hidden, "n_blocks": args.blocks}
    seed_everything(args.seed)
    probe = TrainConfig(steps=8, batch_size=args.batch_size, warmup_steps=1, eval_every=0, checkpoint_every=0,
                        log_every=0, seed=args.seed)
    fit(train_ds.subset(range(4096)), None, model_options=model_options, train_config=probe, device=device)
    t0 = time.time()
    fit(train_ds.subset(range(4096)), None, model_options=model_options, train_config=probe, device=device)
    per_step = (time.time() - t0) / 8
    steps = max(100, int(args.minutes * 60 / per_step))
    if args.max_steps:
        steps = min(steps, args.max_steps)
    print(f"{args.name}: {len(train_ds)} train / {len(valid_ds)} valid, classes {train_ds.classes}; "
          f"{per_step:.3f} s/step on {device} -> {steps} steps", flush=True)
    cfg = TrainConfig(steps=steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=200, eval_every=max(steps // 8, 1),
                      eval_batches=8, checkpoint_every=max(steps // 4, 1), seed=args.seed, schedule="cosine",
                      ema_decay=0.999, label_dropout=0.1, log_every=max(steps // 20, 1))
    init = args.init
    if init and resolve_model(init).resolve() == out.resolve():  # we are about to replace it: copy first
        init = Path(tempfile.mkdtemp()) / args.name
        shutil.copytree(out, init)
    if out.exists():
        shutil.rmtree(out)
    t0 = time.time()
    run, summary = fit(train_ds, out, model_options=model_options, train_config=cfg, valid=valid_ds, device=device,
                       extra_meta={"data_path": f"../shared/data/{args.name}/train.fasta", "label_key": key,
                                   "command": "python bench/train_bundled.py " + " ".join(sys.argv[1:])},
                       init_from=init)
    print(f"trained {steps} steps in {time.time() - t0:.0f} s; final train {summary['final_train_loss']:.4f} "
          f"valid {summary['final_valid_loss']:.4f}", flush=True)
    for f in ("model_raw.safetensors", "optimizer.safetensors", "train_state.json"):
        (out / f).unlink(missing_ok=True)
    (out / "history.json").write_text(json.dumps(summary["history"], indent=1))
    print(f"wrote {out}: " + ", ".join(f"{p.name} {p.stat().st_size // 1024} KiB" for p in sorted(out.iterdir())))


if __name__ == "__main__":
    main()
