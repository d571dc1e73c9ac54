"""Checkpoints: a folder of safetensors weights plus JSON, never a pickle.

Layout of a checkpoint folder::

    model.safetensors      EMA weights (what sampling uses); the raw weights when saved without EMA
    model_raw.safetensors  raw weights                        } only when the training state
    optimizer.safetensors  every tensor of the training state } is saved (resumable checkpoints)
    train_state.json       everything else of it, tensors referenced by key
    config.json            written last: a folder with config.json is complete

``config.json`` = ``{"format_version": 1, "ddsm_version", "process": {"name", "options"},
"model": {"name", "options"}, "step", "created", **config_extra}``; the trainer puts ``"train"``
(its TrainConfig) and the caller's run metadata (alphabet, seq_len, classes, seed, data_hash, track...) in
``config_extra``.

Training-state tensors are split out of nested dicts/lists and replaced in the JSON by
``{"__tensor__": key}``; keys are the dotted path, so the optimiser's moments are stored as
``state.<param_idx>.<name>`` and the trainer's generator states as ``train_state.rng.<name>``.

Every file is written to ``<name>.tmp`` in the same folder, flushed, fsynced and renamed over the
old one. When a folder is overwritten, all new files are staged first, then the old config.json is
removed, the staged files renamed into place and the new config.json written: a crash at any point
leaves either the old complete checkpoint, or a folder without config.json, never a mix.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .ema import EMA
from .errors import DDSMInputError

if TYPE_CHECKING:  # the processes package imports every process; the checkpoint needs none
    from .processes.base import Process

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: the newest config.json layout this code reads and the one it writes
FORMAT_VERSION = 1

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
RAW_FILE = "model_raw.safetensors"
OPTIM_FILE = "optimizer.safetensors"
STATE_FILE = "train_state.json"
_TRAINING_FILES = (RAW_FILE, OPTIM_FILE, STATE_FILE)

#: suffixes of torch.save / pickle files people commonly pass by mistake
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")
_PICKLE_MSG = "pickle checkpoints are not supported; ddsm never unpickles files"

_RESERVED = ("format_version", "ddsm_version", "process", "model", "step", "created")
_TENSOR_REF = "__tensor__"


def ddsm_version() -> str:
    """The installed ddsm version, or ``"unknown"`` when running from an uninstalled tree."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("ddsm")
    except PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------------- atomic writes
def _fsync_dir(folder: Path) -> None:
    # Makes the renames themselves durable; not possible on every platform (Windows), so best effort.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def _stage(path: Path, write: Callable[[Path], None]) -> Path:
    """Write ``path.tmp`` with ``write`` and fsync it; returns the tmp path (not yet renamed)."""
    tmp = _tmp_path(path)
    write(tmp)
    # safetensors writes and closes the file itself, so fsync through a fresh descriptor.
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def _write_text(text: str) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()

    return write


