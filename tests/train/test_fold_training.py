"""Folding-model training on a tiny set: every loss goes down, the LM is frozen, resume is exact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from foldatlas.train.fold import FoldTrainConfig, build_fold_model, train_fold


@pytest.fixture(scope="module")
def tiny_lm(tiny_data, tmp_path_factory):
    from foldatlas.train.lm import LMTrainConfig, train_lm

    data, _ = tiny_data
    cfg = LMTrainConfig(layers=2, hidden=32, heads=4, ffn=64, crop=64, batch_size=4, steps=2, warmup=1,
                        eval_every=100, checkpoint_every=100, threads=1)
    return train_lm(data, tmp_path_factory.mktemp("lm"), cfg, log=lambda m: None)


def _cfg(lm, **kw):
    base = dict(lm=str(lm), blocks=1, sequence_dim=32, pairwise_dim=16, head_width=8, sm_dim=16, sm_blocks=2,
                ipa_heads=2, crop=24, batch_size=1, steps=40, lr=2e-3, warmup=2, max_recycles=0, threads=1,
                checkpoint_every=10, eval_every=1000, eval_chains=2, log_every=1)
    base.update(kw)
    return FoldTrainConfig(**base)


def test_language_model_is_loaded_and_frozen(tiny_lm):
    from foldatlas.models.language import load_language_model

    model = build_fold_model(_cfg(tiny_lm))
    lm, _ = load_language_model(str(tiny_lm))
    torch.testing.assert_close(model.esm.embeddings.word_embeddings.weight, lm.esm.embeddings.word_embeddings.weight)
    assert not any(p.requires_grad for p in model.esm.parameters())
    assert any(p.requires_grad for p in model.trunk.parameters())


def test_new_model_gets_esmfolds_initialisation(tiny_lm):
    """Not transformers' N(0, 0.02) everywhere: zero-initialised outputs, open gates, IPA head weights of 1."""
    model = build_fold_model(_cfg(tiny_lm))
    sm, block = model.trunk.structure_module, model.trunk.blocks[0]
    for layer in (sm.bb_update.linear, sm.ipa.linear_out, block.tri_mul_in.linear_z, block.tri_att_end.mha.linear_o,
                  block.sequence_to_pair.o_proj, block.mlp_pair.mlp[-2]):
        assert float(layer.weight.detach().abs().max()) == 0.0
    assert torch.all(block.tri_mul_out.linear_g.bias == 1) and float(block.tri_mul_out.linear_g.weight.abs().max()) == 0
    torch.testing.assert_close(torch.nn.functional.softplus(sm.ipa.head_weights), torch.ones_like(sm.ipa.head_weights))
    assert float(model.embedding.weight.std()) > 0.5  # nn.Embedding's N(0, 1), as in fair-esm
    # The untrained model puts every residue at the origin (zero backbone updates), as AlphaFold's does.
    aatype = torch.randint(0, 20, (1, 20))
    with torch.no_grad():
        out = model(input_ids=aatype, attention_mask=torch.ones_like(aatype), num_recycles=0)
    assert float(out.positions[-1][..., 1, :].abs().max()) < 1e-4


def test_a_few_steps_lower_every_loss(one_chain_data, tiny_lm, tmp_path):
    data = one_chain_data
    run = tmp_path / "run"
    final = train_fold(data, run, _cfg(tiny_lm, steps=100), log=lambda m: None)
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "fape" in r]
    for name in ("loss", "distogram", "plddt", "pae", "angle_norm", "clash", "bond"):
        first = np.mean([r[name] for r in rows[:4]])
        last = np.mean([r[name] for r in rows[-10:]])
        assert last < first, (name, first, last)
    # FAPE starts at its no-information optimum (ESMFold's init puts every residue at the origin), rises while the
    # clash term pulls the chain apart, then falls; lDDT-Ca rises throughout.
    fape = [r["fape"] for r in rows]
    peak = max(np.mean(fape[i:i + 10]) for i in range(0, len(fape) // 2))
    assert np.mean(fape[-10:]) < peak - 0.02, (peak, np.mean(fape[-10:]))
    assert np.mean([r["lddt_ca"] for r in rows[-10:]]) > np.mean([r["lddt_ca"] for r in rows[:4]]) + 0.1
    # The result is a folding checkpoint the fold engine loads.
    from foldatlas.models.loading import load_folding_model
    fm = load_folding_model(str(final), device="cpu")
    assert fm.model.config.esmfold_config.trunk.max_recycles == 1  # passes by default: no recycle, as trained


def test_fold_training_resumes_exactly(tiny_data, tiny_lm, tmp_path):
    cfg = _cfg(tiny_lm, steps=6, checkpoint_every=3)
    data, _ = tiny_data
    a = train_fold(data, tmp_path / "a", cfg, log=lambda m: None)
    assert train_fold(data, tmp_path / "b", cfg, log=lambda m: None, until=3) is None
    b = train_fold(data, tmp_path / "b", cfg, log=lambda m: None)
    from safetensors.torch import load_file
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)


def test_fine_tuning_starts_from_a_trained_model_and_stops_at_its_time_limit(tiny_data, tiny_lm, tmp_path):
    import shutil
    from dataclasses import replace

    from safetensors.torch import load_file

    from foldatlas.train.data import load_structures, pack_structures, training_windows

    data, _ = tiny_data
    base = train_fold(data, tmp_path / "base", _cfg(tiny_lm, steps=3), log=lambda m: None)
    packed = tmp_path / "packed"
    packed.mkdir()
    shutil.copy(data / "structures_valid.npz", packed)
    windows = training_windows(load_structures(data / "structures_train.npz"), 60)
    pack_structures(windows, packed / "structures_train.npz")

    cfg = _cfg(tiny_lm, steps=5, init=str(base), violation=1.0, time_limit=0.0)
    start = build_fold_model(cfg)
    saved, own = load_file(str(base / "model.safetensors")), start.state_dict()
    common = [k for k in saved if k in own]
    assert len([k for k in common if k.startswith("trunk.")]) > 20
    for k in common:
        torch.testing.assert_close(own[k], saved[k])
    with pytest.raises(ValueError, match="trunk"):
        build_fold_model(replace(cfg, blocks=2))
    run = tmp_path / "tuned"
    assert train_fold(packed, run, cfg, log=lambda m: None) is None  # out of time after its first step
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1] and rows[0]["violation"] >= 0 and "c_n_bond" in rows[0]
    final = train_fold(packed, run, replace(cfg, time_limit=None), log=lambda m: None)
    assert final is not None and json.loads((run / "state" / "state.json").read_text())["step"] == 5


def test_fine_tuning_can_run_without_dropout_as_inference_does(tiny_data, tiny_lm, tmp_path, monkeypatch):
    from foldatlas.train import fold

    data, _ = tiny_data
    built, seen = fold.build_fold_model, []

    def watched(cfg):
        model = built(cfg)
        for mod in model.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.register_forward_pre_hook(lambda m, args: seen.append(m.training))
        return model

    monkeypatch.setattr(fold, "build_fold_model", watched)
    for dropout in (True, False):
        seen.clear()
        train_fold(data, tmp_path / str(dropout), _cfg(tiny_lm, steps=2, eval_every=1, dropout=dropout),
                   log=lambda m: None)
        assert seen and any(seen) == dropout  # off in every step, also after a validation
