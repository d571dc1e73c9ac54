"""Fixed positions from a pattern such as ``NNNNTATAAANNNN`` (free symbols from the alphabet)."""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

from ..data.alphabet import Alphabet, get_alphabet
from ..errors import DDSMInputError


def parse_fixed(pattern: str, alphabet: Union[Alphabet, str], length: int) -> tuple[np.ndarray, np.ndarray]:
    """A pattern (or a file holding one) -> ``(tokens (L,), mask (L,))``.

    The free symbols are the alphabet's (:attr:`Alphabet.free_symbols`): ``N`` or ``.`` for
    DNA/RNA, ``.``, ``-`` or ``X`` for proteins (``N`` is asparagine there), ``.`` or ``-`` for
    custom alphabets. A variable-length model's end letter fixes the end of the design there, and
    its patterns may be shorter than the maximum length (the rest is free). Whitespace and FASTA
    headers in a file are ignored. Nucleotide and protein
    patterns are read case-insensitively; custom ones exactly.
    """
    if isinstance(alphabet, str):  # letters only: the named alphabet with these letters, else custom
        alphabet = get_alphabet("custom:" + alphabet)
    if len(pattern) < 4096 and Path(pattern).is_file():
        text = Path(pattern).read_text()
        pattern = "".join(line.strip() for line in text.splitlines() if not line.startswith(">"))
    pattern = "".join(pattern.split())
    if alphabet.name != "custom":
        pattern = pattern.upper()
    if alphabet.end and len(pattern) < length:  # variable length: a pattern may cover the start only
        pattern += alphabet.free_symbols[0] * (length - len(pattern)) if alphabet.free_symbols else ""
    if len(pattern) != length:
        raise DDSMInputError(f"--fixed pattern has length {len(pattern)}; the model generates length {length}")
    free = set(alphabet.free_symbols)
    letters = alphabet.letters
    tokens = np.zeros(length, dtype=np.int64)
    mask = np.zeros(length, dtype=bool)
    for i, ch in enumerate(pattern):
        if ch in free:
            continue
        j = letters.find(ch)
        if j < 0:
            raise DDSMInputError(f"--fixed: letter {ch!r} at position {i + 1} is not in the {alphabet.name} alphabet "
                                 f"{letters} (free positions: {' or '.join(alphabet.free_symbols)})")
        tokens[i], mask[i] = j, True
    return tokens, mask
