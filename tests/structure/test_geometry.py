"""Geometry report: an experimental structure passes; a planted chain break and a planted clash are flagged."""

import numpy as np

from foldatlas.structure.geometry import geometry_report
from foldatlas.structure.io import read_structure


def test_experimental_structure_passes(split_dir):
    report = geometry_report(read_structure(split_dir / "1FHG_A.pdb"))
    assert report.residues > 90 and report.chain_breaks == 0 and report.plausible
    assert report.bonds_checked > 250 and report.bond_outliers <= 0.02 * report.bonds_checked
    assert report.angle_outliers <= 0.02 * report.angles_checked and report.clashscore < 10


def test_planted_break_and_clash_are_flagged(split_dir):
    atoms = read_structure(split_dir / "1FHG_A.pdb")
    ids = np.unique(atoms.res_id)
    broken = atoms.copy()
    broken.coord[broken.res_id >= ids[40]] += np.array([6.0, 0.0, 0.0], dtype=np.float32)
    report, clean = geometry_report(broken), geometry_report(atoms)
    assert report.chain_breaks == 1 and report.breaks_per_100 > 0.9 and not report.plausible
    assert report.bonds_checked == clean.bonds_checked - 1  # the broken bond is a break, not an outlier

    clashing = atoms.copy()
    a, b = clashing.res_id == ids[10], clashing.res_id == ids[70]
    shift = clashing.coord[b][clashing.atom_name[b] == "CA"][0] - clashing.coord[a][clashing.atom_name[a] == "CA"][0]
    clashing.coord[a] += shift + np.array([0.5, 0.0, 0.0], dtype=np.float32)  # residue 10 onto residue 70
    hit = geometry_report(clashing)
    assert hit.clashes >= 3 and hit.worst_clash > 1.5 and hit.clashscore > clean.clashscore + 5
    assert clean.clashscore < 5 and clean.worst_clash < 0.5  # an experimental structure: at most marginal overlaps
    assert hit.chain_breaks == 2  # moving a residue also breaks its two peptide bonds


def test_warning_names_the_problem_and_flags_confident_broken_models(split_dir):
    from foldatlas.structure.geometry import geometry_warning

    atoms = read_structure(split_dir / "1FHG_A.pdb")
    assert geometry_warning(geometry_report(atoms), ptm=0.9) is None
    ids = np.unique(atoms.res_id)
    broken = atoms.copy()
    broken.coord[broken.res_id >= ids[40]] += np.array([6.0, 0.0, 0.0], dtype=np.float32)
    report = geometry_report(broken)
    plain = geometry_warning(report, ptm=0.2, mean_plddt=40)
    assert plain.startswith("physically implausible: 1 chain break (peptide C-N over 2 A)")
    assert ("clashscore" in plain) == (report.clashscore >= 40)
    confident = geometry_warning(report, ptm=0.85)
    assert confident.startswith("confident (pTM 0.85) but physically implausible: 1 chain break")
    assert geometry_warning(report, mean_plddt=90.0).startswith("confident (mean pLDDT 90)")
