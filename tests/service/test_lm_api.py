"""The language-model tools over HTTP (the shipped language model): the same numbers as the Python API, and
errors as 4xx JSON."""

from __future__ import annotations

import numpy as np
import pytest

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"


@pytest.fixture(scope="module")
def shipped_lm():
    from foldatlas.lm import load_lm

    return load_lm("foldatlas-lm-small")


def test_lm_endpoints_match_the_python_api(client, shipped_lm):
    from foldatlas.lm import embed, parse_variants, predict_contacts, score_variants
    from foldatlas.seq.records import make_record

    out = client.post("/api/v1/lm/embed", json={"sequences": [SEQ, "GAVLIKKW"], "layers": [0, -1],
                                                "per_residue": True}).json()
    assert out["model"] == "foldatlas-lm-small" and len(out["results"]) == 2
    direct = embed(shipped_lm, [make_record("a", SEQ)], layers=(0, -1), per_residue=True)[0]
    np.testing.assert_allclose(out["results"][0]["mean"]["6"], direct.mean[6], atol=1e-4)
    assert np.array(out["results"][0]["per_residue"]["0"]).shape == (len(SEQ), shipped_lm.dim)

    contacts = client.post("/api/v1/lm/contacts", json={"sequence": SEQ}).json()
    probs = predict_contacts(shipped_lm, [make_record("a", SEQ)])[0]
    np.testing.assert_allclose(contacts["contacts"], probs, atol=1e-3)
    assert len(contacts["top"]) == len(SEQ)

    rows = client.post("/api/v1/lm/variants", json={"sequence": SEQ, "mutations": ["K2A", "T3G:A4C"],
                                                    "methods": ["masked_marginal", "pll"]}).json()["rows"]
    expected = score_variants(shipped_lm, SEQ, parse_variants(["K2A", "T3G:A4C"], SEQ), ("masked_marginal", "pll"))
    for got, want in zip(rows, expected):
        assert got["mutant"] == want["mutant"]
        assert got["masked_marginal"] == pytest.approx(want["masked_marginal"], abs=1e-4)
        assert got["pll"] == pytest.approx(want["pll"], abs=1e-3)
    scan = client.post("/api/v1/lm/variants", json={"sequence": "MKTAYIAKQR", "scan": True, "offset": 10}).json()
    assert len(scan["rows"]) == 190 and scan["rows"][0]["mutant"] == "M10A"

    filled = client.post("/api/v1/lm/unmask", json={"sequence": "MKT<mask>YIAK", "top_k": 2}).json()
    assert filled["positions"][0]["position"] == 4 and len(filled["positions"][0]["candidates"]) == 2


@pytest.mark.parametrize("path, body, field, message", [
    ("/api/v1/lm/variants", {"sequence": SEQ, "mutations": ["A2G"]}, "mutations", "the sequence has K at 2, not A"),
    ("/api/v1/lm/variants", {"sequence": SEQ, "mutations": ["K2"]}, "mutations", "not a mutation like A42G"),
    ("/api/v1/lm/variants", {"sequence": SEQ, "mutations": ["K99A"]}, "mutations", "outside the sequence"),
    ("/api/v1/lm/variants", {"sequence": SEQ}, "mutations", "give mutations or scan"),
    ("/api/v1/lm/variants", {"sequence": SEQ, "scan": True, "methods": ["pll"]}, "mutations",
     "exceed this server's limit"),
    ("/api/v1/lm/variants", {"sequence": SEQ, "mutations": ["K2A"], "methods": ["vae"]}, "methods.0", "'pll'"),
    ("/api/v1/lm/variants", {"sequence": SEQ, "mutations": ["K2A"], "offset": 10**9}, "offset", "less than"),
    ("/api/v1/lm/variants", {"sequence": "A" * 5000, "scan": True}, "sequence", "at most 4096"),
    ("/api/v1/lm/variants", {"sequence": SEQ, "scan": True, "oofset": 3}, "oofset", "unknown field"),
    ("/api/v1/lm/contacts", {"sequence": "MKT:GAV"}, "sequence", "a complex"),
    ("/api/v1/lm/contacts", {"sequence": "A" * 1100}, "sequence", "at most 1022"),
    ("/api/v1/lm/embed", {"sequences": []}, "sequences", "at least 1"),
    ("/api/v1/lm/embed", {"sequences": [SEQ], "layers": [40]}, "layers", "layer 40 does not exist"),
    ("/api/v1/lm/embed", {"sequences": [SEQ], "layers": [400]}, "layers.0", "less than or equal to 64"),
    ("/api/v1/lm/embed", {"sequences": [SEQ, "MKJ"]}, "sequences[1]", "invalid residue 'J'"),
    ("/api/v1/lm/embed", {"sequences": [SEQ, "A" * 4097]}, "sequences[1]", "at most 4096"),
    ("/api/v1/lm/unmask", {"sequence": SEQ}, "sequence", "no masked position"),
    ("/api/v1/lm/unmask", {"sequence": "MK_", "top_k": 50}, "top_k", "less than or equal to 20"),
])
def test_lm_endpoint_errors_are_422_naming_the_field(client, path, body, field, message):
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert message in error["message"] and error.get("field") == field, error
    assert error["message"].startswith(f"{field}: "), error
