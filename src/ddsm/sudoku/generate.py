"""Unconditional generation of complete grids with the library's one sampling loop."""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch
from torch import Tensor

from ..sampling import sample
from .board import N_CELLS
from .model_io import SudokuModel


@torch.no_grad()
def generate_grids(
    sm: SudokuModel,
    n: int,
    *,
    steps: int = 100,
    dilation: float = 1.0,
    batch_size: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    progress: Optional[Callable[[Iterable], Iterable]] = None,
) -> Tensor:
    """``n`` grids ``(n, 81)`` long (digits 0..8) from the reverse SDE, decoded by argmax of the
    final simplex point (DDSM's decode). Validity is not enforced: that is what is measured.

    Args:
        steps: base steps of the time grid; ``dilation`` c > 1 takes c times as many (DDSM).
        batch_size: boards per network call (None: by device, ``SudokuModel.batch_size``).
    """
    proc = sm.process
    proc.prepare_times(_times(proc, steps, dilation))
    out = []
    batch_size = sm.batch_size(batch_size)
    for lo in range(0, n, batch_size):
        b = min(batch_size, n - lo)
        out.append(sample(proc, sm.model_fn, (b, N_CELLS), steps=steps, dilation=dilation, generator=generator,
                          device=sm.device, progress=progress))
    return torch.cat(out).cpu()


def _times(proc, steps: int, dilation: float) -> Tensor:
    """Every public time the loop will visit (so their tables are built in one pass)."""
    from ..sampling.loop import dilated_pairs

    return torch.stack([t for t, _, _ in dilated_pairs(proc.time_grid(steps), dilation, 1.0)]).double()
