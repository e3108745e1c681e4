"""Foldseek's 3Di states through biotite: the same letters as biotite's own encoder, aligned with the C-alphas."""

import numpy as np

from foldatlas.structure.io import ca_trace, read_structure
from foldatlas.structure.threedi import (LETTERS, UNDEFINED, aa_codes, matrix_3di, matrix_blosum62,
                                         threedi_states)


def test_states_are_biotites_3di_per_c_alpha(split_dir):
    from biotite.structure.alphabet import to_3di

    for name in ("1AX8_A", "1FHG_A"):
        atoms = read_structure(split_dir / f"{name}.pdb")
        states = threedi_states(atoms)
        assert len(states) == len(ca_trace(atoms)[0])
        ref = str(to_3di(atoms[~atoms.hetero])[0][0])
        defined = states != UNDEFINED
        assert defined.mean() > 0.95 and not defined[0] and not defined[-1]  # chain ends have no state
        assert "".join(LETTERS[s] for s in states[defined]) == "".join(np.array(list(ref))[defined])


def test_c_alpha_only_chains_have_no_states(split_dir):
    atoms = read_structure(split_dir / "1AX8_A.pdb")
    assert (threedi_states(atoms[atoms.atom_name == "CA"]) == UNDEFINED).all()
    assert len(threedi_states(atoms[:0])) == 0


def test_matrices_and_codes():
    m3, b62 = matrix_3di(), matrix_blosum62()
    assert m3.shape == b62.shape == (21, 21)
    assert (m3 == m3.T).all() and (b62 == b62.T).all()
    assert (m3[20] == 0).all() and b62[0, 0] == 4 and b62[4, 4] == 9  # A-A, C-C
    assert np.diag(m3)[:20].min() > 0
    assert aa_codes("ARNDX*b").tolist() == [0, 1, 2, 3, 20, 20, 20]


def test_backbone_states_equal_biotites_encoder_with_missing_atoms(split_dir):
    """The plain-array path gives the masked-array encoder's states, also where atoms are missing."""
    from biotite.structure.alphabet.encoder import Encoder

    from foldatlas.structure.threedi import _backbone, backbone_states

    rng = np.random.default_rng(3)
    checked = 0
    for name in ("1AX8_A", "1BUN_B", "1DFU_C", "1FHG_A"):
        backbone = _backbone(read_structure(split_dir / f"{name}.pdb"))
        for trial in range(4):
            ca, cb, n, c = (x.copy() for x in backbone)
            if trial:  # drop atoms: N, C, CA (undefined residues) and CB (a virtual one)
                for arr in (ca, cb, n, c):
                    arr[rng.choice(len(ca), 1 + len(ca) // (10 * trial), replace=False)] = np.nan
            with np.errstate(invalid="ignore", divide="ignore"):
                codes = Encoder().encode(ca, cb, n, c)
            ref = np.where(np.ma.getmaskarray(codes), UNDEFINED, np.ma.getdata(codes))
            ours = backbone_states(ca, cb, n, c)
            assert ours.tolist() == ref.tolist()
            checked += int((ours != UNDEFINED).sum())
    assert checked > 500
