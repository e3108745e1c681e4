"""Structure search: recall of TM-align's partners and speed against exhaustive TM-align, in one run.

Ground truth (``benchmarks/atlas/data/``, made once by ``structure_ground_truth.py``): 50 queries TM-aligned against
a database of 2,000 StructureDB chains; a query's partners are the other chains with TM-score >= 0.5 normalised by
the query. This script imports the 2,000 chains (gzipped PDB files of ``structuredb_files.py``) into an atlas,
searches it with each query's file, and reports recall at 10 and at 100 (partners among the first 10 / 100 hits,
over all partners), the time per query, and the speed-up over exhaustive TM-align timed on the same machine in the
same run (TM-align of each query against a sample of the database, scaled to the database). Then the query time
against atlases of 1,000, 5,000 and all StructureDB chains (``--full-atlas``), with index disk and process memory.

    python benchmarks/atlas/bench_structsearch.py --pdb /work/data/structuredb_pdb --work /work/data/bench_struct \\
        --full-atlas /work/data/atlas_sdb
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"


def _truth(folder: Path) -> tuple[list[str], dict[str, set[str]]]:
    database = (folder / "database.txt").read_text().split()
    path = folder / "ground_truth.tsv.gz"
    text = gzip.decompress(path.read_bytes()).decode() if path.is_file() else (folder / "ground_truth.tsv").read_text()
    partners: dict[str, set[str]] = {}
    for line in text.splitlines():
        q, t, tm_q, _ = line.split("\t")
        partners.setdefault(q, set())
        if t != q and float(tm_q) >= 0.5:
            partners[q].add(t)
    return database, partners


def _atlas(folder: Path, pdb: Path, ids: list[str]):
    from foldatlas.atlas import ImportOptions, import_structures, open_atlas
    from foldatlas.atlas.structindex import update_structure_index

    atlas = open_atlas(folder, create=True)
    if len(atlas) < len(ids):
        import_structures(atlas, [pdb / f"{i}.pdb.gz" for i in ids], None, ImportOptions(workers=1), progress=False)
    start = time.perf_counter()
    update_structure_index(atlas)
    return atlas, time.perf_counter() - start


def _search(atlas, files: list[Path], options):
    from foldatlas.atlas.structindex import load_structure_shards
    from foldatlas.atlas.structsearch import StructureSearcher, query_chains

    start = time.perf_counter()
    searcher = StructureSearcher(load_structure_shards(atlas.folder), options)
    setup = time.perf_counter() - start
    if options.workers:
        searcher._tm_pool().submit(int).result()  # start the TM-align processes before timing queries
    results, times = [], []
    for f in files:
        q = query_chains(f)[0]
        t = time.perf_counter()
        hits = searcher.search(q)
        times.append(time.perf_counter() - t)
        rows = {int(searcher.shards[h["shard"]].target_row[h["target_index"]]) for h in hits}
        ids = atlas.ids_of(sorted(rows))
        results.append([ids[int(searcher.shards[h["shard"]].target_row[h["target_index"]])] for h in hits])
    searcher.close()
    return results, times, setup


def _index_bytes(atlas) -> int:
    from foldatlas.atlas.structindex import index_dir

    return sum(p.stat().st_size for p in index_dir(atlas.folder).rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdb", type=Path, required=True, help="Folder of structuredb_files.py")
    parser.add_argument("--work", type=Path, required=True, help="Folder for the benchmark atlases")
    parser.add_argument("--truth", type=Path, default=DATA)
    parser.add_argument("--full-atlas", type=Path, help="An atlas of all StructureDB chains (bench_import.py)")
    parser.add_argument("--candidates", type=int, default=None)
    parser.add_argument("--tmalign", type=int, default=None)
    parser.add_argument("--tmalign-sample", type=int, default=100, help="Pairs per query timed for the baseline")
    parser.add_argument("--modes", nargs="+", default=["3diaa"], help="Search modes compared (the first is timed "
                        "against TM-align and at other sizes); MODE:unrefined ranks without refined TM-scores")
    parser.add_argument("--aa-weight", type=float, default=None)
    parser.add_argument("--scaling-queries", type=int, default=20, help="Queries timed at each other atlas size")
    parser.add_argument("--quick", action="store_true", help="Recall and query time only (no baseline, no scaling)")
    args = parser.parse_args(argv)

    import tmtools

    from foldatlas.atlas.structindex import chain_traces
    from foldatlas.atlas.structsearch import StructureSearchOptions
    from foldatlas.structure.io import read_structure

    database, partners = _truth(args.truth)
    queries = [q for q in partners if partners[q]]
    kw = {k: v for k, v in (("candidates", args.candidates), ("tmalign", args.tmalign),
                            ("aa_weight", args.aa_weight)) if v is not None}
    atlas, index_s = _atlas(args.work / "db2000", args.pdb, database)
    files = [args.pdb / f"{q}.pdb.gz" for q in queries]
    compared = []
    for mode in reversed(args.modes):  # the first mode last: its results and options are the ones reported
        options = StructureSearchOptions(max_hits=100, workers=len(os.sched_getaffinity(0)),
                                         mode=mode.split(":")[0], refine=not mode.endswith(":unrefined"),
                                         **kw)  # as the CLI
        results, times, setup = _search(atlas, files, options)
        # recall at k: partners among the first k hits over the partners that fit in k (a query with 200
        # partners can show at most 100 of them in 100 hits), pooled over the queries
        r10, r100, b10, b100, total = 0, 0, 0, 0, 0
        for q, ranked in zip(queries, results):
            ranked = [t for t in ranked if t != q]
            r10 += len(partners[q] & set(ranked[:10]))
            r100 += len(partners[q] & set(ranked[:100]))
            b10 += min(len(partners[q]), 10)
            b100 += min(len(partners[q]), 100)
            total += len(partners[q])
        compared.append({"mode": mode, "recall_at_10": round(r10 / b10, 4), "recall_at_100": round(r100 / b100, 4),
                         "recall_at_100_of_all_partners": round(r100 / total, 4),
                         "query_seconds_mean": round(float(np.mean(times)), 3)})
        print(json.dumps(compared[-1]), flush=True)
    if args.quick:
        print(json.dumps({"options": {k: getattr(options, k) for k in ("candidates", "tmalign", "aa_weight",
                                                                        "refine")},
                          "compared": compared[::-1]}, indent=1))
        return
    # exhaustive TM-align, timed here on a sample of pairs and scaled to the database
    rng = np.random.default_rng(0)
    traces = {i: chain_traces(read_structure(args.pdb / f"{i}.pdb.gz"), threedi=False)[0] for i in
              set(queries) | set(rng.choice(database, args.tmalign_sample, replace=False).tolist())}
    sample = [i for i in traces if i not in queries][:args.tmalign_sample]
    start = time.perf_counter()
    for q in queries:
        for t in sample:
            tmtools.tm_align(traces[q].ca, traces[t].ca, traces[q].sequence, traces[t].sequence)
    pair_s = (time.perf_counter() - start) / (len(queries) * len(sample))
    per_query = float(np.mean(times))
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "date": time.strftime("%Y-%m-%d"),
           "options": {"mode": options.mode, "refine": options.refine, "candidates": options.candidates,
                       "tmalign": options.tmalign,
                       "aa_weight": options.aa_weight, "max_hits": 100, "tmalign_processes": options.workers},
           "compared": compared[::-1],
           "database": len(database), "queries": len(queries), "partners": total,
           "recall_at_10": round(r10 / b10, 4), "recall_at_100": round(r100 / b100, 4),
           "recall_at_100_of_all_partners": round(r100 / total, 4),
           "query_seconds_mean": round(per_query, 3), "query_seconds_p90": round(float(np.percentile(times, 90)), 3),
           "tmalign_pair_ms": round(pair_s * 1e3, 2),
           "exhaustive_tmalign_seconds_per_query": round(pair_s * len(database), 1),
           "speedup_vs_exhaustive_tmalign": round(pair_s * len(database) / per_query, 1),
           "index_seconds": round(index_s, 1), "searcher_setup_seconds": round(setup, 2),
           "index_bytes_per_chain": round(_index_bytes(atlas) / len(database)), "scaling": [],
           "speedup_vs_exhaustive_tmalign_at_full_atlas": None}
    sizes = [(1000, args.work / "db1000", database[:1000])]
    if args.full_atlas:
        from foldatlas.atlas import open_atlas

        all_ids = [m["id"] for m in open_atlas(args.full_atlas, readonly=True).iter_metadata(("id",))]
        others = [i for i in all_ids if i not in set(database)]
        sizes.append((5000, args.work / "db5000", database + others[:3000]))
    for n, folder, ids in sizes:
        a, _ = _atlas(folder, args.pdb, ids)
        _, t, setup = _search(a, files[:args.scaling_queries], options)
        out["scaling"].append({"chains": n, "queries": len(t), "query_seconds_mean": round(float(np.mean(t)), 3),
                               "searcher_setup_seconds": round(setup, 2)})
    if args.full_atlas:
        from foldatlas.atlas import open_atlas

        a, _ = _atlas(args.full_atlas, args.pdb, [])
        _, t, setup = _search(a, files[:args.scaling_queries], options)
        out["scaling"].append({"chains": len(a), "queries": len(t), "query_seconds_mean": round(float(np.mean(t)), 3),
                               "query_seconds_p90": round(float(np.percentile(t, 90)), 3),
                               "searcher_setup_seconds": round(setup, 2),
                               "index_bytes_per_chain": round(_index_bytes(a) / len(a))})
    if args.full_atlas:
        last = out["scaling"][-1]
        out["speedup_vs_exhaustive_tmalign_at_full_atlas"] = round(pair_s * last["chains"] /
                                                                   last["query_seconds_mean"], 1)
    out["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
