"""What ``ddsm sample`` records: the settings in every FASTA header, and the provenance sidecar
(``argv`` that reproduces the file, the model's identity, every setting and each design's fate)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import model_provenance
from .sample_plan import Plan


def header_meta(args: argparse.Namespace, plan: Plan) -> dict[str, str]:
    """The settings written into every design's FASTA header."""
    run = plan.run
    model_name = run.path.resolve().name if run.path else str(args.model)
    meta = {"model": model_name, "process": run.process.name, "seed": str(args.seed),
            "steps": str(args.steps), "dilation": f"{args.time_dilation:g}", "precision": plan.precision}
    if args.sampler is not None:
        meta["sampler"] = args.sampler
    if args.substeps is not None:
        meta["substeps"] = str(args.substeps)
    if args.grid_focus is not None:
        meta["grid_focus"] = f"{args.grid_focus:g}"
    if args.extrapolate is not None:
        meta["extrapolate"] = f"{args.extrapolate:g}"
    if args.guidance:
        meta["guidance"] = f"{args.guidance:g}"
    if plan.interval is not None and (args.guidance or args.classifier_guidance):
        meta["guidance_interval"] = f"{plan.interval[0]:g},{plan.interval[1]:g}"
    if args.classifier_guidance:
        meta["classifier_guidance"] = f"{args.classifier_guidance:g}"
        meta["classifier"] = Path(args.classifier).name if args.classifier else "bundled"
    if args.track:
        meta["track"] = Path(args.track).name
    if args.reward:
        meta.update({"reward_kind": args.reward, "reward_method": args.reward_method,
                     "particles": str(args.particles), "alpha": f"{args.alpha:g}"})
    return meta


def argv_of(args: argparse.Namespace, plan: Plan, out: Path) -> list[str]:
    """A ``ddsm`` command line that reproduces the file (the resolved defaults written out)."""
    interval = plan.interval
    argv = ["sample", str(args.model), "-n", str(args.n), "-o", str(out), "--name", plan.name,
            "--steps", str(args.steps), "--guidance", f"{args.guidance!r}", "--seed", str(args.seed),
            "--batch-size", str(args.batch_size), "--time-dilation", f"{args.time_dilation!r}",
            "--dilation-after", f"{args.dilation_after!r}", "--precision", plan.precision, "--rounds",
            str(args.rounds), "--device", args.device]
    for flag, value in (("--class", args.class_name), ("--fixed", args.fixed), ("--gc", args.gc),
                        ("--length-range", args.length_range), ("--design-length", args.design_length),
                        ("--track", args.track), ("--classifier", args.classifier), ("--sampler", args.sampler),
                        ("--substeps", args.substeps), ("--grid-focus", args.grid_focus),
                        ("--extrapolate", args.extrapolate)):
        if value is not None:
            argv += [flag, str(value)]
    if args.classifier_guidance:
        argv += ["--classifier-guidance", f"{args.classifier_guidance!r}"]
    argv += ["--guidance-interval", "0,1" if interval is None else f"{interval[0]!r},{interval[1]!r}"]
    if args.forbid:
        argv += ["--forbid", *args.forbid]
    if args.no_revcomp:
        argv.append("--no-revcomp")
    if args.reward:
        argv += ["--reward", args.reward, "--reward-method", args.reward_method, "--particles", str(args.particles),
                 "--alpha", f"{args.alpha!r}"] + (["--reward-oracle", args.reward_oracle] if args.reward_oracle else [])
    return argv


def provenance(args: argparse.Namespace, plan: Plan, argv: list[str], designs: list[dict[str, Any]]) -> dict[str, Any]:
    """The sidecar ``<output>.json``."""
    from ..checkpoint import ddsm_version

    run, interval, gc, length_range = plan.run, plan.interval, plan.gc, plan.length_range
    settings: dict[str, Any] = {
        "n_per_class": args.n, "classes": plan.classes, "steps": args.steps, "seed": args.seed,
        "batch_size": args.batch_size, "guidance": args.guidance,
        "classifier_guidance": args.classifier_guidance, "classifier": args.classifier,
        "guidance_interval": None if interval is None else list(interval),
        "time_dilation": args.time_dilation, "dilation_after": args.dilation_after,
        "precision": plan.precision, "device": str(plan.device), "track": args.track,
        "reward": None if not args.reward else {"kind": args.reward, "method": args.reward_method,
                                                "particles": args.particles, "alpha": args.alpha,
                                                "oracle": args.reward_oracle},
        "constraints": {"fixed": args.fixed, "forbid": args.forbid,
                        "forbid_both_strands": bool(args.forbid) and not args.no_revcomp
                        and run.alphabet.has_reverse_complement,
                        "gc": list(gc) if gc else None, "rounds": args.rounds,
                        "length_range": list(length_range) if length_range else None}}
    if args.sampler is not None:  # only when given: sidecars of default runs stay as they were
        settings["sampler"] = args.sampler
    return {
        "ddsm_version": ddsm_version(), "command": "sample", "argv": argv,
        "model": model_provenance(run, args.model),
        "settings": settings,
        "note": "the noise of each design depends on the seed and on --batch-size (the batch's draws); "
                "re-running argv reproduces the file",
        "designs": designs,
    }
