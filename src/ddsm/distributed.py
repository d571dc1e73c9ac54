"""Multi-process training on PyTorch's own engine: ``torch.distributed`` + DistributedDataParallel.

A run with N processes is started by torchrun, which sets ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` for each worker::

    torchrun --standalone --nproc_per_node N -m ddsm train ...
    ddsm train --nproc N ...          # the same: re-launches itself through torch.distributed.run

Each worker calls :func:`init_from_env` (a no-op outside torchrun), which opens the process group
(gloo on CPU, nccl on CUDA, one GPU per local rank) and returns a :class:`DistContext`;
:func:`ddsm.training.train` then sees the process group and trains data-parallel:

- every rank draws the same global batch (the sampler is a pure function of seed, epoch and
  position, so it needs no communication) and processes its share of its micro-batches;
- DistributedDataParallel averages the gradients; every rank takes the same optimiser and EMA step;
- only rank 0 writes checkpoints and logs; all ranks end at a barrier.

This module holds the process-group plumbing only; the training maths stays in ``ddsm.training``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Mapping, Optional, Sequence, Union

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .errors import DDSMInputError

logger = logging.getLogger(__name__)

#: environment variables torchrun sets for every worker
TORCHRUN_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly one-process) training run.

    Attributes:
        rank: global rank in ``[0, world_size)``.
        world_size: number of training processes (1 without a process group).
        local_rank: rank on this machine (the GPU index on CUDA).
        device: the device this process trains on (None when not chosen by :func:`init_from_env`).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: Optional[torch.device] = None

    @property
    def is_main(self) -> bool:
        """True on the process that writes checkpoints, logs and outputs (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when gradients are synchronised across more than one process."""
        return self.world_size > 1


def launched_by_torchrun(env: Optional[Mapping[str, str]] = None) -> bool:
    """Whether the torchrun worker variables (``RANK``, ``WORLD_SIZE``, ...) are all set."""
    env = os.environ if env is None else env
    return all(k in env for k in TORCHRUN_ENV)


def is_initialized() -> bool:
    """Whether a default process group is open in this process."""
    return dist.is_available() and dist.is_initialized()


def current(device: Optional[torch.device] = None) -> DistContext:
    """The :class:`DistContext` of the open process group (rank 0 of 1 when there is none)."""
    if not is_initialized():
        return DistContext(device=device)
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return DistContext(dist.get_rank(), dist.get_world_size(), local, device)


def is_main_process() -> bool:
    """True on rank 0, and in any process that is not part of a torchrun job."""
    if is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def init_from_env(
    device: Union[torch.device, str, None] = None,
    *,
    backend: Optional[str] = None,
    timeout_s: float = 1800.0,
) -> DistContext:
    """Open the process group described by torchrun's environment and pick this worker's device.

    Outside torchrun (or with ``WORLD_SIZE=1``) nothing is initialised and the context is rank 0
    of 1 on ``device``. Calling it again once the group is open returns the current context.

    Args:
        device: ``"cpu"``, ``"cuda"`` / a CUDA device, ``"auto"`` or None (CUDA when available).
            With CUDA, worker ``LOCAL_RANK`` trains on ``cuda:LOCAL_RANK`` (made the current device).
        backend: process-group backend; default ``nccl`` on CUDA and ``gloo`` on CPU.
        timeout_s: how long collectives wait for a missing peer before failing.

    Returns:
        this process's :class:`DistContext`, ``device`` set.

    Raises:
        DDSMInputError: CUDA requested but unavailable, or fewer GPUs than local processes.
    """
    dev = _resolve_device(device)
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistContext(device=dev)
    local = int(os.environ["LOCAL_RANK"])
    if dev.type == "cuda":
        n = torch.cuda.device_count()
        if local >= n:
            raise DDSMInputError(f"process with local rank {local} needs a GPU, but only {n} are visible; "
                                 f"use at most {n} processes per machine")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not is_initialized():
        backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
        dist.init_process_group(backend=backend, init_method="env://", timeout=timedelta(seconds=timeout_s))
        logger.debug("rank %d of %d: %s process group on %s", dist.get_rank(), dist.get_world_size(), backend, dev)
    return current(dev)


def _resolve_device(device: Union[torch.device, str, None]) -> torch.device:
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DDSMInputError("--device cuda requested but no CUDA device is available")
    return dev


def shutdown() -> None:
    """Close the default process group, if one is open (safe to call always)."""
    if is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (nothing without a multi-process group)."""
    if is_initialized() and dist.get_world_size() > 1:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def all_reduce_sum_(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over all ranks in place (identity without a multi-process group)."""
    if is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_(tensor: Tensor, src: int = 0) -> Tensor:
    """Overwrite ``tensor`` on every rank with rank ``src``'s copy, in place."""
    if is_initialized() and dist.get_world_size() > 1:
        dist.broadcast(tensor, src=src)
    return tensor


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)``; construction copies rank 0's weights and buffers to all
    ranks. ``model`` must already be on ``device``."""
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return DistributedDataParallel(model, device_ids=[index], output_device=index)
    return DistributedDataParallel(model)


# ---------------------------------------------------------------------------------- launcher
def strip_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N`` (what each torchrun worker is given)."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def torchrun_command(argv: Sequence[str], nproc: int) -> list[str]:
    """What :func:`launch_torchrun` runs: ``python -m torch.distributed.run --standalone
    --nproc_per_node N -m ddsm <argv without --nproc>``."""
    return [sys.executable, "-m", "torch.distributed.run", *_torchrun_args(argv, nproc)]


def _torchrun_args(argv: Sequence[str], nproc: int) -> list[str]:
    return ["--standalone", "--nproc_per_node", str(int(nproc)), "-m", "ddsm", *strip_nproc(argv)]


# torch.distributed.run's main, except that a signal ending the launcher (SIGTERM, Ctrl-C) or a failed
# worker gives an exit code (128 + signal; the first failed worker's code) instead of a traceback and
# a failure report: the workers have already reported (rank 0, one line ``ddsm: ...``).
_LAUNCHER = """\
import sys
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main
try:
    main(sys.argv[1:])
except SignalException as e:
    sys.exit(128 + int(e.sigval))
except ChildFailedError as e:
    code = e.get_first_failure()[1].exitcode
    sys.exit(code if 0 < code < 256 else 128 - code if -128 < code < 0 else 1)
"""


def launch_torchrun(argv: Sequence[str], nproc: int) -> int:
    """Run ``ddsm <argv>`` as ``nproc`` torchrun workers on this machine and wait for them.

    ``argv`` is the ddsm command line as given (``["train", "--data", ...]``, ``--nproc`` may be in
    it: it is removed). On CPU each worker gets ``cpu_count // nproc`` intra-op threads unless
    ``OMP_NUM_THREADS`` is set. SIGTERM sent to this process is passed on to torchrun (which passes
    it to the workers: they checkpoint and stop); Ctrl-C reaches the workers directly through the
    terminal, so this process only waits for them.

    Returns:
        0 when every worker succeeded, ``128 + signal`` when torchrun was stopped by a signal,
        otherwise the exit code of the first worker that failed (``128 + signal`` if a signal
        killed it).

    Raises:
        DDSMInputError: ``nproc < 1``, or called inside a torchrun worker.
    """
    if int(nproc) < 1:
        raise DDSMInputError(f"--nproc must be at least 1, got {nproc}")
    if launched_by_torchrun():
        raise DDSMInputError("--nproc cannot be used inside torchrun (it already started the processes)")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(nproc))))
    logger.info("launching: %s", " ".join(torchrun_command(argv, nproc)))
    proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, *_torchrun_args(argv, nproc)], env=env)
    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum))
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        return proc.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


__all__ = [
    "DistContext",
    "TORCHRUN_ENV",
    "launched_by_torchrun",
    "is_initialized",
    "current",
    "is_main_process",
    "init_from_env",
    "shutdown",
    "barrier",
    "all_reduce_sum_",
    "broadcast_",
    "wrap_ddp",
    "strip_nproc",
    "torchrun_command",
    "launch_torchrun",
]
