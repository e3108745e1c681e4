"""POST /api/v1/design: ProteinMPNN designs of an entry as a job, refolded by the server's model; errors as 4xx
JSON naming the field."""

import time


def _wait(client, job_id: str, timeout: float = 300) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        body = client.get(f"/api/v1/design/{job_id}").json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.5)
    raise AssertionError("design job did not finish")


def test_design_job_with_refolded_models(client):
    answer = client.post("/api/v1/design", json={"entry_id": "1BUN_B", "num_sequences": 2, "seed": 4,
                                                 "omit": "C", "refold": True})
    assert answer.status_code == 202, answer.text
    job = _wait(client, answer.json()["id"])
    assert job["status"] == "done", job
    result = job["result"]
    assert len(result["designs"]) == 2 and all("C" not in d["sequence"] for d in result["designs"])
    assert result["native"] and 0 < result["designs"][0]["score"] < 5
    refolded = result["refolded"]["designs"]
    assert sorted(r["index"] for r in refolded) == [0, 1, 2] and all(0 <= r["sc_tm"] <= 1 for r in refolded)
    assert set(job["links"]["models"]) == {"0", "1", "2"}
    pdb = client.get(job["links"]["models"]["1"])
    assert pdb.status_code == 200 and "ATOM" in pdb.text
    info = client.get("/api/v1/info").json()
    assert info["limits"]["design"]["num_sequences"][1] >= 8


def test_design_errors_name_the_field(client):
    cases = [({"entry_id": "NOPE"}, 404, "entry_id"),
             ({"entry_id": "1BUN_B", "fixed": "Z1-4"}, 422, "fixed"),
             ({"entry_id": "1BUN_B", "omit": "J"}, 422, "omit"),
             ({"entry_id": "1BUN_B", "num_sequences": 16, "refold": True}, 422, "num_sequences"),
             ({"entry_id": "1BUN_B", "temperature": 0}, 422, None),
             ({"entry_id": "1BUN_B", "colour": "red"}, 422, None)]
    for body, status, field in cases:
        answer = client.post("/api/v1/design", json=body)
        assert answer.status_code == status, (body, answer.text)
        error = answer.json()["error"]
        assert error["message"] and (field is None or error.get("field") == field), (body, error)
    missing = client.get("/api/v1/design/0123abc")
    assert missing.status_code == 404 and "no design job" in missing.json()["error"]["message"]
