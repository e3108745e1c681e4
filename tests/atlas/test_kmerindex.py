"""The 3Di k-mer stage: similar k-mers and diagonal scores against brute force, the kept index, the searcher."""

import itertools

import numpy as np
import pytest

from foldatlas.atlas import ImportOptions, import_structures, kmerindex, open_atlas
from foldatlas.atlas import structsearch
from foldatlas.atlas.structindex import load_structure_shards, update_structure_index
from foldatlas.atlas.structsearch import StructureSearchOptions, query_chains, search_structures
from foldatlas.errors import InvalidOptionError
from foldatlas.structure.threedi import matrix_3di


@pytest.fixture()
def k3(monkeypatch):
    """3-mers, so that brute force can enumerate every k-mer."""
    monkeypatch.setattr(kmerindex, "K", 3)
    return 3


def _brute_similar(query, threshold):
    m = matrix_3di()
    out = set()
    for p in range(len(query) - 2):
        window = query[p:p + 3]
        if (window >= 20).any():
            continue
        for kmer in itertools.product(range(20), repeat=3):
            if sum(m[a, b] for a, b in zip(window, kmer)) >= threshold:
                out.add((kmer[0] * 400 + kmer[1] * 20 + kmer[2], p))
    return out


def test_similar_kmers_are_every_kmer_over_the_threshold(k3):
    rng = np.random.default_rng(1)
    query = rng.integers(0, 20, 14)
    query[6] = 20  # undefined: the windows holding it give nothing
    for threshold in (10, 16):
        codes, positions = kmerindex.similar_kmers(query, matrix_3di(), threshold)
        assert set(zip(codes.tolist(), positions.tolist())) == _brute_similar(query, threshold)
        assert not set(positions.tolist()) & {4, 5, 6}
    assert len(kmerindex.similar_kmers(query[:2], matrix_3di(), 10)[0]) == 0


def test_diagonal_scores_equal_brute_force_across_blocks(k3, monkeypatch, tmp_path):
    monkeypatch.setattr(kmerindex, "BLOCK_CHAINS", 37)
    rng = np.random.default_rng(2)
    lengths = rng.integers(2, 40, 120)
    states = np.concatenate([rng.integers(0, 21, n) for n in lengths])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    index = kmerindex.KmerIndex.build(states, offsets)
    assert len(index.blocks) == 5  # 4 blocks of up to 37 chains
    query = states[offsets[3]:offsets[4]]
    codes, positions = kmerindex.similar_kmers(query, matrix_3di(), 12)
    by_code = {}
    for c, p in zip(codes.tolist(), positions.tolist()):
        by_code.setdefault(c, []).append(p)
    expected = []
    for t in range(len(lengths)):
        target = states[offsets[t]:offsets[t + 1]]
        diagonals = {}
        for j in range(len(target) - 2):
            if (target[j:j + 3] >= 20).any():
                continue
            for p in by_code.get(int(target[j] * 400 + target[j + 1] * 20 + target[j + 2]), []):
                diagonals[j - p] = diagonals.get(j - p, 0) + 1
        expected.append(max(diagonals.values(), default=0))
    got = index.scores(codes, positions)
    assert got.tolist() == expected and got[3] == max(expected) and got[3] > 0
    # kept on disk and read back (memory-mapped) with the same scores; threads give the same too
    index.save(tmp_path / "kmers")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        assert kmerindex.KmerIndex.load(tmp_path / "kmers").scores(codes, positions, pool).tolist() == expected


@pytest.fixture()
def atlas(tmp_path, split_dir):
    a = open_atlas(tmp_path / "atlas", create=True)
    import_structures(a, [split_dir], None, ImportOptions(), progress=False)
    return a


def test_the_kmer_stage_finds_the_query_first_and_keeps_its_index(atlas, split_dir, monkeypatch):
    update_structure_index(atlas)
    shard = load_structure_shards(atlas.folder)[0]
    index = kmerindex.kmer_index(shard)
    assert (shard.path / "kmer-v1-k6" / "blocks.npy").exists()
    assert np.array_equal(kmerindex.kmer_index(shard).codes, index.codes)  # read back, not rebuilt
    # a shortlist of one chain out of four: the query itself still comes through, first
    monkeypatch.setattr(structsearch, "SHORTLIST_MIN", 1)
    monkeypatch.setattr(structsearch, "SHORTLIST_FRACTION", 0.25)
    for name in ("1FHG_A", "1BUN_B"):
        hits = search_structures(atlas, query_chains(split_dir / f"{name}.pdb"),
                                 StructureSearchOptions(prefilter="kmer"))[0]
        assert [h.target for h in hits] == [name] and hits[0].tm_score > 0.99
    # a lower threshold generates more similar k-mers, and finds the query too
    searcher = structsearch.StructureSearcher(load_structure_shards(atlas.folder), StructureSearchOptions())
    query = "".join(structsearch.THREEDI_LETTERS[x] for x in shard.target_states3di(0))
    assert searcher._shortlist(query, 20.0)[0] == searcher._shortlist(query, 30.0)[0] == [0]
    # scan and auto (below KMER_FROM chains: the scan) see every chain
    for prefilter in ("scan", "auto"):
        hits = search_structures(atlas, query_chains(split_dir / "1FHG_A.pdb"),
                                 StructureSearchOptions(prefilter=prefilter))[0]
        assert hits[0].target == "1FHG_A" and len(hits) == 4


def test_prefilter_option_errors():
    with pytest.raises(InvalidOptionError, match="--structure-prefilter must be one of"):
        StructureSearchOptions(prefilter="blast")
    with pytest.raises(InvalidOptionError, match="kmer needs --mode 3diaa or 3di"):
        StructureSearchOptions(prefilter="kmer", mode="alphabet")
    with pytest.raises(InvalidOptionError, match="--kmer-threshold"):
        StructureSearchOptions(kmer_threshold=0)
