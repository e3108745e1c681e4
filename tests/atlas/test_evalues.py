"""Gumbel E-values: the fit recovers the law it is fitted to; E-values scale with the database."""

import numpy as np

from foldatlas.atlas.evalues import evalue, fit_gumbel, pair_pvalue


def test_fit_recovers_lambda_and_k_of_simulated_scores():
    rng = np.random.default_rng(0)
    m, n = rng.integers(50, 400, 20000), rng.integers(50, 400, 20000)
    lam, log_k = 0.27, -2.5
    y = rng.gumbel(log_k, 1.0, len(m))  # y = lam S - ln(m n)
    scores = (y + np.log(m * n)) / lam
    got_lam, got_k = fit_gumbel(scores, m, n)
    assert abs(got_lam - lam) < 0.01 and abs(got_k - log_k) < 0.1
    # calibrated: the fraction of pairs at P <= 0.01 is about 0.01
    p = pair_pvalue(scores, m, n, got_lam, got_k)
    assert 0.008 < np.mean(p <= 0.01) < 0.012


def test_evalue_grows_with_the_database_and_falls_with_the_score():
    e = evalue(np.array([20.0, 40.0]), 100, 100, 1000, 0.3, -2.0)
    assert e[0] > e[1] > 0
    assert np.allclose(evalue(40.0, 100, 100, 10000, 0.3, -2.0), 10 * e[1])
