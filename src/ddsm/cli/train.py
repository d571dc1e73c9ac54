"""``ddsm train``: train a process + backbone on sequence files into a checkpoint folder.

Settings come from four layers, later ones winning (see :func:`ddsm.cli.merge_layers`):
dataclass default < the saved run (``--resume``) < the ``--config`` file < the command line
(flags for ``TrainConfig`` fields, ``--process``/``--model``, ``--set-process``/``--set-model``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import DDSMInputError
from ..processes import DEFAULT_PROCESS
from ..training import TrainConfig
from .common import (
    add_dataclass_flags,
    check_out_folder,
    check_positive,
    check_seed,
    given_flags,
    merge_layers,
    parse_json_file,
    run_training_command,
    set_options,
)

#: TrainConfig fields with a ``ddsm train`` flag (``--batch-size`` for batch_size) -> help text;
#: the default is appended from the dataclass.
TRAIN_FLAGS = {
    "steps": "optimiser steps",
    "batch_size": "sequences per optimiser step, over all processes",
    "lr": "peak learning rate of AdamW",
    "cooldown_steps": "fall linearly to lr 0 over the last N steps (warm-up, stable, decay); to extend such "
                      "a run later, resume a copy saved before its cooldown",
    "seed": "seeds every random generator",
    "checkpoint_every": "save a resumable checkpoint every N steps (also at the end and on SIGTERM/SIGINT)",
    "grad_accum": "micro-batches per process and step; --batch-size stays the global batch",
    "bf16": "bfloat16 autocast for the network (GPU)",
    "compile": "torch.compile the network's forward (CPU or GPU; pays for long runs; eager with a warning if it fails)",
}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``ddsm train``."""
    t = sub.add_parser("train", help="train a model on a FASTA/TSV file")
    t.add_argument("--data", required=True, nargs="+", metavar="[LABEL=]PATH",
                   help="FASTA (optionally gzipped) or TSV/CSV with a sequence column; several files as "
                        "LABEL=PATH (strong=strong.fa weak=weak.fa) label every record by its file")
    t.add_argument("--sequence-column", default="sequence", help="TSV/CSV column holding the sequences")
    t.add_argument("--out", required=True, help="checkpoint folder")
    t.add_argument("--process", default=None,
                   help=f"corruption process (see 'ddsm list processes'); default {DEFAULT_PROCESS}")
    t.add_argument("--model", default=None, help="backbone: conv | transformer | mlp; default conv")
    add_dataclass_flags(t, TrainConfig, TRAIN_FLAGS, default_note=", or the resumed run's")
    t.add_argument("--config", default=None, help="JSON file with 'process', 'model', 'train' sections")
    t.add_argument("--set-process", dest="process_set", action="append", default=[], metavar="KEY=VALUE",
                   help="process option (JSON value), repeatable; 'ddsm list processes' shows them")
    t.add_argument("--set-model", dest="model_set", action="append", default=[], metavar="KEY=VALUE",
                   help="backbone option (JSON value), repeatable, e.g. hidden=128")
    t.add_argument("--valid", default=None, nargs="+", metavar="[LABEL=]PATH",
                   help="validation file(s), labelled like --data (default: a random --valid-fraction of --data)")
    t.add_argument("--valid-fraction", dest="valid_fraction", type=float, default=0.05,
                   help="share of --data held out for validation when --valid is not given (0: none)")
    t.add_argument("--length", type=int, default=None,
                   help="crop/pad sequences to this length (the maximum length with --variable-length)")
    t.add_argument("--variable-length", dest="variable_length", action="store_true",
                   help="model the lengths: sequences end with a learned end-of-sequence letter, so designs "
                        "follow the training length distribution (padding to --length, default the longest)")
    t.add_argument("--label-key", dest="label_key", default=None,
                   help="header key holding class labels, e.g. cell_type")
    t.add_argument("--alphabet", default=None,
                   help="dna | rna | protein | custom (every distinct letter of the data) | "
                        "custom:LETTERS (token order); "
                        "default: inferred among dna, rna, protein (said on stderr)")
    t.add_argument("--unknown", default="error", choices=["error", "random", "skip"],
                   help="letters outside the alphabet (e.g. N)")
    t.add_argument("--track", default=None, metavar="FILE.npy",
                   help="per-position signal track(s), NumPy (N, L) or (N, L, S), one row per --data record "
                        "(in file order); the model is conditioned on it and sampling then needs one")
    t.add_argument("--valid-track", dest="valid_track", default=None, metavar="FILE.npy",
                   help="the track of the --valid file")
    t.add_argument("--track-transform", dest="track_transform", default=None, choices=["none", "log1p"],
                   help="transform applied to raw track values (recorded; sampling applies it too); default none")
    t.add_argument("--track-names", dest="track_names", default=None, metavar="NAME[,NAME...]",
                   help="names of the S track channels (recorded in the checkpoint)")
    t.add_argument("--nproc", type=int, default=1,
                   help="training processes on this machine (DistributedDataParallel through torchrun)")
    t.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    t.add_argument("--force", action="store_true", help="replace an existing checkpoint in --out")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=run)
    return t


