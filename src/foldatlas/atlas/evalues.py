"""E-values of local alignment scores: a Gumbel law fitted once to the scores of unrelated pairs.

The best local alignment score ``S`` of unrelated sequences of lengths ``m`` and ``n`` follows, to a good
approximation, ``P(S >= x) = 1 - exp(-K m n exp(-lambda x))`` (Karlin-Altschul; Foldseek fits the same law to its
3Di+AA scores). With ``lambda`` and ``K`` fitted on pairs drawn at random (almost all unrelated;
:func:`fit_gumbel`), the E-value of a hit in a database of ``N`` chains is ``N`` times that probability: hits from
atlases of different sizes then compare, and ``E <= 1e-3`` means what it does in MMseqs2 or BLAST output.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit_gumbel", "pair_pvalue", "evalue"]


def fit_gumbel(scores: np.ndarray, query_lengths: np.ndarray, target_lengths: np.ndarray) -> tuple[float, float]:
    """``(lambda, ln K)`` of unrelated pairs' scores, from the quartiles (robust to related pairs in the sample).

    ``y = lambda S - ln(m n)`` is a standard Gumbel variable located at ``ln K``: ``lambda`` is the value at which
    the interquartile range of ``y`` equals the standard Gumbel's (1.5725), ``ln K`` then places the median. Random
    pairs of real proteins include related ones (about 2% of random PDB chain pairs reach TM-score 0.5), which
    fatten the upper tail; a maximum-likelihood fit lets them pull ``lambda`` down, the quartiles do not see them.
    """
    s = np.asarray(scores, dtype=np.float64)
    log_mn = np.log(np.asarray(query_lengths, np.float64) * np.asarray(target_lengths, np.float64))
    target = np.log(-np.log(0.25)) - np.log(-np.log(0.75))

    def iqr(lam: float) -> float:
        q1, q3 = np.quantile(lam * s - log_mn, [0.25, 0.75])
        return float(q3 - q1)

    lo, hi = 1e-4, 10.0
    for _ in range(100):
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if iqr(mid) < target else (lo, mid)
    lam = float(np.sqrt(lo * hi))
    log_k = float(np.median(lam * s - log_mn) + np.log(np.log(2.0)))
    return lam, log_k


def pair_pvalue(score, query_length, target_length, lam: float, log_k: float) -> np.ndarray:
    """Probability that an unrelated pair of these lengths scores at least ``score``."""
    x = np.asarray(score, np.float64)
    expected = np.exp(log_k - lam * x) * np.asarray(query_length, np.float64) * np.asarray(target_length, np.float64)
    return -np.expm1(-expected)


def evalue(score, query_length, target_length, chains: int, lam: float, log_k: float) -> np.ndarray:
    """Expected number of unrelated chains in a database of ``chains`` scoring at least ``score``."""
    return chains * pair_pvalue(score, query_length, target_length, lam, log_k)
