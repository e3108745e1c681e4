"""The one language-model loader: hub-cache ESM-2 snapshots, folders, and the shipped model, offline."""

from __future__ import annotations

import json

import pytest
import torch


def _write_random_esm2(folder, seed=0):
    from transformers import EsmConfig, EsmForMaskedLM

    from foldatlas.train.lm import esm2_config_dict, write_tokenizer

    torch.manual_seed(seed)
    model = EsmForMaskedLM(EsmConfig(**esm2_config_dict(layers=2, hidden=32, heads=4, ffn=64)))
    model.save_pretrained(str(folder), safe_serialization=True)
    write_tokenizer(folder)
    return model


def test_esm2_hub_snapshot_loads_offline(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    repo = cache / "models--facebook--esm2_t6_8M_UR50D"
    revision = "89abcdef0123456789abcdef0123456789abcdef"
    snapshot = repo / "snapshots" / revision
    reference = _write_random_esm2(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from foldatlas.models.language import load_language_model

    for name in ("facebook/esm2_t6_8M_UR50D", "esm2_t6_8M_UR50D"):
        model, resolved = load_language_model(name)
        assert (resolved.source, resolved.revision) == ("hub-cache", revision)
    ids = torch.tensor([[0, 5, 6, 7, 8, 2]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, reference.eval()(input_ids=ids).logits)


def test_missing_esm2_weights_say_how_to_get_them(tmp_path, monkeypatch):
    from foldatlas.errors import WeightsNotFoundError
    from foldatlas.models.language import load_language_model

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(WeightsNotFoundError, match="hf download facebook/esm2_t12_35M_UR50D"):
        load_language_model("esm2_t12_35M_UR50D")


def test_shipped_language_model_loads_with_no_network(monkeypatch, tmp_path):
    """The embedded LM is inside the package: safetensors, config, tokenizer and model card, under 30 MB."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    from foldatlas.models.language import load_language_model
    from foldatlas.models.registry import DEFAULT_LM

    model, resolved = load_language_model(DEFAULT_LM)
    assert resolved.source == "package"
    files = {p.name for p in resolved.path.iterdir()}
    assert {"config.json", "model.safetensors", "vocab.txt", "README.md"} <= files
    weights_dir = resolved.path.parent
    total = sum(p.stat().st_size for p in weights_dir.rglob("*") if p.is_file())
    assert total <= 30 * 1024 * 1024
    config = json.loads((resolved.path / "config.json").read_text())
    assert config["position_embedding_type"] == "rotary" and config["vocab_size"] == 33
    # A trained model, not random weights: masked residues of a real protein (ubiquitin) are predicted far
    # better than by the same architecture untrained, and better than uniform guessing over 20 residues.
    from transformers import EsmConfig, EsmForMaskedLM

    from foldatlas.train.lm import masked_perplexity
    seq = "MQIFVKTLTGKTITLEVEPSDTIENVKAKIQDKEGIPPDQQRLIFAGKQLEDGRTLSDYNIQKESTLHLVLRLRGG"
    trained = masked_perplexity(model, [seq] * 16, prob=0.15)["perplexity"]
    torch.manual_seed(0)
    untrained = EsmForMaskedLM(EsmConfig(**config)).eval()
    baseline = masked_perplexity(untrained, [seq] * 16, prob=0.15)["perplexity"]
    assert trained < 20.0 and trained < 0.7 * baseline, (trained, baseline)
