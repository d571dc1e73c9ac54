"""The training loop: AdamW, warm-up + constant/cosine learning rate, clipping, EMA, resume,
data-parallel processes (torchrun + DistributedDataParallel), gradient accumulation, bf16 autocast.

One readable loop (nanoGPT style). The process supplies the loss, the model is any backbone, and
the data are whole tensors prepared once. All randomness is a pure function of ``config.seed`` and
the position in the run:

- data order: epoch ``e`` is a permutation drawn from a generator seeded from ``(seed, e)``, so the
  sampler's whole state is ``(epoch, position)``. Every process draws the same global batch.
- micro-batches: the global batch of step ``s`` is cut into ``n_micro = world_size * grad_accum``
  contiguous micro-batches (sizes differ by at most one); process ``r`` handles micro-batches
  ``r, r + world_size, r + 2 * world_size, ...``, one per accumulation round.
- the process's noise (times, corruption, label dropout) is **defined per micro-batch**: micro-batch
  ``m`` of step ``s`` draws from a fresh generator seeded from ``(seed, 1, s, m)``, and the model's
  own randomness (dropout, from torch's global generator) is seeded from ``(seed, 3, s, m)`` for
  the duration of that micro-batch (the global state is put back afterwards). So the draws do not
  depend on which process handles a micro-batch: one process with ``grad_accum = 2`` and two
  processes with ``grad_accum = 1`` compute the same update (up to the order of float sums), and a
  resumed run needs no noise-generator state. Changing ``world_size * grad_accum`` changes how the
  batch is cut and so the noise: a statistically equivalent but different run.
- validation: a generator seeded with ``seed + 2`` afresh at every evaluation, so successive
  validation losses differ only through the weights.

Each micro-batch's mean loss is weighted by its share of the global batch, so the gradient is that
of the global-batch loss whatever the split. With these, a run that is interrupted and resumed ends
with exactly the weights of an uninterrupted run on CPU (on GPUs, non-deterministic kernels may
differ in the last bits).

Crash safety: checkpoints are written every ``checkpoint_every`` steps through
:func:`ddsm.checkpoint.save_checkpoint` (temp files + rename); before a folder is overwritten its
complete checkpoint is hard-linked into ``<out>/.previous`` and removed again once the new one is in
place, so a crash in the middle of a save leaves a complete checkpoint that
:func:`recover_checkpoint` puts back. SIGTERM and SIGINT during :func:`train` finish the current
step, write a checkpoint and raise :class:`TrainingInterrupted`; a non-finite loss or gradient raises
``FloatingPointError`` naming the step and leaves the last good checkpoint untouched.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from . import distributed
from .checkpoint import CONFIG_FILE, MODEL_FILE, OPTIM_FILE, RAW_FILE, STATE_FILE
from .checkpoint import has_training_state, load_config, load_training_state, save_checkpoint
from .compiling import compile_or_eager
from .conditioning.track import TrackBinding
from .ema import EMA
from .errors import DDSMInputError
from .models.base import takes_raw_state
from .seeding import derive_seed, get_rng_state, make_generator, seeded_global_rng, set_rng_state

if TYPE_CHECKING:  # avoid importing every process just to train one
    from .processes.base import Process

logger = logging.getLogger(__name__)

SCHEDULES = ("constant", "cosine")

#: TrainConfig fields that may change between a run and its resumption without affecting the
#: weights trained so far (the others are reported; batch_size and seed change the data order).
_RESUME_FREE = ("steps", "cooldown_steps", "log_every", "eval_every", "eval_batches", "checkpoint_every", "grad_accum", "compile")
_RESUME_FIXED = ("batch_size", "seed")

#: stream tags mixed into the per-micro-batch seeds (see the module docstring)
_NOISE_STREAM, _MODEL_STREAM = 1, 3

#: where the previous complete checkpoint is kept while a new one replaces it
BACKUP_DIR = ".previous"
_CKPT_FILES = (MODEL_FILE, RAW_FILE, OPTIM_FILE, STATE_FILE, CONFIG_FILE)  # config.json last


@dataclass
class TrainConfig:
    """Training hyper-parameters; the dict form is saved as ``"train"`` in config.json.

    Attributes:
        steps: total optimiser steps (a resumed run continues up to this number).
        batch_size: sequences per step.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW decoupled weight decay.
        warmup_steps: linear warm-up from lr/warmup_steps to lr over this many steps.
        grad_clip: max global gradient norm; 0 disables clipping.
        ema_decay: EMA decay in [0, 1) (with the (1 + n) / (10 + n) warm-up).
        eval_every: validate every this many steps (and at the end); 0: only at the end.
        eval_batches: validation batches per evaluation.
        checkpoint_every: save every this many steps (and at the end); 0: only at the end.
        seed: seeds everything: the data order, the per-micro-batch noise and model randomness,
            validation (seed + 2).
        log_every: record the mean training loss every this many steps; 0: only at evaluations.
        schedule: ``"constant"`` or ``"cosine"`` (to 0 at ``steps``) after the warm-up.
        cooldown_steps: with the constant schedule, fall linearly to 0 over the last this many
            steps before ``steps`` (warm-up, stable, decay). A run is extended at constant rate and
            cooled down only at its end, so a long run keeps the annealing gain without fixing
            its length in advance: resume a pre-cooldown checkpoint with a larger ``steps`` and
            ``cooldown_steps`` set. 0: no cooldown.
        label_dropout: with class labels, the probability that a training label is replaced by the
            null class (id ``n_classes``), so one network learns the conditional and the
            unconditional model that classifier-free guidance combines.
        grad_accum: micro-batches per process and step; the global batch (``batch_size``) is cut
            into ``world_size * grad_accum`` micro-batches, so memory per forward pass shrinks and
            the update stays that of the whole batch.
        bf16: run the network's forward pass under ``torch.autocast(dtype=torch.bfloat16)`` (meant
            for GPUs; works on CPU, slowly); the loss is computed in float32.
        compile: ``torch.compile`` the network on CUDA devices (ignored on others; a compilation
            failure falls back to eager mode with a warning).
    """

    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    eval_every: int = 200
    eval_batches: int = 8
    checkpoint_every: int = 500
    seed: int = 0
    log_every: int = 50
    schedule: str = "constant"
    cooldown_steps: int = 0
    label_dropout: float = 0.1
    grad_accum: int = 1
    bf16: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        for name in ("steps", "warmup_steps", "eval_every", "checkpoint_every", "log_every", "seed", "cooldown_steps"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "eval_batches", "grad_accum"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("TrainConfig.weight_decay and grad_clip must be >= 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must lie in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.label_dropout < 1.0:
            raise ValueError(f"TrainConfig.label_dropout must lie in [0, 1), got {self.label_dropout}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.cooldown_steps and self.schedule != "constant":
            raise ValueError("TrainConfig.cooldown_steps needs schedule='constant' (cosine already decays)")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of all fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; missing keys take their defaults.

        Raises:
            ValueError: unknown keys (all of them named), or invalid values.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig key(s): {', '.join(unknown)}")
        return cls(**d)


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate for the ``step``-th update (1-based): linear warm-up, then constant (with an
    optional linear cooldown to 0 over the last ``cooldown_steps``) or cosine."""
    # a cooldown that overlaps the warm-up (short runs) multiplies it
    cool = 1.0
    if config.cooldown_steps > 0:
        # step == steps gets lr / cooldown_steps, not 0: the last update still moves the weights.
        cool = min(1.0, max(0.0, (config.steps - step + 1) / config.cooldown_steps))
    if config.warmup_steps > 0 and step <= config.warmup_steps:
        return config.lr * step / config.warmup_steps * cool
    if config.schedule == "cosine":
        span = max(1, config.steps - config.warmup_steps)
        progress = min(1.0, (step - config.warmup_steps) / span)
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.lr * cool


