"""FASTA reading and writing.

Header convention: ``>id key=value key=value ...``. The ``key=value`` words become
``Record.meta`` (e.g. ``>chr1_100_300 cell_type=K562`` gives ``meta == {"cell_type": "K562"}``);
other words are kept as ``Record.description``. A word with a second ``=`` (``class==strong``) or
a key given twice with different values is an error naming the record.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Iterable

from ddsm.data.io import PathLike, atomic_write_text, read_text
from ddsm.data.record import Record
from ddsm.errors import DDSMInputError

logger = logging.getLogger(__name__)

# Longest piece of offending input echoed in an error message.
_SNIPPET = 40


def read_fasta(path: PathLike, *, uppercase: bool = True) -> list[Record]:
    """Read a plain or gzip FASTA file.

    Sequences may span several lines; whitespace inside them is removed. Blank lines are skipped
    anywhere, and lines starting with ``;`` or ``#`` before the first header are comments.

    Args:
        path: the file (gzip is detected from its content, not its name).
        uppercase: upper-case sequences, so soft-masked (lower-case) bases read as normal bases.
            Turn off for case-sensitive text alphabets.

    Returns:
        the records, in file order.

    Raises:
        DDSMInputError: missing/unreadable/binary file, no records, text before the first ``>``,
            a header without an id, or a record with an empty sequence.
    """
    return parse_fasta(read_text(path), source=str(path), uppercase=uppercase)


def parse_fasta(text: str, *, source: str = "<text>", uppercase: bool = True) -> list[Record]:
    """Parse FASTA text (see :func:`read_fasta`); ``source`` names the input in error messages."""
    records: list[Record] = []
    header: tuple[str, dict[str, str], str] | None = None
    header_line = 0
    chunks: list[str] = []

    def finish() -> None:
        assert header is not None
        seq = "".join(chunks)
        if not seq:
            raise DDSMInputError(
                f"{source}: record {len(records) + 1} ({header[0]!r}, line {header_line}) "
                "has an empty sequence"
            )
        records.append(Record(header[0], seq.upper() if uppercase else seq, header[1], header[2]))

    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith(">"):
            if header is not None:
                finish()
            header = _parse_header(line[1:], source=source, line_number=number)
            header_line = number
            chunks = []
        elif header is not None:
            chunks.append("".join(line.split()))
        elif line.startswith((";", "#")):
            continue
        else:
            raise DDSMInputError(
                f"{source} line {number}: text before the first '>' header: "
                f"{line[:_SNIPPET]!r}; is this a FASTA file?"
            )
    if header is None:
        what = "is empty" if not text.strip() else "has no FASTA records (no line starts with '>')"
        raise DDSMInputError(f"{source} {what}")
    finish()
    _warn_duplicate_ids(records, source)
    return records


def _parse_header(
    header: str, *, source: str, line_number: int
) -> tuple[str, dict[str, str], str]:
    words = header.split()
    if not words:
        raise DDSMInputError(f"{source} line {line_number}: header '>' has no id")
    meta: dict[str, str] = {}
    free: list[str] = []
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if sep and key:
            # class==strong or class=weak=strong used to become singleton classes "=strong" and
            # "weak=strong": refuse what cannot be one key and one value
            if "=" in value:
                raise DDSMInputError(
                    f"{source} line {line_number} (record {words[0]!r}): malformed annotation {word[:_SNIPPET]!r}; "
                    "write key=value with a single '='"
                )
            if key in meta and meta[key] != value:
                raise DDSMInputError(
                    f"{source} line {line_number} (record {words[0]!r}): {key!r} is given twice "
                    f"({meta[key]!r} and {value!r})"
                )
            meta[key] = value
        else:
            free.append(word)
    return words[0], meta, " ".join(free)


def _warn_duplicate_ids(records: list[Record], source: str) -> None:
    # Duplicates are legal FASTA and harmless for training, but confusing in outputs keyed by id.
    counts = Counter(r.id for r in records)
    duplicated = [k for k, n in counts.items() if n > 1]
    if duplicated:
        logger.warning(
            "%s: %d ids occur more than once (e.g. %r)", source, len(duplicated), duplicated[0]
        )


def format_fasta(records: Iterable[Record], *, line_width: int = 0) -> str:
    """FASTA text for ``records``: ``>id key=value ... description`` then the sequence.

    Args:
        records: what to write.
        line_width: wrap sequences at this many letters; 0 writes each on one line.

    Raises:
        DDSMInputError: a record that could not be read back unchanged: empty or whitespace-holding
            id, meta key or value, a key with ``=``, an empty sequence or one with whitespace.
    """
    out: list[str] = []
    for number, record in enumerate(records, start=1):
        where = f"record {number} ({record.id!r})"
        _check_word(record.id, f"{where}: id")
        words = [record.id]
        for key, value in record.meta.items():
            key, value = str(key), str(value)
            _check_word(key, f"{where}: meta key")
            if "=" in key:
                raise DDSMInputError(f"{where}: meta key {key!r} contains '='")
            _check_word(value, f"{where}: value of {key!r}", allow_empty=True)
            words.append(f"{key}={value}")
        if "\n" in record.description or "\r" in record.description:
            raise DDSMInputError(f"{where}: description contains a line break")
        if any(w.partition("=")[0] and "=" in w for w in record.description.split()):
            raise DDSMInputError(
                f"{where}: description word with '=' would read back as metadata; put it in meta"
            )
        if record.description.strip():
            words.append(record.description.strip())
        seq = record.seq
        if not seq:
            raise DDSMInputError(f"{where}: empty sequence")
        if any(c.isspace() for c in seq):
            raise DDSMInputError(f"{where}: sequence contains whitespace")
        out.append(">" + " ".join(words))
        step = line_width if line_width > 0 else len(seq)
        lines = [seq[i : i + step] for i in range(0, len(seq), step)]
        if any(line.startswith(">") for line in lines):
            raise DDSMInputError(f"{where}: a sequence line would start with '>'")
        out.extend(lines)
    return "".join(line + "\n" for line in out)


def _check_word(word: str, what: str, *, allow_empty: bool = False) -> None:
    if not word and not allow_empty:
        raise DDSMInputError(f"{what} is empty")
    if any(c.isspace() for c in word):
        raise DDSMInputError(f"{what} {word[:_SNIPPET]!r} contains whitespace")


def write_fasta(
    path: PathLike, records: Iterable[Record], *, force: bool = False, line_width: int = 0
) -> Path:
    """Write records as FASTA, atomically (gzip if the name ends in ``.gz``).

    Args:
        path: the output file.
        records: what to write; :func:`read_fasta` reads them back equal (sequences upper-cased).
        force: overwrite an existing file.
        line_width: wrap sequences at this many letters; 0 = one line each.

    Raises:
        DDSMInputError: the file exists and ``force`` is false, the directory is missing or not
            writable, or a record cannot be written faithfully (see :func:`format_fasta`).
    """
    return atomic_write_text(path, format_fasta(records, line_width=line_width), force=force)
