"""Batch Smith-Waterman from a query profile: the same scores as biotite's optimal local alignment."""

import numpy as np

from foldatlas.atlas.profile_align import profile_scores


def test_scores_equal_biotites_local_affine_alignment():
    import biotite.sequence as seq
    import biotite.sequence.align as align

    rng = np.random.default_rng(0)
    matrix = align.SubstitutionMatrix.std_protein_matrix()
    alphabet = matrix.get_alphabet1()
    query = rng.integers(0, 20, 90)
    homolog = query.copy()
    homolog[::4] = rng.integers(0, 20, len(homolog[::4]))
    targets = [rng.integers(0, 20, n) for n in (1, 7, 60, 150)]
    targets += [np.concatenate([rng.integers(0, 20, 25), homolog[5:40], homolog[48:85], rng.integers(0, 20, 9)])]
    got = profile_scores(matrix.score_matrix()[:20, :20][query], targets, 11, 1, batch=2)

    def text(codes):
        return seq.ProteinSequence("".join(alphabet.decode_multiple(codes)))

    want = [align.align_optimal(text(query), text(t), matrix, gap_penalty=(-11, -1), local=True,
                                max_number=1)[0].score for t in targets]
    assert got.tolist() == want
    assert want[-1] > 3 * max(want[:-1])  # the planted homolog, with its gap, stands out


def test_empty_inputs():
    profile = np.ones((5, 3), np.float32)
    assert profile_scores(profile, [np.zeros(0, int), np.array([0, 1])], 5, 1).tolist() == [0.0, 2.0]
    assert profile_scores(np.ones((0, 3), np.float32), [np.array([0])], 5, 1).tolist() == [0.0]
