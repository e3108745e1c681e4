"""The service folding with ESMFold2: settings in /api/v1/info, samples in the entry, mismatched fields refused."""

from __future__ import annotations

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGW"


def test_service_folds_with_esmfold2_and_checks_num_samples_and_seed(atlas_dir, tiny_fold2_model, lm_embedder):
    from fastapi.testclient import TestClient

    from foldatlas.service import ServiceSettings, create_app

    settings = ServiceSettings(atlas=atlas_dir, max_length=400, seed=2, num_samples=2)
    with TestClient(create_app(settings, folding_model=tiny_fold2_model, embedder=lm_embedder)) as client:
        limits = client.get("/api/v1/info").json()["limits"]["fold"]
        assert (limits["seed"], limits["num_samples"], limits["num_recycles"]) == (2, 2, None)
        answer = client.post("/api/v1/fold", json={"sequence": SEQ, "wait": 60, "seed": 2, "num_samples": 2})
        assert answer.status_code == 200 and answer.json()["status"] == "done", answer.text
        entry = client.get(answer.json()["links"]["entry"]).json()
        assert entry["provenance"]["seed"] == 2 and len(entry["provenance"]["samples"]) == 2
        for field, value in (("num_samples", 3), ("seed", 9), ("num_recycles", 1)):
            bad = client.post("/api/v1/fold", json={"sequence": SEQ, field: value})
            assert bad.status_code in (400, 422) and bad.json()["error"]["field"] == field, bad.text
