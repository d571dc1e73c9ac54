"""One named sequence with its annotations, as read from FASTA headers or table columns."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Record:
    """A sequence and its metadata.

    Attributes:
        id: the identifier (first word of a FASTA header, or the table's id column).
        seq: the sequence, whitespace removed (upper-cased by the readers unless asked not to).
        meta: ``key=value`` annotations (FASTA header tokens, or the table's other columns);
            e.g. ``{"cell_type": "K562"}``, read by ``encode_records(label_key=...)``.
        description: free words of a FASTA header that are not ``key=value`` (kept so that
            writing a record back does not silently lose them).
    """

    id: str
    seq: str
    meta: dict[str, str] = field(default_factory=dict)
    description: str = ""
