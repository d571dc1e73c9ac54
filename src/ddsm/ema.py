"""Exponential moving average of a model's weights.

Sampling from the EMA weights gives markedly better samples for diffusion models than the raw
weights at the same step, so checkpoints store the EMA copy as ``model.safetensors``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import Tensor, nn


class EMA:
    """Shadow copy of a model's ``state_dict``: floating parameters averaged, the rest copied.

    After the n-th call to :meth:`update` (n counted from 0) the shadow is
    ``shadow = d * shadow + (1 - d) * param`` with ``d = min(decay, (1 + n) / (10 + n))``: the
    warm-up keeps the average from being dominated by the random initialisation early on.
    Buffers (BatchNorm statistics, integer counters) and non-floating parameters are copied, not
    averaged: averaging running statistics of different weights is meaningless.

    Args:
        model: the model to track; the shadow starts as a copy of its current state.
        decay: the asymptotic decay in [0, 1); 0 makes the shadow equal the raw weights.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow: dict[str, Tensor] = {
            k: v.detach().clone() for k, v in model.state_dict().items()
        }
        self._averaged = self._averaged_names(model)

    @staticmethod
    def _averaged_names(model: nn.Module) -> set[str]:
        # Tied parameters appear once per name in state_dict; remove_duplicate=False lists them all.
        return {
            name
            for name, p in model.named_parameters(remove_duplicate=False)
            if p.is_floating_point()
        }

    def effective_decay(self) -> float:
        """The decay the next :meth:`update` will use."""
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the shadow (call after each optimiser step)."""
        d = self.effective_decay()
        state = model.state_dict()
        self._check_names(state)
        for name, value in state.items():
            s = self.shadow[name]
            if name in self._averaged:
                # lerp: s + (1 - d) * (value - s) = d * s + (1 - d) * value
                s.lerp_(value.detach().to(s.dtype), 1.0 - d)
            else:
                s.copy_(value)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's weights and buffers with the shadow."""
        self._check_names(model.state_dict())
        model.load_state_dict(self.shadow, strict=True)

    @contextmanager
    def swapped(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the EMA weights into ``model``; the raw weights are restored on exit,
        bit for bit, even when the body raises."""
        backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                model.load_state_dict(backup, strict=True)

    def to(self, device: torch.device | str) -> "EMA":
        """Move the shadow to ``device`` (in place); returns self."""
        self.shadow = {k: v.to(device) for k, v in self.shadow.items()}
        return self

    def state_dict(self) -> dict[str, Any]:
        """``{"decay": float, "num_updates": int, "shadow": {name: Tensor}}``."""
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": dict(self.shadow)}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; ``decay`` is optional (kept when absent).

        Raises:
            ValueError: the shadow's names or shapes differ from the tracked model's.
        """
        shadow = state["shadow"]
        self._check_names(shadow)
        for name, value in shadow.items():
            if tuple(value.shape) != tuple(self.shadow[name].shape):
                raise ValueError(
                    f"EMA weight {name!r} has shape {tuple(value.shape)}, "
                    f"expected {tuple(self.shadow[name].shape)}"
                )
            self.shadow[name].copy_(value)
        self.num_updates = int(state["num_updates"])
        if "decay" in state:
            self.decay = float(state["decay"])

    def _check_names(self, names: Any) -> None:
        missing = [k for k in self.shadow if k not in names]
        extra = [k for k in names if k not in self.shadow]
        if missing or extra:
            what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
            raise ValueError(f"EMA does not match the model: {what}")


__all__ = ["EMA"]
