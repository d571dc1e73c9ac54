"""Denoising backbones, independent of the corruption process.

Every backbone is ``model(x (B, L, C_in), t (B,), cond (B,) | None) -> (B, L, C_out)``. A new
backbone is one file plus one line in ``MODELS``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .base import Denoiser, RawStateModel, takes_raw_state
from .conv import ConvDenoiser
from .embeddings import ConditionEmbedding, GaussianFourierFeatures, TimeEmbedding
from .mlp import MLPDenoiser
from .sudoku_grid import SudokuDenoiser
from .transformer import KVCache, TransformerDenoiser

#: name (the CLI's ``--model``) -> class
MODELS: dict[str, type[nn.Module]] = {
    "conv": ConvDenoiser,
    "transformer": TransformerDenoiser,
    "mlp": MLPDenoiser,
}

#: backbones of one task's fixed layout (Sudoku: 81 cells x 9 digits, features in digit pairs).
#: Every loader builds them by name like the others, but they are not general sequence backbones:
#: ``ddsm train --model`` does not offer them and the backbone contract test does not apply.
TASK_MODELS: dict[str, type[nn.Module]] = {
    "sudoku": SudokuDenoiser,
}

#: every name a checkpoint's ``model.name`` may hold
ALL_MODELS: dict[str, type[nn.Module]] = {**MODELS, **TASK_MODELS}


def build_model(
    name: str, in_channels: int, out_channels: int, n_classes: int = 0, **kwargs: Any
) -> nn.Module:
    """Instantiate a registered backbone; ``build_model(name, **model.config())`` rebuilds one."""
    if name not in ALL_MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(ALL_MODELS))}")
    return ALL_MODELS[name](in_channels, out_channels, n_classes, **kwargs)


__all__ = [
    "MODELS",
    "TASK_MODELS",
    "ALL_MODELS",
    "build_model",
    "Denoiser",
    "RawStateModel",
    "takes_raw_state",
    "ConvDenoiser",
    "TransformerDenoiser",
    "MLPDenoiser",
    "SudokuDenoiser",
    "KVCache",
    "ConditionEmbedding",
    "GaussianFourierFeatures",
    "TimeEmbedding",
]
