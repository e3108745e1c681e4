"""Refined TM-scores as the ranking of the structure prefilter's candidates: recall at 100 of TM-align's partners,
the ceiling, the kernel's seconds, and how close the refined scores are to TM-align's, for settings of
:mod:`foldatlas.structure.tmrefine` (its module constants, ``--set NAME=VALUE``).

On the structure-search benchmark (``bench_structsearch.py`` must have built ``WORK/db2000`` first): for each of the 50
queries, the 3Di prefilter's best ``--candidates`` chains (the query itself left out), their local and global 3Di
alignments as seeds, and the candidates ranked by the refined TM-score (by the query's length); recall at 100 over
the partners that fit in 100, pooled, for each candidate count (the first N of the largest).

    python benchmarks/atlas/rank_refined.py --work /work/data/bench_struct --candidates 300 400 500 \\
        --set LOW=0.2 --set BEHIND=0.9
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np

from bench_structsearch import DATA, _truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--pdb", type=Path, default=Path("/work/data/structuredb_pdb"))
    parser.add_argument("--candidates", type=int, nargs="+", default=[500])
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="NAME=VALUE of a tmrefine module constant "
                        "(LOW=2 leaves out the gapless seed)")
    parser.add_argument("--seeds", choices=("local", "both"), default="both",
                        help="3Di alignments given as seeds: the local one, or local and global")
    args = parser.parse_args()

    from foldatlas.atlas import open_atlas
    from foldatlas.atlas.structindex import load_structure_shards
    from foldatlas.atlas.structsearch import StructureSearcher, StructureSearchOptions, _path, query_chains
    from foldatlas.structure import tmrefine

    for item in args.set:
        name, value = item.split("=")
        setattr(tmrefine, name, type(getattr(tmrefine, name))(float(value)))
    _, partners = _truth(DATA)
    tm = {}
    for line in gzip.decompress((DATA / "ground_truth.tsv.gz").read_bytes()).decode().splitlines():
        q, t, tm_q, _ = line.split("\t")
        tm[q, t] = float(tm_q)
    queries = [q for q in partners if partners[q]][:args.queries]
    atlas = open_atlas(args.work / "db2000", readonly=True)
    shards = load_structure_shards(atlas.folder)
    opts = StructureSearchOptions(candidates=max(args.candidates), threads=args.threads)
    searcher = StructureSearcher(shards, opts)
    names_of = atlas.ids_of(sorted(int(r) for s in shards for r in s.target_row))
    codes = lambda seq: np.frombuffer(seq.encode(), np.uint8)
    first = query_chains(args.pdb / f"{queries[0]}.pdb.gz")[0].trace
    tmrefine.refine_tm_scores(first.ca, codes(first.sequence), [first.ca], [codes(first.sequence)],
                              [[(np.arange(3), np.arange(3))]])  # compile or load the kernels before timing
    found = {n: [0, 0, 0] for n in args.candidates}  # partners in the first 100, that fit in 100, among candidates
    seconds, pairs = 0.0, []
    for q in queries:
        query = query_chains(args.pdb / f"{q}.pdb.gz")[0]
        states = searcher._query_string(query)
        cands = [(k, t) for k, t, _ in searcher._prefilter(states, opts)]
        names = [names_of[int(shards[k].target_row[t])] for k, t in cands]
        keep = [i for i, n in enumerate(names) if n != q]
        cands, names = [cands[i] for i in keep], [names[i] for i in keep]
        items = [t for _, t in cands]  # one shard: the benchmark atlas is small
        db = searcher.databases[0].extract(items)
        local = searcher._align(states, 0, items, "full", db=db)
        whole = searcher._align(states, 0, items, "full", "nw", db=db)
        seeds = [[_path(a.alignment, a.query_start, a.target_start)] + (
            [_path(b.alignment, b.query_start, b.target_start)] if args.seeds == "both" else [])
            for a, b in zip(local, whole)]
        start = time.perf_counter()
        refined = tmrefine.refine_tm_scores(query.trace.ca, codes(query.trace.sequence),
                                            [shards[k].target_ca(t) for k, t in cands],
                                            [codes(shards[k].target_sequence(t)) for k, t in cands], seeds,
                                            threads=args.threads)[:, 0]
        seconds += time.perf_counter() - start
        pairs += [(tm[q, n], refined[i]) for i, n in enumerate(names) if (q, n) in tm]
        for n in args.candidates:
            top = {names[i] for i in np.argsort(-refined[:n], kind="stable")[:100]}
            found[n][0] += len(partners[q] & top)
            found[n][1] += min(len(partners[q]), 100)
            found[n][2] += min(len(partners[q] & set(names[:n])), 100)
    pairs = np.array(pairs)
    partner = pairs[:, 0] >= 0.5
    print(json.dumps({
        "settings": {k: getattr(tmrefine, k) for k in ("ITERATIONS", "DEEP", "BEHIND", "LOW", "GAPLESS_KEEP",
                                                       "GAPLESS_STRIDE", "STEP")},
        "seeds": args.seeds, "queries": len(queries), "threads": args.threads,
        "recall_at_100": {n: round(a / b, 4) for n, (a, _, _) in found.items() for b in [found[n][1]]},
        "ceiling_at_100": {n: round(c / b, 4) for n, (_, b, c) in found.items()},
        "refine_seconds_per_query": round(seconds / len(queries), 3),
        "pearson_r_with_tmalign": round(float(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1]), 4),
        "partners_mean_difference": round(float((pairs[partner, 1] - pairs[partner, 0]).mean()), 4),
        "partners_refined_at_least_0.5": round(float((pairs[partner, 1] >= 0.5).mean()), 4)}, indent=1))


if __name__ == "__main__":
    main()
