"""The contract every denoising backbone implements, and its config round trip.

A backbone maps features ``x (B, L, C_in)``, public time ``t (B,)`` in [0, 1] and optional class
ids ``cond (B,)`` to ``(B, L, C_out)``. It knows nothing about the corruption process: input
adapters and the process decide what the channels mean.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, Optional

import torch
from torch import Tensor, nn


def _jsonable(value: Any) -> Any:
    # Tuples are the natural default for sequence kwargs, but JSON only knows lists.
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def upcast(x: Tensor) -> Tensor:
    """``x`` in float32 if autocast left it in a 16-bit type, else unchanged (a float64 model stays
    float64): for output layers that run with autocast disabled."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class Denoiser(nn.Module):
    """Base class: ``forward(x, t, cond) -> output`` plus ``config()``.

    The constructor signature *is* the config: every ``__init__`` argument must be stored on the
    instance under its own name, so ``config()`` can read it back and ``build_model`` can rebuild
    the same architecture for a checkpoint.
    """

    #: one line for the CLI and the docs
    description: ClassVar[str] = ""

    def forward(self, x: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        """x: ``(B, L, in_channels)``; t: ``(B,)``; cond: ``(B,)`` long or None -> ``(B, L, out)``."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """All constructor arguments, JSON-serialisable: ``type(self)(**self.config())`` rebuilds."""
        params = inspect.signature(type(self).__init__).parameters.values()
        names = [
            p.name
            for p in params
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        return {name: _jsonable(getattr(self, name)) for name in names}
