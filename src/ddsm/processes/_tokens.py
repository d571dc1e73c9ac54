"""Shared pieces of the token-state processes (masked diffusion, discrete flow matching).

Nothing here is a process: one-hot network features, point-mass logits (the SUBS carry-over),
float64 categorical draws of the "jump to a posterior sample" update, and the stratified time
draws of Monte-Carlo ELBOs.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import rng as _rng

#: logit given to impossible tokens of a point mass: exp(-1e4) underflows to exactly 0 in every
#: float type, yet the value is finite (no inf - inf NaNs downstream) and representable in bf16.
NEG_LOGIT = -1.0e4


def one_hot_features(xt: Tensor, n: int) -> Tensor:
    """Tokens ``(B, L)`` long in [0, n) -> one-hot features ``(B, L, n)`` float32."""
    return F.one_hot(xt, n).float()


def point_mass_logits(tokens: Tensor, K: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Logits ``(B, L, K)`` of a point mass at ``tokens (B, L)`` (values in [0, K))."""
    out = torch.full((*tokens.shape, K), NEG_LOGIT, dtype=dtype, device=tokens.device)
    return out.scatter_(-1, tokens.clamp(0, K - 1).unsqueeze(-1), 0.0)


def carry_over(logits: Tensor, xt: Tensor, mask_id: int) -> Tensor:
    """SUBS carry-over: where ``xt (B, L)`` is not the mask, replace ``logits (B, L, K)`` by a
    point mass on the current token, so an unmasked token is copied, never re-predicted."""
    K = logits.shape[-1]
    unmasked = (xt != mask_id).unsqueeze(-1)
    return torch.where(unmasked, point_mass_logits(xt, K, logits.dtype), logits)


def draw_device(generator: Optional[torch.Generator], fallback: torch.device) -> torch.device:
    """Where random numbers must be drawn so that ``generator`` can be used."""
    return generator.device if generator is not None else fallback


def uniform(shape: tuple[int, ...], *, like: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """Uniform [0, 1) float64 draws on ``like``'s device (drawn where the generator lives)."""
    dev = draw_device(generator, like.device)
    return _rng.rand(shape, generator=generator, dtype=torch.float64, device=dev).to(like.device)


def draw_rows(logits: Tensor, *, generator: Optional[torch.Generator] = None) -> Tensor:
    """One float64 categorical draw per row of ``logits (N, K)`` -> ``(N,)`` long.

    Float64 matters: float32 Gumbel/multinomial draws lower the effective temperature
    (Zheng et al. 2024).
    """
    if logits.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=logits.device)
    probs = torch.softmax(logits.double(), dim=-1)
    dev = draw_device(generator, probs.device)
    idx = _rng.multinomial(probs.to(dev), 1, generator=generator).squeeze(-1)
    return idx.to(logits.device)


def jump_to_posterior(logits: Tensor, xt: Tensor, p_jump: Tensor, can_jump: Tensor, *,
                      generator: Optional[torch.Generator] = None) -> Tensor:
    """Each position of ``xt (B, L)`` where ``can_jump`` is True is, with probability
    ``p_jump (B,)``, replaced by a float64 draw from ``softmax(logits (B, L, K))``.

    Only the rows that jump are drawn from, so rows the caller never uses (e.g. all-``-inf``
    rows at positions a hook forbade entirely but that cannot jump) are never normalised.
    """
    u = uniform(tuple(xt.shape), like=xt, generator=generator)
    jump = can_jump & (u < p_jump.double()[:, None])
    new = xt.clone()
    new[jump] = draw_rows(logits[jump], generator=generator)
    return new


def stratified_times(n: int, batch: int, *, like: Tensor,
                     generator: Optional[torch.Generator] = None) -> Tensor:
    """``n`` stratified (antithetic) times per sequence, ``(n, batch)`` float64 in (0, 1].

    Column b is ``1 - ((u_b + j / n) mod 1)``, j = 0..n-1, with u_b uniform: every stratum of
    width 1/n holds exactly one time, and the estimate stays unbiased. Times are never 0, where
    the ELBO weights of the token processes (~1/t) blow up.
    """
    u = uniform((1, batch), like=like, generator=generator)
    j = torch.arange(n, dtype=torch.float64, device=like.device)[:, None] / n
    return 1.0 - torch.remainder(u + j, 1.0)
