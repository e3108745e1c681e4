"""Sequence search: the k-mer index (shards, merges, catch-up) and pyhmmer search in both modes."""

import numpy as np
import pytest

from foldatlas.atlas import NewEntry, SearchOptions, open_atlas, search_sequences
from foldatlas.atlas import codec
from foldatlas.atlas.seqindex import (INDEX_DIR, SequenceShard, diagonal_scores, encode_digital, load_shards,
                                      update_sequence_index)
from foldatlas.errors import InvalidOptionError, InvalidSequenceError
from foldatlas.seq import make_record
from foldatlas.structure.io import read_structure

AA = "ACDEFGHIKLMNPQRSTVWY"


@pytest.fixture(scope="module")
def blob(split_dir):
    return codec.encode_structure(read_structure(split_dir / "1AX8_A.pdb"))


def _random(rng, n):
    return "".join(rng.choice(list(AA), n))


def _add(atlas, blob, items):
    atlas.insert([NewEntry(id=i, sequence=s, kind="imported", model="test", structure=blob) for i, s in items])


@pytest.fixture()
def atlas(tmp_path, blob, real_sequences):
    """Real chains, 40 random decoys, and a complex whose chain B is a real chain."""
    rng = np.random.default_rng(1)
    a = open_atlas(tmp_path / "atlas", create=True)
    _add(a, blob, list(real_sequences.items()))
    _add(a, blob, [(f"decoy{k}", _random(rng, int(rng.integers(60, 300)))) for k in range(40)])
    _add(a, blob, [("complex", _random(rng, 50) + ":" + real_sequences["1FHG_A"])])
    return a


def test_query_finds_itself_and_a_remote_copy_in_both_modes(atlas, real_sequences, mutate):
    queries = [make_record("self", real_sequences["1AX8_A"]),
               make_record("homolog", mutate(real_sequences["1AX8_A"], 0.5, seed=3)),
               make_record("unrelated", _random(np.random.default_rng(99), 150))]
    fast = search_sequences(atlas, queries, SearchOptions(exhaustive=False, engine="phmmer"))
    slow = search_sequences(atlas, queries, SearchOptions(exhaustive=True, engine="phmmer"))
    for hits in (fast, slow):
        top = hits[0][0]
        assert (top.target, top.chain, top.identity, top.query_coverage) == ("1AX8_A", "A", 1.0, 1.0)
        assert top.evalue < 1e-50 and top.query_aligned == real_sequences["1AX8_A"]
        assert hits[1] and hits[1][0].target == "1AX8_A" and 0.4 < hits[1][0].identity < 0.65
        assert hits[2] == []  # no decoy reaches E <= 1e-3
    # E-values are computed over the whole atlas in both modes
    assert fast[1][0].evalue == pytest.approx(slow[1][0].evalue, rel=1e-6)
    # a chain of a complex is found and named
    hits = search_sequences(atlas, [make_record("q", real_sequences["1FHG_A"])], SearchOptions(engine="phmmer"))[0]
    assert {(h.target, h.chain) for h in hits} >= {("1FHG_A", "A"), ("complex", "B")}


MMSEQS = pytest.mark.skipif(__import__("shutil").which("mmseqs") is None,
                            reason="the mmseqs program is not installed (optional engine)")


@MMSEQS
def test_mmseqs_engine_finds_planted_homologs_at_their_identity(atlas, real_sequences, mutate, blob):
    """Homologs planted at 90, 70 and 50% identity are found by MMseqs2 with about that identity, like phmmer;
    decoys are not; a complex's chain is named; the database is rebuilt when the atlas grows."""
    base = real_sequences["1AX8_A"]
    planted = [(f"p{round(100 * identity)}", mutate(base, identity, seed=7)) for identity in (0.9, 0.7, 0.5)]
    _add(atlas, blob, planted)
    query = make_record("q", base)
    for engine in ("mmseqs", "phmmer"):
        hits = {h.target: h for h in search_sequences(atlas, [query], SearchOptions(engine=engine))[0]}
        assert hits["1AX8_A"].identity == 1.0 and hits["1AX8_A"].evalue < 1e-30
        for name, _ in planted:
            expected = int(name[1:]) / 100
            assert abs(hits[name].identity - expected) < 0.12, (engine, name, hits[name].identity)
            assert hits[name].evalue < 1e-3 and hits[name].query_aligned.replace("-", "") in base
        assert not any(t.startswith("decoy") for t in hits)
    first = search_sequences(atlas, [query], SearchOptions(engine="mmseqs"))[0]
    assert first[0].midline.count("+") + sum(c.isalpha() for c in first[0].midline) == len(base)
    _add(atlas, blob, [("late", base)])
    killed = [atlas.folder / ".tmp-mmseqs-killed", atlas.folder / ".old-mmseqs-v1-99"]  # a killed rebuild's
    for folder in killed:
        (folder / "tmp").mkdir(parents=True)
    again = {h.target for h in search_sequences(atlas, [query], SearchOptions(engine="mmseqs"))[0]}
    assert "late" in again  # the database caught up with the new entry
    assert not any(f.exists() for f in killed)  # and the rebuild cleared what a killed one left
    hits = search_sequences(atlas, [make_record("q", real_sequences["1FHG_A"])], SearchOptions(engine="mmseqs"))[0]
    assert {(h.target, h.chain) for h in hits} >= {("1FHG_A", "A"), ("complex", "B")}


