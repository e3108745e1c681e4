"""Structure search: finds itself, moved copies and shortened copies; superposition; index growth; errors."""

import numpy as np
import pytest

from foldatlas.atlas import ImportOptions, import_structures, open_atlas
from foldatlas.atlas.structsearch import (StructureSearchOptions, query_chains, search_structures,
                                          superposed_chain)
from foldatlas.errors import InvalidFileError, InvalidOptionError, UnknownEntryError
from foldatlas.structure.io import ca_trace, read_structure, to_pdb_string


@pytest.fixture()
def atlas(tmp_path, split_dir):
    a = open_atlas(tmp_path / "atlas", create=True)
    import_structures(a, [split_dir], None, ImportOptions(), progress=False)
    return a


def _moved(atoms, seed=3):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    q = q if np.linalg.det(q) > 0 else -q
    out = atoms.copy()
    out.coord = (atoms.coord @ q.T + np.array([25.0, -40.0, 12.0])).astype(np.float32)
    return out


def test_finds_itself_a_moved_copy_and_a_copy_with_a_deletion(atlas, split_dir, tmp_path):
    atoms = read_structure(split_dir / "1FHG_A.pdb")
    moved = _moved(atoms)
    (tmp_path / "moved.pdb").write_text(to_pdb_string(moved))
    res_ids = np.unique(atoms.res_id)
    cut = atoms[~np.isin(atoms.res_id, res_ids[40:55])]  # 15 residues deleted in the middle
    (tmp_path / "deleted.pdb").write_text(to_pdb_string(cut))
    queries = (query_chains(split_dir / "1FHG_A.pdb") + query_chains(tmp_path / "moved.pdb")
               + query_chains(tmp_path / "deleted.pdb"))
    for mode, method in ((StructureSearchOptions(), "refined"), (StructureSearchOptions(mode="3di"), "refined"),
                         (StructureSearchOptions(tmalign=20), "tmalign"),
                         (StructureSearchOptions(refine=False), "alignment"),
                         (StructureSearchOptions(mode="alphabet", tmalign=20), "tmalign"),
                         (StructureSearchOptions(exhaustive=True), "tmalign")):
        results = search_structures(atlas, queries, mode)
        for hits in results[:2]:
            top = hits[0]
            assert top.target == "1FHG_A" and top.method == method
            if method == "alignment":  # the superposition of a 3Di alignment, refined as TM-score does
                assert top.tm_score > 0.95
                continue
            assert top.tm_score > 0.99 and top.rmsd < 0.1 and top.aligned_length == len(ca_trace(atoms)[0])
            assert all(h.tm_score < top.tm_score for h in hits[1:])
        assert results[2][0].target == "1FHG_A" and results[2][0].tm_score > 0.85
    # the superposed hit lands on the moved query
    hit = search_structures(atlas, query_chains(tmp_path / "moved.pdb"))[0][0]
    placed = superposed_chain(atlas, hit)
    ca_placed, ca_query = ca_trace(placed)[0], ca_trace(moved)[0]
    assert np.sqrt(np.mean(np.sum((ca_placed - ca_query) ** 2, 1))) < 0.15


def test_entry_queries_options_and_index_growth(atlas, split_dir, tmp_path):
    hits = search_structures(atlas, query_chains("1AX8_A", atlas), StructureSearchOptions(max_hits=2, tmalign=1))[0]
    assert len(hits) == 2 and hits[0].target == "1AX8_A" and hits[0].method == "tmalign"
    assert hits[1].method == "refined" and hits[1].prefilter_score is not None and hits[1].evalue is not None
    unrefined = search_structures(atlas, query_chains("1AX8_A", atlas),
                                  StructureSearchOptions(max_hits=2, tmalign=1, refine=False))[0]
    assert unrefined[0].target == "1AX8_A" and unrefined[1].method == "alignment"
    strict = search_structures(atlas, query_chains("1AX8_A", atlas), StructureSearchOptions(min_tm=0.9))[0]
    assert [h.target for h in strict] == ["1AX8_A"]
    # an entry added later is found: the index catches up before a search
    moved = _moved(read_structure(split_dir / "1AX8_A.pdb"))
    (tmp_path / "late.pdb").write_text(to_pdb_string(moved))
    atlas.insert([])  # nothing; the import below adds the row
    from foldatlas.atlas import NewEntry, codec

    atlas.insert([NewEntry(id="late", sequence=atlas.get("1AX8_A").sequence, kind="imported", model="test",
                           structure=codec.encode_structure(moved))])
    found = {h.target for h in search_structures(atlas, query_chains("1AX8_A", atlas))[0] if h.tm_score > 0.99}
    assert found == {"1AX8_A", "late"}


