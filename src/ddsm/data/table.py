"""Delimited tables (TSV/CSV) of sequences, and TSV output.

A sequence table has a header row; one column holds the sequences, an optional ``id`` (or
``name``) column names them, and every other column becomes ``Record.meta`` so that labels can come
from any column (``encode_records(label_key="cell_type")``).
"""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ddsm.data.io import PathLike, atomic_write_text, read_text
from ddsm.data.record import Record
from ddsm.errors import DDSMInputError

# Columns used as record ids, in order of preference, when no id column is named.
_ID_COLUMNS = ("id", "name")
_BY_SUFFIX = {".tsv": "\t", ".csv": ","}
# Genome-scale sequences can exceed csv's default 128 kB field limit.
_FIELD_LIMIT = 2**31 - 1


def read_table(
    path: PathLike,
    *,
    sequence_column: str = "sequence",
    id_column: str | None = None,
    uppercase: bool = True,
) -> list[Record]:
    """Read sequences from a TSV or CSV file (plain or gzip).

    The delimiter comes from the name (``.tsv``, ``.csv``, optionally ``.gz``) and is checked
    against the header line; ``.txt`` and other names are sniffed (tab, else comma, else a single
    column). A leading ``#`` on the header line is ignored.

    Args:
        path: the table.
        sequence_column: the column holding sequences (an exact match, else a unique
            case-insensitive one).
        id_column: the column holding ids; default ``id`` or ``name`` if present, else ``row1``,
            ``row2``... (numbering data rows).
        uppercase: upper-case sequences (see :func:`ddsm.data.fasta.read_fasta`).

    Returns:
        one record per data row; the other columns in ``meta``.

    Raises:
        DDSMInputError: unreadable file, empty table, missing column (listing those present),
            a row with the wrong number of fields, an empty sequence.
    """
    path = Path(path)
    text = read_text(path)
    return parse_table(
        text,
        source=str(path),
        delimiter=guess_delimiter(path, text),
        sequence_column=sequence_column,
        id_column=id_column,
        uppercase=uppercase,
    )


def guess_delimiter(path: Path, text: str) -> str:
    """The delimiter of a table file: from its name when the header agrees, else sniffed."""
    name = path.name.lower()
    suffix = Path(name[: -len(".gz")] if name.endswith(".gz") else name).suffix
    header = next((line for line in text.splitlines() if line.strip()), "")
    preferred = _BY_SUFFIX.get(suffix)
    # The name is only a hint: a ".csv" that is really tab-separated is read as TSV.
    if preferred is not None and preferred in header:
        return preferred
    if "\t" in header:
        return "\t"
    if "," in header:
        return ","
    return preferred or "\t"


@contextlib.contextmanager
def _field_limit() -> Iterator[None]:
    # csv's limit is process-wide state: raise it only while we parse, then put it back.
    old = csv.field_size_limit(_FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def parse_table(
    text: str,
    *,
    source: str = "<text>",
    delimiter: str = "\t",
    sequence_column: str = "sequence",
    id_column: str | None = None,
    uppercase: bool = True,
) -> list[Record]:
    """Parse delimited text (see :func:`read_table`); ``source`` names it in error messages."""
    # TSV has no quoting convention (and write_tsv never needs one); CSV uses standard quotes.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    records: list[Record] = []
    try:
        with _field_limit():
            header = _read_header(reader, source)
            seq_i = _find_column(header, sequence_column, source, fuzzy=True)
            id_i = _id_index(header, id_column, source)
            meta_cols = [(i, c) for i, c in enumerate(header) if i not in (seq_i, id_i)]
            for row in reader:
                if not any(field.strip() for field in row):
                    continue
                line = reader.line_num
                if len(row) != len(header):
                    raise DDSMInputError(
                        f"{source} line {line}: expected {len(header)} fields "
                        f"({', '.join(header)}), got {len(row)}"
                    )
                seq = "".join(row[seq_i].split())
                if not seq:
                    raise DDSMInputError(
                        f"{source} line {line}: empty sequence in column {header[seq_i]!r}"
                    )
                rid = row[id_i].strip() if id_i is not None else f"row{len(records) + 1}"
                meta = {c: row[i].strip() for i, c in meta_cols}
                records.append(Record(rid, seq.upper() if uppercase else seq, meta))
    except csv.Error as exc:
        raise DDSMInputError(f"{source} line {reader.line_num}: malformed table ({exc})") from exc
    if not records:
        raise DDSMInputError(f"{source}: table has a header but no data rows")
    return records


def _read_header(reader: Any, source: str) -> list[str]:
    for row in reader:
        if any(field.strip() for field in row):
            header = [field.strip() for field in row]
            header[0] = header[0].lstrip("#").strip()
            seen: set[str] = set()
            for name in header:
                if name in seen:
                    raise DDSMInputError(f"{source}: column {name!r} appears twice in the header")
                seen.add(name)
            return header
    raise DDSMInputError(f"{source} is empty (no header row)")


def _find_column(header: list[str], name: str, source: str, *, fuzzy: bool) -> int:
    if name in header:
        return header.index(name)
    if fuzzy:
        folded = [i for i, c in enumerate(header) if c.lower() == name.lower()]
        if len(folded) == 1:
            return folded[0]
    present = ", ".join(repr(c) for c in header)
    raise DDSMInputError(f"{source}: no column {name!r}; columns present: {present}")


def _id_index(header: list[str], id_column: str | None, source: str) -> int | None:
    if id_column is not None:
        return _find_column(header, id_column, source, fuzzy=False)
    return next((header.index(c) for c in _ID_COLUMNS if c in header), None)


def write_tsv(
    path: PathLike,
    rows: Sequence[Mapping[str, Any]],
    *,
    force: bool = False,
    columns: Sequence[str] | None = None,
) -> Path:
    """Write dict rows as a tab-separated table with a header, atomically (gzip if ``.gz``).

    Args:
        path: the output file.
        rows: one mapping per row; values are written with ``str`` (``None`` as empty).
        force: overwrite an existing file.
        columns: column order; default = keys in first-seen order across rows. Missing values are
            written empty.

    Raises:
        DDSMInputError: the file exists and ``force`` is false, the directory is missing or not
            writable, or a name or value holds a tab or line break (TSV cannot represent them).
        ValueError: no rows and no columns (there would be no header).
    """
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    if not columns:
        raise ValueError("write_tsv needs rows or explicit columns")
    lines = ["\t".join(_cell(c, "column name") for c in columns)]
    for number, row in enumerate(rows, start=1):
        cells = [row.get(c) for c in columns]
        lines.append(
            "\t".join(
                "" if v is None else _cell(str(v), f"row {number} column {c!r}")
                for v, c in zip(cells, columns)
            )
        )
    return atomic_write_text(path, "".join(line + "\n" for line in lines), force=force)


def _cell(value: str, what: str) -> str:
    if any(c in value for c in "\t\n\r"):
        raise DDSMInputError(
            f"{what} {value[:40]!r} contains a tab or line break; cannot write TSV"
        )
    return value
