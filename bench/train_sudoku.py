"""Train the Sudoku denoiser on streamed random grids and write a checkpoint folder.

The same run as `ddsm sudoku train` (the recipe `ddsm.sudoku.training` through the one trainer) with
the flag names of the recorded runs below, plus a model-only validity check at the end.

This is the documented recipe behind the bundled model in ``src/ddsm/resources/sudoku``:

    # CPU, a few minutes (the bundled CPU model)
    python bench/train_sudoku.py --device cpu --minutes 10 --steps 100000 --out /tmp/sudoku_cpu
    # GPU (H100, bf16 autocast), about 8 minutes
    python bench/train_sudoku.py --device cuda --minutes 8 --steps 100000 --batch-size 256 \
        --d-model 96 --layers 8 --hidden 192 --lr 1e-3 --pool 20000 --out /tmp/sudoku_gpu

then copy ``model.safetensors`` and ``config.json`` of the output folder into
``src/ddsm/resources/sudoku/``. At the end it generates ``--eval`` grids and prints the fraction
that are valid (rows, columns and boxes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from ddsm.sudoku.board import is_valid_grid
from ddsm.sudoku.generate import generate_grids
from ddsm.sudoku.model_io import load_sudoku_model
from ddsm.sudoku.training import SudokuRecipe, sudoku_train_config, train_sudoku


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--steps", type=int, default=100000, help="optimiser steps (cosine schedule length)")
    p.add_argument("--minutes", type=float, default=10.0, help="wall-clock limit (0: none)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema", type=float, default=0.995, help="EMA decay of the saved weights")
    p.add_argument("--d-model", type=int, default=48)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--hidden", type=int, default=96)
    p.add_argument("--rounds", type=int, default=0,
                   help="runs of one weight-tied block (recurrent message passing; 0: none). With --init from a "
                        "network without them, the tied block starts as the identity")
    p.add_argument("--tied-after", type=int, default=None,
                   help="the tied block runs after this many blocks (default: half)")
    p.add_argument("--resume", action="store_true",
                   help="continue the resumable run in --out (same sizes) up to --steps")
    p.add_argument("--step-schedule", action="store_true",
                   help="cosine over --steps only (for runs carried across invocations with --resume); "
                        "default: it also ends at --minutes")
    p.add_argument("--pool", type=int, default=2000, help="distinct backtracking grids behind the stream")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", default=None, help="warm-start from this Sudoku checkpoint folder (same model sizes)")
    p.add_argument("--no-amp", action="store_true",
                   help="no bf16 autocast (default: on where bf16 is native: CUDA, CPUs with AMX)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (1 is fastest for these small ops on a shared 2-core machine)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network's forward (CPU and GPU; needs a C++ compiler on CPU)")
    p.add_argument("--checkpoint-minutes", type=float, default=2.0)
    p.add_argument("--focus-tau", default="0.3,3.5",
                   help="native-time window that 80%% of training times come from (bench/sudoku_loss.py shows "
                        "where the bundled model's loss is neither 0 nor log 9)")
    p.add_argument("--eval", type=int, default=256, help="grids to generate at the end (0: skip)")
    p.add_argument("--eval-steps", type=int, default=100)
    args = p.parse_args(argv)

    lo, hi = (float(x) for x in args.focus_tau.split(","))
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    elif args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    recipe = SudokuRecipe(
        pool_size=args.pool,
        model={"d_model": args.d_model, "n_layers": args.layers, "hidden": args.hidden,
               **({"rounds": args.rounds, "tied_after": args.tied_after} if args.rounds else {})},
        process={"focus": 0.8, "focus_tau_min": lo, "focus_tau_max": hi},
    )
    overrides = {} if not args.no_amp else {"bf16": False}
    cfg = sudoku_train_config(
        args.device, steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup,
        ema_decay=args.ema, minutes=args.minutes, seed=args.seed, checkpoint_minutes=args.checkpoint_minutes,
        compile=args.compile, clock_schedule=not args.step_schedule, **overrides,
    )
    t0 = time.time()

    def log(step: int, info: dict) -> None:
        if step % cfg.log_every == 0:
            print(json.dumps({"step": step, "loss": round(info["loss"], 5), "lr": info["lr"],
                              "seconds": round(time.time() - t0, 1)}), flush=True)

    result = train_sudoku(recipe, cfg, args.out, device=args.device, on_step=log, init_from=args.init,
                          resume=args.resume)
    print(f"trained {result['step']} steps in {result['seconds']:.0f} s "
          f"({result['step'] * args.batch_size} grids); checkpoint in {args.out}", flush=True)
    if args.eval > 0:
        sm = load_sudoku_model(args.out, device=args.device)
        t1 = time.time()
        grids = generate_grids(sm, args.eval, steps=args.eval_steps,
                               generator=torch.Generator().manual_seed(args.seed + 7))
        valid = is_valid_grid(grids).float().mean().item()
        rc = is_valid_grid(grids, check_boxes=False).float().mean().item()
        print(json.dumps({"eval_grids": args.eval, "steps": args.eval_steps, "valid": valid,
                          "valid_rows_cols_only": rc, "seconds_per_grid": (time.time() - t1) / args.eval}))
    print(f"total {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
