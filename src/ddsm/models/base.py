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


class RawStateModel:
    """Mixin declaring that a model is called on the process's *raw state*, ``model(xt, t, cond)``,
    instead of the features ``process.model_input(xt, t)``.

    For exact oracles (the contract tests) and wrappers that call the network through the process
    themselves (``ddsm.processes.masked.CachedDenoiser``). The declaration is the class attribute
    ``takes_state = True``; read it with :func:`takes_raw_state`, never by probing the object.
    """

    #: the declared capability; a wrapper may set it per instance to forward its inner model's
    takes_state: ClassVar[bool] = True


def takes_raw_state(model: object) -> bool:
    """Whether ``model`` is declared to take the raw state (see :class:`RawStateModel`).

    True only when its ``takes_state`` attribute is exactly ``True`` (declared by
    :class:`RawStateModel`, by a class attribute of that name, or set per instance by a wrapper
    that forwards its inner model's declaration); any other object, a backbone included, takes
    features.
    """
    return getattr(model, "takes_state", False) is True


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
