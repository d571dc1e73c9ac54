"""Metrics comparing generated sequences with real ones.

- :mod:`.kmers`: k-mer spectra and counts, Jensen-Shannon distance, GC content and its distance;
- :mod:`.motifs`: JASPAR motifs, vectorised PWM scan, motif-usage correlation;
- :mod:`.discriminator`: k-mer logistic-regression AUROC, real vs designed;
- :mod:`.diversity`: pairwise Hamming diversity, nearest-training-sequence identity (novelty);
- :mod:`.oracle`: the CNN classifier that checks designs hit their target class (imports torch;
  loaded on first use of its names here).

:func:`ddsm.evaluate.evaluate` runs them all per class.
"""

from typing import Any

from .discriminator import auroc, discriminator_auroc, kmer_features
from .diversity import identity_matrix, mean_pairwise_hamming, nearest_identity, novelty_summary
from .kmers import gc_content, gc_distance, js_distance, kmer_counts, kmer_js, kmer_names, kmer_spectrum
from .motifs import MotifSet, load_jaspar, motif_correlation, parse_jaspar, scan_counts

_ORACLE_NAMES = ("Oracle", "OracleCNN", "OracleTrainConfig", "bundled_oracles", "load_oracle", "match_oracle",
                 "train_oracle")

__all__ = [
    "gc_content", "gc_distance", "js_distance", "kmer_counts", "kmer_js", "kmer_names", "kmer_spectrum",
    "MotifSet", "load_jaspar", "motif_correlation", "parse_jaspar", "scan_counts",
    "auroc", "discriminator_auroc", "kmer_features",
    "identity_matrix", "mean_pairwise_hamming", "nearest_identity", "novelty_summary",
    *_ORACLE_NAMES,
]


def __getattr__(name: str) -> Any:
    if name in _ORACLE_NAMES:
        from . import oracle

        return getattr(oracle, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
