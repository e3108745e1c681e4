"""Fit the E-value law of the 3Di+AA structure-search score on random StructureDB chain pairs.

Draws chains of 40-600 residues from ProMod3's StructureDB dump (``train/promod3_dump.py``), leaving out the
structure-search benchmark's 2,000 chains (``benchmarks/atlas/data/database.txt``), scores every query against every
target with :func:`foldatlas.atlas.structsearch.threedi_aa_scores` (random pairs: nearly all unrelated) and fits
``lambda`` and ``ln K`` (quartile fit, :func:`foldatlas.atlas.evalues.fit_gumbel`). The result goes into
``foldatlas.atlas.structsearch.EVALUE_LAMBDA`` / ``EVALUE_LOG_K``. With ``--score 3di`` the score is the 3Di
Smith-Waterman score alone (pyopal, gaps 10/1: what a search ranked by refined TM-scores reports), for
``EVALUE_3DI_LAMBDA`` / ``EVALUE_3DI_LOG_K``.

    python benchmarks/atlas/calibrate_3diaa.py /work/data/structuredb.npz --queries 200 --targets 200
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"


def threedi_scores(query: np.ndarray, targets: list[np.ndarray]) -> np.ndarray:
    """pyopal's 3Di Smith-Waterman scores of one query's states against each target's (gaps 10/1)."""
    import pyopal
    from scoring_matrices import ScoringMatrix

    from foldatlas.atlas.structsearch import GAP_EXTEND, GAP_OPEN, THREEDI_LETTERS
    from foldatlas.structure.threedi import matrix_3di

    matrix = ScoringMatrix(matrix_3di().astype(int).tolist(), alphabet=THREEDI_LETTERS, name="3Di")
    text = ["".join(THREEDI_LETTERS[s] for s in t) for t in targets]
    db = pyopal.Database(text, alphabet=pyopal.Alphabet(THREEDI_LETTERS))
    q = "".join(THREEDI_LETTERS[s] for s in query)
    return np.array([r.score for r in pyopal.align(q, db, matrix, gap_open=GAP_OPEN, gap_extend=GAP_EXTEND,
                                                   ordered=True)], dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("npz", type=Path)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--aa-weight", type=float, default=0.5)
    parser.add_argument("--reverse", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--score", choices=("3diaa", "3di"), default="3diaa")
    args = parser.parse_args()

    from foldatlas.atlas.evalues import fit_gumbel, pair_pvalue
    from foldatlas.atlas.structsearch import threedi_aa_scores
    from foldatlas.structure.threedi import aa_codes, backbone_states

    data = np.load(args.npz)
    ids, offsets, coords, sequence = data["ids"], data["offsets"], data["coords"], str(data["sequence"])
    excluded = set((DATA / "database.txt").read_text().split())
    lengths = np.diff(offsets)
    pool = [k for k in range(len(ids)) if 40 <= lengths[k] <= 600 and str(ids[k]) not in excluded]
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(pool, args.queries + args.targets, replace=False)

    def chain(k: int) -> tuple[np.ndarray, np.ndarray]:
        xyz = coords[offsets[k]:offsets[k + 1]].astype(np.float64)  # N, CA, C, O, CB
        return backbone_states(xyz[:, 1], xyz[:, 4], xyz[:, 0], xyz[:, 2]), aa_codes(
            sequence[offsets[k]:offsets[k + 1]])

    chains = {int(k): chain(int(k)) for k in chosen}
    queries, targets = chosen[:args.queries], chosen[args.queries:]
    start = time.perf_counter()
    scores, m, n = [], [], []
    target_chains = [chains[int(t)] for t in targets]
    for q in queries:
        q3, qa = chains[int(q)]
        if args.score == "3di":
            scores.append(threedi_scores(q3, [t[0] for t in target_chains]))
        else:
            scores.append(threedi_aa_scores(q3, qa, target_chains, args.aa_weight, args.reverse))
        m.append(np.full(len(targets), len(q3)))
        n.append(np.array([len(t[0]) for t in target_chains]))
    scores, m, n = np.concatenate(scores), np.concatenate(m), np.concatenate(n)
    seconds = time.perf_counter() - start
    lam, log_k = fit_gumbel(scores, m, n)
    p = pair_pvalue(scores, m, n, lam, log_k)
    print(json.dumps({"pairs": len(scores), "score": args.score, "aa_weight": args.aa_weight, "reverse": args.reverse,
                      "lambda": round(lam, 4),
                      "log_k": round(log_k, 3), "seconds": round(seconds, 1),
                      "fraction_p_le": {str(a): round(float(np.mean(p <= a)), 5) for a in (0.1, 0.01, 0.001)},
                      "score_quantiles": {str(q): round(float(np.quantile(scores, q)), 1)
                                          for q in (0.5, 0.9, 0.99, 0.999)}}, indent=1))


if __name__ == "__main__":
    main()
