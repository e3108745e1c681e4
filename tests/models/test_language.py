"""The one language-model loader: hub-cache ESM-2 and ESM C snapshots, folders, and the shipped model, offline; the
family read from config.json; folding models refused; 16-bit weights computed in float32."""

from __future__ import annotations

import json

import numpy as np
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
    """The embedded LM is inside the package: safetensors, config, tokenizer and model card; all shipped models
    together under 40 MB."""
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
    assert total <= 40 * 1024 * 1024  # every shipped model together (two ProteinMPNN checkpoints: 6.7 MB)
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


def test_esmc_hub_snapshot_loads_offline_by_name_and_hub_id(tmp_path, monkeypatch):
    from transformers import EsmcForMaskedLM

    from foldatlas.models.random_checkpoint import write_random_esmc

    cache = tmp_path / "hub"
    repo = cache / "models--biohub--ESMC-300M"
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = write_random_esmc(repo / "snapshots" / revision, seed=1)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from foldatlas.models.language import load_language_model

    reference = EsmcForMaskedLM.from_pretrained(str(snapshot)).eval()
    ids = torch.tensor([[0, 5, 6, 7, 8, 2]])
    for name in ("biohub/ESMC-300M", "esmc_300m"):
        model, resolved = load_language_model(name)
        assert isinstance(model, EsmcForMaskedLM) and (resolved.name, resolved.revision) == ("esmc_300m", revision)
        with torch.no_grad():
            torch.testing.assert_close(model(input_ids=ids).logits, reference(input_ids=ids).logits)


def test_the_family_comes_from_config_json(tmp_path, tiny_lm_checkpoint, tiny_esmc_checkpoint):
    from transformers import EsmcForMaskedLM, EsmForMaskedLM

    from foldatlas.errors import WeightsIntegrityError
    from foldatlas.models.language import family_of, language_family, load_language_model

    assert isinstance(load_language_model(str(tiny_lm_checkpoint))[0], EsmForMaskedLM)
    assert isinstance(load_language_model(str(tiny_esmc_checkpoint))[0], EsmcForMaskedLM)
    assert language_family(str(tiny_esmc_checkpoint))[0].label == "ESM C"
    # model_type decides; architectures is the fallback when a config has none
    assert family_of({"architectures": ["EsmcForMaskedLM"]}).model_type == "esmc"
    assert family_of({"model_type": "esm", "architectures": ["EsmForMaskedLM"]}).contact_head
    with pytest.raises(WeightsIntegrityError, match="model_type 'llama' is not a language model foldatlas runs"):
        family_of({"model_type": "llama"}, "x")


@pytest.mark.parametrize("config", [
    {"model_type": "esmfold2", "architectures": ["EsmFold2Model"]},  # ESMFold2 (ESM C bundled inside)
    {"model_type": "esm", "architectures": ["EsmForProteinFolding"], "is_folding_model": True},  # ESMFold v1
])
def test_a_folding_model_is_not_a_language_model(tmp_path, config):
    from foldatlas.errors import WeightsIntegrityError
    from foldatlas.models.language import load_language_model

    folder = tmp_path / "fold"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"")  # never read: the config refuses it first
    with pytest.raises(WeightsIntegrityError, match=f"model '{folder}' is a folding model, not a language model"):
        load_language_model(str(folder))


def test_the_tiny_esmfold_checkpoints_are_refused(tiny_checkpoint):
    from foldatlas.errors import WeightsIntegrityError
    from foldatlas.lm import load_lm

    with pytest.raises(WeightsIntegrityError, match="is a folding model, not a language model"):
        load_lm(str(tiny_checkpoint))


@pytest.mark.parametrize("family, dtype", [("esmc", torch.bfloat16), ("esm", torch.float16)])
def test_16bit_weights_stay_16bit_and_compute_in_float32(tmp_path, tiny_lm_checkpoint, tiny_esmc_checkpoint,
                                                         family, dtype):
    """load_lm keeps a 16-bit checkpoint's blocks 16-bit at rest and runs them in float32: the numbers of the
    same weights loaded wholly in float32."""
    from transformers import EsmcForMaskedLM, EsmForMaskedLM

    from foldatlas.lm import load_lm
    from foldatlas.lm.model import encode, forward

    source, cls = ((tiny_esmc_checkpoint, EsmcForMaskedLM) if family == "esmc"
                   else (tiny_lm_checkpoint, EsmForMaskedLM))
    folder = tmp_path / "half"
    cls.from_pretrained(str(source)).to(dtype).save_pretrained(str(folder), safe_serialization=True)
    lm = load_lm(str(folder))
    assert next(lm.layers[0].parameters()).dtype == dtype
    reference = cls.from_pretrained(str(folder), dtype=torch.float32, attn_implementation="eager").eval()
    seq = "MKTAYIAKQRQISFVKSHFSRQ"
    ids = torch.from_numpy(encode(seq))[None]
    with torch.no_grad():
        want = torch.log_softmax(reference(input_ids=ids).logits, -1)[0, :, :33].numpy()
    _, out = next(forward(lm, [encode(seq)], layers=(lm.num_layers,)))
    np.testing.assert_allclose(out["log_probs"], want, atol=1e-5)
    assert out["hidden"][lm.num_layers].dtype == np.float32
    assert next(lm.layers[0].parameters()).dtype == dtype  # restored after use
    if lm.has_contact_head:  # the eager attention switch works on streamed layers too
        _, got = next(forward(lm, [encode(seq)], logits=False, attentions=True))
        with torch.no_grad():
            np.testing.assert_allclose(got["contacts"], reference.predict_contacts(ids, torch.ones_like(ids))[0],
                                       atol=1e-5)
