"""The training loop: AdamW, the :class:`~ddsm.training.config.TrainConfig` schedule, clipping,
EMA, resume, data-parallel processes (torchrun + DistributedDataParallel), gradient accumulation,
bf16 autocast.

One loop for every run (nanoGPT style): the process supplies the loss, the model is any backbone,
and the data come from a :class:`~ddsm.training.streams.BatchStream` (a data set in memory or a
generator of fresh examples, such as Sudoku grids). All randomness is a pure function of
``config.seed`` and the position in the run:

- data: micro-batch ``m`` of step ``s`` comes from ``stream.next(s, m, generator)`` with a CPU
  generator seeded from ``(seed, 4, s, m)``. A tensor data set walks epochs of permutations seeded
  from ``(seed, e)`` (its whole state is ``(epoch, position)``); every process draws the same
  global batch.
- micro-batches: the global batch of step ``s`` is cut into ``n_micro = world_size * grad_accum``
  contiguous micro-batches (sizes differ by at most one); process ``r`` handles micro-batches
  ``r, r + world_size, r + 2 * world_size, ...``, one per accumulation round.
- the process's noise (times, corruption, label dropout) is **defined per micro-batch**: micro-batch
  ``m`` of step ``s`` draws from a fresh generator seeded from ``(seed, 1, s, m)``, and the model's
  own randomness (dropout, from torch's global generator) is seeded from ``(seed, 3, s, m)`` for
  the duration of that micro-batch (the global state is put back afterwards). So the draws do not
  depend on which process handles a micro-batch: one process with ``grad_accum = 2`` and two
  processes with ``grad_accum = 1`` compute the same update (up to the order of float sums), and a
  resumed run needs no noise-generator state. Changing ``world_size * grad_accum`` changes how the
  batch is cut and so the noise: a statistically equivalent but different run.
- validation: a generator seeded with ``seed + 2`` afresh at every evaluation, so successive
  validation losses differ only through the weights.

Each micro-batch's mean loss is weighted by its share of the global batch, so the gradient is that
of the global-batch loss whatever the split. With these, a run that is interrupted and resumed ends
with exactly the weights of an uninterrupted run on CPU (on GPUs, non-deterministic kernels may
differ in the last bits). Checkpoints, crash recovery and signals: :mod:`ddsm.training.state`.
"""

from __future__ import annotations

import logging
import math
import shutil
import signal
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import torch
from torch import Tensor, nn

from .. import distributed
from ..checkpoint import load_config, load_training_state, save_checkpoint
from ..compiling import compile_or_eager
from ..conditioning.track import TrackBinding
from ..ema import EMA
from ..errors import DDSMInputError
from ..models.base import takes_raw_state
from ..seeding import derive_seed, get_rng_state, make_generator, seeded_global_rng, set_rng_state
from .config import TrainConfig, lr_at
from .state import (
    BACKUP_DIR,
    StopOnSignal,
    TrainingInterrupted,
    backup_checkpoint,
    check_resume,
    check_resume_options,
    non_finite,
    recover_checkpoint,
)
from .streams import Batch, BatchStream, MicroBatch, TensorStream

if TYPE_CHECKING:  # avoid importing every process just to train one
    from ..processes.base import Process

logger = logging.getLogger("ddsm.training")

#: stream tags mixed into the per-micro-batch seeds (see the module docstring)
_NOISE_STREAM, _MODEL_STREAM, _DATA_STREAM = 1, 3, 4


def _bind(model: Callable[..., Any], batch: Batch):
    """``(model, cond)`` to hand to ``process.loss``: with a track, the batch's tracks and labels are
    bound to the network and the process gets row ids as cond (see :mod:`ddsm.conditioning.track`)."""
    if batch.track is None:
        return model, batch.cond
    binding = TrackBinding(model, batch.track, batch.cond)
    return binding, binding.rows()


