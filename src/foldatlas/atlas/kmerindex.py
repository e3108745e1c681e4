"""A 3Di k-mer index of a structure shard: the stage in front of the Smith-Waterman scan for large atlases.

Foldseek's prefilter (MMseqs2's, run on 3Di strings): the query's k-mers and every k-mer scoring at least a
threshold against them under the 3Di substitution matrix ("similar k-mers") are looked up in an index of the
atlas' k-mers; a target's score is the largest number of such hits on one diagonal (an ungapped stretch the query
and the target share). The best-scoring chains, a few percent of a large atlas, then go to the full Smith-Waterman
scan (:mod:`foldatlas.atlas.structsearch`), which is linear in the atlas and too slow at a million chains.

Measured on the structure-search benchmark (BENCHMARKS.md): with k = 6 and threshold 28, the chains the full scan
puts in its first 300 are mostly among the k-mer stage's best 10% (TM-align partners kept: 0.215 of 0.247 in a
21,119-chain atlas at 2,000 chains shortlisted).

The index of a shard is built once, on first use, and kept in the shard's folder (``kmer-v1-k6``; shards are
immutable, so it never goes stale). It holds, for blocks of up to :data:`BLOCK_CHAINS` chains, every k-mer code
(sorted), its chain and position: about 10 bytes per residue. Imports neither torch nor transformers.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["KmerIndex", "similar_kmers", "kmer_index", "K", "THRESHOLD", "BLOCK_CHAINS"]

K = 6  # k-mer length (Foldseek's)
# similar k-mers score at least this against the query's (3Di matrix, half bits); 26 since the search ranks by
# refined TM-scores (BENCHMARKS.md: 0.90 of the planted copies at a million chains, 30 kept 0.85)
THRESHOLD = 26
BLOCK_CHAINS = 50_000  # chains per independently sorted block (keys of one block fit int32)
_LETTERS = 20  # 3Di states 0-19; 20 is undefined and ends k-mers
_DIAGONALS = 1 << 13  # diagonals kept apart per chain (chains up to 4,096 residues; longer ones wrap)
_NAME = f"kmer-v1-k{K}"
_ARRAYS = ("codes", "chain", "pos", "distinct", "first", "blocks")


def _codes(states: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(code, chain, position)`` of every k-mer inside one chain with no undefined state."""
    states = np.asarray(states, np.int64)
    lengths = np.diff(offsets)
    chain = np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)
    pos = np.arange(len(states), dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    code = np.zeros(len(states), np.int64)
    valid = np.ones(len(states), bool)
    for j in range(K):
        shifted = np.concatenate([states[j:], np.full(j, _LETTERS)])
        valid &= shifted < _LETTERS
        code = code * _LETTERS + np.minimum(shifted, _LETTERS - 1)
    valid &= pos + K <= np.repeat(lengths, lengths)
    valid &= pos < 65_536
    keep = np.flatnonzero(valid)
    return code[keep], chain[keep], pos[keep]


@dataclass
class KmerIndex:
    """The k-mers of one shard's chains, in blocks of chains, each block sorted by code.

    Attributes
    ----------
    codes : ndarray of uint32
        K-mer codes (base 20), sorted within each block.
    chain : ndarray of int32
        Shard-local chain index of each k-mer.
    pos : ndarray of uint16
        Position of each k-mer in its chain.
    distinct, first : ndarray of uint32
        Each block's distinct codes (sorted) and where each one's k-mers start in the block: a lookup searches
        these, about a third as many as the k-mers.
    blocks : ndarray of int64, shape (B + 1, 3)
        Row b: the first k-mer, first chain and first distinct code of block b; the last row closes the arrays.
    """

    codes: np.ndarray
    chain: np.ndarray
    pos: np.ndarray
    distinct: np.ndarray
    first: np.ndarray
    blocks: np.ndarray

    @classmethod
    def build(cls, states: np.ndarray, offsets: np.ndarray) -> KmerIndex:
        """Index the chains ``offsets`` cut ``states`` (3Di states, 20 = undefined) into."""
        codes, chains, poss, distinct, firsts, blocks = [], [], [], [], [], [(0, 0, 0)]
        n = len(offsets) - 1
        for c0 in range(0, n, BLOCK_CHAINS):
            c1 = min(n, c0 + BLOCK_CHAINS)
            lo, hi = offsets[c0], offsets[c1]
            code, chain, pos = _codes(states[lo:hi], offsets[c0:c1 + 1] - lo)
            order = np.argsort(code, kind="stable")
            code = code[order].astype(np.uint32)
            codes.append(code)
            chains.append(chain[order] + c0)
            poss.append(pos[order].astype(np.uint16))
            starts = np.flatnonzero(np.concatenate([[True], code[1:] != code[:-1]])) if len(code) else \
                np.zeros(0, np.int64)
            distinct.append(code[starts])
            firsts.append(starts.astype(np.uint32))
            blocks.append((blocks[-1][0] + len(code), c1, blocks[-1][2] + len(starts)))
        if not codes:
            return cls(np.zeros(0, np.uint32), np.zeros(0, np.int32), np.zeros(0, np.uint16), np.zeros(0, np.uint32),
                       np.zeros(0, np.uint32), np.zeros((1, 3), np.int64))
        return cls(np.concatenate(codes), np.concatenate(chains).astype(np.int32), np.concatenate(poss),
                   np.concatenate(distinct), np.concatenate(firsts), np.asarray(blocks, np.int64))

    def save(self, folder: Path) -> None:
        """Write the arrays into ``folder`` (created) atomically: a temporary folder renamed."""
        tmp = folder.parent / f".tmp-{os.getpid()}-{folder.name}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in _ARRAYS:
            np.save(tmp / f"{name}.npy", getattr(self, name))
        os.replace(tmp, folder)

    @classmethod
    def load(cls, folder: Path) -> KmerIndex:
        """Memory-map an index written by :meth:`save`."""
        return cls(**{name: np.asarray(np.load(folder / f"{name}.npy", mmap_mode="r"))
                      for name in _ARRAYS})

    def block_scores(self, b: int, codes: np.ndarray, qpos: np.ndarray) -> np.ndarray:
        """Diagonal scores of block ``b``'s chains (see :meth:`scores`); ``codes`` sorted."""
        (k0, c0, u0), (k1, c1, u1) = self.blocks[b], self.blocks[b + 1]
        best = np.zeros(c1 - c0, np.int32)
        if u1 == u0:
            return best
        distinct, first = self.distinct[u0:u1], self.first[u0:u1]
        last = len(distinct) - 1
        i = np.minimum(np.searchsorted(distinct, codes), last)
        found = distinct[i] == codes
        lo = first[i].astype(np.int64)
        hi = np.where(i < last, first[np.minimum(i + 1, last)], k1 - k0)
        n = np.where(found, hi - lo, 0)
        total = int(n.sum())
        if total == 0:
            return best
        starts = np.repeat(lo - (np.cumsum(n) - n), n) + np.arange(total)
        chain = self.chain[k0:k1][starts] - c0
        diag = (self.pos[k0:k1][starts].astype(np.int32) - np.repeat(qpos, n)) & (_DIAGONALS - 1)
        key = chain * _DIAGONALS + diag  # int32: BLOCK_CHAINS x _DIAGONALS < 2**31
        key.sort()
        ends = np.flatnonzero(np.diff(key)) + 1
        run_start = np.concatenate([[0], ends])
        runs = np.diff(np.concatenate([run_start, [total]])).astype(np.int32)
        run_chain = key[run_start] // _DIAGONALS
        first = np.concatenate([[0], np.flatnonzero(np.diff(run_chain)) + 1])
        best[run_chain[first]] = np.maximum.reduceat(runs, first)
        return best

    def scores(self, codes: np.ndarray, qpos: np.ndarray, pool=None) -> np.ndarray:
        """Per chain of the shard, the largest number of the query's (similar) k-mers on one diagonal.

        Parameters
        ----------
        codes, qpos : ndarray
            The query's similar k-mers and their query positions (:func:`similar_kmers`).
        pool : concurrent.futures.Executor, optional
            Threads to score blocks in parallel (numpy's sort and lookups release the GIL).
        """
        order = np.argsort(codes, kind="stable")
        codes = np.asarray(codes, np.uint32)[order]
        qpos = np.asarray(qpos, np.int32)[order]
        nblocks = len(self.blocks) - 1
        if pool is None or nblocks < 2:
            parts = [self.block_scores(b, codes, qpos) for b in range(nblocks)]
        else:
            parts = list(pool.map(lambda b: self.block_scores(b, codes, qpos), range(nblocks)))
        return np.concatenate(parts) if parts else np.zeros(0, np.int32)


def similar_kmers(states: np.ndarray, matrix: np.ndarray, threshold: float = THRESHOLD
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Every k-mer scoring at least ``threshold`` against one of the query's k-mers.

    Parameters
    ----------
    states : ndarray of int
        The query's 3Di states (20 = undefined: k-mers containing it are skipped).
    matrix : ndarray
        The substitution matrix (at least 20 x 20; :func:`foldatlas.structure.threedi.matrix_3di`).
    threshold : float

    Returns
    -------
    codes : ndarray of int64
        K-mer codes (base 20, first state most significant).
    positions : ndarray of int64
        The query position each was generated from.
    """
    m = np.asarray(matrix, np.float64)[:_LETTERS, :_LETTERS]
    q = np.asarray(states, np.int64)
    if len(q) < K:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(q, K)
    ok = np.flatnonzero((windows < _LETTERS).all(axis=1))
    windows = windows[ok]
    best = m.max(axis=1)[windows]  # (P, K): each position's best score
    rest = np.concatenate([np.cumsum(best[:, ::-1], axis=1)[:, ::-1], np.zeros((len(ok), 1))], axis=1)[:, 1:]
    which = np.arange(len(ok))
    code = np.zeros(len(ok), np.int64)
    score = np.zeros(len(ok))
    for j in range(K):
        extended = score[:, None] + m[windows[which, j]]
        keep = extended + rest[which, j][:, None] >= threshold
        row, letter = np.nonzero(keep)
        which, code, score = which[row], code[row] * _LETTERS + letter, extended[row, letter]
    return code, ok[which]


def kmer_index(shard) -> KmerIndex:
    """The k-mer index of a structure shard: loaded from its folder, else built (and kept there when the folder
    can be written)."""
    folder = None if shard.path is None else Path(shard.path) / _NAME
    if folder is not None and (folder / "blocks.npy").exists():
        return KmerIndex.load(folder)
    index = KmerIndex.build(shard.states3di, shard.offsets)
    if folder is not None:
        try:
            index.save(folder)
        except OSError:  # a read-only copy of the atlas: use it from memory
            pass
    return index
