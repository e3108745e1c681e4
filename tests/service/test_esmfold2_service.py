"""The service folding with ESMFold2: settings in /api/v1/info, samples in the entry and under its samples routes
(every sample's scores and structure, 404 JSON for unknown ones), mismatched fields refused."""

from __future__ import annotations

import pytest

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
        assert entry["provenance"]["precision"]["mode"] == "exact"  # what ran, recorded per entry
        assert client.get("/api/v1/info").json()["precision"]["mode"] == "exact"
        for field, value in (("num_samples", 3), ("seed", 9), ("num_recycles", 1)):
            bad = client.post("/api/v1/fold", json={"sequence": SEQ, field: value})
            assert bad.status_code in (400, 422) and bad.json()["error"]["field"] == field, bad.text


def _bfactors_by_residue(pdb: str):
    """Cα B-factors of a PDB text, in residue order."""
    return [float(line[60:66]) for line in pdb.splitlines() if line.startswith("ATOM") and line[12:16] == " CA "]


def _coordinates(pdb: str):
    return [line[30:54] for line in pdb.splitlines() if line.startswith("ATOM")]


def test_every_sample_of_an_esmfold2_entry_is_served(atlas_dir, tiny_fold2_model, lm_embedder):
    from fastapi.testclient import TestClient

    from foldatlas.atlas import codec
    from foldatlas.service import ServiceSettings, create_app

    settings = ServiceSettings(atlas=atlas_dir, max_length=400)
    with TestClient(create_app(settings, folding_model=tiny_fold2_model, embedder=lm_embedder)) as client:
        answer = client.post("/api/v1/fold", json={"sequence": SEQ, "name": "s1", "wait": 60})
        assert answer.status_code == 200 and answer.json()["status"] == "done", answer.text
        links = answer.json()["links"]
        entry = client.get(links["entry"]).json()
        listing = client.get(links["samples"])
        assert listing.status_code == 200, listing.text
        body = listing.json()
        best = entry["provenance"]["best_sample"]
        assert body["id"] == entry["id"] and body["best_sample"] == best
        assert [s["sample"] for s in body["samples"]] == [0, 1, 2]
        for listed, summary in zip(body["samples"], entry["provenance"]["samples"]):
            for key in ("ptm", "iptm", "mean_plddt", "ranking_score"):
                assert listed[key] == pytest.approx(summary[key], abs=1e-3), key
        # the same listing through the sequence's MD5 (the key the service's fold jobs name entries by)
        assert client.get(f"/api/v1/entries/{codec.sequence_md5(SEQ)}/samples").json() == body

        own = client.get(links["pdb"]).text
        for listed in body["samples"]:
            pdb = client.get(listed["links"]["pdb"])
            assert pdb.status_code == 200 and pdb.headers["content-type"].startswith("chemical/x-pdb")
            bfactors = _bfactors_by_residue(pdb.text)
            assert len(bfactors) == len(SEQ)
            assert sum(bfactors) / len(bfactors) == pytest.approx(listed["mean_plddt"], abs=0.02)
            assert f"sample {listed['sample']}" in pdb.text
            assert (_coordinates(pdb.text) == _coordinates(own)) == (listed["sample"] == best)
            cif = client.get(listed["links"]["cif"])
            assert cif.status_code == 200 and cif.text.startswith("data_")
            assert cif.headers["content-type"].startswith("chemical/x-mmcif")
        download = client.get(body["samples"][0]["links"]["pdb"], params={"download": "true"})
        assert "sample0_structure.pdb" in download.headers["content-disposition"]


def test_samples_of_unknown_entries_and_samples_are_404_json(atlas_dir, tiny_fold2_model, lm_embedder):
    from fastapi.testclient import TestClient

    from foldatlas.service import ServiceSettings, create_app

    settings = ServiceSettings(atlas=atlas_dir, max_length=400)
    with TestClient(create_app(settings, folding_model=tiny_fold2_model, embedder=lm_embedder)) as client:
        imported = client.get("/api/v1/entries/1BUN_B/samples")  # an imported entry stores no samples
        assert imported.status_code == 200 and imported.json() == {"id": "1BUN_B", "best_sample": None,
                                                                    "samples": []}
        for path in ("/api/v1/entries/NO_SUCH_ENTRY/samples", "/api/v1/entries/NO_SUCH_ENTRY/samples/0/structure.pdb"):
            missing = client.get(path)
            assert missing.status_code == 404, path
            assert missing.json()["error"]["code"] == "not_found"
            assert "no entry 'NO_SUCH_ENTRY'" in missing.json()["error"]["message"]
        none = client.get("/api/v1/entries/1BUN_B/samples/0/structure.cif")
        assert none.status_code == 404 and "has no sample 0" in none.json()["error"]["message"]
        entry_id = client.post("/api/v1/fold", json={"sequence": SEQ, "wait": 60}).json()["entry_id"]
        for sample in (3, -1):
            beyond = client.get(f"/api/v1/entries/{entry_id}/samples/{sample}/structure.pdb")
            assert beyond.status_code == 404, beyond.text
            assert f"has no sample {sample}; its samples are 0, 1, 2" in beyond.json()["error"]["message"]
        assert client.get(f"/api/v1/entries/{entry_id}/samples/0/pae.json").status_code == 422
        assert client.get(f"/api/v1/entries/{entry_id}/samples/first/structure.pdb").status_code == 422
