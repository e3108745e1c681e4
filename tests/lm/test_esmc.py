"""ESM C language models through the same tools as ESM-2, on a tiny random ``EsmcForMaskedLM`` checkpoint: parity
with transformers called directly, padding invariance, the 31 unused vocabulary ids, and the CLI, service and
atlas paths; contact maps refused (ESM C has no contact head)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from foldatlas.errors import InvalidOptionError
from foldatlas.lm.model import AMINO_ACIDS
from foldatlas.models.language import MASK, TOKEN_OF
from foldatlas.seq.records import make_record

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"
OTHER = "GAVLIKKWMKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNL"


@pytest.fixture(scope="module")
def esmc_dir(tiny_esmc_checkpoint):
    return tiny_esmc_checkpoint


@pytest.fixture(scope="module")
def lm(esmc_dir):
    from foldatlas.lm import load_lm

    return load_lm(str(esmc_dir))


@pytest.fixture(scope="module")
def reference(esmc_dir):
    """The same weights loaded directly with transformers (eager attention), for parity."""
    from transformers import EsmcForMaskedLM

    return EsmcForMaskedLM.from_pretrained(str(esmc_dir), attn_implementation="eager").eval()


def _ids(seq: str, masked: tuple[int, ...] = ()) -> torch.Tensor:
    ids = [0, *[TOKEN_OF[c] for c in seq], 2]
    for i in masked:
        ids[i + 1] = MASK
    return torch.tensor([ids])


def _direct_log_probs(reference, ids: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.log_softmax(reference(input_ids=ids).logits, -1)[0].numpy()  # [T, 64]


def _direct_mean(reference, seq: str) -> np.ndarray:
    with torch.no_grad():
        return reference.esmc(_ids(seq)).last_hidden_state[0, 1:-1].mean(0).numpy()


def test_the_tools_see_an_esmc_model_through_the_common_interface(lm, reference):
    from transformers import EsmcForMaskedLM

    assert isinstance(lm.model, EsmcForMaskedLM) and lm.family.label == "ESM C"
    assert lm.encoder is lm.model.esmc and lm.layers == list(lm.model.esmc.layers)
    assert (lm.num_layers, lm.dim, lm.vocab_size, lm.has_contact_head) == (2, 32, 33, False)
    assert reference.config.vocab_size == 64


def test_mean_embeddings_match_transformers(lm, reference, esmc_dir):
    from foldatlas.lm import embed
    from foldatlas.models.embedding import load_embedder, mean_embeddings

    want = np.stack([_direct_mean(reference, SEQ), _direct_mean(reference, OTHER)])
    np.testing.assert_allclose(mean_embeddings(lm, [SEQ, OTHER]), want, atol=1e-5)
    np.testing.assert_allclose(mean_embeddings(lm.model, [SEQ, OTHER]), want, atol=1e-5)  # a transformers model
    np.testing.assert_allclose(load_embedder(str(esmc_dir))([SEQ, OTHER]), want, atol=1e-5)
    [result] = embed(lm, [make_record("a", SEQ)], layers=(0, 1, -1), per_residue=True)
    np.testing.assert_allclose(result.mean[2], want[0], atol=1e-5)
    block_outputs = []  # the last block's raw output: the final layer is that, through EsmcModel.norm
    hook = reference.esmc.layers[-1].register_forward_hook(lambda m, a, out: block_outputs.append(out))
    try:
        with torch.no_grad():
            states = reference(input_ids=_ids(SEQ), output_hidden_states=True).hidden_states
    finally:
        hook.remove()
    for layer in (0, 1, 2):
        np.testing.assert_allclose(result.per_residue[layer], states[layer][0, 1:-1].numpy(), atol=1e-5)
    with torch.no_grad():
        normed = reference.esmc.norm(block_outputs[0])[0, 1:-1].numpy()
    np.testing.assert_allclose(result.per_residue[2], normed, atol=1e-5)
    assert np.abs(result.per_residue[2] - block_outputs[0][0, 1:-1].numpy()).max() > 1e-2  # not before the norm


def test_log_probs_of_variants_and_unmask_match_transformers(lm, reference):
    from foldatlas.lm import parse_variants, score_variants, unmask
    from foldatlas.lm.model import encode, forward

    _, out = next(forward(lm, [encode(SEQ)]))
    direct = _direct_log_probs(reference, _ids(SEQ))
    assert out["log_probs"].shape == (len(SEQ) + 2, 33)
    np.testing.assert_allclose(out["log_probs"], direct[:, :33], atol=1e-5)
    # normalised over all 64 logits, read at the real ids (not renormalised over the 33)
    assert np.exp(out["log_probs"]).sum(-1).max() < 1 - 1e-3

    variants = parse_variants(["K2A", "T3G:A4C"], SEQ)
    rows = score_variants(lm, SEQ, variants, ("masked_marginal", "wt_marginal", "pll"))
    tok = TOKEN_OF
    masked = {i: _direct_log_probs(reference, _ids(SEQ, (i,)))[i + 1] for i in (1, 2, 3)}
    assert rows[0]["masked_marginal"] == pytest.approx(masked[1][tok["A"]] - masked[1][tok["K"]], abs=1e-4)
    assert rows[1]["masked_marginal"] == pytest.approx(masked[2][tok["G"]] - masked[2][tok["T"]] + masked[3][tok["C"]]
                                                       - masked[3][tok["A"]], abs=1e-4)
    assert rows[0]["wt_marginal"] == pytest.approx(direct[2, tok["A"]] - direct[2, tok["K"]], abs=1e-4)

    def pll(seq):
        return sum(_direct_log_probs(reference, _ids(seq, (i,)))[i + 1, tok[c]] for i, c in enumerate(seq))

    assert rows[0]["pll"] == pytest.approx(pll("MATAYIAKQRQISFVKSHFSRQLEERLGLIEVQ") - pll(SEQ), abs=1e-3)

    result = unmask(lm, "MKT_YIAK<mask>Q", top_k=20)
    for position, i in zip(result["positions"], (3, 8)):
        logits = _direct_log_probs(reference, _ids("MKTXYIAKXQ", (3, 8)))[i + 1, [tok[a] for a in AMINO_ACIDS]]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        got = {c["residue"]: c["probability"] for c in position["candidates"]}
        assert set(got) == set(AMINO_ACIDS)
        np.testing.assert_allclose([got[a] for a in AMINO_ACIDS], p, atol=2e-5)


def test_unused_vocabulary_ids_are_never_proposed_or_scored(esmc_dir, reference):
    """Logits of ids 33..63 made the largest by far: the tools still read, propose and score amino acids only."""
    from foldatlas.lm import load_lm, parse_variants, score_variants, unmask

    lm = load_lm(str(esmc_dir))
    with torch.no_grad():
        lm.model.lm_head.decoder.bias[33:] += 40.0
        ids = _ids(SEQ, (1,))
        assert int(lm.model(input_ids=ids).logits[0, 2].argmax()) >= 33  # the model itself prefers an unused id
    result = unmask(lm, "MKT_YIAK", top_k=5)
    assert result["sequence"][3] in AMINO_ACIDS
    candidates = result["positions"][0]["candidates"]
    assert all(c["residue"] in AMINO_ACIDS for c in candidates) and candidates[0]["probability"] > 0.05
    row = score_variants(lm, SEQ, parse_variants(["K2A"], SEQ), ("masked_marginal",))[0]
    direct = _direct_log_probs(reference, ids)[2]  # the unmodified model: the shift cancels in the difference
    assert row["masked_marginal"] == pytest.approx(direct[TOKEN_OF["A"]] - direct[TOKEN_OF["K"]], abs=1e-3)


def test_alone_and_in_a_padded_batch_give_the_same_numbers(lm):
    from foldatlas.lm import embed, score_variants, single_scan
    from foldatlas.lm.model import encode, forward
    from foldatlas.models.embedding import mean_embeddings

    recs = [make_record("short", SEQ), make_record("long", OTHER)]
    alone = embed(lm, recs[:1], layers=(0, 1, -1), per_residue=True, max_tokens=1)[0]
    batched = embed(lm, recs, layers=(0, 1, -1), per_residue=True, max_tokens=10_000)[0]
    for layer in (0, 1, 2):
        assert np.abs(alone.per_residue[layer] - batched.per_residue[layer]).max() < 1e-5
    means_alone = mean_embeddings(lm, [SEQ], max_tokens_per_batch=1)
    means_batched = mean_embeddings(lm, [SEQ, OTHER], max_tokens_per_batch=10_000)
    assert np.abs(means_alone[0] - means_batched[0]).max() < 1e-5
    by_index = dict(forward(lm, [encode(SEQ), encode(OTHER)], max_tokens=10_000))
    _, single = next(forward(lm, [encode(SEQ)], max_tokens=1))
    assert np.abs(by_index[0]["log_probs"] - single["log_probs"]).max() < 1e-5
    variants = single_scan(SEQ)[:60]
    one = score_variants(lm, SEQ, variants, ("masked_marginal",), max_tokens=1)
    many = score_variants(lm, SEQ, variants, ("masked_marginal",), max_tokens=100_000)
    assert max(abs(a["masked_marginal"] - b["masked_marginal"]) for a, b in zip(one, many)) < 1e-4


def test_contacts_are_refused_naming_the_model(lm):
    from foldatlas.lm import predict_contacts
    from foldatlas.lm.model import encode, forward

    with pytest.raises(InvalidOptionError, match=f"model '{lm.name}' is an ESM C language model, which has no "
                                                 f"contact head"):
        predict_contacts(lm, [make_record("a", SEQ)])
    with pytest.raises(InvalidOptionError, match="no contact head"):
        next(forward(lm, [encode(SEQ)], attentions=True))


@pytest.mark.smoke
def test_cli_tools_take_an_esmc_folder(run_cli, esmc_dir, reference, tmp_path):
    m = ["-m", str(esmc_dir)]
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">a\n{SEQ}\n>b\n{OTHER}\n")
    done = run_cli("embed", str(fasta), "-o", str(tmp_path / "e.npz"), "--layers", "0,-1", "-q", *m)
    assert done.returncode == 0, done.stderr
    saved = np.load(tmp_path / "e.npz")
    np.testing.assert_allclose(saved["a/mean/2"], _direct_mean(reference, SEQ), atol=1e-5)
    np.testing.assert_allclose(saved["b/mean/2"], _direct_mean(reference, OTHER), atol=1e-5)

    done = run_cli("variants", SEQ, "--mutations", "K2A,T3G:A4C", "-o", str(tmp_path / "v.csv"), "-q", *m)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(open(tmp_path / "v.csv")))
    masked = _direct_log_probs(reference, _ids(SEQ, (1,)))[2]
    assert [r["mutant"] for r in rows] == ["K2A", "T3G:A4C"]
    assert float(rows[0]["masked_marginal"]) == pytest.approx(masked[TOKEN_OF["A"]] - masked[TOKEN_OF["K"]],
                                                              abs=1e-4)

    done = run_cli("unmask", "MKT_YIAK", "--json", "--top-k", "3", *m)
    assert done.returncode == 0, done.stderr
    position = json.loads(done.stdout)["positions"][0]
    assert position["position"] == 4 and all(c["residue"] in AMINO_ACIDS for c in position["candidates"])

    out = tmp_path / "contacts"
    done = run_cli("contacts", str(fasta), "-o", str(out), *m)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert str(esmc_dir) in lines[0] and "no contact head" in lines[0]
    assert "Traceback" not in done.stderr and not out.exists()


def test_service_lm_endpoints_take_an_esmc_model(tmp_path, tiny_model, esmc_dir, lm, reference):
    from fastapi.testclient import TestClient

    from foldatlas.lm import parse_variants, score_variants
    from foldatlas.service import ServiceSettings, create_app

    settings = ServiceSettings(atlas=tmp_path / "atlas", lm_model=str(esmc_dir), max_length=400)
    with TestClient(create_app(settings, folding_model=tiny_model, embedder=False),
                    raise_server_exceptions=False) as client:
        out = client.post("/api/v1/lm/embed", json={"sequences": [SEQ, OTHER], "layers": [-1]})
        assert out.status_code == 200, out.text
        body = out.json()
        assert body["model"] == esmc_dir.name and body["dim"] == 32
        np.testing.assert_allclose(body["results"][0]["mean"]["2"], _direct_mean(reference, SEQ), atol=1e-4)

        out = client.post("/api/v1/lm/variants", json={"sequence": SEQ, "mutations": ["K2A", "T3G:A4C"]})
        assert out.status_code == 200, out.text
        want = score_variants(lm, SEQ, parse_variants(["K2A", "T3G:A4C"], SEQ))
        for got, expected in zip(out.json()["rows"], want):
            assert got["masked_marginal"] == pytest.approx(expected["masked_marginal"], abs=1e-4)

        out = client.post("/api/v1/lm/unmask", json={"sequence": "MKT<mask>YIAK", "top_k": 2})
        assert out.status_code == 200, out.text
        assert [c["residue"] in AMINO_ACIDS for c in out.json()["positions"][0]["candidates"]] == [True, True]

        out = client.post("/api/v1/lm/contacts", json={"sequence": SEQ})
        assert out.status_code == 422, out.text
        error = out.json()["error"]
        assert error["field"] == "model" and error["message"].startswith("model: ")
        assert esmc_dir.name in error["message"] and "no contact head" in error["message"]


def test_atlas_build_embeds_with_an_esmc_model(tmp_path, tiny_checkpoint, esmc_dir, reference, capsys):
    from foldatlas.atlas import open_atlas
    from foldatlas.cli.main import main

    folder = tmp_path / "atlas"
    code = main(["atlas", "build", SEQ, "--name", "p1", "--atlas", str(folder), "-m", str(tiny_checkpoint),
                 "--embedding-model", str(esmc_dir), "-q"])
    assert code == 0, capsys.readouterr().err
    with open_atlas(folder, readonly=True) as atlas:
        entry = atlas.get("p1", embedding=True)
        meta = atlas.get_meta("embedding_model")
    assert (meta["name"], meta["dim"], meta["load"]) == (esmc_dir.name, 32, str(esmc_dir))
    np.testing.assert_allclose(entry.embedding, _direct_mean(reference, SEQ), atol=2e-3)  # float16 storage
