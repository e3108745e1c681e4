"""The ESM Atlas successor's and AlphaFold DB's endpoints: contracts (field names and types), clusters, fold on a
miss, thumbnails and PAE images, and their errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

CONTRACTS = Path(__file__).resolve().parent.parent / "data" / "contracts"
SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"
_TYPES = {"str": str, "int": int, "float": (float, int), "bool": bool, "list": list, "dict": dict,
          "null": type(None)}


def _contract(record: dict, name: str) -> None:
    """Every field of the contract is there, with one of its types."""
    for field, kinds in json.loads((CONTRACTS / name).read_text()).items():
        assert field in record, f"{name}: no field {field}"
        kinds = [kinds] if isinstance(kinds, str) else kinds
        ok = tuple(t for k in kinds for t in (_TYPES[k] if isinstance(_TYPES[k], tuple) else (_TYPES[k],)))
        assert isinstance(record[field], ok) and not (isinstance(record[field], bool) and bool not in ok), \
            f"{name}: {field} = {record[field]!r} is not {kinds}"


def _shape(value):
    """Keys and types of a JSON value (what the recorded examples keep)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def _recorded(value, name: str):
    """The recorded example's shape (``FOLDATLAS_RECORD_CONTRACTS=1`` records it anew)."""
    import os

    path = CONTRACTS / name
    if os.environ.get("FOLDATLAS_RECORD_CONTRACTS") == "1":
        path.write_text(json.dumps(_shape(value), indent=1) + "\n")
    return json.loads(path.read_text())


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code and "Traceback" not in response.text
    return body


def _md5(seq: str) -> str:
    from foldatlas.atlas.codec import sequence_md5

    return sequence_md5(seq)


@pytest.fixture
def clustered(atlas_dir):
    """The test atlas plus a 95%-identity copy of 1AX8_A (its structure), clustered by sequence."""
    from foldatlas.atlas import NewEntry, open_atlas
    from foldatlas.atlas.cluster import ClusterOptions, cluster_atlas

    with open_atlas(atlas_dir) as atlas:
        source = atlas.get("1AX8_A")
        seq = list(source.sequence)
        for i in range(0, len(seq), 20):
            seq[i] = "W" if seq[i] != "W" else "A"
        atlas.insert([NewEntry(id="1AX8_A-variant", sequence="".join(seq), kind="imported", model="test",
                               structure=source.structure_blob)])
        cluster_atlas(atlas, ClusterOptions(threads=1))
        return source.checksum, _md5("".join(seq))


def _fold(client, seq: str = SEQ) -> dict:
    job = client.post("/api/v1/fold", json={"sequence": seq, "wait": 30}).json()
    assert job["status"] == "done", job
    return job


def test_successor_protein_and_cluster_endpoints(clustered, make_client):
    rep_md5, variant_md5 = clustered
    client = make_client()
    r = client.get(f"/proteins/{variant_md5}")
    assert r.status_code == 200, r.text
    record = r.json()
    _contract(record, "successor_protein.json")
    assert (record["protein_hash"], record["accession"], record["cluster_rep_protein_hash"]) == \
        (variant_md5, "1AX8_A-variant", rep_md5)
    assert record["sequence_length"] == len(record["sequence"]) and record["mean_plddt"] is None
    assert _shape(record) == _recorded(record, "example_successor_protein.json")
    assert client.get(f"/proteins/{variant_md5.upper()}").json()["protein_hash"] == variant_md5
    cluster = client.get(f"/clusters/{variant_md5}").json()
    assert cluster["cluster_rep_protein_hash"] == rep_md5 and cluster["size"] == 2
    assert {m["protein_hash"] for m in cluster["members"]} == {rep_md5, variant_md5}
    assert cluster["criteria"]["min_identity"] == 0.3 and cluster["clustering"] == "sequence-id0.30-cov0.80"
    assert _shape(cluster) == _recorded(cluster, "example_successor_cluster.json")
    page = client.get(f"/clusters/{rep_md5}?limit=1&offset=1").json()
    assert [m["protein_hash"] for m in page["members"]] == [variant_md5] and page["size"] == 2
    single = client.get("/proteins/" + client.get("/api/prediction/1FHG_A").json()[0]["sequenceChecksum"]).json()
    assert single["cluster_rep_protein_hash"] == single["protein_hash"]


def test_successor_errors_are_json_naming_the_field(clustered, make_client):
    client = make_client()
    unknown = "0" * 32
    assert "fold_on_miss" in _error(client.get(f"/proteins/{unknown}"), 404, "not_found")["message"]
    assert _error(client.get("/proteins/not-an-md5"), 422, "invalid_option")["field"] == "protein_hash"
    assert _error(client.get(f"/clusters/{unknown}"), 404, "not_found")
    assert _error(client.get(f"/clusters/{clustered[0]}?clustering=nope"), 422, "invalid_option")["field"] == \
        "clustering"
    assert _error(client.get(f"/clusters/{clustered[0]}?limit=0"), 422, "invalid_request")["field"] == "limit"
    assert _error(client.get(f"/proteins/{clustered[0]}/thumbnail/movie"), 422, "invalid_option")["field"] == "type"
    assert _error(client.get(f"/proteins/{unknown}/thumbnail/structure"), 404, "not_found")
    assert _error(client.get(f"/proteins/{clustered[0]}/thumbnail/pae"), 404, "not_found")  # imported: no PAE


