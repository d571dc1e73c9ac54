"""``ddsm demo``: the README's main job, offline, on bundled models and data.

For each bundled class-conditional DDSM model (``dhs4``: 4 cell types, 200 bp DHS sequences;
``epd_promoters``: 4 species, 300 bp TATA promoters) it designs sequences for every class with
classifier-free guidance, evaluates them against bundled held-out real sequences (k-mers, GC,
JASPAR motifs, discriminator, the bundled oracle classifier, diversity) and writes an HTML report;
then it solves a few hard Sudoku puzzles with the bundled Sudoku model. Everything lands in one
folder. Without bundled models (a source checkout before they were trained) it trains a small
unconditional model on bundled DHS sequences instead.

Randomness: every draw comes from explicit generators built from ``seed`` (``make_generator``);
this module never seeds the global generators (``ddsm demo`` does, in the CLI).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from .errors import DDSMInputError

#: bundled model -> (held-out data file, label key)
BUNDLED_REFERENCE = {"dhs4": ("dhs4/valid_small.fasta.gz", "cell_type"),
                     "epd_promoters": ("epd_promoters/valid_small.fasta.gz", "species")}


def _silent(msg: str) -> None:
    pass


def _progress(quiet: bool, desc: str):
    if quiet:
        return None
    from tqdm import tqdm

    return lambda it: tqdm(it, desc=desc, leave=False, file=sys.stderr)


def run_demo(out: Path, *, steps: Optional[int] = None, seed: int = 0, n: int = 48, force: bool = False,
             quiet: bool = False, device: Optional[torch.device] = None, guidance: Optional[float] = None,
             say: Callable[[str], None] = _silent) -> int:
    """Run the demo into folder ``out``; ``say`` receives the summary lines (tables, paths) that
    ``ddsm demo`` prints, ``quiet`` silences the progress bars. ``steps`` / ``guidance``: None uses
    each bundled model's recorded sampling defaults (else 50 steps, guidance 1). Returns the exit
    code (0)."""
    from .api import BUNDLED_MODELS, resolve_model

    if out.exists() and any(out.iterdir()) and not force:
        raise DDSMInputError(f"{out} exists and is not empty; use --force to overwrite or --out elsewhere")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    available = []
    for name in BUNDLED_MODELS:
        try:
            resolve_model(name)
            available.append(name)
        except DDSMInputError:
            pass
    if not available:
        say("no bundled models in this installation: training a small one on bundled DHS sequences")
        return _train_small(out, seed=seed, quiet=quiet, device=device, say=say)
    for name in available:
        _design_and_evaluate(name, out, steps=steps, seed=seed, n=n, quiet=quiet, device=device, guidance=guidance,
                             say=say)
    _sudoku(out, seed=seed, quiet=quiet, say=say)
    say(f"\ndemo finished in {time.time() - t_start:.0f} s; outputs in {out}/")
    return 0


def _design_and_evaluate(name: str, out: Path, *, steps: Optional[int], seed: int, n: int, quiet: bool,
                         device: Optional[torch.device], guidance: Optional[float],
                         say: Callable[[str], None]) -> None:
    from .api import design, load_run
    from .data import Record, bundled_path, read_fasta, write_fasta
    from .data.io import atomic_write_text
    from .evaluate import evaluate_detailed, format_table
    from .report import build_report
    from .seeding import make_generator

    run = load_run(name, device=device)
    defaults = run.sampling_defaults
    steps = int(defaults.get("steps", 50)) if steps is None else steps
    guidance = float(defaults.get("guidance", 1.0)) if guidance is None else guidance
    ref_file, key = BUNDLED_REFERENCE[name]
    reference = read_fasta(bundled_path(ref_file))
    say(f"\n== {name}: DDSM ({run.process.name}, {sum(p.numel() for p in run.model.parameters()):,} parameters), "
         f"classes {', '.join(run.classes)}; designing {n} per class, {steps} steps, guidance {guidance:g}"
         + (f", classifier guidance {float(defaults['classifier_guidance']):g}" if defaults.get("classifier_guidance")
            else "") + f", seed {seed}")
    gen = make_generator(seed)  # one stream for all classes of this model
    records = []
    t0 = time.time()
    for cls in run.classes:
        res = design(run, n, steps=steps, class_name=cls, guidance=guidance, generator=gen, device=device,
                     precision=str(defaults.get("precision", "fp32")), substeps=defaults.get("substeps"),
                     grid_focus=defaults.get("grid_focus"), extrapolate=defaults.get("extrapolate"),
                     classifier_guidance=float(defaults.get("classifier_guidance", 0.0)),
                     guidance_interval=(tuple(defaults["guidance_interval"]) if defaults.get("guidance_interval")
                                        else None),
                     progress=_progress(quiet, cls))
        for i, s in enumerate(res.sequences):
            if s is not None:
                records.append(Record(f"{name}_{cls}_{i}", s, {key: cls, "model": name, "seed": str(seed),
                                                                "steps": str(steps), "guidance": f"{guidance:g}"}))
    say(f"designed {len(records)} sequences in {time.time() - t0:.0f} s -> {out / (name + '_designs.fasta')}")
    write_fasta(out / f"{name}_designs.fasta", records, force=True)
    t0 = time.time()
    result = evaluate_detailed(records, reference, label_key=key, oracle="auto", max_seqs=400, seed=seed,
                               device=device)
    say(format_table(result.table))
    if result.oracle:
        say(f"oracle: {result.oracle['name']} (its own validation accuracy "
             f"{result.oracle.get('valid_accuracy', float('nan')):.3f}); evaluated in {time.time() - t0:.0f} s")
    html = build_report(result, run_dir=run.path, title=f"ddsm demo: {name} designs vs held-out real sequences")
    atomic_write_text(out / f"{name}_report.html", html, force=True)
    atomic_write_text(out / f"{name}_evaluation.json", json.dumps(result.to_json(), indent=1) + "\n", force=True)
    say(f"report: {out / (name + '_report.html')}")


def _sudoku(out: Path, *, seed: int, quiet: bool, say: Callable[[str], None]) -> None:
    """Solve the first few of Norvig's hardest puzzles with the bundled Sudoku model, if present."""
    try:
        from .sudoku.demo import solve_demo
    except ImportError:
        return
    solve_demo(out, seed=seed, quiet=quiet, say=say)


