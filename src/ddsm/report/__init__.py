"""The evaluation report: one self-contained HTML file (figures embedded as base64 PNG).

:func:`build_report` turns an :class:`ddsm.evaluate.Evaluation` into HTML text: the metric table,
probability sequence logos per class for reference and designed sets, k-mer scatter plots, GC
histograms, motif-enrichment bars and, given a training run folder, its loss curves
(``<run>/history.json``). Nothing in the page loads from outside the file.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from ..errors import DDSMInputError

if TYPE_CHECKING:
    from ..evaluate import Evaluation

logger = logging.getLogger(__name__)

__all__ = ["build_report", "read_history"]

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.help { text-align: left; color: #666; font-size: 12px; }
img { max-width: 100%; display: block; margin: 8px 0 16px 0; }
.note { color: #666; font-size: 13px; }
"""


def read_history(run_dir: Union[str, Path]) -> list[dict[str, Any]]:
    """``<run_dir>/history.json``: a list of ``{step, train_loss, valid_loss, ...}``.

    Raises:
        DDSMInputError: missing or unreadable file, or not a JSON list.
    """
    path = Path(run_dir) / "history.json"
    if not path.is_file():
        raise DDSMInputError(f"--run {run_dir}: no history.json (written by ddsm train)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DDSMInputError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(data, list):
        raise DDSMInputError(f"{path}: expected a JSON list of {{step, train_loss, valid_loss}}")
    return data


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _table_html(evaluation: "Evaluation") -> str:
    from ..evaluate import METRIC_HELP

    df = evaluation.table
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.index)
    rows = []
    for metric in df.columns:
        cells = []
        for c in df.index:
            v = df.loc[c, metric]
            if metric.startswith("n_"):
                cells.append(f"<td>{int(v)}</td>")
            elif v is None or not math.isfinite(float(v)):
                cells.append("<td>&ndash;</td>")
            else:
                cells.append(f"<td>{float(v):.4f}</td>")
        key = "kmer_js" if metric.startswith("kmer") else metric
        rows.append(f"<tr><td>{html.escape(metric)}</td>{''.join(cells)}"
                    f"<td class='help'>{html.escape(METRIC_HELP.get(key, ''))}</td></tr>")
    return (f"<table><tr><th>metric</th>{head}<th class='help'>meaning</th></tr>{''.join(rows)}</table>")


def build_report(
    evaluation: "Evaluation",
    *,
    run_dir: Union[str, Path, None] = None,
    title: str = "ddsm evaluation",
    max_logo_len: int = 60,
) -> str:
    """The whole report as HTML text (write it with ``ddsm.data.atomic_write_text``).

    Args:
        evaluation: from :func:`ddsm.evaluate.evaluate_detailed`.
        run_dir: a training run folder; its ``history.json`` gives the training curves.
        title: page title.
        max_logo_len: logos show the window of this many positions where the reference holds the
            most information (logomaker draws every letter, so long logos are slow and unreadable).
    """
    from . import plots

    history = read_history(run_dir) if run_dir is not None else None
    groups = evaluation.groups
    ks = evaluation.settings.get("ks", [3, 4, 5, 6])
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    s = evaluation.settings
    facts = [f"label key: {s.get('label_key') or 'none'}", f"seed {s.get('seed')}",
             f"max {s.get('max_seqs')} sequences per class for motifs / discriminator / diversity"]
    if evaluation.oracle:
        acc = evaluation.oracle.get("valid_accuracy")
        facts.append(f"oracle {evaluation.oracle['name']}" + (f" (validation accuracy {acc:.3f})" if acc else ""))
    for key in ("designs", "reference", "train"):
        if s.get(key):
            facts.append(f"{key}: {s[key]}")
    parts.append(f"<p class='note'>{html.escape('; '.join(facts))}</p>")
    parts.append("<h2>Metrics</h2>" + _table_html(evaluation))

    all_reference = groups["all"][1] if "all" in groups else next(iter(groups.values()))[1]
    letters = plots.logo_letters([*all_reference, *(s for d, _ in groups.values() for s in d)])
    # only positions that designs and references have (variable-length sets): half of each set
    covered = plots.covered_length([seqs for pair in groups.values() for seqs in pair])
    window = plots.logo_window(all_reference, max_logo_len, letters, stop=covered)
    parts.append(f"<h2>Sequence logos</h2><p class='note'>Per-position letter probabilities, positions "
                 f"{window[0] + 1}&ndash;{window[1]} (the most informative window of the reference, among "
                 f"the {covered} leading positions that at least half of every set reaches).</p>")
    for name, (designed, reference) in groups.items():
        if name == "all" and len(groups) > 1:
            continue  # the classes are shown one by one; their union adds little
        if covered == 0:
            break
        png = plots.logo_png({"reference": reference, "designed": designed}, f"class {name}", window=window,
                             alphabet=letters)
        parts.append(_img(png, f"sequence logo {name}"))

    parts.append("<h2>k-mer frequencies</h2><p class='note'>Each point is one k-mer; "
                 "the diagonal is a perfect match.</p>")
    parts.append(_img(plots.kmer_scatter_png(groups, ks), "k-mer scatter"))

    parts.append("<h2>GC content</h2>")
    parts.append(_img(plots.gc_histogram_png(groups), "GC histograms"))

    if evaluation.motif_rates and evaluation.motifs is not None:
        parts.append("<h2>Motif enrichment</h2><p class='note'>JASPAR motifs with the largest change in "
                     "hits per kb, designed vs reference (orange: more in designs).</p>")
        parts.append(_img(plots.motif_enrichment_png(evaluation.motif_rates, evaluation.motifs.labels()),
                          "motif enrichment"))

    if history is not None:
        parts.append("<h2>Training curves</h2>")
        png = plots.training_curves_png(history)
        parts.append(_img(png, "training curves") if png else
                     "<p class='note'>history.json holds no losses.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