@torch.no_grad()
def evaluate(
    process: "Process",
    model: nn.Module,
    data: Batch,
    *,
    batch_size: int,
    max_batches: int,
    generator: Optional[torch.Generator] = None,
) -> float:
    """Mean training loss of ``model`` (as it is: swap in EMA weights first if wanted) over the first
    ``max_batches`` batches of ``data`` in order, in eval mode.

    Uses the same examples every time and the given ``generator`` for the noise, so with a freshly
    seeded generator the result changes only when the weights do.
    """
    was_training = model.training
    model.eval()
    try:
        total, count = 0.0, 0
        for b in range(max_batches):
            lo = b * batch_size
            if lo >= len(data):
                break
            part = data.rows(slice(lo, lo + batch_size))
            fn, cond = _bind(model, part)
            out = process.loss(fn, part.x0, cond=cond, pad_mask=part.pad_mask, generator=generator)
            total += float(out.loss)
            count += 1
        return total / max(count, 1)
    finally:
        model.train(was_training)


def micro_batch_bounds(batch_size: int, n_micro: int) -> list[tuple[int, int]]:
    """``[(lo, hi), ...]``: the ``n_micro`` contiguous micro-batches of a global batch (the first
    ``batch_size % n_micro`` one longer), as ``torch.tensor_split`` would cut it."""
    if not 1 <= n_micro <= batch_size:
        raise ValueError(f"cannot cut a batch of {batch_size} into {n_micro} non-empty micro-batches")
    base, extra = divmod(batch_size, n_micro)
    bounds, lo = [], 0
    for m in range(n_micro):
        hi = lo + base + (1 if m < extra else 0)
        bounds.append((lo, hi))
        lo = hi
    return bounds


def _model_name(model: nn.Module, given: Optional[str]) -> str:
    if given:
        return given
    from ..models import ALL_MODELS  # the registry is the source of names; it pulls in every backbone

    for name, cls in ALL_MODELS.items():
        if type(model) is cls:
            return name
    name = getattr(model, "name", None) or type(model).__name__
    logger.warning("model %s is not in ddsm.models.MODELS; recording it as %r", type(model).__name__, name)
    return str(name)


class _Forward:
    """The callable handed to ``process.loss``: the (DDP-wrapped, maybe compiled) network, its
    forward pass under bf16 autocast when enabled (outputs cast back to float32)."""

    def __init__(self, net: Callable[..., Any], *, takes_state: bool, autocast_device: Optional[str]) -> None:
        self.net, self.takes_state, self.autocast_device = net, takes_state, autocast_device

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.autocast_device is None:
            return self.net(*args, **kwargs)
        with torch.autocast(self.autocast_device, dtype=torch.bfloat16):
            out = self.net(*args, **kwargs)
        return out.float() if isinstance(out, Tensor) and out.is_floating_point() else out


def _maybe_compile(net: Callable[..., Any], enabled: bool) -> Callable[..., Any]:
    """The network's forward through ``torch.compile`` when ``enabled`` (on any device: the Sudoku
    network trains 2.3x faster compiled on a 2-core CPU, ``bench/sudoku_compile.py``); the module
    keeps the parameters, so EMA and checkpoints see the same tensors and names."""
    return compile_or_eager(net) if enabled else net


def _device_of(model: nn.Module, device: Optional[Union[torch.device, str]]) -> torch.device:
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


