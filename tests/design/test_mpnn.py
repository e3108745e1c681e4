"""Design with the shipped ProteinMPNN weights: options respected, reproducible, and scores that mean something."""

import numpy as np
import pytest

from foldatlas.design.mpnn import DesignOptions, design_sequences, score_sequences
from foldatlas.errors import InvalidOptionError, InvalidSequenceError
from foldatlas.structure.io import read_structure


@pytest.fixture(scope="module")
def small(split_dir_module):
    return read_structure(split_dir_module / "1BUN_B.pdb")  # 61 residues


@pytest.fixture(scope="module")
def split_dir_module():
    from pathlib import Path

    return Path(__file__).resolve().parents[1] / "data" / "test_split"


def test_designs_respect_options_and_are_reproducible(small):
    from foldatlas.design import backbone

    bb = backbone(small)
    first, chain = int(bb.res_ids[0]), bb.chains[0]
    options = DesignOptions(num_sequences=3, batch_size=2, seed=5, fixed=f"{chain}{first}-{first + 9}", omit="CW",
                            bias={"A": 0.5})
    result = design_sequences(small, options, name="x")
    assert len(result.designs) == 3 and result.designed == len(bb) - 10
    for d in result.designs:
        assert len(d.sequence) == len(bb) and d.sequence[:10] == bb.sequence[:10]
        assert "C" not in d.sequence[10:] and "W" not in d.sequence[10:]
        assert 0 < d.score < 3 and abs(d.confidence - np.exp(-d.score)) < 1e-3 and 0 <= d.recovery <= 1
    again = design_sequences(small, options, name="x")
    assert [d.sequence for d in again.designs] == [d.sequence for d in result.designs]
    fasta = result.to_fasta()
    assert fasta.startswith(">x native score=") and fasta.count(">") == 4 and ">x_design_3 score=" in fasta
    assert result.to_dict()["designs"][0]["sequence"] == result.designs[0].sequence


def test_low_temperature_recovers_more_and_scores_rank_native_over_shuffled(small):
    cold = design_sequences(small, DesignOptions(num_sequences=4, temperature=0.1, seed=1))
    hot = design_sequences(small, DesignOptions(num_sequences=4, temperature=2.0, seed=1))
    assert np.mean([d.recovery for d in cold.designs]) > np.mean([d.recovery for d in hot.designs]) + 0.1
    assert np.mean([d.score for d in cold.designs]) < cold.native_score < np.mean([d.score for d in hot.designs])
    native = cold.native
    shuffled = "".join(np.random.default_rng(0).permutation(list(native)))
    nat, shuf = score_sequences(small, [native, shuffled])
    assert nat.mean > shuf.mean + 0.5 and len(nat.per_residue) == len(native)
    assert abs(nat.total - sum(nat.per_residue)) < 1e-2
    with pytest.raises(InvalidSequenceError, match="residues"):
        score_sequences(small, [native[:-1]])
    with pytest.raises(InvalidSequenceError, match="not an amino acid"):
        score_sequences(small, ["B" * len(native)])


def test_option_errors(small):
    for kwargs, message in (({"num_sequences": 0}, ">= 1"), ({"temperature": 0}, "> 0"), ({"omit": "Z"}, "Z"),
                            ({"omit": "ACDEFGHIKLMNPQRSTVWY"}, "no amino acid"), ({"bias": {"J": 1.0}}, "J")):
        with pytest.raises(InvalidOptionError, match=message):
            DesignOptions(**kwargs)
    with pytest.raises(InvalidOptionError, match="no chain Q"):
        design_sequences(small, DesignOptions(chains=("Q",)))
    from foldatlas.design import backbone

    bb = backbone(small)
    every = f"{bb.chains[0]}{int(bb.res_ids[0])}-{int(bb.res_ids[-1])}"
    with pytest.raises(InvalidOptionError, match="nothing to design"):
        design_sequences(small, DesignOptions(fixed=every))
