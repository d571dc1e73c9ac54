"""Peer comparison: DDSM (process ``jacobi``) against d3-dna 0.1.3 (SEDD score-entropy diffusion).

    OMP_NUM_THREADS=1 python bench/vs_d3dna.py --minutes 10
    OMP_NUM_THREADS=1 python bench/vs_d3dna.py --minutes 5 --n-per-class 100 --out /tmp/vs_d3dna

d3-dna is not a dependency of ddsm. Install it next to a CPU torch without letting pip resolve its
``torch`` requirement (that pulls a CUDA build of several GB):

    pip install --no-deps d3-dna==0.1.3 pytorch-lightning==2.6.6 torchmetrics==1.9.0
    pip install lightning-utilities omegaconf einops h5py

Both models train on dhs4 (``train.fasta``, 200 bp, four ``cell_type`` classes) with backbones of
(nearly) the same parameter count and the same CPU wall-clock time, then draw ``--n-per-class``
designs per class with ``--steps`` sampling steps each. The designs are evaluated by
``ddsm.evaluate`` against ``valid.fasta`` (reference) and ``train.fasta`` (novelty), as in
bench/evaluate_real.py. The real-data row evaluates ``--n-per-class`` held-out sequences per class
the same way, against the rest of ``valid.fasta``: what a perfect generator would reach (its
reference is a little smaller, so its k-mer distances sit a little higher than a perfect one's).

Protocol:
- d3-dna: its DDiT ``TransformerModel`` (``--d3-hidden`` / ``--d3-blocks`` / ``--d3-heads``,
  cond_dim = hidden), uniform graph, geometric noise (sigma 1e-4..20), Euler predictor with the
  final denoising step, trained by its ``D3LightningModule`` (loss, AdamW, linear warm-up, gradient
  clipping, EMA) under a plain Lightning Trainer with ``max_time`` and sampled by its ``D3Sampler``
  from the saved Lightning checkpoint; its own learning-rate schedule (constant after the warm-up).
  Classes enter as its global per-sample signal: a one-hot ``y`` of shape ``(N, n_classes)`` (its
  README: the shape of ``y`` picks the conditioning mode). It has no classifier-free guidance for
  this signal (its ``LabelEmbedder`` is built but unused in 0.1.3's forward pass).
- ddsm: ``ddsm.api.fit`` (process ``jacobi``), backbone ``--ours`` (``conv``: 8 dilated blocks,
  width chosen to match d3-dna's parameter count; ``transformer``: d3-dna's width, depth and
  heads), cosine schedule, label dropout 0.1; designs from ``ddsm.api.generate`` without guidance
  (plain conditional sampling, as for d3-dna).
- shared: batch size, peak learning rate, warm-up steps, EMA decay 0.999, gradient clip 1, no
  dropout, fp32. ddsm trains first for a step count sized by a timing probe to ``--minutes``;
  d3-dna then gets ``max_time`` = the seconds ddsm actually trained, so the budgets match.

Departures from d3-dna's example configs (12 blocks x 768 wide, lr 3e-4, warm-up 2500, EMA 0.9999,
dropout 0.1, bf16/fp16 autocast on a GPU): those are sized for 30M parameters and hundreds of GPU
epochs; in a few CPU minutes the warm-up alone would outlast the run. The precision is set to
``32-true`` because autocast is for GPUs (d3-dna's own score function disables it on CPU). Its
per-step ``tqdm`` bar in the sampler is silenced, and ``torch.set_float32_matmul_precision``, which
importing d3_dna sets to ``"medium"`` for the whole process, is put back so ddsm trains as usual.

Prints: the parameter counts, the training steps and seconds of each model, sampling times, the
per-class evaluation table of each model and of the real data, and the ``all`` row of both side by
side with the real data's, naming for each headline metric the better model (higher oracle
target-class fraction and motif correlation; lower k-mer JS and GC distance; AUROC nearer 0.5).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
import time
import warnings
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ddsm.api import Run, build_network, fit, generate
from ddsm.data import SequenceDataset, encode_records, read_fasta
from ddsm.data.record import Record
from ddsm.evaluate import Evaluation, evaluate_detailed, format_table
from ddsm.processes import build_process
from ddsm.training import TrainConfig

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dhs4"
LABEL_KEY = "cell_type"
D3_VERSION = "0.1.3"
INSTALL = (f"pip install --no-deps d3-dna=={D3_VERSION} pytorch-lightning==2.6.6 torchmetrics==1.9.0 "
           "&& pip install lightning-utilities omegaconf einops h5py")
CONV_BLOCKS = 8
EMA_DECAY = 0.999
#: headline metrics: name -> a score of a value, lower = better
HEADLINE: dict[str, Callable[[float], float]] = {
    "oracle_target_frac": lambda v: -v,
    "kmer3_js": abs, "kmer4_js": abs, "kmer5_js": abs, "kmer6_js": abs,
    "disc_auroc": lambda v: abs(v - 0.5),
    "gc_w1": abs,
    "motif_corr": lambda v: -v,
}


def import_d3() -> ModuleType:
    """Import d3_dna lazily; exit with the install line when it (or a dependency) is missing."""
    before = torch.get_float32_matmul_precision()
    try:
        import d3_dna
    except ImportError as e:
        sys.exit(f"vs_d3dna: d3-dna is not importable ({e.name or e} missing); install it with: {INSTALL}")
    # d3_dna's trainer module sets "medium" at import, which would change ddsm's fp32 matmuls too.
    torch.set_float32_matmul_precision(before)
    if d3_dna.__version__ != D3_VERSION:
        print(f"warning: d3-dna {d3_dna.__version__} is installed; this bench was written against {D3_VERSION}")
    import d3_dna.models.diffusion as diffusion

    diffusion.tqdm = lambda it, **_: it  # the sampler's per-step progress bar would flood the log
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Lightning's advice on loader workers, the skipped validation loop and its own deprecations.
    for message in (".*does not have many workers.*", ".*no `val_dataloader`.*", ".*LeafSpec.*"):
        warnings.filterwarnings("ignore", message=message)
    return d3_dna


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def d3_config(args: argparse.Namespace, n_classes: int, seq_len: int, warmup: int) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.create({
        # num_classes is the DNA alphabet in d3-dna's configs; signal_dim is the label width.
        "dataset": {"name": "dhs4", "sequence_length": seq_len, "num_classes": 4, "signal_dim": n_classes},
        "ngpus": 1,
        "tokens": 4,
        "model": {"name": "small", "type": "ddit", "architecture": "transformer", "hidden_size": args.d3_hidden,
                  "cond_dim": args.d3_hidden, "length": seq_len, "n_blocks": args.d3_blocks,
                  "n_heads": args.d3_heads, "scale_by_sigma": False, "dropout": 0.0, "class_dropout_prob": 0.1},
        "training": {"batch_size": args.batch_size, "accum": 1, "ema": EMA_DECAY, "precision": "32-true"},
        "optim": {"optimizer": "AdamW", "lr": args.lr, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                  "weight_decay": 0.0, "warmup": warmup, "grad_clip": 1.0},
        "graph": {"type": "uniform"},
        "noise": {"type": "geometric", "sigma_min": 1e-4, "sigma_max": 20},
        "sampling": {"steps": args.steps, "predictor": "euler", "noise_removal": True},
    })


def ours_options(args: argparse.Namespace, n_classes: int, target: int) -> dict[str, Any]:
    """Backbone options whose parameter count is closest to ``target`` (d3-dna's)."""
    proc = build_process("jacobi", 4)
    if args.ours == "transformer":
        return {"d_model": args.d3_hidden, "n_layers": args.d3_blocks, "n_heads": args.d3_heads}
    best: Optional[tuple[int, dict[str, Any]]] = None
    for hidden in range(16, 4 * args.d3_hidden + 1, 8):
        opts = {"hidden": hidden, "n_blocks": CONV_BLOCKS}
        gap = abs(n_params(build_network(proc, "conv", n_classes, opts)) - target)
        if best is None or gap < best[0]:
            best = (gap, opts)
    assert best is not None
    return best[1]


def train_ours(train: SequenceDataset, args: argparse.Namespace, options: dict[str, Any],
               warmup_for: Callable[[int], int]) -> tuple[Run, int, float]:
    """Size the step count by a timing probe (as bench/train_bundled.py), then train; returns the run
    (EMA weights), the steps and the seconds of the training loop."""
    probe = TrainConfig(steps=6, batch_size=args.batch_size, warmup_steps=1, eval_every=0, checkpoint_every=0,
                        log_every=0, seed=args.seed)
    subset = train.subset(range(min(4096, len(train))))
    log = logging.getLogger("ddsm.training")
    level = log.level
    log.setLevel(logging.WARNING)  # the probes' own step lines are noise
    fit(subset, None, model=args.ours, model_options=options, train_config=probe)  # warm-up: first calls are slow
    _, summary = fit(subset, None, model=args.ours, model_options=options, train_config=probe)
    log.setLevel(level)
    per_step = summary["seconds"] / probe.steps
    steps = max(50, int(args.minutes * 60 / per_step))
    print(f"ddsm: probe {per_step:.3f} s/step -> {steps} steps", flush=True)
    cfg = TrainConfig(steps=steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=warmup_for(steps),
                      eval_every=0, checkpoint_every=0, log_every=max(steps // 10, 1), seed=args.seed,
                      schedule="cosine", ema_decay=EMA_DECAY, label_dropout=0.1)
    run, summary = fit(train, None, model=args.ours, model_options=options, train_config=cfg)
    return run, int(summary["step"]), float(summary["seconds"])


def train_d3(cfg: Any, train: SequenceDataset, seconds: float, seed: int, ckpt: Path) -> tuple[int, float]:
    """d3-dna's LightningModule under a time-limited Lightning Trainer; saves a Lightning checkpoint."""
    import pytorch_lightning as pl
    from d3_dna import D3LightningModule
    from torch.utils.data import DataLoader, TensorDataset

    assert train.labels is not None
    x = torch.from_numpy(train.tokens).long()
    y = F.one_hot(torch.from_numpy(train.labels).long(), len(train.classes)).float()
    # num_workers=0: on two cores loader processes would compete with the training thread.
    loader = DataLoader(TensorDataset(x, y), batch_size=cfg.training.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed), drop_last=True)
    torch.manual_seed(seed)
    module = D3LightningModule(cfg)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=-1, max_time=timedelta(seconds=seconds),
                         precision=cfg.training.precision, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0)
    t0 = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    elapsed = time.perf_counter() - t0
    trainer.save_checkpoint(str(ckpt))
    return int(trainer.global_step), elapsed


