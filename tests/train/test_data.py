"""The data extraction on a tiny fixture: dedup, filters, homology-aware split, manifest."""

from __future__ import annotations

import json

import numpy as np

from foldatlas.train.data import StructureSet, load_structures, read_fasta_pairs
import shutil

import pytest

needs_mmseqs = pytest.mark.skipif(shutil.which("mmseqs") is None, reason="mmseqs2 not installed")


@needs_mmseqs
def test_split_keeps_homologs_of_heldout_out_of_training(tiny_data, tiny_sources):
    out, manifest = tiny_data
    lm_train = dict(read_fasta_pairs(out / "lm_train.fasta"))
    # The 60%-identity copies of the evaluation domains never reach training.
    assert "HOM0" not in lm_train and "HOM1" not in lm_train
    train = load_structures(out / "structures_train.npz")
    planted = {"P058_A", "P059_A"}
    assert not planted & set(map(str, train.ids))
    # Exact duplicates and bad alphabets are dropped and counted.
    assert "DUP0" not in lm_train and "BAD0" not in lm_train
    counts = manifest["counts"]
    assert counts["uniprot_duplicates"] == 1 and counts["uniprot_unusable"] == 1
    assert counts["removed_uniprot"] >= 2
    # Splits are disjoint and cover the usable chains (less the removed ones).
    split = [line.split("\t") for line in (out / "split.tsv").read_text().splitlines()[1:]]
    by_split = {}
    for ident, name, _ in split:
        by_split.setdefault(name, set()).add(ident)
    assert sum(len(v) for v in by_split.values()) == counts["structure_chains_usable"] == 60
    # A planted homolog is held out itself (test/valid) or removed from training.
    status = {ident: name for ident, name, _ in split}
    assert {status[p] for p in planted} <= {"test", "valid", "removed"}
    assert counts["removed_structure_chains"] == len(by_split.get("removed", ())) >= 1
    test = load_structures(out / "structures_test.npz")
    assert set(map(str, test.ids)) == by_split["test"] and len(test) >= 1
    assert not set(map(str, test.ids)) & set(map(str, train.ids))
    # The LM held-out set is not in LM training; train chains are.
    lm_valid = dict(read_fasta_pairs(out / "lm_valid.fasta"))
    assert len(lm_valid) == 20 and not set(lm_valid) & set(lm_train)
    assert set(map(str, train.ids)) <= set(lm_train)


@needs_mmseqs
def test_manifest_records_rule_counts_and_checksums(tiny_data):
    out, manifest = tiny_data
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert "30% identity" in on_disk["split_rule"] and on_disk["tools"]["mmseqs"]
    assert set(on_disk["files"]) >= {"lm_train.fasta", "lm_valid.fasta", "structures_train.npz", "split.tsv"}
    import hashlib
    assert on_disk["files"]["lm_valid.fasta"] == hashlib.sha256((out / "lm_valid.fasta").read_bytes()).hexdigest()


def test_structure_set_subset_round_trip(tmp_path, tiny_sources):
    s: StructureSet = tiny_sources["structures"]
    sub = s.subset([3, 1])
    assert list(sub.ids) == [s.ids[3], s.ids[1]]
    assert sub.chain(0)["sequence"] == s.chain(3)["sequence"]
    np.testing.assert_array_equal(sub.chain(1)["coords"], s.chain(1)["coords"])
    sub.save(tmp_path / "x.npz")
    back = load_structures(tmp_path / "x.npz")
    assert back.sequence == sub.sequence and back.dssp == sub.dssp
    np.testing.assert_array_equal(back.profile, sub.profile)


def test_missing_training_extra_is_a_one_line_error():
    from foldatlas.errors import DataToolError
    from foldatlas.train.sources import require_extra

    with pytest.raises(DataToolError, match=r"pip install 'foldatlas\[train\]'"):
        require_extra("foldatlas_no_such_module", "no-such-package")


def test_packed_structures_round_trip_to_a_hundredth_of_an_angstrom(tiny_data, tmp_path):
    from foldatlas.train.data import ideal_cb, load_structures, pack_structures, training_windows

    data, _ = tiny_data
    full = load_structures(data / "structures_train.npz")
    windows = training_windows(full, window=30, min_length=10, seed=1)
    assert len(windows) and all(len(windows.chain(k)["sequence"]) <= 30 for k in range(len(windows)))
    first = windows.chain(0)
    source = full.chain(int(np.flatnonzero(full.ids == first["id"])[0]))
    assert first["sequence"] in source["sequence"]
    size = pack_structures(windows, tmp_path / "packed.npz")
    back = load_structures(tmp_path / "packed.npz")
    assert size == (tmp_path / "packed.npz").stat().st_size
    assert back.sequence == windows.sequence and back.dssp == windows.dssp
    assert list(back.ids) == list(windows.ids) and np.array_equal(back.offsets, windows.offsets)
    assert np.abs(back.coords[:, :4] - windows.coords[:, :4]).max() <= 0.0051
    rebuilt = ideal_cb(back.coords[:, 0], back.coords[:, 1], back.coords[:, 2])
    np.testing.assert_allclose(back.coords[:, 4], rebuilt, atol=1e-4)
    assert back.profile.shape == windows.profile.shape and not back.profile.any()
