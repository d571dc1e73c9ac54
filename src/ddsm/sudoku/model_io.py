"""A Sudoku checkpoint ready for the samplers and solvers, including the one bundled with the package.

A Sudoku checkpoint is an ordinary ddsm checkpoint folder (``config.json`` + ``model.safetensors``)
whose ``model.name`` is ``"sudoku"`` (the registered :class:`~ddsm.models.SudokuDenoiser`) and
``process.name`` is the registered ``"jacobi"`` (posterior output). It is loaded by the one loader,
:func:`ddsm.api.load_run` (which also upgrades checkpoints of the former ``"jacobi_posterior"``
process, see :mod:`ddsm.legacy`); :class:`SudokuModel` adds what the Sudoku samplers need on top of
the :class:`~ddsm.api.Run`: the precision, compilation and batch size of the network calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
from torch import Tensor

from ..api import load_run
from ..compiling import compile_or_eager
from ..errors import DDSMInputError
from ..models.sudoku_grid import SudokuDenoiser
from ..precision import PRECISIONS, resolve_precision
from ..processes.jacobi import JacobiProcess

#: the checkpoint shipped with the package (see bench/train_sudoku.py for how it was made), and
#: its name for the loader
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "resources" / "sudoku"
BUNDLED_NAME = "sudoku"


@dataclass
class SudokuModel:
    """A trained Sudoku denoiser (EMA weights, eval mode), its process and its config."""

    process: JacobiProcess
    net: SudokuDenoiser
    config: dict[str, Any]
    path: Path
    precision: str = "fp32"  # "fp32" or "bf16" (autocast of the network's matrix products)
    compiled: bool = False  # the forward runs through torch.compile (see ``load_sudoku_model``)
    # derived from ``net`` and ``compiled`` (so ``dataclasses.replace(sm, net=...)`` recompiles the new net)
    _forward: Callable[..., Tensor] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._forward = compile_or_eager(self.net, dynamic=True) if self.compiled else self.net

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def model_fn(self, x: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        """The network as the samplers call it: ``(B, 81, 2 K)`` features -> ``(B, 81, K)`` float32
        logit correction, under bf16 autocast when ``precision == "bf16"`` (the bundled model was
        trained under bf16 autocast; the process adds the exact evidence in float64 either way)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self._forward(x, t, cond)

    def batch_size(self, requested: Optional[int] = None) -> int:
        """Boards per network call: ``requested``, or by device when None. On a CPU 32: the
        network's (boards x 729 x hidden) activations of larger batches spill the caches (bundled
        model, 2 threads: about 6 ms per board-step at 32 boards, 17 ms at 128); 512 elsewhere."""
        if requested is not None:
            return int(requested)
        return 32 if self.device.type == "cpu" else 512


def load_sudoku_model(path: Optional[Union[str, Path]] = None, *,
                      device: Optional[Union[str, torch.device]] = None, precision: str = "auto",
                      compile: bool = False) -> SudokuModel:
    """Load a Sudoku checkpoint folder (default: the bundled one).

    Args:
        precision: "fp32", "bf16" (autocast) or "auto": bf16 where it is native
            (:func:`ddsm.precision.native_bf16`).
        compile: run the network through ``torch.compile`` (one graph for all batch sizes). Worth
            it for long jobs only: the first call compiles (seconds to a minute on a CPU), then
            each call is about 1.35x faster on this 2-core CPU (``bench/sudoku_compile.py``). Falls
            back to the eager network, with a warning, if compiling fails (e.g. no C++ compiler).

    Raises:
        DDSMInputError: not a checkpoint, not a Sudoku checkpoint, weights that do not fit, or an
            unknown precision.
    """
    if precision not in PRECISIONS:
        raise DDSMInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if path is None and not (BUNDLED_DIR / "config.json").is_file():
        raise DDSMInputError(f"no bundled Sudoku model in {BUNDLED_DIR}; pass --model DIR "
                             f"(train one with ddsm sudoku train)")
    run = load_run(path if path is not None else BUNDLED_NAME, device=device)
    where = run.path if run.path is not None else path
    if not isinstance(run.model, SudokuDenoiser):
        raise DDSMInputError(f"{where} holds a {run.config['model']['name']!r} model, not a Sudoku model")
    if not isinstance(run.process, JacobiProcess) or run.process.output != "posterior" or run.process.K != 9:
        raise DDSMInputError(f"{where}: Sudoku models use the {JacobiProcess.name!r} process with posterior output "
                             f"over 9 digits, not {run.config['process']['name']!r}")
    precision = resolve_precision(precision, next(run.model.parameters()).device)
    assert run.path is not None
    return SudokuModel(run.process, run.model, run.config, run.path, precision, compiled=bool(compile))