def sample_d3(cfg: Any, ckpt: Path, classes: list[str], args: argparse.Namespace, letters: str) -> list[Record]:
    from d3_dna import D3Sampler
    from d3_dna.models import TransformerModel

    sampler = D3Sampler(cfg)
    sampler.load(str(ckpt), TransformerModel(cfg), device="cpu")  # applies the EMA weights
    names = [c for c in classes for _ in range(args.n_per_class)]
    labels = F.one_hot(torch.tensor([classes.index(c) for c in names]), len(classes)).float()
    torch.manual_seed(args.seed + 1)
    tokens = sampler.generate_batched(len(names), labels=labels, batch_size=args.sample_batch, steps=args.steps)
    return [Record(f"d3dna_{i}", "".join(letters[t] for t in row), {LABEL_KEY: c})
            for i, (row, c) in enumerate(zip(tokens.tolist(), names))]


def sample_ours(run: Run, classes: list[str], args: argparse.Namespace) -> list[Record]:
    gen = torch.Generator().manual_seed(args.seed + 1)
    out: list[Record] = []
    for c in classes:
        seqs = generate(run, args.n_per_class, steps=args.steps, batch_size=args.sample_batch, class_name=c,
                        generator=gen)
        out.extend(Record(f"ddsm_{len(out) + i}", s, {LABEL_KEY: c}) for i, s in enumerate(seqs))
    return out


