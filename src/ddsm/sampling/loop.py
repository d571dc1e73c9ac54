"""The one reverse sampling loop, shared by every process (it hands over to a process's own
sampler, e.g. the masked process's first-hitting sampler, when one is asked for)."""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch
from torch import Tensor

# FixedPositions lives with the process contract (``impose`` takes it); re-exported here
from ..processes.base import FixedPositions, ModelFn, Process

#: called with the network output ``(B, L, C_out)``, the state and t; returns a modified output.
OutputHook = Callable[[Tensor, Tensor, Tensor], Tensor]


@torch.no_grad()
def sample(
    process: Process,
    model: ModelFn,
    shape: tuple[int, int],
    *,
    steps: int = 100,
    cond: Optional[Tensor] = None,
    fixed: Optional[FixedPositions] = None,
    dilation: float = 1.0,
    dilation_after: float = 1.0,
    output_hook: Optional[OutputHook] = None,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device] = None,
    progress: Optional[Callable[[Iterable], Iterable]] = None,
    return_state: bool = False,
    times: Optional[Tensor] = None,
    sampler: Optional[str] = None,
    start: Optional[Tensor] = None,
) -> Tensor:
    """Draw ``shape = (B, L)`` sequences by running ``process`` backwards with ``model``.

    Args:
        steps: number of time steps on the process's grid (before dilation).
        times: ``(steps + 1,)`` decreasing public times to use instead of the process's grid
            (schedule experiments; ``steps`` is then ignored).
        cond: ``(B,)`` class labels, or None.
        fixed: positions to keep at given tokens; imposed before every network call and at the end.
        dilation: time dilation c >= 1 (DDSM): c times as many network calls, each moving the state
            by c times the model-time step, which sharpens samples toward high density.
        dilation_after: apply dilation only once public time is below this value (1.0 = whole run).
        output_hook: optional transform of the network output (guidance, forbidden tokens).
        progress: wraps the step iterator (e.g. ``tqdm``), for the CLI.
        return_state: return the final state instead of decoded tokens.
        start: a state (the process's state shape for ``shape``) to run from instead of a prior
            draw, e.g. a recorded state of an earlier run continued on the rest of its grid
            (pass ``times = grid[k:]``). A multistep memory (the Jacobi process's
            ``extrapolate``) starts empty there, as at the start of any run.
        sampler: one of ``process.samplers`` (None: ``process.default_sampler``). ``"ancestral"``
            runs this loop; any other is the process's own sampler (``process.sample_with``, e.g.
            the masked process's ``"first-hitting"``), which takes ``cond``, ``fixed``,
            ``output_hook``, ``generator``, ``device`` and ``progress`` but has no time grid:
            ``steps`` is unused there, and ``times``, ``dilation`` > 1 and ``return_state`` are
            refused.
    Returns:
        ``(B, L)`` long tokens (or the final state).
    Raises:
        ValueError: an unknown sampler, a dilation the process lacks, a bad ``times`` grid, a
            ``start`` of another shape.
    """
    name = process.resolve_sampler(sampler)
    if name != "ancestral":
        unused = [what for what, given in (("times", times is not None), ("dilation", dilation != 1.0),
                                           ("return_state", return_state), ("start", start is not None)) if given]
        if unused:
            raise ValueError(f"the {name!r} sampler of process {process.name!r} has no time grid; "
                             f"drop {', '.join(unused)}")
        return process.sample_with(name, model, shape, cond=cond, fixed=fixed, output_hook=output_hook,
                                   generator=generator, device=device, progress=progress)
    if dilation < 1.0:
        raise ValueError("time dilation must be >= 1")
    process.check_dilation(dilation)  # before any draw: a process without dilation refuses c != 1
    B = shape[0]
    if start is not None and tuple(start.shape[:2]) != tuple(shape):
        raise ValueError(f"start has shape {tuple(start.shape)}, the run's shape is {tuple(shape)}")
    xt = process.prior(shape, generator=generator, device=device) if start is None else start.to(device)
    if times is not None and (times.dim() != 1 or len(times) < 2 or bool((times[1:] >= times[:-1]).any())):
        raise ValueError("times must be a decreasing 1-D grid of at least 2 public times")
    grid = process.time_grid(steps, device=device) if times is None else times.to(device)
    pairs = list(dilated_pairs(grid, dilation, dilation_after))
    process.prepare_steps(pairs)
    model = process.sampling_model(model)  # fresh per run: a multistep memory starts empty
    iterator: Iterable = pairs if progress is None else progress(pairs)
    for t, s, c in iterator:
        t_b, s_b = t.expand(B), s.expand(B)
        if fixed is not None:
            xt = process.impose(xt, fixed.tokens, fixed.mask, t_b, generator=generator)
        out = process.model_output(model, xt, t_b, cond)
        if output_hook is not None:
            out = output_hook(out, xt, t_b)
        xt = process.step(out, xt, t_b, s_b, generator=generator, dilation=c)
    tokens = process.decode(xt)
    if fixed is not None:
        tokens = torch.where(fixed.mask, fixed.tokens, tokens)
    return xt if return_state else tokens


def dilated_pairs(grid: Tensor, dilation: float, after: float = 1.0):
    """Yield ``(t, s, c)`` model-time intervals and the dilation factor for each.

    With dilation c, each grid interval [t, s] is split into round(c) sub-intervals of model time;
    the process's ``step`` moves the state by c times each sub-interval (DDSM's time dilation).
    Only intervals starting at or below model time ``after`` are dilated. Public so that samplers
    with their own loop (``ddsm.sudoku``) walk exactly the same times.

    Args:
        grid: ``(S + 1,)`` decreasing model times, e.g. ``process.time_grid(S)``.
    """
    for t, s in zip(grid[:-1], grid[1:]):
        c = dilation if float(t) <= after + 1e-12 else 1.0
        n = max(1, int(round(c)))
        h = (t - s) / n
        for j in range(n):
            yield t - j * h, t - (j + 1) * h, c
