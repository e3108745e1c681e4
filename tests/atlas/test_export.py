"""Exports: FASTA, ESM Atlas-style metadata Parquet, structure tarballs binned by confidence."""

import gzip
import tarfile

import pyarrow.parquet as pq
import pytest

from foldatlas.atlas import BuildOptions, ImportOptions, build_atlas, import_structures, open_atlas
from foldatlas.atlas.export import confidence_bin, export_fasta, export_metadata, export_structures
from foldatlas.errors import InvalidOptionError
from foldatlas.seq import make_record, read_fasta
from foldatlas.structure.io import read_structure


@pytest.fixture(scope="module")
def atlas(tmp_path_factory, tiny_model, split_dir):
    a = open_atlas(tmp_path_factory.mktemp("atlas"), create=True)
    build_atlas(a, [make_record("p/1", "MKTAYIAKQRQISFV"), make_record("p2", "GSHMLEDPVV:KKLLEE")], tiny_model,
                None, BuildOptions(), progress=False)
    import_structures(a, [split_dir / "1AX8_A.pdb"], None, ImportOptions(), progress=False)
    return a


def test_fasta_and_metadata(atlas, tmp_path):
    assert export_fasta(atlas, tmp_path / "all.fasta") == 3
    records = {r.name: r.sequence for r in read_fasta(tmp_path / "all.fasta")}
    assert records["p2"] == "GSHMLEDPVV:KKLLEE" and set(records) == {"p/1", "p2", "1AX8_A"}
    assert export_metadata(atlas, tmp_path / "meta.parquet") == 3
    table = pq.read_table(tmp_path / "meta.parquet").to_pylist()
    row = {r["id"]: r for r in table}
    p1 = atlas.get("p/1")
    assert row["p/1"]["plddt"] == pytest.approx(p1.mean_plddt / 100, abs=1e-5)  # 0-1, as the ESM Atlas
    assert row["p/1"]["ptm"] == pytest.approx(p1.ptm, abs=1e-6) and row["p/1"]["len"] == 15
    assert row["p/1"]["sequenceChecksum"] == p1.crc64 and row["p/1"]["esmfold_version"] == p1.model
    assert row["p/1"]["num_conf"] == int((p1.plddt > 70).sum())
    assert row["1AX8_A"]["ptm"] is None and row["1AX8_A"]["kind"] == "imported"
    assert row["p2"]["num_chains"] == 2 and row["p2"]["iptm"] is not None


def test_structure_tarballs(atlas, tmp_path):
    counts = export_structures(atlas, tmp_path / "tars", fmt="cif")
    assert sum(counts.values()) == 3 and "tm_none_plddt_none.tar" in counts
    p1 = atlas.get("p/1")
    stem = confidence_bin(p1.ptm, p1.mean_plddt)
    with tarfile.open(tmp_path / "tars" / f"{stem}.tar") as tar:
        member = tar.getmember("p_1.cif.gz")  # IDs made safe for file names
        text = gzip.decompress(tar.extractfile(member).read()).decode()
    path = tmp_path / "p1.cif"
    path.write_text(text)
    assert read_structure(path).array_length() == p1.atoms().array_length()
    with pytest.raises(InvalidOptionError):
        export_structures(atlas, tmp_path / "x", fmt="xyz")


def test_confidence_bins():
    assert confidence_bin(0.95, 99.0) == "tm_.90_1.00_plddt_.90_1.00"
    assert confidence_bin(1.0, 100.0) == "tm_.90_1.00_plddt_.90_1.00"
    assert confidence_bin(0.0, 0.0) == "tm_.00_.10_plddt_.00_.10"
    assert confidence_bin(None, 55.0) == "tm_none_plddt_.50_.60"
    assert confidence_bin(0.55, 55.0, width=0.25) == "tm_.50_.75_plddt_.50_.75"