class _Trainer:
    """The state of one training invocation; :func:`train` is its public face."""

    def __init__(self, process: "Process", model: nn.Module, stream: BatchStream, valid: Optional[Batch], *,
                 config: TrainConfig, out: Optional[Path], meta: dict[str, Any], name: str,
                 device: torch.device) -> None:
        self.process, self.model, self.stream, self.config = process, model, stream, config
        self.out, self.meta, self.name, self.device = out, meta, name, device
        self.valid = None if valid is None else valid.to(device)
        ctx = distributed.current()
        self.world, self.rank, self.main = ctx.world_size, ctx.rank, ctx.is_main
        self.n_micro = self.world * config.grad_accum
        if config.batch_size < self.n_micro:
            raise DDSMInputError(
                f"batch_size {config.batch_size} is smaller than its {self.n_micro} micro-batches "
                f"({self.world} process(es) x grad_accum {config.grad_accum})"
            )
        self.bounds = micro_batch_bounds(config.batch_size, self.n_micro)
        self.weights = [(hi - lo) / config.batch_size for lo, hi in self.bounds]
        self.mine = [j * self.world + self.rank for j in range(config.grad_accum)]  # in order
        model.to(device)
        self.params = [p for p in model.parameters() if p.requires_grad]
        # DDP first: its construction copies rank 0's weights to every rank, before the EMA copies them.
        self.ddp = distributed.wrap_ddp(model, device) if self.world > 1 else None
        self.forward = _Forward(
            _maybe_compile(self.ddp if self.ddp is not None else model, config.compile),
            takes_state=takes_raw_state(model),
            autocast_device=device.type if config.bf16 else None,
        )
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        self.ema = EMA(model, config.ema_decay)
        self.null_class = int(getattr(model, "n_classes", None) or stream.n_classes)
        self.history: list[dict[str, Any]] = []
        self.step, self.seconds_before, self.run_sum, self.run_count = 0, 0.0, 0.0, 0
        self.last_ckpt: Optional[int] = None
        self.t0 = self.last_save = time.perf_counter()

    # ------------------------------------------------------------------ resume and save
    def resume(self) -> None:
        out = self.out
        assert out is not None
        if self.main:
            recover_checkpoint(out)
        distributed.barrier()
        saved_cfg = load_config(out)
        check_resume(saved_cfg, self.config, self.meta, out)
        if "init_from" in saved_cfg and "init_from" not in self.meta:
            # the lineage of a warm-started run outlives its resumptions
            self.meta["init_from"] = saved_cfg["init_from"]
        options = {"process": self.process.config()}
        if hasattr(self.model, "config"):
            options["model"] = self.model.config()
        check_resume_options(saved_cfg, options, out)
        state = load_training_state(out, self.model, self.ema, self.optimizer)
        self.step = int(state["step"])
        try:
            self.stream.load_state_dict(state["sampler"])
        except DDSMInputError as e:
            raise DDSMInputError(f"cannot resume {out}: {e}") from None
        set_rng_state(state["rng"]["global"])
        self.history = list(state["history"])
        self.seconds_before = float(state["seconds"])
        self.run_sum, self.run_count = float(state["running"]["sum"]), int(state["running"]["count"])
        self.last_ckpt = self.step
        saved_split = (state.get("world_size"), state.get("grad_accum"))
        if self.main and None not in saved_split and saved_split[0] * saved_split[1] != self.n_micro:
            logger.warning("resuming %s with %d micro-batches per step instead of %d: the noise of the "
                           "remaining steps differs from the uninterrupted run's", out, self.n_micro,
                           saved_split[0] * saved_split[1])
        if self.main:
            logger.info("resumed %s at step %d of %d", out, self.step, self.config.steps)

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.t0

    def checkpoint(self, at: int) -> None:
        out = self.out
        assert out is not None
        if self.main:
            train_state = {
                "sampler": self.stream.state_dict(),
                "rng": {"global": get_rng_state()},
                "history": self.history,
                "seconds": self.seconds(),
                "running": {"sum": self.run_sum, "count": self.run_count},
                "world_size": self.world,
                "grad_accum": self.config.grad_accum,
            }
            out.mkdir(parents=True, exist_ok=True)
            backup_checkpoint(out)
            save_checkpoint(out, model=self.model, model_name=self.name, process=self.process, ema=self.ema,
                            optimizer=self.optimizer, train_state=train_state,
                            config_extra={"train": self.config.to_dict(), **self.meta}, step=at)
            shutil.rmtree(out / BACKUP_DIR, ignore_errors=True)
        self.last_ckpt, self.last_save = at, time.perf_counter()

    # ------------------------------------------------------------------ one step
    def micro_loss(self, m: int, at: int) -> Tensor:
        """Mean loss of micro-batch ``m`` of step ``at``, its randomness seeded from (seed, at, m)."""
        seed, device = self.config.seed, self.device
        lo, hi = self.bounds[m]
        batch = self.stream.next(at, MicroBatch(m, lo, hi), make_generator(derive_seed(seed, _DATA_STREAM, at, m)))
        batch = batch.to(device)
        with seeded_global_rng(derive_seed(seed, _MODEL_STREAM, at, m), device):
            gen = make_generator(derive_seed(seed, _NOISE_STREAM, at, m), device)
            cond = batch.cond
            if cond is not None and self.config.label_dropout > 0:
                drop = torch.rand(cond.shape[0], generator=gen, device=device) < self.config.label_dropout
                cond = torch.where(drop, torch.full_like(cond, self.null_class), cond)
            fn, cond = _bind(self.forward, batch.with_cond(cond))
            result = self.process.loss(fn, batch.x0, cond=cond, pad_mask=batch.pad_mask, generator=gen)
        return result.loss

    def update(self, step: int, stop_flag: StopOnSignal) -> dict[str, Any]:
        """One optimiser step; ``{"loss", "lr", "grad_norm", "term", "int"}`` (the last two: whether
        any rank received SIGTERM / SIGINT)."""
        config, device = self.config, self.device
        lr = lr_at(step, config, time.perf_counter() - self.t0)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=device)
        for j, m in enumerate(self.mine):
            # DDP averages gradients over ranks: scale by world so the sum of weights is 1.
            syncing = self.ddp is None or j == len(self.mine) - 1
            with nullcontext() if syncing else self.ddp.no_sync():  # type: ignore[union-attr]
                loss_m = self.micro_loss(m, step)
                (loss_m * (self.weights[m] * self.world)).backward()
            total = total + loss_m.detach().float() * self.weights[m]
        signals = [float(signal.SIGTERM in stop_flag.received), float(signal.SIGINT in stop_flag.received)]
        # One collective per step: the global loss and whether any rank was signalled.
        packed = distributed.all_reduce_sum_(torch.cat([total.reshape(1), torch.tensor(signals, device=device)]))
        loss, got_term, got_int = (float(v) for v in packed.tolist())
        if not math.isfinite(loss):
            non_finite(f"training loss {loss}", step, self.out, self.last_ckpt, log=self.main)
        # max_norm=inf leaves the gradients untouched but still measures them for the check below.
        grad_norm = float(torch.nn.utils.clip_grad_norm_(
            self.params, config.grad_clip if config.grad_clip > 0 else math.inf))
        if not math.isfinite(grad_norm):
            non_finite(f"gradient norm {grad_norm}", step, self.out, self.last_ckpt, log=self.main)
        self.optimizer.step()
        self.ema.update(self.model)
        self.run_sum, self.run_count = self.run_sum + loss, self.run_count + 1
        return {"loss": loss, "lr": lr, "grad_norm": grad_norm, "term": got_term > 0, "int": got_int > 0}

    # ------------------------------------------------------------------ validation and records
    def validate(self) -> float:
        value = 0.0
        if self.main:
            assert self.valid is not None
            with self.ema.swapped(self.model):
                value = evaluate(self.process, self.model, self.valid, batch_size=self.config.batch_size,
                                 max_batches=self.config.eval_batches,
                                 generator=make_generator(self.config.seed + 2, self.device))
        packed = torch.tensor([value], dtype=torch.float64, device=self.device)
        return float(distributed.broadcast_(packed, src=0).item())

    def record(self, step: int, lr: float, valid_loss: Optional[float]) -> None:
        seconds = self.seconds()
        rec = {"step": step, "train_loss": self.run_sum / self.run_count if self.run_count else None,
               "valid_loss": valid_loss, "lr": lr, "seconds": round(seconds, 3)}
        self.history.append(rec)
        self.run_sum, self.run_count = 0.0, 0
        if self.main:
            logger.info("step %d/%d  train %.4f  valid %s  lr %.3g  %.1fs", step, self.config.steps,
                        rec["train_loss"], "-" if valid_loss is None else f"{valid_loss:.4f}", lr, seconds)

    def out_of_time(self) -> bool:
        """The invocation's wall-clock limit passed (the same answer on every rank)."""
        if self.config.minutes <= 0:
            return False
        late = torch.tensor([float(time.perf_counter() - self.t0 > 60.0 * self.config.minutes)], device=self.device)
        return float(distributed.broadcast_(late, src=0).item()) > 0

    def due_for_save(self, step: int, last: bool, stopping: bool) -> bool:
        config = self.config
        if self.out is None:
            return False
        by_clock = (config.checkpoint_minutes > 0
                    and time.perf_counter() - self.last_save > 60.0 * config.checkpoint_minutes)
        return _every(config.checkpoint_every, step) or last or stopping or by_clock

    # ------------------------------------------------------------------ the loop
    def run(self, on_step: Optional[Callable[[int, dict[str, Any]], None]]) -> dict[str, Any]:
        config = self.config
        if self.step >= config.steps and self.main:
            logger.info("%s is already at step %d (>= %d steps); nothing to train", self.out, self.step, config.steps)
        self.t0 = self.last_save = time.perf_counter()
        self.model.train()
        if self.ddp is not None:
            self.ddp.train()
        with StopOnSignal() as stop_flag:
            for step in range(self.step + 1, config.steps + 1):  # step: 1-based count of updates made
                self.step = step
                info = self.update(step, stop_flag)
                timed_out = self.out_of_time()
                last = step == config.steps or timed_out
                got_term, got_int = info.pop("term"), info.pop("int")
                stopping = (got_term or got_int) and not last
                evaluating = self.valid is not None and (_every(config.eval_every, step) or last)
                if evaluating:
                    info["valid_loss"] = self.validate()
                if evaluating or _every(config.log_every, step) or last:
                    self.record(step, info["lr"], info.get("valid_loss"))
                if self.due_for_save(step, last, stopping):
                    self.checkpoint(step)
                if on_step is not None:
                    on_step(step, info)
                if stopping:
                    self.interrupt(step, signal.SIGTERM if got_term else signal.SIGINT)
                if timed_out:
                    if self.main:
                        logger.info("stopped at step %d: the %g-minute limit passed; continue with --resume",
                                    step, config.minutes)
                    break
        distributed.barrier()  # the final checkpoint is on disk before any rank reads it
        return self.summary()

    def interrupt(self, step: int, signum: int) -> None:
        distributed.barrier()  # rank 0's checkpoint is complete before anyone exits
        where = (f"checkpoint saved in {self.out}; continue with --resume" if self.out is not None
                 else "no checkpoint folder was given, nothing was saved")
        msg = f"training interrupted by {signal.Signals(signum).name} after step {step}; {where}"
        if self.main:
            logger.info(msg)  # the caller reports the exception; no second warning line
        raise TrainingInterrupted(msg, step=step, signum=signum, checkpoint=self.out)

    def summary(self) -> dict[str, Any]:
        train_losses = [h["train_loss"] for h in self.history if h["train_loss"] is not None]
        valid_losses = [h["valid_loss"] for h in self.history if h["valid_loss"] is not None]
        return {
            "history": self.history,
            "step": self.step,
            "seconds": self.seconds(),
            "final_train_loss": train_losses[-1] if train_losses else None,
            "final_valid_loss": valid_losses[-1] if valid_losses else None,
            "ema": self.ema,  # the EMA object (not JSON): ``summary["ema"].copy_to(model)`` to use its weights
        }


