"""Run state on disk and in flight: checkpoints that survive a crash, resume checks, signals.

Crash safety: checkpoints are written through :func:`ddsm.checkpoint.save_checkpoint` (temp files +
rename); before a folder is overwritten its complete checkpoint is hard-linked into
``<out>/.previous`` and removed again once the new one is in place, so a crash in the middle of a
save leaves a complete checkpoint that :func:`recover_checkpoint` puts back. SIGTERM and SIGINT
during training finish the current step, write a checkpoint and raise :class:`TrainingInterrupted`;
a non-finite loss or gradient raises ``FloatingPointError`` naming the step and leaves the last
good checkpoint untouched.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any, Optional, Union

from ..checkpoint import CONFIG_FILE, MODEL_FILE, OPTIM_FILE, RAW_FILE, STATE_FILE, has_training_state, load_config
from ..errors import DDSMInputError
from .config import RESUME_FIXED, RESUME_FREE, TrainConfig

logger = logging.getLogger("ddsm.training")

#: where the previous complete checkpoint is kept while a new one replaces it
BACKUP_DIR = ".previous"
_CKPT_FILES = (MODEL_FILE, RAW_FILE, OPTIM_FILE, STATE_FILE, CONFIG_FILE)  # config.json last


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on SIGTERM/SIGINT after finishing a step; a checkpoint was written.

    A ``KeyboardInterrupt`` so that generic ``except Exception`` handlers do not swallow it.

    Attributes:
        step: the last completed step (the checkpoint's step).
        signum: the signal received (``signal.SIGTERM`` or ``signal.SIGINT``).
        checkpoint: the checkpoint folder, or None when training had no ``out_dir``.
        exit_code: ``128 + signum``, the shell convention for a process ended by a signal.
    """

    def __init__(self, message: str, *, step: int, signum: int, checkpoint: Optional[Path]) -> None:
        super().__init__(message)
        self.message, self.step, self.signum, self.checkpoint = message, step, int(signum), checkpoint

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        return self.message


class StopOnSignal:
    """While active, SIGTERM and SIGINT set a flag (the loop stops at the end of the step) instead of
    killing the process. A third signal raises ``KeyboardInterrupt`` at once (torchrun and the
    terminal may each deliver the first Ctrl-C, so a second one is not taken as impatience).

    Handlers can only be installed from the main thread; elsewhere this does nothing.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        self.received.append(signum)
        if len(self.received) >= 3:
            raise KeyboardInterrupt(f"{signal.Signals(signum).name} received 3 times; stopping without a checkpoint")
        if len(self.received) == 1:
            logger.info("%s received: stopping after this step", signal.Signals(signum).name)

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # file systems without hard links
        shutil.copy2(src, dst)


def backup_checkpoint(out: Path) -> None:
    """Hard-link the complete training checkpoint in ``out`` into ``out/.previous``."""
    if not has_training_state(out):
        return
    tmp, bak = out / (BACKUP_DIR + ".tmp"), out / BACKUP_DIR
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name in _CKPT_FILES:
        _link_or_copy(out / name, tmp / name)
    shutil.rmtree(bak, ignore_errors=True)
    os.replace(tmp, bak)  # the backup exists complete, or not at all


def recover_checkpoint(out_dir: Union[Path, str]) -> bool:
    """Finish what a crash during a checkpoint save left behind.

    If ``out_dir`` has no ``config.json`` but ``out_dir/.previous`` holds a complete checkpoint (the
    process died while replacing it), that checkpoint is moved back. Leftover backups and temporary
    files next to a complete checkpoint are removed. Safe to call on any folder; only one process
    may call it at a time (rank 0 in a distributed run).

    Returns:
        True when a checkpoint was restored.
    """
    out = Path(out_dir)
    bak = out / BACKUP_DIR
    if not out.is_dir():
        return False
    restored = False
    if not (out / CONFIG_FILE).is_file() and (bak / CONFIG_FILE).is_file():
        for name in _CKPT_FILES:  # config.json last: the folder is complete only once it is back
            if (bak / name).is_file():
                os.replace(bak / name, out / name)
        restored = True
        logger.warning("%s: the last checkpoint save was interrupted; restored the previous checkpoint (step %s)",
                       out, load_config(out).get("step"))
    if (out / CONFIG_FILE).is_file():
        shutil.rmtree(bak, ignore_errors=True)
        shutil.rmtree(out / (BACKUP_DIR + ".tmp"), ignore_errors=True)
        for tmp in out.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
    return restored


def non_finite(what: str, step: int, out: Optional[Path], last_ckpt: Optional[int], *, log: bool = True) -> None:
    if out is not None and last_ckpt is not None:
        where = f"; the last good checkpoint (step {last_ckpt}) is in {out}"
    elif out is not None:
        where = f"; no checkpoint was written to {out} yet"
    else:
        where = ""
    msg = f"non-finite {what} at step {step}{where} (try a lower lr or stronger grad_clip)"
    if log:
        logger.info(msg)  # the exception carries the message; the caller reports it once
    raise FloatingPointError(msg)


def check_resume(saved: dict[str, Any], config: TrainConfig, meta: dict[str, Any], out: Path) -> None:
    old = saved.get("train") or {}
    new = config.to_dict()
    fixed = [k for k in RESUME_FIXED if k in old and old[k] != new[k]]
    if fixed:
        raise DDSMInputError(
            f"cannot resume {out} with a different {', '.join(fixed)} "
            f"(saved {', '.join(f'{k}={old[k]!r}' for k in fixed)}): it would change the data order"
        )
    changed = [k for k in new if k in old and old[k] != new[k] and k not in RESUME_FREE]
    if changed:
        logger.warning("resuming %s with changed %s", out, ", ".join(f"{k}: {old[k]!r} -> {new[k]!r}" for k in changed))
    if config.schedule == "cosine" and old.get("steps") not in (None, config.steps):
        logger.warning("resuming a cosine schedule with steps %s -> %s changes the remaining learning rates",
                       old.get("steps"), config.steps)
    if meta.get("track") != saved.get("track"):
        def what(spec: Any) -> str:
            if not spec:
                return "without a signal track"
            return (f"with a signal track ({spec.get('n_track')} channel(s) {', '.join(spec.get('names', []))}, "
                    f"transform {spec.get('transform')})")

        raise DDSMInputError(f"cannot resume {out}: it was trained {what(saved.get('track'))}, "
                             f"this run is {what(meta.get('track'))}")
    if "data_hash" in meta and "data_hash" in saved and meta["data_hash"] != saved["data_hash"]:
        raise DDSMInputError(
            f"cannot resume {out}: it was trained on data with hash {saved['data_hash']}, "
            f"this data has {meta['data_hash']}"
        )


def check_resume_options(saved: dict[str, Any], options: dict[str, dict[str, Any]], out: Path) -> None:
    """The process and network a run is resumed with must be the ones it was saved with
    (``options``: ``{"process": process.config(), "model": network options}``).

    Raises:
        DDSMInputError: one line naming the first part whose options differ.
    """
    for key, mine in options.items():
        theirs = (saved.get(key) or {}).get("options")
        if theirs is not None and _jsonable(theirs) != _jsonable(mine):
            raise DDSMInputError(f"cannot resume {out} with other {key} options: saved {theirs}, asked {mine}")


def _jsonable(value: Any) -> Any:
    """``value`` as config.json stores it (tuples become lists), for comparisons."""
    import json

    return json.loads(json.dumps(value, default=str))
