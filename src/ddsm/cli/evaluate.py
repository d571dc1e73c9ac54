"""``ddsm evaluate``: per-class metrics of designed sequences against a reference set; prints a
table, optionally writes JSON and a self-contained HTML report."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import DDSMInputError
from .common import check_output, check_positive, check_seed, select_device


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``ddsm evaluate`` (``sub = parser.add_subparsers()``)."""
    e = sub.add_parser("evaluate", help="compare designed sequences with real ones (k-mers, GC, motifs, "
                       "discriminator, oracle, diversity, novelty)",
                       description="Per-class metrics of designed sequences against a reference set. "
                       "Prints a table; optionally writes JSON and a self-contained HTML report.")
    e.add_argument("designs", help="designed sequences (FASTA or TSV, optionally gzipped)")
    e.add_argument("--reference", required=True, help="real sequences to compare with (FASTA or TSV)")
    e.add_argument("--label-key", dest="label_key", default=None,
                   help="header key of class labels, e.g. cell_type (designs may use class= from ddsm sample)")
    e.add_argument("--train", default=None, help="training sequences, for novelty / memorisation")
    e.add_argument("--oracle", default="auto",
                   help="auto (bundled oracle matching the classes) | none | a bundled name "
                        "(dhs4, epd_promoters) | an oracle folder")
    e.add_argument("--no-motifs", dest="motifs", action="store_false", help="skip the JASPAR motif scan")
    e.add_argument("--motifs-file", dest="motifs_file", default=None,
                   help="JASPAR-format motif file instead of the bundled JASPAR 2024 vertebrates")
    e.add_argument("--max-seqs", dest="max_seqs", type=int, default=1000,
                   help="per class, sequences used by the motif scan, discriminator and diversity")
    e.add_argument("--json", dest="json_out", default=None, help="write the metrics as JSON here")
    e.add_argument("--report", default=None, help="write a self-contained HTML report here")
    e.add_argument("--run", dest="run_dir", default=None,
                   help="training run folder (history.json) for the report's training curves")
    e.add_argument("--likelihood-model", dest="likelihood_model", default=None, metavar="MODEL",
                   help="also report bits per token of designs and reference under this model (checkpoint "
                        "folder or bundled name; sequences are centre-cropped / padded to its length)")
    e.add_argument("--likelihood-steps", dest="likelihood_steps", type=int, default=None,
                   help="ODE / Monte-Carlo steps of --likelihood-model (default: its process's own)")
    e.add_argument("--seed", type=int, default=0, help="seeds the subsamples and cross-validation folds")
    e.add_argument("--device", default="auto", help="auto | cpu | cuda (oracle, motif scan, novelty)")
    e.add_argument("--force", action="store_true", help="overwrite existing --json / --report files")
    e.add_argument("--quiet", action="store_true", help="no progress messages")
    e.set_defaults(func=run)
    return e


def likelihood_fn(args: argparse.Namespace, device: torch.device) -> Callable[[list[str]], np.ndarray]:
    """``--likelihood-model``: sequences -> bits per token under that model (centre crop / pad to
    its length; unknown letters drawn at random from the seed)."""
    from ..api import load_run, score, score_steps
    from ..data import Record, encode_records

    check_positive(likelihood_steps=args.likelihood_steps)
    run_ = load_run(args.likelihood_model, device=device)
    steps = score_steps(run_.process, args.likelihood_steps)

    def likelihood(seqs: list[str]) -> np.ndarray:
        ds = encode_records([Record(f"s{i}", s) for i, s in enumerate(seqs)], run_.alphabet,
                            length=run_.seq_len, unknown="random", rng=np.random.default_rng(args.seed))
        return np.asarray(score(run_, ds, steps=steps, generator=torch.Generator().manual_seed(args.seed),
                                device=device))

    return likelihood


def run(args: argparse.Namespace) -> int:
    """``ddsm evaluate``: read the files, evaluate, print the table, write JSON / HTML if asked."""
    from ..data import read_sequences
    from ..evaluate import evaluate_detailed, format_table

    _check_flags(args)
    device = select_device(args.device)
    say = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    designs = read_sequences(args.designs)
    reference = read_sequences(args.reference)
    train = read_sequences(args.train) if args.train else None
    motifs: Any = args.motifs
    if args.motifs and args.motifs_file:
        from ..metrics.motifs import load_jaspar

        motifs = load_jaspar(args.motifs_file)
    likelihood = likelihood_fn(args, device) if args.likelihood_model else None
    say(f"evaluating {len(designs)} designs against {len(reference)} reference sequences"
        + (f" and {len(train)} training sequences" if train else "") + " ...")
    t0 = time.time()
    result = evaluate_detailed(designs, reference, label_key=args.label_key, train=train, oracle=args.oracle,
                               motifs=motifs, max_seqs=args.max_seqs, seed=args.seed, device=device,
                               likelihood=likelihood)
    result.settings.update({"designs": str(args.designs), "reference": str(args.reference),
                            "train": str(args.train) if args.train else None})
    print(format_table(result.table))
    if result.oracle:
        acc = result.oracle.get("valid_accuracy")
        print(f"oracle: {result.oracle['name']}" + (f" (validation accuracy {acc:.3f})" if acc is not None else ""))
    _write_outputs(args, result, say)
    say(f"done in {time.time() - t0:.1f} s")
    return 0


def _check_flags(args: argparse.Namespace) -> None:
    for path, flag in ((Path(p), flag) for p, flag in ((args.json_out, "--json"), (args.report, "--report")) if p):
        check_output(path, args.force, flag)
    if args.max_seqs < 2:
        raise DDSMInputError(f"--max-seqs must be at least 2, got {args.max_seqs}")
    check_seed(args.seed)
    if args.run_dir and not Path(args.run_dir).is_dir():
        raise DDSMInputError(f"--run {args.run_dir} is not a folder")


def _write_outputs(args: argparse.Namespace, result: Any, say: Callable[[str], None]) -> None:
    """``--json`` and ``--report``, each written atomically."""
    from ..data.io import atomic_write_text

    if args.json_out:
        atomic_write_text(args.json_out, json.dumps(result.to_json(), indent=1) + "\n", force=args.force)
        say(f"wrote {args.json_out}")
    if args.report:
        from ..report import build_report

        html = build_report(result, run_dir=args.run_dir, title=f"ddsm evaluate: {Path(args.designs).name}")
        atomic_write_text(args.report, html, force=args.force)
        say(f"wrote {args.report}")
