"""Variant effects from structure (ProteinMPNN): the wild type aligned to the structure, scores per position."""

import numpy as np
import pytest

from foldatlas.design import backbone
from foldatlas.design.variants import align_to_structure, structure_variant_scores
from foldatlas.errors import InvalidOptionError
from foldatlas.lm.variants import parse_variants
from foldatlas.structure.io import read_structure


def test_scores_follow_the_alignment_and_read_the_wild_type(split_dir):
    atoms = read_structure(split_dir / "1BUN_B.pdb")
    native = backbone(atoms).sequence
    construct = "MG" + native  # a construct with two extra residues the structure lacks
    assert align_to_structure(construct, native).tolist()[:3] == [-1, -1, 0]
    k = 20
    target = "A" if native[k] != "A" else "G"
    direct = structure_variant_scores(atoms, native, parse_variants([f"{native[k]}{k + 1}{target}"], native),
                                      num_orders=1)
    shifted = structure_variant_scores(atoms, construct, parse_variants(
        ["M1A", f"{native[k]}{k + 3}{target}", f"M1A:{native[k]}{k + 3}{target}"], construct), num_orders=1)
    assert shifted[0] is None and shifted[2] is None  # a residue outside the structure: no score
    assert shifted[1] == pytest.approx(direct[0], abs=1e-5) and np.isfinite(direct[0])


def test_another_protein_is_refused(split_dir):
    atoms = read_structure(split_dir / "1BUN_B.pdb")
    other = backbone(read_structure(split_dir / "1FHG_A.pdb")).sequence
    with pytest.raises(InvalidOptionError, match="same protein"):
        structure_variant_scores(atoms, other, parse_variants([f"{other[0]}1A"], other))
    with pytest.raises(InvalidOptionError, match="no chain Q"):
        structure_variant_scores(atoms, other, [], chain="Q")
