"""Training the Sudoku denoiser on a stream of generated grids.

``ddsm.train.train`` trains on a fixed tensor and in float32; Sudoku needs neither a data set (the
generator makes fresh grids every step) nor full precision on a GPU, so this is a short loop of its
own: AdamW with warm-up and cosine decay, gradient clipping, EMA weights, bf16 autocast where bf16
is native (CUDA, CPUs with AMX), a wall-clock limit, and a checkpoint folder written with ``ddsm.checkpoint.save_checkpoint``
(``model.name = "sudoku"``; load it with :func:`ddsm.sudoku.model_io.load_sudoku_model`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch

from ..checkpoint import has_training_state, load_config, load_model_weights, load_training_state, save_checkpoint
from ..errors import DDSMInputError
from ..compiling import compile_or_eager
from ..ema import EMA
from .generator import GridStream, base_grids
from .model import SudokuDenoiser, add_rounds, deepen
from ..precision import native_bf16
from .process import sudoku_process, upgrade_config

logger = logging.getLogger(__name__)

MODEL_NAME = "sudoku"


@dataclass
class SudokuTrainConfig:
    """Hyper-parameters of a Sudoku training run (saved as ``"train"`` in config.json).

    Attributes:
        steps: optimiser steps (the run may stop earlier at ``minutes``).
        batch_size: grids per step.
        lr: peak AdamW learning rate (linear warm-up, then cosine to 10% at ``steps`` or
            ``minutes``, whichever is first).
        warmup_steps: warm-up length.
        weight_decay: AdamW weight decay.
        grad_clip: max gradient norm (0: off).
        ema_decay: EMA decay of the saved weights.
        minutes: wall-clock limit in minutes (0: none).
        pool_size: distinct backtracking grids behind the symmetry stream.
        seed: seeds the pool, the weights and the noise.
        amp: bf16 autocast where bf16 is native (CUDA; CPUs with AMX or AVX512-BF16).
        checkpoint_minutes: also save every this many minutes (0: only at the end).
        compile: run the network's forward through ``torch.compile`` (fuses the block's
            elementwise work; on this 2-core CPU 2.3x more grids per second after a first step
            that compiles, see ``bench/sudoku_compile.py``). The weights saved are the same.
        clock_schedule: the cosine also ends at ``minutes`` when that comes before ``steps``
            (off for a long run carried over several invocations with ``resume``: then the
            schedule follows ``steps`` alone and ``minutes`` only ends the invocation).
        model: SudokuDenoiser options (``rounds``: weight-tied recurrent rounds);
            process: options of the ``jacobi`` process over Sudoku's settings
            (:data:`ddsm.sudoku.process.SUDOKU_PROCESS`).
    """

    steps: int = 2000
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    minutes: float = 0.0
    pool_size: int = 2000
    seed: int = 0
    amp: bool = True
    checkpoint_minutes: float = 0.0
    compile: bool = False
    clock_schedule: bool = True
    model: dict[str, Any] = field(default_factory=lambda: {"d_model": 48, "n_layers": 6, "hidden": 96})
    process: dict[str, Any] = field(default_factory=lambda: {"focus": 0.8})


def _lr(step: int, cfg: SudokuTrainConfig, elapsed: float = 0.0) -> float:
    """Warm-up, then cosine decay to 10% of ``lr`` at whichever comes first: ``steps`` or
    ``minutes`` (so a run cut by the clock still ends at a low learning rate)."""
    if step <= cfg.warmup_steps:
        return cfg.lr * step / max(1, cfg.warmup_steps)
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    if cfg.minutes > 0 and cfg.clock_schedule:
        progress = max(progress, elapsed / (60.0 * cfg.minutes))
    progress = min(1.0, progress)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def train_sudoku(
    cfg: SudokuTrainConfig,
    out_dir: Optional[Union[str, Path]] = None,
    *,
    device: Union[str, torch.device] = "cpu",
    on_log: Optional[Callable[[dict[str, Any]], None]] = None,
    log_every: int = 25,
    init_from: Optional[Union[str, Path]] = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train a Sudoku denoiser (fresh, or warm-started); write the checkpoint to ``out_dir`` if given.

    Args:
        init_from: a Sudoku checkpoint folder whose saved (EMA) weights start the run; its model
            options must equal ``cfg.model``, except that it may have fewer blocks. Optimiser,
            schedule and step count start afresh. A shallower network can start a deeper run
            (:func:`deepen`), and a network without recurrent rounds a run with them (:func:`add_rounds`: the tied block starts as the identity).
        resume: continue the run saved in ``out_dir`` (raw weights, EMA, optimiser, noise
            generator, history, seconds) up to ``cfg.steps``; its model and process options must
            equal ``cfg``'s. Checkpoints are saved resumable.
        on_log: called with ``{"step", "loss", "lr", "seconds", "grids_per_s"}`` every ``log_every``
            steps and at the end.
    Returns:
        ``{"model", "process", "ema", "history", "step", "seconds"}`` (``model`` holds the raw
        weights; ``ema.copy_to(model)`` gives the saved ones).
    """
    device = torch.device(device)
    if resume and (out_dir is None or not has_training_state(out_dir)):
        raise DDSMInputError(f"cannot resume: {out_dir} holds no resumable Sudoku checkpoint")
    amp = bool(cfg.amp and native_bf16(device))
    process = sudoku_process(**cfg.process)
    torch.manual_seed(cfg.seed)  # initial weights
    warm: dict[str, Any] = {}
    if init_from is None or resume:
        model = SudokuDenoiser(process.in_channels, 9, **cfg.model)
    else:
        prior = upgrade_config(load_config(init_from), str(init_from))
        prior_opts = prior["model"]["options"]
        # A shallower network gains identity blocks, one without rounds an identity tied block
        # (same function, more rounds to learn).
        wanted = cfg.model.get("n_layers", prior_opts.get("n_layers"))
        rounds = int(cfg.model.get("rounds", 0))
        gains_rounds = rounds > 0 and not prior_opts.get("rounds", 0)
        base_opts = {**cfg.model, "n_layers": min(wanted, prior_opts.get("n_layers", wanted))}
        if gains_rounds:
            base_opts = {k: v for k, v in base_opts.items() if k not in ("rounds", "tied_after")}
        base = SudokuDenoiser(process.in_channels, 9, **base_opts)
        load_model_weights(init_from, base)  # checks names and shapes against cfg.model
        model = base
        if model.n_layers < wanted:
            model = deepen(model, wanted)
        if gains_rounds:
            model = add_rounds(model, rounds, cfg.model.get("tied_after"))
        # Keep the lineage: which run this one continued, after how many steps and seconds.
        warm = {"init_from": {"path": str(init_from), "step": prior.get("step"), "seconds": prior.get("seconds"),
                              "train": prior.get("train"), "init_from": prior.get("init_from")}}
    model.to(device)
    t_start = time.perf_counter()
    workers = min(16, os.cpu_count() or 1) if cfg.pool_size > 1024 else 1
    stream = GridStream(base_grids(cfg.pool_size, seed=cfg.seed, workers=workers), device=device)
    process.sample_noisy(torch.zeros(1, 1, dtype=torch.long), process.train_times[:1])  # tabulate before timing
    logger.info("pool of %d grids and tables ready in %.1f s", cfg.pool_size, time.perf_counter() - t_start)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = EMA(model, cfg.ema_decay)
    # Only the forward is compiled: ``model`` keeps the parameters, so EMA and saving see the same
    # tensors (and names) as without compilation.
    forward = compile_or_eager(model) if cfg.compile else model

    def net(x: torch.Tensor, t: torch.Tensor, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            return forward(x, t, cond)

    def save(step: int, seconds: float) -> None:
        if out_dir is None:
            return
        # resumable: the noise generator's state goes with the optimiser's (the grid stream is a
        # function of the seed and that generator)
        state = {"history": history, "seconds": seconds, "generator": gen.get_state()}
        save_checkpoint(out_dir, model=model, model_name=MODEL_NAME, process=process, ema=ema, step=step,
                        optimizer=opt, train_state=state,
                        config_extra={"train": asdict(cfg), "seq_len": 81, "history": history,
                                      "seconds": round(seconds, 1), "device": str(device), **warm})

    history: list[dict[str, Any]] = []
    run_sum, run_n, step, before = 0.0, 0, 0, 0.0
    if resume:
        assert out_dir is not None
        saved = upgrade_config(load_config(out_dir), str(out_dir))
        for key, mine in (("model", model.config()), ("process", process.config())):
            if saved[key]["options"] != mine:
                raise DDSMInputError(f"cannot resume {out_dir} with other {key} options: saved "
                                     f"{saved[key]['options']}, asked {mine}")
        state = load_training_state(out_dir, model, ema, opt)
        step, history, before = int(state["step"]), list(state["history"]), float(state["seconds"])
        gen.set_state(state["generator"])
        warm = {k: saved[k] for k in ("init_from",) if k in saved}
        logger.info("resumed %s at step %d of %d", out_dir, step, cfg.steps)
    t0 = last_save = time.perf_counter()
    model.train()
    t_log = t0
    while step < cfg.steps:
        if cfg.minutes > 0 and time.perf_counter() - t0 > 60.0 * cfg.minutes:
            break
        step += 1
        lr = _lr(step, cfg, time.perf_counter() - t0)
        for group in opt.param_groups:
            group["lr"] = lr
        x0 = stream.sample(cfg.batch_size, generator=gen)
        loss = process.loss(net, x0, generator=gen).loss
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"non-finite loss at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        ema.update(model)
        run_sum, run_n = run_sum + value, run_n + 1
        now = time.perf_counter()
        if step % log_every == 0 or step == cfg.steps:
            rec = {"step": step, "loss": run_sum / run_n, "lr": lr, "seconds": round(before + now - t0, 1),
                   "grids_per_s": round(log_every * cfg.batch_size / max(now - t_log, 1e-9), 1)}
            t_log = now
            history.append(rec)
            run_sum, run_n = 0.0, 0
            if on_log is not None:
                on_log(rec)
        if cfg.checkpoint_minutes > 0 and now - last_save > 60.0 * cfg.checkpoint_minutes:
            save(step, before + now - t0)
            last_save = now
    elapsed = time.perf_counter() - t0
    seconds = before + elapsed
    if run_n:
        rec = {"step": step, "loss": run_sum / run_n, "lr": _lr(step, cfg, elapsed), "seconds": round(seconds, 1),
               "grids_per_s": round(run_n * cfg.batch_size / max(time.perf_counter() - t_log, 1e-9), 1)}
        history.append(rec)
        if on_log is not None:
            on_log(rec)
    save(step, seconds)
    return {"model": model, "process": process, "ema": ema, "history": history, "step": step, "seconds": seconds}
