"""``ddsm sample``: designs from a trained model into a FASTA file plus a provenance sidecar.

Steps: check the flags, load the model and fill in its recorded sampling defaults, parse the
constraints (:mod:`ddsm.cli.sample_plan`), draw the designs class by class, then write the FASTA
(settings in every header) and ``<output>.json`` (:mod:`ddsm.cli.sample_record`).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import DDSMInputError
from .common import (
    add_common_options,
    check_output,
    check_positive,
    check_seed,
    progress_bar,
    sidecar_path,
    write_sidecar,
)
from .sample_plan import Plan, build_plan
from .sample_record import argv_of, header_meta, provenance

#: ``--sampler`` choices (default: the process's own sampler)
SAMPLERS = ("ancestral", "first-hitting")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``ddsm sample``."""
    s = sub.add_parser("sample", help="generate sequences from a trained model",
                       description="Generate sequences from a trained model. Conditioning: --class (with "
                       "--guidance for classifier-free guidance), --track for a model trained with a signal "
                       "track, --classifier-guidance W toward --class with a differentiable oracle. "
                       "Constraints: --fixed, --forbid, --gc.")
    s.add_argument("model", help="checkpoint folder")
    s.add_argument("-n", type=int, default=100, help="number of sequences")
    s.add_argument("-o", "--output", required=True, help="output FASTA")
    s.add_argument("--steps", type=int, default=None,
                   help="sampling steps (default: the model's recorded default, else 100)")
    s.add_argument("--substeps", type=int, default=None,
                   help="jacobi models: SDE sub-steps per network call, the exact local evidence refreshed at "
                        "each (default: the model's recorded value; new models record 8)")
    s.add_argument("--grid-focus", dest="grid_focus", type=float, default=None,
                   help="jacobi models: fraction in [0, 1) of the sampling steps placed where tokens get decided "
                        "(the entropy law), the rest uniform in time (default: the model's recorded default, else 0)")
    s.add_argument("--extrapolate", type=float, default=None, metavar="ALPHA",
                   help="jacobi models: hold each call's correction extrapolated by ALPHA times its change since "
                        "the previous call (a multistep rule; same network calls; default: the model's recorded "
                        "value; new models record 1, older ones 0)")
    s.add_argument("--sampler", default=None, choices=SAMPLERS,
                   help="reverse-time sampler (recorded in the headers); default: the process's own")
    s.add_argument("--time-dilation", dest="time_dilation", type=float, default=1.0,
                   help="DDSM's time dilation: run the reverse SDE this many times slower (>= 1)")
    s.add_argument("--dilation-after", dest="dilation_after", type=float, default=1.0,
                   help="apply dilation only once public time drops below this (1 = whole run)")
    s.add_argument("--class", dest="class_name", default=None,
                   help="class to design for (conditional models): NAME, A,B or all (-n designs per class)")
    s.add_argument("--name", default=None,
                   help="run name: design ids are NAME_0, NAME_1, ... (default: the output file's name without "
                        "extensions)")
    s.add_argument("--fixed", default=None,
                   help="pattern of the sequence length or a file holding it; free positions are N or . for DNA/RNA, "
                        ". - X for proteins (N is asparagine), . - for custom alphabets")
    s.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance weight w (with --class; default: the model's recorded default, "
                        "chosen on validation data for the bundled models, else 0)")
    s.add_argument("--guidance-interval", dest="guidance_interval", default=None, metavar="LO,HI",
                   help="guide (--guidance and --classifier-guidance) only at public times LO <= t <= HI "
                        "(1 = pure noise, 0 = data); steps outside cost one network call instead of two. "
                        "0,1: every step. Default: the model's recorded default, else every step")
    s.add_argument("--classifier-guidance", dest="classifier_guidance", type=float, default=None, metavar="W",
                   help="classifier (oracle) guidance weight toward --class: adds W * grad log p(class | x) to "
                        "the sampler (jacobi, dirichlet-fm and bits only; combines with --guidance); default: the "
                        "model's recorded default with --class (chosen on validation data for the bundled models), "
                        "else 0")
    s.add_argument("--classifier", default=None, metavar="DIR",
                   help="oracle folder or bundled oracle name for --classifier-guidance (default: the bundled "
                        "oracle trained on the model's data set, when there is one)")
    s.add_argument("--track", default=None, metavar="FILE.npy",
                   help="signal track for a track-conditioned model: (L,) or (L, S) for every design, "
                        "(N, L) or (N, L, S) one per design; raw values (the model's transform is applied)")
    s.add_argument("--forbid", nargs="+", default=None, metavar="MOTIF",
                   help="motifs that must not occur: IUPAC codes on both strands for DNA/RNA (e.g. GAATTC), literal "
                        "letters for proteins and custom alphabets (KK = two lysines)")
    s.add_argument("--no-revcomp", action="store_true",
                   help="DNA/RNA: forbid the --forbid motifs on the given strand only (default: both strands)")
    s.add_argument("--gc", default=None, metavar="MIN:MAX", help="GC-content window, e.g. 0.40:0.60 (DNA/RNA models)")
    s.add_argument("--length-range", dest="length_range", default=None, metavar="MIN:MAX",
                   help="variable-length models: design lengths allowed (default: the model's own length "
                        "distribution, up to its maximum)")
    s.add_argument("--design-length", dest="design_length", type=int, default=None, metavar="N",
                   help="variable-length models: every design has exactly N letters")
    s.add_argument("--reward", default=None, metavar="KIND",
                   help="steer toward a reward with sequential Monte Carlo or SVDD, any process: oracle "
                        "(log p(--class) under --reward-oracle), margin (its logit margin), gc:TARGET, "
                        "motif:MOTIF, nomotif:MOTIF")
    s.add_argument("--reward-method", dest="reward_method", default="smc", choices=["smc", "svdd"],
                   help="smc: --particles per design, resampled by reward; svdd: --particles candidate "
                        "steps, one kept by reward")
    s.add_argument("--particles", type=int, default=8, help="SMC particles per design / SVDD candidates per step")
    s.add_argument("--alpha", type=float, default=1.0,
                   help="temperature of the reward tilt exp(reward / alpha): smaller steers harder; inf = none")
    s.add_argument("--reward-oracle", dest="reward_oracle", default=None, metavar="DIR",
                   help="oracle folder or bundled oracle name for --reward oracle/margin (default: the bundled "
                        "oracle of the model's data set)")
    s.add_argument("--rounds", type=int, default=20,
                   help="sampling rounds to satisfy --forbid/--gc/--length-range before giving up")
    s.add_argument("--batch-size", dest="batch_size", type=int, default=64,
                   help="designs per network batch (recorded; designs depend on it through the noise draws)")
    s.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=None,
                   help="network precision: bf16 autocast is ~4x faster on CPUs with AMX (auto: bf16 where "
                        "native); the sampler's maths stays float64; recorded in the headers (default: the "
                        "model's recorded default, else fp32)")
    s.add_argument("--force", action="store_true", help="overwrite the output file")
    add_common_options(s)
    s.set_defaults(func=run)
    return s


