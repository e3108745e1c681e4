"""Structure-module fine-tuning on cached trunk outputs: the cache gives back the fold, only the structure module
and the pLDDT head move, the losses fall, a stopped run resumes exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from foldatlas.train.fold import FoldTrainConfig, build_fold_model
from foldatlas.train.fold_sm import (collect_structure_inputs, structure_module_outputs, train_structure_module,
                                     without_dropout)


def _cfg(init, **kw):
    base = dict(init=str(init) if init else None, blocks=1, sequence_dim=32, pairwise_dim=16, crop=32, batch_size=2, steps=40, lr=2e-3,
                warmup=2, max_recycles=0, threads=1, checkpoint_every=10, eval_every=1000, eval_chains=1, log_every=1,
                violation=1.0)
    base.update(kw)
    return FoldTrainConfig(**base)


def test_the_kept_inputs_give_back_the_fold(tiny_fold):
    from foldatlas.train.data import load_structures

    data, model_dir = tiny_fold
    model = build_fold_model(_cfg(model_dir))
    torch.manual_seed(0)
    with torch.no_grad():  # a structure module that places residues far apart, so that a mismatch would show
        for p in model.trunk.structure_module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    model.eval()
    train = load_structures(data / "structures_train.npz")
    by_length = sorted((train.chain(k) for k in range(len(train))), key=lambda c: len(c["sequence"]))
    chains = [by_length[-1], by_length[0], by_length[-2]]
    crop = len(by_length[0]["sequence"]) + 8  # the short chain is padded, the two long ones cropped
    assert len(by_length[-2]["sequence"]) > crop
    cache = collect_structure_inputs(model, chains, crop=crop, batch_size=2, log=lambda m: None)
    assert cache["single"].shape == (3, crop, 16) and cache["pair"].shape == (3, crop, crop, 16)
    assert cache["single"].dtype == np.float16 and cache["coords"].shape == (3, crop, 5, 3)
    assert cache["mask"].sum(1).tolist() == [crop, crop - 8, crop]
    aatype, mask = (torch.from_numpy(cache[k]).long() for k in ("aatype", "mask"))
    with torch.no_grad():
        whole = model(input_ids=aatype, attention_mask=mask, position_ids=torch.arange(crop).expand(3, crop))
        alone = structure_module_outputs(model, torch.from_numpy(cache["single"]).float(),
                                         torch.from_numpy(cache["pair"]).float(), aatype, mask)
    keep = mask.bool()
    ca = whole.positions[-1][..., 1, :][keep]
    assert float(torch.cdist(ca, ca).max()) > 5.0
    # the kept inputs are float16: atoms move by hundredths of an angstrom
    diff = (alone.positions[-1][keep] - whole.positions[-1][keep]).abs()
    assert float(diff.max()) < 0.1 and float(diff.mean()) < 0.005, (float(diff.max()), float(diff.mean()))
    torch.testing.assert_close(alone.lddt_head[-1][keep], whole.lddt_head[-1][keep], atol=0.05, rtol=0)


def test_training_runs_the_structure_module_as_inference_does(tiny_fold):
    """Dropout off: the training step's structure is the one a fold gives (dropout changes the geometry)."""
    _, model_dir = tiny_fold
    model = build_fold_model(_cfg(model_dir))
    torch.manual_seed(0)
    single, pair = torch.randn(1, 30, 16), torch.randn(1, 30, 30, 16)
    aatype, mask = torch.randint(0, 20, (1, 30)), torch.ones(1, 30, dtype=torch.long)
    with torch.no_grad():
        for p in model.trunk.structure_module.parameters():
            p.add_(0.3 * torch.randn_like(p))
        model.eval()
        folded = structure_module_outputs(model, single, pair, aatype, mask).positions[-1]
        model.train()
        dropped = structure_module_outputs(model, single, pair, aatype, mask).positions[-1]
        without_dropout(model)
        trained = structure_module_outputs(model, single, pair, aatype, mask).positions[-1]
    assert model.training and not torch.allclose(dropped, folded, atol=1e-3)
    torch.testing.assert_close(trained, folded)


def test_training_moves_only_the_structure_module_and_lowers_the_loss(tiny_fold, one_chain_data, tmp_path):
    from safetensors.torch import load_file

    _, model_dir = tiny_fold
    run = tmp_path / "run"
    final = train_structure_module(one_chain_data, run, _cfg(model_dir), crops=4, log=lambda m: None)
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert "valid_fape" in rows[0] and rows[0]["step"] == 0  # validated (the whole model) before the first step
    steps = [r for r in rows if "fape" in r]
    assert len(steps) == 40 and "distogram" not in steps[0] and "plddt" in steps[0] and "violation" in steps[0]
    for name in ("loss", "clash"):
        assert np.mean([r[name] for r in steps[-10:]]) < np.mean([r[name] for r in steps[:4]]), name
    before, after = load_file(str(model_dir / "model.safetensors")), load_file(str(final / "model.safetensors"))
    moved = {k for k in before if not torch.equal(before[k].float(), after[k].float())}
    assert moved and all(k.startswith(("trunk.structure_module.", "lddt_head.")) for k in moved), sorted(moved)
    assert any(k.startswith("lddt_head.") for k in moved)
    config = json.loads((run / "config.json").read_text())
    assert config["structure_module_only"] is True and config["cached_crops"] == 4
    # one training chain: one crop kept, which a second call reads back
    again = train_structure_module(one_chain_data, run, _cfg(model_dir), crops=4, log=lambda m: None)
    assert again == final


