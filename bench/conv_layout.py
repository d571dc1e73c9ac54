"""The conv backbone's block layout: conv1d on the transposed input vs channels-last conv2d.

    python bench/conv_layout.py [--batch 128] [--length 200] [--hidden 128] [--blocks 8] [--threads 1]

``_ConvBlock`` keeps its activations as ``(B, L, C)``. The obvious ``Conv1d`` call needs them as
``(B, C, L)``, i.e. a transposed, non-contiguous view, which the CPU kernels copy, and the output comes
back transposed, so the LayerNorm after it reads strided memory too. The same memory is a
channels-last ``(B, C, 1, L)`` tensor, so the block runs the conv as a height-1 ``conv2d`` in that
layout instead (same weights and maths). This prints the network's forward time (sampling) and
forward + backward time (training) for both, in float32 and under bf16 autocast, and the largest
output difference.
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from ddsm.models.conv import ConvDenoiser, _ConvBlock


def _conv1d_forward(self: _ConvBlock, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    y = self.conv(h.transpose(1, 2)).transpose(1, 2)
    y = y + self.dense(c)[:, None, :]
    return h + self.drop(F.gelu(self.norm(y)))


@contextmanager
def conv1d_layout():
    fast = _ConvBlock.forward
    _ConvBlock.forward = _conv1d_forward
    try:
        yield
    finally:
        _ConvBlock.forward = fast


def best_of(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--length", type=int, default=200)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = ConvDenoiser(8, 4, 4, hidden=args.hidden, n_blocks=args.blocks)
    x = torch.randn(args.batch, args.length, 8)
    t = torch.rand(args.batch)
    cond = torch.randint(0, 5, (args.batch,))
    print(f"conv backbone hidden {args.hidden} x {args.blocks} blocks, batch {args.batch} x {args.length}, "
          f"{torch.get_num_threads()} thread(s)")
    for precision in ("fp32", "bf16"):
        autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")  # noqa: E731

        def forward() -> torch.Tensor:
            with torch.no_grad(), autocast():
                return net(x, t, cond)

        def train_step() -> None:
            with autocast():
                out = net(x, t, cond)
            out.float().square().mean().backward()

        rows = {}
        for name, ctx in (("conv1d (transposed input)", conv1d_layout), ("channels-last conv2d", None)):
            if ctx is None:
                rows[name] = (forward(), best_of(forward, args.reps), best_of(train_step, args.reps))
            else:
                with ctx():
                    rows[name] = (forward(), best_of(forward, args.reps), best_of(train_step, args.reps))
        (ref, f_old, b_old), (new, f_new, b_new) = rows.values()
        diff = float((ref.float() - new.float()).abs().max())
        for name, (_, f, b) in rows.items():
            print(f"  {precision}  {name:26s} forward {f * 1e3:7.1f} ms   forward+backward {b * 1e3:7.1f} ms")
        print(f"  {precision}  speed-up: forward {f_old / f_new:.2f}x, forward+backward {b_old / b_new:.2f}x; "
              f"max |output difference| {diff:.2e}")


if __name__ == "__main__":
    main()
