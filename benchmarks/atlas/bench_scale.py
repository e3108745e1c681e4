"""Atlases of 21k, 100k and 1M entries from real StructureDB chains: import, disk, lookup, search, memory, service.

    python benchmarks/atlas/bench_scale.py /work/data/structuredb.npz --work /work/data/scale --sizes 21119 100000

One atlas grows through the sizes. It holds every StructureDB chain (the NPZ of ``src/foldatlas/train/
promod3_dump.py``: N, CA, C, O and CB per residue, no CB written for glycine, as ``structuredb_files.py``), then
perturbed copies ``<chain>~<k>`` (k = 1, 2, ...) of every chain until it holds the size: each copy is moved (random
rotation and translation), bent by a smooth displacement along the chain (RMS 0.5, 1, 1.5 or 2.5 A by k % 4, the
same for all atoms of a residue) with 0.1 A of noise on every atom, one in three copies loses a stretch of 1-8
residues, and the sequence is mutated to 90, 70, 50, 40 or 30% identity (by k % 5). So every query has partners at
known distances (its own copies; their TM-score to the query is computed here) among the copies of everything else.

Per size, in one run:

* **import**: the bulk path (copies made and encoded by two worker processes, stored in transactions of 1,000, as
  ``atlas import`` stores what its reader processes parse; no embeddings) in entries/s, then each index brought up
  to date (sequence, structure, MMseqs2) with its build time; then ``import_structures`` of 2,000 more copies
  written as gzipped PDB files into the grown atlas (the user's path: parse, encode, store, both indexes), so the
  atlas measured holds the size plus 2,000 for each size reached so far. A killed run goes on where it stopped
  when rerun with the same command (the plan's progress and each size's file import are kept in the atlas).
* **disk**: bytes per entry of the database and of each index.
* **lookup**: 10,000 random IDs with ``Atlas.get`` (read-only, warm cache), p50 and p99.
* **sequence search** (``search_sequences``, engine auto, 2 threads): the 50 benchmark queries' sequences; seconds
  per query and the recall of each query's copies by identity tier (hits at E <= 1e-3).
* **structure search** (``search_structures``, 3Di+AA, TM-align of the best 20, the searcher kept between queries
  as the service keeps it; the first query, which builds it, timed apart): the 50 queries; seconds per query,
  recall at 100 of the query's copies with TM >= 0.5, and of the TM-align partners known from the 2,000-chain
  ground truth (``benchmarks/atlas/data``; a partner counts once, as itself or any copy).
* **memory**: peak resident memory of the process that searched (a fresh one per size).
* **service**: the HTTP API on the atlas (FastAPI test client): entry JSON, PDB file, sequence and structure search.

Prints one JSON object per size, and all of them at the end (``--out`` writes that too).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
NAMES = np.array(["N", "CA", "C", "O", "CB"])
BEND = (0.5, 1.0, 1.5, 2.5)  # RMS displacement of the smooth bend, by copy % 4
IDENTITY = (0.9, 0.7, 0.5, 0.4, 0.3)  # sequence identity, by copy % 5
AA = "ACDEFGHIKLMNPQRSTVWY"
_DB: dict = {}


# -- making entries ---------------------------------------------------------------------------------------------

def _load(npz: str) -> dict:
    if not _DB:
        data = np.load(npz)
        _DB.update(ids=data["ids"].astype(str), offsets=data["offsets"], sequence=str(data["sequence"]),
                   coords=data["coords"].astype(np.float64), starts=data["start_resnum"])
    return _DB


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def perturbed(npz: str, chain: int, copy: int) -> tuple[str, np.ndarray, int]:
    """The sequence, backbone coordinates (L, 5, 3) and first residue number of copy ``copy`` of a chain (0: the
    chain itself)."""
    db = _load(npz)
    lo, hi = int(db["offsets"][chain]), int(db["offsets"][chain + 1])
    seq = np.array(list(db["sequence"][lo:hi]))
    xyz = db["coords"][lo:hi].copy()
    start = int(db["starts"][chain])
    if copy == 0:
        return "".join(seq), xyz, start
    rng = np.random.default_rng([chain, copy])
    n = len(seq)
    # sequence: mutate to the tier's identity (each changed residue becomes another amino acid)
    changed = rng.choice(n, int(round((1 - IDENTITY[copy % 5]) * n)), replace=False)
    for i in changed:
        seq[i] = AA[(AA.index(seq[i]) + rng.integers(1, 20)) % 20] if seq[i] in AA else AA[rng.integers(20)]
    # structure: a smooth bend (three modes per axis along the chain), noise, a rigid move
    t = np.arange(n) / max(n - 1, 1)
    bend = np.zeros((n, 3))
    for axis in range(3):
        for mode in (1, 2, 3):
            bend[:, axis] += rng.normal() / mode * np.sin(np.pi * (mode * t + rng.uniform()))
    bend *= BEND[copy % 4] / max(float(np.sqrt((bend ** 2).sum(1).mean())), 1e-9)
    xyz = xyz + bend[:, None, :] + rng.normal(scale=0.1, size=xyz.shape)
    center = np.nanmean(xyz[:, 1], axis=0)
    xyz = (xyz - center) @ _rotation(rng).T + center + rng.normal(scale=20.0, size=3)
    if copy % 3 == 0 and n > 40:  # a deletion inside the chain
        cut = int(rng.integers(10, n - 18))
        keep = np.r_[0:cut, cut + int(rng.integers(1, 9)):n]
        return "".join(seq[keep]), xyz[keep], start
    return "".join(seq), xyz, start


def atom_array(sequence: str, xyz: np.ndarray, start: int):
    """A biotite AtomArray of backbone coordinates (L, 5, 3): N, CA, C, O, CB (none for glycine)."""
    import biotite.structure as struc

    from foldatlas.seq.alphabet import RESTYPE_1TO3

    keep = np.ones(xyz.shape[:2], bool)
    seq = np.array(list(sequence))
    keep[:, 4] = (seq != "G") & ~np.isnan(xyz[:, 4, 0])
    ri, ai = np.nonzero(keep)
    atoms = struc.AtomArray(len(ri))
    atoms.coord = xyz[ri, ai].astype(np.float32)
    atoms.chain_id[:] = "A"
    atoms.res_id = start + ri
    three = np.array([RESTYPE_1TO3.get(c, "UNK") for c in sequence])
    atoms.res_name = three[ri]
    atoms.atom_name = NAMES[ai]
    atoms.element = np.array([n[0] for n in NAMES])[ai]
    atoms.hetero[:] = False
    atoms.set_annotation("b_factor", np.zeros(len(ri), dtype=np.float32))
    return atoms


def _entry_id(npz: str, chain: int, copy: int) -> str:
    name = _load(npz)["ids"][chain]
    return name if copy == 0 else f"{name}~{copy}"


def _make(args: tuple) -> list[tuple[str, str, bytes]]:
    """(id, sequence, structure blob) of a list of (chain, copy). Runs in worker processes."""
    from foldatlas.atlas import codec
    from foldatlas.seq.alphabet import RESTYPE_3TO1

    npz, pairs = args
    out = []
    for chain, copy in pairs:
        atoms = atom_array(*perturbed(npz, chain, copy))
        ca = atoms[atoms.atom_name == "CA"]
        sequence = "".join(RESTYPE_3TO1.get(r, "X") for r in ca.res_name)
        out.append((_entry_id(npz, chain, copy), sequence, codec.encode_structure(atoms)))
    return out


def _plan(n_chains: int, first: int, last: int) -> list[tuple[int, int]]:
    """(chain, copy) of entries ``first..last-1`` in insertion order: all chains, then copy 1 of all, ..."""
    return [(k % n_chains, k // n_chains) for k in range(first, last)]


def grow(atlas, npz: str, size: int, workers: int) -> dict:
    """Add entries until the atlas holds ``size``; bulk insert rate."""
    import multiprocessing

    from foldatlas.atlas import NewEntry

    n_chains = len(_load(npz)["ids"])
    have = int(atlas.get_meta("bench_scale_planned", 0))  # entries of the plan stored (file imports aside)
    pairs = _plan(n_chains, have, size)
    chunks = [(npz, pairs[i:i + 250]) for i in range(0, len(pairs), 250)]
    start = time.perf_counter()
    added = 0
    batch: list = []
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for made in pool.imap(_make, chunks):
            batch.extend(NewEntry(id=i, sequence=s, kind="imported", model="experimental (StructureDB copy)",
                                  structure=b, description="bench_scale") for i, s, b in made)
            if len(batch) >= 1000:
                added += _store(atlas, batch)
                batch = []
        added += _store(atlas, batch)
    seconds = time.perf_counter() - start
    return {"added": added, "seconds": round(seconds, 1),
            "entries_per_second": round(added / seconds, 1) if seconds and added else None}


def _store(atlas, batch: list) -> int:
    stored = sum(1 for r in atlas.insert(batch) if r)
    atlas.set_meta("bench_scale_planned", int(atlas.get_meta("bench_scale_planned", 0)) + len(batch))
    return stored


def update_indexes(atlas) -> dict:
    from foldatlas.atlas.mmseqs import ensure_database, mmseqs_binary
    from foldatlas.atlas.seqindex import update_sequence_index
    from foldatlas.atlas.structindex import update_structure_index

    out = {}
    for name, fn in (("sequence_index", update_sequence_index), ("structure_index", update_structure_index)):
        t = time.perf_counter()
        fn(atlas)
        out[f"{name}_seconds"] = round(time.perf_counter() - t, 1)
    if mmseqs_binary():
        t = time.perf_counter()
        ensure_database(atlas, threads=len(os.sched_getaffinity(0)))
        out["mmseqs_database_seconds"] = round(time.perf_counter() - t, 1)
    return out


def file_import(atlas, npz: str, work: Path, count: int, size: int) -> dict:
    """Write ``count`` more copies as gzipped PDB files and import them (the user's path)."""
    from foldatlas.atlas import ImportOptions, import_structures
    from foldatlas.structure.io import to_pdb_string

    folder = work / f"files-{size}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    n_chains = len(_load(npz)["ids"])
    first_copy = 1000 + size // n_chains  # copy numbers no bulk step uses
    rng = np.random.default_rng(size)
    for chain in rng.choice(n_chains, count, replace=False):
        atoms = atom_array(*perturbed(npz, int(chain), first_copy))
        name = _entry_id(npz, int(chain), first_copy)
        (folder / f"{name}.pdb.gz").write_bytes(gzip.compress(to_pdb_string(atoms).encode(), compresslevel=6))
    start = time.perf_counter()
    result = import_structures(atlas, [folder], None, ImportOptions(workers=len(os.sched_getaffinity(0))),
                               progress=False)
    seconds = time.perf_counter() - start
    shutil.rmtree(folder, ignore_errors=True)
    return {"files": count, "imported": result.imported, "failed": result.failed, "seconds": round(seconds, 1),
            "entries_per_second": round(result.imported / seconds, 1)}


def disk(folder: Path) -> dict:
    def size(p: Path) -> int:
        return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())

    out = {"database": size(folder / "atlas.sqlite")}
    for p in sorted(folder.iterdir()):
        if p.is_dir():
            out[p.name.split("-")[0]] = out.get(p.name.split("-")[0], 0) + size(p)
    return out