def test_a_stopped_run_resumes_exactly_from_its_cache(tiny_fold, monkeypatch, tmp_path):
    from safetensors.torch import load_file

    from foldatlas.train import fold_sm

    data, model_dir = tiny_fold
    cfg = _cfg(model_dir, steps=6, checkpoint_every=3)
    a = train_structure_module(data, tmp_path / "a", cfg, crops=4, log=lambda m: None)
    assert train_structure_module(data, tmp_path / "b", cfg, crops=4, log=lambda m: None, until=3) is None

    def no_folding(*args, **kwargs):
        raise AssertionError("trunk outputs computed again")

    monkeypatch.setattr(fold_sm, "collect_structure_inputs", no_folding)
    b = train_structure_module(data, tmp_path / "b", cfg, crops=4, log=lambda m: None)
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="holds 4 crops"):
        train_structure_module(data, tmp_path / "b", cfg, crops=5, log=lambda m: None)
    with pytest.raises(ValueError, match="init"):
        train_structure_module(data, tmp_path / "c", _cfg(None), log=lambda m: None)


def test_cli_asks_for_the_model_to_fine_tune(run_cli, tiny_fold, tmp_path):
    data, _ = tiny_fold
    done = run_cli("train", "fold", "--data", str(data), "--out", str(tmp_path / "o"), "--structure-module-only")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--init" in done.stderr
    # no chain long enough for --min-length: one line, no run folder
    done = run_cli("train", "fold", "--data", str(data), "--out", str(tmp_path / "p"), "--structure-module-only",
                   "--init", "foldatlas-fold-small", "--min-length", "100000")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "100000 residues" in done.stderr
    assert not (tmp_path / "p").exists()


def test_long_crops_train_every_other_step_from_their_own_cache(tiny_fold, monkeypatch, tmp_path):
    """--long-crop: a second kept cache of long windows from long chains; every second step is a batch of them, with
    about as many residues as a short batch."""
    from foldatlas.train import fold_sm
    from foldatlas.train.data import load_structures

    data, model_dir = tiny_fold
    train = load_structures(data / "structures_train.npz")
    long_chains = sum(len(train.chain(k)["sequence"]) >= 64 for k in range(len(train)))
    assert long_chains >= 3
    shapes = []
    run_sm = fold_sm.structure_module_outputs

    def record(model, single, pair, aatype, mask):
        shapes.append((tuple(aatype.shape), int(mask.sum())))
        return run_sm(model, single, pair, aatype, mask)

    monkeypatch.setattr(fold_sm, "structure_module_outputs", record)
    cfg = _cfg(model_dir, steps=6, batch_size=4, long_crop=64, checkpoint_every=3)
    assert fold_sm.long_batch_size(cfg) == 2 and [fold_sm.is_long_step(s, cfg) for s in range(4)] == [0, 1, 0, 1]
    final = train_structure_module(data, tmp_path / "run", cfg, crops=8, long_crops=3, log=lambda m: None)
    assert final is not None
    # short steps: 4 crops of 32; long ones: 2 whole windows of 64 (every long crop is a full window, no padding)
    assert [s for s, _ in shapes] == [(4, 32), (2, 64)] * 3
    assert all(m == 128 for (shape, m) in shapes if shape == (2, 64))
    with np.load(tmp_path / "run" / fold_sm.LONG_CACHE_NAME) as z:
        assert z["aatype"].shape == (3, 64) and int(z["mask"].min()) == 1
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["long_crop"] == 64 and config["long_cached_crops"] == 3 and config["long_every"] == 2
    with pytest.raises(ValueError, match="holds 3 crops of 64"):
        train_structure_module(data, tmp_path / "run", cfg, crops=8, long_crops=4, log=lambda m: None)
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == config  # the refused rerun changed nothing
    with pytest.raises(ValueError, match="long_crop"):
        train_structure_module(data, tmp_path / "none", _cfg(model_dir, long_crop=100000), log=lambda m: None)
    assert not (tmp_path / "none").exists()


def test_cli_long_crops_need_the_structure_module_alone(run_cli, tiny_fold, tmp_path):
    data, _ = tiny_fold
    done = run_cli("train", "fold", "--data", str(data), "--out", str(tmp_path / "o"), "--long-crop", "320")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--structure-module-only" in done.stderr
    assert not (tmp_path / "o").exists()
