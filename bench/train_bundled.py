"""Long, resumable training of the bundled class-conditional DDSM models, on a CPU or a GPU.

    # start (or continue: the same command with --resume) in the background, one core:
    nohup python bench/train_bundled.py --name dhs4 --out runs/dhs4 --steps 40000 --threads 1 \
        > runs/dhs4.log 2>&1 &
    nohup python bench/train_bundled.py --name dhs4 --out runs/dhs4 --steps 40000 --threads 1 --resume \
        >> runs/dhs4.log 2>&1 &

What it runs is ``ddsm train`` with these settings (the CLI equivalent, minus the snapshots):

    ddsm train --data ../shared/data/dhs4/train.fasta --valid ../shared/data/dhs4/valid.fasta \
        --label-key cell_type --process jacobi --model conv --set-model hidden=128 \
        --set-model n_blocks=8 --batch-size 64 --lr 1e-3 --steps N --out runs/dhs4

- Learning rate: linear warm-up, then constant (``schedule="constant"``), so a run can be extended
  to any number of steps by resuming with a larger ``--steps``; EMA weights (decay 0.999) are what
  is evaluated and shipped. To finish, copy the run folder (the copy stays extendable) and resume
  it with ``--steps S+N --cooldown N``: the rate falls linearly to 0 over those last N steps
  (warm-up, stable, decay).
- The checkpoint (EMA weights, optimiser, data order, RNG state) is written every
  ``--checkpoint-every`` steps; SIGTERM/SIGINT write one before exiting. ``--resume`` continues
  bit-for-bit from it.
- Every ``--snapshot-every`` steps the EMA weights and config are copied to
  ``OUT/snapshots/step_NNNNNN`` for model selection by design quality (``bench/select_bundled.py``),
  since the best snapshot by the oracle need not be the last or the lowest-loss one.
- The validation loss (cross-entropy on x0 over the validation split) is recorded every
  ``--eval-every`` steps in the checkpoint's history and, after each snapshot, in ``OUT/curve.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

from ddsm.api import fit
from ddsm.data import encode_records, read_fasta
from ddsm.seeding import seed_everything
from ddsm.training import TrainConfig, TrainingInterrupted

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SETS = {"dhs4": "cell_type", "epd_promoters": "species"}


def main() -> None:
    ap = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--name", choices=sorted(SETS), required=True)
    ap.add_argument("--out", required=True, help="run folder (checkpoint, snapshots, curve)")
    ap.add_argument("--steps", type=int, default=40000, help="total optimiser steps (raise it and --resume to extend)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--cooldown", type=int, default=0,
                    help="fall linearly to lr 0 over the last N of --steps (resume a pre-cooldown copy of the run "
                         "with a larger --steps to extend it again)")
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--checkpoint-every", type=int, default=250)
    ap.add_argument("--snapshot-every", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bf16", action="store_true", help="network forward under bf16 autocast (fp32 weights)")
    ap.add_argument("--process", default="jacobi",
                    help="any registered process (the bundled models are jacobi; others for per-process benches)")
    ap.add_argument("--model", default="conv", help="backbone (autoregressive needs a causal one: transformer)")
    ap.add_argument("--process-set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="process options, e.g. output=score (JSON values)")
    ap.add_argument("--model-set", nargs="*", default=None, metavar="KEY=VALUE",
                    help="backbone options replacing --hidden/--blocks (JSON values), e.g. d_model=128 n_layers=4 "
                         "causal=true for the transformer")
    ap.add_argument("--minutes", type=float, default=0.0,
                    help="wall-clock limit of this invocation (0: none); the checkpoint is written when it passes, "
                         "so equal-time runs of several processes can be compared and resumed")
    ap.add_argument("--data-dir", default=str(DATA), help="folder holding <name>/train.fasta and valid.fasta")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data, key, out = Path(args.data_dir), SETS[args.name], Path(args.out)
    train_ds = encode_records(read_fasta(data / args.name / "train.fasta"), label_key=key)
    valid_ds = encode_records(read_fasta(data / args.name / "valid.fasta"), train_ds.alphabet, label_key=key,
                              classes=train_ds.classes)
    process_options = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.process_set)}
    model_options = ({"hidden": args.hidden, "n_blocks": args.blocks} if args.model_set is None
                     else {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.model_set)})
    seed_everything(args.seed)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup,
                      eval_every=args.eval_every, eval_batches=8, checkpoint_every=args.checkpoint_every,
                      seed=args.seed, schedule="constant", cooldown_steps=args.cooldown, ema_decay=args.ema,
                      label_dropout=0.1, log_every=50, bf16=args.bf16, minutes=args.minutes)
    snaps = out / "snapshots"
    t0 = time.time()

    def on_step(step: int, info: dict) -> None:
        if step % args.snapshot_every and step != args.steps:
            return
        # the checkpoint of this step is on disk (checkpoint_every divides snapshot_every)
        dest = snaps / f"step_{step:06d}"
        dest.mkdir(parents=True, exist_ok=True)
        for f in ("model.safetensors", "config.json"):
            shutil.copy2(out / f, dest / f)
        hist = json.loads((out / "train_state.json").read_text())["state"]["history"]
        (out / "curve.json").write_text(json.dumps(hist, indent=0))
        print(f"step {step}: snapshot {dest} ({time.time() - t0:.0f} s this session)", flush=True)

    if args.snapshot_every % args.checkpoint_every:
        raise SystemExit("--snapshot-every must be a multiple of --checkpoint-every")
    print(f"{args.name}: {len(train_ds)} train / {len(valid_ds)} valid, classes {train_ds.classes}; "
          f"{'resuming' if args.resume else 'starting'} towards step {args.steps} on {args.device} "
          f"({torch.get_num_threads()} threads)", flush=True)
    try:
        _, summary = fit(train_ds, out, process=args.process, process_options=process_options, model=args.model,
                         model_options=model_options, train_config=cfg,
                         valid=valid_ds, device=torch.device(args.device), resume=args.resume, on_step=on_step,
                         extra_meta={"data_path": f"../shared/data/{args.name}/train.fasta", "label_key": key,
                                     "command": "python bench/train_bundled.py " + " ".join(sys.argv[1:])})
    except TrainingInterrupted as e:  # SIGTERM / SIGINT: the checkpoint is on disk
        print(f"{e}", flush=True)
        return
    print(f"done: step {summary['step']}, {summary['seconds']:.0f} s in all; final train "
          f"{summary['final_train_loss']:.4f} valid {summary['final_valid_loss']:.4f}", flush=True)


if __name__ == "__main__":
    main()
