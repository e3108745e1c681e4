"""Every sample of a prediction stored with its entry: round trip, aliases, one transaction, older atlases,
and an ESMFold2 build filling them (an ESMFold v1 build storing none)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parent.parent / "data" / "test_split"


@pytest.fixture(scope="module")
def chain():
    """A real chain (1BUN_B) as atoms and its sequence."""
    from foldatlas.structure.io import ca_trace, read_structure

    atoms = read_structure(DATA / "1BUN_B.pdb")
    return atoms, ca_trace(atoms)[1]


def _sample(atoms, sequence: str, k: int):
    """Sample ``k``: the chain shifted by ``k`` Å along x, per-residue pLDDT ``40 + 10 k`` in the B-factors."""
    from foldatlas.atlas import codec
    from foldatlas.atlas.entry import EntrySample

    moved = atoms.copy()
    moved.coord = moved.coord + np.array([k, 0.0, 0.0], dtype=np.float32)
    moved.b_factor = np.full(len(moved), 40.0 + 10 * k, dtype=np.float32)
    plddt = np.full(len(sequence), 40.0 + 10 * k, dtype=np.float32)
    return moved, EntrySample(sample=k, structure=codec.encode_structure(moved), plddt=plddt, ptm=0.1 * (k + 1),
                              iptm=None, ranking_score=0.2 * (k + 1))


def _entry(atoms, sequence: str, name: str = "p1", num_samples: int = 3, best: int = 2):
    from foldatlas.atlas import NewEntry

    drawn = [_sample(atoms, sequence, k) for k in range(num_samples)]
    best_atoms, best_sample = drawn[best]
    entry = NewEntry(id=name, sequence=sequence, kind="predicted", model="esmfold2-test",
                     structure=best_sample.structure, plddt=best_sample.plddt, ptm=best_sample.ptm,
                     provenance={"best_sample": best, "sample": best}, samples=tuple(s for _, s in drawn))
    return entry, [a for a, _ in drawn]


def test_samples_round_trip_and_resolve_through_aliases_and_checksums(tmp_path, chain):
    from foldatlas.atlas import codec, open_atlas

    atoms, sequence = chain
    entry, drawn = _entry(atoms, sequence)
    with open_atlas(tmp_path / "atlas", create=True) as atlas:
        atlas.insert([entry], aliases=[("p1_alias", "p1", "test")])
        listed = atlas.samples("p1")
        assert [s.sample for s in listed] == [0, 1, 2]
        assert [s.ptm for s in listed] == pytest.approx([0.1, 0.2, 0.3])
        assert [s.ranking_score for s in listed] == pytest.approx([0.2, 0.4, 0.6])
        assert [s.mean_plddt for s in listed] == pytest.approx([40.0, 50.0, 60.0])
        assert listed[0].iptm is None
        assert listed[1].to_dict() == {"sample": 1, "ptm": 0.2, "iptm": None, "mean_plddt": 50.0,
                                       "ranking_score": 0.4}
        for key in ("p1_alias", codec.sequence_md5(sequence)):
            assert atlas.samples(key) == listed
        for k, original in enumerate(drawn):
            stored = atlas.get_sample("p1_alias", k)
            assert (stored.id, stored.sample, stored.ptm) == ("p1", k, pytest.approx(0.1 * (k + 1)))
            assert stored.pae is None and not stored.has_pae
            assert np.allclose(stored.plddt, 40.0 + 10 * k)
            back = stored.atoms()
            assert np.allclose(back.coord, original.coord, atol=1e-3)
            assert np.allclose(back.b_factor, 40.0 + 10 * k)
            pdb = stored.to_pdb()
            assert f"sample {k}" in pdb and f"mean pLDDT {40.0 + 10 * k:.2f}" in pdb
            assert f"p1_sample{k}" in stored.to_mmcif()
        # the best sample's structure is the entry's own
        assert atlas.get_sample("p1", 2).structure_blob == atlas.get("p1").structure_blob
        assert "sample" not in atlas.get("p1").to_dict()


def test_unknown_entries_and_samples_are_unknown_entry_errors(tmp_path, chain):
    from foldatlas.atlas import NewEntry, codec, open_atlas
    from foldatlas.errors import UnknownEntryError

    atoms, sequence = chain
    entry, _ = _entry(atoms, sequence)
    plain = NewEntry(id="v1", sequence=sequence[:-1] + "W", kind="predicted", model="esmfold",
                     structure=codec.encode_structure(atoms))
    with open_atlas(tmp_path / "atlas", create=True) as atlas:
        atlas.insert([entry, plain])
        assert atlas.samples("v1") == []
        with pytest.raises(UnknownEntryError, match="no entry 'nope'"):
            atlas.samples("nope")
        with pytest.raises(UnknownEntryError, match="no entry 'nope'"):
            atlas.get_sample("nope", 0)
        with pytest.raises(UnknownEntryError, match="entry 'p1' has no sample 3; its samples are 0, 1, 2"):
            atlas.get_sample("p1", 3)
        with pytest.raises(UnknownEntryError, match="entry 'v1' has no sample 0; it stores none"):
            atlas.get_sample("v1", 0)


def test_an_entry_and_its_samples_are_stored_in_one_transaction(tmp_path, chain):
    from foldatlas.atlas import open_atlas

    atoms, sequence = chain
    entry, _ = _entry(atoms, sequence)
    broken = entry.samples[1].__class__(sample=1, structure=None)  # NOT NULL fails after the entry row is written
    bad = entry.__class__(**{**entry.__dict__, "samples": (entry.samples[0], broken)})
    with open_atlas(tmp_path / "atlas", create=True) as atlas:
        with pytest.raises(sqlite3.IntegrityError):
            atlas.insert([bad])
        assert len(atlas) == 0 and atlas.known_ids(["p1"]) == {}
        atlas.insert([entry])
        assert len(atlas.samples("p1")) == 3
        assert atlas.insert([entry]) == [0]  # the ID is present: the entry and its samples stay as they were
        assert len(atlas.samples("p1")) == 3


def test_new_entry_checks_its_samples(chain):
    from foldatlas.atlas.entry import EntrySample

    atoms, sequence = chain
    entry, _ = _entry(atoms, sequence)
    with pytest.raises(ValueError, match="distinct"):
        entry.__class__(**{**entry.__dict__, "samples": (entry.samples[0], entry.samples[0])})
    short = EntrySample(sample=5, structure=b"x", plddt=np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="sample 5 has 3 pLDDT values"):
        entry.__class__(**{**entry.__dict__, "samples": [short]})
    assert isinstance(entry.__class__(**{**entry.__dict__, "samples": list(entry.samples)}).samples, tuple)


def test_an_atlas_older_than_the_samples_table_reads_and_migrates(tmp_path, chain):
    from foldatlas.atlas import NewEntry, codec, open_atlas
    from foldatlas.errors import UnknownEntryError

    atoms, sequence = chain
    folder = tmp_path / "atlas"
    with open_atlas(folder, create=True) as atlas:
        atlas.insert([NewEntry(id="old", sequence=sequence, kind="imported", model="experimental",
                               structure=codec.encode_structure(atoms))])
    with sqlite3.connect(folder / "atlas.sqlite") as db:  # as written by a foldatlas without samples
        db.execute("DROP TABLE samples")
    with open_atlas(folder, readonly=True) as atlas:
        assert atlas.samples("old") == []
        with pytest.raises(UnknownEntryError, match="it stores none"):
            atlas.get_sample("old", 0)
    entry, _ = _entry(atoms, sequence[:-1] + "W", name="new")
    with open_atlas(folder) as atlas:  # a writable open adds the table; the old entry stays
        atlas.insert([entry])
        assert atlas.get("old").kind == "imported" and atlas.samples("old") == []
        assert len(atlas.samples("new")) == 3
        assert atlas.get_meta("format_version") == 1


SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGW"


def test_esmfold2_builds_store_every_sample_and_esmfold_v1_builds_none(tiny_fold2_model, tiny_model, tmp_path):
    from foldatlas.atlas import BuildOptions, build_atlas, open_atlas
    from foldatlas.seq.records import make_record

    with open_atlas(tmp_path / "fold2", create=True) as atlas:
        build_atlas(atlas, [make_record("p1", SEQ)], tiny_fold2_model, None, BuildOptions(), progress=False,
                    log=lambda m: None)
        entry = atlas.get("p1")
        listed = atlas.samples("p1")
        summary = entry.provenance["samples"]
        assert [s.sample for s in listed] == [s["sample"] for s in summary] == [0, 1, 2]
        for stored, scores in zip(listed, summary):
            assert stored.ptm == pytest.approx(scores["ptm"], abs=1e-5)
            assert stored.mean_plddt == pytest.approx(scores["mean_plddt"], abs=1e-3)
            assert stored.ranking_score == pytest.approx(scores["ranking_score"], abs=1e-5)
        best = entry.provenance["best_sample"]
        assert atlas.get_sample("p1", best).structure_blob == entry.structure_blob
        assert entry.mean_plddt == pytest.approx(listed[best].mean_plddt)
        others = [atlas.get_sample("p1", s.sample).atoms().coord for s in listed if s.sample != best]
        assert not np.allclose(others[0], entry.atoms().coord)
    with open_atlas(tmp_path / "v1", create=True) as atlas:
        build_atlas(atlas, [make_record("p1", SEQ)], tiny_model, None, BuildOptions(), progress=False,
                    log=lambda m: None)
        assert atlas.samples("p1") == []
