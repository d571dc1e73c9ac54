"""``ddsm train``'s inputs: the alphabet, the training and validation data, the signal tracks,
and a trial build of the process and network (so a bad option fails before any training)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import DDSMInputError
from .common import load_dataset


@dataclass
class TrackSettings:
    """``--track-transform`` and ``--track-names`` (or the resumed run's)."""

    transform: str
    names: Optional[list[str]]


def resolve_alphabet(args: argparse.Namespace, saved: dict[str, Any]) -> tuple[Any, Optional[list[str]]]:
    """The alphabet (an ``Alphabet``, a spec still to infer from the data, or None) and the classes:
    a resumed run keeps its own."""
    if args.resume:
        from ..data import Alphabet

        alphabet = Alphabet.from_config(saved["alphabet"])
        if args.variable_length and not alphabet.end:
            raise DDSMInputError("--variable-length: the run in --out was trained at a fixed length; start a new run")
        return alphabet, saved.get("classes") or None
    if args.alphabet and args.alphabet.strip().lower() in ("auto", "custom"):
        return args.alphabet, None  # resolved from the training letters in load_dataset
    if args.alphabet:
        from ..data import get_alphabet

        return get_alphabet(args.alphabet), None
    return None, None


def _track_settings(args: argparse.Namespace, saved: dict[str, Any]) -> TrackSettings:
    """Check that the track flags come together; the saved run's settings fill the gaps."""
    if args.valid_track and not args.track:
        raise DDSMInputError("--valid-track needs --track")
    if args.valid_track and not args.valid:
        raise DDSMInputError("--valid-track needs --valid (the file it is aligned with)")
    if args.track and args.valid and not args.valid_track:
        raise DDSMInputError("--valid with --track needs --valid-track (one track row per validation record)")
    if (args.track_transform or args.track_names) and not args.track:
        raise DDSMInputError("--track-transform and --track-names need --track")
    saved_track = saved.get("track") or {}
    return TrackSettings(args.track_transform or saved_track.get("transform") or "none",
                         list(args.track_names.split(",")) if args.track_names else saved_track.get("names"))


def load_training_data(args: argparse.Namespace, saved: dict[str, Any], alphabet: Any,
                       classes: Optional[list[str]], tc: Any) -> tuple[Any, Any, list[str], TrackSettings]:
    """Training and validation datasets (``--valid``, else a ``--valid-fraction`` split), the notes
    to print about what was inferred, and the track settings."""
    from ..data import labelled_specs

    tracks = _track_settings(args, saved)
    if args.label_key is None and labelled_specs(args.data):
        args.label_key = "class"  # LABEL=PATH entries: the label is stored under "class"
    notes: list[str] = []
    ds = load_dataset(args.data, alphabet=alphabet, length=args.length, label_key=args.label_key,
                             classes=classes, unknown=args.unknown, seed=tc.seed, track=args.track,
                             sequence_column=args.sequence_column, notes=notes,
                             variable_length=args.variable_length,
                             hints={"length": "pass --length N to crop/pad them, or --variable-length to model "
                                              "the lengths"})
    valid = None
    if args.valid:
        valid = load_dataset(args.valid, alphabet=ds.alphabet, length=ds.length, label_key=args.label_key,
                                    classes=ds.classes if args.label_key else None, unknown=args.unknown,
                                    seed=tc.seed, track=args.valid_track, sequence_column=args.sequence_column)
    elif args.valid_fraction > 0 and len(ds) >= 20:
        from ..data import split

        ds, valid = split(ds, args.valid_fraction, seed=tc.seed)
    return ds, valid, notes, tracks


def check_buildable(args: argparse.Namespace, choice: Any, ds: Any, tracks: TrackSettings) -> None:
    """Build the process and network once so that a bad option is reported before any training."""
    from ..api import build_network
    from ..conditioning import TrackSpec
    from ..processes import build_process

    n_track = 0
    if ds.track is not None:
        n_track = ds.track.shape[-1]
        spec = TrackSpec.for_width(n_track, tracks.names, tracks.transform)  # bad names / transform: now
        spec.apply(ds.track, f"track file {args.track}")
    try:
        build_network(build_process(choice.process, ds.alphabet.K, **choice.process_options), choice.model,
                      len(ds.classes) if ds.labels is not None else 0, choice.model_options, n_track=n_track)
    except (TypeError, ValueError) as e:
        raise DDSMInputError(f"bad process/model option: {e}") from None


def print_notes(notes: list[str], quiet: bool) -> None:
    """What was inferred about the data (stderr); --quiet keeps only notes about letters outside
    the inferred alphabet."""
    for line in notes:
        if not quiet or "handled by --unknown" in line:
            print(line, file=sys.stderr)
