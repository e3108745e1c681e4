"""Shared fixtures: tiny random-config ESMFold checkpoints built in a temp dir (never downloaded)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A 2-layer, 2-block random ESMFold checkpoint folder (config.json + safetensors)."""
    from foldatlas.models.random_checkpoint import write_random_esmfold

    return write_random_esmfold(tmp_path_factory.mktemp("tiny_esmfold"), size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    """The tiny checkpoint loaded through foldatlas' loader on the CPU."""
    from foldatlas.models.loading import load_folding_model

    return load_folding_model(str(tiny_checkpoint), device="cpu")


@pytest.fixture(autouse=True)
def _hash_cache(tmp_path, monkeypatch):
    """Keep the weights-hash cache out of the user's home."""
    monkeypatch.setenv("FOLDATLAS_CACHE", str(tmp_path / "cache"))
