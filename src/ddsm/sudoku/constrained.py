"""Diffusion sampling of boards under the rules: the constraint-aware sampler.

The network's posterior logits are masked before the score is formed, so the sampler never
proposes a digit that is excluded. A digit is excluded in a cell when

- the candidate table given to the sampler rules it out (the givens, and whatever constraint
  propagation deduced from them: a given cell allows only its digit), or
- (``dynamic``) a peer in the same row, column or box has already settled on it during sampling
  (its own sticks are at that digit's vertex: local posterior above ``settle``).

Excluded digits get posterior zero, so the mixture score of ``PosteriorJacobiProcess`` drives each
cell along the exact reverse path of an allowed digit. A given cell has one allowed digit: it is
imposed exactly, with no resetting of its state. The final board is decoded by argmax over the
allowed digits.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..sampling import sample
from ..special.stickbreaking import sticks_to_simplex
from .board import N_CELLS
from .model_io import SudokuModel
from .propagation import eliminate


class ConstrainedNet:
    """Wraps the denoiser: ``(features, t, cond) -> logits`` with excluded digits at -inf.

    Args:
        net: the Sudoku denoiser.
        allowed: ``(B, 81, 9)`` bool candidate table (at least one digit per cell).
        dynamic: also exclude digits that a peer has settled on.
        settle: local-posterior level at which a cell counts as settled.
    """

    def __init__(self, net: torch.nn.Module, allowed: Tensor, *, dynamic: bool = True, settle: float = 0.99) -> None:
        self.net, self.allowed, self.dynamic, self.settle = net, allowed, dynamic, settle
        self.current = allowed

    def __call__(self, feats: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        logits = self.net(feats, t, cond)
        allowed = self.allowed
        if self.dynamic:
            local = feats.exp()  # (B, 81, 9) the cell's own evidence, from its sticks alone
            settled = (local > self.settle) & allowed
            narrowed = eliminate(allowed, settled)
            # a peer's claim never empties a cell: keep the static table there (the clash shows
            # up in the final check)
            allowed = torch.where(narrowed.any(-1, keepdim=True), narrowed, allowed)
        self.current = allowed
        return logits.masked_fill(~allowed, float("-inf"))


@torch.no_grad()
def constrained_sample(
    sm: SudokuModel,
    allowed: Tensor,
    *,
    steps: int = 50,
    dilation: float = 1.0,
    dynamic: bool = True,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Boards ``(B, 81)`` long sampled with excluded digits masked; ``allowed (B, 81, 9)`` bool.

    Each cell's decoded digit is one of its allowed digits (argmax of its final simplex point over
    them); validity of the whole board is not guaranteed and must be checked.
    """
    wrapped = ConstrainedNet(sm.net, allowed.to(sm.device), dynamic=dynamic)
    v = sample(sm.process, wrapped, (allowed.shape[0], N_CELLS), steps=steps, dilation=dilation,
               generator=generator, device=sm.device, return_state=True)
    x = sticks_to_simplex(v).masked_fill(~wrapped.allowed, -1.0)
    return x.argmax(-1).cpu()
