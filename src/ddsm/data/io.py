"""Reading and writing whole text files safely.

Reading: plain or gzip (told apart by the magic bytes, not the name, since users rename files),
strict UTF-8, and every failure turned into a one-line :class:`DDSMInputError`.

Writing: to a temporary file in the target's directory, then ``os.replace``, so a crash, a full
disk or a refused overwrite never leaves a half-written or clobbered output behind.
"""

from __future__ import annotations

import gzip
import os
import secrets
import stat
import zlib
from pathlib import Path
from typing import Union

from ddsm.errors import DDSMInputError

PathLike = Union[str, "os.PathLike[str]"]

GZIP_MAGIC = b"\x1f\x8b"


def read_text(path: PathLike) -> str:
    """Read a whole plain or gzip-compressed UTF-8 text file.

    A leading byte-order mark is dropped; line endings are left as they are.

    Raises:
        DDSMInputError: missing file, a directory, unreadable, corrupt gzip, binary or non-UTF-8.
    """
    path = Path(path)
    if not path.exists():
        raise DDSMInputError(f"{path}: no such file")
    if path.is_dir():
        raise DDSMInputError(f"{path}: is a directory, expected a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DDSMInputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if data.startswith(GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DDSMInputError(f"{path}: corrupt or truncated gzip data ({exc})") from exc
    if b"\x00" in data:
        offset = data.index(b"\x00")
        raise DDSMInputError(
            f"{path}: looks binary (NUL byte at offset {offset}); expected a text file"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        byte = data[exc.start : exc.start + 1].hex()
        raise DDSMInputError(
            f"{path}: not UTF-8 text (byte 0x{byte} at offset {exc.start}); is it a binary file?"
        ) from exc


def atomic_write_text(path: PathLike, text: str, *, force: bool = False) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically; gzip it if the name ends in ``.gz``.

    Args:
        path: the output file.
        text: the whole content.
        force: overwrite an existing file (otherwise refuse and leave it untouched).

    Returns:
        the path written.

    Raises:
        DDSMInputError: the file exists and ``force`` is false, the directory is missing or not
            writable, or the write fails (disk full...); the existing file is never touched.
    """
    path = Path(path)
    data = text.encode("utf-8")
    if path.name.endswith(".gz"):
        # mtime=0 keeps the output byte-identical between runs (reproducible artefacts).
        data = gzip.compress(data, mtime=0)
    return atomic_write_bytes(path, data, force=force)


def atomic_write_bytes(path: PathLike, data: bytes, *, force: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``.

    Same contract as :func:`atomic_write_text`. The check for an existing file happens before
    writing; a file created by another process in between would be replaced.
    """
    path = Path(path)
    directory = path.parent
    if not directory.is_dir():
        raise DDSMInputError(f"cannot write {path}: directory {directory} does not exist")
    if path.is_dir():
        raise DDSMInputError(f"cannot write {path}: it is a directory")
    existing_mode = None
    if path.exists():
        if not force:
            raise DDSMInputError(f"{path} exists; use --force to overwrite")
        existing_mode = stat.S_IMODE(path.stat().st_mode)

    # os.open with 0o666 lets the umask decide the permissions, as for any new file (mkstemp would
    # leave 0o600); the random suffix avoids clashing with a concurrent writer of the same file.
    tmp = directory / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise DDSMInputError(
            f"cannot write {path}: directory {directory} is not writable ({exc.strerror or exc})"
        ) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            # Without fsync a power cut after os.replace could leave an empty file in its place.
            os.fsync(handle.fileno())
        if existing_mode is not None:
            os.chmod(tmp, existing_mode)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DDSMInputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def check_output(path: Path, force: bool, label: str = "") -> None:
    """Refuse before any work starts when an output would be lost or cannot be written.

    ``label`` (e.g. ``"--json"``) prefixes the messages when a command has several outputs.
    """
    who, where = (f"{label} ", f"{label}: ") if label else ("", "")
    if path.is_dir():
        raise DDSMInputError(f"{who}{path} is a directory, not a file")
    if path.exists() and not force:
        raise DDSMInputError(f"{who}{path} exists; use --force to overwrite")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise DDSMInputError(f"{where}output folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise DDSMInputError(f"{where}output folder {parent} is not writable")
