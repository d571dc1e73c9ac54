"""Generation of complete grids: by the model alone (the library's one sampling loop, DDSM's
metric), or constraint-aware (the solver's rules + diffusion sampler on an empty board)."""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Callable, Iterable, Optional

import torch
from torch import Tensor

from ..sampling import sample
from .board import BLANK, N_CELLS
from .model_io import SudokuModel

if TYPE_CHECKING:
    from .solve import SolveConfig, SolveResult


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
    context_scale: float = 1.0,
    substeps: Optional[int] = None,
    extrapolate: Optional[float] = None,
) -> Tensor:
    """``n`` grids ``(n, 81)`` long (digits 0..8) from the reverse SDE of the ``jacobi`` process,
    whose last step draws each cell from the network's posterior at t_min. Validity is not
    enforced: that is what is measured.

    Args:
        steps: base steps of the time grid; ``dilation`` c > 1 takes c times as many (DDSM).
        batch_size: boards per network call (None: by device, ``SudokuModel.batch_size``).
        times: ``(S + 1,)`` decreasing public times replacing the process's grid (``steps`` is
            then ignored; see ``bench/sudoku_time_grid.py``).
        context_scale: lambda >= 0 multiplying the network's correction to the exact local
            evidence, so each cell's posterior is p(k) ~ q_tau(v | k) exp(lambda c_k): the cell's
            own noisy evidence times its board context's message raised to lambda (1: the model as
            trained, DDSM's metric; > 1 leans on what the rows, columns and boxes say, like a
            guidance scale). Still the model alone: no rule is checked. See the README's Sudoku
            section for the measured rates and the uniformity check.
        substeps: SDE sub-steps per network call (None: the model's own, 8 for the bundled one).
            The network's correction is held over a call's sub-steps while the exact local
            evidence follows the sticks (:meth:`JacobiProcess.step`), so a dilated run can call
            the network less often than once per dilated step: ``steps=25, dilation=4,
            substeps=32`` walks the same 3,200 sub-steps as ``steps=100, dilation=4`` (400 calls)
            with 100 calls, DDSM's dilation-1 cost (README, Sudoku).
        extrapolate: alpha >= 0: the correction held over a call's sub-steps is the network's
            c_n plus alpha times its change since the previous call, c_n - c_{n-1}
            (:class:`ddsm.sampling.ExtrapolatedCorrection`; 0: held as returned; None: the
            process's own, 0 for the bundled model). A multistep use of past
            network outputs, as Adams-Bashforth or DPM-Solver's multistep samplers make: alpha
            0.5 is the correction at the middle of the call's interval if it changes linearly.
            Same network calls, no rule checked.
    """
    if not (math.isfinite(context_scale) and context_scale >= 0.0):
        raise ValueError(f"context_scale must be a finite number >= 0, got {context_scale}")
    if substeps is not None and (isinstance(substeps, bool) or int(substeps) != substeps or substeps < 1):
        raise ValueError(f"substeps must be an integer >= 1, got {substeps}")
    if extrapolate is not None and not (math.isfinite(extrapolate) and extrapolate >= 0.0):
        raise ValueError(f"extrapolate must be a finite number >= 0, got {extrapolate}")
    proc = sm.process
    if (substeps is not None and substeps != proc.substeps) or (extrapolate is not None
                                                               and extrapolate != proc.extrapolate):
        proc = copy.copy(proc)  # the loaded model keeps its own settings; the copy shares its tables
        proc.substeps = int(substeps) if substeps is not None else proc.substeps
        proc.extrapolate = float(extrapolate) if extrapolate is not None else proc.extrapolate
    model_fn = sm.model_fn if context_scale == 1.0 else scaled_correction(sm.model_fn, context_scale)
    out = []
    batch_size = sm.batch_size(batch_size)
    for lo in range(0, n, batch_size):
        b = min(batch_size, n - lo)
        # each batch is one run of the loop, which asks the process for a fresh multistep wrapper
        out.append(sample(proc, model_fn, (b, N_CELLS), steps=steps, dilation=dilation, generator=generator,
                          device=sm.device, progress=progress, times=times))
    return torch.cat(out).cpu()


def scaled_correction(model_fn: Callable[..., Tensor], scale: float) -> Callable[..., Tensor]:
    """``model_fn`` with its output (the posterior backbone's logit correction ``(B, 81, K)``)
    multiplied by ``scale``; the process adds the exact local evidence afterwards, unscaled."""
    def scaled(x: Tensor, t: Tensor, cond: Optional[Tensor] = None) -> Tensor:
        return scale * model_fn(x, t, cond)
    return scaled


def generate_constrained(
    sm: SudokuModel,
    n: int,
    *,
    cfg: Optional["SolveConfig"] = None,
    generator: Optional[torch.Generator] = None,
    on_round: Optional[Callable[[int, int], None]] = None,
) -> "SolveResult":
    """``n`` grids from the constraint-aware sampler on empty boards (rules + diffusion).

    This is :func:`ddsm.sudoku.solve.solve_puzzles` with no givens: the diffusion picks which
    cells to commit and to which digit, propagation with failed-literal probing removes what the
    rules exclude, a board ruled out rewinds, and the exact search runs after the budget (its
    grids are labelled ``search``). Every grid it returns is valid by construction, so its rate
    is not the model's: report it apart, with a uniformity check
    (:func:`ddsm.sudoku.uniformity.compare`). Returns the solver's per-grid result.
    """
    from .solve import SolveConfig, solve_puzzles

    blank = torch.full((n, N_CELLS), BLANK, dtype=torch.long)
    return solve_puzzles(sm, blank, cfg or SolveConfig(), generator=generator, on_round=on_round)
