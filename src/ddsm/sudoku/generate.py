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
    times: Optional[Tensor] = None,
) -> Tensor:
    """``n`` grids ``(n, 81)`` long (digits 0..8) from the reverse SDE, decoded by argmax of the
    final simplex point (DDSM's decode). Validity is not enforced: that is what is measured.

    Args:
        steps: base steps of the time grid; ``dilation`` c > 1 takes c times as many (DDSM).
        batch_size: boards per network call (None: by device, ``SudokuModel.batch_size``).
        times: ``(S + 1,)`` decreasing public times replacing the process's grid (``steps`` is
            then ignored; see ``bench/sudoku_time_grid.py``).
    """
    proc = sm.process
    grid = proc.time_grid(steps) if times is None else times.double().cpu()
    proc.prepare_times(_times(grid, dilation))
    out = []
    batch_size = sm.batch_size(batch_size)
    for lo in range(0, n, batch_size):
        b = min(batch_size, n - lo)
        out.append(sample(proc, sm.model_fn, (b, N_CELLS), steps=steps, dilation=dilation, generator=generator,
                          device=sm.device, progress=progress, times=times))
    return torch.cat(out).cpu()


def _times(grid: Tensor, dilation: float) -> Tensor:
    """Every public time the loop will visit on ``grid`` (so their tables are built in one pass)."""
    from ..sampling.loop import dilated_pairs

    return torch.stack([t for t, _, _ in dilated_pairs(grid, dilation, 1.0)]).double()
