"""Clustering: planted families by sequence and by structure, thresholds, the alignment rescue, incremental runs,
filters, export, the CLI and its errors."""

from pathlib import Path

import numpy as np
import pytest

from foldatlas.atlas import NewEntry, codec, open_atlas
from foldatlas.atlas.cluster import ClusterOptions, cluster_atlas, cluster_groups, cluster_sequences
from foldatlas.errors import AtlasError, InvalidOptionError
from foldatlas.structure.io import read_structure

DATA = Path(__file__).resolve().parent.parent / "data" / "test_split"
AA = "ACDEFGHIKLMNPQRSTVWY"


def _random(rng, n):
    return "".join(rng.choice(list(AA), n))


@pytest.fixture(scope="module")
def families(mutate):
    """Five unrelated 'parents' (160-260 residues), each with copies at 95% and 88% identity, a 92% copy with a
    12-residue deletion in the middle, and a half-length fragment. (Linclust's k-mer candidates find most pairs
    above 85% identity and fewer below: BENCHMARKS.md has the rates by identity.)"""
    rng = np.random.default_rng(7)
    seqs, family = [], []
    for f in range(5):
        parent = _random(rng, int(rng.integers(160, 260)))
        mid = len(parent) // 2
        for s in (parent, mutate(parent, 0.95, seed=f), mutate(parent, 0.88, seed=10 + f),
                  mutate(parent[:mid] + parent[mid + 12:], 0.92, seed=20 + f), parent[:len(parent) // 2]):
            seqs.append(s)
            family.append(f)
    return seqs, np.array(family)


def test_planted_families_cluster_and_fragments_stay_apart(families):
    seqs, family = families
    reps = cluster_sequences(seqs, ClusterOptions(min_identity=0.3, coverage=0.8, threads=1))
    fragment = np.arange(len(seqs)) % 5 == 4
    for f in range(5):
        full = np.flatnonzero((family == f) & ~fragment)
        assert len(set(reps[full])) == 1, f"family {f}: {reps[full]}"
        assert reps[full[0]] == full[0]  # the longest (the parent, first on ties) represents it
    assert (reps[fragment] == np.flatnonzero(fragment)).all()  # coverage 0.8 keeps half-length fragments out
    assert len(set(reps)) == 10
    # a low coverage threshold lets the fragments in; a high identity one splits the 88% copies off
    loose = cluster_sequences(seqs, ClusterOptions(min_identity=0.3, coverage=0.4, threads=2))
    assert len(set(loose)) == 5
    strict = cluster_sequences(seqs, ClusterOptions(min_identity=0.93, coverage=0.8, threads=1))
    assert all(strict[i] == i for i in np.flatnonzero(np.arange(len(seqs)) % 5 == 2))
    assert all(strict[i] == i - 1 for i in np.flatnonzero(np.arange(len(seqs)) % 5 == 1))  # the 95% copies stay


def test_a_copy_with_a_deletion_needs_the_gapped_alignment(families):
    """On the shared diagonal half of the copy with a deletion is out of register (identity about 0.5): the
    Smith-Waterman alignment finds its 0.86 (0.92 of 94% of the columns)."""
    from foldatlas.atlas.cluster import _texts_data, _ungapped

    seqs, _ = families
    data = _texts_data(seqs[:5])
    identity, cov_m, cov_c = _ungapped(data["residues"], data["offsets"], np.array([3]), np.array([0]),
                                       np.array([0]))
    assert identity[0] < 0.7
    reps = cluster_sequences(seqs[:5], ClusterOptions(min_identity=0.8, coverage=0.8, threads=1))
    assert reps[3] == 0


def test_greedy_set_cover_by_length():
    # 0 - 1 - 2 in a chain, 0 longest: 0 takes 1; 2 has no edge to 0 and becomes a representative
    reps = cluster_groups(np.array([0, 1, 2]), np.array([1, 2]), np.array([0, 1]), 3)
    assert reps.tolist() == [0, 0, 2]


def test_options_are_checked():
    for kw in ({"by": "shape"}, {"min_identity": 1.5}, {"coverage": -0.1}, {"min_tm": 2}, {"min_plddt": 101},
               {"min_ptm": 1.1}, {"kmers_per_entry": 0}, {"threads": 0}):
        with pytest.raises(InvalidOptionError):
            ClusterOptions(**kw)
    assert ClusterOptions().name == "sequence-id0.30-cov0.80"
    assert ClusterOptions(by="structure", min_plddt=70).name == "structure-tm0.50-cov0.80-plddt70"
    with pytest.raises(InvalidOptionError):
        cluster_sequences(["MKV"], ClusterOptions(by="structure"))


@pytest.fixture(scope="module")
def blob():
    return codec.encode_structure(read_structure(DATA / "1AX8_A.pdb"))


def _entry(entry_id, seq, blob, plddt=None):
    return NewEntry(id=entry_id, sequence=seq, kind="imported", model="experimental", structure=blob,
                    plddt=None if plddt is None else np.full(len(seq.replace(":", "")), float(plddt)))


def test_atlas_clustering_is_stored_incremental_and_exported(tmp_path, families, blob, run_cli, mutate):
    seqs, family = families
    atlas = open_atlas(tmp_path / "a", create=True)
    first = [i for i in range(len(seqs)) if i % 5 != 1]  # the 95% copies come later
    atlas.insert([_entry(f"s{i}", seqs[i], blob) for i in first])
    info = cluster_atlas(atlas, ClusterOptions(threads=1))
    assert (info["entries"], info["clusters"], info["runs"], info["new_entries"]) == (20, 10, 1, 20)
    name = "sequence-id0.30-cov0.80"
    assert atlas.clusterings()[name]["clusters"] == 10 and atlas.stats()["clusterings"][name]["entries"] == 20
    rep0 = atlas.resolve("s0")[0]
    assert atlas.cluster_size(name, rep0) == 3 and atlas.cluster_rep(name, atlas.resolve("s2")[0]) == rep0
    # new entries: the 95% copies join their family's cluster; a new unrelated sequence and its copy form a cluster
    rng = np.random.default_rng(1)
    stranger = _random(rng, 200)
    atlas.insert([_entry(f"s{i}", seqs[i], blob) for i in range(1, len(seqs), 5)] +
                 [_entry("new", stranger, blob), _entry("new-copy", mutate(stranger, 0.92, seed=1), blob)])
    before = dict(zip(*(a.tolist() for a in atlas.cluster_table(name))))
    info = cluster_atlas(atlas, ClusterOptions(threads=1))
    assert (info["entries"], info["clusters"], info["runs"], info["new_entries"], info["joined_existing"]) == \
        (27, 11, 2, 7, 5)
    after = dict(zip(*(a.tolist() for a in atlas.cluster_table(name))))
    assert all(after[m] == r for m, r in before.items())  # existing assignments stay
    assert atlas.cluster_rep(name, atlas.resolve("s1")[0]) == rep0
    assert atlas.cluster_rep(name, atlas.resolve("new-copy")[0]) == atlas.resolve("new")[0]
    assert cluster_atlas(atlas, ClusterOptions(threads=1))["new_entries"] == 0  # nothing new: nothing changes
    # export: MMseqs2's two-column TSV and the Parquet table
    r = run_cli("atlas", "export", "--atlas", str(tmp_path / "a"), "--clusters", str(tmp_path / "c.tsv"))
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in (tmp_path / "c.tsv").read_text().splitlines()]
    assert len(rows) == 27 and ["s0", "s0"] in rows and ["s0", "s1"] in rows and ["new", "new-copy"] in rows
    r = run_cli("atlas", "export", "--atlas", str(tmp_path / "a"), "--clusters", str(tmp_path / "c.parquet"))
    assert r.returncode == 0, r.stderr
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "c.parquet").to_pydict()
    assert list(table) == ["repId", "memberId", "clusterSize", "isRepresentative"]
    k = table["memberId"].index("s2")
    assert (table["repId"][k], table["clusterSize"][k], table["isRepresentative"][k]) == ("s0", 4, False)


