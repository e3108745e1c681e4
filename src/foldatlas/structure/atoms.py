"""Build structures from the model's atom37 representation.

Kept free of torch: the atom naming is AlphaFold's atom37 convention, copied as
data (``residue_constants.atom_types`` / ``restype_name_to_atom14_names``).
"""

from __future__ import annotations

import numpy as np

from foldatlas.seq.alphabet import RESTYPE_1TO3, RESTYPES_WITH_X

__all__ = ["ATOM37_NAMES", "structure_from_atom37"]

# residue_constants.atom_types: the order of the model's 37 atom slots.
ATOM37_NAMES: tuple[str, ...] = (
    "N", "CA", "C", "CB", "O", "CG", "CG1", "CG2", "OG", "OG1", "SG", "CD", "CD1", "CD2", "ND1",
    "ND2", "OD1", "OD2", "SD", "CE", "CE1", "CE2", "CE3", "NE", "NE1", "NE2", "OE1", "OE2", "CH2",
    "NH1", "NH2", "OH", "CZ", "CZ2", "CZ3", "NZ", "OXT",
)  # fmt: skip
CA_INDEX: int = 1


def structure_from_atom37(
    aatype: np.ndarray,
    positions: np.ndarray,
    atom_mask: np.ndarray,
    b_factors: np.ndarray,
    chain_index: np.ndarray,
    res_ids: np.ndarray,
):
    """Make a biotite ``AtomArray`` from atom37 arrays.

    Parameters
    ----------
    aatype : ndarray of int, shape (L,)
        Residue types in ``RESTYPES_WITH_X`` order.
    positions : ndarray of float, shape (L, 37, 3)
        Atom coordinates in Å.
    atom_mask : ndarray, shape (L, 37)
        Nonzero where the atom exists.
    b_factors : ndarray of float, shape (L, 37)
        Per-atom values for the B-factor column (pLDDT, 0-100).
    chain_index : ndarray of int, shape (L,)
        Chain number of each residue; chain k is written as the k-th letter.
    res_ids : ndarray of int, shape (L,)
        Residue numbers as written (1-based within each chain).

    Returns
    -------
    biotite.structure.AtomArray
        With a ``b_factor`` annotation.
    """
    import biotite.structure as struc

    from foldatlas.seq.records import CHAIN_IDS

    res_idx, atom_idx = np.nonzero(np.asarray(atom_mask) > 0.5)
    atoms = struc.AtomArray(len(res_idx))
    atoms.coord = np.asarray(positions, dtype=np.float32)[res_idx, atom_idx]
    atoms.chain_id = np.array([CHAIN_IDS[c] for c in np.asarray(chain_index)[res_idx]], dtype="U4")
    atoms.res_id = np.asarray(res_ids)[res_idx]
    atoms.res_name = np.array([RESTYPE_1TO3[RESTYPES_WITH_X[a]] for a in np.asarray(aatype)[res_idx]], dtype="U5")
    names = np.array(ATOM37_NAMES)[atom_idx]
    atoms.atom_name = names
    atoms.element = np.array([n[0] for n in names], dtype="U2")
    atoms.hetero = np.zeros(len(res_idx), bool)
    atoms.add_annotation("b_factor", float)
    atoms.b_factor = np.asarray(b_factors, dtype=float)[res_idx, atom_idx]
    return atoms