def _train_small(out: Path, *, seed: int, quiet: bool, device: Optional[torch.device],
                 say: Callable[[str], None], steps: int = 1500, n: int = 200) -> int:
    """The fallback: a small unconditional DDSM trained here on 4,000 bundled DHS sequences."""
    from .api import Run, build_network, fit, generate, sequence_summary
    from .data import Record, bundled_path, encode_records, read_fasta, write_fasta
    from .processes import build_process
    from .seeding import make_generator, seeded_global_rng
    from .training import TrainConfig

    train_recs = read_fasta(bundled_path("dhs4/train_small.fasta.gz"))
    valid_recs = read_fasta(bundled_path("dhs4/valid_small.fasta.gz"))
    train_ds = encode_records(train_recs)
    valid_ds = encode_records(valid_recs, train_ds.alphabet)
    reference = [r.seq for r in valid_recs]
    cfg = TrainConfig(steps=steps, batch_size=32, lr=2e-3, warmup_steps=100, eval_every=max(steps // 5, 1),
                      eval_batches=4, checkpoint_every=max(steps // 2, 1), seed=seed, ema_decay=0.995)
    t0 = time.time()
    options = {"hidden": 64, "n_blocks": 6}
    run, summary = fit(train_ds, out / "model", process="jacobi", model="conv", model_options=options,
                       train_config=cfg, valid=valid_ds, device=device,
                       extra_meta={"data_path": "bundled:dhs4/train_small"})
    say(f"trained {steps} steps in {time.time() - t0:.0f} s")
    designs = generate(run, n, steps=100, generator=make_generator(seed + 100), device=device,
                       progress=_progress(quiet, "sample"))
    # the untrained baseline's initial weights follow the seed; the global generator is put back after
    with seeded_global_rng(seed):
        net = build_network(run.process, "conv", 0, options).eval()
    untrained = Run(build_process("jacobi", 4), net, run.config)
    base = generate(untrained, n, steps=100, generator=make_generator(seed + 100), device=device)
    write_fasta(out / "designs.fasta", [Record(f"design_{i}", s, {"seed": str(seed)}) for i, s in enumerate(designs)],
                force=True)
    rows = {"untrained": sequence_summary(base, reference), "DDSM": sequence_summary(designs, reference),
            "real train": sequence_summary([r.seq for r in train_recs[: n * 5]], reference)}
    say(f"{'vs held-out DHS':20s} " + " ".join(f"{k:>11s}" for k in rows))
    for key in ("gc_abs_diff", "kmer3_js", "kmer4_js"):
        say(f"{key:20s} " + " ".join(f"{rows[k][key]:11.4f}" for k in rows))
    return 0
