"""The sequence-search index of an atlas: every chain's residues and a k-mer table, in shards.

Each shard (see :mod:`foldatlas.atlas.shards` for how shards are written, merged and recovered) is a folder of
``.npy`` arrays, memory-mapped when searched, covering a range of entry row ids: the chains as digital sequences
in HMMER's alphabet (what pyhmmer aligns) and an inverted index of their 3-mers over the 20 standard residues
(what the prefilter looks up). A build or import indexes the rows it inserted.

The prefilter (:func:`diagonal_scores`) is BLAST's two-hit idea on exact 3-mers: a target scores
the most k-mer hits that fall on one diagonal band of the query-target matrix; only targets with
two or more such hits are candidates. It is written here with numpy: no maintained Python library
offers a k-mer index over protein sequences (MMseqs2 has no Python bindings).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foldatlas.atlas.shards import load_arrays, save_arrays, shard_dirs, update_shards

__all__ = ["SequenceShard", "load_shards", "update_sequence_index", "encode_digital", "diagonal_scores",
           "EASEL_AMINO", "INDEX_DIR"]

INDEX_DIR = "seqindex"
EASEL_AMINO = "ACDEFGHIKLMNPQRSTVWY-BJZOUX*~"  # HMMER's amino alphabet, in digital-code order
K = 3
NUM_WORDS = 20 ** K
BAND = 8  # diagonal band width of the two-hit rule (tolerates small indels)
_ARRAYS = ("target_row", "target_chain", "offsets", "residues", "kmer_starts", "kmer_target", "kmer_pos")

_CODE = np.full(256, EASEL_AMINO.index("X"), dtype=np.uint8)
for _i, _c in enumerate(EASEL_AMINO):
    _CODE[ord(_c)] = _i


def encode_digital(sequence: str) -> np.ndarray:
    """A sequence (one chain, upper case) as HMMER digital codes (uint8); unknown letters as X."""
    return _CODE[np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)]


def _words(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3-mer word ids and their start positions, for windows of standard residues only."""
    n = len(codes) - K + 1
    if n <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    word = np.zeros(n, np.int64)
    ok = np.ones(n, bool)
    for j in range(K):
        c = codes[j:j + n].astype(np.int64)
        ok &= c < 20
        word = word * 20 + np.minimum(c, 19)
    pos = np.flatnonzero(ok)
    return word[pos], pos


