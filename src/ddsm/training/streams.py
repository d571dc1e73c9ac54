"""What the trainer trains on: a :class:`Batch` and the :class:`BatchStream` protocol.

The trainer asks a stream for micro-batch ``m`` of step ``s`` and does not care where the examples
come from: :class:`TensorStream` walks a data set held in memory (a fresh permutation per epoch),
the Sudoku grid stream draws new valid grids every step. Each call receives its own CPU generator
seeded from ``(seed, step, micro-batch)``, so a stream that draws from it needs no state to resume
and gives the same batches whichever process of a data-parallel run asks for them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Optional, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from ..errors import DDSMInputError
from ..seeding import make_generator


@dataclass(frozen=True)
class Batch:
    """Examples and what goes with them.

    Attributes:
        x0: ``(B, L)`` long tokens.
        cond: ``(B,)`` long class labels, or None.
        pad_mask: ``(B, L)`` bool, True = real token (variable lengths), or None.
        track: ``(B, L, S)`` float per-position signal tracks, or None.
    """

    x0: Tensor
    cond: Optional[Tensor] = None
    pad_mask: Optional[Tensor] = None
    track: Optional[Tensor] = None

    def __len__(self) -> int:
        return int(self.x0.shape[0])

    def rows(self, index: Tensor | slice) -> "Batch":
        """The examples ``index`` (a slice or a long index tensor on the batch's device)."""
        def take(t: Optional[Tensor]) -> Optional[Tensor]:
            return None if t is None else t[index]

        return Batch(self.x0[index], take(self.cond), take(self.pad_mask), take(self.track))

    def to(self, device: torch.device) -> "Batch":
        def move(t: Optional[Tensor]) -> Optional[Tensor]:
            return None if t is None else t.to(device)

        if self.x0.device == device:
            return self
        return Batch(self.x0.to(device), move(self.cond), move(self.pad_mask), move(self.track))

    def with_cond(self, cond: Optional[Tensor]) -> "Batch":
        return replace(self, cond=cond)

    def check(self, name: str) -> None:
        """Raise :class:`DDSMInputError` (one line naming ``name``) for malformed tensors."""
        data, cond, pad, track = self.x0, self.cond, self.pad_mask, self.track
        if not isinstance(data, Tensor) or data.dim() != 2 or data.dtype != torch.long:
            raise DDSMInputError(f"{name} data must be a LongTensor (N, L), got {getattr(data, 'dtype', type(data))} "
                                 f"{tuple(getattr(data, 'shape', ()))}")
        if data.shape[0] < 1:
            raise DDSMInputError(f"{name} data is empty")
        if cond is not None and (cond.dim() != 1 or cond.shape[0] != data.shape[0] or cond.dtype != torch.long):
            raise DDSMInputError(f"{name} labels must be a LongTensor ({data.shape[0]},), got {cond.dtype} "
                                 f"{tuple(cond.shape)}")
        if pad is not None and (pad.shape != data.shape or pad.dtype != torch.bool):
            raise DDSMInputError(f"{name} pad mask must be a bool tensor {tuple(data.shape)}, got {pad.dtype} "
                                 f"{tuple(pad.shape)}")
        if track is not None and (track.dim() != 3 or track.shape[:2] != data.shape or not track.is_floating_point()):
            raise DDSMInputError(f"{name} track must be a float tensor ({data.shape[0]}, {data.shape[1]}, S), got "
                                 f"{track.dtype} {tuple(track.shape)}")


class MicroBatch(NamedTuple):
    """Micro-batch ``index`` of a step: rows ``lo:hi`` of that step's global batch."""

    index: int
    lo: int
    hi: int


@runtime_checkable
class BatchStream(Protocol):
    """A source of training batches.

    ``n_classes``: labels take values in ``[0, n_classes)`` (0: the stream has no labels); the
    trainer's label dropout uses ``n_classes`` as the null class when the network does not say.
    """

    n_classes: int

    def next(self, step: int, micro: MicroBatch, generator: torch.Generator) -> Batch:
        """Micro-batch ``micro`` of step ``step`` (1-based); steps are asked for in order, each
        step's micro-batches by one process in increasing order. ``generator``: a CPU generator
        seeded for this (step, micro-batch) alone."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state after the last step drawn (saved with each checkpoint)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved state; raises :class:`DDSMInputError` when it does not fit."""
        ...


class EpochSampler:
    """Batches of indices into ``n`` examples, each epoch a fresh permutation.

    The permutation of epoch ``e`` is drawn from a generator seeded from ``(seed, e)``, so the
    state is just ``(epoch, position)`` and resuming needs no generator state. A batch that runs
    past the end of an epoch is completed from the next one: every batch has ``batch_size``
    indices and every example is seen once per epoch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int = 0, position: int = 0) -> None:
        if n < 1:
            raise ValueError("cannot sample batches from an empty data set")
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.epoch, self.position = int(epoch), int(position)
        self._perm: Optional[Tensor] = None
        self._perm_epoch = -1

    def permutation(self, epoch: int) -> Tensor:
        """``(n,)`` long, the order of epoch ``epoch``."""
        # SeedSequence mixes (seed, epoch) so that nearby seeds give unrelated orders.
        mixed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1, dtype=np.uint64)[0])
        return torch.randperm(self.n, generator=make_generator(mixed % (2**63)))

    def next(self) -> Tensor:
        """``(batch_size,)`` long CPU indices; advances the state."""
        parts, need = [], self.batch_size
        while need > 0:
            if self._perm_epoch != self.epoch:
                self._perm, self._perm_epoch = self.permutation(self.epoch), self.epoch
            assert self._perm is not None
            take = self._perm[self.position : self.position + need]
            parts.append(take)
            need -= take.numel()
            self.position += take.numel()
            if self.position >= self.n:
                self.epoch, self.position = self.epoch + 1, 0
        return torch.cat(parts)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "n": self.n}


class TensorStream:
    """A data set in memory, walked in epochs (:class:`EpochSampler`): every process of a
    data-parallel run draws the same global batch of each step and takes its micro-batches.

    Args:
        data: the whole data set (checked), moved to ``device``.
        batch_size: the global batch.
        seed: seeds the epoch permutations.
    """

    def __init__(self, data: Batch, batch_size: int, seed: int, device: Optional[torch.device] = None) -> None:
        data.check("training")
        self.data = data.to(device) if device is not None else data
        self.sampler = EpochSampler(len(data), batch_size, seed)
        self.n_classes = 0 if data.cond is None else int(data.cond.max()) + 1
        self._step: Optional[int] = None
        self._indices: Optional[Tensor] = None

    def next(self, step: int, micro: MicroBatch, generator: torch.Generator) -> Batch:
        if step != self._step:
            if self._step is not None and step != self._step + 1:
                raise RuntimeError(f"steps must be drawn in order: asked for {step} after {self._step}")
            self._step, self._indices = step, self.sampler.next().to(self.data.x0.device)
        assert self._indices is not None
        return self.data.rows(self._indices[micro.lo : micro.hi])

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["n"]) != self.sampler.n:
            raise DDSMInputError(f"it was trained on {state['n']} sequences, this data has {self.sampler.n}")
        self.sampler.epoch, self.sampler.position = int(state["epoch"]), int(state["position"])
        self._step, self._indices = None, None
