"""Foldseek's 3Di structural alphabet, through biotite, for every residue of the C-alpha trace.

biotite (``biotite.structure.alphabet``) ships Foldseek's learned 3Di encoder (a small network on the geometry of each
residue and its nearest neighbour in space, from its N, CA, C and CB atoms; a virtual CB where CB is missing) and
the 3Di substitution matrix (``SubstitutionMatrix.std_3di_matrix()``). This module applies that encoder per chain to
the residues :func:`foldatlas.structure.io.ca_atoms` returns, so the states line up with the atlas' C-alpha traces,
and gives the matrices the structure search scores with: 3Di alone (the prefilter) and 3Di plus BLOSUM62
(Foldseek's combined alignment score).

States are 0-19 in biotite's 3Di alphabet order (``acdefghiklmnpqrstvwy``); :data:`UNDEFINED` (20) marks a residue
without N, CA or C, or at a chain end, which Foldseek cannot describe.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["LETTERS", "UNDEFINED", "AA_LETTERS", "threedi_states", "backbone_states", "matrix_3di", "matrix_blosum62",
           "aa_codes"]

LETTERS = "acdefghiklmnpqrstvwy"
UNDEFINED = 20
AA_LETTERS = "ARNDCQEGHILKMFPSTWYV"  # order of the 20 amino-acid codes; 20 = anything else


def _backbone(chain) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CA, CB, N and C coordinates per residue of ``ca_atoms(chain)`` (NaN where an atom is missing)."""
    from foldatlas.structure.io import residue_atoms

    _, xyz = residue_atoms(chain, ("CA", "CB", "N", "C"))
    return xyz["CA"], xyz["CB"], xyz["N"], xyz["C"]


def threedi_states(atoms) -> np.ndarray:
    """Foldseek 3Di state of every residue with a C-alpha, in :func:`~foldatlas.structure.io.ca_atoms` order.

    Parameters
    ----------
    atoms : biotite.structure.AtomArray
        One or more protein chains (each chain is encoded on its own, as Foldseek does).

    Returns
    -------
    ndarray of uint8, shape (L,)
        0-19 (:data:`LETTERS`), :data:`UNDEFINED` where the encoder has no state.
    """
    from biotite.structure import get_chain_starts

    from foldatlas.structure.io import ca_atoms

    parts = []
    starts = get_chain_starts(atoms, add_exclusive_stop=True)
    for start, stop in zip(starts[:-1], starts[1:]):
        chain = atoms[start:stop]
        if len(ca_atoms(chain)) == 0:
            continue
        parts.append(backbone_states(*_backbone(chain)))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)


def backbone_states(ca: np.ndarray, cb: np.ndarray, n: np.ndarray, c: np.ndarray) -> np.ndarray:
    """3Di states of one chain from its per-residue CA, CB, N and C coordinates (NaN rows where missing).

    The same states as biotite's ``Encoder().encode`` (tested), computed with biotite's own geometry, descriptors and
    network but with plain arrays and a boolean mask in place of its masked arrays, whose bookkeeping took most of
    its time on chains of a few hundred residues (``benchmarks/structure/bench_threedi.py`` measures both).

    Returns
    -------
    ndarray of uint8, shape (L,)
        0-19, :data:`UNDEFINED` where the encoder has no state.
    """
    length = len(ca)
    if length < 3:
        return np.full(length, UNDEFINED, dtype=np.uint8)
    encoder = _encoder()
    features = encoder.feature_encoder
    ca, cb, n, c = (np.array(x, dtype=np.float64) for x in (ca, cb, n, c))
    with np.errstate(invalid="ignore", divide="ignore"):
        missing_cb = np.isnan(cb)
        if missing_cb.any():
            approx = features.vc_encoder._approximate_cb_position(ca, n, c)
            cb = np.where(missing_cb, approx, cb)
        vc = features.vc_encoder._compute_virtual_center(ca, cb, n)
        masked = np.isnan(ca).any(axis=1) | np.isnan(n).any(axis=1) | np.isnan(c).any(axis=1)
        partner = _residue_partners(vc, masked)
        descriptors = features._calc_conformation_descriptors(ca, partner)
        undefined = features._create_descriptor_mask(masked, partner)[:, 0]
        states = encoder.vae_encoder(descriptors)
    return np.where(undefined, UNDEFINED, states).astype(np.uint8)


@lru_cache(maxsize=1)
def _encoder():
    from biotite.structure.alphabet.encoder import Encoder

    return Encoder()


def _residue_partners(x: np.ndarray, masked: np.ndarray) -> np.ndarray:
    """Each residue's nearest other residue by virtual centre, as biotite's ``_find_residue_partners`` picks it on
    its masked array (masked residues and both chain ends are never partners; a row without candidates gives 0).
    The products are formed as ``numpy.ma.dot`` forms them, so ties break the same way."""
    if masked.any():
        x0 = np.where(masked[:, None], 0.0, x)
        gram = np.dot(x0, x0.copy().T)
    else:
        gram = np.dot(x, x.T)
    r = np.sum(x * x, axis=-1).reshape(-1, 1)
    r[0] = r[-1] = np.nan
    d = r - 2 * gram + r.T
    d[np.diag_indices_from(d)] = np.inf
    d[masked] = np.inf
    d[:, masked] = np.inf
    d[np.isnan(d)] = np.inf
    return d.argmin(axis=1)


@lru_cache(maxsize=1)
def matrix_3di() -> np.ndarray:
    """Foldseek's 3Di substitution matrix (half bits), 21 x 21 in state order; the undefined state scores 0.

    Built once and shared (read-only)."""
    from biotite.sequence.align import SubstitutionMatrix

    m = SubstitutionMatrix.std_3di_matrix()
    order = [m.get_alphabet1().encode(ch) for ch in LETTERS]
    out = np.zeros((21, 21), dtype=np.float32)
    out[:20, :20] = m.score_matrix()[np.ix_(order, order)]
    out.flags.writeable = False
    return out


@lru_cache(maxsize=1)
def matrix_blosum62() -> np.ndarray:
    """BLOSUM62 (half bits), 21 x 21 in :data:`AA_LETTERS` order; code 20 (X and the rest) scores -1. Built once
    and shared (read-only)."""
    from biotite.sequence.align import SubstitutionMatrix

    m = SubstitutionMatrix.std_protein_matrix()
    order = [m.get_alphabet1().encode(ch) for ch in AA_LETTERS]
    out = np.full((21, 21), -1.0, dtype=np.float32)
    out[:20, :20] = m.score_matrix()[np.ix_(order, order)]
    out.flags.writeable = False
    return out


_AA_TABLE = np.full(256, 20, dtype=np.uint8)
for _k, _ch in enumerate(AA_LETTERS):
    _AA_TABLE[ord(_ch)] = _k
    _AA_TABLE[ord(_ch.lower())] = _k


def aa_codes(sequence: str | np.ndarray) -> np.ndarray:
    """Amino-acid codes 0-20 (:data:`AA_LETTERS`; 20 for anything else) of a one-letter sequence or its bytes."""
    raw = np.frombuffer(sequence.encode("ascii", "replace"), dtype=np.uint8) if isinstance(sequence, str) \
        else np.asarray(sequence, dtype=np.uint8)
    return _AA_TABLE[raw]
