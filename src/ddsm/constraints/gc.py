"""A GC-content window."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DDSMInputError


@dataclass(frozen=True)
class GCWindow:
    """Fraction of G + C letters must lie in [lo, hi]."""

    lo: float
    hi: float

    @classmethod
    def parse(cls, text: str) -> "GCWindow":
        """``"0.40:0.60"`` (fractions) or ``"40:60"`` (percent)."""
        try:
            lo_s, hi_s = text.split(":")
            lo, hi = float(lo_s), float(hi_s)
        except ValueError:
            raise DDSMInputError(f"--gc expects MIN:MAX, e.g. 0.4:0.6, got {text!r}") from None
        if hi > 1.0:
            lo, hi = lo / 100.0, hi / 100.0
        if not 0.0 <= lo <= hi <= 1.0:
            raise DDSMInputError(f"--gc window {text!r} must satisfy 0 <= MIN <= MAX <= 1 (or percent)")
        return cls(lo, hi)

    def gc(self, seq: str) -> float:
        s = seq.upper()
        return (s.count("G") + s.count("C")) / max(1, len(s))

    def ok(self, seq: str) -> bool:
        return self.lo - 1e-12 <= self.gc(seq) <= self.hi + 1e-12
