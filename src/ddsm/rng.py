"""Random draws that work whichever device the generator lives on.

A ``torch.Generator`` can only draw on its own device, and callers hold generators on the CPU (the
CLI, tests) or on the data's device (the training loop). These helpers draw on the generator's
device and move the result to ``device``; with a CPU generator the numbers are then the same
whatever device the data are on.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor

Device = Union[torch.device, str, None]


def _gen_device(generator: Optional[torch.Generator], device: Device) -> torch.device:
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


def rand(shape: Sequence[int] | int, *, generator: Optional[torch.Generator] = None, device: Device = None,
         dtype: torch.dtype = torch.float32) -> Tensor:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    x = torch.rand(shape, generator=generator, device=_gen_device(generator, device), dtype=dtype)
    return x.to(device) if device is not None else x


def randn(shape: Sequence[int] | int, *, generator: Optional[torch.Generator] = None, device: Device = None,
          dtype: torch.dtype = torch.float32) -> Tensor:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    x = torch.randn(shape, generator=generator, device=_gen_device(generator, device), dtype=dtype)
    return x.to(device) if device is not None else x


def randint(low: int, high: int, shape: Sequence[int] | int, *, generator: Optional[torch.Generator] = None,
            device: Device = None) -> Tensor:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    x = torch.randint(low, high, shape, generator=generator, device=_gen_device(generator, device))
    return x.to(device) if device is not None else x


def rademacher(shape: Sequence[int] | int, *, generator: Optional[torch.Generator] = None, device: Device = None,
               dtype: torch.dtype = torch.float32) -> Tensor:
    """Independent +-1 entries (Hutchinson's probe), drawn as ``randint(0, 2)`` on the generator's device."""
    return (randint(0, 2, shape, generator=generator, device=device) * 2 - 1).to(dtype)


def multinomial(probs: Tensor, n: int, *, generator: Optional[torch.Generator] = None) -> Tensor:
    """``torch.multinomial`` on the generator's device; result on ``probs``' device."""
    dev = _gen_device(generator, probs.device)
    return torch.multinomial(probs.to(dev), n, generator=generator).to(probs.device)
