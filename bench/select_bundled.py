"""Choose a bundled model's snapshot, guidance weight and step count by design quality on valid.fasta.

    python bench/select_bundled.py --name dhs4 --run runs/dhs4 [--last 3] [--guidance 0,1,2,3] \
        [--steps 50,100] [--n-per-class 64] [--ship]

For every snapshot in ``RUN/snapshots`` (the last ``--last`` of them) and every guidance weight and
step count (and ``--intervals``, the public-time window where guidance is applied): design
``--n-per-class`` sequences per class (classifier-free guidance; seed fixed, so
every candidate sees the same noise), then evaluate them against the same number of ``valid.fasta``
sequences per class with the bundled oracle, k-mer spectra, the real-vs-designed discriminator and
diversity. Only train/valid are read; the test splits stay unseen.

Candidates also sweep ``--classifier-guidance`` (the bundled oracle steers); every target-class
rate below is then the independent evaluation oracle's (``resources/oracles/eval``), never the
steering one's.

Choice: the best selection score among the candidates that meet every goal of the bundled-model
issue (target-class rate >= 0.9 x real, 4-mer JS <= 1.3 x real, AUROC <= 0.65, diversity >= 0.9 x
real, nothing memorised), or the best score if none does. Selection score (higher is better):

    oracle_target_frac / real_rate - 0.5 * max(0, kmer4_js / real_js4 - 1) - max(0, disc_auroc - 0.5)
        - 0.5 * max(0, class_auroc - real_class_auroc)

i.e. the target-class rate relative to real sequences', penalised for 4-mer spectra further from
valid than real-vs-real, for discriminability, and for discriminability within each class
(``class_auroc``: the per-class discriminator AUROC averaged over classes). The table and the choice go to
``RUN/selection.json``; ``--ship`` copies the chosen snapshot to
``src/ddsm/resources/models/NAME`` with its sampling defaults (``sampling`` in config.json) and the
run's curve.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
from safetensors.torch import load_file, save_file

from ddsm.api import design, load_run
from ddsm.checkpoint import BOUND_KEY, bound_fields
from ddsm.data import Record, read_sequences
from ddsm.evaluate import evaluate_detailed
from ddsm.seeding import seed_everything

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SETS = {"dhs4": "cell_type", "epd_promoters": "species"}
METRICS = ("oracle_target_frac", "eval_oracle_target_frac", "kmer3_js", "kmer4_js", "kmer5_js", "kmer6_js",
           "disc_auroc", "diversity", "diversity_reference", "nearest_train_identity", "memorised_frac")


def per_class_subset(records: list, key: str, n: int, seed: int) -> list:
    """``n`` records of every class (seeded), in a stable order."""
    rng = np.random.default_rng(seed)
    out = []
    for cls in sorted({r.meta[key] for r in records}):
        rows = [r for r in records if r.meta[key] == cls]
        out += [rows[i] for i in np.sort(rng.choice(len(rows), min(n, len(rows)), replace=False))]
    return out


def parse_interval(text: str):
    """``LO:HI`` -> (lo, hi); ``0:1`` (every step) -> None."""
    lo, hi = (float(v) for v in text.split(":"))
    return None if (lo <= 0.0 and hi >= 1.0) else (lo, hi)


def interval_text(iv) -> str:
    return "0:1" if iv is None else f"{iv[0]:g}:{iv[1]:g}"


def row_of(ev) -> dict:
    """The all-class metrics, plus the per-class discriminator AUROC and 4-mer JS averaged over
    classes (``class_auroc``, ``class_kmer4_js``): guidance can buy the class by exaggerating each
    class's composition, which the pooled spectrum averages away."""
    row = {m: float(ev.table.loc["all", m]) for m in METRICS}
    per_class = ev.table.drop(index="all", errors="ignore")
    for col, name in (("disc_auroc", "class_auroc"), ("kmer4_js", "class_kmer4_js")):
        row[name] = float(per_class[col].astype(float).mean()) if len(per_class) else math.nan
    return row


def rate(m: dict) -> float:
    """The target-class rate judged by the independent evaluation oracle (it never steers, so
    classifier-guided candidates cannot win by fooling their own guide); the bundled oracle's
    where no evaluation oracle is installed."""
    judge = m.get("eval_oracle_target_frac", math.nan)
    return judge if math.isfinite(judge) else m["oracle_target_frac"]


def meets_goals(m: dict, real: dict) -> bool:
    """The issue's goals: target-class rate >= 0.9 x real, 4-mer JS <= 1.3 x real-vs-real, AUROC <= 0.65,
    diversity >= 0.9 x real, no design identical to a training sequence."""
    return (rate(m) >= 0.9 * rate(real) and m["kmer4_js"] <= 1.3 * real["kmer4_js"]
            and m["disc_auroc"] <= 0.65 and m["diversity"] >= 0.9 * real["diversity"] and m["memorised_frac"] == 0.0)


