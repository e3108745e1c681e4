"""Sequence search at a million chains: the MMseqs2 engine's per-query time and recall, by its settings.

    python benchmarks/atlas/bench_seqscale.py /work/data/structuredb.npz --work /work/data/seqscale --size 1000000

The sequences are those of ``bench_scale.py``'s atlas of the same size (every StructureDB chain, then perturbed
copies mutated to 90, 70, 50, 40 or 30% identity), without the structures, so the sequence engine can be measured
at a million chains without building that atlas. The MMseqs2 database and index are built by the atlas' own
``foldatlas.atlas.mmseqs.create_database`` (``createdb`` + ``createindex``; kept in ``--work``), and each
query is one call of ``foldatlas.atlas.mmseqs.search_database`` (one query per call, as a user or the service
searches), the 50 benchmark queries in turn, the settings interleaved per query so that they share the machine's
state; the setting ``previous`` runs the engine's calls before this benchmark (MMseqs2's default load mode and
``convertalis``) as the baseline. Per setting: seconds per query (mean, p50, p90) and the query's copies found at
E <= 1e-3 by identity tier.
Prints JSON (``--out`` writes it too).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import bench_scale as bs  # noqa: E402


def write_fasta(npz: str, size: int, path: Path) -> None:
    """The sequences of the benchmark atlas of ``size`` entries, named ``row:0`` as the atlas' database names them."""
    if path.exists():
        return
    n = len(bs._load(npz)["ids"])
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        for row, (chain, copy) in enumerate(bs._plan(n, 0, size), start=1):
            f.write(f">{row}:0\n{bs.perturbed(npz, chain, copy)[0]}\n")
    tmp.rename(path)


def build_database(fasta: Path, folder: Path, threads: int) -> tuple[Path, float]:
    """The database as the atlas builds it (``foldatlas.atlas.mmseqs.create_database``), and the seconds it took
    (recorded when built)."""
    from foldatlas.atlas.mmseqs import create_database

    targets = folder / "targets"
    if (folder / "done").exists():
        return targets, float((folder / "done").read_text().split()[0])
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    create_database(fasta, targets, threads)
    seconds = time.perf_counter() - t
    (folder / "done").write_text(f"{seconds:.1f}\n")
    return targets, seconds


def previous_search(targets: Path, sequence: str, sensitivity: float, threads: int) -> list[list[str]]:
    """The engine's calls before this benchmark (MMseqs2's default load mode, ``convertalis`` for the fields)."""
    import tempfile

    from foldatlas.atlas.mmseqs import _COLUMNS

    with tempfile.TemporaryDirectory() as tmp:
        w = Path(tmp)
        (w / "q.fasta").write_text(f">0\n{sequence}\n")
        subprocess.run(["mmseqs", "createdb", str(w / "q.fasta"), str(w / "q"), "-v", "1"], check=True)
        subprocess.run(["mmseqs", "search", str(w / "q"), str(targets), str(w / "res"), str(w / "tmp"), "-s",
                        str(sensitivity), "-e", "0.001", "--max-seqs", "1000", "--threads", str(threads), "-a",
                        "-v", "1"], check=True)
        subprocess.run(["mmseqs", "convertalis", str(w / "q"), str(targets), str(w / "res"), str(w / "out.tsv"),
                        "--format-output", _COLUMNS, "--threads", str(threads), "-v", "1"], check=True)
        return [line.split("\t") for line in (w / "out.tsv").read_text().splitlines()]


def main(argv: list[str] | None = None) -> None:
    from foldatlas.atlas import mmseqs
    from foldatlas.atlas.seqsearch import SearchOptions

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("npz", help="StructureDB NPZ (src/foldatlas/train/promod3_dump.py).")
    ap.add_argument("--work", required=True)
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--settings", default='{"previous (convertalis), s 5.7": ["previous", 5.7], '
                                          '"load 2, s 5.7": ["2", 5.7]}',
                    help="JSON: name -> [--db-load-mode or 'previous' (the calls before), -s].")
    ap.add_argument("--out")
    args = ap.parse_args(argv)

    threads = len(os.sched_getaffinity(0))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    fasta = work / f"seqs{args.size}.fasta"
    t = time.perf_counter()
    write_fasta(args.npz, args.size, fasta)
    targets, build_s = build_database(fasta, work / f"mmseqs{args.size}", threads)
    db = bs._load(args.npz)
    n = len(db["ids"])
    index = {name: k for k, name in enumerate(db["ids"])}
    queries = sorted(bs._truth())[:args.queries]
    settings = {k: (str(v[0]), float(v[1])) for k, v in json.loads(args.settings).items()}
    result = {"size": args.size, "threads": threads, "queries": len(queries), "mmseqs_index_build_s":
              round(build_s, 1), "prepare_s": round(time.perf_counter() - t, 1), "settings": {}}
    times: dict[str, list[float]] = {k: [] for k in settings}
    found = {k: np.zeros(5, int) for k in settings}
    total = np.zeros(5, int)
    mmseqs.search_database(targets, [bs.perturbed(args.npz, index[queries[0]], 0)[0]], SearchOptions(),
                           threads)  # warm: the page cache, the key table
    for q in queries:
        chain = index[q]
        seq = bs.perturbed(args.npz, chain, 0)[0]
        copies = {(k * n + chain + 1): k for k in range(1, args.size // n + 1) if k * n + chain < args.size}
        for c in copies.values():
            total[c % 5] += 1
        for name, (mode, sensitivity) in settings.items():
            t = time.perf_counter()
            if mode == "previous":
                rows = previous_search(targets, seq, sensitivity, threads)
            else:
                mmseqs.LOAD_MODE = mode
                rows = mmseqs.search_database(targets, [seq], SearchOptions(sensitivity=sensitivity), threads)[0]
            times[name].append(time.perf_counter() - t)
            for f in rows:
                row = int(f[1].split(":")[0])
                if row in copies and float(f[8]) <= 1e-3:
                    found[name][copies[row] % 5] += 1
    tiers = [f"{int(100 * bs.IDENTITY[k])}%" for k in range(5)]
    for name in settings:
        s = np.array(times[name])
        result["settings"][name] = {
            "mean_s": round(float(s.mean()), 4), "p50_s": round(float(np.percentile(s, 50)), 4),
            "p90_s": round(float(np.percentile(s, 90)), 4),
            "copies_found": {tiers[k]: f"{int(found[name][k])}/{int(total[k])}" for k in range(5)},
            "recall": round(float(found[name].sum() / max(total.sum(), 1)), 4)}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
