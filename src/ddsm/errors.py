"""The one exception type for bad user input.

The CLI catches :class:`DDSMInputError`, prints ``ddsm: error: <message>`` and exits with status 2;
any other exception escaping the library is a bug. Messages therefore have to stand alone on one
line and say what was wrong and where (file, record or line, offending letter, expected vs got).
"""

from __future__ import annotations


class DDSMInputError(Exception):
    """Bad user input: a missing or malformed file, an unknown name, an inconsistent option.

    The message is forced onto a single line, because the CLI prints it as one line and a stray
    newline (e.g. from an echoed file line) would break that.
    """

    def __init__(self, message: str, *, remedy: str | None = None, hint: str | None = None) -> None:
        """``remedy`` names what would fix it in terms of a CLI concept (``"length"``,
        ``"unknown"``) and ``hint`` says it in words; a command replaces the hint with one naming
        its own flags (``score`` has ``--crop``, ``train`` has ``--length``) through
        :meth:`with_hint`."""
        self.base = " ".join(str(message).splitlines())
        self.remedy, self.hint = remedy, hint
        super().__init__(self.base + (f"; {hint}" if hint else ""))

    def with_hint(self, hints: dict[str, str]) -> "DDSMInputError":
        """The same error with the hint for its remedy taken from ``hints`` (if listed there)."""
        if self.remedy is None or self.remedy not in hints:
            return self
        return DDSMInputError(self.base, remedy=self.remedy, hint=hints[self.remedy])