def selection_score(m: dict, real: dict) -> float:
    per_class = m.get("class_auroc", math.nan) - real.get("class_auroc", math.nan)
    return (rate(m) / rate(real)
            - 0.5 * max(0.0, m["kmer4_js"] / real["kmer4_js"] - 1.0) - max(0.0, m["disc_auroc"] - 0.5)
            - (0.5 * max(0.0, per_class) if math.isfinite(per_class) else 0.0))


def sweep_command(args: argparse.Namespace) -> str:
    return "bench/select_bundled.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                                                 if k not in ("ship", "ship_only", "snapshots", "selected_by")) + (
        f" --snapshots {args.snapshots}" if args.snapshots else "")


def ship(args: argparse.Namespace, run_dir: Path, base: dict, rows: list, best: dict, selected_by: str) -> None:
    """Copy the chosen snapshot into the package with its sampling defaults and the sweep."""
    dest = ROOT / "src" / "ddsm" / "resources" / "models" / args.name
    src = run_dir / "snapshots" / best["snapshot"]
    cfg = json.loads((src / "config.json").read_text())
    cfg["sampling"] = {"guidance": best["guidance"], "steps": best["steps"], "precision": best["precision"],
                       **({"classifier_guidance": best["classifier_guidance"]}
                          if best.get("classifier_guidance") else {}),
                       **({"guidance_interval": best["guidance_interval"]} if best.get("guidance_interval") else {}),
                       **({"substeps": best["substeps"]} if best.get("substeps") else {}),
                       **({"grid_focus": best["grid_focus"]} if best.get("grid_focus") else {}),
                       **({"extrapolate": best["extrapolate"]} if best.get("extrapolate") else {}),
                       "selected_by": selected_by}
    dest.mkdir(parents=True, exist_ok=True)
    # re-written with the record of the training config (ddsm.checkpoint.BOUND_KEY), which
    # snapshots of runs started before that record existed lack
    weights = load_file(str(src / "model.safetensors"))
    save_file(weights, str(dest / "model.safetensors"),
              metadata={"format": "pt", "ddsm_format_version": str(cfg["format_version"]),
                        BOUND_KEY: json.dumps(bound_fields(cfg), sort_keys=True)})
    (dest / "config.json").write_text(json.dumps(cfg, indent=1))
    curve = run_dir / "curve.json"
    if curve.exists():
        shutil.copy2(curve, dest / "history.json")
    (dest / "selection.json").write_text(json.dumps({"real": base, "rows": rows, "chosen": best}, indent=1))
    print(f"shipped {src} -> {dest}")