def _write_tensors(tensors: dict[str, Tensor], metadata: Optional[dict[str, str]] = None) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp), metadata=metadata)

    return write


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write a text file atomically (``path.tmp``, fsync, rename)."""
    path = Path(path)
    try:
        tmp = _stage(path, _write_text(text))
        os.replace(tmp, path)
    finally:
        _tmp_path(path).unlink(missing_ok=True)
    _fsync_dir(path.parent)


# ---------------------------------------------------------------------------------- (de)flattening
def _cpu_tensor(t: Tensor) -> Tensor:
    # clone: safetensors refuses tensors that share storage (tied weights, views).
    return t.detach().to("cpu").contiguous().clone()


def split_tensors(obj: Any, prefix: str, out: dict[str, Tensor]) -> Any:
    """Move every tensor in a nested dict/list/tuple into ``out`` under its dotted path.

    Returns the JSON-ready structure with ``{"__tensor__": key}`` in place of each tensor
    (dict keys become strings; tuples become lists).
    """
    if isinstance(obj, Tensor):
        if prefix in out:
            raise ValueError(f"two tensors map to the same checkpoint key {prefix!r}")
        out[prefix] = _cpu_tensor(obj)
        return {_TENSOR_REF: prefix}
    join = (lambda k: f"{prefix}.{k}") if prefix else str
    if isinstance(obj, dict):
        return {str(k): split_tensors(v, join(k), out) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [split_tensors(v, join(i), out) for i, v in enumerate(obj)]
    return obj


def join_tensors(obj: Any, tensors: dict[str, Tensor]) -> Any:
    """Inverse of :func:`split_tensors` (tuples come back as lists)."""
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR_REF}:
            return tensors[obj[_TENSOR_REF]]
        return {k: join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [join_tensors(v, tensors) for v in obj]
    return obj


def _json_default(value: Any) -> Any:
    # NumPy scalars and small tensors sneak into configs; anything else is a caller bug.
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=_json_default) + "\n"


# ---------------------------------------------------------------------------------- save
def save_checkpoint(
    out_dir: PathLike,
    *,
    model: nn.Module,
    model_name: str,
    process: "Process",
    ema: Optional[EMA] = None,
    optimizer: Optional[torch.optim.Optimizer] = None,
    train_state: Optional[dict[str, Any]] = None,
    config_extra: Optional[dict[str, Any]] = None,
    step: int = 0,
) -> Path:
    """Write a checkpoint folder (created if needed; an existing checkpoint in it is replaced).

    Args:
        out_dir: the checkpoint folder.
        model: the network; its raw weights go to ``model.safetensors`` when ``ema`` is None.
        model_name: registry name of the model (``ddsm.models.MODELS``), recorded in config.json.
        process: the process; ``process.name`` and ``process.config()`` go to config.json.
        ema: EMA whose shadow becomes ``model.safetensors``.
        optimizer: when given, the training state is saved too (raw weights, optimiser state and
            ``train_state``), making the checkpoint resumable; otherwise stale training files from
            an earlier save in the same folder are removed.
        train_state: JSON-friendly nested dict (tensors allowed anywhere: they go to
            ``optimizer.safetensors``), e.g. sampler position, generator states, history.
        config_extra: merged into config.json at top level (``"train"``, run metadata); may not
            override the reserved keys.
        step: optimiser steps taken, recorded in config.json and train_state.json.

    Returns:
        the checkpoint folder.
    """
    out = Path(out_dir)
    extra = dict(config_extra or {})
    clash = [k for k in _RESERVED if k in extra]
    if clash:
        raise ValueError(f"config_extra may not set reserved config.json key(s): {', '.join(clash)}")
    config = {
        "format_version": FORMAT_VERSION,
        "ddsm_version": ddsm_version(),
        "process": {"name": process.name, "options": process.config()},
        "model": {
            "name": model_name,
            "options": model.config() if hasattr(model, "config") else {},
        },
        "step": int(step),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    # Serialise everything before touching the disk, so a JSON error leaves the folder as it was.
    config_text = _dumps(config)
    weights_meta = {"format": "pt", "ddsm_format_version": str(FORMAT_VERSION),
                    BOUND_KEY: json.dumps(bound_fields(config), sort_keys=True)}
    source = ema.shadow if ema is not None else model.state_dict()
    staged: list[tuple[Path, Callable[[Path], None]]] = [
        (out / MODEL_FILE, _write_tensors({k: _cpu_tensor(v) for k, v in source.items()}, weights_meta))
    ]
    if optimizer is not None:
        tensors: dict[str, Tensor] = {}
        optim_json = split_tensors(optimizer.state_dict(), "", tensors)
        state_json = split_tensors(train_state or {}, "train_state", tensors)
        state_text = _dumps(
            {
                "format_version": FORMAT_VERSION,
                "step": int(step),
                "optimizer": optim_json,
                "ema": None if ema is None else {"decay": ema.decay, "num_updates": ema.num_updates},
                "state": state_json,
            }
        )
        raw = {k: _cpu_tensor(v) for k, v in model.state_dict().items()}
        staged += [
            (out / RAW_FILE, _write_tensors(raw, weights_meta)),
            (out / OPTIM_FILE, _write_tensors(tensors)),
            (out / STATE_FILE, _write_text(state_text)),
        ]

    out.mkdir(parents=True, exist_ok=True)
    tmps: list[tuple[Path, Path]] = []
    try:
        for path, write in staged:
            tmps.append((_stage(path, write), path))
        # From here the old checkpoint is invalidated first, so no reader sees a mix of steps.
        (out / CONFIG_FILE).unlink(missing_ok=True)
        for tmp, path in tmps:
            os.replace(tmp, path)
        if optimizer is None:
            for name in _TRAINING_FILES:
                (out / name).unlink(missing_ok=True)
        _fsync_dir(out)
        atomic_write_text(out / CONFIG_FILE, config_text)
    finally:
        for path, _ in staged:
            _tmp_path(path).unlink(missing_ok=True)
    logger.debug("saved checkpoint %s (step %d)", out, step)
    return out


# The config.json fields that the weights were trained for. They are copied into the weights file's
# safetensors metadata at save time, so a hand-edited config.json (seq_len 300 on a 200-bp model,
# classes cut from 3 to 2) is caught at load instead of silently used.
BOUND_KEY = "ddsm_bound_config"
BOUND_FIELDS = ("process", "model", "alphabet", "seq_len", "classes", "label_key", "track")


def bound_fields(config: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``config`` that the weights imply (see ``BOUND_FIELDS``), JSON-normalised."""
    return json.loads(_dumps({k: config[k] for k in BOUND_FIELDS if k in config}))


