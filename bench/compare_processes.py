"""Every process, same backbone, same wall-clock budget: likelihood, sample quality, speed.

    python bench/compare_processes.py [--minutes 3] [--datasets dhs4,shakespeare] [--processes all]

Datasets (train/valid only; the test splits are kept aside):
- ``dhs4``: ../shared/data/dhs4 train.fasta / valid.fasta (200 bp DNA, K = 4);
- ``shakespeare``: ../shared/data/tiny_shakespeare, character level (K = 65), windows of 256
  characters; the last 10 % of the text is held out (nanoGPT's split).
Backbone: the transformer (d_model 128, 4 layers, 4 heads; causal for ``autoregressive``).
Each process trains for the same wall-clock budget (steps sized by a timing probe), then prints:
held-out bits per token (exact for autoregressive, an upper bound otherwise), 3-mer Jensen-Shannon
distance between 100 samples and held-out data, and sampling seconds per 100 sequences.
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import numpy as np
import torch

from ddsm.api import build_network
from ddsm.data import Alphabet, encode_records, read_fasta
from ddsm.metrics import kmer_js
from ddsm.processes import PROCESSES, build_process
from ddsm.sampling import sample
from ddsm.training import TrainConfig, train

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load(name: str, rng: np.random.Generator):
    if name == "dhs4":
        tr = encode_records(read_fasta(DATA / "dhs4" / "train.fasta"))
        va = encode_records(read_fasta(DATA / "dhs4" / "valid.fasta"), tr.alphabet)
        return torch.from_numpy(tr.tokens), torch.from_numpy(va.tokens[:512]), tr.alphabet
    text = gzip.open(DATA / "tiny_shakespeare" / "input.txt.gz", "rt").read()
    letters = "".join(sorted(set(text)))
    alpha = Alphabet("shakespeare", letters)
    ids = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    lut = np.zeros(256, dtype=np.int64)
    lut[np.frombuffer(letters.encode("ascii"), dtype=np.uint8)] = np.arange(len(letters))
    ids = lut[ids]
    cut = int(0.9 * len(ids))
    L = 256
    tr_starts = rng.integers(0, cut - L, size=20000)
    va_starts = np.arange(cut, len(ids) - L, L)[:256]
    tr = np.stack([ids[s : s + L] for s in tr_starts])
    va = np.stack([ids[s : s + L] for s in va_starts])
    return torch.from_numpy(tr), torch.from_numpy(va), alpha


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--datasets", default="dhs4,shakespeare")
    ap.add_argument("--processes", default="all")
    ap.add_argument("--eval-steps", type=int, default=20, help="steps of the ELBO estimates")
    ap.add_argument("--ode-steps", type=int, default=200,
                    help="Heun steps of DDSM's ODE bound (fewer bias it low: docs/design.md)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--sample-steps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (cosine) of every process")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = sorted(PROCESSES) if args.processes == "all" else args.processes.split(",")
    print(f"torch threads {torch.get_num_threads()}; budget {args.minutes:g} min per process and dataset; "
          f"peak lr {args.lr:g}")
    for dname in args.datasets.split(","):
        rng = np.random.default_rng(args.seed)
        x_tr, x_va, alpha = load(dname, rng)
        K, L = alpha.K, x_tr.shape[1]
        ref = [alpha.decode(r) for r in x_va.numpy()]
        print(f"\n== {dname}: K={K}, L={L}, {len(x_tr)} train / {len(x_va)} held-out windows")
        print(f"{'process':15s} {'steps':>6s} {'bits/token':>11s} {'3-mer JS':>9s} {'s/100 seqs':>11s}")
        for name in names:
            torch.manual_seed(args.seed)
            proc = build_process(name, K)
            net = build_network(proc, "transformer", 0, {"max_len": max(1024, L)})
            probe = TrainConfig(steps=3, batch_size=32, warmup_steps=1, eval_every=0, checkpoint_every=0, log_every=0)
            train(proc, net, x_tr[:512], config=probe, model_name="transformer")  # one-off costs
            t0 = time.time()
            train(proc, net, x_tr[:512], config=probe, model_name="transformer")
            per = (time.time() - t0) / 3
            steps = max(20, int(args.minutes * 60 / per))
            torch.manual_seed(args.seed)
            net = build_network(proc, "transformer", 0, {"max_len": max(1024, L)})
            cfg = TrainConfig(steps=steps, batch_size=32, lr=args.lr, warmup_steps=min(200, steps // 10), eval_every=0,
                              checkpoint_every=0, log_every=0, seed=args.seed, schedule="cosine", ema_decay=0.995)
            summary = train(proc, net, x_tr, config=cfg, model_name="transformer")
            summary["ema"].copy_to(net)
            net.eval()
            g = torch.Generator().manual_seed(args.seed + 1)
            bits = []
            for i in range(0, 128, 32):
                try:
                    with torch.no_grad():
                        n_eval = args.ode_steps if name == "jacobi" else args.eval_steps
                        bits.append(proc.bits_per_token(net, x_va[i : i + 32], generator=g, steps=n_eval))
                except NotImplementedError:
                    break
            b = torch.cat(bits).mean().item() if bits else float("nan")
            t0 = time.time()
            with torch.no_grad():
                if name == "autoregressive":  # exact ancestral sampling with the KV cache
                    toks = torch.cat([proc.generate(net, (50, L), generator=g) for _ in range(2)])
                else:
                    toks = torch.cat([sample(proc, net, (50, L), steps=args.sample_steps, generator=g)
                                      for _ in range(2)])
            t_s = time.time() - t0
            seqs = [alpha.decode(r) for r in toks.numpy()]
            js = kmer_js(seqs, ref, 3, alpha.letters)
            print(f"{name:15s} {steps:6d} {b:11.4f} {js:9.4f} {t_s:11.1f}", flush=True)
    print("\nbits/token: exact for autoregressive; an upper bound (ELBO / ODE bound) for the others. "
          "For scale: 1.47 nats/char (nanoGPT, GPU) = 2.12 bits/char.")


if __name__ == "__main__":
    main()
