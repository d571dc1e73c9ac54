"""Data files shipped inside the package (``src/ddsm/resources``), for examples and tests.

Each data folder carries a ``SOURCE.md`` with its origin, license and how the subset was made.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path, PurePosixPath

from ddsm.errors import DDSMInputError

_PACKAGE = "ddsm"
_FOLDER = "resources"


def _root() -> Path:
    root = importlib.resources.files(_PACKAGE).joinpath(_FOLDER)
    # Regular installs and editable checkouts give real directories; a zipped install would not,
    # and returning a path into a temporary extraction would dangle, so it is refused.
    path = Path(str(root))
    if not path.is_dir():
        raise DDSMInputError(
            f"bundled data folder {path} is missing; is ddsm installed completely?"
        )
    return path


def list_bundled() -> list[str]:
    """Names accepted by :func:`bundled_path`, e.g. ``"dhs4/train_small.fasta.gz"`` (sorted)."""
    root = _root()
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name != "SOURCE.md" and not p.name.startswith((".", "__"))
    )


def bundled_path(name: str) -> Path:
    """Path of a bundled data file.

    Args:
        name: a ``/``-separated name relative to the resources folder, e.g.
            ``"dhs4/train_small.fasta.gz"`` or ``"dhs4/valid_small.fasta.gz"``.

    Raises:
        DDSMInputError: the name is not a bundled file (the message lists those available).
    """
    parts = PurePosixPath(name).parts
    path = _root().joinpath(*parts)
    # ".." or an absolute name must not reach outside the resources folder.
    if not parts or ".." in parts or PurePosixPath(name).is_absolute() or not path.is_file():
        available = ", ".join(list_bundled()) or "none"
        raise DDSMInputError(f"no bundled data file {name!r}; available: {available}")
    return path
