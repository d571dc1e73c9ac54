"""The Python API: train on sequences, load a run, sample, score. Returns plain Python/NumPy data.

The CLI (``ddsm.cli``) is a thin layer over these functions: it parses arguments, reads and writes
files and draws progress bars.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .checkpoint import load_config, load_model_weights
from .data import Alphabet, SequenceDataset, data_hash
from .errors import DDSMInputError
from .models import build_model
from .processes import PROCESSES, Process, build_process
from .sampling import FixedPositions, sample
from .train import TrainConfig, train

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

    def class_index(self, name: Optional[str]) -> Optional[int]:
        """Label id of a class name (None -> None); an unknown name lists the valid ones."""
        if name is None:
            return None
        if not self.classes:
            raise DDSMInputError("this model was trained without class labels; drop --class")
        if name not in self.classes:
            raise DDSMInputError(f"unknown class {name!r}; valid classes: {', '.join(self.classes)}")
        return self.classes.index(name)


def build_network(process: Process, name: str, n_classes: int, options: Optional[dict[str, Any]] = None) -> nn.Module:
    """A backbone sized for ``process`` (causal processes get a causal transformer)."""
    opts = dict(DEFAULT_MODEL_OPTIONS.get(name, {}))
    opts.update(options or {})
    if process.causal:
        if name != "transformer":
            raise DDSMInputError(f"process {process.name!r} needs a causal model: use --model transformer")
        opts["causal"] = True
    return build_model(name, process.in_channels, process.out_channels, n_classes, **opts)


def fit(
    dataset: SequenceDataset,
    out_dir: Optional[Path],
    *,
    process: str = "jacobi",
    process_options: Optional[dict[str, Any]] = None,
    model: str = "conv",
    model_options: Optional[dict[str, Any]] = None,
    train_config: Optional[TrainConfig] = None,
    valid: Optional[SequenceDataset] = None,
    resume: bool = False,
    device: Optional[torch.device] = None,
    on_step: Optional[Callable[[int, dict[str, Any]], None]] = None,
    extra_meta: Optional[dict[str, Any]] = None,
) -> tuple[Run, dict[str, Any]]:
    """Train a process + backbone on ``dataset``; writes a checkpoint folder when ``out_dir`` is set.

    Returns the trained :class:`Run` (EMA weights loaded) and the training summary.
    """
    cfg = train_config or TrainConfig()
    proc = build_process(process, dataset.alphabet.K, **(process_options or {}))
    n_classes = len(dataset.classes) if dataset.labels is not None else 0
    torch.manual_seed(cfg.seed)  # initial weights follow the run's seed
    net = build_network(proc, model, n_classes, model_options)
    meta = {
        "alphabet": dataset.alphabet.to_config(),
        "seq_len": int(dataset.length),
        "classes": list(dataset.classes) if n_classes else [],
        "seed": cfg.seed,
        "data_hash": data_hash(dataset),
        "n_train": len(dataset),
    }
    meta.update(extra_meta or {})

    def tensors(ds: Optional[SequenceDataset]):
        if ds is None:
            return None, None, None
        pad = torch.from_numpy(ds.pad_mask)
        labels = torch.from_numpy(ds.labels) if (n_classes and ds.labels is not None) else None
        return torch.from_numpy(ds.tokens), labels, (None if bool(pad.all()) else pad)

    x_tr, c_tr, p_tr = tensors(dataset)
    x_va, c_va, p_va = tensors(valid)
    summary = train(proc, net, x_tr, config=cfg, valid_data=x_va, cond_train=c_tr, cond_valid=c_va,
                    pad_train=p_tr, pad_valid=p_va, out_dir=out_dir, run_meta=meta, resume=resume,
                    device=device, on_step=on_step, model_name=model)
    if out_dir is not None:
        return load_run(out_dir, device=device), summary
    summary["ema"].copy_to(net)
    return Run(proc, net.eval(), {**meta, "process": {"name": process, "options": proc.config()}}), summary


#: bundled pretrained models: ``ddsm sample dhs4 ...`` resolves to ``resources/models/dhs4``
BUNDLED_MODELS = ("dhs4", "epd_promoters")


def resolve_model(name_or_path: Path | str) -> Path:
    """A checkpoint folder, or the name of a bundled model (``dhs4``, ``epd_promoters``)."""
    path = Path(name_or_path)
    if not path.exists() and str(name_or_path) in BUNDLED_MODELS:
        from importlib import resources

        bundled = Path(str(resources.files("ddsm") / "resources" / "models" / str(name_or_path)))
        if not (bundled / "config.json").is_file():
            raise DDSMInputError(f"the bundled model {name_or_path!r} is not installed with this copy of ddsm")
        return bundled
    return path


def load_run(path: Path | str, *, device: Optional[torch.device] = None) -> Run:
    """Rebuild the process and the network of a checkpoint folder (or bundled model name), with
    its EMA weights."""
    path = resolve_model(path)
    cfg = load_config(path)
    pcfg, mcfg = cfg["process"], cfg["model"]
    if pcfg["name"] not in PROCESSES:
        raise DDSMInputError(f"{path}: unknown process {pcfg['name']!r} (newer ddsm?)")
    from .models import MODELS

    if mcfg["name"] not in MODELS:
        raise DDSMInputError(f"{path}: unknown model {mcfg['name']!r} (newer ddsm?)")
    missing = [k for k in ("alphabet", "seq_len") if k not in cfg]
    if missing:
        raise DDSMInputError(f"{path}/config.json lacks {', '.join(missing)}; is it a ddsm run?")
    try:
        proc = PROCESSES[pcfg["name"]](**pcfg.get("options", {}))
        net = build_model(mcfg["name"], **dict(mcfg.get("options", {})))
    except (TypeError, ValueError) as e:
        raise DDSMInputError(f"{path}/config.json has invalid process/model options: {e}") from None
    load_model_weights(path, net)
    net.to(device or torch.device("cpu")).eval()
    return Run(proc, net, cfg, path)


def _draw_fn(run: Run, *, steps: int, batch_size: int, label: Optional[int], guidance: float, dilation: float,
             dilation_after: float, generator: Optional[torch.Generator], device: torch.device,
             progress: Optional[Callable[[Iterable], Iterable]]):
    """A ``DrawFn`` for ``constrained_design``: rows with per-row fixed tokens/masks -> strings."""
    from .guidance import ClassifierFreeGuidance

    model: nn.Module = run.model
    if guidance > 0:
        if not run.classes or label is None:
            raise DDSMInputError("--guidance needs a class-conditional model and --class")
        model = ClassifierFreeGuidance(run.model, guidance, null_class=len(run.classes))
    L = run.seq_len

    def draw(rows: int, tokens: np.ndarray, mask: np.ndarray) -> list[str]:
        out: list[str] = []
        for start in range(0, rows, batch_size):
            b = min(batch_size, rows - start)
            cond = None
            if run.classes:
                # an unconditional draw from a conditional model uses the null class
                cond = torch.full((b,), len(run.classes) if label is None else label, dtype=torch.long, device=device)
            fp = None
            m = mask[start : start + b]
            if m.any():
                fp = FixedPositions(torch.as_tensor(tokens[start : start + b], device=device),
                                    torch.as_tensor(m, device=device))
            toks = sample(run.process, model, (b, L), steps=steps, cond=cond, fixed=fp, dilation=dilation,
                          dilation_after=dilation_after, generator=generator, device=device, progress=progress)
            out.extend(run.alphabet.decode(row) for row in toks.cpu().numpy())
        return out

    return draw


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
    gc: Optional[tuple[float, float]] = None,
    rounds: int = 20,
    dilation: float = 1.0,
    dilation_after: float = 1.0,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device] = None,
    progress: Optional[Callable[[Iterable], Iterable]] = None,
):
    """Draw ``n`` designs that satisfy every constraint exactly (see ``ddsm.constraints``).

    Args:
        class_name: class to design for (conditional models); ``guidance``: classifier-free
            guidance weight w (0 = plain conditional sampling).
        fixed: ``(tokens (L,), mask (L,))`` positions to keep.
        forbid: motifs (IUPAC, both strands) that may not occur; ``gc``: (min, max) GC fraction.
        rounds: sampling rounds before giving up on the designs still failing.
    Returns:
        a :class:`ddsm.constraints.DesignResult` (sequences, samples used, failures with reasons).
    """
    from .constraints import ForbiddenMotifs, GCWindow, constrained_design

    label = run.class_index(class_name)
    device = device or next(run.model.parameters()).device
    draw = _draw_fn(run, steps=steps, batch_size=batch_size, label=label, guidance=guidance, dilation=dilation,
                    dilation_after=dilation_after, generator=generator, device=device, progress=progress)
    fm = ForbiddenMotifs.parse(forbid) if forbid else None
    gw = GCWindow(*gc) if gc is not None else None
    return constrained_design(draw, n, run.seq_len, run.alphabet.letters, fixed=fixed, forbid=fm, gc=gw,
                              rounds=rounds)


def generate(run: Run, n: int, **kwargs: Any) -> list[str]:
    """Draw ``n`` sequences from a run (no motif/GC constraints); returns them as strings.

    Keyword arguments as :func:`design` (``steps``, ``class_name``, ``guidance``, ``fixed``, ...).
    """
    result = design(run, n, **kwargs)
    return [s for s in result.sequences if s is not None]


def score(
    run: Run,
    dataset: SequenceDataset,
    *,
    steps: int = 50,
    batch_size: int = 32,
    repeats: int = 1,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device] = None,
    progress: Optional[Callable[[Iterable], Iterable]] = None,
) -> np.ndarray:
    """Bits per token of each sequence (``(N,)``; an upper bound for diffusion processes, averaged
    over ``repeats`` independent estimates)."""
    if dataset.length != run.seq_len:
        raise DDSMInputError(f"sequences have length {dataset.length}; the model was trained on length {run.seq_len}")
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
        vals = [run.process.bits_per_token(run.model, xb, cond=cond, generator=generator, steps=steps)
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

