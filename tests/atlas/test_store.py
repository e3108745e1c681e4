"""The SQLite store: insert, lookup by ID / alias / checksum, failures, stats, clear errors."""

import sqlite3

from pathlib import Path

import numpy as np
import pytest

from foldatlas.atlas import NewEntry, open_atlas
from foldatlas.atlas import codec
from foldatlas.errors import AtlasError, UnknownEntryError
from foldatlas.structure.io import read_structure

DATA = Path(__file__).resolve().parent.parent / "data" / "test_split"


@pytest.fixture(scope="module")
def structure_blob():
    return codec.encode_structure(read_structure(DATA / "1AX8_A.pdb"))


def _entry(entry_id, seq, blob, **kw):
    return NewEntry(id=entry_id, sequence=seq, kind="imported", model="experimental", structure=blob, **kw)


def test_insert_get_alias_checksum(tmp_path, structure_blob):
    atlas = open_atlas(tmp_path / "a", create=True)
    plddt = np.full(5, 80.0)
    rows = atlas.insert([_entry("e1", "MKTAY", structure_blob, plddt=plddt, ptm=0.5,
                                pae=np.ones((5, 5)) * 3.0, max_pae=31.75, embedding=np.arange(4.0)),
                         _entry("e2", "GAV:KK", structure_blob)],
                        aliases=[("e1-copy", "e1", "test")])
    assert rows[0] > 0 and rows[1] > rows[0] and len(atlas) == 2
    e = atlas.get("e1")
    assert (e.id, e.sequence, e.length, e.kind, e.ptm) == ("e1", "MKTAY", 5, "imported", 0.5)
    assert e.mean_plddt == pytest.approx(80.0) and e.has_pae and e.pae.shape == (5, 5)
    np.testing.assert_allclose(e.embedding, np.arange(4.0))
    assert e.crc64 == codec.sequence_crc64("MKTAY") and e.checksum == codec.sequence_md5("MKTAY")
    assert atlas.get("e1-copy").id == "e1"  # alias
    assert atlas.get(codec.sequence_md5("GAV:KK")).id == "e2"  # sequence MD5
    e2 = atlas.get("e2")
    assert e2.chains == ["GAV", "KK"] and e2.plddt is None and not e2.has_pae and e2.to_dict()["chains"] == 2
    assert "ATOM" in e2.to_pdb() and "_atom_site" in e2.to_mmcif()
    # the same ID again is left as it was
    assert atlas.insert([_entry("e1", "WWWWW", structure_blob)]) == [0]
    assert atlas.get("e1").sequence == "MKTAY"
    with pytest.raises(UnknownEntryError, match="no entry 'nope'"):
        atlas.get("nope")
    stats = atlas.stats()
    assert stats["entries"] == 2 and stats["aliases"] == 1 and stats["residues"] == 10
    assert stats["with_pae"] == 1 and stats["mean_plddt_bands"]["confident_70_90"] == 1
    atlas.close()


def test_failures_are_recorded_and_cleared_by_success(tmp_path, structure_blob):
    with open_atlas(tmp_path / "a", create=True) as atlas:
        atlas.record_failures([("p1", None, 5, "too long", "in.fasta")])
        atlas.record_failures([("p1", None, 5, "out of memory", "in.fasta")])
        assert [(f["id"], f["reason"]) for f in atlas.failures()] == [("p1", "out of memory")]
        atlas.insert([_entry("p1", "MKTAY", structure_blob)])
        assert atlas.failures() == []


def test_clear_errors_for_non_atlases(tmp_path):
    with pytest.raises(AtlasError, match="not an atlas"):
        open_atlas(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(AtlasError, match="not an atlas"):
        open_atlas(tmp_path / "plain", readonly=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(AtlasError, match="not a folder"):
        open_atlas(tmp_path / "file", create=True)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "atlas.sqlite").write_bytes(b"this is not a database, just bytes" * 100)
    with pytest.raises(AtlasError, match="not a readable atlas"):
        open_atlas(bad)
    newer = tmp_path / "newer"
    open_atlas(newer, create=True).set_meta("format_version", 99)
    with pytest.raises(AtlasError, match="newer"):
        open_atlas(newer)


def test_readonly_atlas_cannot_be_written(tmp_path, structure_blob):
    open_atlas(tmp_path / "a", create=True).close()
    with open_atlas(tmp_path / "a", readonly=True) as atlas:
        with pytest.raises(sqlite3.OperationalError):
            atlas.insert([_entry("x", "MKT", structure_blob)])


def test_reading_and_searching_import_neither_torch_nor_transformers(tmp_path, structure_blob):
    import subprocess
    import sys

    with open_atlas(tmp_path / "a", create=True) as atlas:
        atlas.insert([_entry("e1", "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", structure_blob)])
    code = ("import sys\nfrom foldatlas.atlas import open_atlas, search_sequences\nfrom foldatlas.atlas.export import "
            "export_fasta\nfrom foldatlas.seq import make_record\n"
            f"a = open_atlas({str(tmp_path / 'a')!r})\na.get('e1').to_pdb()\n"
            "hits = search_sequences(a, [make_record('q', 'MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ')])\n"
            "assert hits[0][0].target == 'e1'\n"
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"
