"""What torch.compile buys the Sudoku denoiser on this machine: training steps and sampling calls.

    python bench/sudoku_compile.py --threads 1

Training: one loss + backward + AdamW step on ``--batch`` streamed grids (bf16 autocast where
native), eager against ``torch.compile`` of the forward (as ``SudokuTrainConfig(compile=True)``
does), averaged over ``--reps`` steps after 3 warm-up steps; the first compiled step (compilation)
is timed apart. Sampling: one network call of the bundled model on 32 boards, eager and compiled
(dynamic shapes, as ``load_sudoku_model(compile=True)``), bf16 and fp32. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from ddsm.compiling import compile_or_eager
from ddsm.models.sudoku_grid import SudokuDenoiser
from ddsm.precision import native_bf16
from ddsm.sudoku.generator import GridStream, base_grids
from ddsm.sudoku.model_io import load_sudoku_model
from ddsm.sudoku.process import sudoku_process


def train_steps(compiled: bool, batch: int, reps: int) -> dict:
    proc = sudoku_process()
    stream = GridStream(base_grids(512, seed=0))
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = SudokuDenoiser(18, 9, d_model=96, n_layers=8, hidden=192)
    forward = compile_or_eager(model) if compiled else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    amp = native_bf16(torch.device("cpu"))

    def net(x, t, c=None):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            return forward(x, t, c)

    def step() -> float:
        x0 = stream.sample(batch, generator=gen)
        t0 = time.perf_counter()
        loss = proc.loss(net, x0, generator=gen).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    first = step()
    for _ in range(2):
        step()
    mean = sum(step() for _ in range(reps)) / reps
    return {"task": "train", "compiled": compiled, "bf16": amp, "batch": batch, "first_step_s": round(first, 1),
            "ms_per_step": round(1000 * mean, 1), "grids_per_s": round(batch / mean, 1)}


@torch.no_grad()
def network_calls(compiled: bool, precision: str, reps: int) -> dict:
    sm = load_sudoku_model(precision=precision, compile=compiled)
    g = torch.Generator().manual_seed(0)
    x = torch.log_softmax(3 * torch.randn(32, 81, 9, generator=g), -1)
    t = torch.rand(32, generator=g)
    t0 = time.perf_counter()
    sm.model_fn(x, t)
    first = time.perf_counter() - t0
    sm.model_fn(x, t)
    t0 = time.perf_counter()
    for _ in range(reps):
        sm.model_fn(x, t)
    ms = 1000 * (time.perf_counter() - t0) / reps
    return {"task": "sample", "compiled": compiled, "precision": sm.precision, "boards": 32,
            "first_call_s": round(first, 1), "ms_per_call": round(ms, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--reps", type=int, default=20)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)
    for compiled in (False, True):
        print(json.dumps(train_steps(compiled, args.batch, args.reps)), flush=True)
    for precision in ("bf16", "fp32"):
        for compiled in (False, True):
            print(json.dumps(network_calls(compiled, precision, args.reps)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
