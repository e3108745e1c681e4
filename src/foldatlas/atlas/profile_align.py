"""Smith-Waterman scores of one query profile against a batch of targets, vectorised over the batch (numpy).

Foldseek scores an alignment position by the 3Di substitution score plus the amino-acid one, a 420-letter target
alphabet (20 3Di states plus undefined, times 20 amino acids plus X) that SIMD libraries built for 20-odd letters
(pyopal, parasail) cannot take. This module computes local alignment scores with affine gaps (Gotoh) from a
position-specific query profile ``P[i, c]`` (query position ``i`` against target letter ``c``) over the anti-diagonals
of the dynamic-programming matrix, all targets of a batch at once: about ``(m + n) x 10`` numpy operations on arrays
of ``batch x m`` cells. Scores only, no traceback: the search ranks by them, TM-align aligns.
"""

from __future__ import annotations

import numpy as np

__all__ = ["profile_scores", "PAD"]

PAD = -1.0e4  # score of a padding letter: a padded cell never raises a local alignment


def profile_scores(profile: np.ndarray, targets: list[np.ndarray], gap_open: float, gap_extend: float,
                   batch: int = 256) -> np.ndarray:
    """Best local alignment score of the query profile against each target.

    Parameters
    ----------
    profile : ndarray, shape (m, A)
        Score of query position ``i`` against target letter ``c`` (``A`` letters).
    targets : list of ndarray of int
        Each target's letters (0 .. A-1).
    gap_open, gap_extend : float
        Affine gap costs (positive): a gap of length ``k`` costs ``gap_open + (k - 1) * gap_extend``.
    batch : int
        Targets aligned together (memory ``batch x (m + longest target)`` floats per array).

    Returns
    -------
    ndarray of float32, shape (len(targets),)
        The Smith-Waterman score of each target (0 for an empty one).
    """
    m, letters = profile.shape
    padded = np.concatenate([profile.astype(np.float32), np.full((m, 1), PAD, np.float32)], axis=1)
    out = np.zeros(len(targets), dtype=np.float32)
    if m == 0:
        return out
    order = np.argsort([len(t) for t in targets], kind="stable")  # similar lengths together: less padding
    for start in range(0, len(targets), batch):
        idx = order[start:start + batch]
        out[idx] = _batch(padded, [targets[i] for i in idx], letters, float(gap_open), float(gap_extend))
    return out


def _batch(profile: np.ndarray, targets: list[np.ndarray], pad: int, go: float, ge: float) -> np.ndarray:
    m = profile.shape[0]
    b = len(targets)
    n = max((len(t) for t in targets), default=0)
    if n == 0:
        return np.zeros(b, np.float32)
    codes = np.full((b, n), pad, dtype=np.int64)
    for k, t in enumerate(targets):
        codes[k, :len(t)] = t
    neg = np.float32(-1.0e9)
    # index s holds query position s - 1; index 0 is the boundary before the query
    h_prev2 = np.zeros((b, m + 1), np.float32)  # H on diagonal d - 2
    h_prev1 = np.zeros((b, m + 1), np.float32)  # H on diagonal d - 1
    h_cur = np.zeros((b, m + 1), np.float32)
    e = np.full((b, m + 1), neg, np.float32)  # gap along the target (from the left), last written diagonal
    f = np.full((b, m + 1), neg, np.float32)  # gap along the query (from above)
    best = np.zeros(b, np.float32)
    go, ge = np.float32(go), np.float32(ge)
    for d in range(m + n - 1):
        lo, hi = max(0, d - n + 1), min(m - 1, d)
        i = np.arange(lo, hi + 1)
        s = profile[i[None, :], codes[:, d - i]]  # [b, cells]
        cur, left = slice(lo + 1, hi + 2), slice(lo, hi + 1)
        e_new = np.maximum(h_prev1[:, cur] - go, e[:, cur] - ge)
        f_new = np.maximum(h_prev1[:, left] - go, f[:, left] - ge)
        h = np.maximum(h_prev2[:, left] + s, 0.0)
        np.maximum(h, e_new, out=h)
        np.maximum(h, f_new, out=h)
        e[:, cur] = e_new
        f[:, cur] = f_new
        h_cur[:, cur] = h
        np.maximum(best, h.max(axis=1), out=best)
        h_prev2, h_prev1, h_cur = h_prev1, h_cur, h_prev2
    return best
