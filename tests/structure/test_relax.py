"""Amber relaxation: a planted break and clash are removed, C-alpha barely moves, pLDDT stays; no OpenMM: one line."""

from __future__ import annotations

import numpy as np
import pytest

from foldatlas.structure.io import read_structure

pytest.importorskip("openmm")
pytest.importorskip("pdbfixer")


@pytest.fixture(scope="module")
def damaged(split_dir):
    """Residues 1-40 of 1FHG_A (backbone only) with a planted chain break and a planted clash."""
    atoms = read_structure(split_dir / "1FHG_A.pdb")
    ids = np.unique(atoms.res_id)
    atoms = atoms[atoms.res_id <= ids[39]]
    atoms.b_factor = (atoms.res_id % 7 * 10.0).astype(np.float32)  # a pLDDT-like pattern to keep
    atoms.coord[atoms.res_id >= ids[20]] += np.array([1.8, 0.0, 0.0], dtype=np.float32)  # break before residue 21
    ca = {r: atoms.coord[(atoms.res_id == r) & (atoms.atom_name == "CA")][0] for r in ids[:40]}
    # the closest non-neighbouring pair of residues in the first half: push one onto the other
    pairs = [(np.linalg.norm(ca[a] - ca[b]), a, b) for a in ids[:18] for b in ids[:18] if b > a + 3]
    _, a, b = min(pairs)
    atoms.coord[atoms.res_id == b] += 0.55 * (ca[a] - ca[b])
    return atoms


def test_relaxation_removes_a_planted_break_and_clash(damaged):
    from foldatlas.structure.relax import RelaxOptions, relax_structure

    result = relax_structure(damaged, RelaxOptions(threads=1))
    assert result.before.chain_breaks >= 1 and result.before.clashes >= 1
    assert result.after.chain_breaks == 0 and result.after.clashes < result.before.clashes
    assert result.after.clashscore < 10 and result.ca_rmsd < 1.5 and result.energy_end < result.energy_start
    out = result.atoms
    assert not np.isin(out.element, ["H", "D"]).any()  # hydrogens added for the minimisation only
    assert out.array_length() > damaged.array_length()  # side chains and OXT built by PDBFixer
    ca = out[out.atom_name == "CA"]
    np.testing.assert_allclose(ca.b_factor, (ca.res_id % 7 * 10.0), atol=0.01)  # B-factors (pLDDT) kept
    summary = result.to_dict()
    assert summary["after"]["chain_breaks"] == 0 and summary["rounds"] >= 1


def test_hydrogens_are_kept_when_asked(damaged):
    from foldatlas.structure.relax import RelaxOptions, relax_structure

    result = relax_structure(damaged[damaged.res_id <= 12], RelaxOptions(max_rounds=1, keep_hydrogens=True))
    assert (result.atoms.element == "H").sum() > 50


def test_cli_relax_writes_the_model_and_missing_openmm_is_one_line(damaged, run_cli, tmp_path):
    from foldatlas.structure.io import to_pdb_string

    src = tmp_path / "model.pdb"
    src.write_text(to_pdb_string(damaged[damaged.res_id <= 25]))
    done = run_cli("relax", str(src), "-o", str(tmp_path / "relaxed.cif"), "--rounds", "2", "--threads", "1",
                   "--cutoff", "10", "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    import json

    report = json.loads(done.stdout)
    assert report["before"]["chain_breaks"] >= 1 and report["after"]["chain_breaks"] == 0
    assert read_structure(tmp_path / "relaxed.cif").array_length() > 100

    # without OpenMM: a Python that cannot import it (a sitecustomize that blocks the import)
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text("import sys\nsys.modules['openmm'] = None\n")
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(block))
    gone = subprocess.run([sys.executable, "-m", "foldatlas.cli.main", "relax", str(src), "-o",
                           str(tmp_path / "x.pdb")], capture_output=True, text=True, env=env, timeout=120)
    assert gone.returncode == 2 and gone.stderr.strip().splitlines() == [
        "error: relaxation needs OpenMM and PDBFixer: pip install 'foldatlas[relax]'"]
    assert not (tmp_path / "x.pdb").exists()


def test_fold_and_atlas_build_relax_every_prediction(tmp_path, tiny_model):
    import json

    from foldatlas.atlas import BuildOptions, build_atlas, open_atlas
    from foldatlas.predict.runner import RunConfig, run_fold
    from foldatlas.seq import make_record

    records = [make_record("r1", "MKTAYIAKQRQI")]
    lines: list[str] = []
    run_fold(records, RunConfig(output=tmp_path / "out", relax=True, plot=False), tiny_model, progress=False,
             log=lines.append)
    data = json.loads((tmp_path / "out" / "r1.json").read_text())
    relaxed = read_structure(tmp_path / "out" / "r1.relaxed.pdb")
    assert read_structure(tmp_path / "out" / "r1.relaxed.cif").array_length() == relaxed.array_length()
    assert data["relax"]["after"]["chain_breaks"] <= data["geometry"]["chain_breaks"]
    assert data["relax"]["after"]["clashscore"] <= data["geometry"]["clashscore"]
    assert all("relaxed model" in x for x in lines if "warning" in x)  # warnings speak of the relaxed model

    atlas = open_atlas(tmp_path / "atlas", create=True)
    build_atlas(atlas, records, tiny_model, None, BuildOptions(relax=True), progress=False, log=lambda m: None)
    entry = atlas.get("r1")
    assert entry.provenance["relax"]["after"]["chain_breaks"] == entry.geometry_dict()["chain_breaks"]


def test_fold_relax_without_openmm_is_one_line_before_any_work(tmp_path):
    import os
    import subprocess
    import sys

    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text("import sys\nsys.modules['openmm'] = None\n")
    env = dict(os.environ, PYTHONPATH=str(block))
    for args in (["fold", "MKTAYIAKQR", "-o", str(tmp_path / "out"), "--relax"],
                 ["atlas", "build", "MKTAYIAKQR", "--atlas", str(tmp_path / "atlas"), "--relax"]):
        done = subprocess.run([sys.executable, "-m", "foldatlas.cli.main", *args], capture_output=True, text=True,
                              env=env, timeout=120)
        assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == (
            "error: relaxation needs OpenMM and PDBFixer: pip install 'foldatlas[relax]'"), done.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "atlas").exists()
