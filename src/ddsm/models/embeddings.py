"""Time and class embeddings shared by all backbones.

Time goes through fixed random Gaussian Fourier features (as in DDSM's score networks) and a small
MLP; the class id looks up a table with one extra row, the "null" class used for unconditional
inputs and classifier-free guidance. The two are summed into one conditioning vector.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn


class GaussianFourierFeatures(nn.Module):
    """``t (B,) -> (B, dim)``: ``[sin(2 pi t w), cos(2 pi t w)]`` with ``w ~ N(0, scale^2)`` fixed.

    The frequencies come from a local generator seeded with 0, so they do not depend on (or
    consume) the global RNG, and they are a persistent buffer so checkpoints carry them.
    """

    def __init__(self, dim: int, scale: float = 30.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"Fourier feature dim must be even, got {dim}")
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("freqs", torch.randn(dim // 2, generator=gen) * scale)

    def forward(self, t: Tensor) -> Tensor:
        angles = 2 * math.pi * t.to(self.freqs.dtype)[:, None] * self.freqs[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class TimeEmbedding(nn.Module):
    """``t (B,) -> (B, dim)``: Fourier features followed by a two-layer MLP."""

    def __init__(self, dim: int, scale: float = 30.0) -> None:
        super().__init__()
        self.fourier = GaussianFourierFeatures(dim, scale)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(self.fourier(t))


class ConditionEmbedding(nn.Module):
    """``(t (B,), cond (B,) | None) -> (B, dim)``: time embedding plus class embedding.

    ``cond`` holds ids in ``[0, n_classes]``; id ``n_classes`` (and ``cond=None``) is the null
    class. With ``use_time=False`` (left-to-right models) ``t`` is accepted but ignored, and no
    time parameters are created so none sit idle without gradients.
    """

    def __init__(self, dim: int, n_classes: int = 0, *, use_time: bool = True) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.time = TimeEmbedding(dim) if use_time else None
        self.classes = nn.Embedding(n_classes + 1, dim)

    def forward(self, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        t = t.reshape(-1)
        if cond is None:
            cond = torch.full(t.shape, self.n_classes, dtype=torch.long, device=t.device)
        emb = self.classes(cond)
        if self.time is not None:
            emb = emb + self.time(t).to(emb.dtype)
        return emb
