import gzip

import numpy as np
import pytest

from foldatlas.errors import InvalidFileError
from foldatlas.structure import (ca_trace, compare_files, gdt_ts, kabsch, lddt, read_structure, select_chains,
                                 superposed_rmsd, to_mmcif_string, to_pdb_string)
from foldatlas.structure.atoms import structure_from_atom37


def _helix(n: int, seed: int = 0) -> np.ndarray:
    """Cα-like helix coordinates (3.6 residues per turn, 1.5 Å rise) with small noise."""
    t = np.arange(n) * (2 * np.pi / 3.6)
    rng = np.random.default_rng(seed)
    return np.stack([2.3 * np.cos(t), 2.3 * np.sin(t), 1.5 * np.arange(n)], 1) + rng.normal(0, 0.3, (n, 3))


def _atoms(n=30, chains=None, seed=0):
    positions = np.zeros((n, 37, 3), np.float32)
    ca = _helix(n, seed)
    positions[:, 1] = ca
    positions[:, 0] = ca + [1.0, 0.2, -0.3]
    positions[:, 2] = ca + [-0.8, 0.9, 0.4]
    positions[:, 4] = ca + [-1.2, 1.9, 0.5]
    mask = np.zeros((n, 37), np.float32)
    mask[:, [0, 1, 2, 4]] = 1
    b = np.tile(np.linspace(10, 95, n)[:, None], (1, 37)).astype(np.float32)
    chain_index = np.zeros(n, int) if chains is None else chains
    res_ids = np.concatenate([np.arange(1, np.sum(chain_index == c) + 1) for c in np.unique(chain_index)])
    aatype = np.arange(n) % 20
    return structure_from_atom37(aatype, positions, mask, b, chain_index, res_ids)


@pytest.mark.parametrize("fmt", ["pdb", "cif"])
def test_round_trip_keeps_coordinates_and_bfactors(tmp_path, fmt):
    atoms = _atoms(chains=np.array([0] * 12 + [1] * 18))
    text = to_pdb_string(atoms) if fmt == "pdb" else to_mmcif_string(atoms, "x")
    path = tmp_path / f"x.{fmt}"
    path.write_text(text)
    back = read_structure(path)
    assert back.array_length() == atoms.array_length()
    np.testing.assert_allclose(back.coord, atoms.coord, atol=1e-3)
    np.testing.assert_allclose(back.b_factor, atoms.b_factor, atol=1e-2)
    assert back.chain_id.tolist() == atoms.chain_id.tolist()
    assert back.res_id.tolist() == atoms.res_id.tolist()
    gz = tmp_path / f"y.{fmt}.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    np.testing.assert_allclose(read_structure(gz).coord, atoms.coord, atol=1e-3)


def test_unreadable_structure_files(tmp_path):
    bad = tmp_path / "bad.pdb"
    bad.write_text("hello world\n")
    with pytest.raises(InvalidFileError, match="no protein atoms|neither PDB"):
        read_structure(bad)
    with pytest.raises(InvalidFileError, match="no such file"):
        read_structure(tmp_path / "missing.cif")
    junk = tmp_path / "junk.txt"
    junk.write_bytes(b"\x00\x01\x02")
    with pytest.raises(InvalidFileError):
        read_structure(junk)


def test_select_missing_chain_lists_present_ones():
    with pytest.raises(InvalidFileError, match="chains present: A"):
        select_chains(_atoms(), "C")


def test_kabsch_recovers_a_rigid_motion():
    x = _helix(40)
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    y = x @ q.T + [5.0, -3.0, 12.0]
    r, t = kabsch(x, y)
    np.testing.assert_allclose(x @ r.T + t, y, atol=1e-8)
    assert superposed_rmsd(x, y) < 1e-6


def test_lddt_hand_computed_case():
    # Three points on a line 1 Å apart; the model stretches the last one by 1.5 Å.
    ref = np.array([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0]])
    mod = np.array([[0.0, 0, 0], [1.0, 0, 0], [3.5, 0, 0]])
    # Ordered pairs: (0,1),(1,0) diff 0 -> 4/4; (0,2),(2,0) diff 1.5 -> thresholds 2,4 -> 2/4;
    # (1,2),(2,1) diff 1.5 -> 2/4. Mean = (2*1 + 4*0.5) / 6 = 2/3.
    assert lddt(mod, ref) == pytest.approx(2 / 3)
    total, per = lddt(mod, ref, per_residue=True)
    np.testing.assert_allclose(per, [0.75, 0.75, 0.5])
    # Pairs beyond the inclusion radius are not scored.
    assert lddt(mod * 10, ref * 10, cutoff=15.0) == pytest.approx(lddt(mod * 10, ref * 10, cutoff=15.0))
    assert lddt(ref, ref) == 1.0


