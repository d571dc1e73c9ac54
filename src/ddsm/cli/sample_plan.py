"""``ddsm sample``'s plan: the model with its recorded sampling defaults filled in, the classes,
the guidance interval, the run name, the seeded generator and the parsed constraints."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from ..errors import DDSMInputError
from .common import guidance_interval, select_device


@dataclass
class Plan:
    """Everything ``ddsm sample`` resolved before drawing: the model, the classes, the guidance
    interval, the run name, the generator and the parsed constraints."""

    run: Any
    device: torch.device
    classes: list[Optional[str]]
    interval: Optional[tuple[float, float]]
    name: str
    generator: torch.Generator
    fixed: Any = None
    track: Any = None
    gc: Optional[tuple[float, float]] = None
    length_range: Optional[tuple[int, int]] = None
    precision: str = "fp32"


def sample_classes(spec: Optional[str], classes: list[str]) -> list[Optional[str]]:
    """``--class``: None (unconditional), ``NAME``, ``A,B`` or ``all`` (n designs per class)."""
    if spec is None:
        return [None]
    if spec == "all":
        if not classes:
            raise DDSMInputError("--class all needs a class-conditional model; this one has no classes")
        return list(classes)
    names = [c.strip() for c in spec.split(",")]
    if any(not c for c in names) or len(set(names)) != len(names):
        raise DDSMInputError(f"--class {spec!r}: give NAME, A,B (distinct names) or all")
    return names


def build_plan(args: argparse.Namespace, out: Path) -> Plan:
    """Load the model, fill in its recorded defaults (into ``args``: they are recorded as given),
    seed, and parse the conditioning and constraints."""
    from ..api import load_run
    from ..constraints import parse_fixed
    from ..precision import resolve_precision
    from ..seeding import seed_everything

    device = select_device(args.device)
    run = load_run(args.model, device=device)
    classes = sample_classes(args.class_name, list(run.classes))
    defaults = run.sampling_defaults
    if args.classifier_guidance is None:  # the model's recorded default with --class (bundled: chosen on valid)
        args.classifier_guidance = (float(defaults.get("classifier_guidance", 0.0))
                                    if args.class_name is not None and not args.classifier else 0.0)
    if run.classes or not (args.classifier_guidance or args.classifier):  # else --class names the classifier's target
        for c in classes:
            run.class_index(c)  # an unknown name lists the valid ones
    if args.steps is None:
        args.steps = int(defaults.get("steps", 100))
    if args.substeps is None and defaults.get("substeps") is not None:
        args.substeps = int(defaults["substeps"])
    if args.grid_focus is None and defaults.get("grid_focus") is not None:
        args.grid_focus = float(defaults["grid_focus"])
    if args.extrapolate is None and defaults.get("extrapolate") is not None and args.reward is None:
        args.extrapolate = float(defaults["extrapolate"])  # a recorded default yields to reward guidance
    if args.guidance is None:
        args.guidance = float(defaults.get("guidance", 0.0)) if args.class_name is not None else 0.0
    interval = guidance_interval(args.guidance_interval, defaults)
    name = args.name or out.name.split(".")[0]
    if not name or any(ch.isspace() for ch in name):
        raise DDSMInputError(f"--name {name!r}: design ids need a name without whitespace")
    gen = seed_everything(args.seed)  # also the global generators: third-party code may draw from them
    fixed = parse_fixed(args.fixed, run.alphabet, run.seq_len) if args.fixed else None
    check_guidance(args, run)
    plan = Plan(run=run, device=device, classes=classes, interval=interval, name=name, generator=gen, fixed=fixed)
    parse_constraints(args, plan)
    plan.precision = resolve_precision(args.precision or str(defaults.get("precision", "fp32")), device)
    return plan


def check_guidance(args: argparse.Namespace, run: Any) -> None:
    """Guidance weights and time dilation the model can take."""
    if args.time_dilation > 1 and not run.process.supports_dilation:
        raise DDSMInputError(f"process {run.process.name!r} does not support --time-dilation")
    if args.guidance < 0 or not math.isfinite(args.guidance):
        raise DDSMInputError("--guidance must be a finite number >= 0")
    if args.classifier_guidance < 0 or not math.isfinite(args.classifier_guidance):
        raise DDSMInputError("--classifier-guidance must be a finite number >= 0")
    if args.classifier and args.classifier_guidance == 0:
        raise DDSMInputError("--classifier needs --classifier-guidance W > 0")


def parse_constraints(args: argparse.Namespace, plan: Plan) -> None:
    """``--track``, ``--gc``, ``--length-range`` / ``--design-length``, ``--forbid`` into ``plan``."""
    run = plan.run
    if args.track:
        from ..data import read_track

        plan.track = read_track(args.track)
    if args.gc:
        from ..constraints import GCWindow

        if not run.alphabet.has_gc:
            raise DDSMInputError(f"--gc needs a DNA or RNA model; this model's alphabet is {run.alphabet.name}")
        w = GCWindow.parse(args.gc)
        plan.gc = (w.lo, w.hi)
    if args.length_range or args.design_length:
        plan.length_range = length_range(args, run)
    if args.forbid:  # checked before any sampling
        from ..constraints import ForbiddenMotifs

        ForbiddenMotifs.parse(args.forbid, alphabet=run.alphabet, both_strands=not args.no_revcomp)


def length_range(args: argparse.Namespace, run: Any) -> tuple[int, int]:
    """``--length-range MIN:MAX`` or ``--design-length N`` of a variable-length model."""
    if args.length_range and args.design_length:
        raise DDSMInputError("give --length-range or --design-length, not both")
    if not run.alphabet.end:
        raise DDSMInputError("--length-range / --design-length need a variable-length model "
                             "(ddsm train --variable-length); this one generates length "
                             f"{run.seq_len} only")
    if args.design_length:
        lengths = (args.design_length, args.design_length)
    else:
        try:
            lo_s, hi_s = args.length_range.split(":")
            lengths = (int(lo_s), int(hi_s))
        except ValueError:
            raise DDSMInputError(f"--length-range expects MIN:MAX, e.g. 20:40, got {args.length_range!r}") from None
    if not 1 <= lengths[0] <= lengths[1] <= run.seq_len:
        raise DDSMInputError(f"design lengths must lie in 1..{run.seq_len} (the model's maximum) with MIN <= MAX")
    return lengths
