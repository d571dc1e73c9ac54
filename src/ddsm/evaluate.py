"""Evaluate designed sequences against real ones, per class: the Python API behind ``ddsm evaluate``
(whose command line is ``ddsm evaluate``, in the ``cli`` package).

Metrics (one row per class, plus ``all``; ``nan`` where a metric does not apply):

==========================  =========================================================================
``n_designed``              designs in the class
``n_reference``             reference sequences in the class
``kmer{k}_js``              Jensen-Shannon distance (base 2, [0, 1]) of the k-mer spectra, k = 3..6
``gc_w1``                   Wasserstein-1 distance between the GC-content distributions
``gc_designed``             mean GC content of the designs (``gc_reference``: of the reference)
``motif_corr``              Pearson correlation, across JASPAR motifs, of hits per kb (designed vs
                            reference); 1 = same motif usage
``disc_auroc``              cross-validated AUROC of a k-mer (k = 1..4) logistic regression telling
                            designs from reference sequences; 0.5 = indistinguishable
``oracle_target_frac``      fraction of designs that the oracle CNN assigns to their target class
``diversity``               mean pairwise Hamming distance / length within the designs
                            (``diversity_reference``: within the reference)
``nearest_train_identity``  mean over designs of the highest identity to any training sequence
                            (needs ``train``)
``memorised_frac``          fraction of designs with such an identity above 0.9
==========================  =========================================================================

Classes come from the ``label_key`` header value (``>id cell_type=K562``); for designs, the ``class``
value written by ``ddsm sample --class`` is used when ``label_key`` is absent. The ``all`` row
compares every design with the reference sequences of the classes present among the designs. Large
sets are subsampled (``max_seqs`` per class, seeded) for the motif scan, the discriminator and
diversity; k-mer, GC, oracle and novelty use every sequence.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union

import numpy as np

from .data.record import Record
from .errors import DDSMInputError

if TYPE_CHECKING:  # pandas and torch are imported when the evaluation runs, not with ddsm
    import pandas as pd

    from .metrics.motifs import MotifSet
    from .metrics.oracle import Oracle

logger = logging.getLogger(__name__)

SeqsLike = Union[Sequence[Record], Sequence[str]]

ALL = "all"
KMER_KS = (3, 4, 5, 6)
#: header key written by ``ddsm sample --class``; the designs' label when ``label_key`` is missing
SAMPLE_CLASS_KEY = "class"
MEMORISED_AT = 0.9


def metric_columns(ks: Sequence[int] = KMER_KS) -> list[str]:
    """Column order of the result table."""
    return (["n_designed", "n_reference"] + [f"kmer{k}_js" for k in ks]
            + ["kmer3_corr", "gc_w1", "gc_designed", "gc_reference", "motif_corr", "disc_auroc", "oracle_target_frac",
               "eval_oracle_target_frac",
               "diversity", "diversity_reference", "nearest_train_identity", "memorised_frac"])


#: short explanations, for the printed table, the JSON output and the HTML report
METRIC_HELP = {
    "n_designed": "designed sequences",
    "n_reference": "reference sequences",
    "kmer_js": "Jensen-Shannon distance of k-mer spectra (0 = same)",
    "gc_w1": "Wasserstein-1 distance of GC-content distributions (0 = same)",
    "gc_designed": "mean GC content, designs",
    "gc_reference": "mean GC content, reference",
    "motif_corr": "Pearson r of JASPAR motif hits per kb across motifs (1 = same usage)",
    "disc_auroc": "k-mer logistic regression AUROC, designed vs reference (0.5 = indistinguishable)",
    "oracle_target_frac": "fraction of designs the oracle CNN assigns to their target class",
    "eval_oracle_target_frac": "the same by the independent evaluation oracle (other architecture, seed and "
                               "split; never used for steering): a gap to oracle_target_frac flags reward hacking",
    "kmer3_corr": "Pearson r of 3-mer frequencies, designs vs reference (1 = same)",
    "diversity": "mean pairwise Hamming distance / length, designs",
    "model_bits_designed": "bits per token of the designs under the pretrained model (--likelihood-model)",
    "model_bits_reference": "the same for the reference sequences",
    "diversity_reference": "mean pairwise Hamming distance / length, reference",
    "nearest_train_identity": "mean highest identity of a design to any training sequence",
    "memorised_frac": f"fraction of designs with identity > {MEMORISED_AT} to a training sequence",
}


@dataclass
class Evaluation:
    """Everything an evaluation computed: the table plus what the report draws.

    Attributes:
        table: rows = classes then ``all``; columns = :func:`metric_columns`.
        groups: class -> (designed sequences, reference sequences), ``all`` included.
        motif_rates: class -> (designed, reference) hits per kb, ``(M,)`` each (when scanned).
        motifs: the motif set scanned (None when motifs were off).
        oracle: name and validation accuracy of the oracle used (None when none).
        settings: options of the run (for the JSON output).
    """

    table: "pd.DataFrame"
    groups: dict[str, tuple[list[str], list[str]]]
    motif_rates: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    motifs: Optional["MotifSet"] = None
    oracle: Optional[dict[str, Any]] = None
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary: settings, oracle and ``metrics[class][column]`` (NaN -> null)."""

        def clean(v: Any) -> Any:
            if isinstance(v, (float, np.floating)):
                return None if not math.isfinite(float(v)) else float(v)
            if isinstance(v, np.integer):
                return int(v)
            return v

        metrics = {str(row): {col: clean(val) for col, val in self.table.loc[row].items()}
                   for row in self.table.index}
        return {"settings": self.settings, "oracle": self.oracle, "metrics": metrics,
                "help": METRIC_HELP}