def test_gdt_ts_perfect_and_partial():
    x = _helix(50)
    assert gdt_ts(x, x) == pytest.approx(1.0)
    y = x.copy()
    y[25:] += [0.0, 0.0, 30.0]  # second half displaced far away
    score = gdt_ts(y, x)
    assert 0.45 < score < 0.75


def test_compare_rotated_translated_copy(tmp_path):
    atoms = _atoms(60)
    ref = tmp_path / "ref.pdb"
    ref.write_text(to_pdb_string(atoms))
    moved = atoms.copy()
    theta = 0.7
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    moved.coord = (moved.coord @ rot.T + [10.0, -4.0, 2.5]).astype(np.float32)
    mod = tmp_path / "model.cif"
    mod.write_text(to_mmcif_string(moved, "m"))
    sup = tmp_path / "sup.pdb"
    result = compare_files(mod, ref, superposed_path=sup)
    assert result.tm_score == pytest.approx(1.0, abs=1e-4)
    assert result.rmsd == pytest.approx(0.0, abs=1e-3)
    assert result.gdt_ts == pytest.approx(1.0)
    assert result.lddt_ca == pytest.approx(1.0)
    assert result.aligned_length == 60
    np.testing.assert_allclose(read_structure(sup).coord, atoms.coord, atol=2e-3)


def test_compare_with_a_deletion_uses_sequence_correspondence(tmp_path):
    atoms = _atoms(60)
    ref = tmp_path / "ref.pdb"
    ref.write_text(to_pdb_string(atoms))
    part = atoms[(atoms.res_id < 20) | (atoms.res_id > 30)]
    mod = tmp_path / "mod.pdb"
    mod.write_text(to_pdb_string(part))
    result = compare_files(mod, ref)
    assert result.corresponding == 49
    assert result.lddt_ca > 0.99 and result.rmsd < 1e-3
    assert result.tm_score < result.tm_score_model  # normalised by the longer reference
    ca, seq, _ = ca_trace(part)
    assert len(seq) == 49 and ca.shape == (49, 3)


def test_fast_pdb_reading_equals_biotite_and_leaves_unusual_files_to_it():
    """Plain PDB files are read by their columns; the atoms equal biotite's. Alternate locations, models after the
    first, a missing element and hybrid-36 numbers are biotite's to read (None)."""
    import io
    from pathlib import Path

    from biotite.structure.io import pdb

    from foldatlas.structure.io import _simple_pdb_atoms

    data = Path(__file__).resolve().parents[1] / "data"
    files = sorted(data.rglob("*.pdb"))
    assert len(files) >= 4
    for f in files:
        text = f.read_text()
        fast = _simple_pdb_atoms(text)
        ref = pdb.PDBFile.read(io.StringIO(text)).get_structure(model=1, extra_fields=["b_factor"])
        assert fast is not None and fast.array_length() == ref.array_length(), f
        for name in ("chain_id", "res_id", "ins_code", "res_name", "hetero", "atom_name", "element"):
            assert (getattr(fast, name) == getattr(ref, name)).all(), (f, name)
        np.testing.assert_array_equal(fast.coord, ref.coord)
        np.testing.assert_array_equal(fast.b_factor, ref.b_factor)
    lines = [ln for ln in files[0].read_text().splitlines() if ln.startswith("ATOM")][:12]
    # numbers out of their standard layout (%8.3f, %4d) are parsed by numpy instead, with the same values
    odd = "\n".join([lines[0][:22] + "  -3" + lines[0][26:30] + "   12.5 " + lines[0][38:], *lines[1:]])
    fast = _simple_pdb_atoms(odd)
    ref = pdb.PDBFile.read(io.StringIO(odd)).get_structure(model=1, extra_fields=["b_factor"])
    assert fast.res_id[0] == -3 and fast.coord[0, 0] == np.float32(12.5)
    np.testing.assert_array_equal(fast.coord, ref.coord)
    assert (fast.res_id == ref.res_id).all()
    two_models = "\n".join(["MODEL        1", *lines, "ENDMDL", "MODEL        2", *lines[:3], "ENDMDL"])
    assert _simple_pdb_atoms(two_models).array_length() == 12  # the first model only, as biotite
    altloc = "\n".join([lines[0][:16] + "A" + lines[0][17:], lines[0][:16] + "B" + lines[0][17:], *lines[1:]])
    no_element = "\n".join([lines[0][:76] + "  ", *lines[1:]])
    hybrid36 = "\n".join([lines[0][:22] + "A000" + lines[0][26:], *lines[1:]])
    for text in (altloc, no_element, hybrid36):
        assert _simple_pdb_atoms(text) is None
    assert read_structure(text=altloc, name="x.pdb").array_length() == 12  # biotite: the first location
