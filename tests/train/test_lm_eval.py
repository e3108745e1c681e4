"""Contact evaluation (ESM-2 recipe) and the one language-model loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from foldatlas.train.lm_eval import contact_map, top_l_precision


def test_contact_map_uses_cb_and_ca_for_glycine():
    coords = np.zeros((3, 5, 3), dtype=np.float32)
    coords[:, 1] = [[0, 0, 0], [0, 0, 20], [0, 0, 7]]   # CA
    coords[:, 4] = [[0, 0, 0], [0, 0, 30], [0, 0, 30]]  # CB
    cm = contact_map(coords, "AAG")  # residue 3 is glycine: its CA (z=7) counts
    assert cm[0, 2] and not cm[0, 1] and not cm[1, 2]


def test_top_l_precision_and_random_baseline():
    n = 60
    contacts = np.zeros((n, n), bool)
    for i in range(0, n - 30):
        contacts[i, i + 30] = contacts[i + 30, i] = True
    perfect = contacts.astype(float)
    p, r = top_l_precision(perfect, contacts)
    i, j = np.triu_indices(n, 24)
    assert r == pytest.approx(contacts[i, j].mean())
    assert p == pytest.approx(30 / 60)  # 30 true long-range contacts among the top L=60
    assert top_l_precision(-perfect, contacts)[0] == 0.0


def test_release_stores_fp16_weights_fitted_contact_head_and_card(tiny_data, tmp_path):
    from safetensors import safe_open

    from foldatlas.models.language import load_language_model
    from foldatlas.train.data import load_structures
    from foldatlas.train.lm import LMTrainConfig, tokenize, train_lm
    from foldatlas.train.release import release_lm

    data, _ = tiny_data
    cfg = LMTrainConfig(layers=2, hidden=32, heads=4, ffn=64, crop=64, batch_size=4, steps=3, warmup=1,
                        eval_every=100, checkpoint_every=100, threads=1, log_every=1)
    train_lm(data, tmp_path / "run", cfg, log=lambda m: None)
    dest = tmp_path / "weights" / "lm"
    metrics = release_lm(tmp_path / "run", data, dest, "a test machine", log=lambda m: None)
    c = metrics["contacts"]
    assert 0.0 <= c["top_l_long_range_precision"] <= 1.0 and 0.0 < c["random_baseline"] < 1.0
    assert metrics["valid_uniprot"]["unigram_perplexity"] > 1.0
    assert metrics["contact_fit"]["chains"] == 20
    card = (dest / "README.md").read_text()
    assert f"{c['top_l_long_range_precision']:.3f}" in card and "a test machine" in card
    with safe_open(str(dest / "model.safetensors"), "pt") as fh:
        assert {str(fh.get_tensor(k).dtype) for k in fh.keys()} == {"torch.float16"}
    # The fitted regression is stored: the reloaded model's contact head carries it.
    model, _ = load_language_model(str(dest))
    head = model.esm.contact_head.regression
    assert head.weight.shape[1] == 2 * 4  # layers x heads attention maps
    assert float(head.bias) == pytest.approx(metrics["contact_fit"]["intercept"], abs=1e-2)  # float16
    assert float(head.bias) < 0  # contacts are rare: a fitted intercept, not the zero init
    test = load_structures(data / "structures_test.npz")
    ids, att = tokenize([test.chain(0)["sequence"]])
    probs = model.predict_contacts(torch.from_numpy(ids), torch.from_numpy(att))[0]
    assert probs.shape == (len(test.chain(0)["sequence"]),) * 2 and probs.dtype == torch.float32
    assert torch.allclose(probs, probs.T, atol=1e-6)


def test_folding_checkpoint_is_not_a_language_model(tiny_checkpoint):
    from foldatlas.errors import WeightsIntegrityError
    from foldatlas.models.language import load_language_model

    with pytest.raises(WeightsIntegrityError, match="folding model"):
        load_language_model(str(tiny_checkpoint))
