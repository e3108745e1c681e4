"""The k-mer stage's similar-k-mer threshold at 1M: copies found and seconds per query for thresholds 26 and 23 on the
first 12 benchmark queries (compare recall_1m_prefilters.py: 30 and the scan). Prints JSON lines.

    PYTHONPATH=src python benchmarks/atlas/recall_1m_thresholds.py
"""
import sys, time, json
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parent))
import numpy as np
from bench_scale import _load, _truth, perturbed, atom_array, _copy_tm
from foldatlas.atlas import open_atlas
from foldatlas.atlas.structsearch import StructureSearchOptions, chains_of, search_structures
if __name__ == "__main__":
    npz = '/work/data/structuredb.npz'
    db = _load(npz); index = {n: k for k, n in enumerate(db["ids"])}
    queries = sorted(_truth())[:12]
    with open_atlas('/work/data/scale/atlas', readonly=True) as atlas:
        copies = len(atlas) // len(db["ids"]) + 1
        tms = {q: {n: tm for n, tm in _copy_tm(npz, index[q], copies).items() if tm >= 0.5 and atlas.known_ids([n])} for q in queries}
        chains = {q: chains_of(atom_array(*perturbed(npz, index[q], 0)), q)[0] for q in queries}
        opts = StructureSearchOptions(max_hits=100, workers=2, prefilter="kmer")
        search_structures(atlas, [chains[queries[0]]], opts, keep=True)
        for t in (26, 23):
            opts = StructureSearchOptions(max_hits=100, workers=2, prefilter="kmer", kmer_threshold=t)
            found = total = 0; secs = []
            for q in queries:
                s = time.perf_counter(); hits = search_structures(atlas, [chains[q]], opts, keep=True)[0]; secs.append(time.perf_counter() - s)
                got = {h.target for h in hits[:100]}
                found += len(set(tms[q]) & got); total += len(tms[q])
            print(json.dumps({"threshold": t, "copies_recall_at_100": round(found / total, 4), "seconds_per_query": round(float(np.mean(secs)), 3)}), flush=True)