@MMSEQS
def test_mmseqs_hits_are_those_of_its_own_convertalis(atlas, real_sequences, mutate, blob, tmp_path):
    """The hits read from MMseqs2's alignment database (aligned strings rebuilt from the CIGAR, targets named
    through the key table of the shuffled database, the query database written without createdb) are field for
    field what MMseqs2's convertalis writes, gapped alignments and several queries included."""
    import subprocess

    from foldatlas.atlas.mmseqs import _COLUMNS, ensure_database, search_database

    base = real_sequences["1AX8_A"]
    gapped = base[:30] + "GSGSGS" + base[30:90] + base[97:]  # an insertion and a deletion
    _add(atlas, blob, [("gapped", mutate(gapped, 0.8, seed=5)), ("p60", mutate(base, 0.6, seed=2))])
    queries = [base, mutate(real_sequences["1FHG_A"], 0.7, seed=4), "MKTAYIAKQRQISFVKSHFSRQ"]
    targets = ensure_database(atlas, 1)
    ours = search_database(targets, queries, SearchOptions(), 2)  # two threads: one result file per thread
    work = tmp_path / "reference"
    work.mkdir()
    (work / "q.fasta").write_text("".join(f">{k}\n{q}\n" for k, q in enumerate(queries)))
    run = lambda *args: subprocess.run(["mmseqs", *args, "-v", "1"], check=True)  # noqa: E731
    run("createdb", str(work / "q.fasta"), str(work / "q"))
    run("search", str(work / "q"), str(targets), str(work / "res"), str(work / "tmp"), "-a", "-e", "0.001",
        "--max-seqs", "1000", "--threads", "1")
    run("convertalis", str(work / "q"), str(targets), str(work / "res"), str(work / "out.tsv"), "--format-output",
        _COLUMNS)
    reference = [[] for _ in queries]
    for line in (work / "out.tsv").read_text().splitlines():
        fields = line.split("\t")
        reference[int(fields[0])].append(fields)

    def comparable(rows):  # convertalis writes identity with one more digit ("1.000" for "1.00")
        return sorted(tuple(float(x) if i in (2, 8, 9) else x for i, x in enumerate(r)) for r in rows)

    assert [comparable(r) for r in ours] == [comparable(r) for r in reference]
    assert any("-" in r[12] for r in ours[0]) and any("-" in r[13] for r in ours[0])  # gaps on both sides
    assert ours[2] == []
    assert (targets.parent / "targets.keys.npy").is_file()  # kept with the database


def test_read_only_atlas_with_a_stale_sequence_index_says_so(atlas, real_sequences, blob):
    query = [make_record("q", real_sequences["1FHG_A"])]
    search_sequences(atlas, query, SearchOptions(engine="phmmer"))  # indexes everything
    readonly = open_atlas(atlas.folder, readonly=True)
    assert search_sequences(readonly, query, SearchOptions(engine="phmmer"))[0][0].target == "1FHG_A"
    _add(atlas, blob, [("late", real_sequences["1FHG_A"])])  # added without updating the index
    for engine in ("phmmer", "auto"):
        with pytest.raises(InvalidOptionError, match="sequence index is missing or behind"):
            search_sequences(readonly, query, SearchOptions(engine=engine))


def test_mmseqs_engine_missing_is_one_clear_error(atlas, monkeypatch):
    from foldatlas.atlas.seqsearch import resolve_engine

    monkeypatch.setenv("FOLDATLAS_MMSEQS", "/nonexistent/mmseqs")
    assert resolve_engine("auto") == "phmmer"
    with pytest.raises(InvalidOptionError, match="needs the mmseqs program"):
        search_sequences(atlas, [make_record("q", "MKTAYIAKQR")], SearchOptions(engine="mmseqs"))
    with pytest.raises(InvalidOptionError, match="--engine must be one of"):
        SearchOptions(engine="blast")


def test_default_mode_is_exhaustive_for_small_atlases_only(atlas, monkeypatch):
    from foldatlas.atlas import seqsearch

    update_sequence_index(atlas)
    shards = load_shards(atlas.folder)
    assert seqsearch.SequenceSearcher(shards, SearchOptions()).exhaustive
    monkeypatch.setattr(seqsearch, "EXHAUSTIVE_MAX_CHAINS", 10)
    assert not seqsearch.SequenceSearcher(shards, SearchOptions()).exhaustive
    assert seqsearch.SequenceSearcher(shards, SearchOptions(exhaustive=True)).exhaustive


