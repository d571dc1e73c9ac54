"""Sequences in and out: alphabets, FASTA/TSV readers and writers, encoding, shuffles, bundled data.

Everything here turns user files into clean arrays (or back), and reports bad input as a one-line
:class:`ddsm.errors.DDSMInputError`.
"""

from ddsm.data.alphabet import (
    DNA,
    NAMED_ALPHABETS,
    PROTEIN,
    RNA,
    Alphabet,
    describe_inference,
    get_alphabet,
    infer_alphabet,
)
from ddsm.data.bundled import bundled_path, list_bundled
from ddsm.data.dataset import (
    UNKNOWN_MODES,
    SequenceDataset,
    data_hash,
    encode_records,
    split,
)
from ddsm.data.fasta import format_fasta, parse_fasta, read_fasta, write_fasta
from ddsm.data.io import atomic_write_bytes, atomic_write_text, read_text
from ddsm.data.record import Record
from ddsm.data.sequences import labelled_specs, read_labelled, read_sequences
from ddsm.data.shuffle import dinucleotide_shuffle
from ddsm.data.table import parse_table, read_table, write_tsv
from ddsm.data.track import as_track_array, dataset_track, read_track

__all__ = [
    "Alphabet",
    "DNA",
    "RNA",
    "PROTEIN",
    "NAMED_ALPHABETS",
    "get_alphabet",
    "describe_inference",
    "infer_alphabet",
    "Record",
    "read_fasta",
    "parse_fasta",
    "write_fasta",
    "format_fasta",
    "read_table",
    "parse_table",
    "write_tsv",
    "labelled_specs",
    "read_labelled",
    "read_sequences",
    "read_text",
    "atomic_write_text",
    "atomic_write_bytes",
    "SequenceDataset",
    "encode_records",
    "data_hash",
    "split",
    "UNKNOWN_MODES",
    "dinucleotide_shuffle",
    "bundled_path",
    "list_bundled",
    "read_track",
    "as_track_array",
    "dataset_track",
]
