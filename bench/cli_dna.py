"""Processes compared on real DNA through the command line: ``ddsm train``, ``ddsm score``, ``ddsm sample``.

    python bench/cli_dna.py [--processes jacobi,masked] [--steps 800] [--n-score 128] [--n-samples 500]

dhs4 (``../shared/data/dhs4``, 200 bp; ``--dataset epd_promoters``: 300 bp promoters, 1,530 valid
sequences, so ``--n-ref 900``; train.fasta to train, valid.fasta to evaluate; the test split is
kept aside). Each process is trained with the CLI's defaults (conv backbone) for ``--steps``; then,
per process:

- held-out bits/token from ``ddsm score`` (DDSM: ODE bound; others: ELBO) on ``--n-score`` valid
  sequences, and the paired difference between processes (same sequences);
- 3-mer Jensen-Shannon distance between ``--n-samples`` designs (``ddsm sample``) and a reference
  of other valid sequences; with ``--sample-seeds``, the mean and its standard error over seeds.

For scale it also prints what the numbers would be for simple baselines: the bits/token of Markov
chains of order 0-5 fitted to train.fasta, and the 3-mer JS of as many *real* held-out sequences
(the floor set by the sample size) and of iid letters drawn from the training composition. A
3-mer JS near the iid one means a model has learned the letter composition and little else.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

from ddsm.data import encode_records, read_fasta
from ddsm.metrics import gc_content, kmer_js

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_chain import print_paired, run, save_fasta  # noqa: E402  (shared with the chain bench)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def markov_bits(train: np.ndarray, test: np.ndarray, order: int, K: int = 4) -> float:
    """Bits/token of ``test (N, L)`` under an order-``order`` chain fitted to ``train`` (add-1/2
    counts; the first ``order`` letters by the letter composition)."""
    comp = np.bincount(train.ravel(), minlength=K) / train.size
    n = K**order
    counts = np.full((n, K), 0.5)
    ctx = np.zeros(len(train), dtype=np.int64)
    for j in range(order):
        ctx = ctx * K + train[:, j]
    for i in range(order, train.shape[1]):
        np.add.at(counts, (ctx, train[:, i]), 1)
        ctx = (ctx * K + train[:, i]) % n
    P = counts / counts.sum(1, keepdims=True)
    bits = -np.log2(comp[test[:, :order]]).sum()
    ctx = np.zeros(len(test), dtype=np.int64)
    for j in range(order):
        ctx = ctx * K + test[:, j]
    for i in range(order, test.shape[1]):
        bits -= np.log2(P[ctx, test[:, i]]).sum()
        ctx = (ctx * K + test[:, i]) % n
    return float(bits / test.size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", default="jacobi,masked")
    ap.add_argument("--dataset", default="dhs4", choices=["dhs4", "epd_promoters"])
    ap.add_argument("--steps", type=int, default=800, help="ddsm train --steps")
    ap.add_argument("--n-score", type=int, default=128, help="valid sequences scored")
    ap.add_argument("--n-samples", type=int, default=500, help="designs per process for the 3-mer JS")
    ap.add_argument("--n-ref", type=int, default=1000, help="valid sequences the designs are compared with")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-args", default="", help="extra ddsm train arguments for every process")
    ap.add_argument("--jacobi-substeps", default="",
                    help="comma-separated SDE sub-steps per network call to sample jacobi with (default: its own)")
    ap.add_argument("--jacobi-extrapolate", default="",
                    help="comma-separated ddsm sample --extrapolate values to sample jacobi with (default: its own)")
    ap.add_argument("--designs-only", action="store_true", help="skip ddsm score (designs and their 3-mer JS only)")
    ap.add_argument("--workdir", default="", help="keep the files here (default: a temporary folder)")
    ap.add_argument("--reuse", action="store_true", help="skip training where --workdir has the checkpoint")
    ap.add_argument("--sample-seeds", default="",
                    help="comma-separated ddsm sample seeds (default: --seed); the 3-mer JS of 500 designs "
                         "varies by ~0.003 between seeds, so compare means over several")
    args = ap.parse_args()
    names = [n for n in args.processes.split(",") if n]
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="cli_dna_"))
    work.mkdir(parents=True, exist_ok=True)

    DATA = SHARED / args.dataset
    tr = encode_records(read_fasta(DATA / "train.fasta"))
    va = encode_records(read_fasta(DATA / "valid.fasta"), tr.alphabet)
    alpha = tr.alphabet
    order = np.random.default_rng(args.seed).permutation(len(va.tokens))
    need = args.n_score + args.n_ref + args.n_samples
    if need > len(order):
        raise SystemExit(f"valid.fasta has {len(order)} sequences; --n-score + --n-ref + --n-samples = {need}")
    score_idx = order[: args.n_score]
    ref_idx = order[args.n_score : args.n_score + args.n_ref]
    real_idx = order[args.n_score + args.n_ref : need]
    decode = lambda rows: [alpha.decode(r) for r in rows]  # noqa: E731
    score_seqs, ref, real = decode(va.tokens[score_idx]), decode(va.tokens[ref_idx]), decode(va.tokens[real_idx])
    gc_ref = gc_content(ref).mean()
    save_fasta(work / "score.fa", score_seqs, prefix="v")

    print(f"{args.dataset}: {len(tr.tokens)} train sequences, L = {tr.tokens.shape[1]}; {args.steps} training steps "
          f"(CLI defaults {args.train_args}), {args.threads} thread(s); {args.n_score} valid sequences scored, "
          f"{args.n_samples} designs vs {args.n_ref} valid sequences")
    print("baselines, bits/token on the scored sequences: "
          + ", ".join(f"order-{k} Markov {markov_bits(tr.tokens, va.tokens[score_idx], k):.4f}" for k in range(6)))
    comp = np.bincount(tr.tokens.ravel(), minlength=alpha.K) / tr.tokens.size
    iid = np.random.default_rng(args.seed + 1).choice(alpha.K, size=(args.n_samples, tr.tokens.shape[1]), p=comp)
    print(f"baselines, 3-mer JS against the reference: {args.n_samples} real held-out sequences "
          f"{kmer_js(real, ref, 3, alpha.letters):.4f}; iid letters at the training composition "
          f"{kmer_js(decode(iid), ref, 3, alpha.letters):.4f}; GC of the reference {gc_ref:.4f}", flush=True)

    bits: dict[str, np.ndarray] = {}
    for name in names:
        out = work / name
        t_train = 0.0
        if not (args.reuse and (out / "model.safetensors").exists()):
            t_train = run(["train", "--data", str(DATA / "train.fasta"), "--out", str(out), "--process", name,
                           "--steps", str(args.steps), "--seed", str(args.seed), "--quiet", "--force",
                           *args.train_args.split()], args.threads)
        if not args.designs_only:
            t_score = run(["score", str(out), str(work / "score.fa"), "-o", str(work / f"{name}.tsv"), "--quiet",
                           "--force", "--seed", str(args.seed)], args.threads)
            with open(work / f"{name}.tsv") as fh:
                b = np.array([float(r["bits_per_token"]) for r in csv.DictReader(fh, delimiter="\t")])
            bits[name] = b
            print(f"  {name:12s} {b.mean():.4f} +- {b.std() / math.sqrt(len(b)):.4f} bits/token "
                  f"(train {t_train:.0f} s, score {t_score:.0f} s)", flush=True)
        jac = name == "jacobi"
        settings = [(sub, ext) for sub in (args.jacobi_substeps.split(",") if jac and args.jacobi_substeps else [""])
                    for ext in (args.jacobi_extrapolate.split(",") if jac and args.jacobi_extrapolate else [""])]
        seeds = [int(x) for x in args.sample_seeds.split(",") if x] or [args.seed]
        for sub, ext in settings:
            js, gcs, secs = [], [], []
            tag = ("sub-steps " + sub if sub else "") + (" extrapolate " + ext if ext else "")
            for seed in seeds:
                fa = work / f"{name}{'_sub' + sub if sub else ''}{'_ext' + ext if ext else ''}_s{seed}.fa"
                secs.append(run(["sample", str(out), "-n", str(args.n_samples), "-o", str(fa), "--quiet", "--force",
                                 "--seed", str(seed), *(["--substeps", sub] if sub else []),
                                 *(["--extrapolate", ext] if ext else [])], args.threads))
                designs = [r.seq for r in read_fasta(fa)]
                js.append(kmer_js(designs, ref, 3, alpha.letters))
                gcs.append(float(gc_content(designs).mean()))
            spread = f" +- {np.std(js, ddof=1) / math.sqrt(len(js)):.4f} (seeds {', '.join(f'{j:.4f}' for j in js)})" \
                if len(js) > 1 else ""
            print(f"  {name:12s} {tag.strip() or 'designs':12s}: 3-mer JS {np.mean(js):.4f}{spread}, "
                  f"GC {np.mean(gcs):.4f} (sample {np.mean(secs):.0f} s each)", flush=True)
    if bits:
        print_paired(list(bits), bits)


if __name__ == "__main__":
    main()