def check_bound_fields(ckpt_dir: PathLike, config: dict[str, Any]) -> None:
    """Compare ``config`` with the fields recorded in the weights file at save time.

    Checkpoints written before the record existed pass (only the structural checks of
    ``ddsm.api.load_run`` apply to them).

    Raises:
        DDSMInputError: one line naming the first field that differs.
    """
    from safetensors import safe_open

    path = Path(ckpt_dir) / MODEL_FILE
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return  # unreadable files are reported by the weight loader, with its own message
    if BOUND_KEY not in meta:
        return
    try:
        saved = json.loads(meta[BOUND_KEY])
    except json.JSONDecodeError:
        raise DDSMInputError(f"{path}: its record of the training config is corrupt") from None
    now = bound_fields(config)
    for key in BOUND_FIELDS:
        if saved.get(key) != now.get(key):
            def show(v: Any) -> str:
                text = json.dumps(v, sort_keys=True)
                return text if len(text) <= 60 else text[:57] + "..."
            raise DDSMInputError(
                f"{Path(ckpt_dir) / CONFIG_FILE}: field {key!r} is {show(now.get(key))} but the weights were trained "
                f"with {show(saved.get(key))}; config.json was edited or belongs to another model"
            )


# ---------------------------------------------------------------------------------- load
def load_config(ckpt_dir: PathLike) -> dict[str, Any]:
    """Read and validate ``config.json`` of a checkpoint folder.

    Raises:
        DDSMInputError: the folder is missing, is a file (a pickle file gets its own message), has
            no config.json, the JSON is malformed, or ``format_version`` is newer than this ddsm.
    """
    path = Path(ckpt_dir)
    if not path.exists():
        raise DDSMInputError(f"checkpoint folder {path} does not exist")
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise DDSMInputError(f"{path}: {_PICKLE_MSG}; give a ddsm checkpoint folder")
        raise DDSMInputError(
            f"{path} is a file; a ddsm checkpoint is a folder with config.json "
            f"(did you mean {path.parent}?)"
        )
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        pickles = sorted(p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise DDSMInputError(
                f"{path} is not a ddsm checkpoint (no config.json; found {pickles[0]}): {_PICKLE_MSG}"
            )
        raise DDSMInputError(f"{path} is not a ddsm checkpoint (no config.json)")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DDSMInputError(f"{cfg_path} is not valid JSON: {e}") from None
    if not isinstance(config, dict) or "format_version" not in config:
        raise DDSMInputError(f"{path} is not a ddsm checkpoint (config.json has no format_version)")
    version = config["format_version"]
    if not isinstance(version, int) or version < 1:
        raise DDSMInputError(f"{cfg_path}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise DDSMInputError(
            f"{path} has checkpoint format_version {version}, newer than the {FORMAT_VERSION} this "
            f"ddsm ({ddsm_version()}) supports; upgrade ddsm"
        )
    for key in ("process", "model"):
        if not isinstance(config.get(key), dict) or "name" not in config[key]:
            raise DDSMInputError(f"{cfg_path} has no valid {key!r} entry")
    return config


def _read_tensors(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise DDSMInputError(f"{path.parent} is an incomplete checkpoint: {path.name} is missing")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise DDSMInputError(f"{path} is truncated or corrupt ({first})") from None


def _check_against(tensors: dict[str, Tensor], expected: dict[str, Tensor], path: Path) -> None:
    """One-line error naming the first name or shape mismatch between a file and the model."""
    for name, ref in expected.items():
        if name not in tensors:
            raise DDSMInputError(
                f"{path} does not match the model built from config.json: missing weight {name!r}"
            )
        if tuple(tensors[name].shape) != tuple(ref.shape):
            raise DDSMInputError(
                f"{path} does not match the model built from config.json: weight {name!r} has "
                f"shape {tuple(tensors[name].shape)} in the file but {tuple(ref.shape)} in the model"
            )
    for name in tensors:
        if name not in expected:
            raise DDSMInputError(
                f"{path} does not match the model built from config.json: unexpected weight {name!r}"
            )


def _load_into(module_state: dict[str, Tensor], tensors: dict[str, Tensor]) -> None:
    with torch.no_grad():
        for name, dst in module_state.items():
            dst.copy_(tensors[name])


def load_model_weights(ckpt_dir: PathLike, model: nn.Module, *, raw: bool = False) -> dict[str, Any]:
    """Load the EMA weights (``raw=False``, what sampling uses) or the raw weights into ``model``.

    Weights are copied into the model's existing tensors, so they keep its device and dtype.

    Returns:
        the checkpoint's config.json dict.

    Raises:
        DDSMInputError: see :func:`load_config`; a missing, truncated or corrupt weights file;
            names or shapes that differ from ``model``'s.
    """
    config = load_config(ckpt_dir)
    path = Path(ckpt_dir) / (RAW_FILE if raw else MODEL_FILE)
    if raw and not path.is_file():
        raise DDSMInputError(f"{Path(ckpt_dir)} has no raw weights ({RAW_FILE}); it was saved without training state")
    tensors = _read_tensors(path)
    state = model.state_dict()
    _check_against(tensors, state, path)
    _load_into(state, tensors)
    return config


def has_training_state(ckpt_dir: PathLike) -> bool:
    """Whether the folder holds a resumable (training-state) checkpoint."""
    d = Path(ckpt_dir)
    return (d / CONFIG_FILE).is_file() and all((d / n).is_file() for n in _TRAINING_FILES)


def load_training_state(
    ckpt_dir: PathLike,
    model: nn.Module,
    ema: Optional[EMA],
    optimizer: torch.optim.Optimizer,
) -> dict[str, Any]:
    """Restore raw weights, EMA and optimiser in place; return the caller's ``train_state``.

    ``model`` and ``optimizer`` must be built the same way as when saving (same parameters in the
    same order). The returned dict is the ``train_state`` given to :func:`save_checkpoint`, tensors
    restored (on CPU; tuples come back as lists), with ``"step"`` added.

    Raises:
        DDSMInputError: see :func:`load_model_weights`; no training state in the folder; files from
            different steps; an optimiser state that does not fit ``optimizer``.
    """
    d = Path(ckpt_dir)
    config = load_model_weights(d, model, raw=True)
    state_path = d / STATE_FILE
    if not state_path.is_file():
        raise DDSMInputError(f"{d} has no training state ({STATE_FILE}); it cannot be resumed")
    try:
        saved = json.loads(state_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DDSMInputError(f"{state_path} is not valid JSON: {e}") from None
    if saved.get("step") != config.get("step"):
        raise DDSMInputError(
            f"{d} is inconsistent: {STATE_FILE} is from step {saved.get('step')} but "
            f"{CONFIG_FILE} from step {config.get('step')}"
        )
    tensors = _read_tensors(d / OPTIM_FILE)
    try:
        optim_state = join_tensors(saved["optimizer"], tensors)
        train_state = join_tensors(saved.get("state", {}), tensors)
    except KeyError as e:
        raise DDSMInputError(f"{d / OPTIM_FILE} lacks tensor {e.args[0]!r} named in {STATE_FILE}") from None

    # JSON turned the optimiser's integer parameter ids into strings and tuples into lists.
    optim_state["state"] = {int(k): v for k, v in optim_state.get("state", {}).items()}
    for group in optim_state.get("param_groups", []):
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
    try:
        optimizer.load_state_dict(optim_state)
    except (ValueError, KeyError, RuntimeError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise DDSMInputError(f"{d}: the saved optimiser state does not fit this model ({first})") from None

    if ema is not None:
        shadow = _read_tensors(d / MODEL_FILE)
        _check_against(shadow, ema.shadow, d / MODEL_FILE)
        info = saved.get("ema") or {}
        ema.load_state_dict({"shadow": shadow, "num_updates": int(info.get("num_updates", 0))})
    train_state["step"] = int(saved["step"])
    return train_state


__all__ = [
    "FORMAT_VERSION",
    "PICKLE_SUFFIXES",
    "save_checkpoint",
    "load_config",
    "load_model_weights",
    "load_training_state",
    "has_training_state",
    "atomic_write_text",
    "split_tensors",
    "join_tensors",
    "ddsm_version",
]
