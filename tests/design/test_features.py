"""ProteinMPNN's view of a structure: residues, masks, renumbering, and the positions users name."""

import numpy as np
import pytest

from foldatlas.design import backbone, parse_positions, tied_groups
from foldatlas.errors import InvalidOptionError
from foldatlas.structure.io import read_structure


@pytest.fixture()
def complex_atoms(split_dir):
    a, b = read_structure(split_dir / "1AX8_A.pdb"), read_structure(split_dir / "1DFU_C.pdb")
    a.chain_id[:], b.chain_id[:] = "A", "B"
    return a + b


def test_residues_atoms_and_chains(complex_atoms):
    bb = backbone(complex_atoms)
    assert bb.chains == ["A", "B"] and set(bb.chain_labels.tolist()) == {0, 1}
    assert len(bb) == len(bb.sequence) == len(bb.coords) and bb.mask.all()
    first_ca = complex_atoms[(complex_atoms.atom_name == "CA")][0]
    np.testing.assert_array_equal(bb.coords[0, 1], first_ca.coord)
    assert bb.chain_sequences()["A"] + ":" + bb.chain_sequences()["B"] == \
        ":".join(bb.select([c]).sequence for c in bb.chains)


def test_missing_backbone_atoms_are_masked_and_insertion_codes_renumbered(split_dir):
    atoms = read_structure(split_dir / "1AX8_A.pdb")
    third = np.unique(atoms.res_id)[2]
    atoms = atoms[~((atoms.res_id == third) & (atoms.atom_name == "O"))]  # residue 3 loses its O
    fifth = np.unique(atoms.res_id)[4]
    atoms.ins_code[atoms.res_id == fifth] = "A"
    atoms.res_id[atoms.res_id == fifth] -= 1  # residue 5 becomes 4A
    bb = backbone(atoms)
    assert bb.mask[2] == 0 and bb.mask.sum() == len(bb) - 1 and (bb.coords[2, 3] == 0).all()
    # the reference renumbers a repeated number: 4, 4A -> 4, 5, and everything after moves up by one
    assert bb.residue_index[3] + 1 == bb.residue_index[4] and bb.residue_index[5] == bb.res_ids[5] + 1


def test_positions_and_ties(complex_atoms):
    bb = backbone(complex_atoms)
    a0, b0 = int(bb.res_ids[0]), int(bb.res_ids[bb.chain_ids == "B"][0])
    mask = parse_positions(f"A{a0 + 2}-{a0 + 4},B{b0}", bb)
    assert mask.sum() == 4 and mask[2:5].all() and mask[np.flatnonzero(bb.chain_ids == "B")[0]]
    for bad, message in ((f"C{a0}", "no chain C"), ("A99999", "no residue"), ("A10-", "is not a residue"),
                         (f"A{a0 + 4}-{a0 + 2}", "backwards")):
        with pytest.raises(InvalidOptionError, match=message):
            parse_positions(bad, bb)
    groups = tied_groups(f"A{a0},B{b0}|A{a0 + 1},B{b0 + 1}", bb)
    in_b = np.flatnonzero(bb.chain_ids == "B")
    assert groups == [[0, int(in_b[0])], [1, int(in_b[1])]]
    with pytest.raises(InvalidOptionError, match="fewer than two"):
        tied_groups(f"A{a0}", bb)
    with pytest.raises(InvalidOptionError, match="two groups"):
        tied_groups(f"A{a0},B{b0}|A{a0},B{b0 + 1}", bb)
    with pytest.raises(InvalidOptionError, match="same sequence"):
        tied_groups(None, bb, homo_oligomer=True)
