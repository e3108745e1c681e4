"""Structure similarity metrics on corresponding Cα atoms.

TM-score comes from TM-align (tmtools); RMSD, GDT-TS and lDDT-Cα are computed
here on residue correspondences, in numpy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["kabsch", "superposed_rmsd", "lddt", "gdt_ts"]


def kabsch(mobile: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares rotation and translation taking ``mobile`` onto ``target``.

    Parameters
    ----------
    mobile, target : ndarray of float, shape (N, 3)

    Returns
    -------
    rotation : ndarray, shape (3, 3)
    translation : ndarray, shape (3,)
        ``mobile @ rotation.T + translation`` is the superposed copy.
    """
    mc, tc = mobile.mean(0), target.mean(0)
    h = (mobile - mc).T @ (target - tc)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rotation = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return rotation, tc - mc @ rotation.T


def superposed_rmsd(mobile: np.ndarray, target: np.ndarray) -> float:
    """RMSD after optimal superposition of corresponding points."""
    rotation, translation = kabsch(mobile, target)
    moved = mobile @ rotation.T + translation
    return float(np.sqrt(np.mean(np.sum((moved - target) ** 2, axis=1))))


def lddt(model: np.ndarray, reference: np.ndarray, cutoff: float = 15.0,
         thresholds: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0), per_residue: bool = False):
    """lDDT on Cα atoms (Mariani et al. 2013), superposition-free.

    Pairs of distinct residues closer than ``cutoff`` in the reference are
    scored; a pair counts as preserved at threshold t when its model distance is
    within t of the reference distance. The global score averages over all
    scored pairs and thresholds (AlphaFold's ``lddt``).

    Parameters
    ----------
    model, reference : ndarray of float, shape (N, 3)
        Corresponding Cα coordinates.
    per_residue : bool
        Also return the score of each residue (NaN where it has no pair).

    Returns
    -------
    float, or (float, ndarray of shape (N,))
    """
    d_ref = np.linalg.norm(reference[:, None] - reference[None], axis=-1)
    d_mod = np.linalg.norm(model[:, None] - model[None], axis=-1)
    scored = (d_ref < cutoff) & ~np.eye(len(reference), dtype=bool)
    diff = np.abs(d_ref - d_mod)
    preserved = np.mean([diff < t for t in thresholds], axis=0)
    total = float(np.sum(preserved * scored) / max(np.sum(scored), 1))
    if not per_residue:
        return total
    counts = scored.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per = np.where(counts > 0, (preserved * scored).sum(1) / counts, np.nan)
    return total, per


def gdt_ts(model: np.ndarray, reference: np.ndarray, cutoffs: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0),
           seed_length: int = 4, max_iterations: int = 10) -> float:
    """GDT-TS: mean over cutoffs of the largest fraction of residues superposable within it.

    The largest superposable set is searched LGA-style: superpose on each window
    of ``seed_length`` consecutive residues, then repeatedly re-superpose on the
    residues within the cutoff until the set stops changing.

    Parameters
    ----------
    model, reference : ndarray of float, shape (N, 3)
        Corresponding Cα coordinates.

    Returns
    -------
    float
        In [0, 1].
    """
    n = len(reference)
    if n < 3:
        return float(np.mean([np.mean(np.linalg.norm(model - reference, axis=1) <= c) for c in cutoffs]))
    stride = max(1, n // 150)
    seeds = [np.arange(s, min(s + seed_length, n)) for s in range(0, max(n - seed_length + 1, 1), stride)]
    seeds.append(np.arange(n))
    best = dict.fromkeys(cutoffs, 0)
    for cutoff in cutoffs:
        for seed in seeds:
            subset = seed
            for _ in range(max_iterations):
                if len(subset) < 3:
                    break
                rotation, translation = kabsch(model[subset], reference[subset])
                dist = np.linalg.norm(model @ rotation.T + translation - reference, axis=1)
                within = np.nonzero(dist <= cutoff)[0]
                best[cutoff] = max(best[cutoff], len(within))
                if len(within) == len(subset) and np.array_equal(within, subset):
                    break
                subset = within
            if best[cutoff] == n:
                break
    return float(np.mean([best[c] / n for c in cutoffs]))
