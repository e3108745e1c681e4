"""Copies found at 1M by the k-mer stage (5%, 10% shortlists) against the scan of every chain, on the first 12
benchmark queries of the scale benchmark atlas (built by bench_scale.py). Prints JSON.

    python benchmarks/atlas/recall_1m_prefilters.py
"""
import sys, time, json
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parent))
import numpy as np
from bench_scale import _load, _truth, perturbed, atom_array, _copy_tm
from foldatlas.atlas import open_atlas, structsearch
from foldatlas.atlas.structsearch import StructureSearchOptions, chains_of, search_structures
if __name__ == "__main__":
    npz = '/work/data/structuredb.npz'
    db = _load(npz); index = {n: k for k, n in enumerate(db["ids"])}
    queries = sorted(_truth())[:12]
    out = {}
    with open_atlas('/work/data/scale/atlas', readonly=True) as atlas:
        copies = len(atlas) // len(db["ids"]) + 1
        tms = {q: {n: tm for n, tm in _copy_tm(npz, index[q], copies).items() if tm >= 0.5 and atlas.known_ids([n])} for q in queries}
        chains = {q: chains_of(atom_array(*perturbed(npz, index[q], 0)), q)[0] for q in queries}
        for label, pre, frac in (("kmer 5%", "kmer", 0.05), ("kmer 10%", "kmer", 0.10), ("scan", "scan", None)):
            if frac: structsearch.SHORTLIST_FRACTION = frac
            opts = StructureSearchOptions(max_hits=100, workers=2, prefilter=pre)
            search_structures(atlas, [chains[queries[0]]], opts, keep=True)
            found = total = 0; secs = []
            for q in queries:
                t = time.perf_counter(); hits = search_structures(atlas, [chains[q]], opts, keep=True)[0]; secs.append(time.perf_counter() - t)
                got = {h.target for h in hits[:100]}
                found += len(set(tms[q]) & got); total += len(tms[q])
            out[label] = {"copies_recall_at_100": round(found / total, 4), "copies": total, "seconds_per_query": round(float(np.mean(secs)), 3)}
            print(label, out[label], flush=True)
    print(json.dumps({"queries": len(queries), **out}))
