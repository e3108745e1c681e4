"""Why the atlas stores entries in SQLite: the same entries in SQLite, DuckDB and a Parquet file, compared.

Copies every entry of an existing atlas (metadata and blobs) into a DuckDB table with a primary key and into one
Parquet file (zstd, row groups of 1,000, sorted by ID), then times, on each, writing all rows and random ID
lookups that read one whole entry. The atlas itself is the SQLite store. Needs ``pip install duckdb`` (not a
foldatlas dependency). Prints JSON.

    python benchmarks/atlas/bench_store.py --atlas /work/data/atlas_sdb
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np

_COLUMNS = ("id", "checksum", "sequence", "length", "model", "mean_plddt", "ptm", "provenance", "created")
_BLOBS = ("structure", "plddt", "embedding")


def _rows(atlas_dir: Path) -> list[tuple]:
    con = sqlite3.connect(f"file:{atlas_dir / 'atlas.sqlite'}?mode=ro", uri=True)
    q = (f"SELECT {', '.join('e.' + c for c in _COLUMNS)}, {', '.join('b.' + c for c in _BLOBS)} "
         f"FROM entries e JOIN blobs b ON b.rowid = e.rowid ORDER BY e.rowid")
    rows = con.execute(q).fetchall()
    con.close()
    return rows


def _lat(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3)}


def bench_sqlite(atlas_dir: Path, keys: list[str]) -> dict:
    from foldatlas.atlas import open_atlas

    with open_atlas(atlas_dir, readonly=True) as atlas:
        times = []
        for k in keys:
            t = time.perf_counter()
            rowid, _ = atlas.resolve(k)
            atlas._conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM entries WHERE rowid = ?", (rowid,)).fetchone()
            atlas._conn.execute(f"SELECT {', '.join(_BLOBS)} FROM blobs WHERE rowid = ?", (rowid,)).fetchone()
            times.append(time.perf_counter() - t)
    size = sum(p.stat().st_size for p in atlas_dir.glob("atlas.sqlite*"))
    return {"bytes": size, "lookup": _lat(times)}


def bench_duckdb(rows: list[tuple], folder: Path, keys: list[str]) -> dict:
    import duckdb

    path = folder / "atlas.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE entries (id VARCHAR PRIMARY KEY, checksum VARCHAR, sequence VARCHAR, length INTEGER, "
                "model VARCHAR, mean_plddt DOUBLE, ptm DOUBLE, provenance VARCHAR, created VARCHAR, "
                "structure BLOB, plddt BLOB, embedding BLOB)")
    start = time.perf_counter()
    for i in range(0, len(rows), 1000):  # transactions of 1,000 rows
        con.execute("BEGIN")
        con.executemany(f"INSERT INTO entries VALUES ({', '.join('?' * 12)})", rows[i:i + 1000])
        con.execute("COMMIT")
    write_s = time.perf_counter() - start
    con.execute("CHECKPOINT")
    times = []
    for k in keys:
        t = time.perf_counter()
        con.execute("SELECT * FROM entries WHERE id = ?", [k]).fetchone()
        times.append(time.perf_counter() - t)
    con.close()
    return {"bytes": path.stat().st_size, "write_rows_per_second": round(len(rows) / write_s, 1),
            "lookup": _lat(times)}


def bench_parquet(rows: list[tuple], folder: Path, keys: list[str]) -> dict:
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    names = list(_COLUMNS) + list(_BLOBS)
    ordered = sorted(rows, key=lambda r: r[0])
    start = time.perf_counter()
    table = pa.table({n: [r[i] for r in ordered] for i, n in enumerate(names)})
    path = folder / "atlas.parquet"
    pq.write_table(table, path, compression="zstd", row_group_size=1000)
    write_s = time.perf_counter() - start
    dataset = ds.dataset(path)
    times = []
    for k in keys[:200]:  # each lookup scans row-group statistics and reads one group
        t = time.perf_counter()
        dataset.to_table(filter=ds.field("id") == k).to_pylist()
        times.append(time.perf_counter() - t)
    return {"bytes": path.stat().st_size, "write_rows_per_second": round(len(rows) / write_s, 1),
            "lookup": _lat(times), "note": "one file written at once: appending means rewriting it or adding files"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atlas", required=True, type=Path)
    parser.add_argument("--lookups", type=int, default=2000)
    args = parser.parse_args(argv)
    rows = _rows(args.atlas)
    rng = np.random.default_rng(0)
    keys = [rows[i][0] for i in rng.integers(0, len(rows), args.lookups)]
    work = Path(tempfile.mkdtemp(prefix="bench_store_"))
    try:
        result = {"entries": len(rows), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                  "date": time.strftime("%Y-%m-%d"), "sqlite": bench_sqlite(args.atlas, keys),
                  "duckdb": bench_duckdb(rows, work, keys), "parquet": bench_parquet(rows, work, keys)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
