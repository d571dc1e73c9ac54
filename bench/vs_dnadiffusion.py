"""Peer comparison, third column: DNA-Diffusion (``dnadiffusion`` 0.1.1, a Gaussian DDPM with a UNet)
trained for the same CPU time as ``bench/vs_d3dna.py``'s two models, judged by the same evaluation.

    OMP_NUM_THREADS=1 python bench/vs_dnadiffusion.py --seconds 3300 --n-per-class 100 \
        --peers runs/d3/designs

dnadiffusion is not a dependency of ddsm. Its 0.1.1 wheel declares Python >= 3.12 and asks for
torchvision, jupyterlab, wandb and transformers; its model code (``models/diffusion.py``,
``models/unet.py``) needs only torch, einops and memory-efficient-attention-pytorch, and imports
on Python 3.11. Install it next to the CPU torch without its declared requirements:

    pip install --no-deps --ignore-requires-python dnadiffusion==0.1.1 memory-efficient-attention-pytorch
    pip install einops

(with ``--python-version 3.12 --only-binary=:all:`` to ``pip download`` the wheel if pip on 3.11
hides it). The package index reachable here also has 0.0.0.dev0, which pins torch 2.0.0.

Protocol (as ``bench/vs_d3dna.py``, whose ddsm and d3-dna designs ``--peers`` reads, so all three
are evaluated in one process with the same real split and seed):
- DNA-Diffusion: its ``UNet`` (dim 200, dim_mults 1/2/4, resnet_block_groups 4: its published
  config; the network hard-codes 200 bp) inside its ``Diffusion`` (50 timesteps, linear betas
  1e-4..0.2, Huber loss on the noise, label dropout 0.1 to its unconditional class 0), on one-hot
  sequences with 0 mapped to -1 (its data loader), shape ``(B, 1, 4, 200)``.
- Shared with the other two: batch size, peak learning rate with linear warm-up, EMA decay 0.999,
  gradient clipping 1, fp32, a wall-clock budget (``--seconds``: what ddsm trained in the
  vs_d3dna run). Its published Adam lr 1e-4 and batch 120 are sized for 2,200 GPU epochs.
- Sampling: its ``Diffusion.sample`` (ancestral DDPM over all 50 timesteps, its class-guided step)
  with ``cond_weight 0``, i.e. plain conditional sampling as for the other two (its default
  guidance scale is 1); tokens are the argmax over the four channels.

Measured on the 2-core development CPU (one thread, the other core training): its published UNet has
94,562,810 parameters; ``--seconds 90 --n-per-class 8 --sample-batch 8`` trained 3 steps of 64 in
128 s and drew 32 designs in 759 s (24 s per design). At vs_d3dna's 55-minute budget that is ~77
training steps and ~2.6 hours to draw its 400 designs, so on this CPU the column cannot be filled
at an equal budget (the smallest variant the hard-coded 200-channel cross-attention allows,
dim_mults [1], still has 10.4 M parameters). It is meant for a lent GPU.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ddsm.data import encode_records, read_fasta
from ddsm.data.record import Record
from ddsm.evaluate import Evaluation, evaluate_detailed, format_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_d3dna import DATA, LABEL_KEY, n_params, side_by_side, split_real, write_fasta  # noqa: E402

INSTALL = ("pip install --no-deps --ignore-requires-python dnadiffusion==0.1.1 "
           "memory-efficient-attention-pytorch && pip install einops")


def import_dnadiffusion():
    try:
        from dnadiffusion.models.diffusion import Diffusion
        from dnadiffusion.models.unet import UNet
    except ImportError as e:
        sys.exit(f"vs_dnadiffusion: dnadiffusion is not importable ({e}); install it with: {INSTALL}")
    return Diffusion, UNet


def one_hot_pm1(tokens: np.ndarray) -> torch.Tensor:
    """Token ids ``(N, L)`` -> DNA-Diffusion's input ``(N, 1, 4, L)``: one-hot with 0 -> -1."""
    x = np.full((len(tokens), 4, tokens.shape[1]), -1.0, dtype=np.float32)
    np.put_along_axis(x, tokens[:, None, :].astype(np.int64), 1.0, axis=1)
    return torch.from_numpy(x)[:, None]


