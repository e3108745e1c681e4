"""Shared helpers of the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_fold(tiny_data, tmp_path_factory):
    """``(data, model)``: the tiny data folder and a folding model trained one step on it (over a one-step
    language model), shared by the tests that need a trained checkpoint of the folding architecture."""
    data, _ = tiny_data
    return data, _train_tiny_fold(data, tmp_path_factory.mktemp("tiny_fold"))


def _train_tiny_fold(data: Path, work: Path) -> Path:
    from foldatlas.train.fold import FoldTrainConfig, train_fold
    from foldatlas.train.lm import LMTrainConfig, train_lm

    lm = train_lm(data, work / "lm", LMTrainConfig(layers=1, hidden=16, heads=2, ffn=32, crop=48, batch_size=2,
                                                   steps=1, warmup=1, threads=1), log=lambda m: None)
    return train_fold(data, work / "fold", FoldTrainConfig(lm=str(lm), blocks=1, sequence_dim=32, pairwise_dim=16,
                                                           head_width=8, sm_dim=16, sm_blocks=1, ipa_heads=2,
                                                           crop=32, batch_size=1, steps=1, warmup=1, max_recycles=0,
                                                           threads=1, eval_chains=1),
                      log=lambda m: None)


@pytest.fixture
def one_chain_data(tiny_data, tmp_path):
    """The tiny data folder with a single training chain (of at least 40 residues), to overfit."""
    import shutil

    from foldatlas.train.data import load_structures

    data, _ = tiny_data
    small = tmp_path / "data1"
    shutil.copytree(data, small)
    train = load_structures(small / "structures_train.npz")
    keep = [k for k in range(len(train)) if len(train.chain(k)["sequence"]) >= 40][:1]
    train.subset(keep).save(small / "structures_train.npz")
    return small
