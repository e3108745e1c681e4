"""Atomic file writes and checksums, shared by every writer in foldatlas."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_text", "sha256_file", "is_existing_file", "path_exists",
           "check_output_path"]


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator:
    """Open a temp file beside ``path``; on a clean exit fsync it and rename it onto ``path``, else remove it.

    A reader (or a rerun after a crash) sees either the old file or the whole new one, never a partial file. The
    file gets the permissions a plain ``open()`` would give it (0666 less the umask), like every other output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)  # mkstemp creates the file 0600
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 text atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def is_existing_file(item: str | Path) -> bool:
    """True if ``item`` names an existing file; False for anything the OS cannot even look up.

    A raw sequence given where a file is also accepted may be thousands of letters long: the OS refuses such a
    name (``File name too long``) instead of answering that it does not exist, and that must not stop a command.
    """
    try:
        return Path(item).is_file()
    except (OSError, ValueError):  # ENAMETOOLONG, a NUL byte, ...
        return False


def path_exists(item: str | Path) -> bool:
    """True if ``item`` names an existing file or folder (False where the OS cannot look the name up)."""
    try:
        return Path(item).exists()
    except (OSError, ValueError):
        return False


def check_output_path(path: str | Path, option: str, folder: bool = False,
                      suffixes: tuple[str, ...] = ()) -> None:
    """Refuse an output path that cannot be written, before any work is done or anything is created.

    Parameters
    ----------
    path : str or Path
        The file (or folder) a command will write.
    option : str
        The option that named it, for the message (``--output``).
    folder : bool
        The path is a folder to create or fill (else a file, written atomically beside its final name).
    suffixes : tuple of str
        Accepted file name endings (lower case, with the dot); empty: any.

    Raises
    ------
    InvalidOptionError
        If the path (or the folder above it) exists as the wrong kind of thing, is not writable, or the file
        name has a suffix the command cannot write.
    """
    from foldatlas.errors import InvalidOptionError

    path = Path(path)
    if suffixes and not path.name.lower().endswith(suffixes):
        raise InvalidOptionError(f"{option} {path}: name the file {', '.join(suffixes)}")
    try:
        if path.exists() and path.is_dir() != folder:
            what = "a folder" if path.is_dir() else "a file"
            raise InvalidOptionError(f"{option} {path}: exists and is {what}; give a {'folder' if folder else 'file'}")
        # The nearest existing folder above (or the folder itself) must be writable: files are written as a temp
        # file beside their final name, and folders are created there.
        probe = path if folder and path.is_dir() else path.parent
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
    except OSError as e:
        raise InvalidOptionError(f"{option} {path}: {e.strerror or e}") from None
    if not probe.is_dir():
        raise InvalidOptionError(f"{option} {path}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InvalidOptionError(f"{option} {path}: {probe} is not writable")
