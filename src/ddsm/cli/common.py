"""Helpers shared by the ``ddsm`` commands: checks of the command line, dataset loading, JSON and
``--set`` parsing, provenance sidecars, and flags generated from configuration dataclasses.

Every check raises :class:`DDSMInputError`, which ``ddsm.cli.main`` prints as one line
``ddsm: error: ...`` and turns into exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np
import torch

from ..errors import DDSMInputError

Progress = Callable[[Iterable], Iterable]


# ---------------------------------------------------------------------------- devices and progress
def select_device(name: str) -> torch.device:
    """``--device auto | cpu | cuda`` as a torch device (auto: CUDA when there is one)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DDSMInputError("--device cuda requested but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise DDSMInputError(f"--device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


def progress_bar(desc: str, quiet: bool) -> Progress:
    """A tqdm wrapper for iterables (stderr), or the identity when quiet."""
    if quiet:
        return lambda it: it
    from tqdm import tqdm

    return lambda it: tqdm(it, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)


def add_common_options(sp: argparse.ArgumentParser, seed_default: int = 0) -> None:
    """``--seed``, ``--device`` and ``--quiet``, as most commands take them."""
    sp.add_argument("--seed", type=int, default=seed_default, help="seeds every random generator (recorded in outputs)")
    sp.add_argument("--device", default="auto", help="auto | cpu | cuda")
    sp.add_argument("--quiet", action="store_true", help="no progress bars")


# ---------------------------------------------------------------------------- checks
def check_output(path: Path, force: bool, label: str = "") -> None:
    """Refuse an existing output without ``--force`` (and an unwritable one)."""
    from ..data.io import check_output as _check

    _check(path, force, label)


def check_out_folder(out: Path) -> None:
    """Refuse before training when the checkpoint folder could not be created or written."""
    base = out
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise DDSMInputError(f"cannot create --out {out}: {base} is not a folder")
    if not os.access(base, os.W_OK):
        raise DDSMInputError(f"cannot create --out {out}: {base} is not writable")


def check_seed(seed: int) -> None:
    """``--seed`` must fit the 63-bit seeds of ``ddsm.seeding``."""
    if not 0 <= seed < 2**63:
        raise DDSMInputError(f"--seed must be in [0, 2**63), got {seed}")


def check_positive(**values: Any) -> None:
    """``--name`` values that must be at least 1 (keyword names use _ for -; None = not given)."""
    for name, value in values.items():
        if value is not None and value < 1:
            raise DDSMInputError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


# ---------------------------------------------------------------------------- inputs
def load_dataset(path: str | list[str], *, alphabet: Any = None, length: Optional[int] = None,
                 label_key: Optional[str] = None, classes: Optional[Sequence[str]] = None,
                 unknown: str = "error", seed: int = 0, track: Optional[str] = None,
                 sequence_column: str = "sequence", notes: Optional[list[str]] = None,
                 hints: Optional[dict[str, str]] = None, meta_out: Optional[dict[str, dict[str, str]]] = None,
                 variable_length: bool = False, max_length: Optional[int] = None):
    """Encode sequence files (``PATH`` or ``LABEL=PATH`` entries, see ``read_labelled``);
    ``track``: a ``.npy`` file with one row per record (attached as ``dataset.track``, rows of
    skipped records dropped with them). ``notes`` collects what was inferred (printed once the
    command's inputs have all been checked, so that a bad input still gets a single error line)."""
    from ..data import encode_records, read_labelled, read_track

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
        from ..data import describe_inference, get_alphabet

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


def parse_json_file(path: Optional[str]) -> dict[str, Any]:
    """``ddsm train --config FILE``: a JSON object with ``process``, ``model`` and ``train`` sections."""
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


def set_options(pairs: Optional[Sequence[str]]) -> dict[str, Any]:
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


def guidance_interval(text: Optional[str], defaults: Mapping[str, Any]) -> Optional[tuple[float, float]]:
    """``--guidance-interval LO,HI`` (or the model's recorded default) as floats; None = every step."""
    from ..guidance.cfg import check_interval

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


# ---------------------------------------------------------------------------- provenance
def sidecar_path(out: Path) -> Path:
    """Where an output's provenance JSON goes: ``designs.fasta`` -> ``designs.fasta.json``."""
    return out.with_name(out.name + ".json")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_provenance(run: Any, given: str) -> dict[str, Any]:
    """What a sidecar records of the model: as given, its folder, the weights' SHA-256, the process,
    the alphabet and the length."""
    model_file = run.path / "model.safetensors" if run.path else None
    return {"given": str(given), "path": str(run.path.resolve()) if run.path else None,
            "sha256": file_sha256(model_file) if model_file and model_file.is_file() else None,
            "process": run.process.name, "alphabet": run.alphabet.to_config(), "length": run.seq_len}


def write_sidecar(path: Path, provenance: Mapping[str, Any]) -> None:
    """Write a provenance sidecar atomically (its output was checked, so it may be replaced)."""
    from ..data.io import atomic_write_text

    atomic_write_text(path, json.dumps(provenance, indent=1) + "\n", force=True)


# ---------------------------------------------------------------------------- dataclass flags
def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, helps: Mapping[str, str],
                        default_note: str = "", defaults: Optional[Mapping[str, Any]] = None) -> None:
    """One ``--field-name`` flag per entry of ``helps`` (a field of dataclass ``cls`` -> help text).

    The flag's type comes from the field's default (``bool``: a ``store_true`` switch) and its
    help ends with that default, so each default is written once, in the dataclass (or in
    ``defaults``, a task's own defaults of some fields, such as Sudoku's). Every flag has
    ``default=None`` so that :func:`given_flags` can tell "not given" from a given value.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name, text in helps.items():
        default = (defaults or {}).get(name, fields[name].default)
        flag = "--" + name.replace("_", "-")
        shown = ("on" if default else "off") if isinstance(default, bool) else repr(default)
        note = f" (default {shown}{default_note})"
        if isinstance(default, bool):
            parser.add_argument(flag, dest=name, action="store_true", default=None, help=text + note)
        else:
            parser.add_argument(flag, dest=name, type=type(default), default=None, help=text + note)


def given_flags(args: argparse.Namespace, cls: type, names: Iterable[str]) -> dict[str, Any]:
    """The flags of :func:`add_dataclass_flags` that were given (not None), as field -> value."""
    known = {f.name for f in dataclasses.fields(cls)}
    return {n: getattr(args, n) for n in names if n in known and getattr(args, n) is not None}


def merge_layers(*layers: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge configuration layers, later ones winning key by key (None layers are skipped).

    ``ddsm train`` builds every configuration with the precedence

        dataclass default < saved run (``--resume``) < ``--config`` file < command line

    by passing the layers in that order; the dataclass supplies its defaults for the keys no layer
    sets (``TrainConfig.from_dict``).
    """
    out: dict[str, Any] = {}
    for layer in layers:
        out.update(layer or {})
    return out


def run_training_command(args: argparse.Namespace, body: Callable[[argparse.Namespace, Any], int]) -> int:
    """``--nproc N > 1``: re-launch this command line as N torchrun workers; else run ``body(args,
    ctx)`` in this process with its distributed context (a torchrun worker joins the group)."""
    from ..distributed import init_from_env, launch_torchrun, shutdown

    check_positive(nproc=args.nproc)
    if args.nproc > 1:
        return launch_torchrun(args.argv, args.nproc)
    ctx = init_from_env(select_device(args.device))
    try:
        return body(args, ctx)
    finally:
        shutdown()