def test_plddt_filter_and_read_only(tmp_path, families, blob):
    seqs, _ = families
    atlas = open_atlas(tmp_path / "a", create=True)
    atlas.insert([_entry(f"s{i}", seqs[i], blob, plddt=50 if i == 0 else 90) for i in range(5)])
    info = cluster_atlas(atlas, ClusterOptions(min_plddt=70, threads=1))
    assert info["name"] == "sequence-id0.30-cov0.80-plddt70" and info["entries"] == 4
    members, reps = atlas.cluster_table(info["name"])
    assert atlas.resolve("s0")[0] not in members.tolist()
    s1 = atlas.resolve("s1")[0]
    assert atlas.cluster_rep(info["name"], s1) == s1  # the 95% copy, now the longest, represents
    assert atlas.cluster_rep(info["name"], atlas.resolve("s3")[0]) == s1
    atlas.close()
    with open_atlas(tmp_path / "a", readonly=True) as ro:
        with pytest.raises(AtlasError, match="read-only"):
            cluster_atlas(ro, ClusterOptions())


def test_structure_clustering_finds_a_copy_with_an_unrelated_sequence(tmp_path, split_dir, mutate):
    """A chain's structure under a sequence mutated to 20% identity: apart by sequence, together by structure."""
    from foldatlas.atlas import ImportOptions, import_structures

    atlas = open_atlas(tmp_path / "a", create=True)
    import_structures(atlas, [split_dir], None, ImportOptions(), progress=False)
    source = atlas.get("1AX8_A")
    atlas.insert([NewEntry(id="disguised", sequence=mutate(source.sequence, 0.2, seed=3), kind="imported",
                           model="test", structure=source.structure_blob)])
    by_seq = cluster_atlas(atlas, ClusterOptions(threads=1))
    by_struct = cluster_atlas(atlas, ClusterOptions(by="structure", threads=1))
    n = len(atlas)
    assert by_seq["clusters"] == n and by_struct["clusters"] == n - 1
    rows = (atlas.resolve("1AX8_A")[0], atlas.resolve("disguised")[0])
    assert atlas.cluster_rep("structure-tm0.50-cov0.80", rows[1]) in rows
    assert atlas.cluster_rep("structure-tm0.50-cov0.80", rows[0]) == atlas.cluster_rep("structure-tm0.50-cov0.80",
                                                                                        rows[1])


