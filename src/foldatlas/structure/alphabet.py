"""A structural alphabet: each residue's backbone geometry and its closest tertiary contact as one of 20 letters.

The idea is Foldseek's (van Kempen et al., 2023: describe each residue by its interaction with its spatial nearest
neighbour, so that a structure becomes a string that ordinary sequence alignment can search); the features, the
states and the substitution matrix here are foldatlas' own, fitted by :mod:`foldatlas.train.alphabet`. From
C-alpha coordinates only, so that any structure (experimental, predicted, backbone-only) can be encoded:

* residue ``i``'s frame from C-alpha ``i-1, i, i+1``: ``x`` along ``i-1 -> i+1``, ``y`` toward the outside of the
  bend at ``i`` (roughly where the side chain points), ``z = x cross y``;
* its partner ``j``: the residue with ``|i - j| >= 3`` whose virtual centre (2.5 A from the C-alpha along ``y``)
  is nearest to ``i``'s, so that partners are side-chain contacts rather than the next turn of a helix;
* 14 features: the three frame-axis cosines between ``i`` and ``j``, the direction of ``j`` in ``i``'s frame, the
  C-alpha distance, the signed log of the sequence separation, the virtual bond angle at ``i`` and the virtual
  dihedral ``i-1 .. i+2`` (sine and cosine), the separation's sign, and ``j``'s bond angle and dihedral cosine;
* standardised, projected on the directions that vary least between structurally aligned residues relative to
  their overall spread (a generalised eigenproblem fitted on TM-aligned pairs), and assigned to the nearest of 20
  centroids. Residues without a defined frame (chain ends, gaps) are ``X``.

Rotation- and translation-invariant by construction (tested). numpy only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["StructureAlphabet", "ca_features", "load_alphabet", "DEFAULT_ALPHABET", "LETTERS", "NUM_FEATURES", "karlin_lambda"]

LETTERS = "ACDEFGHIKLMNPQRSTVWY"  # state k is written as LETTERS[k]; X: undefined
NUM_FEATURES = 14
DEFAULT_ALPHABET = "foldatlas-3d-alphabet"
_MIN_SEPARATION = 3
_VIRTUAL_CENTRE = 2.5  # A from the C-alpha along the frame's y axis
_MAX_BOND = 4.3  # consecutive C-alphas farther apart than this are a chain break


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-8)


def ca_features(ca: np.ndarray) -> np.ndarray:
    """Per-residue features of a chain's C-alpha trace.

    Parameters
    ----------
    ca : ndarray of float, shape (L, 3)

    Returns
    -------
    ndarray of float64, shape (L, NUM_FEATURES)
        NaN rows where a residue has no frame (chain ends, next to a break) or no partner.
    """
    ca = np.asarray(ca, dtype=np.float64)
    n = len(ca)
    out = np.full((n, NUM_FEATURES), np.nan)
    if n < 5:
        return out
    bond = np.linalg.norm(np.diff(ca, axis=0), axis=1)
    ok = np.zeros(n, bool)
    ok[1:-1] = (bond[:-1] < _MAX_BOND) & (bond[1:] < _MAX_BOND)
    prev, nxt = np.roll(ca, 1, axis=0), np.roll(ca, -1, axis=0)
    x = _unit(nxt - prev)
    y = _unit((ca - prev) - (nxt - ca))
    y = _unit(y - np.sum(y * x, axis=1, keepdims=True) * x)
    z = np.cross(x, y)
    centre = ca + _VIRTUAL_CENTRE * y
    idx = np.arange(n)
    j = np.zeros(n, dtype=np.int64)
    found = np.zeros(n, bool)
    sq = np.einsum("ij,ij->i", centre, centre)
    for start in range(0, n, 512):  # nearest partner, in row blocks (memory 512 x L); squared distances
        rows = idx[start:start + 512]
        dist = sq[rows, None] + sq[None] - 2.0 * (centre[rows] @ centre.T)
        dist[np.abs(rows[:, None] - idx[None]) < _MIN_SEPARATION] = np.inf
        dist[:, ~ok] = np.inf
        j[rows] = np.argmin(dist, axis=1)
        found[rows] = np.isfinite(dist[np.arange(len(rows)), j[rows]])
    has = ok & found
    d = ca[j] - ca
    dn = np.linalg.norm(d, axis=1)
    u = d / np.maximum(dn, 1e-8)[:, None]
    sep = j - idx
    # virtual bond angle at i and dihedral i-1, i, i+1, i+2
    b1, b2 = ca - prev, nxt - ca
    cos_angle = np.sum(_unit(-b1) * _unit(b2), axis=1)
    nxt2 = np.roll(ca, -2, axis=0)
    b3 = nxt2 - nxt
    n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
    m1 = np.cross(_unit(n1), _unit(b2))
    dihedral = np.arctan2(np.sum(m1 * _unit(n2), axis=1), np.sum(_unit(n1) * _unit(n2), axis=1))
    dihedral_ok = np.zeros(n, bool)
    dihedral_ok[:-2] = ok[:-2] & (bond[1:] < _MAX_BOND)
    feats = np.stack([
        np.sum(x * x[j], axis=1), np.sum(y * y[j], axis=1), np.sum(z * z[j], axis=1),
        np.sum(u * x, axis=1), np.sum(u * y, axis=1), np.sum(u * z, axis=1),
        dn / 10.0, np.sign(sep) * np.log(np.maximum(np.abs(sep), 1)) / 5.0, cos_angle,
        np.where(dihedral_ok, np.sin(dihedral), 0.0), np.where(dihedral_ok, np.cos(dihedral), 0.0),
        np.sign(sep).astype(float), cos_angle[j], np.where(dihedral_ok[j], np.cos(dihedral[j]), 0.0),
    ], axis=1)
    out[has] = feats[has]
    return out


def karlin_lambda(matrix: np.ndarray, background: np.ndarray) -> float:
    """Karlin-Altschul lambda: the positive root of ``sum_ab q_a q_b exp(lambda S_ab) = 1``.

    Parameters
    ----------
    matrix : ndarray, shape (k, k)
        Substitution scores (negative expected score under ``background``).
    background : ndarray, shape (k,)
        Letter frequencies.
    """
    q = np.asarray(background, dtype=np.float64)
    s = np.asarray(matrix, dtype=np.float64)
    qq = np.outer(q, q)

    def f(lam: float) -> float:
        return float(np.sum(qq * np.exp(lam * s)) - 1.0)

    lo, hi = 1e-6, 1.0
    while f(hi) < 0:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class StructureAlphabet:
    """Centroids, feature scaling and the substitution matrix of a structural alphabet.

    Attributes
    ----------
    centroids : ndarray, shape (20, D)
        In projected feature space.
    mean, std : ndarray, shape (NUM_FEATURES,)
    projection : ndarray, shape (NUM_FEATURES, D)
        Applied to standardised features.
    matrix : ndarray of int, shape (21, 21)
        Substitution scores (half-bits) over ``LETTERS + "X"``.
    gap_open, gap_extend : int
        Alignment gap penalties, in the matrix' units.
    background : ndarray, shape (20,)
        State frequencies of the training chains.
    name : str
    """

    centroids: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    projection: np.ndarray
    matrix: np.ndarray
    gap_open: int
    gap_extend: int
    background: np.ndarray = None
    name: str = DEFAULT_ALPHABET

    def project(self, features: np.ndarray) -> np.ndarray:
        """Standardised, projected features (rows without NaN)."""
        return ((features - self.mean) / self.std) @ self.projection

    @property
    def lam(self) -> float:
        """Karlin-Altschul lambda of the matrix: the positive root of sum_ab q_a q_b exp(lambda S_ab) = 1.

        A local alignment score ``S`` of sequences of lengths ``m`` and ``n`` is then compared across targets
        as ``S - ln(m n) / lambda`` (the log of its E-value, up to a constant).
        """
        q = np.full(20, 1 / 20) if self.background is None else np.asarray(self.background, dtype=np.float64)
        return karlin_lambda(np.asarray(self.matrix, dtype=np.float64)[:20, :20], q)

    @property
    def letters(self) -> str:
        """The alphabet of :attr:`matrix`: the 20 states, then X."""
        return LETTERS + "X"

    def states(self, ca: np.ndarray) -> np.ndarray:
        """State index (0-19) of every residue, -1 where undefined."""
        f = ca_features(ca)
        good = ~np.isnan(f).any(axis=1)
        out = np.full(len(f), -1, dtype=np.int64)
        if good.any():
            z = self.project(f[good])
            d = ((z[:, None, :] - self.centroids[None]) ** 2).sum(-1)
            out[good] = np.argmin(d, axis=1)
        return out

    def encode(self, ca: np.ndarray) -> str:
        """The chain as a string over :attr:`letters`."""
        return "".join("X" if s < 0 else LETTERS[s] for s in self.states(ca))

    def scoring_matrix(self):
        """The substitution matrix as a ``scoring_matrices.ScoringMatrix`` (for pyopal)."""
        from scoring_matrices import ScoringMatrix

        return ScoringMatrix(self.matrix.tolist(), alphabet=self.letters, name=self.name)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {"name": self.name, "letters": self.letters, "num_features": NUM_FEATURES,
                "centroids": self.centroids.round(6).tolist(), "mean": self.mean.round(6).tolist(),
                "std": self.std.round(6).tolist(), "projection": self.projection.round(6).tolist(),
                "matrix": self.matrix.astype(int).tolist(),
                "gap_open": self.gap_open, "gap_extend": self.gap_extend,
                "background": None if self.background is None else np.round(self.background, 6).tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> StructureAlphabet:
        """Inverse of :meth:`to_dict`."""
        if data.get("num_features") != NUM_FEATURES or data.get("letters") != LETTERS + "X":
            raise ValueError("structure alphabet file of another version")
        background = None if data.get("background") is None else np.array(data["background"])
        return cls(np.array(data["centroids"]), np.array(data["mean"]), np.array(data["std"]),
                   np.array(data["projection"]), np.array(data["matrix"], dtype=np.int64), int(data["gap_open"]),
                   int(data["gap_extend"]),
                   background, data.get("name", DEFAULT_ALPHABET))

    def save(self, folder: str | Path) -> None:
        """Write ``alphabet.json`` into ``folder``."""
        from foldatlas.files import atomic_write_text

        atomic_write_text(Path(folder) / "alphabet.json", json.dumps(self.to_dict(), indent=1))


@lru_cache(maxsize=4)
def load_alphabet(folder: str | None = None) -> StructureAlphabet:
    """The shipped alphabet (``weights/foldatlas-3d-alphabet``), or one saved in ``folder``."""
    path = Path(folder) if folder else Path(__file__).resolve().parent.parent / "weights" / DEFAULT_ALPHABET
    return StructureAlphabet.from_dict(json.loads((path / "alphabet.json").read_text()))
