"""Training the Sudoku denoiser: a recipe of (process, network, grid stream) for the one trainer.

Sudoku needs no data set: :class:`~ddsm.sudoku.generator.GridStream` draws fresh valid grids for
every micro-batch (a random grid of a backtracking pool under a random validity-preserving
symmetry), and it is a :class:`~ddsm.training.streams.BatchStream`, so the run goes through
:func:`ddsm.training.train` like every other: resume, SIGTERM checkpoints, data-parallel
processes, non-finite checks, a wall-clock limit. :func:`sudoku_train_config` holds Sudoku's
training defaults (cosine to 10 % that also ends at the clock limit, EMA 0.995, bf16 where it is
native), :class:`SudokuRecipe` what is Sudoku's own (pool, network and process options), and
:func:`train_sudoku` builds the parts, including a warm start from a smaller network.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch

from ..api import load_run
from ..errors import DDSMInputError
from ..legacy import SUDOKU_ALPHABET
from ..models.sudoku_grid import SudokuDenoiser, add_rounds, deepen
from ..precision import native_bf16
from ..seeding import seeded_global_rng
from ..training import TrainConfig, train
from .board import N_CELLS
from .generator import GridStream, base_grids
from .process import sudoku_process

logger = logging.getLogger(__name__)

MODEL_NAME = "sudoku"

#: Sudoku's training defaults (the rest are TrainConfig's): see :func:`sudoku_train_config`
SUDOKU_TRAIN_DEFAULTS: dict[str, Any] = {
    "lr": 2e-3, "ema_decay": 0.995, "schedule": "cosine", "lr_floor": 0.1, "clock_schedule": True,
    "label_dropout": 0.0, "log_every": 25, "eval_every": 0, "checkpoint_every": 0,
}


def sudoku_train_config(device: Union[str, torch.device, None] = None, **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` of a Sudoku run: Sudoku's defaults (warm-up, then cosine to 10 %
    of ``lr`` at ``steps`` or at ``minutes``, whichever is first; EMA 0.995; no label dropout; bf16
    autocast where bf16 is native on ``device``), ``overrides`` on top."""
    opts = {**SUDOKU_TRAIN_DEFAULTS, "bf16": native_bf16(torch.device(device or "cpu")), **overrides}
    return TrainConfig(**opts)


@dataclass
class SudokuRecipe:
    """What is Sudoku's own in a run (saved as ``"recipe"`` in config.json).

    Attributes:
        pool_size: distinct backtracking grids behind the symmetry stream (drawn from the run's
            seed).
        model: :class:`~ddsm.models.SudokuDenoiser` options (``rounds``: weight-tied recurrent
            rounds).
        process: options of the ``jacobi`` process over Sudoku's settings
            (:data:`ddsm.sudoku.process.SUDOKU_PROCESS`).
    """

    pool_size: int = 2000
    model: dict[str, Any] = field(default_factory=lambda: {"d_model": 48, "n_layers": 6, "hidden": 96})
    process: dict[str, Any] = field(default_factory=lambda: {"focus": 0.8})


def _warm_start(recipe: SudokuRecipe, in_channels: int, init_from: Union[str, Path]) -> tuple[SudokuDenoiser, dict]:
    """The network of ``recipe`` started from the (EMA) weights of a Sudoku checkpoint: a shallower
    network gains identity blocks (:func:`deepen`), one without recurrent rounds an identity tied
    block (:func:`add_rounds`): the same function, more depth to learn. Returns it and the lineage
    to record."""
    prior = load_run(init_from)
    net = prior.model
    if not isinstance(net, SudokuDenoiser):
        raise DDSMInputError(f"{init_from} holds a {prior.config['model']['name']!r} model, not a Sudoku model")
    wanted = int(recipe.model.get("n_layers", net.n_layers))
    rounds = int(recipe.model.get("rounds", 0))
    gains_rounds = rounds > 0 and not net.rounds
    base_opts = {**recipe.model, "n_layers": min(wanted, net.n_layers)}
    if gains_rounds:
        base_opts = {k: v for k, v in base_opts.items() if k not in ("rounds", "tied_after")}
    expected = SudokuDenoiser(in_channels, 9, **base_opts).config()
    if expected != net.config():
        raise DDSMInputError(f"cannot warm-start from {init_from}: its network options {net.config()} do not "
                             f"fit {recipe.model} (only n_layers may grow, and rounds be added)")
    net.train()
    if net.n_layers < wanted:
        net = deepen(net, wanted)
    if gains_rounds:
        net = add_rounds(net, rounds, recipe.model.get("tied_after"))
    cfg = prior.config
    lineage = {"path": str(init_from), "step": cfg.get("step"), "seconds": cfg.get("seconds"),
               "train": cfg.get("train"), "init_from": cfg.get("init_from")}
    return net, lineage


def train_sudoku(
    recipe: SudokuRecipe,
    config: TrainConfig,
    out_dir: Optional[Union[str, Path]] = None,
    *,
    device: Union[str, torch.device] = "cpu",
    init_from: Optional[Union[str, Path]] = None,
    resume: bool = False,
    on_step: Optional[Callable[[int, dict[str, Any]], None]] = None,
) -> dict[str, Any]:
    """Train a Sudoku denoiser (fresh, or warm-started) with :func:`ddsm.training.train`.

    Args:
        init_from: a Sudoku checkpoint folder whose saved (EMA) weights start the run (see
            :func:`_warm_start`); optimiser, schedule and step count start afresh.
        resume: continue the run saved in ``out_dir`` up to ``config.steps``; its network and
            process options must be ``recipe``'s.
        on_step: the trainer's ``on_step(step, info)``.

    Returns:
        the trainer's summary plus ``"model"`` (raw weights; ``summary["ema"].copy_to(model)``
        gives the saved ones) and ``"process"``.
    """
    device = torch.device(device)
    process = sudoku_process(**recipe.process)
    lineage: dict[str, Any] = {}  # on resume the trainer keeps the saved lineage
    if init_from is not None and not resume:
        net, warm = _warm_start(recipe, process.in_channels, init_from)
        lineage = {"init_from": warm}
    else:
        with seeded_global_rng(config.seed):  # initial weights follow the run's seed
            net = SudokuDenoiser(process.in_channels, 9, **recipe.model)
    workers = min(16, os.cpu_count() or 1) if recipe.pool_size > 1024 else 1
    stream = GridStream(base_grids(recipe.pool_size, seed=config.seed, workers=workers), device=device)
    meta = {"alphabet": dict(SUDOKU_ALPHABET), "seq_len": N_CELLS, "classes": [],
            "recipe": {"pool_size": recipe.pool_size, "model": recipe.model, "process": recipe.process},
            "device": str(device), **lineage}
    summary = train(process, net, stream, config=config, out_dir=out_dir, run_meta=meta, resume=resume,
                    device=device, on_step=on_step, model_name=MODEL_NAME)
    return {**summary, "model": net, "process": process}
