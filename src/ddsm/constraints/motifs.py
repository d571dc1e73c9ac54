"""Forbidden motifs (e.g. restriction sites), read with the alphabet's own semantics.

DNA/RNA motifs are IUPAC codes and also forbidden on the reverse strand (unless turned off);
protein and custom motifs are literal strings (``KK`` is two lysines). The alphabet decides,
see :class:`ddsm.data.Alphabet`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from ..data.alphabet import DNA, Alphabet
from ..errors import DDSMInputError


def reverse_complement(seq: str, alphabet: Alphabet = DNA) -> str:
    """Reverse complement of a nucleotide motif (IUPAC codes allowed)."""
    return alphabet.reverse_complement(seq.upper())


@dataclass(frozen=True)
class ForbiddenMotifs:
    """Motifs that must not occur in a design.

    Attributes:
        motifs: the motifs as given (upper case for nucleotides).
        both_strands: also forbid each motif's reverse complement (nucleotide alphabets only).
        alphabet: whose semantics the motifs follow.
    """

    motifs: tuple[str, ...]
    both_strands: bool = True
    alphabet: Alphabet = DNA
    _compiled: tuple = field(default=(), compare=False, repr=False)

    @classmethod
    def parse(cls, motifs: Sequence[str], *, both_strands: bool = True,
              alphabet: Alphabet = DNA) -> "ForbiddenMotifs":
        """Check and compile ``motifs`` for ``alphabet``.

        Raises:
            DDSMInputError: an empty motif, or a letter the alphabet does not know.
        """
        clean = []
        for m in motifs:
            m = m.strip()
            if alphabet.is_nucleotide or all(c.upper() in alphabet.letters and c not in alphabet.letters for c in m):
                m = m.upper()
            if not m:
                raise DDSMInputError("--forbid: empty motif")
            try:
                alphabet.motif_regex(m)
            except DDSMInputError as e:
                raise DDSMInputError(f"--forbid: {e}") from None
            clean.append(m)
        strands = both_strands and alphabet.has_reverse_complement
        forms = set(clean) | ({alphabet.reverse_complement(m) for m in clean} if strands else set())
        # lookahead so overlapping occurrences are all found
        compiled = tuple(re.compile("(?=(" + alphabet.motif_regex(m) + "))") for m in sorted(forms))
        return cls(tuple(clean), strands, alphabet, compiled)

    def _patterns(self) -> tuple[re.Pattern, ...]:
        if self._compiled or not self.motifs:
            return self._compiled
        return ForbiddenMotifs.parse(self.motifs, both_strands=self.both_strands, alphabet=self.alphabet)._compiled

    def hits(self, seq: str) -> list[tuple[int, int]]:
        """``(start, end)`` of every occurrence (0-based, end exclusive)."""
        text = seq.upper() if self.alphabet.is_nucleotide else seq
        out = []
        for pat in self._patterns():
            for m in pat.finditer(text):
                out.append((m.start(), m.start() + len(m.group(1))))
        return sorted(set(out))

    def ok(self, seq: str) -> bool:
        return not self.hits(seq)