def test_search_options_and_errors(atlas, real_sequences):
    hits = search_sequences(atlas, [make_record("q", real_sequences["1FHG_A"])],
                            SearchOptions(max_hits=1, engine="phmmer"))[0]
    assert len(hits) == 1
    strict = search_sequences(atlas, [make_record("q", real_sequences["1FHG_A"])],
                              SearchOptions(evalue=1e-300, engine="phmmer"))[0]
    assert all(h.evalue <= 1e-300 for h in strict)
    with pytest.raises(InvalidSequenceError, match="complex"):
        search_sequences(atlas, [make_record("q", "MKTAYIAK:GSHMLE")])
    for bad in ({"evalue": 0}, {"max_hits": 0}, {"max_candidates": 0}, {"threads": 0}):
        with pytest.raises(InvalidOptionError):
            SearchOptions(**bad)


def test_index_grows_in_log_structured_shards(tmp_path, blob):
    rng = np.random.default_rng(5)
    atlas = open_atlas(tmp_path / "atlas", create=True)
    seqs = []
    for batch in (16, 1, 1, 1, 4, 1):
        items = [(f"s{len(seqs) + k}", _random(rng, 80)) for k in range(batch)]
        seqs.extend(s for _, s in items)
        _add(atlas, blob, items)
        update_sequence_index(atlas)
    shards = load_shards(atlas.folder)
    assert 1 <= len(shards) <= 3
    assert [int(r) for s in shards for r in s.target_row] == list(range(1, len(seqs) + 1))
    got = ["".join(codec_letters(s.target_codes(t))) for s in shards for t in range(s.num_targets)]
    assert got == seqs
    # entries added without an index update are caught up by the next search
    _add(atlas, blob, [("late", seqs[0])])
    hits = search_sequences(atlas, [make_record("q", seqs[0])])[0]
    assert {h.target for h in hits} == {"s0", "late"}
    # a shard contained in a newer one (a crash between a merge's rename and cleanup) is ignored
    index = atlas.folder / INDEX_DIR
    newest = sorted(index.glob("shard-*"))[-1]
    first, last = (int(x) for x in newest.name.split("-")[1:])
    SequenceShard.build(np.array([last]), np.array([0]), [encode_digital("MKT")], last, last).save(
        index / f"shard-{last:012d}-{last:012d}")
    assert sum(s.num_targets for s in load_shards(atlas.folder)) == len(seqs) + 1


def test_a_large_index_update_keeps_the_pieces_it_finished(tmp_path, blob, monkeypatch):
    """An update is written in pieces of CHUNK_ROWS row ids: one that dies midway keeps the finished pieces, and
    the next update indexes the rest, every row once."""
    from foldatlas.atlas import shards as shards_module

    rng = np.random.default_rng(9)
    atlas = open_atlas(tmp_path / "atlas", create=True)
    _add(atlas, blob, [(f"s{k}", _random(rng, 60)) for k in range(23)])
    monkeypatch.setattr(shards_module, "CHUNK_ROWS", 5)
    real_build, calls = SequenceShard.build, []

    def dying_build(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process dies while indexing the third piece
        return real_build(*args, **kwargs)

    monkeypatch.setattr(SequenceShard, "build", staticmethod(dying_build))
    with pytest.raises(KeyboardInterrupt):
        update_sequence_index(atlas)
    assert [int(r) for s in load_shards(atlas.folder) for r in s.target_row] == list(range(1, 11))
    monkeypatch.setattr(SequenceShard, "build", staticmethod(real_build))
    assert update_sequence_index(atlas) == 13
    assert [int(r) for s in load_shards(atlas.folder) for r in s.target_row] == list(range(1, 24))


def codec_letters(codes):
    from foldatlas.atlas.seqindex import EASEL_AMINO

    return [EASEL_AMINO[c] for c in codes]


def test_diagonal_prefilter_scores_the_shared_diagonal():
    rng = np.random.default_rng(2)
    target = _random(rng, 120)
    query = _random(rng, 30) + target[40:90] + _random(rng, 30)  # shares a 50-residue stretch
    shard = SequenceShard.build(np.array([1, 2]), np.array([0, 0]),
                                [encode_digital(_random(rng, 120)), encode_digital(target)], 1, 2)
    targets, scores = diagonal_scores(shard, encode_digital(query))
    best = targets[np.argmax(scores)]
    assert best == 1 and scores.max() == 48  # every 3-mer of the shared stretch on one diagonal
    assert diagonal_scores(shard, encode_digital("MK"))[0].size == 0
