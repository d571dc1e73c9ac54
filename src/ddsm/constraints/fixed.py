"""Fixed positions from a pattern such as ``NNNNTATAAANNNN`` (N = free)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DDSMInputError


def parse_fixed(pattern: str, letters: str, length: int) -> tuple[np.ndarray, np.ndarray]:
    """A pattern (or a file holding one) -> ``(tokens (L,), mask (L,))``.

    The free symbol is ``N`` (or ``.``; ``.`` only when ``N`` is a letter of the alphabet, as in
    proteins). Whitespace and FASTA headers in a file are ignored.
    """
    if len(pattern) < 4096 and Path(pattern).is_file():
        text = Path(pattern).read_text()
        pattern = "".join(line.strip() for line in text.splitlines() if not line.startswith(">"))
    pattern = "".join(pattern.split()).upper()
    if len(pattern) != length:
        raise DDSMInputError(f"--fixed pattern has length {len(pattern)}; the model generates length {length}")
    free = {"."} if "N" in letters else {"N", "."}
    tokens = np.zeros(length, dtype=np.int64)
    mask = np.zeros(length, dtype=bool)
    for i, ch in enumerate(pattern):
        if ch in free:
            continue
        j = letters.find(ch)
        if j < 0:
            raise DDSMInputError(f"--fixed: letter {ch!r} at position {i + 1} is not in the alphabet {letters} "
                                 f"(use {'/'.join(sorted(free))} for free positions)")
        tokens[i], mask[i] = j, True
    return tokens, mask