def test_a_kept_searcher_answers_as_a_fresh_one_and_follows_the_index(atlas, split_dir, tmp_path):
    """``keep=True`` (the service) reuses one searcher per index state, with per-query options."""
    from foldatlas.atlas import NewEntry, codec
    from foldatlas.atlas import structsearch

    query = query_chains("1AX8_A", atlas)
    fresh = search_structures(atlas, query, StructureSearchOptions(max_hits=3))[0]
    kept = search_structures(atlas, query, StructureSearchOptions(max_hits=3), keep=True)[0]
    searcher = next(iter(structsearch._KEPT.values()))
    assert [(h.target, h.tm_score) for h in kept] == [(h.target, h.tm_score) for h in fresh]
    assert len(search_structures(atlas, query, StructureSearchOptions(max_hits=1), keep=True)[0]) == 1
    assert next(iter(structsearch._KEPT.values())) is searcher  # same index, same searcher
    moved = _moved(read_structure(split_dir / "1AX8_A.pdb"))
    atlas.insert([NewEntry(id="late", sequence=atlas.get("1AX8_A").sequence, kind="imported", model="test",
                           structure=codec.encode_structure(moved))])
    found = {h.target for h in search_structures(atlas, query, keep=True)[0] if h.tm_score > 0.99}
    assert found == {"1AX8_A", "late"} and next(iter(structsearch._KEPT.values())) is not searcher
    with pytest.raises(InvalidOptionError, match="keeps its mode"):
        next(iter(structsearch._KEPT.values())).search(query[0], StructureSearchOptions(mode="alphabet"))


def test_read_only_atlas_with_a_stale_index_says_so(atlas, tmp_path):
    import shutil

    from foldatlas.atlas.structindex import index_dir

    search_structures(atlas, query_chains("1AX8_A", atlas))  # indexes everything
    readonly = open_atlas(atlas.folder, readonly=True)
    assert search_structures(readonly, query_chains("1AX8_A", readonly))[0][0].target == "1AX8_A"
    shutil.rmtree(index_dir(atlas.folder))  # as an atlas indexed by an older foldatlas (another index format)
    with pytest.raises(InvalidOptionError, match="structure index is missing or behind"):
        search_structures(readonly, query_chains("1AX8_A", readonly))


def test_errors(atlas, tmp_path):
    with pytest.raises(InvalidFileError, match="no such file"):
        query_chains(tmp_path / "missing.pdb", atlas)
    (tmp_path / "bad.pdb").write_text("nothing to see\n")
    with pytest.raises(InvalidFileError, match="neither PDB nor mmCIF"):
        query_chains(tmp_path / "bad.pdb", atlas)
    with pytest.raises(UnknownEntryError):
        query_chains("NOPE", atlas)
    with pytest.raises(InvalidFileError, match="no chain Z"):
        query_chains("1AX8_A", atlas, chains="Z")
    for bad in ({"max_hits": 0}, {"min_tm": 1.5}, {"candidates": 0}, {"tmalign": -1}, {"threads": 0},
                {"mode": "dali"}, {"aa_weight": -1}):
        with pytest.raises(InvalidOptionError):
            StructureSearchOptions(**bad)


