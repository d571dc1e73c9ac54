"""Likelihood on a known chain through the command line: ``ddsm train`` then ``ddsm score``.

    python bench/cli_chain.py [--seeds 5,6] [--steps 800] [--processes jacobi,masked] [--threads 1]

What a user (or an independent check) does with a FASTA file: an order-2 Markov chain over ACGT
(``bench/entropy.py``'s construction, exact per-sequence -log2 p(x)) is written as train/test FASTA,
each process is trained with the CLI's defaults for ``--steps`` steps and scored with ``ddsm
score``'s defaults. Prints each process's mean bits/token, its paired excess over every test
sequence's exact bits, and the paired difference between processes, per chain and averaged over
chains. The chains here are drawn from seeds that ``bench/entropy.py`` does not use by default, so
settings chosen on them are checked on data they were not tuned on.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ddsm.data import Record, write_fasta

sys.path.insert(0, str(Path(__file__).resolve().parent))
from entropy import draw, entropy_per_token, markov_chain, sequence_bits  # noqa: E402

LETTERS = "ACGT"


def save_fasta(path: Path, seqs: list[str], prefix: str = "s") -> None:
    """``seqs`` as FASTA records ``prefix0, prefix1, ...`` (the library's writer; replaces the file)."""
    write_fasta(path, [Record(f"{prefix}{i}", s) for i, s in enumerate(seqs)], force=True)


def print_paired(names: list[str], bits: dict[str, np.ndarray]) -> dict[str, float]:
    """Print the paired difference of every two processes' per-sequence bits (same sequences);
    returns the mean differences by ``"a - b"``."""
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            d = bits[a] - bits[b]
            out[f"{a} - {b}"] = float(d.mean())
            print(f"  paired {a} - {b}: {d.mean():+.4f} +- {d.std() / math.sqrt(len(d)):.4f} bits/token "
                  f"({a} lower on {(d < 0).sum()} of {len(d)})", flush=True)
    return out


def run(cmd: list[str], threads: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    t0 = time.time()
    res = subprocess.run([sys.executable, "-m", "ddsm", *cmd], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    return time.time() - t0


def read_bits(path: Path) -> np.ndarray:
    with open(path) as fh:
        return np.array([float(r["bits_per_token"]) for r in csv.DictReader(fh, delimiter="\t")])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="5,6", help="chains to draw (comma-separated seeds)")
    ap.add_argument("--processes", default="jacobi,masked")
    ap.add_argument("--steps", type=int, default=800, help="ddsm train --steps")
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--n-train", type=int, default=20000)
    ap.add_argument("--n-test", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-args", default="", help="extra ddsm train arguments for every process")
    ap.add_argument("--jacobi-args", default="", help="extra ddsm train arguments for jacobi only")
    ap.add_argument("--workdir", default="", help="keep the files here (default: a temporary folder)")
    args = ap.parse_args()
    names = [n for n in args.processes.split(",") if n]
    K, L, order = 4, args.length, 2
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="cli_chain_"))
    work.mkdir(parents=True, exist_ok=True)
    diffs: dict[str, list[float]] = {}
    excess_all: dict[str, list[float]] = {n: [] for n in names}
    for seed in (int(s) for s in args.seeds.split(",")):
        rng = np.random.default_rng(seed)
        P, pi = markov_chain(order, K, rng)
        H = entropy_per_token(P, pi, L, order)
        train_x = draw(P, pi, args.n_train, L, order, K, rng)
        test_x = draw(P, pi, args.n_test, L, order, K, rng)
        truth = sequence_bits(test_x, P, pi, order, K)
        d = work / f"chain{seed}"
        d.mkdir(exist_ok=True)
        save_fasta(d / "train.fa", ["".join(LETTERS[j] for j in row) for row in train_x])
        save_fasta(d / "test.fa", ["".join(LETTERS[j] for j in row) for row in test_x])
        print(f"chain seed {seed}: order-{order}, L={L}, true entropy {H:.4f} bits/token; "
              f"{args.steps} training steps, {args.threads} thread(s)", flush=True)
        bits: dict[str, np.ndarray] = {}
        for name in names:
            out = d / name
            extra = args.train_args.split() + (args.jacobi_args.split() if name == "jacobi" else [])
            t_train = run(["train", "--data", str(d / "train.fa"), "--out", str(out), "--process", name,
                           "--steps", str(args.steps), "--quiet", "--force", *extra], args.threads)
            t_score = run(["score", str(out), str(d / "test.fa"), "-o", str(d / f"{name}.tsv"), "--quiet",
                           "--force"], args.threads)
            b = read_bits(d / f"{name}.tsv")
            bits[name] = b
            ex = b - truth
            excess_all[name].append(float(ex.mean()))
            print(f"  {name:10s} {b.mean():.4f} bits/token, paired excess {ex.mean():+.4f} +- "
                  f"{ex.std() / math.sqrt(len(ex)):.4f} (train {t_train:.0f} s, score {t_score:.0f} s)", flush=True)
        for pair, mean in print_paired(names, bits).items():
            diffs.setdefault(pair, []).append(mean)
    print("mean over chains: " + ", ".join(f"{n} excess {np.mean(v):+.4f}" for n, v in excess_all.items())
          + "; " + ", ".join(f"{k} {np.mean(v):+.4f}" for k, v in diffs.items()))


if __name__ == "__main__":
    main()
