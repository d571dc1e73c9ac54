"""Forbidden motifs (e.g. restriction sites), on both strands."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from ..errors import DDSMInputError

_COMPLEMENT = str.maketrans("ACGTUN", "TGCAAN")
_IUPAC = {"A": "A", "C": "C", "G": "G", "T": "T", "U": "T", "R": "[AG]", "Y": "[CT]", "S": "[CG]",
          "W": "[AT]", "K": "[GT]", "M": "[AC]", "B": "[CGT]", "D": "[AGT]", "H": "[ACT]", "V": "[ACG]",
          "N": "[ACGT]"}
_IUPAC_COMP = str.maketrans("ACGTURYSWKMBDHVN", "TGCAAYRSWMKVHDBN")


def reverse_complement(seq: str) -> str:
    """Reverse complement of a DNA motif (IUPAC codes allowed)."""
    return seq.upper().translate(_IUPAC_COMP)[::-1]


@dataclass(frozen=True)
class ForbiddenMotifs:
    """Motifs that must not occur in a design (IUPAC DNA codes; reverse complements included).

    Attributes:
        motifs: the motifs as given (upper case).
        both_strands: also forbid each motif's reverse complement.
    """

    motifs: tuple[str, ...]
    both_strands: bool = True

    @classmethod
    def parse(cls, motifs: Sequence[str], *, both_strands: bool = True) -> "ForbiddenMotifs":
        clean = []
        for m in motifs:
            m = m.strip().upper()
            if not m or any(c not in _IUPAC for c in m):
                raise DDSMInputError(f"--forbid {m!r}: motifs use IUPAC DNA letters (ACGT, N, R, Y, ...)")
            clean.append(m)
        return cls(tuple(clean), both_strands)

    def _patterns(self) -> list[re.Pattern]:
        forms = set(self.motifs)
        if self.both_strands:
            forms |= {reverse_complement(m) for m in self.motifs}
        # lookahead so overlapping occurrences are all found
        return [re.compile("(?=(" + "".join(_IUPAC[c] for c in m) + "))") for m in sorted(forms)]

    def hits(self, seq: str) -> list[tuple[int, int]]:
        """``(start, end)`` of every occurrence (0-based, end exclusive)."""
        out = []
        for pat in self._patterns():
            for m in pat.finditer(seq.upper()):
                out.append((m.start(), m.start() + len(m.group(1))))
        return sorted(out)

    def ok(self, seq: str) -> bool:
        return not self.hits(seq)
