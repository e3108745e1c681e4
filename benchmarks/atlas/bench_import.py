"""Import structure files into a new atlas; report the import rate, bytes per entry and ID lookup latency.

    python benchmarks/atlas/bench_import.py /work/data/structuredb_pdb --atlas /work/data/atlas_sdb [--no-embed]

The StructureDB files come from ``benchmarks/atlas/structuredb_files.py``. Lookups: random IDs of the atlas,
each opened as a user's ``atlas get`` would (``Atlas.get``: ID index, metadata and blobs, pLDDT and embedding
decoded), and the same plus the PDB text written (``to_pdb``); a fresh read-only connection, warm page cache.
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np


def _percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1e3
    return {"mean_ms": round(float(ms.mean()), 3), "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--atlas", required=True, type=Path)
    parser.add_argument("--no-embed", action="store_true")
    parser.add_argument("--keep", action="store_true", help="Import into an existing atlas (else start afresh).")
    parser.add_argument("--lookups", type=int, default=10000)
    args = parser.parse_args(argv)

    from foldatlas.atlas import ImportOptions, import_structures, open_atlas
    from foldatlas.models.embedding import load_embedder
    from foldatlas.models.registry import DEFAULT_LM

    if args.atlas.exists() and not args.keep:
        shutil.rmtree(args.atlas)
    embedder = None if args.no_embed else load_embedder(DEFAULT_LM)
    from foldatlas.atlas import seqindex, structindex

    index_seconds = {}
    for module, name in ((seqindex, "update_sequence_index"), (structindex, "update_structure_index")):
        def timed(*a, _fn=getattr(module, name), _name=name, **k):  # the import's index updates, timed apart
            t = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                index_seconds[_name] = round(time.perf_counter() - t, 1)
        setattr(module, name, timed)
    start = time.perf_counter()
    with open_atlas(args.atlas, create=True) as atlas:
        cpus = len(os.sched_getaffinity(0))
        workers = cpus if args.no_embed else max(1, cpus // 2)  # as the CLI does
        result = import_structures(atlas, args.inputs, embedder, ImportOptions(workers=workers), progress=False)
        atlas.checkpoint()
        stats = atlas.stats()
    seconds = time.perf_counter() - start
    db_bytes = (args.atlas / "atlas.sqlite").stat().st_size
    index_bytes = sum(p.stat().st_size for p in (args.atlas / "seqindex").rglob("*") if p.is_file())

    rng = np.random.default_rng(0)
    with open_atlas(args.atlas, readonly=True) as atlas:
        ids = [m["id"] for m in atlas.iter_metadata(("id",))]
        picks = [ids[i] for i in rng.integers(0, len(ids), args.lookups)]
        get_s, pdb_s = [], []
        for key in picks:
            t = time.perf_counter()
            entry = atlas.get(key, pae=False)
            get_s.append(time.perf_counter() - t)
        for key in picks[:1000]:
            t = time.perf_counter()
            atlas.get(key, pae=False).to_pdb()
            pdb_s.append(time.perf_counter() - t)
    print(json.dumps({
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "date": time.strftime("%Y-%m-%d"),
        "files": result.imported + result.failed + result.skipped, "imported": result.imported,
        "failed": result.failed, "embeddings": not args.no_embed, "reader_processes": workers,
        "seconds": round(seconds, 1),
        "entries_per_second": round(result.imported / seconds, 1), "index_update_seconds": index_seconds,
        "entries_per_second_before_index_updates": round(result.imported / (seconds - sum(index_seconds.values())),
                                                         1),
        "entries": stats["entries"],
        "residues": stats["residues"], "db_bytes": db_bytes, "seqindex_bytes": index_bytes,
        "bytes_per_entry": round((db_bytes + index_bytes) / stats["entries"]),
        "lookup_get": _percentiles(get_s), "lookup_get_and_pdb": _percentiles(pdb_s),
        "last_entry_residues": entry.length,
    }, indent=1))


if __name__ == "__main__":
    main()