def run(args: argparse.Namespace) -> int:
    """``ddsm sample``: every check first, then the draws, then the FASTA and its sidecar."""
    from ..data import write_fasta

    out = Path(args.output)
    _check_flags(args, out)
    plan = build_plan(args, out)
    t0 = time.time()
    records, failures, designs = _draw(args, plan)
    if not records:
        raise DDSMInputError(f"no design satisfied the constraints within {args.rounds} rounds; "
                             f"first reason: {failures[0][1]}")
    write_fasta(out, records, force=args.force)
    sidecar = sidecar_path(out)
    write_sidecar(sidecar, provenance(args, plan, argv_of(args, plan, out), designs))
    for rid, why in failures:
        print(f"ddsm: {rid} not written: {why}", file=sys.stderr)
    print(f"wrote {len(records)} of {args.n * len(plan.classes)} sequences to {out} (settings in {sidecar.name}) in "
          f"{time.time() - t0:.1f} s"
          + (f" ({len(failures)} failed the constraints, listed above)" if failures else ""))
    return 0


def _check_flags(args: argparse.Namespace, out: Path) -> None:
    """What can be checked before the model is loaded."""
    check_output(out, args.force)
    check_output(sidecar_path(out), args.force, "provenance sidecar")
    if args.n < 1:
        raise DDSMInputError("-n must be at least 1")
    check_positive(steps=args.steps, batch_size=args.batch_size, substeps=args.substeps)
    check_seed(args.seed)
    if not (math.isfinite(args.time_dilation) and args.time_dilation >= 1):
        raise DDSMInputError("--time-dilation must be a finite number >= 1")
    if not 0 <= args.dilation_after <= 1:
        raise DDSMInputError("--dilation-after must be in [0, 1]")
    if args.grid_focus is not None and not 0 <= args.grid_focus < 1:
        raise DDSMInputError("--grid-focus must lie in [0, 1)")
    if args.extrapolate is not None and not (math.isfinite(args.extrapolate) and args.extrapolate >= 0):
        raise DDSMInputError(f"--extrapolate must be a finite number >= 0, got {args.extrapolate}")


