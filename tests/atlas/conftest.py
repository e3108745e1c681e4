"""Atlas fixtures: the shipped language model as embedder, real protein sequences, a small imported atlas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parent.parent / "data" / "test_split"
AA = "ACDEFGHIKLMNPQRSTVWY"


@pytest.fixture(scope="session")
def embedder():
    """The embedded language model (shipped in the package), as the atlas' default embedder."""
    from foldatlas.models.embedding import load_embedder

    return load_embedder("foldatlas-lm-small")


@pytest.fixture(scope="session")
def real_sequences():
    """Sequences of the four real PDB chains in tests/data/test_split, by ID."""
    from foldatlas.structure.io import ca_trace, read_structure

    return {p.name.split(".")[0]: ca_trace(read_structure(p))[1] for p in sorted(DATA.glob("*.pdb"))}


def _mutate(seq: str, identity: float, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    out = list(seq)
    for i in rng.choice(len(seq), int(round(len(seq) * (1 - identity))), replace=False):
        out[i] = rng.choice([a for a in AA if a != seq[i]])
    return "".join(out)


@pytest.fixture(scope="session")
def mutate():
    """``mutate(seq, identity, seed=0)``: a copy of ``seq`` with ``1 - identity`` of positions substituted."""
    return _mutate

