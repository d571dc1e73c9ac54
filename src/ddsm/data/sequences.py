"""One entry point for "a file of sequences", whatever its format."""

from __future__ import annotations

from pathlib import Path

from ddsm.data.fasta import parse_fasta
from ddsm.data.io import PathLike, read_text
from ddsm.data.record import Record
from ddsm.data.table import guess_delimiter, parse_table


def read_sequences(
    path: PathLike, *, sequence_column: str = "sequence", uppercase: bool = True
) -> list[Record]:
    """Read FASTA or a TSV/CSV table (plain or gzip), chosen by content.

    The file is FASTA if its first line that is neither blank nor a ``;``/``#`` comment starts
    with ``>``; otherwise it is read as a table (see :func:`ddsm.data.table.read_table`).

    Raises:
        DDSMInputError: for anything wrong with the file; no other exception for any content.
    """
    path = Path(path)
    text = read_text(path)
    if _looks_like_fasta(text):
        return parse_fasta(text, source=str(path), uppercase=uppercase)
    return parse_table(
        text,
        source=str(path),
        delimiter=guess_delimiter(path, text),
        sequence_column=sequence_column,
        uppercase=uppercase,
    )


def _looks_like_fasta(text: str) -> bool:
    for raw in text.split("\n"):
        line = raw.strip()
        if line and not line.startswith((";", "#")):
            return line.startswith(">")
    # Only blanks and comments: let the FASTA parser report the file as empty / without records.
    return True
