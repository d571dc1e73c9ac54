"""Which precision a network runs in: fp32, or bf16 autocast where bf16 is native.

The bundled Sudoku model was trained under bf16 autocast (its exact-evidence residual is added in
float32 either way), so bf16 inference is the regime it was trained in; the DNA models sample in
bf16 when their recorded defaults say so (``design(precision=...)``). On a CPU, bf16 matrix
products only pay off with hardware support (AMX tiles or AVX512-BF16); elsewhere oneDNN emulates
them and fp32 is faster. Measured on this project's 2-core AMX Xeon (bundled model, 32 boards, 2
threads, ``python bench/sudoku.py --precision fp32|bf16``): see the README's Sudoku section.
"""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 matrix products are native (and so faster than fp32) on ``device``: always on
    CUDA; on a CPU only with AMX tiles or AVX512-BF16."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private torch helpers: probe defensively
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"fp32"`` or ``"bf16"`` for a requested ``precision`` in :data:`PRECISIONS` ("auto": bf16
    where it is native)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


class Autocast(torch.nn.Module):
    """Runs ``model`` under bf16 autocast on its device (the backbones keep their output layers in
    float32, ``models.base.upcast``); other attributes are the wrapped model's."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        super().__init__()
        self.model, self.device_type = model, torch.device(device).type

    def forward(self, *args, **kwargs):
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.model(*args, **kwargs)
