"""The Python API: train on sequences, load a run, sample, score. Returns plain Python/NumPy data.

The ``ddsm`` command line (the ``cli`` package) is a thin layer over these functions: it parses
arguments, reads and writes files and draws progress bars.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .checkpoint import check_bound_fields, load_config, load_model_weights
from .conditioning.track import TrackBinding, TrackSpec, design_track
from .data import Alphabet, SequenceDataset, data_hash
from .errors import DDSMInputError
from .legacy import upgrade_config
from .models import build_model
from .precision import resolve_precision
from .processes import DEFAULT_PROCESS, PROCESSES, JacobiProcess, Process, build_process
from .sampling import FixedPositions, sample
from .seeding import seeded_global_rng
from .training import Batch, TrainConfig, train

logger = logging.getLogger(__name__)

#: model defaults per backbone name: a scaled-down DDSM promoter CNN that trains on 2 CPU cores
DEFAULT_MODEL_OPTIONS: dict[str, dict[str, Any]] = {
    "conv": {"hidden": 96, "n_blocks": 8},
    "transformer": {"d_model": 128, "n_layers": 4, "n_heads": 4},
    "mlp": {"hidden": 64},
}


@dataclass
class Run:
    """A trained model ready to sample or score: process, network (EMA weights) and metadata."""

    process: Process
    model: nn.Module
    config: dict[str, Any]
    path: Optional[Path] = None
    alphabet: Alphabet = field(init=False)

    def __post_init__(self) -> None:
        self.alphabet = Alphabet.from_config(self.config["alphabet"])

    @property
    def seq_len(self) -> int:
        return int(self.config["seq_len"])

    @property
    def classes(self) -> list[str]:
        return list(self.config.get("classes") or [])

    @property
    def track(self) -> Optional[TrackSpec]:
        """The signal track the network is conditioned on (None: no track)."""
        return TrackSpec.from_config(self.config.get("track"))

    @property
    def sampling_defaults(self) -> dict[str, Any]:
        """Recorded sampling defaults (``steps``, ``guidance``), e.g. chosen on validation data for a
        bundled model by ``bench/select_bundled.py``; empty when none were recorded."""
        return dict(self.config.get("sampling", {}))

    def class_index(self, name: Optional[str]) -> Optional[int]:
        """Label id of a class name (None -> None); an unknown name lists the valid ones."""
        if name is None:
            return None
        if not self.classes:
            raise DDSMInputError("this model was trained without class labels; drop --class")
        if name not in self.classes:
            raise DDSMInputError(f"unknown class {name!r}; valid classes: {', '.join(self.classes)}")
        return self.classes.index(name)


def build_network(process: Process, name: str, n_classes: int, options: Optional[dict[str, Any]] = None,
                  n_track: int = 0) -> nn.Module:
    """A backbone sized for ``process`` plus ``n_track`` signal-track channels (causal processes get
    a causal transformer)."""
    opts = dict(DEFAULT_MODEL_OPTIONS.get(name, {}))
    opts.update(options or {})
    if process.causal:
        if name != "transformer":
            raise DDSMInputError(f"process {process.name!r} needs a causal model: use --model transformer")
        opts["causal"] = True
    return build_model(name, process.in_channels + n_track, process.out_channels, n_classes, **opts)


def fit(
    dataset: SequenceDataset,
    out_dir: Optional[Path],
    *,
    process: str = DEFAULT_PROCESS,
    process_options: Optional[dict[str, Any]] = None,
    model: str = "conv",
    model_options: Optional[dict[str, Any]] = None,
    train_config: Optional[TrainConfig] = None,
    valid: Optional[SequenceDataset] = None,
    resume: bool = False,
    device: Optional[torch.device] = None,
    on_step: Optional[Callable[[int, dict[str, Any]], None]] = None,
    extra_meta: Optional[dict[str, Any]] = None,
    init_from: Optional[Path | str] = None,
    track: Optional[np.ndarray] = None,
    valid_track: Optional[np.ndarray] = None,
    track_transform: str = "none",
    track_names: Optional[Sequence[str]] = None,
) -> tuple[Run, dict[str, Any]]:
    """Train a process + backbone on ``dataset``; writes a checkpoint folder when ``out_dir`` is set.

    Signal tracks: ``track`` ``(N, L)`` or ``(N, L, S)`` (raw values, one row per sequence of
    ``dataset``; or already attached as ``dataset.track``) conditions the network on S extra
    features per position; ``valid_track`` the same for ``valid``. ``track_transform`` (``"none"``,
    ``"log1p"``) and ``track_names`` are recorded in the config, so sampling applies the same
    transform to the raw track it is given.

    ``init_from`` warm-starts (fine-tunes) from a checkpoint folder or bundled model name: its saved
    (EMA) weights replace the fresh initialisation; the network options must match. Optimiser,
    schedule and step count start afresh; the checkpoint's config records where it started.

    Returns the trained :class:`Run` (EMA weights loaded) and the training summary.
    """
    cfg = train_config or TrainConfig()
    if track is not None:
        dataset = dataset.with_track(track)
    if valid_track is not None:
        if valid is None:
            raise DDSMInputError("a validation track needs validation data")
        valid = valid.with_track(valid_track, "validation track")
    spec = (TrackSpec.for_width(dataset.track.shape[-1], track_names, track_transform)
            if dataset.track is not None else None)
    if valid is not None and (valid.track is None) != (spec is None):
        raise DDSMInputError("training and validation data must both have signal tracks or neither "
                             "(--track needs --valid-track with --valid)")
    if spec is not None and valid is not None and valid.track is not None:
        spec.apply(valid.track, "validation track")  # same width and transform domain, before training
    proc = build_process(process, dataset.alphabet.K, **(process_options or {}))
    n_classes = len(dataset.classes) if dataset.labels is not None else 0
    with seeded_global_rng(cfg.seed):  # initial weights follow the run's seed; the caller's state is kept
        net = build_network(proc, model, n_classes, model_options, n_track=spec.n_track if spec else 0)
    meta = {
        "alphabet": dataset.alphabet.to_config(),
        "seq_len": int(dataset.length),
        "classes": list(dataset.classes) if n_classes else [],
        "seed": cfg.seed,
        "data_hash": data_hash(dataset),
        "n_train": len(dataset),
    }
    if spec is not None:
        meta["track"] = spec.to_config()  # only the width, names and transform: no data in checkpoints
    meta.update(extra_meta or {})
    if init_from is not None and not resume:
        source = resolve_model(init_from)
        load_model_weights(source, net)  # one clear error when names or shapes differ
        prior = load_config(source)
        meta["init_from"] = {"path": str(init_from), "step": prior.get("step"), "init_from": prior.get("init_from")}

    def batch(ds: Optional[SequenceDataset]) -> Optional[Batch]:
        if ds is None:
            return None
        pad = torch.from_numpy(ds.pad_mask)
        labels = torch.from_numpy(ds.labels) if (n_classes and ds.labels is not None) else None
        tr = torch.from_numpy(spec.apply(ds.track)) if (spec is not None and ds.track is not None) else None
        return Batch(torch.from_numpy(ds.tokens), labels, None if bool(pad.all()) else pad, tr)

    summary = train(proc, net, batch(dataset), config=cfg, valid=batch(valid), out_dir=out_dir, run_meta=meta,
                    resume=resume, device=device, on_step=on_step, model_name=model)
    if out_dir is not None:
        return load_run(out_dir, device=device), summary
    summary["ema"].copy_to(net)
    return Run(proc, net.eval(), {**meta, "process": {"name": process, "options": proc.config()}}), summary


#: bundled pretrained models: ``ddsm sample dhs4 ...`` resolves to ``resources/models/dhs4``
BUNDLED_MODELS = ("dhs4", "epd_promoters")
#: every bundled checkpoint the loader resolves by name -> its folder under ``resources``
BUNDLED_PATHS = {**{name: f"models/{name}" for name in BUNDLED_MODELS}, "sudoku": "sudoku"}


def resolve_model(name_or_path: Path | str) -> Path:
    """A checkpoint folder, or the name of a bundled model (``dhs4``, ``epd_promoters``, ``sudoku``)."""
    path = Path(name_or_path)
    if not path.exists() and str(name_or_path) in BUNDLED_PATHS:
        from importlib import resources

        bundled = Path(str(resources.files("ddsm") / "resources" / BUNDLED_PATHS[str(name_or_path)]))
        if not (bundled / "config.json").is_file():
            raise DDSMInputError(f"the bundled model {name_or_path!r} is not installed with this copy of ddsm")
        return bundled
    return path


def bundled_models() -> list[dict[str, Any]]:
    """The bundled models: name, data, label key, classes, length, process (from their configs)."""
    out = []
    for name in BUNDLED_MODELS:
        cfg = load_config(resolve_model(name))
        data = str(cfg.get("data_path", "?")).split("/shared/data/")[-1].split("/")[0]
        out.append({"name": name, "data": data, "label_key": cfg.get("label_key") or "-",
                    "classes": list(cfg.get("classes") or []), "length": int(cfg["seq_len"]),
                    "process": cfg["process"]["name"]})
    return out


def load_run(path: Path | str, *, device: Optional[torch.device] = None) -> Run:
    """Rebuild the process and the network of a checkpoint folder (or bundled model name), with
    its EMA weights."""
    path = resolve_model(path)
    saved = load_config(path)
    cfg = upgrade_config(saved, str(path))  # today's form; the weights' record is checked against ``saved``
    pcfg, mcfg = cfg["process"], cfg["model"]
    if pcfg["name"] not in PROCESSES:
        raise DDSMInputError(f"{path}: unknown process {pcfg['name']!r} (newer ddsm?)")
    from .models import ALL_MODELS

    if mcfg["name"] not in ALL_MODELS:
        raise DDSMInputError(f"{path}: unknown model {mcfg['name']!r} (newer ddsm?)")
    missing = [k for k in ("alphabet", "seq_len") if k not in cfg]
    if missing:
        raise DDSMInputError(f"{path}/config.json lacks {', '.join(missing)}; is it a ddsm run?")
    try:
        cls = PROCESSES[pcfg["name"]]
        proc = cls(**cls.upgrade_options(pcfg.get("options", {})))
        net = build_model(mcfg["name"], **dict(mcfg.get("options", {})))
    except (TypeError, ValueError) as e:
        raise DDSMInputError(f"{path}/config.json has invalid process/model options: {e}") from None
    spec = TrackSpec.from_config(cfg.get("track"))
    want = proc.in_channels + (spec.n_track if spec else 0)
    if getattr(net, "in_channels", want) != want:
        raise DDSMInputError(f"{path}/config.json: the network takes {net.in_channels} input channels, but "
                             f"process {proc.name!r} with {spec.n_track if spec else 0} track channel(s) needs {want}")
    check_bound_fields(path, saved)
    _check_implied(cfg, proc, net, path)
    load_model_weights(path, net)
    net.to(device or torch.device("cpu")).eval()
    return Run(proc, net, cfg, path)


def _check_implied(cfg: dict[str, Any], proc: Process, net: nn.Module, path: Path) -> None:
    """Config fields the weights imply must agree with them (one error line naming the field):
    structural checks that also hold for checkpoints older than the weights' record of their
    config (which :func:`load_run` checks first)."""
    where = f"{path}/config.json"
    K = Alphabet.from_config(cfg["alphabet"]).K
    if getattr(proc, "K", K) != K:
        raise DDSMInputError(f"{where}: field 'alphabet' has {K} letters but the process models {proc.K}")
    if getattr(net, "out_channels", proc.out_channels) != proc.out_channels:
        raise DDSMInputError(f"{where}: the network outputs {net.out_channels} channels but process "
                             f"{proc.name!r} needs {proc.out_channels}")
    n_classes = len(cfg.get("classes") or [])
    if getattr(net, "n_classes", n_classes) != n_classes:
        raise DDSMInputError(f"{where}: field 'classes' lists {n_classes} classes but the network was built "
                             f"for {net.n_classes}")
    seq_len = cfg["seq_len"]
    if not isinstance(seq_len, int) or seq_len < 1:
        raise DDSMInputError(f"{where}: field 'seq_len' must be a positive integer, got {seq_len!r}")
    max_len = getattr(net, "max_len", None)
    if max_len is not None and seq_len > max_len:
        raise DDSMInputError(f"{where}: field 'seq_len' is {seq_len} but the network's positions stop at {max_len}")


def _draw_fn(run: Run, *, steps: int, batch_size: int, label: Optional[int], guidance: float, dilation: float,
             dilation_after: float, generator: Optional[torch.Generator], device: torch.device,
             progress: Optional[Callable[[Iterable], Iterable]], track: Optional[np.ndarray] = None,
             output_hook: Optional[Callable[..., torch.Tensor]] = None, precision: str = "fp32",
             reward: Optional[Any] = None, guidance_interval: Optional[tuple[float, float]] = None,
             sampler: Optional[str] = None):
    """A ``DrawFn`` for ``constrained_design``: rows (with their design ids) with per-row fixed
    tokens/masks -> strings.

    ``track``: ``(1, L, S)`` shared or ``(n, L, S)`` per design, already transformed;
    ``output_hook``: classifier guidance (applied after classifier-free guidance); ``precision``:
    ``"fp32"`` or ``"bf16"`` (autocast of the network only; the process's maths stays float64).
    ``reward``: a :class:`ddsm.sampling.RewardGuidance` (SMC / SVDD); each network batch then holds
    ``batch_size // particles`` designs (at least one) times their particles. ``sampler``: one of
    ``run.process.samplers`` (None: the process's default), for the plain (non-reward) draws.
    """
    from .guidance import ClassifierFreeGuidance

    model: nn.Module = run.model
    if precision == "bf16":
        from .precision import Autocast

        model = Autocast(model, device)
    if guidance > 0:
        if not run.classes or label is None:
            raise DDSMInputError("--guidance needs a class-conditional model and --class")
        model = ClassifierFreeGuidance(model, guidance, null_class=len(run.classes), interval=guidance_interval)
    L = run.seq_len
    track_t = None if track is None else torch.as_tensor(track, device=device)

    per_call = batch_size if reward is None else max(1, batch_size // reward.particles)

    def draw(rows: int, tokens: np.ndarray, mask: np.ndarray, index: Optional[np.ndarray] = None) -> list[str]:
        out: list[str] = []
        for start in range(0, rows, per_call):
            b = min(per_call, rows - start)
            cond = None
            if run.classes:
                # an unconditional draw from a conditional model uses the null class
                cond = torch.full((b,), len(run.classes) if label is None else label, dtype=torch.long, device=device)
            net: Callable[..., torch.Tensor] = model
            if track_t is not None:
                if track_t.shape[0] == 1:
                    rows_track = track_t.expand(b, -1, -1)
                else:
                    assert index is not None, "per-design tracks need the design ids of the rows"
                    ids = torch.as_tensor(index[start : start + b], device=device)
                    rows_track = track_t[ids]
                binding = TrackBinding(model, rows_track, cond)
                net, cond = binding, binding.rows()
            fp = None
            m = mask[start : start + b]
            if m.any():
                fp = FixedPositions(torch.as_tensor(tokens[start : start + b], device=device),
                                    torch.as_tensor(m, device=device))
            if reward is None:
                toks = sample(run.process, net, (b, L), steps=steps, cond=cond, fixed=fp, dilation=dilation,
                              dilation_after=dilation_after, output_hook=output_hook, generator=generator,
                              device=device, progress=progress, sampler=sampler)
            else:
                from .sampling import guided_sample

                toks = guided_sample(run.process, net, (b, L), reward, steps=steps, cond=cond, fixed=fp,
                                     dilation=dilation, dilation_after=dilation_after, output_hook=output_hook,
                                     generator=generator, device=device, progress=progress).tokens
            out.extend(run.alphabet.decode(row) for row in toks.cpu().numpy())
        return out

    return draw


def _run_track(run: Run, track: Optional[Any], n: int, what: str = "track") -> Optional[np.ndarray]:
    """A user's sampling/scoring track checked against the run -> ``(1 or n, L, S)`` transformed."""
    spec = run.track
    if spec is None:
        if track is not None:
            raise DDSMInputError("this model was trained without a signal track; drop --track")
        return None
    if track is None:
        raise DDSMInputError(f"this model was trained with a signal track ({spec.describe()}); pass --track "
                             f"FILE.npy of shape ({run.seq_len},) or ({run.seq_len}, {spec.n_track}) for every "
                             f"sequence, or (N, {run.seq_len}[, {spec.n_track}]) one per sequence")
    return design_track(spec, track, n, run.seq_len, what)


def resolve_classifier(run: Run, classifier: Any = None, *, device: Optional[torch.device] = None):
    """The classifier for classifier guidance: a :class:`ddsm.guidance.Classifier`, an oracle
    (:class:`ddsm.metrics.oracle.Oracle`), an oracle folder or bundled oracle name, or None: the
    bundled oracle trained on the run's data set (same classes and label key), if there is one."""
    from .guidance import Classifier
    from .metrics.oracle import Oracle, load_oracle, match_oracle

    if classifier is None:
        name = match_oracle(run.classes) if run.classes else None
        if name is not None:
            oracle = load_oracle(name, device=device)
            key = run.config.get("label_key")
            if key and oracle.label_key and key != oracle.label_key:
                name = None
        if name is None:
            raise DDSMInputError("classifier guidance needs --classifier DIR (an oracle folder): no bundled "
                                 "oracle was trained on this model's data")
        classifier = oracle
    if isinstance(classifier, (str, Path)):
        classifier = load_oracle(classifier, device=device)
    if isinstance(classifier, Oracle):
        classifier = Classifier.from_oracle(classifier)
    if not isinstance(classifier, Classifier):
        raise TypeError("classifier must be a Classifier, an Oracle, an oracle folder/name or None")
    if classifier.alphabet is not None and classifier.alphabet != run.alphabet.letters:
        raise DDSMInputError(f"the classifier {classifier.name} reads letters {classifier.alphabet}; this model "
                             f"writes {run.alphabet.letters}")
    return classifier


def _interval(interval: Optional[tuple[float, float]]) -> Optional[tuple[float, float]]:
    from .guidance.cfg import check_interval

    try:
        return check_interval(interval)
    except ValueError as e:
        raise DDSMInputError(str(e)) from None


def with_jacobi_sampling(run: Run, *, substeps: Optional[int] = None, grid_focus: Optional[float] = None,
                         extrapolate: Optional[float] = None) -> Run:
    """``run`` with its jacobi process taking ``substeps`` SDE sub-steps per network call, placing
    a fraction ``grid_focus`` of its sampling steps by the entropy law and/or extrapolating the held
    correction by ``extrapolate`` (None: unchanged). A copy: ``run`` itself is unchanged; the copy
    shares its network and stick tables."""
    if substeps is None and grid_focus is None and extrapolate is None:
        return run
    flag = ("--substeps" if substeps is not None else "--grid-focus" if grid_focus is not None
            else "--extrapolate")
    if not (isinstance(run.process, JacobiProcess) and run.process.output == "posterior"):
        raise DDSMInputError(f"{flag} needs a jacobi model with the posterior output; this model uses "
                             f"{run.process.name!r}")
    if substeps is not None and (isinstance(substeps, bool) or int(substeps) != substeps or substeps < 1):
        raise DDSMInputError(f"--substeps must be an integer >= 1, got {substeps}")
    if grid_focus is not None and (isinstance(grid_focus, bool) or not 0.0 <= float(grid_focus) < 1.0):
        raise DDSMInputError(f"--grid-focus must lie in [0, 1), got {grid_focus}")
    if extrapolate is not None and (isinstance(extrapolate, bool)
                                    or not (math.isfinite(extrapolate) and extrapolate >= 0)):
        raise DDSMInputError(f"--extrapolate must be a finite number >= 0, got {extrapolate}")
    if grid_focus:
        run.process.entropy_focus  # noqa: B018  (estimated once on the shared process, ~1 s, not per copy)
    process = copy.copy(run.process)
    if substeps is not None:
        process.substeps = int(substeps)
    if grid_focus is not None:
        process.grid_focus = float(grid_focus)
    if extrapolate is not None:
        process.extrapolate = float(extrapolate)
    return replace(run, process=process)


def design(
    run: Run,
    n: int,
    *,
    steps: int = 100,
    batch_size: int = 64,
    class_name: Optional[str] = None,
    guidance: float = 0.0,
    fixed: Optional[tuple[np.ndarray, np.ndarray]] = None,
    forbid: Optional[Sequence[str]] = None,
    forbid_revcomp: bool = True,
    gc: Optional[tuple[float, float]] = None,
    length_range: Optional[tuple[int, int]] = None,
    reward: Optional[Any] = None,
    reward_method: str = "smc",
    particles: int = 8,
    alpha: float = 1.0,
    reward_oracle: Optional[Any] = None,
    rounds: int = 20,
    dilation: float = 1.0,
    dilation_after: float = 1.0,
    track: Optional[Any] = None,
    classifier_guidance: float = 0.0,
    classifier: Any = None,
    guidance_interval: Optional[tuple[float, float]] = None,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device] = None,
    progress: Optional[Callable[[Iterable], Iterable]] = None,
    precision: str = "fp32",
    sampler: Optional[str] = None,
    substeps: Optional[int] = None,
    grid_focus: Optional[float] = None,
    extrapolate: Optional[float] = None,
):
    """Draw ``n`` designs that satisfy every constraint exactly (see ``ddsm.constraints``).

    Args:
        class_name: class to design for (conditional models); ``guidance``: classifier-free
            guidance weight w (0 = plain conditional sampling).
        fixed: ``(tokens (L,), mask (L,))`` positions to keep.
        precision: the network's precision, ``"fp32"``, ``"bf16"`` (autocast) or ``"auto"`` (bf16
            where it is native: GPUs, CPUs with AMX or AVX512-BF16).
        forbid: motifs that may not occur, read by the model's alphabet: IUPAC codes on both
            strands for DNA/RNA (``forbid_revcomp=False``: the given strand only), literal letters
            for proteins and custom alphabets. ``gc``: (min, max) GC fraction (DNA/RNA only).
        length_range: ``(lo, hi)`` design lengths for a variable-length model (``lo == hi``: a
            fixed design length); default: whatever lengths the model draws, up to ``run.seq_len``.
        reward: steer toward a reward with SMC or SVDD (:mod:`ddsm.sampling.smc`), any process:
            ``"oracle"`` / ``"margin"`` (toward ``class_name`` with ``reward_oracle``, default the
            bundled oracle of the run's data), ``"gc:0.45"``, ``"motif:TATAAA"``,
            ``"nomotif:GAATTC"``, or a callable ``fn(list[str]) -> floats`` (see
            :mod:`ddsm.guidance.reward`). ``reward_method``: ``"smc"`` (``particles`` per design) or
            ``"svdd"`` (``particles`` candidates per step); ``alpha``: temperature of the tilt
            exp(r / alpha) (``inf``: no steering, byte-identical to ``reward=None``). The result's
            ``rewards`` hold each design's reward.
        rounds: sampling rounds before giving up on the designs still failing.
        track: raw signal track for a track-conditioned model: ``(L,)`` / ``(L, S)`` for every
            design, ``(n, L)`` / ``(n, L, S)`` one per design; required exactly when the model
            was trained with one.
        classifier_guidance: classifier guidance weight w >= 0 toward ``class_name`` (simplex
            processes and bits; see :mod:`ddsm.guidance.classifier`); composes with ``guidance``.
        classifier: the differentiable classifier (see :func:`resolve_classifier`); None: the
            bundled oracle of the run's data set.
        guidance_interval: ``(lo, hi)``: apply both guidances only at public times lo <= t <= hi
            (other steps cost one unguided network call); None: every step.
        sampler: one of ``run.process.samplers``, e.g. ``"first-hitting"`` for a masked model
            (one network call per token, ``steps`` unused); None: the process's configured
            default (``run.process.default_sampler``). Fixed positions, motif/GC constraints and
            classifier-free guidance work with every sampler; reward guidance and time dilation
            need ``"ancestral"``.
        substeps: SDE sub-steps per network call of a jacobi model (posterior output), between
            which the exact local evidence is refreshed (see ``JacobiProcess``); None: the
            process's own (8).
        grid_focus: fraction of a jacobi model's sampling steps placed by the entropy law, where
            tokens get decided (see ``JacobiProcess``); None: the process's own (0, uniform).
        extrapolate: alpha >= 0 for a jacobi model (posterior output): the correction held over a
            call's sub-steps is the network's c_n plus alpha (c_n - c_{n-1}), its change since the
            previous call (:class:`ddsm.sampling.ExtrapolatedCorrection`; same network calls); 0:
            held as returned; None: the process's own. Reward guidance (its resampling reorders
            the batch between calls) refuses a value > 0 and runs without the process's own.
    Returns:
        a :class:`ddsm.constraints.DesignResult` (sequences, samples used, failures with reasons).
    """
    from .constraints import ForbiddenMotifs, GCWindow, constrained_design
    from .guidance import ClassifierGuidance

    if not (math.isfinite(classifier_guidance) and classifier_guidance >= 0):
        raise DDSMInputError("--classifier-guidance must be a finite number >= 0")
    interval = _interval(guidance_interval)  # checked once, shared by both guidances
    run = with_jacobi_sampling(run, substeps=substeps, grid_focus=grid_focus, extrapolate=extrapolate)
    if extrapolate and reward is not None and math.isfinite(alpha):
        raise DDSMInputError("--extrapolate does not combine with reward guidance (its resampling reorders the "
                             "designs between network calls)")
    try:
        sampler = run.process.resolve_sampler(sampler)
    except ValueError as e:
        raise DDSMInputError(str(e)) from None
    steering = classifier_guidance > 0 or classifier is not None
    # With a classifier an unconditional model may still be steered: the class then names the
    # classifier's target only.
    label = None if (steering and not run.classes) else run.class_index(class_name)
    device = device or next(run.model.parameters()).device
    hook = None
    if steering:  # checked even at w = 0, which then installs no hook (byte-identical to unguided)
        from .guidance import GUIDED_PROCESSES, supports_classifier_guidance

        if not supports_classifier_guidance(run.process):  # before looking for a classifier
            raise DDSMInputError(f"classifier guidance needs a simplex or bits process "
                                 f"({', '.join(GUIDED_PROCESSES)}); this model uses {run.process.name!r}")
        clf = resolve_classifier(run, classifier, device=device)
        guided = ClassifierGuidance(run.process, clf.fn, clf.target(class_name), classifier_guidance,
                                    interval=interval)
        hook = guided if classifier_guidance > 0 else None
    tracks = _run_track(run, track, n)
    reward_guidance = None
    reward_fn = None
    if reward is not None:
        from .guidance.reward import parse_reward
        from .sampling import RewardGuidance

        if not (alpha > 0):
            raise DDSMInputError("--alpha must be > 0 (inf: no steering)")
        if reward_method not in ("smc", "svdd"):
            raise DDSMInputError(f"--reward-method {reward_method!r}: choose smc or svdd")
        if particles < 1:
            raise DDSMInputError("--particles must be at least 1")
        clf = None
        if isinstance(reward, str) and reward.partition(":")[0] in ("oracle", "margin"):
            if class_name is None:
                raise DDSMInputError(f"--reward {reward} needs --class (the class to steer toward)")
            clf = resolve_classifier(run, reward_oracle, device=device)
        reward_fn = parse_reward(reward, run.alphabet, classifier=clf, class_name=class_name)
        if math.isfinite(alpha):
            if sampler != "ancestral":  # SMC / SVDD reweight the steps of the grid loop
                raise DDSMInputError(f"reward guidance runs the ancestral sampler, not {sampler!r}; "
                                     "pass sampler 'ancestral' or drop the reward")
            reward_guidance = RewardGuidance(reward_fn, alpha=float(alpha), method=reward_method,
                                             particles=int(particles))
    draw = _draw_fn(run, steps=steps, batch_size=batch_size, label=label, guidance=guidance, dilation=dilation,
                    dilation_after=dilation_after, generator=generator, device=device, progress=progress,
                    track=tracks, output_hook=hook, precision=resolve_precision(precision, device),
                    reward=reward_guidance, guidance_interval=interval, sampler=sampler)
    fm = ForbiddenMotifs.parse(forbid, alphabet=run.alphabet, both_strands=forbid_revcomp) if forbid else None
    if gc is not None and not run.alphabet.has_gc:
        raise DDSMInputError(f"a GC window needs a DNA or RNA model; this model's alphabet is {run.alphabet.name}")
    gw = GCWindow(*gc) if gc is not None else None
    alphabet = run.alphabet
    if length_range is not None:
        lo, hi = length_range
        if not alphabet.end:
            raise DDSMInputError("a design length needs a variable-length model (ddsm train --variable-length)")
        if not 1 <= lo <= hi <= run.seq_len:
            raise DDSMInputError(f"design lengths {lo}:{hi} must satisfy 1 <= MIN <= MAX <= {run.seq_len} "
                                 "(the model's maximum length)")
        if hi < run.seq_len:  # the positions past the maximum are end letters from the start
            tok = np.zeros(run.seq_len, dtype=np.int64) if fixed is None else fixed[0].copy()
            mask = np.zeros(run.seq_len, dtype=bool) if fixed is None else fixed[1].copy()
            if mask[hi:].any():
                raise DDSMInputError(f"--fixed fixes letters after position {hi}, past the design length")
            tok[hi:], mask[hi:] = alphabet.end_id, True
            fixed = (tok, mask)
    result = constrained_design(draw, n, run.seq_len, alphabet.letters, fixed=fixed, forbid=fm, gc=gw,
                                rounds=rounds, indexed_draw=True, end=alphabet.end, length_range=length_range)
    if reward_fn is not None:  # each design's reward, on its full row (end letters included)
        done = [i for i, s in enumerate(result.sequences) if s is not None]
        rows = [result.sequences[i] + alphabet.end * (run.seq_len - len(result.sequences[i])) for i in done]
        values = (reward_fn(torch.as_tensor(np.stack([alphabet.encode(s) for s in rows]), device=device)).cpu()
                  if rows else [])
        result.rewards = [None] * n
        for i, v in zip(done, list(values)):
            result.rewards[i] = float(v)
    return result


def generate(run: Run, n: int, **kwargs: Any) -> list[str]:
    """Draw ``n`` sequences from a run (no motif/GC constraints); returns them as strings.

    Keyword arguments as :func:`design` (``steps``, ``class_name``, ``guidance``, ``fixed``, ...).
    """
    result = design(run, n, **kwargs)
    return [s for s in result.sequences if s is not None]


def score_steps(process: Process, steps: Optional[int] = None) -> int:
    """``steps`` or, if None, the default of ``process.bits_per_token`` (200 ODE steps for jacobi:
    fewer bias its bound low)."""
    if steps is not None:
        return int(steps)
    return int(inspect.signature(process.bits_per_token).parameters["steps"].default)


def score(
    run: Run,
    dataset: SequenceDataset,
    *,
    steps: Optional[int] = None,
    batch_size: int = 32,
    repeats: int = 1,
    track: Optional[Any] = None,
    t_start: Optional[float] = None,
    bound: Optional[str] = None,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device] = None,
    progress: Optional[Callable[[Iterable], Iterable]] = None,
) -> np.ndarray:
    """Bits per token of each sequence (``(N,)``; an upper bound for diffusion processes, averaged
    over ``repeats`` independent estimates).

    ``track``: raw signal tracks of a track-conditioned model, ``(N, L[, S])`` one per sequence or
    ``(L[, S])`` for all (default: ``dataset.track``). ``t_start``: native time where DDSM's ODE
    bound starts (jacobi only; see ``JacobiProcess.bits_per_token``). ``steps``: ODE / Monte-Carlo
    steps (None: the process's default, see :func:`score_steps`). ``bound``: which bound, one of
    ``run.process.likelihood_bounds`` (jacobi: ``"ode"``, the default, or ``"sde"``, the reverse
    SDE's, about 4x cheaper); None: the process's default."""
    extra: dict[str, Any] = {"steps": score_steps(run.process, steps)}
    if bound is not None:
        offered = run.process.likelihood_bounds
        if bound not in offered:
            raise DDSMInputError(f"--bound {bound!r} is not offered by this {run.process.name!r} model"
                                 + (f" (choose from {', '.join(offered)})" if offered else ""))
        if bound != offered[0]:
            extra["bound"] = bound
    if t_start is not None:
        if not run.process.likelihood_t_start:
            raise DDSMInputError(f"--t-start applies to the jacobi process's ODE bound, not to {run.process.name!r}")
        T = float(run.process.T)  # type: ignore[attr-defined]  # the jacobi process, checked above
        if not 0.0 < t_start < T:
            raise DDSMInputError(f"--t-start must be a native time in (0, {T:g}), got {t_start}")
        if extra.get("bound", "ode") != "ode":
            raise DDSMInputError("--t-start applies to the ODE bound only")
        extra["t_start"] = float(t_start)
    if dataset.length != run.seq_len:
        raise DDSMInputError(f"sequences have length {dataset.length}; the model was trained on length {run.seq_len}")
    tracks = _run_track(run, dataset.track if track is None else track, len(dataset))
    device = device or next(run.model.parameters()).device
    x = torch.from_numpy(dataset.tokens)
    labels = torch.from_numpy(dataset.labels) if (run.classes and dataset.labels is not None) else None
    result = np.zeros(len(x))
    batches = list(range(0, len(x), batch_size))
    for start in progress(batches) if progress else batches:
        xb = x[start : start + batch_size].to(device)
        cond = None
        if run.classes:
            cond = (labels[start : start + batch_size].to(device) if labels is not None
                    else torch.full((len(xb),), len(run.classes), dtype=torch.long, device=device))
        net: Callable[..., torch.Tensor] = run.model
        if tracks is not None:
            rows = tracks[start : start + len(xb)] if len(tracks) > 1 else np.repeat(tracks, len(xb), axis=0)
            binding = TrackBinding(run.model, torch.as_tensor(rows, device=device), cond)
            net, cond = binding, binding.rows()
        vals = [run.process.bits_per_token(net, xb, cond=cond, generator=generator, **extra)
                for _ in range(repeats)]
        result[start : start + len(xb)] = torch.stack(vals).mean(0).cpu().numpy()
    return result


def sequence_summary(designed: Sequence[str], reference: Sequence[str]) -> dict[str, float]:
    """GC content and 3-mer spectrum of designed sequences against a reference set."""
    from .metrics import gc_content, kmer_js

    gd, gr = gc_content(designed), gc_content(reference)
    return {
        "gc_designed": float(np.nanmean(gd)),
        "gc_reference": float(np.nanmean(gr)),
        "gc_abs_diff": float(abs(np.nanmean(gd) - np.nanmean(gr))),
        "kmer3_js": kmer_js(designed, reference, 3),
        "kmer4_js": kmer_js(designed, reference, 4),
    }