# --------------------------------------------------------------------------------- input handling
def _as_records(items: Optional[SeqsLike], what: str) -> list[Record]:
    if items is None:
        return []
    out = []
    for i, item in enumerate(items):
        # DNA metrics ignore case (soft-masked bases are ordinary bases)
        if isinstance(item, Record):
            out.append(item if item.seq.isupper() else Record(item.id, item.seq.upper(), item.meta, item.description))
        elif isinstance(item, str):
            out.append(Record(id=f"{what}_{i}", seq=item.upper()))
        else:
            raise DDSMInputError(f"{what}: item {i} is a {type(item).__name__}, expected a Record or str")
    return out


def _labels(records: list[Record], key: str, what: str, *, allow_class: bool) -> list[str]:
    labels = []
    for r in records:
        value = r.meta.get(key)
        if value is None and allow_class:
            value = r.meta.get(SAMPLE_CLASS_KEY)
        if value is None:
            also = f" (nor {SAMPLE_CLASS_KEY}=...)" if allow_class else ""
            raise DDSMInputError(f"{what}: record {r.id!r} has no {key}=... in its header{also}")
        labels.append(value)
    return labels


def _check_dna(seqs: list[str], what: str) -> None:
    used: set[str] = set()
    for s in seqs:
        used.update(s)
    other = sorted(used - set("ACGTN"))
    if other:
        raise DDSMInputError(f"{what}: letters {''.join(other[:10])!r} are not DNA (A, C, G, T, N); "
                             "ddsm evaluate compares DNA sequences")


