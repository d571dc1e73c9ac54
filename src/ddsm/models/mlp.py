"""A tiny per-position MLP with a mean-pooled mixing term: cheap enough for fast tests."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Denoiser, upcast
from .embeddings import ConditionEmbedding


class MLPDenoiser(Denoiser):
    """Per-position MLP; each position also sees the sequence mean, so positions interact."""

    description = "tiny per-position MLP with mean-pooled sequence mixing (for tests)"

    def __init__(
        self, in_channels: int, out_channels: int, n_classes: int = 0, *, hidden: int = 64
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.n_classes = in_channels, out_channels, n_classes
        self.hidden = hidden
        self.embed = ConditionEmbedding(hidden, n_classes)
        self.in_proj = nn.Linear(in_channels, hidden)
        self.mix = nn.Linear(2 * hidden, hidden)
        self.out_proj = nn.Linear(hidden, out_channels)

    def forward(self, x: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        """x: ``(B, L, in_channels)``; t: ``(B,)``; cond: ``(B,)`` or None -> ``(B, L, out)``."""
        h = F.gelu(self.in_proj(x))  # (B, L, hidden)
        pooled = h.mean(dim=1, keepdim=True).expand_as(h)
        h = self.mix(torch.cat([h, pooled], dim=-1)) + self.embed(t, cond)[:, None, :]
        with torch.autocast(h.device.type, enabled=False):  # float32 head: see TransformerDenoiser._head
            return self.out_proj(F.gelu(upcast(h)))
