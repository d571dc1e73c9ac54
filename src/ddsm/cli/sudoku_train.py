"""``ddsm sudoku train``: train a Sudoku denoiser on streamed grids through the one trainer.

The flags that mirror :class:`~ddsm.training.TrainConfig` fields are generated from the dataclass
with Sudoku's defaults (:data:`ddsm.sudoku.training.SUDOKU_TRAIN_DEFAULTS`); the recipe's flags
(pool, network sizes, training-time window) fill a :class:`~ddsm.sudoku.training.SudokuRecipe`.
With ``--resume`` the saved run's settings are the defaults and the flags given override them;
``--nproc N`` trains data-parallel through torchrun, as ``ddsm train`` does.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..errors import DDSMInputError
from ..training import TrainConfig
from .common import (
    add_dataclass_flags,
    check_out_folder,
    check_positive,
    check_seed,
    given_flags,
    merge_layers,
    run_training_command,
)

#: TrainConfig fields with a ``ddsm sudoku train`` flag -> help
TRAIN_FLAGS = {
    "steps": "optimiser steps (the cosine's length)",
    "batch_size": "grids per optimiser step, over all processes",
    "lr": "peak learning rate of AdamW",
    "warmup_steps": "linear warm-up steps",
    "ema_decay": "EMA decay of the saved weights",
    "minutes": "wall-clock limit of this invocation (0: none); a resumable checkpoint is saved when it passes",
    "checkpoint_minutes": "also save a resumable checkpoint every this many minutes (0: only at the end)",
    "grad_accum": "micro-batches per process and step; --batch-size stays the global batch",
    "seed": "seeds the grid pool, the weights, the noise and every other random generator",
    "compile": "torch.compile the network's forward (CPU or GPU; about 2.3x more grids per second on a "
               "2-core CPU after a first step that compiles)",
}


def add_parser(ssub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``ddsm sudoku train`` on the ``ddsm sudoku`` sub-parser collection."""
    from ..sudoku.training import SUDOKU_TRAIN_DEFAULTS, SudokuRecipe

    recipe = SudokuRecipe()
    t = ssub.add_parser("train", help="train a Sudoku denoiser on streamed random grids (resumable)")
    t.add_argument("--out", required=True, help="checkpoint folder to write")
    add_dataclass_flags(t, TrainConfig, TRAIN_FLAGS, default_note=", or the resumed run's",
                        defaults=SUDOKU_TRAIN_DEFAULTS)
    t.add_argument("--step-schedule", dest="step_schedule", action="store_true",
                   help="cosine over --steps only (a run carried over several invocations with --resume); "
                        "default: it also ends at --minutes")
    t.add_argument("--precision", default=None, choices=["auto", "bf16", "fp32"],
                   help="network forward precision in training (default auto: bf16 autocast where bf16 is native)")
    t.add_argument("--pool", type=int, default=None, help=f"distinct backtracking grids behind the stream "
                                                        f"(default {recipe.pool_size})")
    t.add_argument("--d-model", dest="d_model", type=int, default=None, help="features per (cell, digit) pair")
    t.add_argument("--layers", type=int, default=None, help="untied message-passing blocks")
    t.add_argument("--hidden", type=int, default=None, help="hidden width of each block")
    t.add_argument("--rounds", type=int, default=None,
                   help="runs of one weight-tied block (recurrent message passing; 0: none); with --init from a "
                        "network without them the tied block starts as the identity")
    t.add_argument("--tied-after", dest="tied_after", type=int, default=None,
                   help="the tied block runs after this many blocks (default: half)")
    t.add_argument("--focus-tau", dest="focus_tau", default=None, metavar="LO,HI",
                   help="native-time window that 80%% of training times come from (default 0.3,3.5)")
    t.add_argument("--init", default=None, help="warm-start from this Sudoku checkpoint folder (its weights; "
                                                "the network may be deeper or gain rounds)")
    t.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    t.add_argument("--force", action="store_true", help="replace an existing checkpoint in --out")
    t.add_argument("--nproc", type=int, default=1,
                   help="training processes on this machine (DistributedDataParallel through torchrun)")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda")
    t.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch (0: torch's default; 1 is often fastest for these small ops)")
    t.add_argument("--quiet", action="store_true", help="no progress lines")
    t.set_defaults(func=run)
    return t


def run(args: argparse.Namespace) -> int:
    """``ddsm sudoku train``."""
    return run_training_command(args, _train)


def _recipe(args: argparse.Namespace, saved: dict[str, Any]):
    """The recipe: SudokuRecipe defaults < saved run < flags."""
    from ..sudoku.training import SudokuRecipe

    base = SudokuRecipe()
    old = saved.get("recipe") or {}
    model = merge_layers(base.model, old.get("model"), {k: v for k, v in {
        "d_model": args.d_model, "n_layers": args.layers, "hidden": args.hidden}.items() if v is not None})
    if args.rounds is not None:
        model = {k: v for k, v in model.items() if k not in ("rounds", "tied_after")}
        if args.rounds > 0:
            model["rounds"] = args.rounds
    if args.tied_after is not None:
        model["tied_after"] = args.tied_after
    process = merge_layers(base.process, old.get("process"))
    if args.focus_tau is not None:
        try:
            lo, hi = (float(x) for x in args.focus_tau.split(","))
        except ValueError:
            raise DDSMInputError(f"--focus-tau must be LO,HI (two numbers), got {args.focus_tau!r}") from None
        process.update(focus_tau_min=lo, focus_tau_max=hi)
    pool = args.pool if args.pool is not None else int(old.get("pool_size", base.pool_size))
    check_positive(pool=pool)
    return SudokuRecipe(pool_size=pool, model=model, process=process)


def _train_config(args: argparse.Namespace, saved: dict[str, Any], device: torch.device) -> TrainConfig:
    """Sudoku's defaults < saved run < flags."""
    from ..sudoku.training import sudoku_train_config

    flags = given_flags(args, TrainConfig, TRAIN_FLAGS)
    if args.step_schedule:
        flags["clock_schedule"] = False
    if args.precision is not None:
        flags["bf16"] = args.precision == "bf16" or (args.precision == "auto" and
                                                     sudoku_train_config(device).bf16)
    try:
        return sudoku_train_config(device, **merge_layers(saved.get("train"), flags))
    except (TypeError, ValueError) as e:
        raise DDSMInputError(f"training config: {e}") from None


def _train(args: argparse.Namespace, ctx: Any) -> int:
    from ..checkpoint import load_config
    from ..seeding import seed_everything
    from ..sudoku.training import train_sudoku
    from ..training import recover_checkpoint

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise DDSMInputError(f"--out {out} exists and is not a folder")
    if args.resume and ctx.is_main:
        recover_checkpoint(out)
    if (out / "config.json").exists() and not (args.resume or args.force):
        raise DDSMInputError(f"{out} already holds a checkpoint; use --resume to continue or --force to replace it")
    if args.resume and not (out / "config.json").exists():
        raise DDSMInputError(f"--resume: {out} holds no checkpoint")
    if args.resume and args.init:
        raise DDSMInputError("--init starts a new run; drop it with --resume")
    check_out_folder(out)
    if args.seed is not None:
        check_seed(args.seed)
    if args.threads:
        check_positive(threads=args.threads)
        torch.set_num_threads(args.threads)
    saved = load_config(out) if args.resume else {}
    recipe, config = _recipe(args, saved), _train_config(args, saved, ctx.device)
    seed_everything(config.seed)  # only the CLI seeds the global generators
    t0 = time.time()

    def on_step(step: int, info: dict[str, Any]) -> None:
        if ctx.is_main and not args.quiet and (step % config.log_every == 0 or step == config.steps):
            print(f"step {step}/{config.steps}  loss {info['loss']:.4f}  lr {info['lr']:.3g}  "
                  f"{time.time() - t0:.0f} s", file=sys.stderr, flush=True)

    try:
        summary = train_sudoku(recipe, config, out, device=ctx.device, init_from=args.init, resume=args.resume,
                               on_step=on_step)
    except (TypeError, ValueError) as e:
        raise DDSMInputError(f"bad Sudoku network or process option: {e}") from None
    if ctx.is_main:
        print(f"trained the Sudoku denoiser to step {summary['step']} ({summary['step'] * config.batch_size} grids "
              f"this run and before) in {summary['seconds']:.0f} s in all; checkpoint in {out}")
    return 0