def test_clusters_of_an_unclustered_atlas_say_how_to_make_them(make_client):
    client = make_client()
    md5 = client.get("/api/prediction/1FHG_A").json()[0]["sequenceChecksum"]
    assert "atlas cluster" in _error(client.get(f"/clusters/{md5}"), 404, "not_found")["message"]
    assert client.get(f"/proteins/{md5}").json()["cluster_rep_protein_hash"] is None


def test_fold_on_miss_queues_a_fold_and_answers_202_until_it_is_done(make_client, blocked_folds):
    client = make_client()
    md5 = _md5(SEQ)
    message = _error(client.get(f"/proteins/{md5}?fold_on_miss=true"), 404, "not_found")["message"]
    assert "sequence=" in message
    wrong = client.get(f"/proteins/{md5}?fold_on_miss=true&sequence=GAVLIKK")
    assert _error(wrong, 422, "invalid_option")["field"] == "sequence"
    bad = client.get(f"/proteins/{md5}?fold_on_miss=true&sequence=MKJ")
    assert _error(bad, 422, "invalid_sequence")["field"] == "sequence"
    queued = client.get(f"/proteins/{md5}?fold_on_miss=true&sequence={SEQ}")
    assert queued.status_code == 202 and queued.headers["retry-after"] == "5"
    body = queued.json()
    assert body["protein_hash"] == md5 and body["status"] in ("queued", "running")
    again = client.get(f"/proteins/{md5}?fold_on_miss=true")  # the queued fold, without the sequence
    assert again.status_code == 202 and again.json()["job_id"] == body["job_id"]
    assert client.get(f"/proteins/{md5}").status_code == 404  # no fold_on_miss: a miss is a 404
    blocked_folds.set()
    for _ in range(200):
        r = client.get(f"/proteins/{md5}?fold_on_miss=true")
        if r.status_code == 200:
            break
        time.sleep(0.05)
    assert r.status_code == 200 and r.json()["protein_hash"] == md5 and 0 <= r.json()["mean_plddt"] <= 1
    _contract(r.json(), "successor_protein.json")


def test_thumbnails_are_pngs(make_client):
    import io

    from PIL import Image

    client = make_client()
    _fold(client)
    md5 = _md5(SEQ)
    for kind in ("structure", "plddt", "pae", "structure.png"):
        r = client.get(f"/proteins/{md5}/thumbnail/{kind}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
        assert r.content[:8] == b"\x89PNG\r\n\x1a\n"
        image = Image.open(io.BytesIO(r.content))
        assert image.size == (256, 256) and np.asarray(image.convert("L")).std() > 1  # not blank


def test_alphafold_db_prediction_and_its_files(make_client):
    client = make_client()
    _fold(client)
    r = client.get(f"/api/prediction/{_md5(SEQ)}")
    assert r.status_code == 200, r.text
    [record] = r.json()
    _contract(record, "afdb_prediction.json")
    assert _shape(r.json()) == _recorded(r.json(), "example_afdb_prediction.json")
    assert record["uniprotEnd"] == len(SEQ) and record["sequenceChecksum"] == _md5(SEQ)
    bands = [record[f"fractionPlddt{b}"] for b in ("VeryLow", "Low", "Confident", "VeryHigh")]
    assert abs(sum(bands) - 1) < 0.01
    entry = client.get(f"/api/v1/entries/{record['entryId']}").json()
    assert record["globalMetricValue"] == pytest.approx(entry["mean_plddt"], abs=0.01)
    for url, kind in ((record["pdbUrl"], "chemical/x-pdb"), (record["cifUrl"], "chemical/x-mmcif"),
                      (record["paeDocUrl"], "application/json"), (record["paeImageUrl"], "image/png")):
        assert url.startswith("http://testserver/api/v1/entries/")
        got = client.get(url.removeprefix("http://testserver"))
        assert got.status_code == 200 and got.headers["content-type"].startswith(kind), url
    pae = client.get(record["paeDocUrl"].removeprefix("http://testserver")).json()
    assert "predicted_aligned_error" in pae[0]
    imported = client.get("/api/prediction/1FHG_A").json()[0]
    assert imported["paeDocUrl"] is None and imported["paeImageUrl"] is None
    assert imported["globalMetricValue"] is None and imported["fractionPlddtVeryHigh"] is None
    _contract(imported, "afdb_prediction.json")
    _error(client.get("/api/prediction/P99999"), 404, "not_found")
    _error(client.get("/api/v1/entries/1FHG_A/pae.png"), 404, "not_found")


def test_fold_on_miss_limits_too_long_and_a_full_queue(make_client, blocked_folds):
    client = make_client(queue_size=1, fold_workers=1, max_length=40)
    long = "MKTAYIAKQR" * 5
    r = client.get(f"/proteins/{_md5(long)}?fold_on_miss=true&sequence={long}")
    assert _error(r, 422, "sequence_too_long")["field"] == "sequence"
    for seq in (SEQ, "WWWWHHHHKK"):  # one running, one waiting: the queue is full
        assert client.post("/api/v1/fold", json={"sequence": seq}).status_code == 202
    other = "GAVLIKKMKTAYIAKQ"
    r = client.get(f"/proteins/{_md5(other)}?fold_on_miss=true&sequence={other}")
    body = _error(r, 503, "busy")
    assert "field" not in body and int(r.headers["retry-after"]) >= 1
