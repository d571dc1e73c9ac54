"""Seeding and random-state capture.

The library draws only from generators passed to it explicitly. Global seeding exists for the CLI
(``--seed`` seeds everything a run might touch, including third-party code that draws from the
global generators) and global-state capture exists so that a resumed training run can continue
bit-for-bit.

Derived seeds: :func:`derive_seed` turns a tuple of integers (the run's seed plus, say, a stream
tag, the step and the micro-batch index) into an unrelated 63-bit seed, so every random stream of
a training run is a pure function of ``--seed`` and its position. :func:`seeded_global_rng` runs a
block with torch's global generators seeded that way (dropout inside models draws from them) and
puts the previous states back afterwards.
"""

from __future__ import annotations

import hashlib
import random
import struct
from contextlib import contextmanager
from typing import Any, Iterator, Union

import numpy as np
import torch
from torch import Tensor

DeviceLike = Union[torch.device, str, None]


def make_generator(seed: int, device: DeviceLike = None) -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` (CPU when None) seeded with ``seed``.

    The generator must live on the device of the tensors it draws (``torch.rand(...,
    device="cuda", generator=cpu_gen)`` fails), so callers pass the device of their data.
    """
    gen = torch.Generator(device=torch.device(device) if device is not None else "cpu")
    gen.manual_seed(int(seed))
    return gen


def derive_seed(*keys: int) -> int:
    """A seed in ``[0, 2**63)`` hashed (BLAKE2b) from integer ``keys`` in ``[0, 2**64)``.

    Nearby inputs give unrelated outputs, so ``derive_seed(seed, stream, step, i)`` can seed one
    generator per (stream, step, micro-batch) without the streams overlapping. A few microseconds.
    """
    packed = struct.pack(f"<{len(keys)}Q", *(int(k) for k in keys))
    digest = hashlib.blake2b(packed, digest_size=8, person=b"ddsm-seed").digest()
    return int.from_bytes(digest, "little") % (2**63)


@contextmanager
def seeded_global_rng(seed: int, device: DeviceLike = None) -> Iterator[None]:
    """Run the block with torch's global CPU generator (and, for a CUDA ``device``, that device's
    generator) seeded with ``seed``; their previous states are restored on exit, even on error.

    Other CUDA devices, Python's ``random`` and NumPy are not touched.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    cpu_state = torch.get_rng_state()
    cuda_index = None
    if dev.type == "cuda":
        cuda_index = dev.index if dev.index is not None else torch.cuda.current_device()
        cuda_state = torch.cuda.get_rng_state(cuda_index)
    torch.default_generator.manual_seed(int(seed))
    if cuda_index is not None:
        with torch.cuda.device(cuda_index):
            torch.cuda.manual_seed(int(seed))
    try:
        yield
    finally:
        torch.set_rng_state(cpu_state)
        if cuda_index is not None:
            torch.cuda.set_rng_state(cuda_state, cuda_index)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python ``random``, NumPy's global generator and torch (CPU and every CUDA device).

    For the CLI only: library functions take explicit generators and never call this.

    Returns:
        a dedicated CPU ``torch.Generator`` seeded with ``seed``.
    """
    seed = int(seed)
    random.seed(seed)
    # NumPy's legacy global seed must fit in 32 bits.
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)  # also seeds every CUDA device (lazily when CUDA is not initialised)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return make_generator(seed)


def get_rng_state() -> dict[str, Any]:
    """Snapshot of the global Python, NumPy and torch (CPU + CUDA) random states.

    Returns a dict of JSON-friendly values and CPU ``uint8`` tensors (the torch states), the form
    ``ddsm.checkpoint`` stores without pickling: ``{"python": [version, [625 ints], gauss_next],
    "numpy": {...}, "torch_cpu": Tensor, "torch_cuda": [Tensor, ...]}``.
    """
    py_version, py_internal, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state(legacy=True)
    cuda: list[Tensor] = []
    # Only read CUDA states when CUDA is already in use: querying it would initialise a context.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = [s.clone() for s in torch.cuda.get_rng_state_all()]
    return {
        "python": [int(py_version), [int(v) for v in py_internal], py_gauss],
        "numpy": {
            "bit_generator": str(np_name),
            "keys": [int(v) for v in np_keys],
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_cached),
        },
        "torch_cpu": torch.get_rng_state().clone(),
        "torch_cuda": cuda,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore global random states captured by :func:`get_rng_state` (missing parts are skipped).

    CUDA states are restored only when the number of visible devices matches the snapshot.
    """
    if state.get("python") is not None:
        version, internal, gauss = state["python"]
        random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    if state.get("numpy") is not None:
        s = state["numpy"]
        np.random.set_state(
            (
                s["bit_generator"],
                np.asarray(s["keys"], dtype=np.uint32),
                int(s["pos"]),
                int(s["has_gauss"]),
                float(s["cached_gaussian"]),
            )
        )
    if state.get("torch_cpu") is not None:
        torch.set_rng_state(state["torch_cpu"].to(dtype=torch.uint8, device="cpu"))
    cuda = state.get("torch_cuda") or []
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all([s.to(dtype=torch.uint8, device="cpu") for s in cuda])


__all__ = ["make_generator", "derive_seed", "seeded_global_rng", "seed_everything", "get_rng_state",
           "set_rng_state"]
