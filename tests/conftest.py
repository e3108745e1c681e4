"""Shared fixtures: tiny random-config ESMFold checkpoints built in a temp dir (never downloaded), and a tiny
training-data fixture in the formats of the Debian dumps, with planted homologs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def run_cli():
    """Run the installed ``foldatlas`` console script as a user does: ``run_cli(*args, cwd=None, timeout=120)``."""
    script = Path(sys.executable).with_name("foldatlas")
    assert script.is_file(), f"{script}: the console script is not installed (pip install -e .)"

    def run(*args: str, cwd=None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)

    return run


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A 2-layer, 2-block random ESMFold checkpoint folder (config.json + safetensors)."""
    from foldatlas.models.random_checkpoint import write_random_esmfold

    return write_random_esmfold(tmp_path_factory.mktemp("tiny_esmfold"), size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_lm_checkpoint(tmp_path_factory):
    """A 2-layer random ESM-2 masked LM folder (hidden 32), with a contact head whose weights are not zero."""
    import torch
    from transformers import EsmConfig, EsmForMaskedLM

    from foldatlas.train.lm import esm2_config_dict, write_tokenizer

    folder = tmp_path_factory.mktemp("tiny_esm2")
    torch.manual_seed(0)
    model = EsmForMaskedLM(EsmConfig(**esm2_config_dict(layers=2, hidden=32, heads=4, ffn=64)))
    with torch.no_grad():  # a contact head with weight, so the maps are not constant
        model.esm.contact_head.regression.weight.normal_()
    model.save_pretrained(str(folder), safe_serialization=True)
    write_tokenizer(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_esmc_checkpoint(tmp_path_factory):
    """A 2-layer random ESM C masked LM folder (hidden 32, 64-slot vocabulary whose first 33 are ESM-2's)."""
    from foldatlas.models.random_checkpoint import write_random_esmc

    return write_random_esmc(tmp_path_factory.mktemp("tiny_esmc"), size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_fold2_checkpoint(tmp_path_factory):
    """A tiny random ESMFold2 checkpoint (every part, 1-2 layers of width 32-64, 3 samples), float32."""
    from foldatlas.models.random_checkpoint import write_random_esmfold2

    return write_random_esmfold2(tmp_path_factory.mktemp("tiny_esmfold2"), size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_fold2_bf16_checkpoint(tmp_path_factory):
    """The tiny ESMFold2 checkpoint stored in bfloat16, as the released ones are."""
    import torch

    from foldatlas.models.random_checkpoint import write_random_esmfold2

    return write_random_esmfold2(tmp_path_factory.mktemp("tiny_esmfold2_bf16"), size="tiny", seed=0,
                                 lm_dtype=torch.bfloat16)


def write_fold2_without(source, folder, prefix: str):
    """A copy of an ESMFold2 checkpoint folder without the weights whose names start with ``prefix``."""
    from safetensors.torch import load_file, save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text((source / "config.json").read_text())
    weights = load_file(str(source / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if not k.startswith(prefix)}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="session")
def fold2_without():
    """:func:`write_fold2_without`, for tests (conftest modules are not importable by name in a full run)."""
    return write_fold2_without


@pytest.fixture(scope="session")
def tiny_fold2_without_lm(tmp_path_factory, tiny_fold2_checkpoint):
    """The tiny ESMFold2 checkpoint without ESM C's weights (``esmc.*``)."""
    return write_fold2_without(tiny_fold2_checkpoint, tmp_path_factory.mktemp("no_lm"), "esmc.")


@pytest.fixture(scope="session")
def tiny_fold2_model(tiny_fold2_checkpoint):
    """The tiny ESMFold2 checkpoint loaded through foldatlas' loader on the CPU."""
    from foldatlas.models.loading import load_folding_model

    return load_folding_model(str(tiny_fold2_checkpoint), device="cpu")


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    """The tiny checkpoint loaded through foldatlas' loader on the CPU."""
    from foldatlas.models.loading import load_folding_model

    return load_folding_model(str(tiny_checkpoint), device="cpu")


@pytest.fixture(scope="session")
def split_dir():
    """tests/data/test_split: four real PDB chains of the training data's test split."""
    from pathlib import Path

    return Path(__file__).resolve().parent / "data" / "test_split"


@pytest.fixture(autouse=True)
def _hash_cache(tmp_path, monkeypatch):
    """Keep the weights-hash cache out of the user's home."""
    monkeypatch.setenv("FOLDATLAS_CACHE", str(tmp_path / "cache"))

AA = "ACDEFGHIKLMNPQRSTVWY"


def _random_seq(rng, n):
    return "".join(rng.choice(list(AA), n))


def _mutate(rng, seq, identity):
    out = list(seq)
    for i in rng.choice(len(seq), int(round(len(seq) * (1 - identity))), replace=False):
        out[i] = rng.choice([a for a in AA if a != seq[i]])
    return "".join(out)


def make_structures(rng, seqs):
    from foldatlas.train.data import StructureSet

    lengths = np.array([len(s) for s in seqs])
    n = int(lengths.sum())
    # A snake on a plane: rows of 15 residues 3.8 A apart, rows 5 A apart, so that
    # residues in neighbouring rows (up to 29 apart in sequence) are in contact.
    k = np.concatenate([np.arange(m) for m in lengths])
    row, col = k // 15, k % 15
    col = np.where(row % 2 == 0, col, 14 - col)
    ca = np.stack([col * 3.8, row * 5.0, np.zeros(n)], -1).astype(np.float32)
    coords = np.stack([ca - 1.0, ca, ca + 1.0, ca + 1.5, ca + 0.8], 1).astype(np.float32)
    prof = rng.random((n, 20)).astype(np.float32)
    prof /= prof.sum(1, keepdims=True)
    return StructureSet(ids=np.array([f"P{k:03d}_A" for k in range(len(seqs))]),
                        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                        sequence="".join(seqs), dssp="H" * n, coords=coords, profile=prof.astype(np.float16))


@pytest.fixture(scope="session")
def tiny_sources():
    """60 structure chains, 300 UniProt sequences, 2 evaluation domains.

    Every evaluation domain has a 60%-identity copy among the UniProt sequences
    and among the structure chains; those copies must not reach training.
    """
    rng = np.random.default_rng(7)
    evals = [(f"eval{k}", _random_seq(rng, 90)) for k in range(2)]
    s_seqs = [_random_seq(rng, int(rng.integers(40, 120))) for _ in range(58)]
    s_seqs += [_mutate(rng, s, 0.6) for _, s in evals]
    uni = [(f"U{k:04d}", _random_seq(rng, int(rng.integers(40, 200)))) for k in range(296)]
    uni += [(f"HOM{k}", _mutate(rng, s, 0.6)) for k, (_, s) in enumerate(evals)]
    uni += [("DUP0", uni[0][1]), ("BAD0", "ACDJJJ" * 10)]
    return {"uniprot": uni, "structures": make_structures(rng, s_seqs), "evals": evals}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, tiny_sources):
    """The tiny fixture run through build_dataset."""
    if shutil.which("mmseqs") is None:
        pytest.skip("mmseqs2 not installed")
    from foldatlas.train.data import SplitOptions, build_dataset

    out = tmp_path_factory.mktemp("data")
    manifest = build_dataset(out, tiny_sources["uniprot"], tiny_sources["structures"], tiny_sources["evals"],
                             options=SplitOptions(frac_test=0.1, frac_valid=0.1, lm_valid=20), log=lambda m: None)
    return out, manifest
