"""Metrics comparing generated sequences with real ones."""

from .kmers import gc_content, js_distance, kmer_js, kmer_spectrum

__all__ = ["gc_content", "js_distance", "kmer_js", "kmer_spectrum"]