def _draw(args: argparse.Namespace, plan: Plan) -> tuple[list[Any], list[tuple[str, str]], list[dict[str, Any]]]:
    """Designs of every class: FASTA records, (id, why) of failed ones, and the sidecar entries."""
    from ..api import design
    from ..data import Record

    meta = header_meta(args, plan)
    # --sampler goes to design() only when given, so the process's own default stays the default
    extra = {"sampler": args.sampler} if args.sampler is not None else {}
    if args.substeps is not None:
        extra["substeps"] = args.substeps
    if args.grid_focus is not None:
        extra["grid_focus"] = args.grid_focus
    if args.extrapolate is not None:
        extra["extrapolate"] = args.extrapolate
    records, failures, designs = [], [], []
    for class_name in plan.classes:
        result = design(plan.run, args.n, steps=args.steps, batch_size=args.batch_size, class_name=class_name,
                        guidance=args.guidance, fixed=plan.fixed, forbid=args.forbid, gc=plan.gc,
                        rounds=args.rounds, forbid_revcomp=not args.no_revcomp, length_range=plan.length_range,
                        reward=args.reward, reward_method=args.reward_method, particles=args.particles,
                        alpha=args.alpha, reward_oracle=args.reward_oracle,
                        dilation=args.time_dilation, dilation_after=args.dilation_after, track=plan.track,
                        classifier_guidance=args.classifier_guidance, classifier=args.classifier,
                        guidance_interval=plan.interval, generator=plan.generator, device=plan.device,
                        progress=progress_bar("sample", args.quiet), precision=plan.precision, **extra)
        for i, s in enumerate(result.sequences):
            # ids: run name + running index over all classes, unique within and across runs
            rid = f"{plan.name}_{len(designs)}"
            entry = {"id": rid, "class": class_name, "samples_used": result.samples_used[i]}
            if result.rewards is not None:
                entry["reward"] = result.rewards[i]
            if s is None:
                entry["failed"] = result.failures[i]
                failures.append((rid, result.failures[i]))
            else:
                rec_meta = {**meta, **({"class": class_name} if class_name else {}),
                            "samples_used": str(result.samples_used[i]),
                            **({"reward": f"{result.rewards[i]:.4g}"} if result.rewards is not None else {})}
                records.append(Record(id=rid, seq=s, meta=rec_meta))
            designs.append(entry)
    return records, failures, designs
