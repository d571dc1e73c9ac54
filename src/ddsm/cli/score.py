"""``ddsm score``: bits per token of sequences under a model, into a TSV plus a provenance sidecar."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DDSMInputError
from .common import (
    add_common_options,
    check_output,
    check_positive,
    check_seed,
    file_sha256,
    load_dataset,
    model_provenance,
    progress_bar,
    select_device,
    sidecar_path,
    write_sidecar,
)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``ddsm score``."""
    c = sub.add_parser("score", help="bits per token of sequences under a model")
    c.add_argument("model", help="checkpoint folder")
    c.add_argument("sequences", help="FASTA or TSV")
    c.add_argument("-o", "--output", required=True, help="output TSV")
    c.add_argument("--steps", type=int, default=None,
                   help="ODE / Monte-Carlo steps (default: the process's own, 200 ODE steps for jacobi, 100 otherwise)")
    c.add_argument("--repeats", type=int, default=1, help="independent estimates to average")
    c.add_argument("--t-start", dest="t_start", type=float, default=None, metavar="TAU",
                   help="jacobi: native time where the ODE bound starts (default: the model's t_min). Any start "
                        "gives a valid bound; a later one can be tighter for briefly trained models. "
                        "Choose it on held-out sequences")
    c.add_argument("--bound", default=None, choices=["ode", "sde"],
                   help="jacobi: the probability-flow ODE's bound (default) or the reverse SDE's (the sampler's "
                        "own process; about 4x faster, slightly looser)")
    c.add_argument("--batch-size", dest="batch_size", type=int, default=32, help="sequences per network batch")
    c.add_argument("--crop", action="store_true", help="crop/pad sequences to the model's length")
    c.add_argument("--use-labels", dest="use_labels", action="store_true", help="condition on labels in the headers")
    c.add_argument("--track", default=None, metavar="FILE.npy",
                   help="signal tracks of a track-conditioned model, one row per sequence: (N, L) or (N, L, S)")
    c.add_argument("--unknown", default="error", choices=["error", "random", "skip"],
                   help="letters outside the model's alphabet (IUPAC codes: random draws a letter the code allows)")
    c.add_argument("--force", action="store_true", help="overwrite the output file")
    add_common_options(c)
    c.set_defaults(func=run)
    return c


def run(args: argparse.Namespace) -> int:
    """``ddsm score``: check, load, score, write the TSV and its sidecar."""
    from ..api import load_run, score, score_steps
    from ..data import write_tsv
    from ..seeding import seed_everything

    out = Path(args.output)
    check_output(out, args.force)
    sidecar = sidecar_path(out)
    check_output(sidecar, args.force, "provenance sidecar")
    check_positive(steps=args.steps, repeats=args.repeats, batch_size=args.batch_size)
    check_seed(args.seed)
    device = select_device(args.device)
    run_ = load_run(args.model, device=device)
    gen = seed_everything(args.seed)  # also the global generators: third-party code may draw from them
    label_key = run_.config.get("label_key") if run_.classes else None
    annotations: dict[str, dict[str, str]] = {}
    ds = _load(args, run_, label_key, annotations)
    t0 = time.time()
    steps = score_steps(run_.process, args.steps)
    bits = score(run_, ds, steps=steps, batch_size=args.batch_size, repeats=args.repeats, t_start=args.t_start,
                 bound=args.bound, generator=gen, device=device, progress=progress_bar("score", args.quiet))
    # labels travel with the sequences: the model's label key, else "class" (ddsm sample's designs)
    keys = [k for k in dict.fromkeys([label_key, "class"]) if k and any(k in m for m in annotations.values())]
    variable = bool(run_.alphabet.end)
    lengths = (ds.tokens != run_.alphabet.end_id).sum(axis=1) if variable else ds.pad_mask.sum(axis=1)
    rows = [{"id": i, "length": int(n), **{k: annotations.get(i, {}).get(k, "") for k in keys[:1]},
             "bits_per_token": f"{b:.5f}", "process": run_.process.name,
             "seed": args.seed, "steps": steps, **({"t_start": args.t_start} if args.t_start is not None else {}),
             **({"bound": args.bound} if args.bound is not None else {})}
            for i, n, b in zip(ds.ids, lengths, bits)]
    write_tsv(out, rows, force=args.force)
    write_sidecar(sidecar, _provenance(args, run_, out, steps, bits, device))
    print(f"scored {len(bits)} sequences in {time.time() - t0:.1f} s: "
          f"mean {float(np.mean(bits)):.4f} bits/token -> {out}")
    return 0


def _load(args: argparse.Namespace, run: Any, label_key: Any, annotations: dict[str, dict[str, str]]) -> Any:
    """The sequences, encoded for the model (a variable-length model pads shorter ones with end letters)."""
    variable = bool(run.alphabet.end)
    ds = load_dataset(args.sequences, alphabet=run.alphabet,
                             length=run.seq_len if (args.crop or variable) else None,
                             max_length=run.seq_len if (variable and not args.crop) else None,
                             label_key=label_key if args.use_labels else None,
                             classes=run.classes if (label_key and args.use_labels) else None, unknown=args.unknown,
                             track=args.track if (args.track and run.track is not None) else None,
                             hints={"length": f"pass --crop to crop/pad them to the model's length {run.seq_len}",
                                    "unknown": "use --unknown random or --unknown skip"}, meta_out=annotations)
    if args.track and run.track is None:
        raise DDSMInputError("this model was trained without a signal track; drop --track")
    if ds.length != run.seq_len:
        raise DDSMInputError(f"sequences have length {ds.length}; "
                             f"the model was trained on length {run.seq_len} (use --crop)")
    return ds


def _provenance(args: argparse.Namespace, run: Any, out: Path, steps: int, bits: Any, device: Any) -> dict[str, Any]:
    """The sidecar ``<output>.json``: a reproducing ``argv``, the model, the input and the settings."""
    from ..checkpoint import ddsm_version

    argv = ["score", str(args.model), str(args.sequences), "-o", str(out), "--steps", str(steps), "--repeats",
            str(args.repeats), "--batch-size", str(args.batch_size), "--seed", str(args.seed), "--unknown",
            args.unknown, "--device", args.device] + (["--crop"] if args.crop else []) + (
        ["--use-labels"] if args.use_labels else []) + (["--t-start", repr(args.t_start)] if args.t_start is not None
                                                         else []) + (["--track", args.track] if args.track else []) + (
        ["--bound", args.bound] if args.bound is not None else [])
    return {"ddsm_version": ddsm_version(), "command": "score", "argv": argv,
            "model": model_provenance(run, args.model),
            "input": {"path": str(args.sequences), "sha256": file_sha256(Path(args.sequences)),
                      "n": len(bits)},
            "settings": {"steps": steps, "repeats": args.repeats, "batch_size": args.batch_size,
                         "seed": args.seed, "t_start": args.t_start, "bound": args.bound, "crop": args.crop,
                         "use_labels": args.use_labels, "unknown": args.unknown, "device": str(device)},
            "mean_bits_per_token": float(np.mean(bits))}
