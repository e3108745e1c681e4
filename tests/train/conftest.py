"""Shared helpers of the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def train_tiny_fold():
    """``train_tiny_fold(data, work)``: a one-step language model and a one-step folding model on the tiny data;
    returns the folding run's ``model/`` folder."""
    return _train_tiny_fold


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
