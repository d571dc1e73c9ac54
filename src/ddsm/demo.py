"""``ddsm demo``: the README's main job on bundled data.

Trains a small DDSM (Jacobi process, dilated CNN) on 4,000 bundled human DHS sequences, samples
designs, and compares them with 1,000 bundled held-out sequences (GC content and k-mer spectra),
next to the samples of the same network before training. Writes everything to one folder.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .errors import DDSMInputError


def run_demo(out: Path, *, steps: int = 1500, seed: int = 0, n: int = 200, force: bool = False,
             quiet: bool = False, device: torch.device | None = None) -> int:
    from .api import Run, build_network, fit, generate, sequence_summary
    from .data import Record, bundled_path, encode_records, read_fasta, write_fasta
    from .processes import build_process
    from .seeding import seed_everything
    from .train import TrainConfig

    if out.exists() and any(out.iterdir()) and not force:
        raise DDSMInputError(f"{out} exists and is not empty; use --force to overwrite or --out elsewhere")
    out.mkdir(parents=True, exist_ok=True)
    train_recs = read_fasta(bundled_path("dhs4/train_small.fasta.gz"))
    valid_recs = read_fasta(bundled_path("dhs4/valid_small.fasta.gz"))
    train_ds = encode_records(train_recs)
    valid_ds = encode_records(valid_recs, train_ds.alphabet)
    reference = [r.seq for r in valid_recs]

    def say(msg: str) -> None:
        print(msg, flush=True)

    say(f"ddsm demo: {len(train_ds)} training and {len(valid_ds)} held-out DHS sequences "
        f"(length {train_ds.length}), seed {seed}")
    seed_everything(seed)
    cfg = TrainConfig(steps=steps, batch_size=32, lr=2e-3, warmup_steps=100, eval_every=max(steps // 5, 1),
                      eval_batches=4, checkpoint_every=max(steps // 2, 1), seed=seed, ema_decay=0.995)
    bar = None
    if not quiet:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc="train", dynamic_ncols=True, file=sys.stderr)

    def on_step(step: int, info: dict) -> None:
        if bar is not None:
            bar.n = step
            bar.set_postfix(loss=f"{info['loss']:.3f}", refresh=True)

    t0 = time.time()
    run, summary = fit(train_ds, out / "model", process="jacobi", model="conv",
                       model_options={"hidden": 64, "n_blocks": 6}, train_config=cfg, valid=valid_ds,
                       device=device, on_step=on_step, extra_meta={"data_path": "bundled:dhs4/train_small"})
    if bar is not None:
        bar.close()
    say(f"trained {steps} steps in {time.time() - t0:.0f} s (final valid loss {summary.get('final_valid_loss', float('nan')):.4f})")

    prog = None
    if not quiet:
        from tqdm import tqdm

        prog = lambda it: tqdm(it, desc="sample", leave=False, file=sys.stderr)  # noqa: E731
    gen = seed_everything(seed + 100)
    t0 = time.time()
    designs = generate(run, n, steps=100, generator=gen, device=device, progress=prog)
    t_sample = time.time() - t0
    # the same network before training, as a floor
    torch.manual_seed(seed)
    untrained = Run(build_process("jacobi", 4), build_network(run.process, "conv", 0, {"hidden": 64, "n_blocks": 6}).eval(),
                    run.config)
    base = generate(untrained, n, steps=100, generator=seed_everything(seed + 100), device=device)
    meta = {"model": "demo", "process": "jacobi", "seed": str(seed), "steps": "100"}
    write_fasta(out / "designs.fasta", [Record(f"design_{i}", s, dict(meta)) for i, s in enumerate(designs)], force=True)
    trained_m = sequence_summary(designs, reference)
    base_m = sequence_summary(base, reference)
    train_m = sequence_summary([r.seq for r in train_recs[:n * 5]], reference)
    say(f"sampled {n} sequences in {t_sample:.1f} s -> {out / 'designs.fasta'}")
    say("")
    say(f"{'metric (vs held-out DHS)':28s} {'untrained':>10s} {'DDSM':>10s} {'real train':>10s}")
    for key, label in [("gc_designed", "mean GC (held-out %.3f)" % trained_m["gc_reference"]),
                       ("gc_abs_diff", "|GC - held-out GC|"), ("kmer3_js", "3-mer JS distance"),
                       ("kmer4_js", "4-mer JS distance")]:
        say(f"{label:28s} {base_m[key]:10.4f} {trained_m[key]:10.4f} {train_m[key]:10.4f}")
    (out / "summary.json").write_text(json.dumps(
        {"seed": seed, "steps": steps, "n": n, "ddsm": trained_m, "untrained": base_m, "real_train": train_m,
         "train_summary": {k: v for k, v in summary.items() if k not in ("history", "ema")}}, indent=1, default=float))
    return 0
