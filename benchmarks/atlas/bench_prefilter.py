"""Structure-search prefilters compared: the atlas' full Smith-Waterman scan of every chain's 3Di string (pyopal),
the atlas' own 3Di k-mer stage in front of that scan (``--kmer`` shortlist fractions; :mod:`foldatlas.atlas.kmerindex`)
and MMseqs2's k-mer prefilter run on the same 3Di strings with the 3Di substitution matrix (a Foldseek-like
prefilter from a program the atlas already uses for sequences).

For the 50 benchmark queries (``benchmarks/atlas/data``: their partners are the chains of the 2,000-chain database
with TM-score >= 0.5), every chain of an atlas' structure index is a target; reports, per prefilter, the seconds per
query and the fraction of the partners among its first 100 / 300 / 1,000 / 3,000 candidates. The atlas should hold
the 2,000 database chains (e.g. all 21,119 StructureDB chains, ``bench_import.py``). The MMseqs2 rows need
``mmseqs`` (``--mmseqs`` with no strings skips them). Prints JSON lines.

    python benchmarks/atlas/bench_prefilter.py /work/data/atlas_sdb --work /tmp/prefilter \\
        --mmseqs "-s 7.5 --max-seqs 3000 --comp-bias-corr 0" "-s 9.5 --max-seqs 3000 --comp-bias-corr 0"
    python benchmarks/atlas/bench_prefilter.py /work/data/atlas_sdb --work /tmp/prefilter --mmseqs --kmer 0.05 0.1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

LETTERS = "ACDEFGHIKLMNPQRSTVWYX"
DEPTHS = (100, 300, 1000, 3000)


def _recall(truth: dict[str, set[str]], ranked: dict[str, list[str]]) -> dict:
    total = sum(len(p) for p in truth.values())
    return {f"partners_in_{d}": round(sum(len(truth[q] & set(ranked.get(q, [])[:d])) for q in truth) / total, 3)
            for d in DEPTHS}


def _matrix(path: Path) -> None:
    """The 3Di matrix in the BLAST layout MMseqs2 reads (X scores -1)."""
    from foldatlas.structure.threedi import matrix_3di

    m = matrix_3di()
    lines = ["# Foldseek's 3Di substitution matrix (biotite), half bits", "   " + "  ".join(LETTERS)]
    for i, a in enumerate(LETTERS):
        lines.append(a + " " + " ".join(f"{int(m[i, j]) if i < 20 and j < 20 else -1:3d}" for j in range(21)))
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    from foldatlas.atlas import kmerindex, open_atlas
    from foldatlas.atlas.structindex import load_structure_shards
    from foldatlas.atlas.structsearch import StructureSearcher, StructureSearchOptions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("atlas", type=Path)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--mmseqs", nargs="*", default=["-s 7.5 --max-seqs 3000 --comp-bias-corr 0"],
                        help="MMseqs2 prefilter options to compare (one string each)")
    parser.add_argument("--kmer", nargs="*", type=float, default=[0.05, 0.1, 0.2],
                        help="fractions of the atlas the k-mer stage passes to the scan, one row each")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    threads = len(os.sched_getaffinity(0))
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs"

    shards = load_structure_shards(args.atlas)
    with open_atlas(args.atlas, readonly=True) as atlas:
        ids = atlas.ids_of(sorted({int(r) for s in shards for r in s.target_row}))
    table = np.frombuffer(LETTERS.encode(), np.uint8)
    strings: dict[str, str] = {}
    with open(args.work / "targets.fa", "w") as f:
        for s in shards:
            for t in range(s.size):
                name = ids[int(s.target_row[t])]
                strings[name] = table[s.target_states3di(t)].tobytes().decode()
                f.write(f">{name}\n{strings[name]}\n")
    from bench_scale import _truth  # the benchmark's partners (TM >= 0.5), read as the scale benchmark reads them

    truth = {q: p for q, p in _truth().items() if q in strings}
    queries = sorted(truth)
    common = {"chains": len(strings), "queries": len(queries), "machine": machine, "date": time.strftime("%Y-%m-%d")}

    searcher = StructureSearcher(shards, StructureSearchOptions(candidates=max(DEPTHS), threads=threads))
    ranked, start = {}, time.perf_counter()
    for q in queries:
        ranked[q] = [ids[int(shards[k].target_row[t])] for k, t, _ in searcher._prefilter(strings[q], searcher.options)]
    seconds = time.perf_counter() - start
    print(json.dumps({"prefilter": "pyopal Smith-Waterman, every chain", "seconds_per_query":
                      round(seconds / len(queries), 3), **_recall(truth, ranked), **common}), flush=True)

    from foldatlas.atlas import structsearch

    kmer_searcher = StructureSearcher(shards, StructureSearchOptions(candidates=max(DEPTHS), threads=threads,
                                                                     prefilter="kmer"))
    start = time.perf_counter()
    kmer_searcher._shortlist(strings[queries[0]])  # builds (or loads) each shard's k-mer index
    build_seconds = time.perf_counter() - start
    for fraction in args.kmer:
        structsearch.SHORTLIST_MIN, structsearch.SHORTLIST_FRACTION = 0, fraction
        ranked, stage = {}, 0.0
        start = time.perf_counter()
        for q in queries:
            t0 = time.perf_counter()
            kmer_searcher._shortlist(strings[q])
            stage += time.perf_counter() - t0
            ranked[q] = [ids[int(shards[k].target_row[t])]
                         for k, t, _ in kmer_searcher._prefilter(strings[q], kmer_searcher.options)]
        seconds = time.perf_counter() - start - stage  # the shortlist was computed twice per query
        print(json.dumps({"prefilter": f"k-mer stage (k {kmerindex.K}, threshold {kmerindex.THRESHOLD}), "
                          f"{fraction:.0%} of the chains to the scan", "index_seconds": round(build_seconds, 1),
                          "kmer_seconds_per_query": round(stage / len(queries), 3),
                          "seconds_per_query": round(seconds / len(queries), 3), **_recall(truth, ranked), **common}),
              flush=True)
    kmer_searcher.close()
    if not args.mmseqs:
        return

    _matrix(args.work / "mat3di.out")
    common_args = ["--seed-sub-mat", str(args.work / "mat3di.out"), "--mask", "0", "-k", "6",
                   "--threads", str(threads), "-v", "1"]

    def mmseqs(*a: str) -> None:
        subprocess.run(["mmseqs", *a], check=True)

    for name in ("t", "q", "pre", "tmp"):
        subprocess.run(f"rm -rf '{args.work}/{name}' '{args.work}/{name}'.* '{args.work}/{name}'_*", shell=True)
    (args.work / "queries.fa").write_text("".join(f">{q}\n{strings[q]}\n" for q in queries))
    mmseqs("createdb", str(args.work / "targets.fa"), str(args.work / "t"), "-v", "1")
    mmseqs("createdb", str(args.work / "queries.fa"), str(args.work / "q"), "-v", "1")
    start = time.perf_counter()
    mmseqs("createindex", str(args.work / "t"), str(args.work / "tmp"), *common_args)
    index_seconds = time.perf_counter() - start
    for options in args.mmseqs:
        subprocess.run(f"rm -rf '{args.work}/pre' '{args.work}/pre'.* '{args.work}/tmp'", shell=True)
        start = time.perf_counter()
        mmseqs("prefilter", str(args.work / "q"), str(args.work / "t"), str(args.work / "pre"), *common_args,
               *options.split())
        seconds = time.perf_counter() - start
        mmseqs("createtsv", str(args.work / "q"), str(args.work / "t"), str(args.work / "pre"),
               str(args.work / "pre.tsv"), "-v", "1")
        hits: dict[str, list[tuple[float, str]]] = {}
        for line in (args.work / "pre.tsv").read_text().splitlines():
            f = line.split("\t")
            hits.setdefault(f[0], []).append((float(f[2]), f[1]))
        ranked = {q: [t for _, t in sorted(h, key=lambda x: -x[0])] for q, h in hits.items()}
        print(json.dumps({"prefilter": f"mmseqs prefilter -k 6 --mask 0 {options}", "index_seconds":
                          round(index_seconds, 1), "seconds_per_query": round(seconds / len(queries), 3),
                          "mean_candidates": round(sum(len(h) for h in hits.values()) / len(queries), 1),
                          **_recall(truth, ranked), **common}), flush=True)


if __name__ == "__main__":
    main()
