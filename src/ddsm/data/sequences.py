"""One entry point for "a file of sequences", whatever its format."""

from __future__ import annotations

from pathlib import Path

from ddsm.data.fasta import parse_fasta
from ddsm.data.io import PathLike, read_text
from ddsm.data.record import Record
from ddsm.data.table import guess_delimiter, parse_table
from ddsm.errors import DDSMInputError


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


def labelled_specs(specs: "list[str] | str") -> bool:
    """Whether ``--data`` entries are ``LABEL=PATH`` ones (see :func:`read_labelled`)."""
    if isinstance(specs, (str, Path)):
        specs = [str(specs)]
    return any(_split_spec(s)[0] is not None for s in specs)


def _split_spec(spec: str) -> tuple[str | None, str]:
    label, sep, rest = spec.partition("=")
    if sep and label and rest and not Path(spec).exists():
        return label, rest
    return None, spec


def read_labelled(
    specs: "list[str] | str", *, label_key: str | None = None, sequence_column: str = "sequence",
    uppercase: bool = True,
) -> tuple[list[Record], str | None]:
    """Read one or more sequence files, each optionally labelled from the command line.

    ``specs`` entries are ``PATH`` or ``LABEL=PATH`` (``strong=strong.fa weak=weak.fa``): every
    record of a labelled file gets ``meta[label_key] = LABEL`` (``label_key`` default ``class``),
    so classes in separate files need no hand-edited headers. An entry that names an existing file
    is a path even if it contains ``=``. Either every entry is labelled or none is.

    Returns:
        the records of all files in order, and the label key in use (None: no labels given here).

    Raises:
        DDSMInputError: a mix of labelled and plain entries, an empty label, a record whose header
            already holds a different label under the same key.
    """
    if isinstance(specs, (str, Path)):
        specs = [str(specs)]
    parsed = [_split_spec(spec) for spec in specs]
    labelled = [lab is not None for lab, _ in parsed]
    if any(labelled) and not all(labelled):
        raise DDSMInputError("--data: give every file a label (LABEL=PATH) or none")
    if len(parsed) > 1 and not any(labelled):
        raise DDSMInputError("--data: several files need a label each (LABEL=PATH), e.g. strong=strong.fa weak=weak.fa")
    key = (label_key or "class") if any(labelled) else label_key
    records: list[Record] = []
    for label, path in parsed:
        recs = read_sequences(path, sequence_column=sequence_column, uppercase=uppercase)
        if label is not None:
            assert key is not None
            for r in recs:
                if key in r.meta and r.meta[key] != label:
                    raise DDSMInputError(f"{path}: record {r.id!r} has {key}={r.meta[key]!r} in its header "
                                         f"but the file is labelled {label!r}")
            recs = [Record(r.id, r.seq, {**r.meta, key: label}, r.description) for r in recs]
        records.extend(recs)
    return records, (key if any(labelled) else label_key)
