"""The structure-search index of an atlas: every chain's structural-alphabet strings, C-alpha trace and sequence.

Shards (see :mod:`foldatlas.atlas.shards`) of ``.npy`` arrays per range of entry row ids: the chains' Foldseek 3Di
states (:mod:`foldatlas.structure.threedi`, what the prefilter and the 3Di+AA alignment score) and states of the
project's own alphabet (:mod:`foldatlas.structure.alphabet`, kept for comparison), their C-alpha coordinates as
int16 tenths of an Angstrom about the chain's centre (what TM-align and the alignment superposition use, without
decoding the stored structures; TM-scores move by less than 0.001) and their residues. The index folder is named
after the alphabet's fingerprint and the shard layout's version, so an atlas indexed with another alphabet or layout
is indexed afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foldatlas.atlas.shards import load_arrays, save_arrays, shard_dirs, update_shards
from foldatlas.structure.alphabet import StructureAlphabet, load_alphabet

__all__ = ["StructureShard", "ChainTrace", "chain_traces", "index_dir", "load_structure_shards",
           "update_structure_index"]

_FORMAT = 3  # part of the index folder's name: a shard layout change makes a new index
_ARRAYS = ("target_row", "target_chain", "offsets", "centre", "states", "states3di", "ca", "residues")
_SCALE = 10.0  # int16 units per Angstrom


@dataclass(frozen=True)
class ChainTrace:
    """One chain of a structure: its ID, C-alpha coordinates (float64, shape (L, 3)), sequence and 3Di states
    (uint8, :mod:`foldatlas.structure.threedi`; all undefined when only C-alphas are known)."""

    chain_id: str
    ca: np.ndarray
    sequence: str
    states3di: np.ndarray | None = None

    @property
    def threedi(self) -> np.ndarray:
        """The 3Di states (undefined everywhere if none were computed)."""
        from foldatlas.structure.threedi import UNDEFINED

        return self.states3di if self.states3di is not None else np.full(len(self.ca), UNDEFINED, np.uint8)


def chain_traces(atoms, threedi: bool = True) -> list[ChainTrace]:
    """The protein chains of a biotite ``AtomArray``, in file order, with their 3Di states unless ``threedi`` is
    False (which saves the encoder's time where only C-alphas and sequences are needed)."""
    from foldatlas.structure.io import ca_trace
    from foldatlas.structure.threedi import threedi_states

    coords, sequence, chains = ca_trace(atoms)
    states = threedi_states(atoms) if threedi else None
    if states is not None and len(states) != len(coords):  # chains interleaved in the file: no reliable order
        states = None
    out, start = [], 0
    for k in range(1, len(chains) + 1):
        if k == len(chains) or chains[k] != chains[k - 1]:
            out.append(ChainTrace(str(chains[start]), coords[start:k], sequence[start:k],
                                  None if states is None else states[start:k]))
            start = k
    return out


@dataclass
class StructureShard:
    """One shard: the chains of entries ``first..last``."""

    path: Path | None
    first: int
    last: int
    target_row: np.ndarray  # [T] int64 entry row id
    target_chain: np.ndarray  # [T] str chain ID
    offsets: np.ndarray  # [T + 1] int64 into the residue arrays
    centre: np.ndarray  # [T, 3] float64 C-alpha centre of each chain (its stored coordinates are about it)
    states: np.ndarray  # [R] uint8 alphabet state (20 = undefined)
    states3di: np.ndarray  # [R] uint8 3Di state (20 = undefined)
    ca: np.ndarray  # [R, 3] int16 C-alpha, tenths of an Angstrom about the chain centre
    residues: np.ndarray  # [R] uint8 one-letter codes

    @property
    def size(self) -> int:
        """Chains in the shard."""
        return len(self.target_row)

    def target_ca(self, t: int) -> np.ndarray:
        """C-alpha coordinates of chain ``t`` (float64, Angstrom)."""
        return self.ca[self.offsets[t]:self.offsets[t + 1]].astype(np.float64) / _SCALE

    def target_sequence(self, t: int) -> str:
        """Residues of chain ``t``."""
        return self.residues[self.offsets[t]:self.offsets[t + 1]].tobytes().decode("ascii")

    def target_states(self, t: int) -> str:
        """Alphabet string of chain ``t``."""
        from foldatlas.structure.alphabet import LETTERS

        return "".join((LETTERS + "X")[s] for s in self.states[self.offsets[t]:self.offsets[t + 1]])

    def target_states3di(self, t: int) -> np.ndarray:
        """3Di states of chain ``t`` (uint8, 20 = undefined)."""
        return self.states3di[self.offsets[t]:self.offsets[t + 1]]

    @classmethod
    def build(cls, rows: list[int], chain_ids: list[str], traces: list[np.ndarray], sequences: list[str],
              states: list[np.ndarray], first: int, last: int,
              states3di: list[np.ndarray] | None = None) -> StructureShard:
        """Index chains (traces in Angstrom, states as 0-19 / -1, 3Di states as 0-20)."""
        lengths = np.array([len(t) for t in traces], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        if traces:
            ca = np.concatenate([np.round((t - t.mean(axis=0)) * _SCALE) for t in traces]).clip(-32767, 32767)
            st = np.concatenate([np.where(s < 0, 20, s) for s in states]).astype(np.uint8)
            res = np.frombuffer("".join(sequences).encode("ascii"), dtype=np.uint8).copy()
            st3 = np.concatenate(states3di).astype(np.uint8) if states3di is not None \
                else np.full(len(st), 20, np.uint8)
        else:
            ca, st, res, st3 = np.zeros((0, 3)), np.zeros(0, np.uint8), np.zeros(0, np.uint8), np.zeros(0, np.uint8)
        centre = np.array([t.mean(axis=0) for t in traces]).reshape(-1, 3)
        return cls(None, first, last, np.asarray(rows, np.int64), np.asarray(chain_ids, dtype="U4"), offsets, centre,
                   st, st3, ca.astype(np.int16), res)

    def save(self, folder: Path) -> None:
        """Write the arrays into ``folder`` (created)."""
        save_arrays(self, folder, _ARRAYS)

    @classmethod
    def load(cls, folder: Path) -> StructureShard:
        """Memory-map a shard written by :meth:`save`."""
        first, last, arrays = load_arrays(folder, _ARRAYS)
        return cls(folder, first, last, **arrays)


def _fingerprint(alphabet: StructureAlphabet) -> str:
    return hashlib.sha256(json.dumps(alphabet.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def index_dir(atlas_folder: str | Path, alphabet: StructureAlphabet | None = None) -> Path:
    """The structure index folder of an atlas for an alphabet (default: the shipped one)."""
    return Path(atlas_folder) / f"structindex-v{_FORMAT}-{_fingerprint(alphabet or load_alphabet())}"


def load_structure_shards(atlas_folder: str | Path, alphabet: StructureAlphabet | None = None
                          ) -> list[StructureShard]:
    """The shards of an atlas' structure index, in row order."""
    return [StructureShard.load(p) for p in shard_dirs(index_dir(atlas_folder, alphabet))]


def _merge(a: StructureShard, b: StructureShard) -> StructureShard:
    return StructureShard(None, a.first, b.last, np.concatenate([a.target_row, b.target_row]),
                          np.concatenate([a.target_chain, b.target_chain]),
                          np.concatenate([a.offsets[:-1], b.offsets + a.offsets[-1]]),
                          np.concatenate([a.centre, b.centre]), np.concatenate([a.states, b.states]),
                          np.concatenate([a.states3di, b.states3di]),
                          np.concatenate([a.ca, b.ca]), np.concatenate([a.residues, b.residues]))


def _index_blobs(batch: list[tuple[int, bytes]], alphabet: StructureAlphabet | None = None) -> list[tuple]:
    """``(rowid, chain id, C-alphas, sequence, alphabet states, 3Di states)`` of every chain of stored structures;
    runs in worker processes too."""
    from foldatlas.atlas import codec

    alphabet = alphabet or load_alphabet()
    out = []
    for rowid, blob in batch:
        for chain in chain_traces(codec.decode_trace_atoms(blob)):
            out.append((rowid, chain.chain_id, chain.ca, chain.sequence, alphabet.states(chain.ca), chain.threedi))
    return out


PARALLEL_ROWS = 4000  # rows to index from which an update uses worker processes (their start costs ~2 s)
_BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextmanager
def _one_blas_thread_per_process() -> Iterator[None]:
    """Worker processes started inside this block run numpy's BLAS on one thread: the products per chain are
    small, and two processes each spinning two BLAS threads on two cores took twice the time (9.3 ms of CPU per
    entry on one thread against 10.7 ms on two, before the contention)."""
    saved = {k: os.environ.get(k) for k in _BLAS_THREADS}
    os.environ.update({k: "1" for k in _BLAS_THREADS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def update_structure_index(atlas, alphabet: StructureAlphabet | None = None, workers: int | None = None) -> int:
    """Index the entries added since the last update (decoding their stored structures); returns rows added.

    Parameters
    ----------
    atlas : foldatlas.atlas.Atlas
    alphabet : StructureAlphabet, optional
        Default: the shipped one.
    workers : int, optional
        Processes that decode and encode structures (0: this one). Default: one per CPU (at most 4) when
        :data:`PARALLEL_ROWS` rows or more are new, else 0. Always 0 with another alphabet than the shipped one.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    custom = alphabet is not None
    alphabet = alphabet or load_alphabet()

    def build(first: int, last: int) -> StructureShard:
        rowids = [r for r, _ in atlas.iter_sequences(first - 1, last)]
        if custom:  # worker processes rebuild the shipped alphabet only
            n = 0
        elif workers is not None:
            n = workers
        else:
            n = min(len(os.sched_getaffinity(0)), 4) if len(rowids) >= PARALLEL_ROWS else 0
        chains: list[tuple] = []
        if n:
            # spawn: the caller may hold torch's thread pool, which does not survive a fork. Blobs are read a
            # window at a time, so memory holds a few thousand of them, not the whole range.
            window = 256 * 4 * n
            with _one_blas_thread_per_process(), \
                    ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
                for w in range(0, len(rowids), window):
                    part = rowids[w:w + window]
                    batches = [list(atlas.iter_blobs("structure", part[k:k + 256])) for k in range(0, len(part), 256)]
                    chains.extend(c for done in pool.map(_index_blobs, batches) for c in done)
        else:
            for k in range(0, len(rowids), 256):
                chains.extend(_index_blobs(list(atlas.iter_blobs("structure", rowids[k:k + 256])), alphabet))
        if not chains:
            return StructureShard.build([], [], [], [], [], first, last, [])
        rows, chain_ids, traces, seqs, states, states3di = (list(x) for x in zip(*chains))
        return StructureShard.build(rows, chain_ids, traces, seqs, states, first, last, states3di)

    return update_shards(atlas, index_dir(atlas.folder, alphabet).name, build, _merge, StructureShard.load)
