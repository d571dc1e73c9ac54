"""The training loop: AdamW, warm-up + constant/cosine learning rate, clipping, EMA, resume.

One readable loop (nanoGPT style). The process supplies the loss, the model is any backbone, and
the data are whole tensors prepared once. All randomness is explicit:

- data order: epoch ``e`` is a permutation drawn from a generator seeded from ``(seed, e)``, so the
  sampler's whole state is ``(epoch, position)``;
- the process's noise (times, corruption): a generator seeded with ``seed + 1``, saved with the
  checkpoint;
- validation: a generator seeded with ``seed + 2`` afresh at every evaluation, so successive
  validation losses differ only through the weights;
- dropout inside the model draws from torch's global generator, whose state is saved too and
  restored on resume.

With these, a run that is interrupted and resumed ends with exactly the weights of an
uninterrupted run on CPU (on GPUs, non-deterministic kernels may differ in the last bits).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from .checkpoint import load_config, load_training_state, save_checkpoint
from .ema import EMA
from .errors import DDSMInputError
from .seeding import get_rng_state, make_generator, set_rng_state

if TYPE_CHECKING:  # avoid importing every process just to train one
    from .processes.base import Process

logger = logging.getLogger(__name__)

SCHEDULES = ("constant", "cosine")

#: TrainConfig fields that may change between a run and its resumption without affecting the
#: weights trained so far (the others are reported; batch_size and seed change the data order).
_RESUME_FREE = ("steps", "log_every", "eval_every", "eval_batches", "checkpoint_every")
_RESUME_FIXED = ("batch_size", "seed")


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
        seed: seeds the data order (seed), the process noise (seed + 1), validation (seed + 2).
        log_every: record the mean training loss every this many steps; 0: only at evaluations.
        schedule: ``"constant"`` or ``"cosine"`` (to 0 at ``steps``) after the warm-up.
        label_dropout: with class labels, the probability that a training label is replaced by the
            null class (id ``n_classes``), so one network learns the conditional and the
            unconditional model that classifier-free guidance combines.
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
    label_dropout: float = 0.1

    def __post_init__(self) -> None:
        for name in ("steps", "warmup_steps", "eval_every", "checkpoint_every", "log_every", "seed"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "eval_batches"):
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
    """Learning rate for the ``step``-th update (1-based): linear warm-up, then constant or cosine."""
    if config.warmup_steps > 0 and step <= config.warmup_steps:
        return config.lr * step / config.warmup_steps
    if config.schedule == "cosine":
        span = max(1, config.steps - config.warmup_steps)
        progress = min(1.0, (step - config.warmup_steps) / span)
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.lr


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
        gen = make_generator(mixed % (2**63))
        return torch.randperm(self.n, generator=gen)

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


def _check_data(name: str, data: Tensor, cond: Optional[Tensor], pad: Optional[Tensor]) -> None:
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


def _to(t: Optional[Tensor], device: torch.device) -> Optional[Tensor]:
    return None if t is None else t.to(device)


@torch.no_grad()
def evaluate(
    process: "Process",
    model: nn.Module,
    data: Tensor,
    *,
    cond: Optional[Tensor] = None,
    pad_mask: Optional[Tensor] = None,
    batch_size: int,
    max_batches: int,
    generator: Optional[torch.Generator] = None,
) -> float:
    """Mean training loss of ``model`` (as it is: swap in EMA weights first if wanted) over the first
    ``max_batches`` batches of ``data (N, L)`` in order, in eval mode.

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
            out = process.loss(
                model,
                data[sl],
                cond=None if cond is None else cond[sl],
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
    out_dir: Optional[Union[Path, str]] = None,
    run_meta: Optional[dict[str, Any]] = None,
    resume: bool = False,
    device: Optional[Union[torch.device, str]] = None,
    on_step: Optional[Callable[[int, dict[str, Any]], None]] = None,
    model_name: Optional[str] = None,
) -> dict[str, Any]:
    """Train ``model`` on ``process.loss`` for ``config.steps`` optimiser steps.

    Args:
        process: supplies ``loss(model, x0 (B, L), cond=(B,)|None, pad_mask=(B, L)|None,
            generator=...) -> LossOutput``.
        model: ``forward(x (B, L, C_in), t (B,), cond (B,)|None) -> (B, L, C_out)``; trained in place
            (it ends with the raw weights; the EMA weights are in the checkpoint).
        train_data: ``(N, L)`` long tokens; ``cond_train`` ``(N,)`` long labels; ``pad_train``
            ``(N, L)`` bool, True = real token. Same for the ``*_valid`` tensors.
        config: hyper-parameters.
        out_dir: checkpoint folder, written every ``checkpoint_every`` steps and at the end.
        run_meta: extra config.json entries (alphabet, seq_len, classes, seed, data_hash...).
        resume: continue from the checkpoint in ``out_dir`` up to ``config.steps``.
        device: where to train; default the device of the model's parameters.
        on_step: called as ``on_step(step, info)`` after every step, ``info = {"loss", "lr",
            "grad_norm"}`` plus ``"valid_loss"`` on evaluation steps (the CLI's progress bar).
        model_name: registry name recorded in config.json (default: looked up in ``MODELS``).

    Returns:
        ``{"history": [{step, train_loss, valid_loss, lr, seconds}, ...], "step", "seconds",
        "final_train_loss", "final_valid_loss", "ema"}`` (losses None when not measured; ``ema`` is
        the :class:`EMA` object, whose weights sampling should use).

    Raises:
        FloatingPointError: a non-finite loss or gradient norm, naming the step; the last
            checkpoint in ``out_dir`` (if any) is left as it was.
        DDSMInputError: malformed data, or an ``out_dir`` that cannot be resumed.
    """
    _check_data("training", train_data, cond_train, pad_train)
    if valid_data is not None:
        _check_data("validation", valid_data, cond_valid, pad_valid)
    if resume and out_dir is None:
        raise ValueError("resume=True needs out_dir")
    out = Path(out_dir) if out_dir is not None else None
    meta = dict(run_meta or {})
    name = _model_name(model, model_name) if out is not None else (model_name or "")

    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    x_train, c_train, p_train = train_data.to(device), _to(cond_train, device), _to(pad_train, device)
    x_valid, c_valid, p_valid = _to(valid_data, device), _to(cond_valid, device), _to(pad_valid, device)

    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    ema = EMA(model, config.ema_decay)
    sampler = EpochSampler(x_train.shape[0], config.batch_size, config.seed)
    noise_gen = make_generator(config.seed + 1, device)
    history: list[dict[str, Any]] = []
    step, seconds_before, run_sum, run_count = 0, 0.0, 0.0, 0
    last_ckpt: Optional[int] = None

    if resume:
        assert out is not None
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
        noise_gen.set_state(state["rng"]["noise"])
        set_rng_state(state["rng"]["global"])
        history = list(state["history"])
        seconds_before = float(state["seconds"])
        run_sum, run_count = float(state["running"]["sum"]), int(state["running"]["count"])
        last_ckpt = step
        logger.info("resumed %s at step %d of %d", out, step, config.steps)

    def checkpoint(at: int, seconds: float) -> None:
        assert out is not None
        train_state = {
            "sampler": sampler.state_dict(),
            "rng": {"noise": noise_gen.get_state(), "global": get_rng_state()},
            "history": history,
            "seconds": seconds,
            "running": {"sum": run_sum, "count": run_count},
        }
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

    def validate() -> float:
        assert x_valid is not None
        with ema.swapped(model):
            return evaluate(
                process, model, x_valid, cond=c_valid, pad_mask=p_valid,
                batch_size=config.batch_size, max_batches=config.eval_batches,
                generator=make_generator(config.seed + 2, device),
            )

    def every(n: int, at: int) -> bool:
        return n > 0 and at % n == 0

    if step >= config.steps:
        logger.info("%s is already at step %d (>= %d steps); nothing to train", out, step, config.steps)
    t0 = time.perf_counter()
    model.train()
    for step in range(step + 1, config.steps + 1):  # step: 1-based count of updates made
        idx = sampler.next().to(device)
        lr = lr_at(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        cond = None if c_train is None else c_train[idx]
        if cond is not None and config.label_dropout > 0:
            null = int(getattr(model, "n_classes", int(c_train.max()) + 1))
            drop = torch.rand(cond.shape[0], generator=noise_gen).to(cond.device) < config.label_dropout
            cond = torch.where(drop, torch.full_like(cond, null), cond)
        result = process.loss(
            model,
            x_train[idx],
            cond=cond,
            pad_mask=None if p_train is None else p_train[idx],
            generator=noise_gen,
        )
        loss = float(result.loss.detach())
        if not math.isfinite(loss):
            _non_finite(f"training loss {loss}", step, out, last_ckpt)
        optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        # max_norm=inf leaves the gradients untouched but still measures them for the check below.
        grad_norm = float(
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip if config.grad_clip > 0 else math.inf)
        )
        if not math.isfinite(grad_norm):
            _non_finite(f"gradient norm {grad_norm}", step, out, last_ckpt)
        optimizer.step()
        ema.update(model)
        run_sum, run_count = run_sum + loss, run_count + 1

        info: dict[str, Any] = {"loss": loss, "lr": lr, "grad_norm": grad_norm}
        last = step == config.steps
        evaluating = x_valid is not None and (every(config.eval_every, step) or last)
        if evaluating:
            info["valid_loss"] = validate()
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
            logger.info(
                "step %d/%d  train %.4f  valid %s  lr %.3g  %.1fs", step, config.steps,
                record["train_loss"], "-" if record["valid_loss"] is None else f"{record['valid_loss']:.4f}",
                lr, seconds,
            )
        if out is not None and (every(config.checkpoint_every, step) or last):
            checkpoint(step, seconds_before + time.perf_counter() - t0)
            last_ckpt = step
        if on_step is not None:
            on_step(step, info)

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


def _non_finite(what: str, step: int, out: Optional[Path], last_ckpt: Optional[int]) -> None:
    if out is not None and last_ckpt is not None:
        where = f"; the last good checkpoint (step {last_ckpt}) is in {out}"
    elif out is not None:
        where = f"; no checkpoint was written to {out} yet"
    else:
        where = ""
    msg = f"non-finite {what} at step {step}{where} (try a lower lr or stronger grad_clip)"
    logger.error(msg)
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
    if "data_hash" in meta and "data_hash" in saved and meta["data_hash"] != saved["data_hash"]:
        raise DDSMInputError(
            f"cannot resume {out}: it was trained on data with hash {saved['data_hash']}, "
            f"this data has {meta['data_hash']}"
        )


__all__ = ["TrainConfig", "train", "evaluate", "lr_at", "EpochSampler", "SCHEDULES"]
