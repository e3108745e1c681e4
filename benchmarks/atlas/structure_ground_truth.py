"""Ground truth for the structure-search benchmark: exhaustive TM-align of queries against a 2,000-chain database.

The database: 2,000 StructureDB chains of 40-400 residues drawn with a fixed seed. Queries: database chains taken
in a fixed random order, each TM-aligned (tmtools) against all 2,000; a query is kept when at least one other chain
reaches a TM-score of at least 0.5 normalised by the query, until 50 are kept. Every score of a kept query is
cached (TSV: query, target, TM-score by query, TM-score by target), so the benchmark never reruns this (about
40 ms a pair here). Resumable: rerun to go on; queries already done are read from the cache.

    python benchmarks/atlas/structure_ground_truth.py /work/data/structuredb.npz benchmarks/atlas/data/
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

DB_SIZE, QUERIES, MIN_LEN, MAX_LEN, PARTNER_TM, SEED = 2000, 50, 40, 400, 0.5, 0


def select_database(npz: str) -> tuple[list[str], list[str], list[np.ndarray]]:
    """IDs, sequences and C-alpha coordinates of the benchmark database (fixed seed)."""
    data = np.load(npz)
    ids, offsets, sequence, coords = data["ids"], data["offsets"], str(data["sequence"]), data["coords"]
    lengths = np.diff(offsets)
    eligible = np.flatnonzero((lengths >= MIN_LEN) & (lengths <= MAX_LEN))
    rng = np.random.default_rng(SEED)
    pick = np.sort(rng.choice(eligible, DB_SIZE, replace=False))
    return ([str(ids[k]) for k in pick], [sequence[offsets[k]:offsets[k + 1]] for k in pick],
            [coords[offsets[k]:offsets[k + 1], 1].astype(np.float64) for k in pick])


_DB: tuple | None = None


def _init(npz: str) -> None:
    global _DB
    _DB = select_database(npz)


def _align_all(q: int) -> tuple[int, np.ndarray, np.ndarray]:
    import tmtools

    ids, seqs, cas = _DB
    by_query = np.zeros(len(ids))
    by_target = np.zeros(len(ids))
    for t in range(len(ids)):
        res = tmtools.tm_align(cas[q], cas[t], seqs[q], seqs[t])
        by_query[t], by_target[t] = res.tm_norm_chain1, res.tm_norm_chain2
    return q, by_query, by_target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("npz", help="StructureDB dump of src/foldatlas/train/promod3_dump.py")
    parser.add_argument("out", type=Path, help="Folder for database.txt, ground_truth.tsv, tried.json")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    ids, seqs, _ = select_database(args.npz)
    (args.out / "database.txt").write_text("".join(f"{i}\n" for i in ids))
    tried_path, truth_path = args.out / "tried.json", args.out / "ground_truth.tsv"
    tried = json.loads(tried_path.read_text()) if tried_path.is_file() else {"kept": [], "dropped": []}
    done = set(tried["kept"]) | set(tried["dropped"])
    order = [int(q) for q in np.random.default_rng(SEED + 1).permutation(len(ids)) if int(q) not in done]
    start = time.time()
    with ProcessPoolExecutor(args.workers, initializer=_init, initargs=(args.npz,)) as pool:
        while len(tried["kept"]) < QUERIES and order:
            batch, order = order[:args.workers], order[args.workers:]
            for q, by_query, by_target in pool.map(_align_all, batch):
                partners = [t for t in range(len(ids)) if t != q and by_query[t] >= PARTNER_TM]
                if partners and len(tried["kept"]) < QUERIES:
                    with open(truth_path, "a") as f:
                        f.writelines(f"{ids[q]}\t{ids[t]}\t{by_query[t]:.4f}\t{by_target[t]:.4f}\n"
                                     for t in range(len(ids)))
                    tried["kept"].append(q)
                else:
                    tried["dropped"].append(q)
                tried_path.write_text(json.dumps(tried))
                print(f"{len(tried['kept'])} kept / {len(tried['kept']) + len(tried['dropped'])} tried, "
                      f"{time.time() - start:.0f} s", file=sys.stderr, flush=True)
    print(json.dumps({"queries": len(tried["kept"]), "tried": len(tried["kept"]) + len(tried["dropped"]),
                      "seconds": round(time.time() - start, 1)}))


if __name__ == "__main__":
    main()