def split_real(valid: list[Record], classes: list[str], n: int, seed: int) -> tuple[list[Record], list[Record]]:
    """Up to ``n`` held-out sequences per class (the real-data row, sized like a design set) and the
    rest of ``valid``, which is their reference: disjoint, and nearly as large as the designs' one."""
    rng = np.random.default_rng(seed)
    picked: set[int] = set()
    for c in classes:
        pool = [i for i, r in enumerate(valid) if r.meta.get(LABEL_KEY) == c]
        picked.update(int(i) for i in rng.choice(pool, min(n, len(pool) - 1), replace=False))
    return [valid[i] for i in sorted(picked)], [r for i, r in enumerate(valid) if i not in picked]


def fmt(v: Any) -> str:
    if isinstance(v, (int, np.integer)):
        return f"{int(v)}"
    return "-" if v is None or not math.isfinite(float(v)) else f"{float(v):.4f}"


def side_by_side(evals: dict[str, Evaluation], real: Evaluation) -> str:
    names = list(evals)
    lines = [f"{'metric':<24}" + "".join(f"  {n:>10}" for n in names) + f"  {'real':>10}  better"]
    for col in real.table.columns:
        vals = [evals[n].table.loc["all", col] for n in names]
        row = f"{col:<24}" + "".join(f"  {fmt(v):>10}" for v in vals) + f"  {fmt(real.table.loc['all', col]):>10}"
        if col in HEADLINE and all(math.isfinite(float(v)) for v in vals):
            scores = [HEADLINE[col](float(v)) for v in vals]
            best = min(scores)
            winners = [n for n, s in zip(names, scores) if s == best]
            row += "  " + ("tie" if len(winners) > 1 else winners[0])
        lines.append(row)
    return "\n".join(lines)