class EpochSampler:
    """Batches of indices into ``n`` examples, each epoch a fresh permutation.

    The permutation of epoch ``e`` is drawn from a generator seeded from ``(seed, e)``, so the
    state is just ``(epoch, position)`` and resuming needs no generator state. A batch that runs
    past the end of an epoch is completed from the next one: every batch has ``batch_size``
    indices and every example is seen once per epoch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int = 0, position: int = 0) -> None:
        if n < 1:
            raise ValueError("cannot sample batches from an empty data set")
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.epoch, self.position = int(epoch), int(position)
        self._perm: Optional[Tensor] = None
        self._perm_epoch = -1

    def permutation(self, epoch: int) -> Tensor:
        """``(n,)`` long, the order of epoch ``epoch``."""
        # SeedSequence mixes (seed, epoch) so that nearby seeds give unrelated orders.
        mixed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1, dtype=np.uint64)[0])
        return torch.randperm(self.n, generator=make_generator(mixed % (2**63)))

    def next(self) -> Tensor:
        """``(batch_size,)`` long CPU indices; advances the state."""
        parts, need = [], self.batch_size
        while need > 0:
            if self._perm_epoch != self.epoch:
                self._perm, self._perm_epoch = self.permutation(self.epoch), self.epoch
            assert self._perm is not None
            take = self._perm[self.position : self.position + need]
            parts.append(take)
            need -= take.numel()
            self.position += take.numel()
            if self.position >= self.n:
                self.epoch, self.position = self.epoch + 1, 0
        return torch.cat(parts)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "n": self.n}


def _check_data(name: str, data: Tensor, cond: Optional[Tensor], pad: Optional[Tensor],
                track: Optional[Tensor] = None) -> None:
    if not isinstance(data, Tensor) or data.dim() != 2 or data.dtype != torch.long:
        raise DDSMInputError(f"{name} data must be a LongTensor (N, L), got {getattr(data, 'dtype', type(data))} "
                             f"{tuple(getattr(data, 'shape', ()))}")
    if data.shape[0] < 1:
        raise DDSMInputError(f"{name} data is empty")
    if cond is not None and (cond.dim() != 1 or cond.shape[0] != data.shape[0] or cond.dtype != torch.long):
        raise DDSMInputError(f"{name} labels must be a LongTensor ({data.shape[0]},), got {cond.dtype} "
                             f"{tuple(cond.shape)}")
    if pad is not None and (pad.shape != data.shape or pad.dtype != torch.bool):
        raise DDSMInputError(f"{name} pad mask must be a bool tensor {tuple(data.shape)}, got {pad.dtype} "
                             f"{tuple(pad.shape)}")
    if track is not None and (track.dim() != 3 or track.shape[:2] != data.shape or not track.is_floating_point()):
        raise DDSMInputError(f"{name} track must be a float tensor ({data.shape[0]}, {data.shape[1]}, S), got "
                             f"{track.dtype} {tuple(track.shape)}")


def _to(t: Optional[Tensor], device: torch.device) -> Optional[Tensor]:
    return None if t is None else t.to(device)


def _bind(model: Callable[..., Any], cond: Optional[Tensor], track: Optional[Tensor]):
    """``(model, cond)`` to hand to ``process.loss``: with a track, the batch's tracks and labels are
    bound to the network and the process gets row ids as cond (see :mod:`ddsm.conditioning.track`)."""
    if track is None:
        return model, cond
    binding = TrackBinding(model, track, cond)
    return binding, binding.rows()


@torch.no_grad()
def evaluate(
    process: "Process",
    model: nn.Module,
    data: Tensor,
    *,
    cond: Optional[Tensor] = None,
    pad_mask: Optional[Tensor] = None,
    track: Optional[Tensor] = None,
    batch_size: int,
    max_batches: int,
    generator: Optional[torch.Generator] = None,
) -> float:
    """Mean training loss of ``model`` (as it is: swap in EMA weights first if wanted) over the first
    ``max_batches`` batches of ``data (N, L)`` in order, in eval mode. ``track`` ``(N, L, S)``: the
    per-position signal tracks of a track-conditioned network.

    Uses the same examples every time and the given ``generator`` for the noise, so with a freshly
    seeded generator the result changes only when the weights do.
    """
    was_training = model.training
    model.eval()
    try:
        total, count = 0.0, 0
        for b in range(max_batches):
            lo = b * batch_size
            if lo >= data.shape[0]:
                break
            sl = slice(lo, lo + batch_size)
            fn, c = _bind(model, None if cond is None else cond[sl], None if track is None else track[sl])
            out = process.loss(
                fn,
                data[sl],
                cond=c,
                pad_mask=None if pad_mask is None else pad_mask[sl],
                generator=generator,
            )
            total += float(out.loss)
            count += 1
        return total / max(count, 1)
    finally:
        model.train(was_training)


def _model_name(model: nn.Module, given: Optional[str]) -> str:
    if given:
        return given
    try:  # the registry is the source of names; import lazily, it pulls in every backbone
        from .models import MODELS

        for name, cls in MODELS.items():
            if type(model) is cls:
                return name
    except ImportError:
        pass
    name = getattr(model, "name", None) or type(model).__name__
    logger.warning("model %s is not in ddsm.models.MODELS; recording it as %r", type(model).__name__, name)
    return str(name)


def micro_batch_bounds(batch_size: int, n_micro: int) -> list[tuple[int, int]]:
    """``[(lo, hi), ...]``: the ``n_micro`` contiguous micro-batches of a global batch (the first
    ``batch_size % n_micro`` one longer), as ``torch.tensor_split`` would cut it."""
    if not 1 <= n_micro <= batch_size:
        raise ValueError(f"cannot cut a batch of {batch_size} into {n_micro} non-empty micro-batches")
    base, extra = divmod(batch_size, n_micro)
    bounds, lo = [], 0
    for m in range(n_micro):
        hi = lo + base + (1 if m < extra else 0)
        bounds.append((lo, hi))
        lo = hi
    return bounds


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


class _StopOnSignal:
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

    def __enter__(self) -> "_StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


class _Forward:
    """The callable handed to ``process.loss``: the (DDP-wrapped, maybe compiled) network, its
    forward pass under bf16 autocast when enabled (outputs cast back to float32)."""

    def __init__(self, net: Callable[..., Any], *, takes_state: bool, autocast_device: Optional[str]) -> None:
        self.net, self.takes_state, self.autocast_device = net, takes_state, autocast_device

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.autocast_device is None:
            return self.net(*args, **kwargs)
        with torch.autocast(self.autocast_device, dtype=torch.bfloat16):
            out = self.net(*args, **kwargs)
        return out.float() if isinstance(out, Tensor) and out.is_floating_point() else out


def _maybe_compile(net: Callable[..., Any], device: torch.device, enabled: bool) -> Callable[..., Any]:
    if not enabled:
        return net
    if device.type != "cuda":
        logger.warning("compile=True is only used on CUDA devices; training on %s without compilation", device)
        return net
    return compile_or_eager(net)


# ---------------------------------------------------------------------------------- crash safety
def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # file systems without hard links
        shutil.copy2(src, dst)


def _backup_checkpoint(out: Path) -> None:
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


# ---------------------------------------------------------------------------------- the loop
def train(
    process: "Process",
    model: nn.Module,
    train_data: Tensor,
    *,
    config: TrainConfig,
    valid_data: Optional[Tensor] = None,
    cond_train: Optional[Tensor] = None,
    cond_valid: Optional[Tensor] = None,
    pad_train: Optional[Tensor] = None,
    pad_valid: Optional[Tensor] = None,
    track_train: Optional[Tensor] = None,
    track_valid: Optional[Tensor] = None,
    out_dir: Optional[Union[Path, str]] = None,
    run_meta: Optional[dict[str, Any]] = None,
    resume: bool = False,
    device: Optional[Union[torch.device, str]] = None,
    on_step: Optional[Callable[[int, dict[str, Any]], None]] = None,
    model_name: Optional[str] = None,
) -> dict[str, Any]:
    """Train ``model`` on ``process.loss`` for ``config.steps`` optimiser steps.

    When a ``torch.distributed`` process group with more than one process is open (see
    :func:`ddsm.distributed.init_from_env`), every process must call this with the same arguments:
    the model is wrapped in DistributedDataParallel, each process handles its share of each global
    batch, and only rank 0 validates, logs and writes ``out_dir``; all ranks return the same weights.

    Args:
        process: supplies ``loss(model, x0 (B, L), cond=(B,)|None, pad_mask=(B, L)|None,
            generator=...) -> LossOutput``.
        model: ``forward(x (B, L, C_in), t (B,), cond (B,)|None) -> (B, L, C_out)``; trained in place
            (it ends with the raw weights; the EMA weights are in the checkpoint).
        train_data: ``(N, L)`` long tokens; ``cond_train`` ``(N,)`` long labels; ``pad_train``
            ``(N, L)`` bool, True = real token; ``track_train`` ``(N, L, S)`` float per-position
            signal tracks, concatenated to the process's features (the network must have
            ``in_channels = process.in_channels + S``). Same for the ``*_valid`` tensors.
        config: hyper-parameters (``batch_size`` is the global batch over all processes).
        out_dir: checkpoint folder, written every ``checkpoint_every`` steps, at the end and when
            interrupted by SIGTERM/SIGINT.
        run_meta: extra config.json entries (alphabet, seq_len, classes, seed, data_hash...).
        resume: continue from the checkpoint in ``out_dir`` up to ``config.steps`` (a checkpoint
            whose save was cut short by a crash is first restored, see :func:`recover_checkpoint`).
        device: where to train; default the device of the model's parameters.
        on_step: called as ``on_step(step, info)`` after every step, ``info = {"loss", "lr",
            "grad_norm"}`` plus ``"valid_loss"`` on evaluation steps (the CLI's progress bar).
            ``loss`` is the global batch's loss, the same on every rank.
        model_name: registry name recorded in config.json (default: looked up in ``MODELS``).

    Returns:
        ``{"history": [{step, train_loss, valid_loss, lr, seconds}, ...], "step", "seconds",
        "final_train_loss", "final_valid_loss", "ema"}`` (losses None when not measured; ``ema`` is
        the :class:`EMA` object, whose weights sampling should use).

    Raises:
        FloatingPointError: a non-finite loss or gradient norm, naming the step; the last
            checkpoint in ``out_dir`` (if any) is left as it was.
        TrainingInterrupted: SIGTERM or SIGINT arrived; the step it names was completed and saved.
        DDSMInputError: malformed data, a batch smaller than its micro-batches, or an ``out_dir``
            that cannot be resumed.
    """
    _check_data("training", train_data, cond_train, pad_train, track_train)
    if valid_data is not None:
        _check_data("validation", valid_data, cond_valid, pad_valid, track_valid)
        if (track_valid is None) != (track_train is None):
            raise DDSMInputError("training and validation data must both have signal tracks or neither")
    if resume and out_dir is None:
        raise ValueError("resume=True needs out_dir")
    out = Path(out_dir) if out_dir is not None else None
    meta = dict(run_meta or {})
    name = _model_name(model, model_name) if out is not None else (model_name or "")

    ctx = distributed.current()
    world, rank, main = ctx.world_size, ctx.rank, ctx.is_main
    n_micro = world * config.grad_accum
    if config.batch_size < n_micro:
        raise DDSMInputError(
            f"batch_size {config.batch_size} is smaller than its {n_micro} micro-batches "
            f"({world} process(es) x grad_accum {config.grad_accum})"
        )
    bounds = micro_batch_bounds(config.batch_size, n_micro)
    weights = [(hi - lo) / config.batch_size for lo, hi in bounds]
    mine = [j * world + rank for j in range(config.grad_accum)]  # this rank's micro-batches, in order

    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    x_train, c_train, p_train = train_data.to(device), _to(cond_train, device), _to(pad_train, device)
    x_valid, c_valid, p_valid = _to(valid_data, device), _to(cond_valid, device), _to(pad_valid, device)
    s_train, s_valid = _to(track_train, device), _to(track_valid, device)

    # DDP first: its construction copies rank 0's weights to every rank, before the EMA copies them.
    ddp = distributed.wrap_ddp(model, device) if world > 1 else None
    forward = _Forward(
        _maybe_compile(ddp if ddp is not None else model, device, config.compile),
        takes_state=takes_raw_state(model),
        autocast_device=device.type if config.bf16 else None,
    )
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    ema = EMA(model, config.ema_decay)
    sampler = EpochSampler(x_train.shape[0], config.batch_size, config.seed)
    history: list[dict[str, Any]] = []
    step, seconds_before, run_sum, run_count = 0, 0.0, 0.0, 0
    last_ckpt: Optional[int] = None

    if resume:
        assert out is not None
        if main:
            recover_checkpoint(out)
        distributed.barrier()
        saved_cfg = load_config(out)
        _check_resume(saved_cfg, config, meta, out)
        state = load_training_state(out, model, ema, optimizer)
        step = int(state["step"])
        s = state["sampler"]
        if int(s["n"]) != sampler.n:
            raise DDSMInputError(
                f"cannot resume {out}: it was trained on {s['n']} sequences, this data has {sampler.n}"
            )
        sampler.epoch, sampler.position = int(s["epoch"]), int(s["position"])
        set_rng_state(state["rng"]["global"])
        history = list(state["history"])
        seconds_before = float(state["seconds"])
        run_sum, run_count = float(state["running"]["sum"]), int(state["running"]["count"])
        last_ckpt = step
        saved_split = (state.get("world_size"), state.get("grad_accum"))
        if main and None not in saved_split and saved_split[0] * saved_split[1] != n_micro:
            logger.warning("resuming %s with %d micro-batches per step instead of %d: the noise of the "
                           "remaining steps differs from the uninterrupted run's", out, n_micro,
                           saved_split[0] * saved_split[1])
        if main:
            logger.info("resumed %s at step %d of %d", out, step, config.steps)

    def checkpoint(at: int, seconds: float) -> None:
        assert out is not None
        train_state = {
            "sampler": sampler.state_dict(),
            "rng": {"global": get_rng_state()},
            "history": history,
            "seconds": seconds,
            "running": {"sum": run_sum, "count": run_count},
            "world_size": world,
            "grad_accum": config.grad_accum,
        }
        out.mkdir(parents=True, exist_ok=True)
        _backup_checkpoint(out)
        save_checkpoint(
            out,
            model=model,
            model_name=name,
            process=process,
            ema=ema,
            optimizer=optimizer,
            train_state=train_state,
            config_extra={"train": config.to_dict(), **meta},
            step=at,
        )
        shutil.rmtree(out / BACKUP_DIR, ignore_errors=True)

    def validate() -> float:
        assert x_valid is not None
        with ema.swapped(model):
            return evaluate(
                process, model, x_valid, cond=c_valid, pad_mask=p_valid, track=s_valid,
                batch_size=config.batch_size, max_batches=config.eval_batches,
                generator=make_generator(config.seed + 2, device),
            )

    def micro_loss(m: int, at: int) -> Tensor:
        """Mean loss of micro-batch ``m`` of step ``at``, its randomness seeded from (seed, at, m)."""
        lo, hi = bounds[m]
        sel = idx[lo:hi].to(device)
        with seeded_global_rng(derive_seed(config.seed, _MODEL_STREAM, at, m), device):
            gen = make_generator(derive_seed(config.seed, _NOISE_STREAM, at, m), device)
            cond = None if c_train is None else c_train[sel]
            if cond is not None and config.label_dropout > 0:
                null = int(getattr(model, "n_classes", int(c_train.max()) + 1))
                drop = torch.rand(cond.shape[0], generator=gen, device=device) < config.label_dropout
                cond = torch.where(drop, torch.full_like(cond, null), cond)
            fn, cond = _bind(forward, cond, None if s_train is None else s_train[sel])
            result = process.loss(
                fn, x_train[sel], cond=cond, pad_mask=None if p_train is None else p_train[sel],
                generator=gen,
            )
        return result.loss

    def every(n: int, at: int) -> bool:
        return n > 0 and at % n == 0

    if step >= config.steps and main:
        logger.info("%s is already at step %d (>= %d steps); nothing to train", out, step, config.steps)
    t0 = time.perf_counter()
    model.train()
    if ddp is not None:
        ddp.train()
    with _StopOnSignal() as stop_flag:
        for step in range(step + 1, config.steps + 1):  # step: 1-based count of updates made
            idx = sampler.next()
            lr = lr_at(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            total = torch.zeros((), device=device)
            for j, m in enumerate(mine):
                # DDP averages gradients over ranks: scale by world so the sum of weights is 1.
                syncing = ddp is None or j == len(mine) - 1
                with nullcontext() if syncing else ddp.no_sync():  # type: ignore[union-attr]
                    loss_m = micro_loss(m, step)
                    (loss_m * (weights[m] * world)).backward()
                total = total + loss_m.detach().float() * weights[m]
            signals = [float(signal.SIGTERM in stop_flag.received), float(signal.SIGINT in stop_flag.received)]
            # One collective per step: the global loss and whether any rank was signalled.
            packed = distributed.all_reduce_sum_(torch.cat([total.reshape(1), torch.tensor(signals, device=device)]))
            loss, got_term, got_int = (float(v) for v in packed.tolist())
            if not math.isfinite(loss):
                _non_finite(f"training loss {loss}", step, out, last_ckpt, log=main)
            # max_norm=inf leaves the gradients untouched but still measures them for the check below.
            grad_norm = float(
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip if config.grad_clip > 0 else math.inf)
            )
            if not math.isfinite(grad_norm):
                _non_finite(f"gradient norm {grad_norm}", step, out, last_ckpt, log=main)
            optimizer.step()
            ema.update(model)
            run_sum, run_count = run_sum + loss, run_count + 1

            info: dict[str, Any] = {"loss": loss, "lr": lr, "grad_norm": grad_norm}
            last = step == config.steps
            stopping = (got_term > 0 or got_int > 0) and not last
            evaluating = x_valid is not None and (every(config.eval_every, step) or last)
            if evaluating:
                value = torch.tensor([validate() if main else 0.0], dtype=torch.float64, device=device)
                info["valid_loss"] = float(distributed.broadcast_(value, src=0).item())
            if evaluating or every(config.log_every, step) or last:
                seconds = seconds_before + time.perf_counter() - t0
                record = {
                    "step": step,
                    "train_loss": run_sum / run_count if run_count else None,
                    "valid_loss": info.get("valid_loss"),
                    "lr": lr,
                    "seconds": round(seconds, 3),
                }
                history.append(record)
                run_sum, run_count = 0.0, 0
                if main:
                    logger.info(
                        "step %d/%d  train %.4f  valid %s  lr %.3g  %.1fs", step, config.steps,
                        record["train_loss"],
                        "-" if record["valid_loss"] is None else f"{record['valid_loss']:.4f}", lr, seconds,
                    )
            if out is not None and (every(config.checkpoint_every, step) or last or stopping):
                if main:
                    checkpoint(step, seconds_before + time.perf_counter() - t0)
                last_ckpt = step
            if on_step is not None:
                on_step(step, info)
            if stopping:
                distributed.barrier()  # rank 0's checkpoint is complete before anyone exits
                signum = signal.SIGTERM if got_term > 0 else signal.SIGINT
                where = (f"checkpoint saved in {out}; continue with --resume" if out is not None
                         else "no checkpoint folder was given, nothing was saved")
                msg = f"training interrupted by {signal.Signals(signum).name} after step {step}; {where}"
                if main:
                    logger.info(msg)  # the caller reports the exception; no second warning line
                raise TrainingInterrupted(msg, step=step, signum=signum, checkpoint=out)

    distributed.barrier()  # the final checkpoint is on disk before any rank reads it
    seconds = seconds_before + time.perf_counter() - t0
    train_losses = [h["train_loss"] for h in history if h["train_loss"] is not None]
    valid_losses = [h["valid_loss"] for h in history if h["valid_loss"] is not None]
    return {
        "history": history,
        "step": step,
        "seconds": seconds,
        "final_train_loss": train_losses[-1] if train_losses else None,
        "final_valid_loss": valid_losses[-1] if valid_losses else None,
        "ema": ema,  # the EMA object (not JSON): ``summary["ema"].copy_to(model)`` to use its weights
    }


def _non_finite(what: str, step: int, out: Optional[Path], last_ckpt: Optional[int], *, log: bool = True) -> None:
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


def _check_resume(saved: dict[str, Any], config: TrainConfig, meta: dict[str, Any], out: Path) -> None:
    old = saved.get("train") or {}
    new = config.to_dict()
    fixed = [k for k in _RESUME_FIXED if k in old and old[k] != new[k]]
    if fixed:
        raise DDSMInputError(
            f"cannot resume {out} with a different {', '.join(fixed)} "
            f"(saved {', '.join(f'{k}={old[k]!r}' for k in fixed)}): it would change the data order"
        )
    changed = [k for k in new if k in old and old[k] != new[k] and k not in _RESUME_FREE]
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


__all__ = ["TrainConfig", "train", "evaluate", "lr_at", "EpochSampler", "SCHEDULES", "TrainingInterrupted",
           "micro_batch_bounds", "recover_checkpoint", "BACKUP_DIR"]
