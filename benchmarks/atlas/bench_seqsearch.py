"""Sequence search: foldatlas (pyhmmer, prefiltered and exhaustive) against MMseqs2 easy-search, in one run.

Two benchmarks, each printing JSON:

``atlas``: queries drawn from an atlas (default 500, fixed seed) searched against the whole atlas by both tools
(MMseqs2 on the atlas' FASTA export, the same sequences). Homolog pairs at E <= 1e-3, self hits excluded; for each
tool the pairs it finds and the other misses; queries per second (MMseqs2 timed as a user runs it, ``easy-search``
from FASTA, and with the target database and index built beforehand).

    python benchmarks/atlas/bench_seqsearch.py atlas --atlas /work/data/atlas_sdb --queries 500

``scop``: the SCOPe40 sequences of ../shared/eval/search searched all against all (Foldseek's benchmark set).
Per query, hits ranked by E-value (up to E 10): the fraction of its superfamily found before the first hit of
another fold (Foldseek's "sensitivity up to the first false positive"), averaged over queries; and the counts of
true (same superfamily) and false (other fold) pairs at E <= 1e-3.

    python benchmarks/atlas/bench_seqsearch.py scop --scop ../shared/eval/search [--queries N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _mmseqs(queries: Path, targets: Path, work: Path, evalue: float, max_seqs: int, threads: int,
            prebuilt: bool, sensitivity: float | None = None) -> tuple[list[tuple[str, str, float]], float]:
    """MMseqs2 hits (query, target, evalue) and the wall time of the search as a user runs it."""
    work.mkdir(parents=True, exist_ok=True)
    out = work / "mm.m8"
    tmp = work / "mmtmp"
    common = ["-e", str(evalue), "--max-seqs", str(max_seqs), "--threads", str(threads), "-v", "1"]
    if sensitivity is not None:
        common += ["-s", str(sensitivity)]
    if prebuilt:
        db, qdb, res = work / "tdb", work / "qdb", work / "res"
        subprocess.run(["mmseqs", "createdb", str(targets), str(db), "-v", "1"], check=True)
        subprocess.run(["mmseqs", "createindex", str(db), str(tmp), "--threads", str(threads), "-v", "1",
                        *(["-s", str(sensitivity)] if sensitivity is not None else [])], check=True)
        start = time.perf_counter()
        subprocess.run(["mmseqs", "createdb", str(queries), str(qdb), "-v", "1"], check=True)
        subprocess.run(["mmseqs", "search", str(qdb), str(db), str(res), str(tmp), *common], check=True)
        subprocess.run(["mmseqs", "convertalis", str(qdb), str(db), str(res), str(out), "-v", "1"], check=True)
    else:
        start = time.perf_counter()
        subprocess.run(["mmseqs", "easy-search", str(queries), str(targets), str(out), str(tmp), *common], check=True)
    seconds = time.perf_counter() - start
    hits = []
    for line in out.read_text().splitlines():
        f = line.split("\t")
        hits.append((f[0], f[1], float(f[10])))
    return hits, seconds


def _ours(searcher_cls, shards, names: list[str], queries, options) -> tuple[list[tuple[str, str, float]], float]:
    from concurrent.futures import ThreadPoolExecutor

    start = time.perf_counter()
    searcher = searcher_cls(shards, options)
    with ThreadPoolExecutor(options.threads) as pool:
        raw = list(pool.map(searcher.search, queries))
    seconds = time.perf_counter() - start
    hits = []
    for q, rows in zip(queries, raw):
        for s, t, hit in rows:
            hits.append((q.name, names[int(shards[s].target_row[t])], float(hit.evalue)))
    return hits, seconds


def _pairs(hits, evalue: float = 1e-3) -> set[tuple[str, str]]:
    return {(q, t) for q, t, e in hits if e <= evalue and q != t}


def _write_fasta(path: Path, items) -> None:
    path.write_text("".join(f">{n}\n{s}\n" for n, s in items))


def bench_atlas(args) -> dict:
    from foldatlas.atlas import SearchOptions, open_atlas
    from foldatlas.atlas.export import export_fasta
    from foldatlas.atlas.seqindex import load_shards, update_sequence_index
    from foldatlas.atlas.seqsearch import SequenceSearcher
    from foldatlas.seq import make_record

    work = Path(tempfile.mkdtemp(prefix="bench_seqsearch_"))
    with open_atlas(args.atlas) as atlas:
        update_sequence_index(atlas)
        meta = list(atlas.iter_metadata(("rowid", "id", "sequence")))
        export_fasta(atlas, work / "db.fasta")
    names = {m["rowid"]: m["id"] for m in meta}
    rng = np.random.default_rng(args.seed)
    picked = [meta[i] for i in sorted(rng.choice(len(meta), args.queries, replace=False))]
    queries = [make_record(m["id"], m["sequence"].split(":")[0]) for m in picked]
    _write_fasta(work / "queries.fasta", [(q.name, q.sequence) for q in queries])
    shards = load_shards(args.atlas)
    names_by_row = [""] * (max(names) + 1)
    for r, n in names.items():
        names_by_row[r] = n
    results = {}
    for label, options in (("foldatlas_prefilter", SearchOptions(threads=args.threads, max_hits=1000,
                                                                 exhaustive=False)),
                           ("foldatlas_exhaustive", SearchOptions(threads=args.threads, max_hits=1000,
                                                                  exhaustive=True))):
        hits, seconds = _ours(SequenceSearcher, shards, names_by_row, queries, options)
        results[label] = (_pairs(hits), seconds)
        print(f"{label}: {seconds:.1f} s", file=sys.stderr, flush=True)
    for label, prebuilt in (("mmseqs2_easy_search", False), ("mmseqs2_prebuilt_index", True)):
        hits, seconds = _mmseqs(work / "queries.fasta", work / "db.fasta", work / label, 1e-3, 300, args.threads,
                                prebuilt)
        results[label] = (_pairs(hits), seconds)
    # foldatlas with its MMseqs2 engine, as a service or repeated CLI calls run it: the atlas' database and
    # index built beforehand (timed apart), queries searched through search_sequences
    from foldatlas.atlas import search_sequences
    from foldatlas.atlas.mmseqs import ensure_database

    with open_atlas(args.atlas) as atlas:
        start = time.perf_counter()
        ensure_database(atlas, args.threads)
        database_seconds = time.perf_counter() - start
        for sensitivity in (5.7, 7.5):
            start = time.perf_counter()
            found = search_sequences(atlas, queries, SearchOptions(threads=args.threads, max_hits=1000,
                                                                   engine="mmseqs", sensitivity=sensitivity))
            seconds = time.perf_counter() - start
            results[f"foldatlas_mmseqs_engine_s{sensitivity}"] = (
                _pairs([(h.query, h.target, h.evalue) for hits in found for h in hits]), seconds)
    shutil.rmtree(work, ignore_errors=True)
    mm, mm_s = results["mmseqs2_easy_search"]
    out = {"benchmark": "atlas sequence search", "atlas": str(args.atlas), "entries": len(meta),
           "queries": len(queries), "threads": args.threads, "evalue": 1e-3, "tools": {},
           "mmseqs_engine_database_seconds": round(database_seconds, 1)}
    for label, (pairs, seconds) in results.items():
        out["tools"][label] = {
            "seconds": round(seconds, 2), "queries_per_second": round(len(queries) / seconds, 1),
            "homolog_pairs": len(pairs), "pairs_vs_mmseqs2": round(len(pairs) / max(len(mm), 1), 3),
            "found_here_missed_by_mmseqs2": len(pairs - mm), "found_by_mmseqs2_missed_here": len(mm - pairs),
            "speed_vs_mmseqs2_easy_search": round(mm_s / seconds, 2)}
    return out


def _first_fp_sensitivity(hits, labels: dict[str, tuple[str, str]], sf_size: dict[str, int]) -> dict:
    by_query: dict[str, list[tuple[float, str]]] = {}
    for q, t, e in hits:
        if q != t:
            by_query.setdefault(q, []).append((e, t))
    sens, tp_pairs, fp_pairs = [], 0, 0
    for q, (fold, sf) in labels.items():
        possible = sf_size[sf] - 1
        if possible <= 0:
            continue
        found = 0
        for e, t in sorted(by_query.get(q, [])):
            tfold, tsf = labels.get(t, (None, None))
            if tsf == sf:
                found += 1
                tp_pairs += e <= 1e-3
            elif tfold != fold:
                fp_pairs += e <= 1e-3
                break
        sens.append(found / possible)
    return {"queries_scored": len(sens), "mean_sensitivity_to_first_fp": round(float(np.mean(sens)), 4),
            "true_pairs_at_1e-3": tp_pairs}


def _false_pairs(hits, labels, evalue=1e-3) -> int:
    return sum(1 for q, t, e in hits if e <= evalue and q != t and labels[q][0] != labels[t][0])


def bench_scop(args) -> dict:
    from foldatlas.atlas import SearchOptions
    from foldatlas.atlas.seqindex import SequenceShard, encode_digital
    from foldatlas.atlas.seqsearch import SequenceSearcher
    from foldatlas.seq.fasta import read_fasta

    folder = Path(args.scop)
    labels = {}
    for line in (folder / "labels.tsv").read_text().splitlines()[1:]:
        f = line.split("\t")
        labels[f[0]] = (f[3], f[4])
    records = [r for r in read_fasta(folder / "scop40.fa") if r.name in labels]
    sf_size: dict[str, int] = {}
    for r in records:
        sf_size[labels[r.name][1]] = sf_size.get(labels[r.name][1], 0) + 1
    rng = np.random.default_rng(args.seed)
    queries = records if args.queries <= 0 or args.queries >= len(records) else \
        [records[i] for i in sorted(rng.choice(len(records), args.queries, replace=False))]
    qlabels = {q.name: labels[q.name] for q in queries}
    shard = SequenceShard.build(np.arange(len(records)), np.zeros(len(records)),
                                [encode_digital(r.sequence) for r in records], 0, len(records) - 1)
    names = [r.name for r in records]
    work = Path(tempfile.mkdtemp(prefix="bench_scop_"))
    _write_fasta(work / "db.fasta", [(r.name, r.sequence) for r in records])
    _write_fasta(work / "q.fasta", [(q.name, q.sequence) for q in queries])
    out = {"benchmark": "SCOPe40 all-against-all sequence search", "database": len(records), "queries": len(queries),
           "threads": args.threads, "max_evalue": 10, "tools": {}}
    runs = {
        "foldatlas_prefilter": lambda: _ours(SequenceSearcher, [shard], names, queries,
                                             SearchOptions(evalue=10, max_hits=1000, threads=args.threads,
                                                           exhaustive=False)),
        "foldatlas_exhaustive": lambda: _ours(SequenceSearcher, [shard], names, queries,
                                              SearchOptions(evalue=10, max_hits=1000, threads=args.threads,
                                                            exhaustive=True)),
        "mmseqs2_easy_search": lambda: _mmseqs(work / "q.fasta", work / "db.fasta", work / "mm", 10, 1000,
                                               args.threads, False),
        # what foldatlas' MMseqs2 engine runs (sensitivity 7.5 on a prebuilt database and index), run directly
        "foldatlas_mmseqs_engine_settings": lambda: _mmseqs(work / "q.fasta", work / "db.fasta", work / "fe", 10,
                                                            1000, args.threads, True, 7.5),
    }
    for label, run in runs.items():
        if args.skip_phmmer and label.startswith("foldatlas_") and "mmseqs" not in label:
            continue
        hits, seconds = run()
        row = _first_fp_sensitivity(hits, qlabels, sf_size)
        row.update({"false_pairs_at_1e-3": _false_pairs(hits, labels), "seconds": round(seconds, 2),
                    "queries_per_second": round(len(queries) / seconds, 1)})
        out["tools"][label] = row
    shutil.rmtree(work, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=("atlas", "scop"))
    parser.add_argument("--atlas", type=Path)
    parser.add_argument("--scop", type=Path, default=Path(__file__).resolve().parents[3] / "shared/eval/search")
    parser.add_argument("--queries", type=int, default=500, help="Queries (scop: 0 = all).")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-phmmer", action="store_true", help="scop: only the MMseqs2 rows")
    args = parser.parse_args(argv)
    if shutil.which("mmseqs") is None:
        raise SystemExit("mmseqs (Debian package mmseqs2) is needed as the baseline")
    version = subprocess.run(["mmseqs", "version"], capture_output=True, text=True).stdout.strip()
    result = bench_atlas(args) if args.which == "atlas" else bench_scop(args)
    result.update({"mmseqs2_version": version, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                   "date": time.strftime("%Y-%m-%d")})
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