def run(args: argparse.Namespace) -> int:
    """``ddsm train``: re-launch through torchrun for ``--nproc N``, else train in this process."""
    return run_training_command(args, _train)


@dataclass
class Choice:
    """The process and backbone chosen for a run, with their options."""

    process: str
    process_options: dict[str, Any]
    model: str
    model_options: dict[str, Any]


def _train(args: argparse.Namespace, ctx: Any) -> int:
    """Check every input (one error line on the first bad one), then train and report."""
    from ..checkpoint import load_config
    from ..seeding import seed_everything
    from .train_data import check_buildable, load_training_data, print_notes, resolve_alphabet

    cfg = parse_json_file(args.config)
    out = Path(args.out)
    _prepare_out(args, out, ctx)
    if args.seed is not None:
        check_seed(args.seed)
    # --resume: the saved run's settings are the defaults; --config and the command line override them.
    saved = load_config(out) if args.resume else {}
    if args.label_key is None and saved.get("label_key"):
        args.label_key = saved["label_key"]
    tc = train_config(args, cfg, saved)
    seed_everything(tc.seed)  # only the CLI seeds the global generators (third-party code draws from them)
    choice = choose_process_and_model(args, cfg, saved)
    alphabet, classes = resolve_alphabet(args, saved)
    ds, valid, notes, tracks = load_training_data(args, saved, alphabet, classes, tc)
    check_buildable(args, choice, ds, tracks)
    if ctx.is_main:
        print_notes(notes, args.quiet)
    return _fit_and_report(args, ctx, out, choice, tc, ds, valid, tracks)


def _prepare_out(args: argparse.Namespace, out: Path, ctx: Any) -> None:
    """``--out``: a folder; an existing checkpoint needs --resume or --force; --resume needs one."""
    from ..distributed import barrier
    from ..training import recover_checkpoint

    if out.exists() and not out.is_dir():
        raise DDSMInputError(f"--out {out} exists and is not a folder")
    if not ctx.is_main:
        logging.getLogger().setLevel(logging.ERROR)  # rank 0 reports for everyone
    if args.resume and ctx.is_main:
        recover_checkpoint(out)  # a crash in the middle of a checkpoint save
    barrier()
    if (out / "config.json").exists() and not (args.resume or args.force):
        raise DDSMInputError(f"{out} already holds a checkpoint; use --resume to continue or --force to replace it")
    if args.resume and not (out / "config.json").exists():
        raise DDSMInputError(f"--resume: {out} holds no checkpoint")
    check_out_folder(out)


def train_config(args: argparse.Namespace, cfg: dict[str, Any], saved: dict[str, Any]) -> TrainConfig:
    """The run's TrainConfig: dataclass default < saved run < --config 'train' < flags."""
    layers = merge_layers(saved.get("train"), cfg.get("train"),
                                 given_flags(args, TrainConfig, TRAIN_FLAGS))
    try:
        tc = TrainConfig.from_dict(layers)
    except (TypeError, ValueError) as e:
        raise DDSMInputError(f"training config: {e}") from None
    check_positive(steps=tc.steps)
    return tc


