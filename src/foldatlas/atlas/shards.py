"""Log-structured, memory-mapped index shards inside an atlas folder (shared by the sequence and structure indexes).

A shard is a folder of ``.npy`` arrays covering the entries with row ids ``first..last``, named
``shard-<first>-<last>``. An update indexes the rows added since the newest shard, then merges the newest shard
into its predecessor while it is at least half its size, so an index of N items keeps O(log N) shards and each item
is rewritten O(log N) times. Shards are written to a temporary folder, fsynced and renamed, under an exclusive lock
on the index folder; a crash leaves at most a stale temporary folder (removed by the next update) or a shard
contained in a newer one (ignored), and rows not yet indexed are indexed by the next update. A large update writes
a shard per :data:`CHUNK_ROWS` row ids as it goes, so a killed one keeps what it finished.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

__all__ = ["Shard", "shard_dirs", "shard_range", "update_shards", "save_arrays", "load_arrays", "file_lock",
           "require_current"]


CHUNK_ROWS = 50_000  # row ids per shard written by one step of an update (a killed update keeps finished steps)


class Shard(Protocol):
    """What :func:`update_shards` needs of a shard type."""

    path: Path | None
    first: int
    last: int

    @property
    def size(self) -> int: ...

    def save(self, folder: Path) -> None: ...


S = TypeVar("S", bound=Shard)


def save_arrays(shard, folder: Path, names: tuple[str, ...]) -> None:
    """Write a shard's arrays ``names`` as ``.npy`` files into ``folder`` (created)."""
    import numpy as np

    folder.mkdir(parents=True)
    for name in names:
        np.save(folder / f"{name}.npy", getattr(shard, name))


def load_arrays(folder: Path, names: tuple[str, ...]) -> tuple[int, int, dict]:
    """``(first, last, arrays)`` of a shard folder, the arrays memory-mapped.

    The arrays are plain ndarray views of the memory maps: np.memmap's Python-level indexing costs more than a
    search does.
    """
    import numpy as np

    first, last = shard_range(folder)
    return first, last, {name: np.asarray(np.load(folder / f"{name}.npy", mmap_mode="r")) for name in names}


def shard_range(folder: Path) -> tuple[int, int] | None:
    """``(first, last)`` of a shard folder's name, or None if it is not a shard."""
    parts = folder.name.split("-")
    if len(parts) == 3 and parts[0] == "shard" and all(x.isdigit() for x in parts[1:]):
        return int(parts[1]), int(parts[2])
    return None


def shard_dirs(index: Path) -> list[Path]:
    """Shard folders in row order, dropping any contained in another (left by a crash during a merge)."""
    found = []
    for p in index.glob("shard-*") if index.is_dir() else []:
        rng = shard_range(p)
        if rng and p.is_dir():
            found.append((rng[0], rng[1], p))
    found.sort(key=lambda t: (t[0], -t[1]))
    kept: list[tuple[int, int, Path]] = []
    for first, last, p in found:
        if kept and last <= kept[-1][1]:
            continue
        kept.append((first, last, p))
    return [p for _, _, p in kept]


@contextmanager
def _locked(index: Path) -> Iterator[None]:
    index.mkdir(parents=True, exist_ok=True)
    with file_lock(index / ".lock"):
        yield


def require_current(atlas, shards: list, name: str) -> None:
    """Refuse to search a read-only atlas whose index (``name``) does not cover all its entries.

    Raises
    ------
    InvalidOptionError
        If the atlas is read-only and rows were added after the newest shard (it cannot be updated).
    """
    from foldatlas.errors import InvalidOptionError

    if atlas.readonly and max((s.last for s in shards), default=0) < atlas.max_rowid():
        raise InvalidOptionError(f"the atlas' {name} index is missing or behind its entries (made by an older "
                                 f"foldatlas, or entries added since); open the atlas writable once to update it")


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on a file (created if missing) between processes; released if the holder dies."""
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _write(index: Path, shard: Shard) -> None:
    final = index / f"shard-{shard.first:012d}-{shard.last:012d}"
    tmp = index / f".tmp-{os.getpid()}-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    shard.save(tmp)
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    os.replace(tmp, final)


def update_shards(atlas, index_name: str, build: Callable[[int, int], S], merge: Callable[[S, S], S],
                  load: Callable[[Path], S]) -> int:
    """Index the atlas rows added since the newest shard, then merge shards; returns the rows added.

    Parameters
    ----------
    atlas : foldatlas.atlas.Atlas
    index_name : str
        Folder of the index inside the atlas folder.
    build : callable
        ``build(first, last)``: a shard of the rows ``first..last`` (possibly empty).
    merge : callable
        ``merge(older, newer)``: one shard covering both.
    load : callable
        ``load(folder)``: a shard written by its ``save``.
    """
    index = Path(atlas.folder) / index_name
    with _locked(index):
        for stale in index.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        dirs = shard_dirs(index)
        covered = shard_range(dirs[-1])[1] if dirs else 0
        last = atlas.max_rowid()
        # in pieces of at most CHUNK_ROWS rows, each written when done: an update of a million entries that is
        # killed keeps what it finished
        for first in range(covered + 1, last + 1, CHUNK_ROWS):
            _write(index, build(first, min(last, first + CHUNK_ROWS - 1)))
        shards = [load(p) for p in shard_dirs(index)]
        while len(shards) >= 2 and 2 * shards[-1].size >= shards[-2].size:
            older, newer = shards[-2], shards[-1]
            _write(index, merge(older, newer))
            for old in (older.path, newer.path):
                shutil.rmtree(old, ignore_errors=True)
            shards = [load(p) for p in shard_dirs(index)]
        return max(0, last - covered)
