"""Bulk build: folded entries match the fold engine, deduplication, resume, failures, model conflicts."""

import numpy as np
import pytest

from foldatlas.atlas import BuildOptions, build_atlas, open_atlas
from foldatlas.atlas import codec
from foldatlas.errors import OutputConflictError
from foldatlas.predict.engine import FoldOptions, fold_batch
from foldatlas.seq import make_record

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"


def test_build_stores_what_the_engine_predicts(tmp_path, tiny_model, embedder):
    atlas = open_atlas(tmp_path / "atlas", create=True)
    records = [make_record("p1", SEQ), make_record("dimer", "MKTAYIAKQR:GSHMLEDPVV")]
    result = build_atlas(atlas, records, tiny_model, embedder, BuildOptions(), progress=False)
    assert (result.folded, result.failed, len(atlas)) == (2, 0, 2)
    pred = fold_batch(tiny_model, [records[0]], FoldOptions())[0]
    e = atlas.get("p1")
    assert e.kind == "predicted" and e.model == tiny_model.name and e.model_version == tiny_model.weights_sha256
    ca = e.atoms()[e.atoms().atom_name == "CA"]
    np.testing.assert_allclose(ca.coord, pred.ca_positions, atol=1e-3)
    np.testing.assert_allclose(e.plddt, pred.plddt, atol=0.006)
    np.testing.assert_allclose(e.pae, pred.pae, atol=codec.PAE_STEP / 2 + 1e-5)
    assert e.ptm == pytest.approx(pred.ptm, abs=1e-6) and e.max_pae == pytest.approx(pred.max_pae)
    np.testing.assert_allclose(e.embedding, embedder([SEQ])[0], atol=2e-3)  # float16 storage
    dimer = atlas.get("dimer")
    assert dimer.iptm is not None and dimer.chains == ["MKTAYIAKQR", "GSHMLEDPVV"]
    assert set(dimer.atoms().chain_id) == {"A", "B"}
    assert atlas.get_meta("build_model")["weights_sha256"] == tiny_model.weights_sha256
    assert atlas.get_meta("embedding_model")["name"] == "foldatlas-lm-small"


def test_deduplication_and_resume(tmp_path, tiny_model):
    atlas = open_atlas(tmp_path / "atlas", create=True)
    first = [make_record("a", SEQ), make_record("b", SEQ), make_record("c", "GSHMLEDPVV")]
    r1 = build_atlas(atlas, first, tiny_model, None, BuildOptions(), progress=False)
    assert (r1.folded, r1.deduplicated, r1.skipped) == (2, 1, 0)
    assert len(atlas) == 2 and atlas.get("b").id == "a"
    # a rerun folds nothing; a new ID with a stored sequence becomes an alias, no fold
    second = first + [make_record("d", "GSHMLEDPVV"), make_record("e", "WWKKLLEE")]
    r2 = build_atlas(atlas, second, tiny_model, None, BuildOptions(), progress=False)
    assert (r2.folded, r2.deduplicated, r2.skipped, r2.failed) == (1, 1, 3, 0)
    assert len(atlas) == 3 and atlas.get("d").id == "c"
    assert atlas.stats()["aliases"] == 2
    # an ID already in the atlas with another sequence fails; the rest go on
    r3 = build_atlas(atlas, [make_record("a", "MKKKKKKKK"), make_record("f", "MLLLLLL")], tiny_model, None,
                     BuildOptions(), progress=False)
    assert (r3.folded, r3.failed) == (1, 1)
    assert atlas.get("a").sequence == SEQ
    assert [f["id"] for f in atlas.failures()] == ["a"]
    assert "another sequence" in atlas.failures()[0]["reason"]


def test_too_long_records_fail_and_are_retried(tmp_path, tiny_model):
    atlas = open_atlas(tmp_path / "atlas", create=True)
    records = [make_record("short", "MKTAYIAKQR"), make_record("long", SEQ)]
    r = build_atlas(atlas, records, tiny_model, None, BuildOptions(max_length=20), progress=False)
    assert (r.folded, r.failed) == (1, 1)
    assert "exceed the limit of 20" in atlas.failures()[0]["reason"]
    r = build_atlas(atlas, records, tiny_model, None, BuildOptions(max_length=100), progress=False)
    assert (r.folded, r.skipped, r.failed) == (1, 1, 0)
    assert atlas.failures() == []


def test_an_atlas_without_predictions_takes_any_model(tmp_path, tiny_model, split_dir):
    """The model record only guards predictions: an atlas of imported entries whose record names other weights (a
    service that never folded, an embedded model since replaced) is not refused, and records the model in use."""
    from foldatlas.atlas import ImportOptions, import_structures

    atlas = open_atlas(tmp_path / "atlas", create=True)
    import_structures(atlas, [split_dir / "1AX8_A.pdb"], None, ImportOptions(), progress=False)
    atlas.set_meta("build_model", {"name": "old-model", "weights_sha256": "0" * 64, "num_recycles": 1})
    r = build_atlas(atlas, [make_record("a", "MKTAYIAKQR")], tiny_model, None, BuildOptions(), progress=False)
    assert r.folded == 1 and atlas.get_meta("build_model")["weights_sha256"] != "0" * 64
    assert atlas.has_predictions()


def test_other_weights_or_recycles_are_refused(tmp_path, tiny_model, embedder):
    from foldatlas.models.loading import load_folding_model
    from foldatlas.models.random_checkpoint import write_random_esmfold

    atlas = open_atlas(tmp_path / "atlas", create=True)
    build_atlas(atlas, [make_record("a", "MKTAYIAKQR")], tiny_model, None, BuildOptions(), progress=False)
    other = load_folding_model(str(write_random_esmfold(tmp_path / "other", size="tiny", seed=1)), device="cpu")
    with pytest.raises(OutputConflictError, match="holds predictions of model"):
        build_atlas(atlas, [make_record("b", "MKT")], other, None, BuildOptions(), progress=False)
    with pytest.raises(OutputConflictError, match="num_recycles"):
        build_atlas(atlas, [make_record("b", "MKT")], tiny_model, None, BuildOptions(num_recycles=1),
                    progress=False)
    atlas.set_meta("embedding_model", {"name": "other-lm", "weights_sha256": "0" * 64, "load": "other-lm"})
    with pytest.raises(OutputConflictError, match="--embedding-model other-lm"):
        build_atlas(atlas, [make_record("b", "MKT")], tiny_model, embedder, BuildOptions(), progress=False)
    assert len(atlas) == 1


@pytest.mark.parametrize("bad", [{"max_tokens_per_batch": -1}, {"max_length": 0}, {"num_recycles": -1},
                                 {"chunk_size": -2}])
def test_build_options_are_validated(bad):
    with pytest.raises(ValueError):
        BuildOptions(**bad)