def choose_process_and_model(args: argparse.Namespace, cfg: dict[str, Any], saved: dict[str, Any]) -> Choice:
    """Names: flag > --config > saved run > default; options: saved run (same name only, minus
    what the data imply) < --config < --set-process / --set-model."""
    from ..models import MODELS
    from ..processes import PROCESSES

    saved_proc, saved_model = saved.get("process") or {}, saved.get("model") or {}
    proc_name = args.process or cfg.get("process", {}).get("name") or saved_proc.get("name") or DEFAULT_PROCESS
    proc_saved = ({k: v for k, v in PROCESSES[proc_name].upgrade_options(saved_proc.get("options", {})).items()
                   if k != "K"} if proc_name == saved_proc.get("name") and proc_name in PROCESSES else {})
    proc_options = merge_layers(proc_saved, cfg.get("process", {}).get("options", {}),
                                       set_options(args.process_set))
    default_model = "transformer" if (proc_name in PROCESSES and PROCESSES[proc_name].causal) else "conv"
    model_name = args.model or cfg.get("model", {}).get("name") or saved_model.get("name") or default_model
    model_saved = ({k: v for k, v in saved_model.get("options", {}).items()
                    if k not in ("in_channels", "out_channels", "n_classes")}
                   if model_name == saved_model.get("name") else {})
    model_options = merge_layers(model_saved, cfg.get("model", {}).get("options", {}),
                                        set_options(args.model_set))
    if proc_name not in PROCESSES:
        raise DDSMInputError(f"unknown process {proc_name!r}; known: {', '.join(sorted(PROCESSES))}")
    if model_name not in MODELS:
        raise DDSMInputError(f"unknown model {model_name!r}; known: {', '.join(sorted(MODELS))}")
    return Choice(proc_name, proc_options, model_name, model_options)


def _fit_and_report(args: argparse.Namespace, ctx: Any, out: Path, choice: Choice, tc: TrainConfig,
                    ds: Any, valid: Any, tracks: Any) -> int:
    """Train with a progress bar (rank 0), write history.json and print the one-line summary."""
    from ..api import fit

    bar = None
    if not args.quiet and ctx.is_main:
        from tqdm import tqdm

        bar = tqdm(total=tc.steps, desc="train", dynamic_ncols=True, file=sys.stderr)

    def on_step(step: int, info: dict[str, Any]) -> None:
        if bar is not None:
            bar.n = step
            post = {"loss": f"{info['loss']:.4f}"}
            if "valid_loss" in info:
                post["valid"] = f"{info['valid_loss']:.4f}"
            bar.set_postfix(post, refresh=False)
            bar.refresh()

    t0 = time.time()
    try:
        _, summary = fit(ds, out, process=choice.process, process_options=choice.process_options,
                         model=choice.model, model_options=choice.model_options, train_config=tc, valid=valid,
                         resume=args.resume, device=ctx.device, on_step=on_step, track_transform=tracks.transform,
                         track_names=tracks.names,
                         extra_meta={"data_path": " ".join(args.data), "label_key": args.label_key,
                                     "command": " ".join(["ddsm", *args.argv]),
                                     **({"track_path": str(args.track)} if args.track else {})})
    except TypeError as e:
        raise DDSMInputError(f"bad process/model option: {e}") from None
    finally:
        if bar is not None:
            bar.close()
    if not ctx.is_main:
        return 0
    (out / "history.json").write_text(json.dumps(summary.get("history", []), indent=1))
    vl: Optional[float] = summary.get("final_valid_loss")
    print(f"trained {choice.process}/{choice.model} for {summary['step']} steps in {time.time() - t0:.0f} s; "
          f"final train loss {summary.get('final_train_loss', float('nan')):.4f}"
          + (f", valid loss {vl:.4f}" if vl is not None else "") + f"; checkpoint in {out}")
    return 0
