"""Reading puzzle files and writing result tables (CSV).

Input: a CSV with a ``puzzle`` column (81 characters, ``.`` or ``0`` for blanks) and optionally a
``solution`` column (used only for reporting), or a plain file with one 81-character puzzle per
line. Rows are never dropped: a malformed puzzle becomes a row with an error message.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Sequence

from ..data import atomic_write_text, read_text
from ..errors import DDSMInputError


@dataclass
class PuzzleRow:
    """One input row: its 1-based ``line`` number, the ``puzzle`` text, all ``fields`` as read."""

    line: int
    puzzle: str
    fields: dict[str, str]


def read_puzzles(path: str) -> tuple[list[PuzzleRow], list[str]]:
    """Rows and column names of a puzzle file.

    Raises:
        DDSMInputError: unreadable file, no rows, or a CSV header without a ``puzzle`` column.
    """
    text = read_text(path)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise DDSMInputError(f"{path}: no puzzles (the file is empty)")
    first = lines[0].strip()
    if "," not in first and len(first) == 81:  # headerless: one puzzle per line
        return [PuzzleRow(i + 1, ln.strip(), {"puzzle": ln.strip()}) for i, ln in enumerate(lines)], ["puzzle"]
    try:
        reader = csv.DictReader(io.StringIO(text))
        columns = [c.strip() for c in (reader.fieldnames or [])]
        if "puzzle" not in columns:
            raise DDSMInputError(f"{path}: no 'puzzle' column in the header {','.join(columns)!r} "
                                 f"(expected a CSV with a 'puzzle' column of 81-character boards)")
        rows = []
        for raw in reader:
            fields = {(k or "").strip(): (v if isinstance(v, str) else "") for k, v in raw.items()}
            rows.append(PuzzleRow(reader.line_num, (fields.get("puzzle") or "").strip(), fields))
    except csv.Error as e:  # e.g. a bare carriage return inside a field
        raise DDSMInputError(f"{path}: not a readable CSV file ({e})") from None
    if not rows:
        raise DDSMInputError(f"{path}: no puzzles (only a header)")
    return rows, columns


def write_csv(path: str, columns: Sequence[str], rows: Sequence[dict[str, object]], *,
              force: bool = False) -> None:
    """Write ``rows`` (dicts keyed by ``columns``) as CSV, atomically; refuses to overwrite
    without ``force``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k, "") for k in columns})
    atomic_write_text(path, buf.getvalue(), force=force)
