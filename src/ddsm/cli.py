"""``ddsm`` command line: train, sample, score, evaluate, demo, list (``ddsm sudoku`` lives in ``ddsm.sudoku.cli``).

Bad input never produces a traceback: every rejection is one line ``ddsm: error: ...`` on stderr
and exit code 2; outputs are written to a temporary name and renamed when complete, and an
existing output is only replaced with ``--force``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from .errors import DDSMInputError

logger = logging.getLogger("ddsm")


# ---------------------------------------------------------------------------- helpers
def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DDSMInputError("--device cuda requested but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise DDSMInputError(f"--device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


def _progress(desc: str, quiet: bool):
    """A tqdm wrapper for iterables (stderr), or the identity when quiet."""
    if quiet:
        return lambda it: it
    from tqdm import tqdm

    return lambda it: tqdm(it, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)


def _check_output(path: Path, force: bool, label: str = "") -> None:
    from .data.io import check_output

    check_output(path, force, label)


def _check_out_folder(out: Path) -> None:
    """Refuse before training when the checkpoint folder could not be created or written."""
    import os

    base = out
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise DDSMInputError(f"cannot create --out {out}: {base} is not a folder")
    if not os.access(base, os.W_OK):
        raise DDSMInputError(f"cannot create --out {out}: {base} is not writable")


def _check_seed(seed: int) -> None:
    if not 0 <= seed < 2**63:
        raise DDSMInputError(f"--seed must be in [0, 2**63), got {seed}")


def _check_positive(**values: Any) -> None:
    """``--name`` values that must be at least 1 (keyword names use _ for -; None = not given)."""
    for name, value in values.items():
        if value is not None and value < 1:
            raise DDSMInputError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def _load_dataset(path: "str | list[str]", *, alphabet=None, length=None, label_key=None, classes=None,
                  unknown="error", seed=0, track: Optional[str] = None, sequence_column: str = "sequence",
                  notes: Optional[list[str]] = None, hints: Optional[dict[str, str]] = None,
                  meta_out: Optional[dict[str, dict[str, str]]] = None, variable_length: bool = False,
                  max_length: Optional[int] = None):
    """Encode sequence files (``PATH`` or ``LABEL=PATH`` entries, see ``read_labelled``);
    ``track``: a ``.npy`` file with one row per record (attached as ``dataset.track``, rows of
    skipped records dropped with them). ``notes`` collects what was inferred (printed once the
    command's inputs have all been checked, so that a bad input still gets a single error line)."""
    from .data import encode_records, read_labelled, read_track

    records, label_key = read_labelled(path, label_key=label_key, sequence_column=sequence_column)
    path = " ".join(path) if isinstance(path, list) else path
    if max_length is not None:
        long = next((r for r in records if len(r.seq) > max_length), None)
        if long is not None:
            raise DDSMInputError(f"{path}: record {long.id!r} has {len(long.seq)} letters, more than the model's "
                                 f"maximum length {max_length}", remedy="length",
                                 hint="pass --crop to centre-crop such records").with_hint(hints or {})
    if meta_out is not None:  # id -> header annotations, for outputs that carry them on
        meta_out.update((r.id, r.meta) for r in records)
    tracks = read_track(track) if track else None
    if alphabet is None or isinstance(alphabet, str):  # infer (None, "auto") or "custom" from the data
        from .data import describe_inference, get_alphabet

        seqs = [r.seq for r in records]
        spec = alphabet or "auto"
        alphabet = get_alphabet(spec, seqs)
        if spec.strip().lower() == "auto" and notes is not None:
            notes.append(f"ddsm: {path}: {describe_inference(alphabet, seqs)}")
    try:
        return encode_records(records, alphabet, length=length, label_key=label_key, classes=classes,
                              unknown=unknown, rng=np.random.default_rng(seed), track=tracks,
                              variable_length=variable_length)
    except DDSMInputError as e:  # hints name this command's flags
        raise e.with_hint(hints or {}) from None


def _parse_json_file(path: Optional[str]) -> dict[str, Any]:
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise DDSMInputError(f"config file {p} not found")
    try:
        cfg = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DDSMInputError(f"config file {p} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise DDSMInputError(f"config file {p} must hold a JSON object")
    for section, value in cfg.items():
        if not isinstance(value, dict):
            raise DDSMInputError(f"config file {p}: {section!r} must be a JSON object")
        if not isinstance(value.get("options", {}), dict):
            raise DDSMInputError(f"config file {p}: {section}.options must be a JSON object")
    unknown = set(cfg) - {"process", "model", "train"}
    if unknown:
        raise DDSMInputError(f"config file {p}: unknown keys {sorted(unknown)} (allowed: process, model, train)")
    return cfg


def _set_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``--set key=value`` (value parsed as JSON when possible) -> dict."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise DDSMInputError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


# ---------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> int:
    from .distributed import init_from_env, launch_torchrun, shutdown

    _check_positive(nproc=args.nproc)
    if args.nproc > 1:
        return launch_torchrun(args.argv, args.nproc)
    ctx = init_from_env(_device(args.device))
    try:
        return _train(args, ctx)
    finally:
        shutdown()


def _guidance_interval(text: Optional[str], defaults: dict) -> Optional[tuple[float, float]]:
    """``--guidance-interval LO,HI`` (or the model's recorded default) as floats; None = every step."""
    from .guidance.cfg import check_interval

    if text is None:
        rec = defaults.get("guidance_interval")
        value = None if rec is None else (float(rec[0]), float(rec[1]))
    else:
        try:
            lo, hi = (float(v) for v in text.split(","))
        except ValueError:
            raise DDSMInputError(f"--guidance-interval expects LO,HI, e.g. 0,0.6, got {text!r}") from None
        value = (lo, hi)
    if value is None:
        return None
    try:
        lo, hi = check_interval(value)
    except ValueError as e:
        raise DDSMInputError(f"--guidance-interval: {e}") from None
    return None if (lo <= 0.0 and hi >= 1.0) else (lo, hi)


def _train(args: argparse.Namespace, ctx) -> int:
    from .api import fit
    from .distributed import barrier
    from .training import recover_checkpoint
    from .checkpoint import load_config
    from .seeding import seed_everything
    from .training import TrainConfig

    cfg = _parse_json_file(args.config)
    out = Path(args.out)
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
    _check_out_folder(out)
    if args.seed is not None:
        _check_seed(args.seed)
    # --resume: the saved run's settings are the defaults; --config and the command line override them.
    saved = load_config(out) if args.resume else {}
    saved_proc, saved_model = saved.get("process") or {}, saved.get("model") or {}
    if args.label_key is None and saved.get("label_key"):
        args.label_key = saved["label_key"]
    train_cfg = dict(saved.get("train") or {})
    train_cfg.update(cfg.get("train", {}))
    for key in ("steps", "batch_size", "lr", "seed"):
        val = getattr(args, key)
        if val is not None:
            train_cfg[key] = val
    train_cfg.setdefault("seed", 0)
    if args.checkpoint_every is not None:
        train_cfg["checkpoint_every"] = args.checkpoint_every
    for key in ("grad_accum", "bf16", "compile", "cooldown_steps"):
        if getattr(args, key) is not None:
            train_cfg[key] = getattr(args, key)
    try:
        tc = TrainConfig.from_dict(train_cfg)
    except (TypeError, ValueError) as e:
        raise DDSMInputError(f"training config: {e}") from None
    _check_positive(steps=tc.steps)
    seed_everything(tc.seed)
    process_name = args.process or cfg.get("process", {}).get("name") or saved_proc.get("name") or "jacobi"
    from .processes import PROCESSES as _P

    process_options = ({k: v for k, v in _P[process_name].upgrade_options(saved_proc.get("options", {})).items()
                        if k != "K"} if process_name == saved_proc.get("name") and process_name in _P else {})
    process_options.update(cfg.get("process", {}).get("options", {}))
    process_options.update(_set_options(args.process_set))

    default_model = "transformer" if (process_name in _P and _P[process_name].causal) else "conv"
    model_name = args.model or cfg.get("model", {}).get("name") or saved_model.get("name") or default_model
    model_options = ({k: v for k, v in saved_model.get("options", {}).items()
                      if k not in ("in_channels", "out_channels", "n_classes")}
                     if model_name == saved_model.get("name") else {})
    model_options.update(cfg.get("model", {}).get("options", {}))
    model_options.update(_set_options(args.model_set))
    from .models import MODELS
    from .processes import PROCESSES

    if process_name not in PROCESSES:
        raise DDSMInputError(f"unknown process {process_name!r}; known: {', '.join(sorted(PROCESSES))}")
    if model_name not in MODELS:
        raise DDSMInputError(f"unknown model {model_name!r}; known: {', '.join(sorted(MODELS))}")

    alphabet = None
    classes = None
    if args.resume:
        saved = load_config(out)
        from .data import Alphabet

        alphabet = Alphabet.from_config(saved["alphabet"])
        classes = saved.get("classes") or None
        if args.variable_length and not alphabet.end:
            raise DDSMInputError("--variable-length: the run in --out was trained at a fixed length; start a new run")
    elif args.alphabet and args.alphabet.strip().lower() in ("auto", "custom"):
        alphabet = args.alphabet  # resolved from the training letters in _load_dataset
    elif args.alphabet:
        from .data import get_alphabet

        alphabet = get_alphabet(args.alphabet)
    if args.valid_track and not args.track:
        raise DDSMInputError("--valid-track needs --track")
    if args.valid_track and not args.valid:
        raise DDSMInputError("--valid-track needs --valid (the file it is aligned with)")
    if args.track and args.valid and not args.valid_track:
        raise DDSMInputError("--valid with --track needs --valid-track (one track row per validation record)")
    if (args.track_transform or args.track_names) and not args.track:
        raise DDSMInputError("--track-transform and --track-names need --track")
    saved_track = saved.get("track") or {}
    track_transform = args.track_transform or saved_track.get("transform") or "none"
    track_names = ([n for n in args.track_names.split(",")] if args.track_names
                   else saved_track.get("names"))
    from .data import labelled_specs

    if args.label_key is None and labelled_specs(args.data):
        args.label_key = "class"  # LABEL=PATH entries: the label is stored under "class"
    notes: list[str] = []
    ds = _load_dataset(args.data, alphabet=alphabet, length=args.length, label_key=args.label_key,
                       classes=classes, unknown=args.unknown, seed=tc.seed, track=args.track,
                       sequence_column=args.sequence_column, notes=notes, variable_length=args.variable_length,
                       hints={"length": "pass --length N to crop/pad them, or --variable-length to model the lengths"})
    valid = None
    if args.valid:
        valid = _load_dataset(args.valid, alphabet=ds.alphabet, length=ds.length, label_key=args.label_key,
                              classes=ds.classes if args.label_key else None, unknown=args.unknown, seed=tc.seed,
                              track=args.valid_track, sequence_column=args.sequence_column)
    elif args.valid_fraction > 0 and len(ds) >= 20:
        from .data import split

        ds, valid = split(ds, args.valid_fraction, seed=tc.seed)
    # Build the process and network once so that a bad option is reported before any training.
    from .api import build_network
    from .conditioning import TrackSpec
    from .processes import build_process

    n_track = 0
    if ds.track is not None:
        n_track = ds.track.shape[-1]
        spec = TrackSpec.for_width(n_track, track_names, track_transform)  # bad names / transform: now
        spec.apply(ds.track, f"track file {args.track}")
    try:
        build_network(build_process(process_name, ds.alphabet.K, **process_options), model_name,
                      len(ds.classes) if ds.labels is not None else 0, model_options, n_track=n_track)
    except (TypeError, ValueError) as e:
        raise DDSMInputError(f"bad process/model option: {e}") from None
    if ctx.is_main:
        for line in notes:  # --quiet keeps only notes about letters outside the inferred alphabet
            if not args.quiet or "handled by --unknown" in line:
                print(line, file=sys.stderr)
    device = ctx.device
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
        run, summary = fit(ds, out, process=process_name, process_options=process_options, model=model_name,
                           model_options=model_options, train_config=tc, valid=valid, resume=args.resume,
                           device=device, on_step=on_step, track_transform=track_transform,
                           track_names=track_names,
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
    hist = summary.get("history", [])
    (out / "history.json").write_text(json.dumps(hist, indent=1))
    vl = summary.get("final_valid_loss")
    print(f"trained {process_name}/{model_name} for {summary['step']} steps in {time.time() - t0:.0f} s; "
          f"final train loss {summary.get('final_train_loss', float('nan')):.4f}"
          + (f", valid loss {vl:.4f}" if vl is not None else "") + f"; checkpoint in {out}")
    return 0


def _sidecar_path(out: Path) -> Path:
    """Where an output's provenance JSON goes: ``designs.fasta`` -> ``designs.fasta.json``."""
    return out.with_name(out.name + ".json")


def _file_sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _model_provenance(run, given: str) -> dict[str, Any]:
    """What a sidecar records of the model: as given, its folder, the weights' SHA-256, the process,
    the alphabet and the length."""
    model_file = run.path / "model.safetensors" if run.path else None
    return {"given": str(given), "path": str(run.path.resolve()) if run.path else None,
            "sha256": _file_sha256(model_file) if model_file and model_file.is_file() else None,
            "process": run.process.name, "alphabet": run.alphabet.to_config(), "length": run.seq_len}


def _sample_classes(spec: Optional[str], classes: list[str]) -> list[Optional[str]]:
    """``--class``: None (unconditional), ``NAME``, ``A,B`` or ``all`` (n designs per class)."""
    if spec is None:
        return [None]
    if spec == "all":
        if not classes:
            raise DDSMInputError("--class all needs a class-conditional model; this one has no classes")
        return list(classes)
    names = [c.strip() for c in spec.split(",")]
    if any(not c for c in names) or len(set(names)) != len(names):
        raise DDSMInputError(f"--class {spec!r}: give NAME, A,B (distinct names) or all")
    return names


def cmd_sample(args: argparse.Namespace) -> int:
    from .api import design, load_run
    from .checkpoint import ddsm_version
    from .constraints import parse_fixed
    from .data import Record, write_fasta
    from .data.io import atomic_write_text
    from .seeding import seed_everything

    out = Path(args.output)
    _check_output(out, args.force)
    sidecar = _sidecar_path(out)
    _check_output(sidecar, args.force, "provenance sidecar")
    if args.n < 1:
        raise DDSMInputError("-n must be at least 1")
    _check_positive(steps=args.steps, batch_size=args.batch_size)
    _check_seed(args.seed)
    if not (math.isfinite(args.time_dilation) and args.time_dilation >= 1):
        raise DDSMInputError("--time-dilation must be a finite number >= 1")
    if not 0 <= args.dilation_after <= 1:
        raise DDSMInputError("--dilation-after must be in [0, 1]")
    device = _device(args.device)
    run = load_run(args.model, device=device)
    classes = _sample_classes(args.class_name, list(run.classes))
    defaults = run.sampling_defaults
    if args.classifier_guidance is None:  # the model's recorded default with --class (bundled: chosen on valid)
        args.classifier_guidance = (float(defaults.get("classifier_guidance", 0.0))
                                    if args.class_name is not None and not args.classifier else 0.0)
    if run.classes or not (args.classifier_guidance or args.classifier):  # else --class names the classifier's target
        for c in classes:
            run.class_index(c)  # an unknown name lists the valid ones
    if args.steps is None:
        args.steps = int(defaults.get("steps", 100))
    if args.guidance is None:
        args.guidance = float(defaults.get("guidance", 0.0)) if args.class_name is not None else 0.0
    interval = _guidance_interval(args.guidance_interval, defaults)
    name = args.name or out.name.split(".")[0]
    if not name or any(ch.isspace() for ch in name):
        raise DDSMInputError(f"--name {name!r}: design ids need a name without whitespace")
    gen = seed_everything(args.seed)
    fixed = parse_fixed(args.fixed, run.alphabet, run.seq_len) if args.fixed else None
    if args.time_dilation > 1 and not run.process.supports_dilation:
        raise DDSMInputError(f"process {run.process.name!r} does not support --time-dilation")
    if args.guidance < 0 or not math.isfinite(args.guidance):
        raise DDSMInputError("--guidance must be a finite number >= 0")
    if args.classifier_guidance < 0 or not math.isfinite(args.classifier_guidance):
        raise DDSMInputError("--classifier-guidance must be a finite number >= 0")
    if args.classifier and args.classifier_guidance == 0:
        raise DDSMInputError("--classifier needs --classifier-guidance W > 0")
    track = None
    if args.track:
        from .data import read_track

        track = read_track(args.track)
    gc = None
    if args.gc:
        from .constraints import GCWindow

        if not run.alphabet.has_gc:
            raise DDSMInputError(f"--gc needs a DNA or RNA model; this model's alphabet is {run.alphabet.name}")
        w = GCWindow.parse(args.gc)
        gc = (w.lo, w.hi)
    length_range = None
    if args.length_range or args.design_length:
        if args.length_range and args.design_length:
            raise DDSMInputError("give --length-range or --design-length, not both")
        if not run.alphabet.end:
            raise DDSMInputError("--length-range / --design-length need a variable-length model "
                                 "(ddsm train --variable-length); this one generates length "
                                 f"{run.seq_len} only")
        if args.design_length:
            length_range = (args.design_length, args.design_length)
        else:
            try:
                lo_s, hi_s = args.length_range.split(":")
                length_range = (int(lo_s), int(hi_s))
            except ValueError:
                raise DDSMInputError(f"--length-range expects MIN:MAX, e.g. 20:40, got {args.length_range!r}") from None
        if not 1 <= length_range[0] <= length_range[1] <= run.seq_len:
            raise DDSMInputError(f"design lengths must lie in 1..{run.seq_len} (the model's maximum) with MIN <= MAX")
    if args.forbid:  # checked before any sampling
        from .constraints import ForbiddenMotifs

        ForbiddenMotifs.parse(args.forbid, alphabet=run.alphabet, both_strands=not args.no_revcomp)
    from .precision import resolve_precision

    precision = resolve_precision(args.precision or str(defaults.get("precision", "fp32")), device)
    t0 = time.time()
    model_name = run.path.resolve().name if run.path else str(args.model)
    meta = {"model": model_name, "process": run.process.name, "seed": str(args.seed),
            "steps": str(args.steps), "dilation": f"{args.time_dilation:g}", "precision": precision}
    if args.guidance:
        meta["guidance"] = f"{args.guidance:g}"
    if interval is not None and (args.guidance or args.classifier_guidance):
        meta["guidance_interval"] = f"{interval[0]:g},{interval[1]:g}"
    if args.classifier_guidance:
        meta["classifier_guidance"] = f"{args.classifier_guidance:g}"
        meta["classifier"] = Path(args.classifier).name if args.classifier else "bundled"
    if args.track:
        meta["track"] = Path(args.track).name
    if args.reward:
        meta.update({"reward_kind": args.reward, "reward_method": args.reward_method,
                     "particles": str(args.particles), "alpha": f"{args.alpha:g}"})
    records, failures, designs = [], [], []
    for class_name in classes:
        result = design(run, args.n, steps=args.steps, batch_size=args.batch_size, class_name=class_name,
                        guidance=args.guidance, fixed=fixed, forbid=args.forbid, gc=gc, rounds=args.rounds,
                        forbid_revcomp=not args.no_revcomp, length_range=length_range,
                        reward=args.reward, reward_method=args.reward_method, particles=args.particles,
                        alpha=args.alpha, reward_oracle=args.reward_oracle,
                        dilation=args.time_dilation, dilation_after=args.dilation_after, track=track,
                        classifier_guidance=args.classifier_guidance, classifier=args.classifier,
                        guidance_interval=interval,
                        generator=gen, device=device, progress=_progress("sample", args.quiet),
                        precision=precision)
        for i, s in enumerate(result.sequences):
            # ids: run name + running index over all classes, unique within and across runs
            rid = f"{name}_{len(designs)}"
            entry = {"id": rid, "class": class_name, "samples_used": result.samples_used[i]}
            if result.rewards is not None:
                entry["reward"] = result.rewards[i]
            if s is None:
                entry["failed"] = result.failures[i]
                failures.append((rid, result.failures[i]))
            else:
                rec_meta = {**meta, **({"class": class_name} if class_name else {}),
                            "samples_used": str(result.samples_used[i]),
                            **({"reward": f"{result.rewards[i]:.4g}"} if result.rewards is not None else {})}
                records.append(Record(id=rid, seq=s, meta=rec_meta))
            designs.append(entry)
    if not records:
        raise DDSMInputError(f"no design satisfied the constraints within {args.rounds} rounds; "
                             f"first reason: {failures[0][1]}")
    argv = ["sample", str(args.model), "-n", str(args.n), "-o", str(out), "--name", name,
            "--steps", str(args.steps), "--guidance", f"{args.guidance!r}", "--seed", str(args.seed),
            "--batch-size", str(args.batch_size), "--time-dilation", f"{args.time_dilation!r}",
            "--dilation-after", f"{args.dilation_after!r}", "--precision", precision, "--rounds", str(args.rounds),
            "--device", args.device]
    for flag, value in (("--class", args.class_name), ("--fixed", args.fixed), ("--gc", args.gc),
                        ("--length-range", args.length_range), ("--design-length", args.design_length),
                        ("--track", args.track), ("--classifier", args.classifier)):
        if value is not None:
            argv += [flag, str(value)]
    if args.classifier_guidance:
        argv += ["--classifier-guidance", f"{args.classifier_guidance!r}"]
    argv += ["--guidance-interval", "0,1" if interval is None else f"{interval[0]!r},{interval[1]!r}"]
    if args.forbid:
        argv += ["--forbid", *args.forbid]
    if args.no_revcomp:
        argv.append("--no-revcomp")
    if args.reward:
        argv += ["--reward", args.reward, "--reward-method", args.reward_method, "--particles", str(args.particles),
                 "--alpha", f"{args.alpha!r}"] + (["--reward-oracle", args.reward_oracle] if args.reward_oracle else [])
    provenance = {
        "ddsm_version": ddsm_version(), "command": "sample", "argv": argv,
        "model": _model_provenance(run, args.model),
        "settings": {"n_per_class": args.n, "classes": classes, "steps": args.steps, "seed": args.seed,
                     "batch_size": args.batch_size, "guidance": args.guidance,
                     "classifier_guidance": args.classifier_guidance, "classifier": args.classifier,
                     "guidance_interval": None if interval is None else list(interval),
                     "time_dilation": args.time_dilation, "dilation_after": args.dilation_after,
                     "precision": precision, "device": str(device), "track": args.track,
                     "reward": None if not args.reward else {"kind": args.reward, "method": args.reward_method,
                                                             "particles": args.particles, "alpha": args.alpha,
                                                             "oracle": args.reward_oracle},
                     "constraints": {"fixed": args.fixed, "forbid": args.forbid,
                                     "forbid_both_strands": bool(args.forbid) and not args.no_revcomp
                                     and run.alphabet.has_reverse_complement,
                                     "gc": list(gc) if gc else None, "rounds": args.rounds,
                                     "length_range": list(length_range) if length_range else None}},
        "note": "the noise of each design depends on the seed and on --batch-size (the batch's draws); "
                "re-running argv reproduces the file",
        "designs": designs,
    }
    write_fasta(out, records, force=args.force)
    atomic_write_text(sidecar, json.dumps(provenance, indent=1) + "\n", force=True)
    for rid, why in failures:
        print(f"ddsm: {rid} not written: {why}", file=sys.stderr)
    print(f"wrote {len(records)} of {args.n * len(classes)} sequences to {out} (settings in {sidecar.name}) in "
          f"{time.time() - t0:.1f} s" + (f" ({len(failures)} failed the constraints, listed above)" if failures else ""))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from .api import load_run, score
    from .data import write_tsv
    from .seeding import seed_everything

    out = Path(args.output)
    _check_output(out, args.force)
    sidecar = _sidecar_path(out)
    _check_output(sidecar, args.force, "provenance sidecar")
    _check_positive(steps=args.steps, repeats=args.repeats, batch_size=args.batch_size)
    _check_seed(args.seed)
    device = _device(args.device)
    run = load_run(args.model, device=device)
    gen = seed_everything(args.seed)
    label_key = run.config.get("label_key") if run.classes else None
    annotations: dict[str, dict[str, str]] = {}
    variable = bool(run.alphabet.end)  # variable-length model: shorter records end with end letters
    ds = _load_dataset(args.sequences, alphabet=run.alphabet,
                       length=run.seq_len if (args.crop or variable) else None,
                       max_length=run.seq_len if (variable and not args.crop) else None,
                       label_key=label_key if args.use_labels else None,
                       classes=run.classes if (label_key and args.use_labels) else None, unknown=args.unknown,
                       track=args.track if (args.track and run.track is not None) else None,
                       hints={"length": f"pass --crop to crop/pad them to the model's length {run.seq_len}",
                              "unknown": "use --unknown random or --unknown skip"}, meta_out=annotations)
    if args.track and run.track is None:
        raise DDSMInputError("this model was trained without a signal track; drop --track")
    if ds.length != run.seq_len:
        raise DDSMInputError(f"sequences have length {ds.length}; the model was trained on length {run.seq_len} (use --crop)")
    t0 = time.time()
    from .api import score_steps

    steps = score_steps(run.process, args.steps)
    bits = score(run, ds, steps=steps, batch_size=args.batch_size, repeats=args.repeats, t_start=args.t_start,
                 generator=gen, device=device, progress=_progress("score", args.quiet))
    # labels travel with the sequences: the model's label key, else "class" (ddsm sample's designs)
    keys = [k for k in dict.fromkeys([label_key, "class"]) if k and any(k in m for m in annotations.values())]
    lengths = (ds.tokens != run.alphabet.end_id).sum(axis=1) if variable else ds.pad_mask.sum(axis=1)
    rows = [{"id": i, "length": int(n), **{k: annotations.get(i, {}).get(k, "") for k in keys[:1]},
             "bits_per_token": f"{b:.5f}", "process": run.process.name,
             "seed": args.seed, "steps": steps, **({"t_start": args.t_start} if args.t_start is not None else {})}
            for i, n, b in zip(ds.ids, lengths, bits)]
    write_tsv(out, rows, force=args.force)
    from .checkpoint import ddsm_version
    from .data.io import atomic_write_text

    argv = ["score", str(args.model), str(args.sequences), "-o", str(out), "--steps", str(steps), "--repeats",
            str(args.repeats), "--batch-size", str(args.batch_size), "--seed", str(args.seed), "--unknown",
            args.unknown, "--device", args.device] + (["--crop"] if args.crop else []) + (
        ["--use-labels"] if args.use_labels else []) + (["--t-start", repr(args.t_start)] if args.t_start is not None
                                                         else []) + (["--track", args.track] if args.track else [])
    provenance = {"ddsm_version": ddsm_version(), "command": "score", "argv": argv,
                  "model": _model_provenance(run, args.model),
                  "input": {"path": str(args.sequences), "sha256": _file_sha256(Path(args.sequences)),
                            "n": len(bits)},
                  "settings": {"steps": steps, "repeats": args.repeats, "batch_size": args.batch_size,
                               "seed": args.seed, "t_start": args.t_start, "crop": args.crop,
                               "use_labels": args.use_labels, "unknown": args.unknown, "device": str(device)},
                  "mean_bits_per_token": float(np.mean(bits))}
    atomic_write_text(sidecar, json.dumps(provenance, indent=1) + "\n", force=True)
    print(f"scored {len(bits)} sequences in {time.time() - t0:.1f} s: mean {float(np.mean(bits)):.4f} bits/token -> {out}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .models import MODELS
    from .processes import PROCESSES

    if args.what == "processes":
        for name in sorted(PROCESSES):
            cls = PROCESSES[name]
            opts = ", ".join(f"{k}={v!r}" for k, v in cls.options().items())
            print(f"{name:16s} {cls.description}\n{'':16s} options: {opts or '-'}")
    else:
        if args.what == "models":
            from .api import bundled_models

            print("bundled models (use the name in place of a checkpoint folder):")
            for info in bundled_models():
                print(f"  {info['name']:14s} data {info['data']}, {info['length']} letters, "
                      f"classes ({info['label_key']}): {', '.join(info['classes']) or '-'}")
            print("backbones (ddsm train --model):")
        for name in sorted(MODELS):
            print(f"  {name:14s} {getattr(MODELS[name], 'description', '')}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    _check_positive(steps=args.steps)
    if args.n < 1:
        raise DDSMInputError("-n must be at least 1")
    _check_seed(args.seed)
    return run_demo(out=Path(args.out), steps=args.steps, seed=args.seed, n=args.n, force=args.force,
                    quiet=args.quiet, device=_device(args.device), guidance=args.guidance,
                    say=lambda msg: print(msg, flush=True))


def _likelihood_fn(args: argparse.Namespace, device) -> Callable[[list[str]], np.ndarray]:
    """``ddsm evaluate --likelihood-model``: sequences -> bits per token under that model (centre
    crop / pad to its length; unknown letters drawn at random from the seed)."""
    from .api import load_run, score, score_steps
    from .data import Record, encode_records

    _check_positive(likelihood_steps=args.likelihood_steps)
    run = load_run(args.likelihood_model, device=device)
    steps = score_steps(run.process, args.likelihood_steps)

    def likelihood(seqs: list[str]) -> np.ndarray:
        ds = encode_records([Record(f"s{i}", s) for i, s in enumerate(seqs)], run.alphabet,
                            length=run.seq_len, unknown="random", rng=np.random.default_rng(args.seed))
        return np.asarray(score(run, ds, steps=steps, generator=torch.Generator().manual_seed(args.seed),
                                device=device))

    return likelihood


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``ddsm evaluate``: read the files, evaluate, print the table, write JSON / HTML if asked."""
    from .data import read_sequences
    from .data.io import atomic_write_text
    from .evaluate import evaluate_detailed, format_table

    outputs = [(Path(p), flag) for p, flag in ((args.json_out, "--json"), (args.report, "--report")) if p]
    for path, flag in outputs:
        _check_output(path, args.force, flag)
    if args.max_seqs < 2:
        raise DDSMInputError(f"--max-seqs must be at least 2, got {args.max_seqs}")
    _check_seed(args.seed)
    if args.run_dir and not Path(args.run_dir).is_dir():
        raise DDSMInputError(f"--run {args.run_dir} is not a folder")
    device = _device(args.device)
    say = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    designs = read_sequences(args.designs)
    reference = read_sequences(args.reference)
    train = read_sequences(args.train) if args.train else None
    motifs: Any = args.motifs
    if args.motifs and args.motifs_file:
        from .metrics.motifs import load_jaspar

        motifs = load_jaspar(args.motifs_file)
    likelihood = _likelihood_fn(args, device) if args.likelihood_model else None
    say(f"evaluating {len(designs)} designs against {len(reference)} reference sequences"
        + (f" and {len(train)} training sequences" if train else "") + " ...")
    t0 = time.time()
    result = evaluate_detailed(designs, reference, label_key=args.label_key, train=train, oracle=args.oracle,
                               motifs=motifs, max_seqs=args.max_seqs, seed=args.seed, device=device,
                               likelihood=likelihood)
    result.settings.update({"designs": str(args.designs), "reference": str(args.reference),
                            "train": str(args.train) if args.train else None})
    print(format_table(result.table))
    if result.oracle:
        acc = result.oracle.get("valid_accuracy")
        print(f"oracle: {result.oracle['name']}" + (f" (validation accuracy {acc:.3f})" if acc is not None else ""))
    if args.json_out:
        atomic_write_text(args.json_out, json.dumps(result.to_json(), indent=1) + "\n", force=args.force)
        say(f"wrote {args.json_out}")
    if args.report:
        from .report import build_report

        html = build_report(result, run_dir=args.run_dir, title=f"ddsm evaluate: {Path(args.designs).name}")
        atomic_write_text(args.report, html, force=args.force)
        say(f"wrote {args.report}")
    say(f"done in {time.time() - t0:.1f} s")
    return 0


# ---------------------------------------------------------------------------- parser
def add_evaluate_parser(sub: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Add ``ddsm evaluate`` to the CLI's sub-command parsers (``sub = parser.add_subparsers()``)."""
    e = sub.add_parser("evaluate", help="compare designed sequences with real ones (k-mers, GC, motifs, "
                       "discriminator, oracle, diversity, novelty)",
                       description="Per-class metrics of designed sequences against a reference set. "
                       "Prints a table; optionally writes JSON and a self-contained HTML report.")
    e.add_argument("designs", help="designed sequences (FASTA or TSV, optionally gzipped)")
    e.add_argument("--reference", required=True, help="real sequences to compare with (FASTA or TSV)")
    e.add_argument("--label-key", dest="label_key", default=None,
                   help="header key of class labels, e.g. cell_type (designs may use class= from ddsm sample)")
    e.add_argument("--train", default=None, help="training sequences, for novelty / memorisation")
    e.add_argument("--oracle", default="auto",
                   help="auto (bundled oracle matching the classes) | none | a bundled name "
                        "(dhs4, epd_promoters) | an oracle folder")
    e.add_argument("--no-motifs", dest="motifs", action="store_false", help="skip the JASPAR motif scan")
    e.add_argument("--motifs-file", dest="motifs_file", default=None,
                   help="JASPAR-format motif file instead of the bundled JASPAR 2024 vertebrates")
    e.add_argument("--max-seqs", dest="max_seqs", type=int, default=1000,
                   help="per class, sequences used by the motif scan, discriminator and diversity")
    e.add_argument("--json", dest="json_out", default=None, help="write the metrics as JSON here")
    e.add_argument("--report", default=None, help="write a self-contained HTML report here")
    e.add_argument("--run", dest="run_dir", default=None,
                   help="training run folder (history.json) for the report's training curves")
    e.add_argument("--likelihood-model", dest="likelihood_model", default=None, metavar="MODEL",
                   help="also report bits per token of designs and reference under this model (checkpoint "
                        "folder or bundled name; sequences are centre-cropped / padded to its length)")
    e.add_argument("--likelihood-steps", dest="likelihood_steps", type=int, default=None,
                   help="ODE / Monte-Carlo steps of --likelihood-model (default: its process's own)")
    e.add_argument("--seed", type=int, default=0, help="seeds the subsamples and cross-validation folds")
    e.add_argument("--device", default="auto", help="auto | cpu | cuda (oracle, motif scan, novelty)")
    e.add_argument("--force", action="store_true", help="overwrite existing --json / --report files")
    e.add_argument("--quiet", action="store_true", help="no progress messages")
    e.set_defaults(func=cmd_evaluate)
    return e


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ddsm", description="Dirichlet diffusion score models and other discrete "
                                "diffusion processes for biological sequences.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    from .checkpoint import ddsm_version

    p.add_argument("--version", action="version", version=f"ddsm {ddsm_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, seed_default: int = 0) -> None:
        sp.add_argument("--seed", type=int, default=seed_default, help="seeds every random generator (recorded in outputs)")
        sp.add_argument("--device", default="auto", help="auto | cpu | cuda")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    t = sub.add_parser("train", help="train a model on a FASTA/TSV file")
    t.add_argument("--data", required=True, nargs="+", metavar="[LABEL=]PATH",
                   help="FASTA (optionally gzipped) or TSV/CSV with a sequence column; several files as "
                        "LABEL=PATH (strong=strong.fa weak=weak.fa) label every record by its file")
    t.add_argument("--sequence-column", default="sequence", help="TSV/CSV column holding the sequences")
    t.add_argument("--out", required=True, help="checkpoint folder")
    t.add_argument("--process", default=None, help="corruption process (see 'ddsm list processes'); default jacobi")
    t.add_argument("--model", default=None, help="backbone: conv | transformer | mlp; default conv")
    t.add_argument("--steps", type=int, default=None, help="optimiser steps (default 2000, or the resumed run's)")
    t.add_argument("--batch-size", dest="batch_size", type=int, default=None,
                   help="sequences per optimiser step, over all processes (default 64)")
    t.add_argument("--lr", type=float, default=None, help="peak learning rate of AdamW (default 1e-3)")
    t.add_argument("--cooldown-steps", dest="cooldown_steps", type=int, default=None,
                   help="fall linearly to lr 0 over the last N steps (warm-up, stable, decay; default 0); "
                        "to extend such a run later, resume a copy saved before its cooldown")
    t.add_argument("--seed", type=int, default=None, help="seeds every random generator (default 0)")
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
    t.add_argument("--label-key", dest="label_key", default=None, help="header key holding class labels, e.g. cell_type")
    t.add_argument("--alphabet", default=None, help="dna | rna | protein | custom (every distinct letter of the data) | custom:LETTERS (token order); "
                        "default: inferred among dna, rna, protein (said on stderr)")
    t.add_argument("--unknown", default="error", choices=["error", "random", "skip"], help="letters outside the alphabet (e.g. N)")
    t.add_argument("--track", default=None, metavar="FILE.npy",
                   help="per-position signal track(s), NumPy (N, L) or (N, L, S), one row per --data record "
                        "(in file order); the model is conditioned on it and sampling then needs one")
    t.add_argument("--valid-track", dest="valid_track", default=None, metavar="FILE.npy",
                   help="the track of the --valid file")
    t.add_argument("--track-transform", dest="track_transform", default=None, choices=["none", "log1p"],
                   help="transform applied to raw track values (recorded; sampling applies it too); default none")
    t.add_argument("--track-names", dest="track_names", default=None, metavar="NAME[,NAME...]",
                   help="names of the S track channels (recorded in the checkpoint)")
    t.add_argument("--checkpoint-every", dest="checkpoint_every", type=int, default=None,
                   help="save a resumable checkpoint every N steps (also at the end and on SIGTERM/SIGINT)")
    t.add_argument("--nproc", type=int, default=1,
                   help="training processes on this machine (DistributedDataParallel through torchrun)")
    t.add_argument("--grad-accum", dest="grad_accum", type=int, default=None,
                   help="micro-batches per process and step; --batch-size stays the global batch")
    t.add_argument("--bf16", action="store_true", default=None, help="bfloat16 autocast for the network (GPU)")
    t.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the network (CUDA only; skipped with a warning if it fails)")
    t.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    t.add_argument("--force", action="store_true", help="replace an existing checkpoint in --out")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="generate sequences from a trained model",
                       description="Generate sequences from a trained model. Conditioning: --class (with "
                       "--guidance for classifier-free guidance), --track for a model trained with a signal "
                       "track, --classifier-guidance W toward --class with a differentiable oracle. "
                       "Constraints: --fixed, --forbid, --gc.")
    s.add_argument("model", help="checkpoint folder")
    s.add_argument("-n", type=int, default=100, help="number of sequences")
    s.add_argument("-o", "--output", required=True, help="output FASTA")
    s.add_argument("--steps", type=int, default=None,
                   help="sampling steps (default: the model's recorded default, else 100)")
    s.add_argument("--time-dilation", dest="time_dilation", type=float, default=1.0,
                   help="DDSM's time dilation: run the reverse SDE this many times slower (>= 1)")
    s.add_argument("--dilation-after", dest="dilation_after", type=float, default=1.0,
                   help="apply dilation only once public time drops below this (1 = whole run)")
    s.add_argument("--class", dest="class_name", default=None,
                   help="class to design for (conditional models): NAME, A,B or all (-n designs per class)")
    s.add_argument("--name", default=None,
                   help="run name: design ids are NAME_0, NAME_1, ... (default: the output file's name without "
                        "extensions)")
    s.add_argument("--fixed", default=None, help="pattern of the sequence length or a file holding it; free positions are N or . for DNA/RNA, "
                        ". - X for proteins (N is asparagine), . - for custom alphabets")
    s.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance weight w (with --class; default: the model's recorded default, "
                        "chosen on validation data for the bundled models, else 0)")
    s.add_argument("--guidance-interval", dest="guidance_interval", default=None, metavar="LO,HI",
                   help="guide (--guidance and --classifier-guidance) only at public times LO <= t <= HI "
                        "(1 = pure noise, 0 = data); steps outside cost one network call instead of two. "
                        "0,1: every step. Default: the model's recorded default, else every step")
    s.add_argument("--classifier-guidance", dest="classifier_guidance", type=float, default=None, metavar="W",
                   help="classifier (oracle) guidance weight toward --class: adds W * grad log p(class | x) to "
                        "the sampler (jacobi, dirichlet-fm and bits only; combines with --guidance); default: the "
                        "model's recorded default with --class (chosen on validation data for the bundled models), else 0")
    s.add_argument("--classifier", default=None, metavar="DIR",
                   help="oracle folder or bundled oracle name for --classifier-guidance (default: the bundled "
                        "oracle trained on the model's data set, when there is one)")
    s.add_argument("--track", default=None, metavar="FILE.npy",
                   help="signal track for a track-conditioned model: (L,) or (L, S) for every design, "
                        "(N, L) or (N, L, S) one per design; raw values (the model's transform is applied)")
    s.add_argument("--forbid", nargs="+", default=None, metavar="MOTIF",
                   help="motifs that must not occur: IUPAC codes on both strands for DNA/RNA (e.g. GAATTC), literal "
                        "letters for proteins and custom alphabets (KK = two lysines)")
    s.add_argument("--no-revcomp", action="store_true",
                   help="DNA/RNA: forbid the --forbid motifs on the given strand only (default: both strands)")
    s.add_argument("--gc", default=None, metavar="MIN:MAX", help="GC-content window, e.g. 0.40:0.60 (DNA/RNA models)")
    s.add_argument("--length-range", dest="length_range", default=None, metavar="MIN:MAX",
                   help="variable-length models: design lengths allowed (default: the model's own length "
                        "distribution, up to its maximum)")
    s.add_argument("--design-length", dest="design_length", type=int, default=None, metavar="N",
                   help="variable-length models: every design has exactly N letters")
    s.add_argument("--reward", default=None, metavar="KIND",
                   help="steer toward a reward with sequential Monte Carlo or SVDD, any process: oracle "
                        "(log p(--class) under --reward-oracle), margin (its logit margin), gc:TARGET, "
                        "motif:MOTIF, nomotif:MOTIF")
    s.add_argument("--reward-method", dest="reward_method", default="smc", choices=["smc", "svdd"],
                   help="smc: --particles per design, resampled by reward; svdd: --particles candidate "
                        "steps, one kept by reward")
    s.add_argument("--particles", type=int, default=8, help="SMC particles per design / SVDD candidates per step")
    s.add_argument("--alpha", type=float, default=1.0,
                   help="temperature of the reward tilt exp(reward / alpha): smaller steers harder; inf = none")
    s.add_argument("--reward-oracle", dest="reward_oracle", default=None, metavar="DIR",
                   help="oracle folder or bundled oracle name for --reward oracle/margin (default: the bundled "
                        "oracle of the model's data set)")
    s.add_argument("--rounds", type=int, default=20,
                   help="sampling rounds to satisfy --forbid/--gc/--length-range before giving up")
    s.add_argument("--batch-size", dest="batch_size", type=int, default=64,
                   help="designs per network batch (recorded; designs depend on it through the noise draws)")
    s.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=None,
                   help="network precision: bf16 autocast is ~4x faster on CPUs with AMX (auto: bf16 where "
                        "native); the sampler's maths stays float64; recorded in the headers (default: the "
                        "model's recorded default, else fp32)")
    s.add_argument("--force", action="store_true", help="overwrite the output file")
    common(s)
    s.set_defaults(func=cmd_sample)

    c = sub.add_parser("score", help="bits per token of sequences under a model")
    c.add_argument("model", help="checkpoint folder")
    c.add_argument("sequences", help="FASTA or TSV")
    c.add_argument("-o", "--output", required=True, help="output TSV")
    c.add_argument("--steps", type=int, default=None,
                   help="ODE / Monte-Carlo steps (default: the process's own, 200 ODE steps for jacobi, 100 otherwise)")
    c.add_argument("--repeats", type=int, default=1, help="independent estimates to average")
    c.add_argument("--t-start", dest="t_start", type=float, default=None, metavar="TAU",
                   help="jacobi: native time where the ODE bound starts (default: the model's t_min). Any start "
                        "gives a valid bound; a later one can be tighter for briefly trained models. "
                        "Choose it on held-out sequences")
    c.add_argument("--batch-size", dest="batch_size", type=int, default=32, help="sequences per network batch")
    c.add_argument("--crop", action="store_true", help="crop/pad sequences to the model's length")
    c.add_argument("--use-labels", dest="use_labels", action="store_true", help="condition on labels in the headers")
    c.add_argument("--track", default=None, metavar="FILE.npy",
                   help="signal tracks of a track-conditioned model, one row per sequence: (N, L) or (N, L, S)")
    c.add_argument("--unknown", default="error", choices=["error", "random", "skip"],
                   help="letters outside the model's alphabet (IUPAC codes: random draws a letter the code allows)")
    c.add_argument("--force", action="store_true", help="overwrite the output file")
    common(c)
    c.set_defaults(func=cmd_score)

    d = sub.add_parser("demo", help="design DNA for every class of the bundled models, evaluate against real "
                       "sequences, write reports, solve Sudoku puzzles")
    d.add_argument("--out", default="ddsm_demo", help="output folder")
    d.add_argument("--steps", type=int, default=None,
                   help="sampling steps (default: each bundled model's recorded default, else 50)")
    d.add_argument("-n", type=int, default=48, help="designs per class")
    d.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance weight (default: each bundled model's recorded default, else 1)")
    d.add_argument("--force", action="store_true", help="write into an existing --out folder")
    common(d)
    d.set_defaults(func=cmd_demo)

    from .sudoku.cli import add_sudoku_parser  # `ddsm sudoku ...` lives with the Sudoku code

    add_sudoku_parser(sub)
    add_evaluate_parser(sub)

    ls = sub.add_parser("list", help="list processes, bundled models and backbones")
    ls.add_argument("what", choices=["processes", "models", "backbones"],
                    help="processes: the corruption processes; models: the bundled models (name, data, classes, "
                         "length) and the backbones; backbones: the networks only")
    ls.set_defaults(func=cmd_list)
    _show_defaults(p)
    return p


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every (sub)command's --help shows each option's default."""
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sp in action.choices.values():
                _show_defaults(sp)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in checkpoints
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    from .distributed import is_main_process
    from .training import TrainingInterrupted

    try:
        return int(args.func(args) or 0)
    except DDSMInputError as e:
        if is_main_process():  # under torchrun every rank raises the same error
            print(f"ddsm: error: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:  # non-finite loss: the message names the step and the last checkpoint
        if is_main_process():
            print(f"ddsm: error: {e}", file=sys.stderr)
        return 1
    except TrainingInterrupted as e:  # SIGTERM/SIGINT: checkpoint written; the message names the step
        if is_main_process():
            print(f"ddsm: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("ddsm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