def test_cli_cluster_and_errors(tmp_path, families, blob, run_cli):
    seqs, _ = families
    atlas = open_atlas(tmp_path / "a", create=True)
    atlas.insert([_entry(f"s{i}", seqs[i], blob) for i in range(10)])
    atlas.close()
    r = run_cli("atlas", "cluster", "--atlas", str(tmp_path / "a"), "--min-identity", "0.5", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "sequence-id0.50-cov0.80: 10 entries in 4 clusters" in r.stdout
    r = run_cli("atlas", "stats", "--atlas", str(tmp_path / "a"), "--json")
    assert '"sequence-id0.50-cov0.80"' in r.stdout
    # search: all of the family's hits, or its representatives only
    every = run_cli("atlas", "search", "--atlas", str(tmp_path / "a"), "--sequence", seqs[0], "--engine", "phmmer")
    reps = run_cli("atlas", "search", "--atlas", str(tmp_path / "a"), "--sequence", seqs[0], "--engine", "phmmer",
                   "--representatives")
    assert every.returncode == 0 and reps.returncode == 0, every.stderr + reps.stderr
    targets = [line.split("\t")[1] for line in every.stdout.splitlines()[1:]]
    kept = [line.split("\t")[1] for line in reps.stdout.splitlines()[1:]]
    assert {"s0", "s1", "s2", "s3", "s4"} <= set(targets) and set(kept) == {"s0", "s4"}
    for args, message in ((("--by", "shape"), "--by must be one of"), (("--coverage", "2"), "--coverage must be"),
                          (("--min-plddt", "170"), "--min-plddt must be")):
        r = run_cli("atlas", "cluster", "--atlas", str(tmp_path / "a"), *args)
        assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    r = run_cli("atlas", "export", "--atlas", str(tmp_path / "a"), "--clusters", str(tmp_path / "c.tsv"),
                "--clustering", "nope")
    assert r.returncode != 0 and "no clustering 'nope'" in r.stderr and "sequence-id0.50-cov0.80" in r.stderr
    r = run_cli("atlas", "export", "--atlas", str(tmp_path / "a"), "--clusters", str(tmp_path / "c.csv"))
    assert r.returncode != 0 and "Traceback" not in r.stderr