def test_tmalign_worker_processes_give_the_same_hits(atlas, split_dir):
    queries = query_chains(split_dir / "1DFU_C.pdb")
    here = search_structures(atlas, queries, StructureSearchOptions(tmalign=4))[0]
    pooled = search_structures(atlas, queries, StructureSearchOptions(tmalign=4, workers=2))[0]
    assert [(h.target, h.tm_score, h.rmsd) for h in here] == [(h.target, h.tm_score, h.rmsd) for h in pooled]


def test_a_distant_partner_ranks_first_by_the_3di_aa_score(atlas, split_dir, tmp_path):
    """A copy with 1 A coordinate noise (TM-score about 0.74) and 40% of its residues mutated (a remote homolog's
    kind of difference)
    outranks every other chain in the alignment stage, and TM-align confirms it; the 3Di+AA score of a partner is
    far above the unrelated chains'."""
    from foldatlas.atlas import NewEntry, codec

    atoms = read_structure(split_dir / "1BUN_B.pdb")
    rng = np.random.default_rng(5)
    far = _moved(atoms, seed=9)
    far.coord = (far.coord + rng.normal(0, 1.0, far.coord.shape)).astype(np.float32)
    residues = np.unique(far.res_id)
    mutated = set(rng.choice(residues, int(0.4 * len(residues)), replace=False).tolist())
    names = np.array(["ALA", "GLY", "SER", "LEU", "LYS", "GLU", "ASP", "VAL"])
    for r in mutated:
        far.res_name[far.res_id == r] = names[rng.integers(len(names))]
    atlas.insert([NewEntry(id="far", sequence="".join(ca_trace(far)[1]), kind="imported", model="test",
                           structure=codec.encode_structure(far))])
    query = query_chains(split_dir / "1BUN_B.pdb")
    hits = search_structures(atlas, query, StructureSearchOptions(tmalign=2, refine=False))[0]
    assert [h.target for h in hits[:2]] == ["1BUN_B", "far"]
    assert hits[1].tm_score > 0.6 and hits[1].identity < 0.7
    assert hits[1].prefilter_score > 3 * max(h.prefilter_score for h in hits[2:])
    # ranked by refined TM-scores (the default), the partner is second too, its refined score near TM-align's
    refined = search_structures(atlas, query, StructureSearchOptions(tmalign=0))[0]
    assert [h.target for h in refined[:2]] == ["1BUN_B", "far"] and refined[1].method == "refined"
    assert abs(refined[1].tm_score - hits[1].tm_score) < 0.03 and refined[0].tm_score > 0.99
    assert all(h.tm_score < 0.5 for h in refined[2:])


def test_index_built_in_worker_processes_equals_the_serial_one(atlas, tmp_path):
    """Large updates decode and encode in worker processes: the same shard as one process builds."""
    import shutil

    from foldatlas.atlas.structindex import index_dir, load_structure_shards, update_structure_index

    other = tmp_path / "other"
    shutil.copytree(atlas.folder, other, ignore=shutil.ignore_patterns("structindex-*"))
    update_structure_index(atlas, workers=0)
    with open_atlas(other) as copy:
        assert update_structure_index(copy, workers=2) == len(atlas)
    a, b = load_structure_shards(atlas.folder), load_structure_shards(other)
    assert index_dir(other).is_dir() and len(a) == len(b) == 1
    for name in ("target_row", "target_chain", "offsets", "centre", "states", "states3di", "ca", "residues"):
        np.testing.assert_array_equal(getattr(a[0], name), getattr(b[0], name))


def test_alignment_path_keeps_mismatched_pairs():
    """pyopal writes identical pairs as M and mismatched ones as X: both are aligned pairs."""
    import pyopal

    from foldatlas.atlas.structsearch import _path

    [res] = pyopal.align("MKVLAAGIVGLLLAAQ", ["MKVLAGGIVGLLAAQ"], mode="full", threads=1)
    assert "X" in res.alignment and "D" in res.alignment
    qi, ti = _path(res.alignment, res.query_start, res.target_start)
    assert len(qi) == res.alignment.count("M") + res.alignment.count("X")
    assert qi[5] == 5 and ti[5] == 5  # the mismatch A/G is a pair
    assert qi[-1] == 15 and ti[-1] == 14  # the deletion shifts the rest by one
