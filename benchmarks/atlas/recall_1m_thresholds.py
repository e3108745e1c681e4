"""Structure search settings on a ``bench_scale.py`` atlas (1M entries): the query's copies with TM-score >= 0.5 among
its first 100 hits, and seconds per query, for several settings in one run (interleaved per query, one kept
searcher). Prints a JSON line per setting, then a summary.

    python benchmarks/atlas/recall_1m_thresholds.py --atlas /work/data/scale/atlas --queries 50 \\
        --settings '{"k-mer 30, 3Di+AA ranking, TM-align 20 (before)": {"kmer_threshold": 30, "refine": false,
                     "candidates": 300}, "k-mer 26, refined": {"kmer_threshold": 26}}'

Each setting is a dict of ``StructureSearchOptions`` fields over ``max_hits=100``, ``workers=2``,
``prefilter="kmer"``. The first query is searched once before timing (it builds the kept searcher and, the first
time, the k-mer index).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scale import _copy_tm, _load, _truth, atom_array, perturbed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atlas", type=Path, required=True)
    parser.add_argument("--npz", default="/work/data/structuredb.npz")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--settings", required=True, help="JSON: name -> StructureSearchOptions fields")
    args = parser.parse_args()

    from foldatlas.atlas import open_atlas
    from foldatlas.atlas.structsearch import StructureSearchOptions, chains_of, search_structures

    settings = json.loads(args.settings)
    db = _load(args.npz)
    index = {n: k for k, n in enumerate(db["ids"])}
    queries = sorted(_truth())[:args.queries]
    workers = len(os.sched_getaffinity(0))
    with open_atlas(args.atlas, readonly=True) as atlas:
        entries = len(atlas)
        copies = entries // len(db["ids"]) + 1
        tms = {q: {n: tm for n, tm in _copy_tm(args.npz, index[q], copies).items()
                   if tm >= 0.5 and atlas.known_ids([n])} for q in queries}
        chains = {q: chains_of(atom_array(*perturbed(args.npz, index[q], 0)), q)[0] for q in queries}
        options = {name: StructureSearchOptions(**{"max_hits": 100, "workers": workers, "prefilter": "kmer", **kw})
                   for name, kw in settings.items()}
        start = time.perf_counter()
        search_structures(atlas, [chains[queries[0]]], next(iter(options.values())), keep=True)
        first = time.perf_counter() - start
        found = {name: [0, 0] for name in options}
        seconds = {name: [] for name in options}
        for q in queries:
            for name, opts in options.items():
                start = time.perf_counter()
                hits = search_structures(atlas, [chains[q]], opts, keep=True)[0]
                seconds[name].append(time.perf_counter() - start)
                got = {h.target for h in hits[:100]}
                found[name][0] += len(set(tms[q]) & got)
                found[name][1] += len(tms[q])
        rows = []
        for name in options:
            rows.append({"setting": name, "options": settings[name], "queries": len(queries),
                         "copies_recall_at_100": round(found[name][0] / found[name][1], 4),
                         "copies": found[name][1],
                         "seconds_per_query": round(float(np.mean(seconds[name])), 3),
                         "p90_seconds": round(float(np.percentile(seconds[name], 90)), 3)})
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"atlas_entries": entries, "first_query_seconds": round(first, 1),
                      "peak_memory_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                      "date": time.strftime("%Y-%m-%d"), "results": rows}, indent=1))


if __name__ == "__main__":
    main()
