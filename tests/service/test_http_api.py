"""The HTTP API through the ASGI test client: ESM Atlas-compatible endpoints, the JSON API, and every error path."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parent.parent / "data" / "test_split"

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"


def _bfactors(pdb: str) -> np.ndarray:
    return np.array([float(line[60:66]) for line in pdb.splitlines() if line.startswith("ATOM")])


def _error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    assert "Traceback" not in response.text
    return body["error"]["message"]


@pytest.mark.smoke
def test_esm_fold_endpoint_answers_pdb_then_serves_it_from_the_atlas(client):
    first = client.post("/foldSequence/v1/pdb/", content=SEQ)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"].startswith("chemical/x-pdb")
    assert first.headers["x-foldatlas-cached"] == "false"
    entry_id = first.headers["x-foldatlas-entry"]
    b = _bfactors(first.text)
    assert len(b) > len(SEQ) * 4 and 0 <= b.min() and b.max() <= 100 and b.max() > 1  # pLDDT on 0-100

    again = client.post("/foldSequence/v1/pdb/", content=f">my protein\n{SEQ.lower()}\n")
    assert again.status_code == 200 and again.headers["x-foldatlas-cached"] == "true"
    assert again.headers["x-foldatlas-entry"] == entry_id and again.text == first.text

    entry = client.get(f"/api/v1/entries/{entry_id}").json()
    assert entry["sequence"] == SEQ and entry["kind"] == "predicted" and entry["description"] == "query"
    ca = [line for line in first.text.splitlines() if line.startswith("ATOM") and line[12:16] == " CA "]
    np.testing.assert_allclose([float(line[60:66]) for line in ca], entry["plddt"], atol=0.01)
    geo = entry["geometry"]  # the entry's geometry report, with the one-line warning when implausible
    assert geo["residues"] == len(SEQ) and geo["plausible"] == (geo["warning"] is None)
    experimental = client.get("/api/v1/entries/1AX8_A").json()["geometry"]
    assert experimental["chain_breaks"] == 0 and experimental["plausible"] and experimental["warning"] is None

    assert client.get(f"/fetchPredictedStructure/{entry_id}").text == first.text
    assert client.get(f"/fetchPredictedStructure/{entry_id}.pdb").text == first.text
    cif = client.get(f"/fetchPredictedStructure/{entry_id}.cif")
    assert cif.status_code == 200 and cif.text.startswith("data_") and "_atom_site" in cif.text
    assert "_ma_qa_metric_local" in cif.text  # ModelCIF: pLDDT as QA metrics
    bcif = client.get(f"/api/v1/entries/{entry_id}/structure.bcif")
    import io

    import modelcif.reader

    system, = modelcif.reader.read(io.BytesIO(bcif.content), format="BCIF")
    assert bcif.status_code == 200 and len(system.model_groups[0][0].qa_metrics) >= len(SEQ)
    conf = client.get(f"/fetchConfidencePrediction/{entry_id}").json()
    pae = np.array(conf["predicted_aligned_error"])
    assert pae.shape == (len(SEQ), len(SEQ)) and conf["max_predicted_aligned_error"] > 0
    assert conf["ptm"] == pytest.approx(entry["ptm"], abs=1e-4) and len(conf["plddt"]) == len(SEQ)
    assert client.get(f"/fetchSequence/{entry_id}").json() == {"id": entry_id, "sequence": SEQ}
    emb = client.get(f"/fetchEmbedding/ESM2/{entry_id}.json").json()
    binary = np.frombuffer(client.get(f"/fetchEmbedding/ESM2/{entry_id}.bin").content, dtype="<f2")
    assert emb["dim"] == len(emb["embedding"]) == len(binary) and emb["model"] == "foldatlas-lm-small"
    np.testing.assert_allclose(binary, emb["embedding"], atol=1e-3)
    afdb = client.get(f"/api/v1/entries/{entry_id}/pae.json").json()
    assert afdb[0]["predicted_aligned_error"] == conf["predicted_aligned_error"]


def test_fold_jobs_poll_until_done_and_link_their_entry(client):
    submitted = client.post("/api/v1/fold", json={"sequence": ">sp|X|Y some protein\nGAVLIKK:MKTAYIAKQ"})
    assert submitted.status_code in (200, 202)
    job = submitted.json()
    for _ in range(200):
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.05)
        job = client.get(f"/api/v1/jobs/{job['job_id']}").json()
    assert job["status"] == "done" and job["name"] == "sp|X|Y" and job["length"] == 16
    entry = client.get(job["links"]["entry"]).json()
    assert entry["chains"] == 2 and entry["sequence"] == "GAVLIKK:MKTAYIAKQ"
    pdb = client.get(job["links"]["pdb"]).text
    assert {line[21] for line in pdb.splitlines() if line.startswith("ATOM")} == {"A", "B"}
    download = client.get(job["links"]["cif"] + "?download=true")
    assert "attachment" in download.headers["content-disposition"]
    waited = client.post("/api/v1/fold", json={"sequence": "GAVLIKK:MKTAYIAKQ", "wait": 5})
    assert waited.status_code == 200 and waited.json()["cached"] is True


@pytest.mark.smoke
def test_fold_input_errors_are_422_naming_the_problem(client):
    assert "position 4" in _error(client.post("/foldSequence/v1/pdb/", content="MKTJAY"), 422, "invalid_sequence")
    assert "empty" in _error(client.post("/foldSequence/v1/pdb/", content="  \n"), 422, "invalid_sequence")
    assert "UTF-8" in _error(client.post("/foldSequence/v1/pdb/", content=b"\xff\xfe\x00"), 422, "invalid_sequence")
    message = _error(client.post("/foldSequence/v1/pdb/", content="A" * 401), 422, "sequence_too_long")
    assert "401 residues" in message and "400" in message
    assert "2 FASTA records" in _error(client.post("/api/v1/fold", json={"sequence": ">a\nMKT\n>b\nGAV"}), 422,
                                       "invalid_sequence")
    assert "sequence" in _error(client.post("/api/v1/fold", json={"seq": "MKT"}), 422, "invalid_request")
    _error(client.post("/api/v1/fold", content=b"{not json", headers={"content-type": "application/json"}), 422,
           "invalid_request")
    _error(client.post("/api/v1/fold", json={"sequence": "MKT", "wait": -1}), 422, "invalid_request")
    _error(client.get("/foldSequence/v1/pdb/"), 405, "method_not_allowed")


def test_unknown_ids_paths_and_formats(client):
    for path in ("/fetchPredictedStructure/NOPE", "/fetchConfidencePrediction/NOPE", "/fetchSequence/NOPE",
                 "/fetchEmbedding/ESM2/NOPE.json", "/api/v1/entries/NOPE", "/api/v1/entries/NOPE/structure.cif",
                 "/api/v1/jobs/0123", "/no/such/page"):
        _error(client.get(path), 404, "not_found")
    _error(client.get("/fetchEmbedding/ESM2/1AX8_A.npy"), 422, "invalid_option")
    _error(client.get("/api/v1/entries/1AX8_A/structure.exe"), 422, "invalid_option")
    # imported experimental entries have no PAE: a clear 404, not a crash
    assert "no PAE" in _error(client.get("/fetchConfidencePrediction/1AX8_A"), 404, "not_found")
    # nothing outside the atlas and the static folder is reachable
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/api/v1/entries/..%2F..%2Fetc%2Fpasswd/structure.pdb",
                 "/fetchPredictedStructure/..%2Fatlas.sqlite"):
        assert client.get(path).status_code == 404
    assert client.get("/static/vendor/3Dmol-min.js").status_code == 200


def test_request_bodies_over_the_limit_get_413(make_client):
    client = make_client(max_body_bytes=4096)
    _error(client.post("/foldSequence/v1/pdb/", content="A" * 5000), 413, "body_too_large")

    def chunks():  # no content-length: counted while streaming
        for _ in range(10):
            yield b"A" * 1000

    _error(client.post("/foldSequence/v1/pdb/", content=chunks()), 413, "body_too_large")
    _error(client.post("/api/v1/search/structure", files={"file": ("big.pdb", b"A" * 8000)}), 413, "body_too_large")


def test_a_full_queue_answers_503_with_retry_after(make_client, blocked_folds):
    client = make_client(queue_size=1, fold_workers=1)
    first = client.post("/api/v1/fold", json={"sequence": "MKTAYIAKQ"}).json()
    second = client.post("/api/v1/fold", json={"sequence": "GAVLIKKW"}).json()
    assert first["status"] in ("queued", "running") and second["status"] == "queued"
    same = client.post("/api/v1/fold", json={"sequence": "MKTAYIAKQ"}).json()
    assert same["job_id"] == first["job_id"]  # an identical sequence joins the running job
    refused = client.post("/api/v1/fold", json={"sequence": "WWWWHHHH"})
    assert "queue is full" in _error(refused, 503, "busy")
    assert int(refused.headers["retry-after"]) >= 1
    assert client.get("/api/v1/info").json()["pending_folds"] == 2
    blocked_folds.set()
    for job in (first, second):
        for _ in range(200):
            state = client.get(f"/api/v1/jobs/{job['job_id']}").json()
            if state["status"] == "done":
                break
            time.sleep(0.05)
        assert state["status"] == "done"
    assert client.post("/api/v1/fold", json={"sequence": "WWWWHHHH"}).status_code in (200, 202)


def test_a_slow_fold_times_out_with_504_and_finishes_later(make_client, blocked_folds):
    client = make_client(fold_timeout=0.3)
    response = client.post("/foldSequence/v1/pdb/", content="MKTAYIAKQ")
    assert "did not finish" in _error(response, 504, "timeout")
    job_id = response.json()["job"]["job_id"]
    blocked_folds.set()
    for _ in range(200):
        if client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "done":
            break
        time.sleep(0.05)
    assert client.post("/foldSequence/v1/pdb/", content="MKTAYIAKQ").headers["x-foldatlas-cached"] == "true"


def test_a_failed_fold_is_reported_and_the_service_goes_on(make_client, monkeypatch):
    import foldatlas.predict.engine as engine

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")

    client = make_client()
    monkeypatch.setattr(engine, "fold_batch", broken)
    response = client.post("/foldSequence/v1/pdb/", content="MKTAYIAKQ")
    assert "out of memory" in _error(response, 500, "fold_failed")
    assert response.json()["job"]["status"] == "failed"
    monkeypatch.undo()
    assert client.post("/foldSequence/v1/pdb/", content="MKTAYIAKQ").status_code == 200


def test_sequence_search_finds_the_atlas_chain(client, atlas_dir):
    from foldatlas.structure.io import ca_trace, read_structure

    seq = ca_trace(read_structure(DATA / "1BUN_B.pdb"))[1]
    result = client.post("/api/v1/search/sequence", json={"sequence": seq[5:-5], "max_hits": 5}).json()
    assert result["hits"][0]["target"] == "1BUN_B" and result["hits"][0]["identity"] == 1.0
    _error(client.post("/api/v1/search/sequence", json={"sequence": "MK1"}), 422, "invalid_sequence")
    _error(client.post("/api/v1/search/sequence", json={"sequence": "MKT", "max_hits": 0}), 422, "invalid_request")


@pytest.mark.smoke
def test_structure_search_by_upload_gzip_and_entry(client):
    pdb = (DATA / "1FHG_A.pdb").read_bytes()
    by_file = client.post("/api/v1/search/structure", files={"file": ("query.pdb", pdb)}, data={"max_hits": "3"})
    assert by_file.status_code == 200, by_file.text
    top = by_file.json()["hits"][0]
    assert top["target"] == "1FHG_A" and top["tm_score"] > 0.99 and len(by_file.json()["hits"]) <= 3
    by_gzip = client.post("/api/v1/search/structure", files={"file": ("query.pdb.gz", gzip.compress(pdb))})
    assert by_gzip.json()["hits"][0]["target"] == "1FHG_A"
    by_entry = client.post("/api/v1/search/structure", data={"entry_id": "1FHG_A"})
    assert by_entry.json()["hits"][0]["target"] == "1FHG_A"
    _error(client.post("/api/v1/search/structure", data={"max_hits": "3"}), 422, "invalid_file")
    _error(client.post("/api/v1/search/structure", files={"file": ("q.pdb", b"HELLO\n")}), 422, "invalid_file")
    _error(client.post("/api/v1/search/structure", files={"file": ("q.pdb", b"")}), 422, "invalid_file")
    _error(client.post("/api/v1/search/structure", files={"file": ("q.pdb.gz", b"\x1f\x8bnot gzip")}), 422,
           "invalid_file")
    _error(client.post("/api/v1/search/structure", data={"entry_id": "1FHG_A", "max_hits": "many"}), 422,
           "invalid_option")
    _error(client.post("/api/v1/search/structure", data={"entry_id": "1FHG_A", "chain": "Q"}), 422, "invalid_file")
    assert top["evalue"] is not None and top["evalue"] < 1e-3  # the default mode, 3Di+AA, gives E-values
    old = client.post("/api/v1/search/structure", data={"entry_id": "1FHG_A", "mode": "alphabet"}).json()["hits"]
    assert old[0]["target"] == "1FHG_A" and old[0]["evalue"] is None
    message = _error(client.post("/api/v1/search/structure", data={"entry_id": "1FHG_A", "mode": "dali"}), 422,
                     "invalid_option")
    assert "3diaa" in message
    _error(client.post("/api/v1/search/structure", data={"entry_id": "NOPE"}), 404, "not_found")
    _error(client.post("/api/v1/search/structure", content=b"--x\r\ngarbage",
                       headers={"content-type": "multipart/form-data; boundary=x"}), 422, "invalid_file")


def test_superposition_on_an_uploaded_structure(client):
    pdb = (DATA / "1DFU_C.pdb").read_bytes()
    result = client.post("/api/v1/superpose", data={"entry_id": "1DFU_C"}, files={"file": ("1dfu.pdb", pdb)}).json()
    assert result["tm_score"] > 0.99 and result["rmsd"] < 0.01 and result["entry_id"] == "1DFU_C"
    assert result["model_pdb"].count("ATOM") > 100 and result["reference_pdb"].count("ATOM") > 100
    other = client.post("/api/v1/superpose", data={"entry_id": "1AX8_A"}, files={"file": ("1dfu.pdb", pdb)}).json()
    assert other["tm_score"] < 0.5  # another protein
    _error(client.post("/api/v1/superpose", data={"entry_id": "1DFU_C"}, files={"file": ("x.pdb", b"ATOM junk")}),
           422, "invalid_file")
    _error(client.post("/api/v1/superpose", files={"file": ("1dfu.pdb", pdb)}), 422, "invalid_file")
    _error(client.post("/api/v1/superpose", data={"entry_id": "NOPE"}, files={"file": ("1dfu.pdb", pdb)}), 404,
           "not_found")


def test_map_points_are_the_entries_with_embeddings(client):
    data = client.get("/api/v1/map").json()
    assert data["total"] == 4 and {p["id"] for p in data["points"]} == {"1AX8_A", "1BUN_B", "1DFU_C", "1FHG_A"}
    xs = [p["x"] for p in data["points"]] + [p["y"] for p in data["points"]]
    assert min(xs) >= 0 and max(xs) <= 1 and max(xs) == 1
    client.post("/foldSequence/v1/pdb/", content=SEQ)
    grown = client.get("/api/v1/map").json()
    assert grown["total"] == 5
    assert client.get("/api/v1/map?max_points=2").json()["shown"] == 2
    _error(client.get("/api/v1/map?max_points=0"), 422, "invalid_request")


def test_info_docs_and_pages(client):
    info = client.get("/api/v1/info").json()
    assert info["max_length"] == 400 and info["atlas_entries"] == 4 and info["model"]
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/foldSequence/v1/pdb/", "/fetchPredictedStructure/{entry_id}", "/api/v1/fold",
                 "/api/v1/search/structure", "/api/v1/map"):
        assert path in paths
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/static/vendor/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text
    assert client.get("/static/vendor/swagger-ui-bundle.js").status_code == 200
    for page in ("/", "/entry/1AX8_A", "/search?sequence=MKT", "/map"):
        response = client.get(page)
        assert response.status_code == 200 and "3Dmol-min.js" in response.text


def test_concurrent_folds_lookups_and_searches_all_succeed(client):
    from concurrent.futures import ThreadPoolExecutor

    pdb = (DATA / "1FHG_A.pdb").read_bytes()
    seqs = ["MKTAYIAKQRQISFVK", "GAVLIKKWMKTAYIAK", "HPETLVKVKDAEDQLG"]

    def fold(seq):
        return client.post("/foldSequence/v1/pdb/", content=seq).status_code

    def lookups(k):
        codes = []
        for _ in range(5):
            codes.append(client.get("/fetchPredictedStructure/1AX8_A").status_code)
            codes.append(client.get("/api/v1/entries/1BUN_B").status_code)
            codes.append(client.get("/api/v1/map").status_code)
        codes.append(client.post("/api/v1/search/sequence", json={"sequence": "MKTAYIAKQRQISFVK"}).status_code)
        codes.append(client.post("/api/v1/search/structure", files={"file": ("q.pdb", pdb)}).status_code)
        return codes

    with ThreadPoolExecutor(8) as pool:
        folds = [pool.submit(fold, s) for s in seqs]
        reads = [pool.submit(lookups, k) for k in range(5)]
        assert [f.result() for f in folds] == [200, 200, 200]
        assert {c for r in reads for c in r.result()} == {200}
    assert client.get("/api/v1/info").json()["atlas_entries"] == 7


@pytest.mark.smoke
@pytest.mark.parametrize("path, body, field, message", [
    ("/api/v1/fold", {"sequence": SEQ, "num_recycles": 99}, "num_recycles", "less than or equal to 24"),
    ("/api/v1/fold", {"sequence": SEQ, "num_recycles": -1}, "num_recycles", "greater than or equal to 0"),
    ("/api/v1/fold", {"sequence": SEQ, "num_recycles": 7}, "num_recycles", "this server folds with"),
    ("/api/v1/fold", {"sequence": SEQ, "recycles": 3}, "recycles", "unknown field"),
    ("/api/v1/fold", {"sequence": SEQ, "wait": 601}, "wait", "less than or equal to 600"),
    ("/api/v1/fold", {"sequence": "MKJT"}, "sequence", "invalid residue 'J' at position 3"),
    ("/api/v1/fold", {"sequence": "A" * 401}, "sequence", "401 residues"),
    ("/api/v1/fold", {"sequence": SEQ, "name": "x" * 201}, "name", "at most 200"),
    ("/api/v1/search/sequence", {"sequence": SEQ, "max_hits": 1001}, "max_hits", "at most 1000"),
    ("/api/v1/search/sequence", {"sequence": SEQ, "max_hits": 0}, "max_hits", "greater than or equal to 1"),
    ("/api/v1/search/sequence", {"sequence": SEQ, "evalue": 0}, "evalue", "greater than 0"),
    ("/api/v1/search/sequence", {"sequence": SEQ, "evalue": 1e9}, "evalue", "less than or equal to 1000"),
])
def test_out_of_range_values_are_422_naming_the_field(client, path, body, field, message):
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert message in error["message"] and error.get("field") == field, error


@pytest.mark.parametrize("fields, field", [
    ({"entry_id": "1AX8_A", "min_tm": "2"}, "min_tm"),
    ({"entry_id": "1AX8_A", "min_tm": "nan"}, "min_tm"),
    ({"entry_id": "1AX8_A", "tmalign": "999"}, "tmalign"),
    ({"entry_id": "1AX8_A", "max_hits": "many"}, "max_hits"),
    ({"entry_id": "1AX8_A", "chain": "Q"}, "chain"),
    ({"entry_id": "NOPE"}, "entry_id"),
    ({"entry_id": "1AX8_A", "minimum_tm": "0.5"}, "minimum_tm"),
])
def test_structure_search_form_fields_are_checked(client, fields, field):
    response = client.post("/api/v1/search/structure", data=fields)
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert error["message"].startswith(f"{field}: "), error


def test_info_lists_every_limit_and_the_recycles_folds_use(client):
    info = client.get("/api/v1/info").json()
    limits = info["limits"]
    assert limits["fold"]["num_recycles_range"] == [0, 24] and limits["fold"]["max_length"] == 400
    assert limits["fold"]["num_recycles"] == info["num_recycles"] >= 0  # a number, never null
    assert limits["search"]["max_hits"] == [1, 1000] and limits["lm"]["max_residues"] == 4096
    assert client.get("/api/v1/map?max_points=0").json()["error"]["field"] == "max_points"
    ok = client.post("/api/v1/fold", json={"sequence": SEQ, "num_recycles": info["num_recycles"], "wait": 60})
    assert ok.status_code == 200 and ok.json()["status"] == "done"


def test_binary_map_header_points_lookups_and_locate(client):
    header = client.get("/api/v1/map/layout").json()
    assert header["count"] == 4 and header["total_entries"] == 4 and header["clustering"] is None
    raw = client.get("/api/v1/map/points.bin", headers={"Accept-Encoding": "identity"}).content
    assert len(raw) == header["bytes"] == 4 * 11
    packed = client.get("/api/v1/map/points.bin", headers={"Accept-Encoding": "gzip"})
    assert packed.content == raw  # the client decodes the gzip encoding it asked for
    assert packed.headers.get("content-encoding") == "gzip" and header["bytes_gzip"] > 0
    indices = client.post("/api/v1/map/locate", json={"ids": ["1FHG_A", "nope"]}).json()
    assert indices["missing"] == ["nope"] and len(indices["indices"]) == 1
    point = client.get(f"/api/v1/map/points/{indices['indices'][0]}").json()
    assert point["id"] == "1FHG_A" and point["cluster_rep"] == "1FHG_A"
    _error(client.get("/api/v1/map/points/4"), 404, "not_found")
    assert _error(client.get("/api/v1/map/layout?clustering=x"), 422, "invalid_option")
    _error(client.post("/api/v1/map/locate", json={"ids": ["a"], "extra": 1}), 422, "invalid_request")
    client.post("/foldSequence/v1/pdb/", content=SEQ)
    assert client.get("/api/v1/map/layout").json()["count"] == 5  # follows the atlas
