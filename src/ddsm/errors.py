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

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).splitlines()))
