"""Pre-LN transformer with adaLN time/class conditioning, optional causal mask and a KV cache.

Two hooks for callers and subclasses:

- ``attention_bias(L, device)`` returns an additive logit bias ``(L, L)`` or ``(n_heads, L, L)``
  (or None). It is added to the attention logits of every layer, on top of the causal mask. The
  built-in option ``attn_bias="alibi"`` gives ALiBi distance penalties; override it for anything
  else (structure priors, Sudoku constraints...).
- ``forward_step(x_new, pos, cache, cond)`` runs a causal model incrementally: feed the tokens at
  positions ``pos .. pos+T-1`` and get their outputs plus the updated ``KVCache``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Denoiser, upcast
from .embeddings import ConditionEmbedding

_ATTN_BIASES = (None, "alibi")


@dataclass
class KVCache:
    """Keys and values of every layer for the positions seen so far, each ``(B, H, S, d_head)``."""

    layers: list[tuple[Tensor, Tensor]] = field(default_factory=list)

    @property
    def length(self) -> int:
        """Number of cached positions S."""
        return self.layers[0][0].shape[2] if self.layers else 0


def _modulate(h: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    # (1 + scale) so that a zero modulation is the identity.
    return h * (1 + scale) + shift


class _SelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(
        self,
        h: Tensor,
        mask: Optional[Tensor],
        is_causal: bool,
        past: Optional[tuple[Tensor, Tensor]] = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """h: ``(B, T, D)``; mask broadcastable to ``(B, H, T, S)`` -> ``(B, T, D)``, (k, v)."""
        B, T, D = h.shape
        q, k, v = self.qkv(h).view(B, T, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
        )
        return self.proj(out.transpose(1, 2).reshape(B, T, D)), (k, v)


class _Block(nn.Module):
    """Pre-LN block; LayerNorm shift/scale come from the conditioning vector (adaLN)."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model, elementwise_affine=False)
        self.attn = _SelfAttention(d_model, n_heads, dropout)
        self.norm2 = nn.LayerNorm(d_model, elementwise_affine=False)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, mlp_ratio * d_model),
            nn.GELU(),
            nn.Linear(mlp_ratio * d_model, d_model),
        )
        self.ada = nn.Linear(d_model, 4 * d_model)
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        h: Tensor,
        c: Tensor,
        mask: Optional[Tensor],
        is_causal: bool,
        past: Optional[tuple[Tensor, Tensor]] = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        shift1, scale1, shift2, scale2 = self.ada(c)[:, None, :].chunk(4, dim=-1)
        a, kv = self.attn(_modulate(self.norm1(h), shift1, scale1), mask, is_causal, past)
        h = h + self.drop(a)
        h = h + self.drop(self.mlp(_modulate(self.norm2(h), shift2, scale2)))
        return h, kv


