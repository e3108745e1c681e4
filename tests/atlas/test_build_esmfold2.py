"""An atlas built with ESMFold2 records the seed and every sample's scores, and refuses other settings."""

from __future__ import annotations

import pytest

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGW"


def test_atlas_build_records_seed_and_samples_and_refuses_another_seed(tiny_fold2_model, tmp_path):
    from foldatlas.atlas import BuildOptions, build_atlas, open_atlas
    from foldatlas.errors import OutputConflictError
    from foldatlas.seq.records import make_record

    with open_atlas(tmp_path / "atlas", create=True) as atlas:
        result = build_atlas(atlas, [make_record("p1", SEQ)], tiny_fold2_model, None, BuildOptions(seed=3),
                             progress=False, log=lambda m: None)
        assert result.folded == 1
        entry = atlas.get("p1")
        meta = atlas.get_meta("build_model")
        assert (meta["seed"], meta["num_samples"]) == (3, 3) and "num_recycles" not in meta
        prov = entry.provenance
        assert prov["seed"] == 3 and len(prov["samples"]) == 3 and prov["sample"] == prov["best_sample"]
        best = prov["samples"][prov["best_sample"]]
        assert entry.ptm == pytest.approx(best["ptm"], abs=1e-5)
        with pytest.raises(OutputConflictError, match="seed=3"):
            build_atlas(atlas, [make_record("p2", SEQ[:-3])], tiny_fold2_model, None, BuildOptions(seed=4),
                        progress=False, log=lambda m: None)
