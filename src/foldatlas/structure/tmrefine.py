"""TM-scores of many chain pairs at a fraction of TM-align's cost: TM-align's iterations from given seed alignments.

TM-align (Zhang & Skolnick 2005) tries several initial alignments (gapless threading, secondary structure,
fragment superpositions), and improves each by alternating a superposition that maximises the TM-score of the
aligned pairs (TM-score's fragment search) with a Needleman-Wunsch alignment scored by ``1 / (1 + d^2 / d0^2)``
under that superposition. About 40 ms a pair on one core of this project's machine: too slow to rank the hundreds of
candidates a structure search passes on (``BENCHMARKS.md``). This module runs the same two steps, compiled with
numba, from three seeds per pair: the structural-alphabet alignments the search has already made (local and
global, from pyopal), and TM-align's first seed, the best gapless threading (every second shift scored by one
superposition, the best few and their neighbours by three; skipped where both given seeds superpose below TM-score
:data:`LOW`). Every seed is superposed, the best :data:`DEEP` are iterated (a seed's rounds stop when it falls
below :data:`BEHIND` of an earlier seed's result or reaches an alignment an earlier seed reached). A coarse fragment
search (two fragment lengths) serves the iterations; the final superposition searches all fragment lengths, once
per pair. About 1-2 ms a pair on one core. The settings were chosen on the structure-search benchmark
(BENCHMARKS.md, "Structure search ranked by refined TM-scores").

Superpositions use Horn's quaternion method (the largest eigenvector of a symmetric 4x4 matrix, found by Jacobi
rotations), so no LAPACK is needed inside the compiled code.
"""

from __future__ import annotations

import numpy as np

__all__ = ["refine_tm_scores", "REFINED_COLUMNS"]

# Columns of refine_tm_scores' output.
REFINED_COLUMNS = ("tm_query", "tm_target", "rmsd", "aligned", "identical",
                   "r00", "r01", "r02", "r10", "r11", "r12", "r20", "r21", "r22", "t0", "t1", "t2")
GAP_OPEN = -0.6  # TM-align's gap opening score in its dynamic programming
STEP = 40  # fragment start step of TM-score's search (TM-align's simplify_step during its iterations)
ITERATIONS = 3  # alignment / superposition rounds per seed
GAPLESS_KEEP = 5  # gapless shifts scored in full (with their neighbours) after the one-superposition pass
GAPLESS_STRIDE = 2  # every this many shifts scored in the one-superposition pass
DEEP = 3  # seeds iterated per pair (the best by their first superposition)
BEHIND = 0.9  # a seed's iterations stop once its score is below this fraction of an earlier seed's result
LOW = 0.2  # no gapless threading for a pair whose given seeds' first superpositions all score below this

