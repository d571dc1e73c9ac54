"""Dilated residual 1-D CNN, a scaled-down cousin of DDSM's promoter "ScoreNet"."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Denoiser, upcast
from .embeddings import ConditionEmbedding


def _same_padding(kernel_size: int, dilation: int) -> tuple[int, int]:
    """Left and right padding of PyTorch's ``padding="same"`` (stride 1)."""
    total = dilation * (kernel_size - 1)
    return total // 2, total - total // 2


class _ConvBlock(nn.Module):
    """``h (B, L, C), c (B, C) -> (B, L, C)``: conv, + dense(c), LayerNorm, GELU, residual."""

    def __init__(self, hidden: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        # 'same' padding keeps L for any length, even L shorter than the receptive field.
        self.conv = nn.Conv1d(hidden, hidden, kernel_size, dilation=dilation, padding="same")
        self.dense = nn.Linear(hidden, hidden)
        # Per-position LayerNorm: statistics do not depend on L, on padding or on the batch.
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        # The conv runs as a height-1 conv2d in channels-last layout: (B, L, C) memory *is* a
        # channels-last (B, C, 1, L) tensor, so nothing is copied on the way in or out, and the
        # CPU's channels-last kernels (oneDNN) are ~1.5-2x faster than conv1d on the transposed,
        # non-contiguous input (bench/conv_layout.py). Same weights, same maths as ``self.conv``.
        conv = self.conv
        x = h.transpose(1, 2).unsqueeze(2)
        w = conv.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        d = conv.dilation[0]
        left, right = _same_padding(conv.kernel_size[0], d)
        if left != right:  # even kernel, odd dilation: 'same' pads one more on the right
            x, left = F.pad(x, (left, right)), 0
        y = F.conv2d(x, w, conv.bias, padding=(0, left), dilation=(1, d))
        y = y.squeeze(2).transpose(1, 2)  # (B, L, C), contiguous
        y = y + self.dense(c)[:, None, :]
        return h + self.drop(F.gelu(self.norm(y)))


class ConvDenoiser(Denoiser):
    """Linear input projection, residual dilated conv blocks, linear output projection.

    Block ``i`` uses dilation ``dilations[i % len(dilations)]``. Time and class enter every block as
    a per-channel additive term.
    """

    description = "dilated residual 1-D CNN (DDSM ScoreNet style)"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_classes: int = 0,
        *,
        hidden: int = 128,
        n_blocks: int = 10,
        kernel_size: int = 9,
        dilations: Sequence[int] = (1, 1, 4, 16, 64),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.n_classes = in_channels, out_channels, n_classes
        self.hidden, self.n_blocks, self.kernel_size = hidden, n_blocks, kernel_size
        self.dilations, self.dropout = tuple(dilations), dropout

        self.embed = ConditionEmbedding(hidden, n_classes)
        self.in_proj = nn.Linear(in_channels, hidden)
        self.blocks = nn.ModuleList(
            _ConvBlock(hidden, kernel_size, self.dilations[i % len(self.dilations)], dropout)
            for i in range(n_blocks)
        )
        self.out_norm = nn.LayerNorm(hidden)
        self.out_proj = nn.Linear(hidden, out_channels)

    def forward(self, x: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        """x: ``(B, L, in_channels)``; t: ``(B,)``; cond: ``(B,)`` or None -> ``(B, L, out)``."""
        c = F.silu(self.embed(t, cond))  # (B, hidden)
        h = self.in_proj(x)
        for block in self.blocks:
            h = block(h, c)
        with torch.autocast(h.device.type, enabled=False):  # float32 head: see TransformerDenoiser._head
            return self.out_proj(self.out_norm(upcast(h)))
