"""Importing structure files: formats, pLDDT detection, chains, failures, resume."""

import gzip
import shutil

from pathlib import Path

import numpy as np
import pytest

from foldatlas.atlas import ImportOptions, import_structures, open_atlas
from foldatlas.errors import InvalidFileError, InvalidOptionError
from foldatlas.structure.io import read_structure, to_mmcif_string, to_pdb_string

DATA = Path(__file__).resolve().parent.parent / "data" / "test_split"


@pytest.fixture()
def files(tmp_path, tiny_model):
    """A folder of mixed inputs: PDB, gzipped PDB, mmCIF, a two-chain file, a prediction, a broken file."""
    from foldatlas.predict.engine import fold_batch
    from foldatlas.seq import make_record

    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(DATA / "1AX8_A.pdb", d / "1AX8_A.pdb")
    (d / "1BUN_B.pdb.gz").write_bytes(gzip.compress((DATA / "1BUN_B.pdb").read_bytes()))
    atoms = read_structure(DATA / "1DFU_C.pdb")
    (d / "1DFU_C.cif").write_text(to_mmcif_string(atoms, name="1DFU_C"))
    a, b = read_structure(DATA / "1FHG_A.pdb"), read_structure(DATA / "1AX8_A.pdb")
    b.chain_id[:] = "B"
    (d / "sub" ).mkdir()
    (d / "sub" / "pair.pdb").write_text("EXPDTA    X-RAY DIFFRACTION\n" + to_pdb_string(a + b))
    pred = fold_batch(tiny_model, [make_record("pred", "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ")])[0]
    (d / "pred.pdb").write_text(pred.to_pdb())
    (d / "broken.pdb").write_text("this is not a structure\n")
    (d / "notes.txt").write_text("ignored: not a structure name\n")
    return d, pred


def test_import_folder(tmp_path, files, embedder):
    folder, pred = files
    atlas = open_atlas(tmp_path / "atlas", create=True)
    messages = []
    result = import_structures(atlas, [folder], embedder, ImportOptions(), progress=False, log=messages.append)
    assert (result.imported, result.failed) == (5, 1)
    assert any("broken.pdb" in m for m in messages)
    assert [f["id"] for f in atlas.failures()] == ["broken"]
    e = atlas.get("1AX8_A")
    assert e.kind == "imported" and e.plddt is None and e.embedding.shape == (embedder.dim,)
    ref = read_structure(DATA / "1AX8_A.pdb")
    np.testing.assert_allclose(e.atoms().coord, ref.coord, atol=1e-3)
    assert atlas.get("1BUN_B").length > 0 and atlas.get("1DFU_C").length > 0  # gzipped PDB, mmCIF
    pair = atlas.get("pair")
    assert len(pair.chains) == 2 and pair.model == "experimental (X-RAY DIFFRACTION)"
    p = atlas.get("pred")  # a foldatlas prediction: pLDDT read from the B-factors
    assert p.model == "foldatlas"
    np.testing.assert_allclose(p.plddt, pred.plddt, atol=0.006)
    # a rerun imports nothing twice
    again = import_structures(atlas, [folder], embedder, ImportOptions(), progress=False, log=lambda m: None)
    assert (again.imported, again.skipped, again.failed) == (0, 5, 1)
    assert len(atlas) == 5


def test_plddt_options_and_chains(tmp_path, files):
    folder, pred = files
    atlas = open_atlas(tmp_path / "atlas", create=True)
    opts = ImportOptions(plddt="none", split_chains=True)
    import_structures(atlas, [folder / "pred.pdb", folder / "sub" / "pair.pdb"], None, opts, progress=False)
    assert atlas.get("pred").plddt is None
    assert atlas.get("pair_A").chains == [atlas.get("pair_A").sequence] and atlas.get("pair_B").length > 0
    # 0-1 B-factors (transformers' scale), read with --plddt bfactor, come out on 0-100
    atoms = read_structure(folder / "pred.pdb")
    atoms.b_factor = atoms.b_factor / 100
    (folder / "unit.pdb").write_text(to_pdb_string(atoms))
    import_structures(atlas, [folder / "unit.pdb"], None, ImportOptions(plddt="bfactor"), progress=False)
    np.testing.assert_allclose(atlas.get("unit").plddt, pred.plddt, atol=0.51)  # 2 decimals of 0-1 in the file
    import_structures(atlas, [folder / "1AX8_A.pdb"], None, ImportOptions(chains="A", label="PDB"), progress=False)
    assert atlas.get("1AX8_A").model == "PDB"
    r = import_structures(atlas, [folder / "1AX8_A.pdb"], None, ImportOptions(chains="Z"), progress=False,
                          log=lambda m: None)
    assert r.failed == 1 and "no chain Z" in atlas.failures()[-1]["reason"]


def test_reader_processes_give_the_same_atlas(tmp_path, files):
    folder, _ = files
    atlases = []
    for workers in (0, 2):
        a = open_atlas(tmp_path / f"w{workers}", create=True)
        r = import_structures(a, [folder], None, ImportOptions(workers=workers), progress=False, log=lambda m: None)
        assert (r.imported, r.failed) == (5, 1)
        atlases.append({m["id"]: (m["sequence"], m["model"]) for m in a.iter_metadata(("id", "sequence", "model"))})
        assert a.get("pred").to_pdb() == open_atlas(tmp_path / "w0").get("pred").to_pdb()
    assert atlases[0] == atlases[1]


def test_import_errors(tmp_path):
    atlas = open_atlas(tmp_path / "atlas", create=True)
    with pytest.raises(InvalidFileError, match="no such file"):
        import_structures(atlas, [tmp_path / "missing"], None, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidFileError, match="no structure files"):
        import_structures(atlas, [tmp_path / "empty"], None, progress=False)
    with pytest.raises(InvalidOptionError, match="--plddt"):
        ImportOptions(plddt="maybe")