def _every(n: int, at: int) -> bool:
    return n > 0 and at % n == 0


def train(
    process: "Process",
    model: nn.Module,
    data: Union[Tensor, Batch, BatchStream],
    *,
    config: TrainConfig,
    valid: Optional[Batch] = None,
    out_dir: Optional[Union[Path, str]] = None,
    run_meta: Optional[dict[str, Any]] = None,
    resume: bool = False,
    device: Optional[Union[torch.device, str]] = None,
    on_step: Optional[Callable[[int, dict[str, Any]], None]] = None,
    model_name: Optional[str] = None,
) -> dict[str, Any]:
    """Train ``model`` on ``process.loss`` for ``config.steps`` optimiser steps.

    When a ``torch.distributed`` process group with more than one process is open (see
    :func:`ddsm.distributed.init_from_env`), every process must call this with the same arguments:
    the model is wrapped in DistributedDataParallel, each process handles its share of each global
    batch, and only rank 0 validates, logs and writes ``out_dir``; all ranks return the same weights.

    Args:
        process: supplies ``loss(model, x0 (B, L), cond=(B,)|None, pad_mask=(B, L)|None,
            generator=...) -> LossOutput``.
        model: ``forward(x (B, L, C_in), t (B,), cond (B,)|None) -> (B, L, C_out)``; trained in place
            (it ends with the raw weights; the EMA weights are in the checkpoint). A batch with
            tracks ``(B, L, S)`` concatenates them to the process's features (the network must
            have ``in_channels = process.in_channels + S``).
        data: a whole data set (a :class:`Batch`, or a bare ``(N, L)`` token tensor, walked in
            epochs by :class:`TensorStream`) or any :class:`BatchStream`.
        config: hyper-parameters (``batch_size`` is the global batch over all processes).
        valid: validation examples (the first ``eval_batches`` batches are used), or None.
        out_dir: checkpoint folder, written every ``checkpoint_every`` steps (and
            ``checkpoint_minutes``), at the end, at the ``minutes`` limit and when interrupted by
            SIGTERM/SIGINT.
        run_meta: extra config.json entries (alphabet, seq_len, classes, seed, data_hash...).
        resume: continue from the checkpoint in ``out_dir`` up to ``config.steps`` (a checkpoint
            whose save was cut short by a crash is first restored, see :func:`recover_checkpoint`).
        device: where to train; default the device of the model's parameters.
        on_step: called as ``on_step(step, info)`` after every step, ``info = {"loss", "lr",
            "grad_norm"}`` plus ``"valid_loss"`` on evaluation steps (the CLI's progress bar).
            ``loss`` is the global batch's loss, the same on every rank.
        model_name: registry name recorded in config.json (default: looked up in ``MODELS``).

    Returns:
        ``{"history": [{step, train_loss, valid_loss, lr, seconds}, ...], "step", "seconds",
        "final_train_loss", "final_valid_loss", "ema"}`` (losses None when not measured; ``ema`` is
        the :class:`EMA` object, whose weights sampling should use).

    Raises:
        FloatingPointError: a non-finite loss or gradient norm, naming the step; the last
            checkpoint in ``out_dir`` (if any) is left as it was.
        TrainingInterrupted: SIGTERM or SIGINT arrived; the step it names was completed and saved.
        DDSMInputError: malformed data, a batch smaller than its micro-batches, or an ``out_dir``
            that cannot be resumed.
    """
    device_ = _device_of(model, device)
    if isinstance(data, Tensor):
        data = Batch(data)
    stream = TensorStream(data, config.batch_size, config.seed, device_) if isinstance(data, Batch) else data
    if valid is not None:
        valid.check("validation")
        if isinstance(data, Batch) and (valid.track is None) != (data.track is None):
            raise DDSMInputError("training and validation data must both have signal tracks or neither")
    if resume and out_dir is None:
        raise ValueError("resume=True needs out_dir")
    out = Path(out_dir) if out_dir is not None else None
    name = _model_name(model, model_name) if out is not None else (model_name or "")
    trainer = _Trainer(process, model, stream, valid, config=config, out=out, meta=dict(run_meta or {}),
                       name=name, device=device_)
    if resume:
        trainer.resume()
    return trainer.run(on_step)