def refine_tm_scores(query_ca: np.ndarray, query_seq: np.ndarray, targets_ca: list[np.ndarray],
                     targets_seq: list[np.ndarray], seeds: list[list[tuple[np.ndarray, np.ndarray]]],
                     threads: int = 1) -> np.ndarray:
    """TM-scores of the query against each target, after TM-align's iterations from the given seeds.

    Parameters
    ----------
    query_ca : ndarray, shape (m, 3)
        The query's C-alpha coordinates.
    query_seq : ndarray of int, shape (m,)
        The query's residue codes (any integer coding; used for the identity of aligned pairs).
    targets_ca : list of ndarray, shape (n_k, 3)
        Each target's C-alphas.
    targets_seq : list of ndarray of int
        Each target's residue codes (the query's coding).
    seeds : list of list of (ndarray, ndarray)
        Per target, seed alignments as aligned query and target residue indices (increasing). The best gapless
        threading is added as a seed for every target.
    threads : int
        Threads (the compiled kernels release the GIL).

    Returns
    -------
    ndarray of float64, shape (len(targets_ca), 17)
        Per target the columns of :data:`REFINED_COLUMNS`: TM-score normalised by the query's and by the target's
        length, RMSD and number of the aligned pairs within 5 A, identical residues among them, and the
        superposition of the target onto the query (``x_query = R x_target + t``; ``R`` row-major).

    Raises
    ------
    ValueError
        Lists of different lengths, a seed index outside its chain, a seed pairing unequal numbers of residues, or
        coordinates that are not finite (checked here: the compiled kernels do not check indices).
    """
    from foldatlas.structure import _tmrefine_kernels as kernels  # compiled, or loaded from numba's cache

    n = len(targets_ca)
    out = np.zeros((n, len(REFINED_COLUMNS)))
    if n == 0:
        return out
    if not (len(targets_seq) == len(seeds) == n):
        raise ValueError("targets_ca, targets_seq and seeds must have one item per target")
    q = np.ascontiguousarray(query_ca, dtype=np.float64)
    qs = np.ascontiguousarray(query_seq, dtype=np.int64)
    lengths = np.array([len(t) for t in targets_ca], dtype=np.int64)
    toff = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tca = np.ascontiguousarray(np.concatenate([np.asarray(t, np.float64).reshape(-1, 3) for t in targets_ca]))
    tseq = np.ascontiguousarray(np.concatenate([np.asarray(s, np.int64) for s in targets_seq]))
    flat = [pair for per in seeds for pair in per]
    seed_count = np.array([len(per) for per in seeds], dtype=np.int64)
    seed_first = np.concatenate([[0], np.cumsum(seed_count)]).astype(np.int64)
    seed_len = np.array([len(qi) for qi, _ in flat], dtype=np.int64)
    seed_off = np.concatenate([[0], np.cumsum(seed_len)]).astype(np.int64)
    sq = np.concatenate([np.asarray(qi, np.int64) for qi, _ in flat]) if flat else np.zeros(0, np.int64)
    st = np.concatenate([np.asarray(ti, np.int64) for _, ti in flat]) if flat else np.zeros(0, np.int64)
    _check_inputs(q, tca, lengths, flat, seed_count, seed_len, sq, st)
    args = (q, qs, tca, tseq, toff, sq, st, seed_off, seed_first, GAP_OPEN, STEP, ITERATIONS, GAPLESS_KEEP,
            GAPLESS_STRIDE, DEEP, BEHIND, LOW)
    threads = max(1, min(int(threads), n))
    if threads == 1:
        kernels.refine_batch(*args, 0, n, out)
        return out
    from concurrent.futures import ThreadPoolExecutor

    # four blocks per thread: a thread that drew long targets does not hold the others up
    bounds = np.linspace(0, n, 4 * threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda k: kernels.refine_batch(*args, bounds[k], bounds[k + 1], out), range(len(bounds) - 1)))
    return out


def _check_inputs(q: np.ndarray, tca: np.ndarray, lengths: np.ndarray, flat: list, seed_count: np.ndarray,
                  seed_len: np.ndarray, sq: np.ndarray, st: np.ndarray) -> None:
    """Refuse what the compiled kernels cannot take safely: they do not check indices (a seed pointing past its
    chain reads memory that is not the chain's) and their superposition needs finite coordinates."""
    if q.ndim != 2 or q.shape[1] != 3:
        raise ValueError(f"query_ca must have shape (m, 3), not {q.shape}")
    if not (np.isfinite(q).all() and np.isfinite(tca).all()):
        raise ValueError("C-alpha coordinates must be finite")
    if any(len(ti) != n for (_, ti), n in zip(flat, seed_len)):
        raise ValueError("each seed must pair as many query residues as target residues")
    if len(sq) and (sq.min() < 0 or sq.max() >= len(q)):
        raise ValueError(f"a seed's query index is outside the query's {len(q)} residues")
    owner_length = np.repeat(np.repeat(lengths, seed_count), seed_len)
    if len(st) and ((st < 0).any() or (st >= owner_length).any()):
        raise ValueError("a seed's target index is outside its target's residues")
