"""Training throughput (sequences per second) for 1 and 2 processes on the CPU, and on CUDA (fp32 and
bf16 autocast) when a GPU is present.

    python bench/throughput.py                       # CPU: 1 process, 2 processes (gloo)
    python bench/throughput.py --process jacobi --length 200 --batch-size 64 --steps 30
    python bench/throughput.py --compile             # also torch.compile on CUDA

Each configuration trains the same model on random DNA through ``ddsm.training.train`` (multi-process
runs through torchrun and DistributedDataParallel, exactly as ``ddsm train --nproc N``), skips the
first ``--warmup`` steps and reports ``batch_size * timed steps / seconds`` for the global batch.
On the CPU, N processes share the cores: each gets ``cores // N`` threads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve()


def measure(args: argparse.Namespace, device: str, *, bf16: bool = False, compile: bool = False) -> dict[str, Any]:
    """Train in this process (a torchrun rank when launched by one); returns rank 0's timing."""
    from ddsm.api import build_network
    from ddsm.distributed import init_from_env, shutdown
    from ddsm.processes import build_process
    from ddsm.training import TrainConfig, train

    ctx = init_from_env(device)
    try:
        process = build_process(args.process, 4)
        torch.manual_seed(0)
        model = build_network(process, args.model, 0)
        x = torch.randint(0, 4, (args.n_seq, args.length), generator=torch.Generator().manual_seed(0))
        config = TrainConfig(steps=args.warmup + args.steps, batch_size=args.batch_size, warmup_steps=1,
                             eval_every=0, checkpoint_every=0, log_every=0, seed=0, grad_accum=args.grad_accum,
                             bf16=bf16, compile=compile)
        stamps: dict[int, float] = {}

        def on_step(step: int, info: dict[str, Any]) -> None:
            if ctx.device is not None and ctx.device.type == "cuda":
                torch.cuda.synchronize()
            stamps[step] = time.perf_counter()

        train(process, model, x, config=config, device=ctx.device, on_step=on_step)
        seconds = stamps[config.steps] - stamps[args.warmup]
        return {"seq_per_s": args.batch_size * args.steps / seconds, "ms_per_step": 1000 * seconds / args.steps,
                "world_size": ctx.world_size, "threads": torch.get_num_threads()}
    finally:
        shutdown()


def run_torchrun(args: argparse.Namespace, nproc: int, device: str, bf16: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        env = dict(os.environ)
        if device == "cpu":
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               str(HERE), *sys.argv[1:], "--worker", str(result), "--device", device]
        if bf16:
            cmd.append("--bf16")
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        return json.loads(result.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--process", default="masked")
    ap.add_argument("--model", default="conv", help="backbone, at ddsm.api.DEFAULT_MODEL_OPTIONS sizes")
    ap.add_argument("--length", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=32, help="global batch")
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--n-seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile on CUDA")
    ap.add_argument("--cuda-only", action="store_true", help="skip the CPU rows (on a GPU machine)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--device", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:  # a torchrun rank
        res = measure(args, args.device, bf16=args.bf16)
        if int(os.environ.get("RANK", "0")) == 0:
            Path(args.worker).write_text(json.dumps(res))
        return

    rows: list[tuple[str, dict[str, Any]]] = []
    cores = os.cpu_count() or 1
    if not args.cuda_only:
        rows.append(("cpu  1 process  fp32", measure(args, "cpu")))
        if cores > 1:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            rows.append(("cpu  1 process  fp32, 1 thread", measure(args, "cpu")))
            torch.set_num_threads(threads)
        rows.append(("cpu  2 processes fp32 (gloo)", run_torchrun(args, 2, "cpu", False)))
    if torch.cuda.is_available():
        rows.append(("cuda 1 process  fp32", measure(args, "cuda")))
        rows.append(("cuda 1 process  bf16", measure(args, "cuda", bf16=True)))
        if args.compile:
            rows.append(("cuda 1 process  bf16 + compile", measure(args, "cuda", bf16=True, compile=True)))
        if torch.cuda.device_count() >= 2:
            rows.append(("cuda 2 processes bf16 (nccl)", run_torchrun(args, 2, "cuda", True)))

    gpu = f", GPU: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    print(f"ddsm training throughput: {args.process}/{args.model}, L={args.length}, global batch {args.batch_size}, "
          f"grad_accum {args.grad_accum}, {args.steps} timed steps after {args.warmup}; "
          f"{cores} CPU cores{gpu}; torch {torch.__version__}")
    print(f"{'configuration':34s} {'threads/proc':>12s} {'ms/step':>9s} {'seq/s':>9s}")
    for name, r in rows:
        print(f"{name:34s} {r['threads']:12d} {r['ms_per_step']:9.1f} {r['seq_per_s']:9.1f}")


if __name__ == "__main__":
    main()
