"""A fast stream of random valid complete grids, for training without a fixed data set.

Two stages:

1. ``base_grids``: distinct grids from a randomised backtracking fill (bitmasks, most-constrained
   cell first), a few milliseconds each in plain Python;
2. ``GridStream``: each requested grid is a random base grid under a random board symmetry
   (digit relabelling, rows within bands, bands, columns within stacks, stacks, transpose), done
   as one batched gather on any device.

A pool of a few thousand base grids under about 1.2e12 symmetries per grid looks uniformly random
to a network; the pool only limits the number of distinct equivalence classes seen.
"""

from __future__ import annotations

import random
from typing import Any, Optional

import torch
from torch import Tensor

from ..errors import DDSMInputError
from ..training.streams import Batch, MicroBatch
from .board import N_CELLS
from .search import backtrack
from .symmetry import random_symmetries

_CHUNK = 256  # grids per independently seeded chunk: the result does not depend on ``workers``


def _chunk(seed: int, index: int, n: int) -> list[list[int]]:
    rng = random.Random(f"{seed}:{index}")
    empty = [-1] * N_CELLS
    return [backtrack(empty, rng=rng).grid for _ in range(n)]  # an empty board always completes


def base_grids(n: int, seed: int = 0, workers: int = 1) -> Tensor:
    """``n`` random complete valid grids from backtracking: ``(n, 81)`` long, digits 0..8.

    Args:
        workers: processes to spread the work over (same grids for any number of workers).
    """
    sizes = [min(_CHUNK, n - lo) for lo in range(0, n, _CHUNK)]
    if workers > 1 and len(sizes) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as ex:
            parts = list(ex.map(_chunk, [seed] * len(sizes), range(len(sizes)), sizes))
    else:
        parts = [_chunk(seed, i, k) for i, k in enumerate(sizes)]
    grids = [g for part in parts for g in part]
    return torch.tensor(grids, dtype=torch.long).reshape(n, N_CELLS)


class GridStream:
    """Batches of random valid grids: a random base grid under a random symmetry.

    Args:
        pool: ``(P, 81)`` base grids (e.g. from :func:`base_grids`), kept on ``device``.
        device: where batches are produced.
    """

    def __init__(self, pool: Tensor, device: Optional[torch.device] = None) -> None:
        if pool.dim() != 2 or pool.shape[1] != N_CELLS:
            raise ValueError(f"pool must be (P, 81), got {tuple(pool.shape)}")
        self.device = torch.device(device) if device is not None else pool.device
        self.pool = pool.to(self.device)

    def sample(self, n: int, *, generator: Optional[torch.Generator] = None) -> Tensor:
        """``(n, 81)`` long grids on the stream's device (``generator`` is a CPU generator)."""
        pick = torch.randint(0, self.pool.shape[0], (n,), generator=generator).to(self.device)
        sym = random_symmetries(n, generator=generator)
        return sym.apply(self.pool[pick])

    # ---- the trainer's BatchStream protocol (ddsm.training.streams): every micro-batch is drawn
    # afresh from its own generator, so the stream has no state beyond its pool.
    n_classes = 0

    def next(self, step: int, micro: MicroBatch, generator: torch.Generator) -> Batch:
        """``micro.hi - micro.lo`` fresh grids for micro-batch ``micro`` of step ``step``."""
        return Batch(self.sample(micro.hi - micro.lo, generator=generator))

    def state_dict(self) -> dict[str, Any]:
        return {"pool_size": int(self.pool.shape[0])}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state.get("pool_size", self.pool.shape[0])) != self.pool.shape[0]:
            raise DDSMInputError(f"it was trained on a pool of {state['pool_size']} grids, this stream has "
                                 f"{self.pool.shape[0]}")


def random_grids(n: int, *, seed: int = 0, pool_size: Optional[int] = None) -> Tensor:
    """Convenience: ``n`` random valid grids from a fresh pool (``pool_size`` default min(n, 512))."""
    pool = base_grids(pool_size or min(n, 512), seed=seed)
    return GridStream(pool).sample(n, generator=torch.Generator().manual_seed(seed + 1))