def _subsample(index: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if len(index) <= n:
        return index
    return np.sort(rng.choice(index, n, replace=False))


def _resolve_oracle(oracle: Any, classes: list[str], device) -> Optional["Oracle"]:
    from .metrics.oracle import Oracle, load_oracle, match_oracle

    if isinstance(oracle, Oracle):
        return oracle
    if oracle is False or (isinstance(oracle, str) and oracle.lower() == "none"):
        return None
    if oracle is None or (isinstance(oracle, str) and oracle.lower() == "auto"):
        name = match_oracle(classes) if classes else None
        if name is None:
            if classes:
                logger.info("no bundled oracle knows the classes %s; oracle metric skipped", classes)
            return None
        return load_oracle(name, device=device)
    return load_oracle(oracle, device=device)


# ------------------------------------------------------------------------------------- evaluation
def evaluate_detailed(
    designed: SeqsLike,
    reference: SeqsLike,
    *,
    label_key: Optional[str] = None,
    train: Optional[SeqsLike] = None,
    oracle: Any = None,
    motifs: Union["MotifSet", bool, None] = True,
    ks: Sequence[int] = KMER_KS,
    max_seqs: int = 1000,
    seed: int = 0,
    device=None,
    likelihood: Optional[Callable[[list[str]], np.ndarray]] = None,
) -> Evaluation:
    """Compute every metric per class; see the module docstring for the columns.

    Args:
        designed: designed sequences (``Record`` s, or plain strings when there are no classes).
        reference: real sequences to compare with (usually held-out data).
        label_key: header key of the class labels (``cell_type``); None = one ``all`` row.
        train: the model's training sequences, for novelty / memorisation (optional).
        oracle: ``None``/``"auto"`` = the bundled oracle whose classes cover the designs' classes
            (if any), ``"none"``/False = skip, a bundled name, an oracle folder, or an ``Oracle``.
        motifs: True = bundled JASPAR 2024 CORE vertebrates, a ``MotifSet``, or False/None = skip.
        ks: k-mer sizes for the Jensen-Shannon distances.
        max_seqs: per class and set, the most sequences used by the motif scan, the discriminator
            and diversity (a seeded random subsample).
        seed: for every subsample and the cross-validation folds.
        device: torch device for the oracle, the motif scan and novelty (default CPU).
        likelihood: ``fn(sequences) -> bits per token (N,)`` of a pretrained model (e.g.
            :func:`ddsm.api.score` of the model that designed them); adds the columns
            ``model_bits_designed`` / ``model_bits_reference`` (means over the per-class subsamples),
            so that steering which leaves the model's distribution shows as a rise in bits.

    Raises:
        DDSMInputError: empty sets, missing labels, a design class absent from the reference, an
            unknown oracle.
    """
    import pandas as pd

    from .metrics.discriminator import discriminator_auroc
    from .metrics.diversity import mean_pairwise_hamming, nearest_identity
    from .metrics.kmers import gc_content, gc_distance, js_distance, kmer_spectrum
    from .metrics.motifs import hit_rates, load_jaspar, rate_correlation, scan_counts

    des = _as_records(designed, "designs")
    ref = _as_records(reference, "reference")
    tr = _as_records(train, "train")
    if not des:
        raise DDSMInputError("no designed sequences to evaluate")
    if not ref:
        raise DDSMInputError("no reference sequences to compare with")
    if max_seqs < 2:
        raise DDSMInputError(f"max_seqs must be at least 2, got {max_seqs}")
    d_seqs = [r.seq for r in des]
    r_seqs = [r.seq for r in ref]
    _check_dna(d_seqs, "designs")
    _check_dna(r_seqs, "reference")

    # ---- groups: class -> indices into designs / reference
    if label_key:
        d_lab = np.array(_labels(des, label_key, "designs", allow_class=True), dtype=object)
        r_lab = np.array(_labels(ref, label_key, "reference", allow_class=False), dtype=object)
        classes = sorted(set(d_lab.tolist()))
        missing = [c for c in classes if c not in set(r_lab.tolist())]
        if missing:
            raise DDSMInputError(f"no reference sequence has {label_key}= one of the design classes {missing} "
                                 f"(reference classes: {sorted(set(r_lab.tolist()))})")
        d_idx = {c: np.flatnonzero(d_lab == c) for c in classes}
        r_idx = {c: np.flatnonzero(r_lab == c) for c in classes}
        d_idx[ALL] = np.arange(len(des))
        r_idx[ALL] = np.flatnonzero(np.isin(r_lab, classes))
    else:
        d_lab = None
        classes = []
        d_idx = {ALL: np.arange(len(des))}
        r_idx = {ALL: np.arange(len(ref))}
    rows = [*classes, ALL]
    # Per-class subsamples; the "all" subsample is their union (so the scan runs once per sequence).
    # The same seed for both sets: identical sets get identical subsamples.
    d_rng, r_rng = np.random.default_rng(seed), np.random.default_rng(seed)
    d_sub = {c: _subsample(d_idx[c], max_seqs, d_rng) for c in rows if c != ALL or not classes}
    r_sub = {c: _subsample(r_idx[c], max_seqs, r_rng) for c in rows if c != ALL or not classes}
    if classes:
        d_sub[ALL] = np.concatenate([d_sub[c] for c in classes])
        r_sub[ALL] = np.concatenate([r_sub[c] for c in classes])

    table: dict[str, dict[str, float]] = {c: {} for c in rows}
    t0 = time.time()
    for c in rows:
        dc = [d_seqs[i] for i in d_idx[c]]
        rc = [r_seqs[i] for i in r_idx[c]]
        row = table[c]
        row["n_designed"], row["n_reference"] = len(dc), len(rc)
        spectra = {k: (kmer_spectrum(dc, k), kmer_spectrum(rc, k)) for k in {*ks, 3}}  # 3: kmer3_corr
        for k in ks:
            row[f"kmer{k}_js"] = js_distance(*spectra[k])
        a, b = spectra[3]
        row["kmer3_corr"] = (float(np.corrcoef(a, b)[0, 1]) if dc and rc and a.std() > 0 and b.std() > 0
                             else float("nan"))
        row["gc_w1"] = gc_distance(dc, rc)
        row["gc_designed"] = float(np.nanmean(gc_content(dc))) if dc else float("nan")
        row["gc_reference"] = float(np.nanmean(gc_content(rc))) if rc else float("nan")
    logger.info("k-mer and GC metrics: %.1f s", time.time() - t0)

    # ---- motifs: one scan of each subsampled sequence, rates per class from the rows
    motif_set = None
    motif_rates: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if motifs is not None and motifs is not False:
        t0 = time.time()
        motif_set = load_jaspar() if motifs is True else motifs
        d_all, r_all = d_sub[ALL], r_sub[ALL]
        d_counts = scan_counts([d_seqs[i] for i in d_all], motif_set, device=device)
        r_counts = scan_counts([r_seqs[i] for i in r_all], motif_set, device=device)
        d_pos = {int(i): j for j, i in enumerate(d_all)}
        r_pos = {int(i): j for j, i in enumerate(r_all)}
        for c in rows:
            dj = [d_pos[int(i)] for i in d_sub[c]]
            rj = [r_pos[int(i)] for i in r_sub[c]]
            a = hit_rates(d_counts[dj], sum(len(d_seqs[i]) for i in d_sub[c]))
            b = hit_rates(r_counts[rj], sum(len(r_seqs[i]) for i in r_sub[c]))
            motif_rates[c] = (a, b)
            table[c]["motif_corr"] = rate_correlation(a, b)
        logger.info("motif scan (%d motifs, %d + %d sequences): %.1f s", len(motif_set), len(d_all), len(r_all),
                    time.time() - t0)
    else:
        for c in rows:
            table[c]["motif_corr"] = float("nan")

    # ---- discriminator and diversity on the subsamples
    t0 = time.time()
    for c in rows:
        ds = [d_seqs[i] for i in d_sub[c]]
        rs = [r_seqs[i] for i in r_sub[c]]
        table[c]["disc_auroc"] = discriminator_auroc(ds, rs, max_per_set=max_seqs * max(1, len(classes)),
                                                     seed=seed)
        table[c]["diversity"] = mean_pairwise_hamming(ds, max_n=max_seqs, seed=seed)
        table[c]["diversity_reference"] = mean_pairwise_hamming(rs, max_n=max_seqs, seed=seed)
    logger.info("discriminator and diversity: %.1f s", time.time() - t0)

    # ---- oracle
    oracle_model = _resolve_oracle(oracle, classes, device)
    oracle_info = None
    if oracle_model is not None:
        t0 = time.time()
        unknown = [c for c in classes if c not in oracle_model.classes]
        if unknown:
            raise DDSMInputError(f"oracle {oracle_model.name!r} knows classes {oracle_model.classes}, "
                                 f"not {unknown}")
        lengths = {len(s) for s in d_seqs}
        if lengths != {oracle_model.seq_len}:
            logger.warning("oracle %s was trained on length %d; designs have lengths %s (centre crop / pad)",
                           oracle_model.name, oracle_model.seq_len, sorted(lengths)[:5])
        pred = np.array(oracle_model.predict(d_seqs), dtype=object)
        for c in rows:
            if d_lab is None:
                table[c]["oracle_target_frac"] = float("nan")
            else:
                idx = d_idx[c]
                table[c]["oracle_target_frac"] = float(np.mean(pred[idx] == d_lab[idx])) if len(idx) else float("nan")
        oracle_info = {"name": oracle_model.name, "classes": oracle_model.classes,
                       "valid_accuracy": oracle_model.info.get("metrics", {}).get("valid_accuracy")}
        logger.info("oracle %s: %.1f s", oracle_model.name, time.time() - t0)
    else:
        for c in rows:
            table[c]["oracle_target_frac"] = float("nan")

    # ---- the independent evaluation oracle (never steers; bundled under resources/oracles/eval)
    from .metrics.oracle import load_eval_oracle

    judge = load_eval_oracle(oracle_model.name, device=device) if oracle_model is not None else None
    for c in rows:
        table[c]["eval_oracle_target_frac"] = float("nan")
    if judge is not None and d_lab is not None and set(classes) <= set(judge.classes):
        pred = np.array(judge.predict(d_seqs), dtype=object)
        for c in rows:
            idx = d_idx[c]
            table[c]["eval_oracle_target_frac"] = float(np.mean(pred[idx] == d_lab[idx])) if len(idx) else float("nan")
        oracle_info = {**(oracle_info or {}), "eval_oracle": judge.name,
                       "eval_valid_accuracy": judge.info.get("metrics", {}).get("valid_accuracy")}

    # ---- novelty against the training set (every design, whole training set)
    if tr:
        t0 = time.time()
        best = nearest_identity(d_seqs, [r.seq for r in tr], device=device)
        for c in rows:
            b = best[d_idx[c]]
            table[c]["nearest_train_identity"] = float(np.mean(b)) if b.size else float("nan")
            table[c]["memorised_frac"] = float(np.mean(b > MEMORISED_AT)) if b.size else float("nan")
        logger.info("novelty against %d training sequences: %.1f s", len(tr), time.time() - t0)
    else:
        for c in rows:
            table[c]["nearest_train_identity"] = table[c]["memorised_frac"] = float("nan")

    columns = metric_columns(ks)
    if likelihood is not None:
        t0 = time.time()
        d_all, r_all = sorted(set(int(i) for i in d_sub[ALL])), sorted(set(int(i) for i in r_sub[ALL]))
        d_bits = dict(zip(d_all, np.asarray(likelihood([d_seqs[i] for i in d_all]), dtype=float)))
        r_bits = dict(zip(r_all, np.asarray(likelihood([r_seqs[i] for i in r_all]), dtype=float)))
        for c in rows:
            table[c]["model_bits_designed"] = (float(np.mean([d_bits[int(i)] for i in d_sub[c]]))
                                               if len(d_sub[c]) else float("nan"))
            table[c]["model_bits_reference"] = (float(np.mean([r_bits[int(i)] for i in r_sub[c]]))
                                                if len(r_sub[c]) else float("nan"))
        columns += ["model_bits_designed", "model_bits_reference"]
        logger.info("likelihood of %d + %d sequences: %.1f s", len(d_all), len(r_all), time.time() - t0)
    df = pd.DataFrame.from_dict(table, orient="index")[columns]
    df.index.name = "class"
    for col in ("n_designed", "n_reference"):
        df[col] = df[col].astype(int)
    groups = {c: ([d_seqs[i] for i in d_idx[c]], [r_seqs[i] for i in r_idx[c]]) for c in rows}
    settings = {"label_key": label_key, "ks": list(ks), "max_seqs": max_seqs, "seed": seed,
                "motifs": (len(motif_set) if motif_set is not None else None), "n_train": len(tr),
                "memorised_at": MEMORISED_AT}
    return Evaluation(table=df, groups=groups, motif_rates=motif_rates, motifs=motif_set, oracle=oracle_info,
                      settings=settings)


def evaluate(
    designed: SeqsLike,
    reference: SeqsLike,
    *,
    label_key: Optional[str] = None,
    train: Optional[SeqsLike] = None,
    oracle: Any = None,
    **options: Any,
) -> "pd.DataFrame":
    """Metrics of designed sequences against reference sequences, one row per class plus ``all``.

    Same arguments as :func:`evaluate_detailed` (``motifs``, ``ks``, ``max_seqs``, ``seed``,
    ``device`` as keywords); returns only the table (a ``pandas.DataFrame``, index ``class``).
    """
    return evaluate_detailed(designed, reference, label_key=label_key, train=train, oracle=oracle,
                             **options).table


# ------------------------------------------------------------------------------------------ table
def format_table(df: "pd.DataFrame") -> str:
    """Plain-text table with metrics as rows and classes as columns (fits a terminal)."""
    cols = [str(c) for c in df.index]
    width = max([len(c) for c in cols] + [8])
    name_w = max(len(str(m)) for m in df.columns)
    lines = [f"{'metric':<{name_w}}  " + "  ".join(f"{c:>{width}}" for c in cols)]
    for metric in df.columns:
        cells = []
        for c in df.index:
            v = df.loc[c, metric]
            if isinstance(v, (int, np.integer)):
                cells.append(f"{int(v):>{width}d}")
            elif v is None or not math.isfinite(float(v)):
                cells.append(f"{'-':>{width}}")
            else:
                cells.append(f"{float(v):>{width}.4f}")
        lines.append(f"{metric:<{name_w}}  " + "  ".join(cells))
    return "\n".join(lines)
