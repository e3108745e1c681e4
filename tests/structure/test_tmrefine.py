"""Refined TM-scores: TM-align's values on real chains, exact on copies, seeds that mislead, edge cases."""

import numpy as np
import pytest

from foldatlas.structure.io import ca_trace, read_structure
from foldatlas.structure.tmrefine import REFINED_COLUMNS, refine_tm_scores

NAMES = ("1AX8_A", "1BUN_B", "1DFU_C", "1FHG_A")


@pytest.fixture(scope="module")
def chains():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "data" / "test_split"
    out = {}
    for name in NAMES:
        ca, seq, _ = ca_trace(read_structure(folder / f"{name}.pdb"))
        out[name] = (ca.astype(np.float64), np.frombuffer(seq.encode(), np.uint8))
    return out


def _rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    return q if np.linalg.det(q) > 0 else -q


def _diagonal(n: int, shift: int = 0):
    qi = np.arange(max(0, shift), n)
    return qi, qi - shift


def test_a_moved_copy_scores_one_and_its_superposition_puts_it_back(chains):
    ca, seq = chains["1FHG_A"]
    rot = _rotation(1)
    moved = ca @ rot.T + np.array([30.0, -12.0, 5.0])
    out = refine_tm_scores(ca, seq, [moved], [seq], [[_diagonal(len(ca))]])[0]
    row = dict(zip(REFINED_COLUMNS, out))
    assert row["tm_query"] == pytest.approx(1.0, abs=1e-6) and row["tm_target"] == pytest.approx(1.0, abs=1e-6)
    assert row["rmsd"] < 1e-3 and row["aligned"] == len(ca) and row["identical"] == len(ca)
    r, t = out[5:14].reshape(3, 3), out[14:17]
    assert np.allclose(r @ r.T, np.eye(3), atol=1e-9) and np.linalg.det(r) == pytest.approx(1.0)
    assert np.abs(moved @ r.T + t - ca).max() < 1e-6


def test_a_misleading_seed_is_overcome(chains):
    """A seed shifted by 30 residues, or a seed of three pairs: the gapless threading and the iterations find the
    copy anyway."""
    ca, seq = chains["1BUN_B"]
    moved = ca @ _rotation(2).T
    seeds = [[_diagonal(len(ca), 30)], [(np.array([0, 30, 55]), np.array([10, 20, 30]))], []]
    out = refine_tm_scores(ca, seq, [moved] * 3, [seq] * 3, seeds)
    assert np.allclose(out[:, 0], 1.0, atol=1e-6)


def test_refined_scores_match_tmalign_on_real_chains(chains):
    """Every ordered pair of the four test chains, a noisy copy and a copy with 15 residues deleted: the refined
    TM-score is a TM-score of one alignment, so it does not exceed TM-align's by more than TM-align's own
    search error; for the related pairs it comes within a few hundredths of it (unrelated pairs, below 0.5, may
    score lower than TM-align finds: no fragment seeds here)."""
    import tmtools

    rng = np.random.default_rng(0)
    pairs = [(a, chains[b][0], chains[b][1]) for a in NAMES for b in NAMES if a != b]
    ca, seq = chains["1DFU_C"]
    noisy = ca @ _rotation(3).T + rng.normal(0, 1.5, ca.shape)
    keep = np.r_[0:40, 55:len(ca)]
    pairs += [("1DFU_C", noisy, seq), ("1DFU_C", ca[keep], seq[keep])]
    for query, target, tseq in pairs:
        qca, qseq = chains[query]
        seed = _diagonal(min(len(qca), len(target)))  # a poor seed for unrelated chains
        got = refine_tm_scores(qca, qseq, [target], [tseq], [[seed]])[0]
        ref = tmtools.tm_align(qca, target, qseq.tobytes().decode(), tseq.tobytes().decode())
        assert got[0] <= ref.tm_norm_chain1 + 0.02
        if ref.tm_norm_chain1 >= 0.5:
            assert got[0] >= ref.tm_norm_chain1 - 0.03
        assert got[1] <= ref.tm_norm_chain2 + 0.02


def test_threads_short_chains_and_argument_errors(chains):
    ca, seq = chains["1AX8_A"]
    targets = [chains[n][0] for n in NAMES] + [ca[:2], ca[:0]]
    seqs = [chains[n][1] for n in NAMES] + [seq[:2], seq[:0]]
    seeds = [[_diagonal(min(len(ca), len(t)))] for t in targets]
    one = refine_tm_scores(ca, seq, targets, seqs, seeds, threads=1)
    two = refine_tm_scores(ca, seq, targets, seqs, seeds, threads=2)
    assert np.array_equal(one, two)
    assert np.all(one[-2:, :5] == 0) and np.allclose(one[-1, 5:14], np.eye(3).ravel())
    assert refine_tm_scores(ca, seq, [], [], []).shape == (0, len(REFINED_COLUMNS))
    with pytest.raises(ValueError, match="one item per target"):
        refine_tm_scores(ca, seq, targets, seqs[:2], seeds)


def test_seeds_outside_their_chains_and_non_finite_coordinates_are_refused(chains):
    """The kernels do not check indices: a seed pointing past a chain once read memory outside it, which hung the
    test suite on one CPU (numba's bounds checking found it). Such input is refused before the kernels run."""
    ca, seq = chains["1BUN_B"]
    target, tseq = chains["1AX8_A"]
    ok = (np.array([0, 1, 2]), np.array([0, 1, 2]))
    bad = {
        "query index": (np.array([0, 1, len(ca)]), np.array([0, 1, 2])),
        "target index": (np.array([0, 1, 2]), np.array([0, 1, len(target)])),
        "as many": (np.array([0, 1, 2]), np.array([0, 1])),
    }
    for message, seed in bad.items():
        with pytest.raises(ValueError, match=message):
            refine_tm_scores(ca, seq, [target, target], [tseq, tseq], [[ok], [ok, seed]])
    with pytest.raises(ValueError, match="target index"):
        refine_tm_scores(ca, seq, [target], [tseq], [[(np.array([0]), np.array([-1]))]])
    broken = target.copy()
    broken[5, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        refine_tm_scores(ca, seq, [broken], [tseq], [[ok]])
    assert refine_tm_scores(ca, seq, [target], [tseq], [[ok]])[0, 0] > 0