def main() -> None:
    ap = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--name", choices=sorted(SETS), required=True)
    ap.add_argument("--run", required=True, help="run folder of bench/train_bundled.py")
    ap.add_argument("--last", type=int, default=3, help="how many of the latest snapshots to compare")
    ap.add_argument("--snapshots", default="", help="comma-separated snapshot names instead of --last")
    ap.add_argument("--guidance", default="0,1,2,3")
    ap.add_argument("--steps", default="100")
    ap.add_argument("--intervals", default="0:1",
                    help="comma-separated guidance intervals LO:HI in public time (0:1 = every step; see "
                         "ddsm sample --guidance-interval)")
    ap.add_argument("--classifier-guidance", dest="classifier_guidance", default="0",
                    help="comma-separated classifier-guidance weights (the bundled oracle steers; the choice is "
                         "then judged by the independent evaluation oracle)")
    ap.add_argument("--substeps", default="",
                    help="comma-separated SDE sub-steps per network call of a jacobi model (empty: the process's "
                         "default)")
    ap.add_argument("--grid-focus", dest="grid_focus", default="",
                    help="comma-separated fractions of a jacobi model's sampling steps placed by the entropy law "
                         "(empty: the process's default, uniform)")
    ap.add_argument("--extrapolate", default="",
                    help="comma-separated ddsm sample --extrapolate values for a jacobi model (empty: none)")
    ap.add_argument("--precision", default="fp32", help="comma-separated network precisions to compare (fp32, bf16)")
    ap.add_argument("--n-per-class", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ship", action="store_true", help="copy the chosen snapshot into the package")
    ap.add_argument("--selected-by", dest="selected_by", default="",
                    help="with --ship-only: the sweep's command, when selection.json does not record it")
    ap.add_argument("--ship-only", dest="ship_only", action="store_true",
                    help="ship the choice recorded in RUN/selection.json by an earlier run (no new sweep)")
    ap.add_argument("--data-dir", default=str(DATA))
    args = ap.parse_args()
    key, data, run_dir = SETS[args.name], Path(args.data_dir) / args.name, Path(args.run)
    if args.ship_only:
        sel = json.loads((run_dir / "selection.json").read_text())
        ship(args, run_dir, sel["real"], sel["rows"], sel["chosen"],
             sel.get("selected_by") or args.selected_by or "bench/select_bundled.py (sweep in selection.json)")
        return
    train = read_sequences(data / "train.fasta")
    valid = per_class_subset(read_sequences(data / "valid.fasta"), key, args.n_per_class, args.seed)
    taken = {r.id for r in valid}
    real_pool = [r for r in read_sequences(data / "valid.fasta") if r.id not in taken]
    real = per_class_subset(real_pool, key, args.n_per_class, args.seed + 1)
    t0 = time.time()
    base = row_of(evaluate_detailed(real, valid, label_key=key, train=train, oracle="auto", seed=args.seed))
    print(f"{args.name}: real held-out vs valid, {args.n_per_class} per class ({time.time() - t0:.0f} s): "
          + ", ".join(f"{k} {v:.4f}" for k, v in base.items()), flush=True)
    snaps = ([run_dir / "snapshots" / n for n in args.snapshots.split(",")] if args.snapshots
             else sorted((run_dir / "snapshots").glob("step_*"))[-args.last:])
    if not snaps:
        raise SystemExit(f"no snapshots in {run_dir / 'snapshots'}")
    rows = []
    print(f"{'snapshot':>12s} {'w':>4s} {'cg':>4s} {'t-range':>7s} {'steps':>5s} {'sub':>3s} {'grid':>4s} {'ext':>4s} "
          f"{'prec':>4s} "
          f"{'oracle':>7s} {'judge':>7s} "
          f"{'4-mer JS':>8s} {'AUROC':>6s} {'cAUROC':>6s} {'cJS4':>6s} "
          f"{'divers.':>7s} {'nearest':>7s} {'score':>6s} {'s':>5s}")
    for snap in snaps:
        run = load_run(snap)
        subs = [int(n) for n in args.substeps.split(",")] if args.substeps else [None]
        focuses = [float(g) for g in args.grid_focus.split(",")] if args.grid_focus else [None]
        extraps = [float(e) for e in args.extrapolate.split(",")] if args.extrapolate else [0.0]
        for steps, sub, gf, ex, prec, w, cg, iv in [(int(s), n, g, e, p, float(x), float(c), parse_interval(i))
                                                    for s in args.steps.split(",") for n in subs for g in focuses
                                                    for e in extraps
                                                    for p in args.precision.split(",")
                                                    for x in args.guidance.split(",")
                                                    for c in args.classifier_guidance.split(",")
                                                    for i in args.intervals.split(",")]:
            gen = seed_everything(args.seed)
            t0 = time.time()
            recs = []
            for cls in run.classes:
                res = design(run, args.n_per_class, steps=steps, class_name=cls, guidance=w, generator=gen,
                             batch_size=args.n_per_class, precision=prec, classifier_guidance=cg,
                             guidance_interval=iv, substeps=sub, grid_focus=gf, extrapolate=ex)
                recs += [Record(f"{cls}_{i}", s, {key: cls}) for i, s in enumerate(res.sequences) if s]
            t_design = time.time() - t0
            m = row_of(evaluate_detailed(recs, valid, label_key=key, train=train, oracle="auto", seed=args.seed))
            sc = selection_score(m, base)
            rows.append({"snapshot": snap.name, "guidance": w, "classifier_guidance": cg, "steps": steps,
                         "substeps": sub if sub is not None else getattr(run.process, "substeps", None),
                         "grid_focus": gf if gf is not None else getattr(run.process, "grid_focus", None),
                         "extrapolate": ex,
                         "precision": prec, "guidance_interval": None if iv is None else list(iv), **m,
                         "score": sc, "meets_goals": meets_goals(m, base), "design_seconds": t_design})
            print(f"{snap.name:>12s} {w:4g} {cg:4g} {interval_text(iv):>7s} {steps:5d} {str(sub or '-'):>3s} "
                  f"{'-' if gf is None else f'{gf:g}':>4s} {ex:4g} {prec:>4s} "
                  f"{m['oracle_target_frac']:7.3f} "
                  f"{m['eval_oracle_target_frac']:7.3f} {m['kmer4_js']:8.4f} "
                  f"{m['disc_auroc']:6.3f} {m['class_auroc']:6.3f} {m['class_kmer4_js']:6.4f} {m['diversity']:7.3f} "
                  f"{m['nearest_train_identity']:7.3f} {sc:6.3f} "
                  f"{t_design:5.0f}", flush=True)
    # among the candidates that meet every goal the best score; if none does, the best score
    best = max(rows, key=lambda r: (r["meets_goals"], r["score"]))
    print(f"chosen: {best['snapshot']} guidance {best['guidance']:g} classifier guidance "
          f"{best['classifier_guidance']:g} interval {interval_text(best.get('guidance_interval'))} "
          f"steps {best['steps']} substeps {best.get('substeps')} extrapolate {best.get('extrapolate', 0):g} "
          f"{best['precision']} "
          f"(score {best['score']:.3f})")
    (run_dir / "selection.json").write_text(json.dumps({"real": base, "rows": rows, "chosen": best,
                                                       "selected_by": sweep_command(args)}, indent=1))
    if args.ship:
        ship(args, run_dir, base, rows, best, sweep_command(args))
    if not math.isfinite(best["score"]):
        raise SystemExit("no candidate could be scored")


if __name__ == "__main__":
    main()
