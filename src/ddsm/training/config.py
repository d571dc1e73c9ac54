"""The one training configuration and its learning-rate schedule.

Every run, whatever it trains (a DNA model on a tensor data set, the Sudoku denoiser on a stream
of generated grids), is described by a :class:`TrainConfig`; its dict form is saved as ``"train"``
in config.json.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

SCHEDULES = ("constant", "cosine")

#: TrainConfig fields that may change between a run and its resumption without affecting the
#: weights trained so far (the others are reported; batch_size and seed change the data order).
RESUME_FREE = ("steps", "cooldown_steps", "log_every", "eval_every", "eval_batches", "checkpoint_every",
               "checkpoint_minutes", "minutes", "grad_accum", "compile")
RESUME_FIXED = ("batch_size", "seed")


@dataclass
class TrainConfig:
    """Training hyper-parameters.

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
        checkpoint_minutes: also save when this many wall-clock minutes have passed since the last
            save (long CPU runs that may be killed); 0: off.
        seed: seeds everything: the data order, the per-micro-batch noise and model randomness,
            validation (seed + 2).
        log_every: record the mean training loss every this many steps; 0: only at evaluations.
        schedule: ``"constant"`` or ``"cosine"`` (to ``lr_floor * lr`` at ``steps``) after the
            warm-up.
        lr_floor: the cosine's final learning rate as a fraction of ``lr`` (Sudoku: 0.1).
        cooldown_steps: with the constant schedule, fall linearly to 0 over the last this many
            steps before ``steps`` (warm-up, stable, decay). A run is extended at constant rate and
            cooled down only at its end, so a long run keeps the annealing gain without fixing
            its length in advance: resume a pre-cooldown checkpoint with a larger ``steps`` and
            ``cooldown_steps`` set. 0: no cooldown.
        minutes: wall-clock limit of this invocation in minutes; training stops at the end of the
            step that passes it and saves a resumable checkpoint. 0: none.
        clock_schedule: with ``minutes`` and the cosine schedule, the cosine also ends at
            ``minutes`` when that comes before ``steps`` (a run cut by the clock still ends at a
            low learning rate). Off for a long run carried over several invocations.
        label_dropout: with class labels, the probability that a training label is replaced by the
            null class (id ``n_classes``), so one network learns the conditional and the
            unconditional model that classifier-free guidance combines.
        grad_accum: micro-batches per process and step; the global batch (``batch_size``) is cut
            into ``world_size * grad_accum`` micro-batches, so memory per forward pass shrinks and
            the update stays that of the whole batch.
        bf16: run the network's forward pass under ``torch.autocast(dtype=torch.bfloat16)``; the
            loss is computed in float32.
        compile: ``torch.compile`` the network's forward (CPU or GPU; on a CPU it needs a C++
            compiler and pays for long runs only; a compilation failure falls back to eager mode
            with a warning).
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
    checkpoint_minutes: float = 0.0
    seed: int = 0
    log_every: int = 50
    schedule: str = "constant"
    lr_floor: float = 0.0
    cooldown_steps: int = 0
    minutes: float = 0.0
    clock_schedule: bool = False
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
        if self.minutes < 0 or self.checkpoint_minutes < 0:
            raise ValueError("TrainConfig.minutes and checkpoint_minutes must be >= 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must lie in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.label_dropout < 1.0:
            raise ValueError(f"TrainConfig.label_dropout must lie in [0, 1), got {self.label_dropout}")
        if not 0.0 <= self.lr_floor <= 1.0:
            raise ValueError(f"TrainConfig.lr_floor must lie in [0, 1], got {self.lr_floor}")
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


def lr_at(step: int, config: TrainConfig, elapsed: float = 0.0) -> float:
    """Learning rate for the ``step``-th update (1-based): linear warm-up, then constant (with an
    optional linear cooldown to 0 over the last ``cooldown_steps``) or cosine to
    ``lr_floor * lr``. ``elapsed``: seconds since this invocation started (``clock_schedule``)."""
    # a cooldown that overlaps the warm-up (short runs) multiplies it
    cool = 1.0
    if config.cooldown_steps > 0:
        # step == steps gets lr / cooldown_steps, not 0: the last update still moves the weights.
        cool = min(1.0, max(0.0, (config.steps - step + 1) / config.cooldown_steps))
    if config.warmup_steps > 0 and step <= config.warmup_steps:
        return config.lr * step / config.warmup_steps * cool
    if config.schedule == "cosine":
        span = max(1, config.steps - config.warmup_steps)
        progress = (step - config.warmup_steps) / span
        if config.clock_schedule and config.minutes > 0:
            progress = max(progress, elapsed / (60.0 * config.minutes))
        progress = min(1.0, progress)
        floor = config.lr_floor
        return config.lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))
    return config.lr * cool
