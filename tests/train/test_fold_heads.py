"""Refitting the pLDDT head: it reads the states the fold ran on, learns its targets, and changes nothing else."""

from __future__ import annotations

import json

import numpy as np
import torch


def _chains(data, split, n):
    from foldatlas.train.data import load_structures

    s = load_structures(data / f"structures_{split}.npz")
    return [s.chain(k) for k in range(min(n, len(s)))]


def test_the_kept_states_give_the_folds_own_plddt_and_fitting_lowers_the_loss(tiny_fold):
    from foldatlas.models.loading import from_pretrained_quietly
    from foldatlas.train.fold_heads import _predict_plddt, collect_head_data, fit_lddt_head
    from transformers import EsmForProteinFolding

    data, model = tiny_fold
    chains = _chains(data, "train", 4)
    got = collect_head_data(str(model), chains, log=lambda m: None)
    for c, g in zip(chains, got):
        n = len(c["sequence"])
        assert g["states"].shape == (n, 16) and g["lddt"].shape == (n,) and g["mask"].dtype == bool
        assert 0 <= g["lddt"].min() and g["lddt"].max() <= 1 and g["mask"].sum() > 0
    head = from_pretrained_quietly(EsmForProteinFolding, model, "tiny", dtype=torch.float32).lddt_head
    for pred, g in zip(_predict_plddt(head, got), got):
        np.testing.assert_allclose(pred, g["plddt"], atol=1e-3)  # the head on the kept states = the fold's pLDDT
    result = fit_lddt_head(head, got, got, epochs=15, log=lambda m: None)
    assert result["before"]["max_diff_to_fold_plddt"] < 1e-3
    assert result["after"]["valid_loss"] < result["before"]["valid_loss"] - 0.5  # it learns its own targets
    assert result["epoch"] >= 1 and result["after"]["mae"] < result["before"]["mae"]
    assert len(result["after"]["residues"]["quintiles"]) == 5 and result["after"]["residues"]["pearson_r"] is not None


def test_refit_changes_only_the_plddt_head_and_reuses_its_folds(tiny_fold, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from foldatlas.train import fold_heads

    data, model = tiny_fold
    run = tmp_path / "run"
    summary = fold_heads.refit_lddt_head(str(model), data, run, train_chains=4, valid_chains=3, epochs=3,
                                         training_run=model.parent, log=lambda m: None)
    before, after = load_file(str(model / "model.safetensors")), load_file(str(run / "model" / "model.safetensors"))
    assert set(before) == set(after)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("lddt_head.") for k in changed)
    written = json.loads((run / "head_refit.json").read_text())
    assert written["train_chains"] == summary["train_chains"] > 0 and "pearson_r" in written["after"]
    assert (run / "config.json").read_text() == (model.parent / "config.json").read_text()
    from foldatlas.train.release import _head_refit_paragraph

    card = _head_refit_paragraph(run)  # what fold-release adds to the model card
    assert "pLDDT head refitted" in card and f"epoch {summary['epoch']} of 3" in card
    assert "per residue, Pearson r" in card
    assert _head_refit_paragraph(model.parent) == ""

    def no_folding(*args, **kwargs):
        raise AssertionError("folded again")

    monkeypatch.setattr(fold_heads, "collect_head_data", no_folding)
    again = fold_heads.refit_lddt_head(str(model), data, run, train_chains=4, valid_chains=3, epochs=3,
                                       log=lambda m: None)
    assert again["after"] == summary["after"]  # the same folds from the cache, the same seeded fit


def test_cli_refuses_a_folder_without_the_splits(run_cli, tmp_path):
    done = run_cli("train", "fold-heads", "--data", str(tmp_path), "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "structures_train.npz" in done.stderr
