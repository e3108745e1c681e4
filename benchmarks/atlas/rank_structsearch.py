"""Which score ranks TM-align's partners best among the structure prefilter's candidates? (recall at 100)

On the structure-search benchmark (``bench_structsearch.py`` must have built ``WORK/db2000`` first): for each of the 50
queries, the 3Di prefilter's best ``--candidates`` chains, then recall at 100 of the query's partners (TM-score >= 0.5
by query length) when the candidates are ranked by each score: the 3Di prefilter's (length-corrected), the 3Di+AA
alignment score at several BLOSUM62 weights, with and without the reversed query's score subtracted and with and
without length correction, and the TM-score of the superposition the 3Di alignment implies. TM-align on the best 20
does not change which chains are in the first 100, so no TM-align runs here.

    python benchmarks/atlas/rank_structsearch.py --pdb /work/data/structuredb_pdb --work /work/data/bench_struct
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench_structsearch import DATA, _truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdb", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--candidates", type=int, default=300)
    args = parser.parse_args()

    from foldatlas.atlas import open_atlas
    from foldatlas.atlas.profile_align import profile_scores
    from foldatlas.atlas.structindex import load_structure_shards
    from foldatlas.atlas.structsearch import (GAP_EXTEND, GAP_OPEN, StructureSearcher, StructureSearchOptions,
                                              alignment_tm_score, _path, query_chains)
    from foldatlas.structure.threedi import aa_codes, matrix_3di, matrix_blosum62

    database, partners = _truth(DATA)
    queries = [q for q in partners if partners[q]]
    atlas = open_atlas(args.work / "db2000", readonly=True)
    shards = load_structure_shards(atlas.folder)
    searcher = StructureSearcher(shards, StructureSearchOptions(mode="3di", candidates=args.candidates))
    m3, b62 = matrix_3di(), matrix_blosum62()
    keys: dict[str, list[float]] = {}
    for q in queries:
        query = query_chains(args.pdb / f"{q}.pdb.gz")[0]
        states = searcher._query_string(query)
        cands = searcher._prefilter(states)
        ids = atlas.ids_of(sorted({int(shards[k].target_row[t]) for k, t, _ in cands}))
        names = [ids[int(shards[k].target_row[t])] for k, t, _ in cands]
        keep = [i for i, n in enumerate(names) if n != q]
        cands, names = [cands[i] for i in keep], [names[i] for i in keep]
        q3, qa = query.trace.threedi.astype(np.int64), aa_codes(query.trace.sequence).astype(np.int64)
        tl = np.array([shards[k].offsets[t + 1] - shards[k].offsets[t] for k, t, _ in cands], dtype=np.float64)
        codes = [shards[k].target_states3di(t).astype(np.int64) * 21
                 + aa_codes(shards[k].residues[shards[k].offsets[t]:shards[k].offsets[t + 1]]) for k, t, _ in cands]
        scores = {"3Di prefilter (length-corrected)": np.array([s for _, _, s in cands])}
        for w in (0.0, 0.5, 1.0):
            prof = (m3[q3][:, :, None] + w * b62[qa][:, None, :]).reshape(len(q3), -1)
            fwd = profile_scores(prof, codes, GAP_OPEN, GAP_EXTEND)
            rev = profile_scores(np.ascontiguousarray(prof[::-1]), codes, GAP_OPEN, GAP_EXTEND)
            scores[f"3Di+{w}xAA"] = fwd
            scores[f"3Di+{w}xAA - reversed"] = fwd - rev
            scores[f"3Di+{w}xAA - reversed, per target length^0.5"] = (fwd - rev) / np.sqrt(tl)
        approx = []
        results = {}
        for k in {k for k, _, _ in cands}:
            items = [t for kk, t, _ in cands if kk == k]
            for t, res in zip(items, searcher._align(states, k, items, "full")):
                results[(k, t)] = res
        for k, t, _ in cands:
            res = results[(k, t)]
            qi, ti = _path(res.alignment, res.query_start, res.target_start)
            approx.append(alignment_tm_score(query.trace.ca, shards[k].target_ca(t), qi, ti)[0])
        scores["TM-score of the 3Di alignment's superposition"] = np.array(approx)
        truth = partners[q]
        for name, s in scores.items():
            top = {names[i] for i in np.argsort(-s, kind="stable")[:100]}
            keys.setdefault(name, [0, 0])
            keys[name][0] += len(truth & top)
            keys[name][1] += min(len(truth), 100)
        keys.setdefault("all candidates (ceiling)", [0, 0])
        keys["all candidates (ceiling)"][0] += min(len(truth & set(names)), 100)
        keys["all candidates (ceiling)"][1] += min(len(truth), 100)
    print(json.dumps({"candidates": args.candidates, "queries": len(queries),
                      "recall_at_100": {k: round(v[0] / v[1], 4) for k, v in keys.items()}}, indent=1))


if __name__ == "__main__":
    main()