def train(diffusion: nn.Module, x: torch.Tensor, y: torch.Tensor,
          args: argparse.Namespace) -> tuple[nn.Module, int, float]:
    """Train for ``args.seconds`` of wall clock; returns the EMA copy, steps and seconds."""
    g = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.Adam(diffusion.parameters(), lr=args.lr)
    ema = copy.deepcopy(diffusion).requires_grad_(False)
    steps, t0, losses = 0, time.perf_counter(), []
    while time.perf_counter() - t0 < args.seconds:
        idx = torch.randint(0, len(x), (args.batch_size,), generator=g)
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (steps + 1) / args.warmup)
        loss = diffusion(x[idx], y[idx])  # its p_losses: random timestep, label dropout 0.1, Huber
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(diffusion.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), diffusion.parameters()):
                pe.lerp_(p, 1.0 - args.ema)
        steps += 1
        losses.append(loss.item())
        if steps % 100 == 0:
            print(f"dnadiffusion step {steps}: loss {np.mean(losses[-100:]):.4f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return ema, steps, time.perf_counter() - t0


@torch.no_grad()
def sample(ema: nn.Module, classes: list[str], args: argparse.Namespace, length: int) -> list[Record]:
    letters = "ACGT"
    out = []
    for c, name in enumerate(classes, start=1):  # its class 0 is the unconditional one
        done = 0
        while done < args.n_per_class:
            b = min(args.sample_batch, args.n_per_class - done)
            imgs = ema.sample(torch.full((b,), float(c)), (b, 1, 4, length), 0.0)  # cond_weight 0
            ids = np.asarray(imgs[-1]).reshape(b, 4, length).argmax(1)
            out += [Record(f"dnadiffusion_{name}_{done + i}", "".join(letters[k] for k in row), {LABEL_KEY: name})
                    for i, row in enumerate(ids)]
            done += b
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, required=True, help="training wall clock (vs_d3dna's ddsm seconds)")
    ap.add_argument("--n-per-class", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=str(DATA), help="folder with train.fasta and valid.fasta")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--sample-batch", type=int, default=100)
    ap.add_argument("--max-seqs", type=int, default=1000, help="per-class subsample for motifs / discriminator")
    ap.add_argument("--peers", default=None,
                    help="vs_d3dna.py's --out folder: its designs_ddsm.fasta / designs_d3dna.fasta join the table")
    ap.add_argument("--out", default=None, help="folder to write the DNA-Diffusion designs (FASTA)")
    args = ap.parse_args()
    Diffusion, UNet = import_dnadiffusion()
    torch.manual_seed(args.seed)
    data = Path(args.data)
    train_recs, valid_recs = read_fasta(data / "train.fasta"), read_fasta(data / "valid.fasta")
    ds = encode_records(train_recs, label_key=LABEL_KEY)
    classes = list(ds.classes)
    if ds.alphabet.letters != "ACGT" or ds.length != 200:
        sys.exit("vs_dnadiffusion: DNA-Diffusion's UNet is fixed to 200 bp DNA (ACGT)")
    unet = UNet(dim=200, channels=1, dim_mults=[1, 2, 4], resnet_block_groups=4, num_classes=len(classes) + 1)
    diffusion = Diffusion(unet, timesteps=50, beta_start=1e-4, beta_end=0.2)
    print(f"{data.name}: {len(ds)} train, classes {classes}; DNA-Diffusion UNet {n_params(unet):,} parameters; "
          f"torch threads {torch.get_num_threads()}", flush=True)
    x, y = one_hot_pm1(ds.tokens), torch.from_numpy(np.asarray(ds.labels)).long() + 1
    ema, steps, secs = train(diffusion, x, y, args)
    print(f"dnadiffusion: trained {steps} steps in {secs:.0f} s (lr {args.lr:g}, batch {args.batch_size})", flush=True)
    t0 = time.perf_counter()
    designs = sample(ema.eval(), classes, args, ds.length)
    print(f"sampling {args.n_per_class} per class x {len(classes)} classes, 50 steps: "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        write_fasta(Path(args.out) / "designs_dnadiffusion.fasta", designs)

    def evaluate(recs: list[Record], reference: list[Record]) -> Evaluation:
        return evaluate_detailed(recs, reference, label_key=LABEL_KEY, train=train_recs, oracle="auto",
                                 max_seqs=args.max_seqs, seed=args.seed)

    evals: dict[str, Evaluation] = {}
    if args.peers:
        for name, file in (("ddsm", "designs_ddsm.fasta"), ("d3-dna", "designs_d3dna.fasta")):
            if (Path(args.peers) / file).exists():
                evals[name] = evaluate(read_fasta(Path(args.peers) / file), valid_recs)
    evals["DNA-Diffusion"] = evaluate(designs, valid_recs)
    real_designs, real_reference = split_real(valid_recs, classes, args.n_per_class, args.seed)
    real = evaluate(real_designs, real_reference)
    print("\n== DNA-Diffusion: designs vs valid.fasta")
    print(format_table(evals["DNA-Diffusion"].table))
    print(f"\n== all classes, conditional generation ({secs:.0f} s training for DNA-Diffusion, {steps} steps; "
          f"{math.floor(args.seconds)} s budget)")
    print(side_by_side(evals, real))


if __name__ == "__main__":
    main()