# -- measuring (a fresh process per size) -----------------------------------------------------------------------

def _percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3)}


def _truth() -> dict[str, set[str]]:
    partners: dict[str, set[str]] = {}
    for line in gzip.decompress((DATA / "ground_truth.tsv.gz").read_bytes()).decode().splitlines():
        q, t, tm_q, _ = line.split("\t")
        partners.setdefault(q, set())
        if t != q and float(tm_q) >= 0.5:
            partners[q].add(t)
    return {q: p for q, p in partners.items() if p}


def _copy_tm(npz: str, chain: int, copies: int) -> dict[str, float]:
    """TM-score (by the query's length) of each copy of a chain to the chain itself."""
    import tmtools

    seq0, xyz0, _ = perturbed(npz, chain, 0)
    out = {}
    for k in range(1, copies + 1):
        seq, xyz, _ = perturbed(npz, chain, k)
        out[_entry_id(npz, chain, k)] = float(tmtools.tm_align(xyz0[:, 1], xyz[:, 1], seq0, seq).tm_norm_chain1)
    return out


def measure(folder: Path, npz: str, lookups: int, service: bool) -> dict:
    from foldatlas.atlas import open_atlas
    from foldatlas.atlas.seqsearch import SearchOptions, search_sequences
    from foldatlas.atlas.structsearch import StructureSearchOptions, chains_of, search_structures
    from foldatlas.seq.records import Record

    db = _load(npz)
    index = {name: k for k, name in enumerate(db["ids"])}
    partners = _truth()
    queries = sorted(partners)
    threads = len(os.sched_getaffinity(0))
    out: dict = {}
    with open_atlas(folder, readonly=True) as atlas:
        size = len(atlas)
        copies = size // len(db["ids"]) + 1  # copy numbers up to this may exist
        rng = np.random.default_rng(0)
        rows = rng.integers(1, size + 1, lookups)
        ids = atlas.ids_of(sorted(set(int(r) for r in rows)))
        keys = [ids[int(r)] for r in rows if int(r) in ids]
        times = []
        for key in keys:
            t = time.perf_counter()
            atlas.get(key, pae=False)
            times.append(time.perf_counter() - t)
        out["lookup"] = _percentiles(times)

        # sequence search: each query's copies are its planted homologs at known identity
        records = [Record(name=q, chains=(perturbed(npz, index[q], 0)[0],)) for q in queries]
        options = SearchOptions(max_hits=2000, threads=threads)
        search_sequences(atlas, records[:1], options)  # warm: index files mapped, engine started once
        found = {p: [0, 0] for p in IDENTITY}
        times = []
        for rec in records:
            t = time.perf_counter()
            hits = search_sequences(atlas, [rec], options)[0]
            times.append(time.perf_counter() - t)
            got = {h.target for h in hits}
            for k in range(1, copies + 1):
                name = f"{rec.name}~{k}"
                if atlas.known_ids([name]):
                    found[IDENTITY[k % 5]][1] += 1
                    found[IDENTITY[k % 5]][0] += name in got
        out["sequence_search"] = {
            "engine": options.engine, "queries": len(records), "seconds_per_query": round(float(np.mean(times)), 3),
            "p90_seconds": round(float(np.percentile(times, 90)), 3),
            "copies_found_by_identity": {f"{int(p * 100)}%": f"{a}/{b}" for p, (a, b) in found.items() if b}}

        # structure search
        st_options = StructureSearchOptions(max_hits=100, workers=threads)
        chains = {}
        for q in queries:
            chains[q] = chains_of(atom_array(*perturbed(npz, index[q], 0)), q)[0]
        t = time.perf_counter()
        search_structures(atlas, [chains[queries[0]]], st_options, keep=True)  # builds the kept searcher
        first_query = time.perf_counter() - t
        times, planted, planted_n, known, known_n, top = [], 0, 0, 0, 0, {}
        tm_bins = {"tm>=0.8": [0, 0], "0.5<=tm<0.8": [0, 0]}
        for q in queries:
            t = time.perf_counter()
            hits = search_structures(atlas, [chains[q]], st_options, keep=True)[0]
            times.append(time.perf_counter() - t)
            got = top[q] = [h.target for h in hits][:100]
            bases = {g.split("~")[0] for g in got}
            known += len(partners[q] & bases)
            known_n += min(len(partners[q]), 100)
            tms = {n: tm for n, tm in _copy_tm(npz, index[q], copies).items() if atlas.known_ids([n])}
            for name, tm in tms.items():
                if tm >= 0.5:
                    b = tm_bins["tm>=0.8" if tm >= 0.8 else "0.5<=tm<0.8"]
                    b[1] += 1
                    b[0] += name in got
        for b in tm_bins.values():
            planted += b[0]
            planted_n += b[1]
        out["structure_search"] = {
            "mode": st_options.mode, "queries": len(queries), "first_query_seconds": round(first_query, 2),
            "seconds_per_query": round(float(np.mean(times)), 3),
            "p90_seconds": round(float(np.percentile(times, 90)), 3),
            "copies_recall_at_100": round(planted / planted_n, 4) if planted_n else None,
            "copies_found_by_tm": {k: f"{a}/{b}" for k, (a, b) in tm_bins.items() if b},
            "known_partners_recall_at_100": round(known / known_n, 4)}
        # the same-run baseline: the Smith-Waterman scan of every chain without the k-mer stage, first 10 queries
        scan = StructureSearchOptions(max_hits=100, workers=threads, prefilter="scan")
        scan_times, shared = [], 0
        for q in queries[:10]:
            t = time.perf_counter()
            hits = search_structures(atlas, [chains[q]], scan, keep=True)[0]
            scan_times.append(time.perf_counter() - t)
            shared += len(set(top[q]) & {h.target for h in hits[:100]})
        out["structure_search"]["scan_baseline_first_10"] = {
            "seconds_per_query": round(float(np.mean(scan_times)), 3),
            "default_seconds_per_query": round(float(np.mean(times[:10])), 3),
            "top_100_shared_with_default": round(shared / sum(len(top[q]) for q in queries[:10]), 4)}
    out["peak_memory_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if service:
        try:
            out["service"] = _service(folder, queries, npz, index)
        except Exception as e:  # the numbers above are kept
            out["service_error"] = repr(e)[:500]
    return out


def _service(folder: Path, queries: list[str], npz: str, index: dict) -> dict:
    from fastapi.testclient import TestClient

    from foldatlas.service import ServiceSettings, create_app

    app = create_app(ServiceSettings(atlas=folder, embedding_model="none"))
    out = {}
    with TestClient(app) as client:
        def timed(name: str, calls) -> None:
            times = []
            for call in calls:
                t = time.perf_counter()
                r = call()
                times.append(time.perf_counter() - t)
                assert r.status_code == 200, (name, r.status_code, r.text[:200])
            out[name] = _percentiles(times)

        ids = queries  # StructureDB chains, in the atlas at every size
        timed("entry_json", [lambda i=i: client.get(f"/api/v1/entries/{i}") for i in ids])
        timed("entry_pdb", [lambda i=i: client.get(f"/fetchPredictedStructure/{i}") for i in ids])
        seqs = [perturbed(npz, index[q], 0)[0] for q in queries[:10]]
        timed("sequence_search", [lambda s=s: client.post("/api/v1/search/sequence", json={"sequence": s})
                                  for s in seqs])
        timed("structure_search", [lambda q=q: client.post("/api/v1/search/structure", data={"entry_id": q})
                                   for q in queries[:10]])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("npz")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[21119, 100000, 1000000])
    parser.add_argument("--files", type=int, default=2000, help="PDB files imported at each size")
    parser.add_argument("--lookups", type=int, default=10000)
    parser.add_argument("--no-service", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.npz, args.lookups, not args.no_service)))
        return

    from foldatlas.atlas import open_atlas

    folder = args.work / "atlas"
    workers = len(os.sched_getaffinity(0))
    runs = []
    for size in args.sizes:
        run: dict = {"size": size}
        with open_atlas(folder, create=True) as atlas:
            # resumable: a killed run is rerun with the same command and goes on where it stopped
            if int(atlas.get_meta("bench_scale_planned", 0)) < size:
                run["bulk_import"] = grow(atlas, args.npz, size, workers)
            run["index_build"] = update_indexes(atlas)
            if not atlas.get_meta(f"bench_scale_files_{size}"):
                # then the user's path into the grown atlas (entries: size + files)
                run["file_import"] = file_import(atlas, args.npz, args.work, args.files, size)
                run["file_import"]["mmseqs_update_seconds"] = update_indexes(atlas).get("mmseqs_database_seconds")
                atlas.set_meta(f"bench_scale_files_{size}", run["file_import"])
            atlas.checkpoint()
            run["entries"] = len(atlas)
        sizes = disk(folder)
        run["bytes_per_entry"] = {k: round(v / run["entries"]) for k, v in sizes.items()}
        proc = subprocess.run([sys.executable, __file__, args.npz, "--work", str(args.work), "--measure",
                               str(folder), "--lookups", str(args.lookups)] + (["--no-service"] if args.no_service
                                                                               else []),
                              capture_output=True, text=True)
        if proc.returncode != 0:
            run["measure_error"] = proc.stderr[-3000:]
        else:
            run.update(json.loads(proc.stdout.strip().splitlines()[-1]))
        run.update(machine=f"{platform.machine()}, {os.cpu_count()} CPUs", date=time.strftime("%Y-%m-%d"))
        print(json.dumps(run), flush=True)
        runs.append(run)
        if args.out:
            args.out.write_text(json.dumps(runs, indent=1) + "\n")
    print(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