def write_fasta(path: Path, records: list[Record]) -> None:
    path.write_text("".join(f">{r.id} {LABEL_KEY}={r.meta[LABEL_KEY]}\n{r.seq}\n" for r in records))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="training wall-clock per model")
    ap.add_argument("--n-per-class", type=int, default=250, help="designs per class and model")
    ap.add_argument("--steps", type=int, default=100, help="sampling steps (network calls) per design, both models")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=str(DATA), help="folder with train.fasta and valid.fasta")
    ap.add_argument("--ours", choices=("conv", "transformer"), default="conv", help="ddsm backbone")
    ap.add_argument("--d3-hidden", type=int, default=64)
    ap.add_argument("--d3-blocks", type=int, default=4)
    ap.add_argument("--d3-heads", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--sample-batch", type=int, default=100)
    ap.add_argument("--max-seqs", type=int, default=1000, help="per-class subsample for motifs / discriminator")
    ap.add_argument("--out", default=None, help="folder to write the designs (FASTA) of both models")
    args = ap.parse_args()
    import_d3()  # fail fast, before any training
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("ddsm.training").setLevel(logging.INFO)

    data = Path(args.data)
    train_recs, valid_recs = read_fasta(data / "train.fasta"), read_fasta(data / "valid.fasta")
    train = encode_records(train_recs, label_key=LABEL_KEY)
    classes, letters = list(train.classes), train.alphabet.letters
    if letters != "ACGT":
        sys.exit(f"vs_d3dna: expected the DNA alphabet ACGT, got {letters!r}")
    print(f"{data.name}: {len(train)} train / {len(valid_recs)} valid, length {train.length}, classes {classes}; "
          f"torch threads {torch.get_num_threads()}", flush=True)

    def warmup_for(steps: int) -> int:
        return max(1, min(200, steps // 10))

    # Parameter counts: d3-dna's model is fixed by its options; ours is matched to it.
    from d3_dna.models import TransformerModel

    probe_cfg = d3_config(args, len(classes), train.length, warmup=1)
    d3_n = n_params(TransformerModel(probe_cfg))
    options = ours_options(args, len(classes), d3_n)
    ours_n = n_params(build_network(build_process("jacobi", 4), args.ours, len(classes), options))
    print(f"parameters: d3-dna transformer (hidden {args.d3_hidden}, {args.d3_blocks} blocks, {args.d3_heads} heads) "
          f"{d3_n:,}; ddsm {args.ours} {options} {ours_n:,} ({ours_n / d3_n:.2f}x)", flush=True)
    if abs(ours_n / d3_n - 1) > 0.2:
        print("warning: parameter counts differ by more than 20%", flush=True)

    run, ours_steps, ours_s = train_ours(train, args, options, warmup_for)
    print(f"ddsm: trained {ours_steps} steps in {ours_s:.0f} s", flush=True)
    warmup = warmup_for(ours_steps)  # the same warm-up length for d3-dna
    cfg = d3_config(args, len(classes), train.length, warmup)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "d3.ckpt"
        d3_steps, d3_s = train_d3(cfg, train, ours_s, args.seed, ckpt)
        print(f"d3-dna: trained {d3_steps} steps in {d3_s:.0f} s (max_time {ours_s:.0f} s, warm-up {warmup}; "
              f"torch threads {torch.get_num_threads()})", flush=True)
        t0 = time.perf_counter()
        d3_designs = sample_d3(cfg, ckpt, classes, args, letters)
        d3_sample_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours_designs = sample_ours(run, classes, args)
    ours_sample_s = time.perf_counter() - t0
    print(f"sampling {args.n_per_class} per class x {len(classes)} classes, {args.steps} steps: "
          f"ddsm {ours_sample_s:.0f} s, d3-dna {d3_sample_s:.0f} s", flush=True)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_fasta(out / "designs_ddsm.fasta", ours_designs)
        write_fasta(out / "designs_d3dna.fasta", d3_designs)
        print(f"designs written to {out}")

    def evaluate(designs: list[Record], reference: list[Record]) -> Evaluation:
        return evaluate_detailed(designs, reference, label_key=LABEL_KEY, train=train_recs, oracle="auto",
                                 max_seqs=args.max_seqs, seed=args.seed)

    evals = {"ddsm": evaluate(ours_designs, valid_recs), "d3-dna": evaluate(d3_designs, valid_recs)}
    real_designs, real_reference = split_real(valid_recs, classes, args.n_per_class, args.seed)
    real = evaluate(real_designs, real_reference)
    for name, ev in evals.items():
        print(f"\n== {name}: designs vs {data.name}/valid.fasta")
        print(format_table(ev.table))
    print(f"\n== real data: {len(real_designs)} valid.fasta sequences vs the other {len(real_reference)}")
    print(format_table(real.table))
    oracle = evals["ddsm"].oracle
    if oracle:
        print(f"oracle: {oracle['name']} (validation accuracy {fmt(oracle['valid_accuracy'])})")
    print(f"\n== all classes, conditional generation, equal budget ({ours_s:.0f} s training each; "
          f"ddsm {ours_steps} steps, d3-dna {d3_steps} steps; {ours_n:,} vs {d3_n:,} parameters)")
    print(side_by_side(evals, real))


if __name__ == "__main__":
    main()
