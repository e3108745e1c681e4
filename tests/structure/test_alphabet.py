"""The structural alphabet: invariant to rigid motion, defined where a residue has a frame, loads as shipped."""

import numpy as np
import pytest

from foldatlas.structure.alphabet import LETTERS, NUM_FEATURES, StructureAlphabet, ca_features, load_alphabet
from foldatlas.structure.io import ca_trace, read_structure


def _random_rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    return q if np.linalg.det(q) > 0 else -q


def test_states_are_invariant_to_rotation_and_translation(split_dir):
    alphabet = load_alphabet()
    ca = ca_trace(read_structure(split_dir / "1AX8_A.pdb"))[0]
    moved = ca @ _random_rotation(1).T + np.array([40.0, -12.0, 7.5])
    assert alphabet.encode(ca) == alphabet.encode(moved)
    np.testing.assert_allclose(ca_features(ca), ca_features(moved), atol=1e-6)
    s = alphabet.encode(ca)
    assert len(s) == len(ca) and s[0] == "X" and s[-1] == "X" and set(s) <= set(LETTERS + "X")
    assert len(set(s)) > 5  # a real protein uses many states


def test_undefined_residues_and_short_chains():
    alphabet = load_alphabet()
    assert alphabet.encode(np.zeros((3, 3))) == "XXX"
    line = np.stack([np.arange(8) * 3.8, np.zeros(8), np.zeros(8)], 1)
    line[4:] += [20.0, 0, 0]  # a chain break: residues next to it have no frame
    f = ca_features(line)
    assert f.shape == (8, NUM_FEATURES) and np.isnan(f[3]).all() and np.isnan(f[4]).all()


def test_alphabet_round_trip_and_scoring(tmp_path):
    alphabet = load_alphabet()
    alphabet.save(tmp_path)
    again = load_alphabet(str(tmp_path))
    np.testing.assert_allclose(again.centroids, alphabet.centroids)
    assert (again.matrix == alphabet.matrix).all() and again.gap_open == alphabet.gap_open
    assert alphabet.matrix.shape == (21, 21) and (np.diag(alphabet.matrix)[:20] > 0).all()
    assert 0 < alphabet.lam < 2
    assert alphabet.scoring_matrix().alphabet == LETTERS + "X"
    bad = alphabet.to_dict()
    bad["num_features"] = 3
    with pytest.raises(ValueError, match="another version"):
        StructureAlphabet.from_dict(bad)