@dataclass
class SequenceShard:
    """One shard: chains of the entries with row ids ``first..last`` and their 3-mer table."""

    path: Path | None
    first: int
    last: int
    target_row: np.ndarray  # [T] int64 entry row id
    target_chain: np.ndarray  # [T] int16 chain number within the entry
    offsets: np.ndarray  # [T + 1] int64 into residues
    residues: np.ndarray  # [R] uint8 HMMER digital codes
    kmer_starts: np.ndarray  # [NUM_WORDS + 1] int64
    kmer_target: np.ndarray  # [M] int32 target index within the shard
    kmer_pos: np.ndarray  # [M] int32 position within the target

    def __post_init__(self) -> None:
        self.max_length = int(np.max(np.diff(self.offsets))) if len(self.offsets) > 1 else 0

    @property
    def num_targets(self) -> int:
        """Chains in the shard."""
        return len(self.target_row)

    @property
    def size(self) -> int:
        """Chains in the shard (what merging balances)."""
        return self.num_targets

    def target_codes(self, t: int) -> np.ndarray:
        """Digital codes of target ``t``."""
        return self.residues[self.offsets[t]:self.offsets[t + 1]]

    @classmethod
    def build(cls, rows: np.ndarray, chains: np.ndarray, codes: list[np.ndarray], first: int, last: int
              ) -> SequenceShard:
        """Index chains given as digital codes."""
        lengths = np.array([len(c) for c in codes], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        residues = np.concatenate(codes).astype(np.uint8) if codes else np.zeros(0, np.uint8)
        word, pos = _words(residues)
        if len(pos):  # drop windows that cross a chain boundary
            target = np.searchsorted(offsets, pos, side="right") - 1
            local = pos - offsets[target]
            inside = local + K <= lengths[target]
            word, target, local = word[inside], target[inside], local[inside]
        else:
            target = local = np.zeros(0, np.int64)
        order = np.argsort(word, kind="stable")
        starts = np.searchsorted(word[order], np.arange(NUM_WORDS + 1)).astype(np.int64)
        return cls(None, first, last, np.asarray(rows, np.int64), np.asarray(chains, np.int16), offsets, residues,
                   starts, target[order].astype(np.int32), local[order].astype(np.int32))

    def save(self, folder: Path) -> None:
        """Write the arrays into ``folder`` (created)."""
        save_arrays(self, folder, _ARRAYS)

    @classmethod
    def load(cls, folder: Path) -> SequenceShard:
        """Memory-map a shard written by :meth:`save`."""
        first, last, arrays = load_arrays(folder, _ARRAYS)
        return cls(folder, first, last, **arrays)


def load_shards(atlas_folder: str | Path) -> list[SequenceShard]:
    """The shards of an atlas' sequence index, in row order (memory-mapped)."""
    return [SequenceShard.load(p) for p in shard_dirs(Path(atlas_folder) / INDEX_DIR)]


def _merge(a: SequenceShard, b: SequenceShard) -> SequenceShard:
    codes = [a.target_codes(t) for t in range(a.num_targets)] + [b.target_codes(t) for t in range(b.num_targets)]
    return SequenceShard.build(np.concatenate([a.target_row, b.target_row]),
                               np.concatenate([a.target_chain, b.target_chain]), codes, a.first, b.last)


def update_sequence_index(atlas) -> int:
    """Index the entries added since the last update, then merge shards; returns the rows added.

    Parameters
    ----------
    atlas : foldatlas.atlas.Atlas
    """
    def build(first: int, last: int) -> SequenceShard:
        rows, chains, codes = [], [], []
        for rowid, sequence in atlas.iter_sequences(first - 1, last):
            for k, chain in enumerate(sequence.split(":")):
                rows.append(rowid)
                chains.append(k)
                codes.append(encode_digital(chain))
        return SequenceShard.build(np.array(rows, np.int64), np.array(chains, np.int16), codes, first, last)

    return update_shards(atlas, INDEX_DIR, build, _merge, SequenceShard.load)


def diagonal_scores(shard: SequenceShard, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-hit prefilter scores of a query against one shard.

    Parameters
    ----------
    shard : SequenceShard
    query : ndarray of uint8
        The query's digital codes.

    Returns
    -------
    targets : ndarray of int64
        Shard-local indices of targets with at least two 3-mer hits on one diagonal band.
    scores : ndarray of int64
        For each, the most hits on one band.
    """
    words, qpos = _words(query)
    if len(words) == 0 or shard.num_targets == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = shard.kmer_starts[words]
    counts = shard.kmer_starts[words + 1] - starts
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # Positions of every hit in the shard's k-mer arrays, for every query word.
    base = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    idx = base + np.arange(total)
    target = shard.kmer_target[idx].astype(np.int64)
    diag = shard.kmer_pos[idx].astype(np.int64) - np.repeat(qpos, counts) + len(query)
    bands = (shard.max_length + len(query)) // BAND + 1
    key = target * bands + diag // BAND
    key.sort()
    new = np.empty(len(key), bool)
    new[0] = True
    new[1:] = key[1:] != key[:-1]
    run_start = np.flatnonzero(new)
    run_len = np.diff(np.append(run_start, len(key)))
    two = run_len >= 2
    if not np.any(two):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    run_target = key[run_start[two]] // bands
    run_len = run_len[two]
    first = np.empty(len(run_target), bool)
    first[0] = True
    first[1:] = run_target[1:] != run_target[:-1]
    group = np.flatnonzero(first)
    return run_target[group], np.maximum.reduceat(run_len, group)
