"""Variable-length design on real peptides: do design lengths follow the data's?

WW domains (Pfam PF00397, ../shared/data/pfam_ww_domain) are ungapped to their true lengths
(18-34 residues), records with X dropped, split 90/10 (train / valid) by a seeded permutation.
Each process is trained through the CLI as a user would (``ddsm train --variable-length``), then
``ddsm sample`` draws designs; the bench prints the two-sample Kolmogorov-Smirnov distance between
design and valid lengths, next to train-vs-valid (the floor) and a fixed-length sampler (what
``--length`` padding without an end letter gives: every design 34 long).

    OMP_NUM_THREADS=1 python bench/variable_length.py --processes masked,jacobi --steps 1500
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "pfam_ww_domain" / "ww_PF00397_rp15_aligned.fa.gz"


def read_ungapped(path: Path) -> list[tuple[str, str]]:
    out, name, seq = [], None, []
    for line in gzip.open(path, "rt"):
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith(">"):
            if name is not None:
                out.append((name, "".join(seq)))
            name, seq = line[1:].split()[0], []
        else:
            seq.append(line.strip().replace("-", "").replace(".", "").upper())
    out.append((name, "".join(seq)))
    return [(n, s) for n, s in out if "X" not in s]


def ks(a: np.ndarray, b: np.ndarray) -> float:
    grid = np.arange(0, max(a.max(), b.max()) + 1)
    return float(np.abs((a[:, None] <= grid).mean(0) - (b[:, None] <= grid).mean(0)).max())


def lengths_of(fasta: Path) -> np.ndarray:
    return np.array([len(line.strip()) for line in fasta.read_text().splitlines() if line and line[0] != ">"])


def main() -> None:
    ap = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--processes", default="masked,jacobi")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("-n", type=int, default=400, help="designs per process")
    ap.add_argument("--sample-steps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    recs = read_ungapped(DATA)
    order = np.random.default_rng(args.seed).permutation(len(recs))
    n_valid = len(recs) // 10
    valid, train = [recs[i] for i in order[:n_valid]], [recs[i] for i in order[n_valid:]]
    lv = np.array([len(s) for _, s in valid])
    lt = np.array([len(s) for _, s in train])
    print(f"WW domains: {len(train)} train / {len(valid)} valid, lengths {lt.min()}-{lt.max()} "
          f"(valid mean {lv.mean():.2f}, sd {lv.std():.2f})")
    print(f"{'sampler':28s} {'KS vs valid':>11s} {'mean':>6s} {'sd':>5s} {'train s':>8s}")
    print(f"{'train lengths (floor)':28s} {ks(lt, lv):11.3f} {lt.mean():6.2f} {lt.std():5.2f} {'-':>8s}")
    fixed = np.full(args.n, lt.max())
    print(f"{'fixed length (no end letter)':28s} {ks(fixed, lv):11.3f} {fixed.mean():6.2f} {0:5.2f} {'-':>8s}")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "train.fa").write_text("".join(f">{n}\n{s}\n" for n, s in train))
        for proc in args.processes.split(","):
            t0 = time.time()
            subprocess.run([sys.executable, "-m", "ddsm", "train", "--data", str(d / "train.fa"), "--out",
                            str(d / proc), "--variable-length", "--process", proc, "--model", "conv",
                            "--set-model", "hidden=64", "--set-model", "n_blocks=4", "--steps", str(args.steps),
                            "--batch-size", "64", "--seed", str(args.seed), "--quiet", "--device", "cpu"],
                           check=True, capture_output=True)
            t_train = time.time() - t0
            subprocess.run([sys.executable, "-m", "ddsm", "sample", str(d / proc), "-n", str(args.n), "-o",
                            str(d / f"{proc}.fa"), "--steps", str(args.sample_steps), "--seed", str(args.seed),
                            "--quiet", "--device", "cpu"], check=True, capture_output=True)
            ld = lengths_of(d / f"{proc}.fa")
            print(f"{proc + ' --variable-length':28s} {ks(ld, lv):11.3f} {ld.mean():6.2f} {ld.std():5.2f} "
                  f"{t_train:8.0f}", flush=True)


if __name__ == "__main__":
    main()