class TransformerDenoiser(Denoiser):
    """Bidirectional (or causal) pre-LN transformer with learned positions and adaLN conditioning.

    With ``causal=True`` it is a left-to-right model: position i sees positions <= i only, and
    ``t`` is accepted but ignored (only the class conditions it).
    """

    description = "pre-LN transformer with adaLN conditioning (bidirectional or causal)"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_classes: int = 0,
        *,
        d_model: int = 128,
        n_layers: int = 4,
        n_heads: int = 4,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
        max_len: int = 1024,
        causal: bool = False,
        attn_bias: Optional[str] = None,
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        if attn_bias not in _ATTN_BIASES:
            raise ValueError(f"unknown attn_bias {attn_bias!r}; known: {_ATTN_BIASES}")
        self.in_channels, self.out_channels, self.n_classes = in_channels, out_channels, n_classes
        self.d_model, self.n_layers, self.n_heads = d_model, n_layers, n_heads
        self.mlp_ratio, self.dropout, self.max_len = mlp_ratio, dropout, max_len
        self.causal, self.attn_bias = causal, attn_bias

        self.embed = ConditionEmbedding(d_model, n_classes, use_time=not causal)
        self.in_proj = nn.Linear(in_channels, d_model)
        self.pos_emb = nn.Parameter(0.02 * torch.randn(max_len, d_model))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            _Block(d_model, n_heads, mlp_ratio, dropout) for _ in range(n_layers)
        )
        self.out_norm = nn.LayerNorm(d_model, elementwise_affine=False)
        self.out_ada = nn.Linear(d_model, 2 * d_model)
        self.out_proj = nn.Linear(d_model, out_channels)

    # -- hooks -------------------------------------------------------------------------------

    def attention_bias(self, L: int, device: torch.device) -> Optional[Tensor]:
        """Additive attention-logit bias ``(L, L)`` or ``(n_heads, L, L)``, or None for none.

        Row i is the query position, column j the key position. Override in a subclass to impose
        structure; the causal mask (if any) is added on top, so the bias need not repeat it.
        """
        if self.attn_bias == "alibi":
            # Per-head linear distance penalty with geometric slopes 2^(-8 h / H), h = 1..H.
            slopes = 2.0 ** (-8.0 * torch.arange(1, self.n_heads + 1, device=device) / self.n_heads)
            pos = torch.arange(L, device=device)
            dist = (pos[:, None] - pos[None, :]).abs()
            return -slopes[:, None, None] * dist
        return None

    # -- internals ---------------------------------------------------------------------------

    def _mask(
        self, q0: int, T: int, S: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[Optional[Tensor], bool]:
        """Additive mask for queries ``q0 .. q0+T-1`` over keys ``0 .. S-1``, and an is_causal flag.

        Returns a mask broadcastable to ``(B, H, T, S)`` (or None) and whether SDPA's own causal
        path can be used instead (no bias, full square attention: the fused kernels stay usable).
        """
        bias = self.attention_bias(S, device)
        if bias is None and self.causal and q0 == 0 and T == S:
            return None, True
        mask = None if bias is None else bias[..., q0 : q0 + T, :S].to(dtype)
        if self.causal and T > 1:  # a single newest query sees every cached key: nothing to hide
            rows = torch.arange(q0, q0 + T, device=device)[:, None]
            future = torch.zeros(T, S, device=device, dtype=dtype)
            future = future.masked_fill(torch.arange(S, device=device)[None, :] > rows, -math.inf)
            mask = future if mask is None else mask + future
        return mask, False

    def _check_len(self, end: int) -> None:
        if end > self.max_len:
            raise ValueError(f"sequence length {end} exceeds max_len={self.max_len}")

    def _head(self, h: Tensor, c: Tensor) -> Tensor:
        # float32 under bf16 autocast too: logits carry a free constant per position that training
        # does not hold, and once it drifts a bf16 head rounds the differences that matter
        # (docs/design.md, "Precision")
        with torch.autocast(h.device.type, enabled=False):
            shift, scale = self.out_ada(upcast(c))[:, None, :].chunk(2, dim=-1)
            return self.out_proj(_modulate(self.out_norm(upcast(h)), shift, scale))

    # -- public API --------------------------------------------------------------------------

    def forward(self, x: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        """x: ``(B, L, in_channels)``; t: ``(B,)``; cond: ``(B,)`` or None -> ``(B, L, out)``."""
        L = x.shape[1]
        self._check_len(L)
        c = F.silu(self.embed(t, cond))  # (B, d_model)
        h = self.drop(self.in_proj(x) + self.pos_emb[:L])
        mask, is_causal = self._mask(0, L, L, x.device, h.dtype)
        for block in self.blocks:
            h, _ = block(h, c, mask, is_causal)
        return self._head(h, c)

    def forward_step(
        self,
        x_new: Tensor,
        pos: int,
        cache: Optional[KVCache] = None,
        cond: Optional[Tensor] = None,
    ) -> tuple[Tensor, KVCache]:
        """Incremental causal decoding.

        Args:
            x_new: ``(B, T, in_channels)`` inputs at positions ``pos .. pos+T-1`` (T=1 per step;
                T>1 pre-fills a prompt).
            pos: position of ``x_new[:, 0]``; must equal ``cache.length`` (0 with no cache).
            cache: keys/values from earlier calls, or None to start.
            cond: ``(B,)`` class ids or None (null class).

        Returns:
            ``(B, T, out_channels)`` outputs, equal to ``forward`` on the whole prefix restricted to
            these positions, and the extended cache (the input cache is not modified).
        """
        if not self.causal:
            raise RuntimeError("forward_step needs causal=True (a bidirectional model has no cache)")
        cache = cache if cache is not None else KVCache()
        if pos != cache.length:
            raise ValueError(f"pos={pos} but the cache holds {cache.length} positions")
        B, T, _ = x_new.shape
        self._check_len(pos + T)
        # t is ignored by a causal model; a dummy keeps the embedding's batch size right.
        t = torch.zeros(B, device=x_new.device)
        c = F.silu(self.embed(t, cond))
        h = self.drop(self.in_proj(x_new) + self.pos_emb[pos : pos + T])
        mask, is_causal = self._mask(pos, T, pos + T, x_new.device, h.dtype)
        layers = []
        for i, block in enumerate(self.blocks):
            h, kv = block(h, c, mask, is_causal, cache.layers[i] if cache.layers else None)
            layers.append(kv)
        return self._head(h, c), KVCache(layers)
