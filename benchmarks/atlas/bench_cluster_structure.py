"""Structure clustering of an atlas: time, clusters, and whether its members really are TM-align partners.

    python benchmarks/atlas/bench_cluster_structure.py /tmp/imp5k --work /tmp/cluster_structure

The atlas is copied into ``--work`` (the clustering writes to it); then ``foldatlas.atlas.cluster.cluster_atlas``
clusters it by structure (TM-score >= 0.5, coverage 0.8) and by sequence (30% identity, coverage 0.8) in the same
run, timed. Every member of a structure cluster is then TM-aligned (tmtools) against its representative: the
fraction with TM-align's TM-score >= 0.5 (normalised by the longer chain, as the clustering's test takes the lower
of both normalisations; and by the shorter) is the clustering's precision. Single-chain entries only are checked.
Prints JSON (``--out`` writes it too).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("atlas")
    ap.add_argument("--work", default="/tmp/cluster_structure")
    ap.add_argument("--out")
    args = ap.parse_args()
    import tmtools

    from foldatlas.atlas import open_atlas
    from foldatlas.atlas.cluster import ClusterOptions, cluster_atlas
    from foldatlas.atlas.structindex import update_structure_index
    from foldatlas.structure.io import ca_trace

    work = Path(args.work) / "atlas"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(args.atlas, work)
    atlas = open_atlas(work)
    t = time.perf_counter()
    update_structure_index(atlas)
    result = {"atlas": args.atlas, "entries": len(atlas), "structure_index_s": round(time.perf_counter() - t, 2)}
    for opts in (ClusterOptions(by="structure", threads=2), ClusterOptions(threads=2)):
        info = cluster_atlas(atlas, opts)
        result[opts.name] = {k: info[k] for k in ("clusters", "singletons", "largest", "aligned_pairs", "seconds")}
    members, reps = atlas.cluster_table("structure-tm0.50-cov0.80")
    pairs = [(m, r) for m, r in zip(members.tolist(), reps.tolist()) if m != r]
    cache: dict[int, tuple] = {}

    def trace(rowid: int):
        if rowid not in cache:
            entry = atlas.get_rowid(rowid, pae=False, embedding=False)
            coords, seq, chains = ca_trace(entry.atoms())
            cache[rowid] = (coords, seq, len(set(chains.tolist())))
        return cache[rowid]

    scores = []
    t = time.perf_counter()
    for m, r in pairs:
        (cm, sm, nm), (cr, sr, nr) = trace(m), trace(r)
        if nm != 1 or nr != 1:
            continue
        res = tmtools.tm_align(cm, cr, sm, sr)
        scores.append((min(res.tm_norm_chain1, res.tm_norm_chain2), max(res.tm_norm_chain1, res.tm_norm_chain2)))
    scores = np.array(scores).reshape(-1, 2)
    result["structure_members_checked"] = int(len(scores))
    result["tmalign_check_s"] = round(time.perf_counter() - t, 1)
    if len(scores):
        for k, norm in enumerate(("longer", "shorter")):
            result[f"members_tmalign_tm_by_{norm}_at_least_0.5"] = round(float((scores[:, k] >= 0.5).mean()), 4)
            result[f"member_tm_by_{norm}_quartiles"] = [round(float(q), 3)
                                                         for q in np.percentile(scores[:, k], [25, 50, 75])]
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
