"""Masked-LM training on the tiny fixture: loss goes down, resume is exact, the model reloads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from foldatlas.train.lm import LMTrainConfig, mask_tokens, masked_perplexity, tokenize, train_lm


def _cfg(**kw):
    base = dict(layers=2, hidden=32, heads=4, ffn=64, crop=64, batch_size=8, steps=30, lr=3e-3, warmup=3,
                profile_weight=0.5, profile_fraction=0.25, checkpoint_every=10, eval_every=30, eval_sequences=10,
                log_every=1, threads=1)
    base.update(kw)
    return LMTrainConfig(**base)


def _losses(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"mlm"' in line]


def test_tokenize_and_masking():
    ids, att = tokenize(["ACD", "A"])
    assert ids[0].tolist() == [0, 5, 23, 13, 2] and ids[1].tolist() == [0, 5, 2, 1, 1]
    assert att.tolist() == [[1] * 5, [1, 1, 1, 0, 0]]
    rng = np.random.default_rng(0)
    big = np.tile(ids[:1], (200, 1))
    inputs, labels = mask_tokens(big, rng, 0.5)
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, -1].any()  # specials never masked
    assert 0.4 < chosen[:, 1:4].mean() < 0.6
    assert 0.7 < (inputs[chosen] == 32).mean() < 0.9


def test_training_lowers_loss_and_saves_a_loadable_model(tiny_data, tmp_path):
    data, _ = tiny_data
    run = tmp_path / "run"
    final = train_lm(data, run, _cfg(steps=60, profile_weight=0.5), log=lambda m: None)
    logs = _losses(run)
    first, last = np.mean([r["mlm"] for r in logs[:5]]), np.mean([r["mlm"] for r in logs[-5:]])
    assert last < first - 0.1, (first, last)
    prof_first = np.mean([r["profile"] for r in logs[:5] if r["profile"] > 0])
    prof_last = np.mean([r["profile"] for r in logs[-10:] if r["profile"] > 0])
    assert prof_last < prof_first
    # Reload through the one LM loader: identical logits.
    from foldatlas.models.language import load_language_model
    model, resolved = load_language_model(str(final))
    assert resolved.source == "folder" and list(final.glob("*.safetensors")) and not list(final.glob("*.bin"))
    # The released folder holds exactly the trained weights: the same logits as the last training checkpoint
    # (up to float rounding: the loader runs eager attention, the fixture SDPA).
    from safetensors.torch import load_file
    from transformers import EsmConfig, EsmForMaskedLM

    from foldatlas.train.lm import esm2_config_dict
    trained = EsmForMaskedLM(EsmConfig(**esm2_config_dict(2, 32, 4, 64)))
    state = load_file(str(run / "state" / "state.safetensors"))
    trained.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")}, strict=False)
    trained.tie_weights()
    ids = torch.tensor(tokenize(["MKTAYIAKQRQISFVKSHFSRQ"])[0])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, trained.eval()(input_ids=ids).logits)
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(final))
    enc = tok(["MKTAYIAK"], return_tensors="pt")
    ids, _ = tokenize(["MKTAYIAK"])
    assert enc["input_ids"].tolist() == ids.tolist()


def test_resume_gives_the_same_model_as_one_run(tiny_data, tmp_path):
    data, _ = tiny_data
    cfg = _cfg(steps=20, checkpoint_every=10, eval_every=100)
    straight = train_lm(data, tmp_path / "a", cfg, log=lambda m: None)
    # Interrupted after step 10, then resumed from the checkpoint.
    assert train_lm(data, tmp_path / "b", cfg, log=lambda m: None, until=10) is None
    assert not (tmp_path / "b" / "model").exists()
    resumed = train_lm(data, tmp_path / "b", cfg, log=lambda m: None)
    from safetensors.torch import load_file
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_perplexity_of_a_uniform_model_is_the_alphabet_size():
    class Uniform(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            logits = torch.full((*input_ids.shape, 33), -1e9)
            logits[..., 4:24] = 0.0
            return type("O", (), {"logits": logits})()

    res = masked_perplexity(Uniform(), ["ACDEFGHIKLMNPQRSTVWY" * 5], prob=0.3, unigram=np.full(33, 1 / 20))
    assert res["perplexity"] == pytest.approx(20.0, rel=1e-4)
    assert res["unigram_perplexity"] == pytest.approx(20.0, rel=1e-4)
