"""Structure clustering of an atlas: time, clusters, and whether its members really are TM-align partners.

    python benchmarks/atlas/bench_cluster_structure.py /tmp/imp5k --work /tmp/cluster_structure
    python benchmarks/atlas/bench_cluster_structure.py --grow /work/data/structuredb.npz --size 100000 \
        --work /work/data/cluster_structure

The atlas is copied into ``--work`` (the clustering writes to it), or with ``--grow`` built there as
``bench_scale.py`` builds its benchmark atlas (StructureDB chains, then perturbed copies ``<chain>~<k>``: bent by
0.5-2.5 A RMS, sequences mutated to 90/70/50/40/30% identity by k % 5; resumable); then ``foldatlas.atlas.cluster.cluster_atlas``
clusters it by structure (TM-score >= 0.5, coverage 0.8) and by sequence (30% identity, coverage 0.8) in the same
run, timed. Every member of a structure cluster is then TM-aligned (tmtools) against its representative: the
fraction with TM-align's TM-score >= 0.5 (normalised by the longer chain, as the clustering's test takes the lower
of both normalisations; and by the shorter) is the clustering's precision (``--check`` pairs at most, a seeded
sample). Single-chain entries only are checked. In a grown atlas, the copies placed in their original chain's
cluster are counted by identity tier, for both clusterings (planted families: structure clustering should keep
copies whose sequences sequence clustering cannot match).
Prints JSON (``--out`` writes it too).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np


def planted(atlas) -> dict:
    """Per clustering and identity tier, the fraction of copies ``<chain>~<k>`` in their original's cluster."""
    identity = (0.9, 0.7, 0.5, 0.4, 0.3)  # bench_scale.IDENTITY, by k % 5
    ids = {m["rowid"]: m["id"] for m in atlas.iter_metadata(("rowid", "id"))}
    row_of = {v: k for k, v in ids.items()}
    out = {}
    for name in atlas.clusterings():
        members, reps = atlas.cluster_table(name)
        rep = dict(zip(members.tolist(), reps.tolist()))
        tiers: dict[str, list[int]] = {}
        for rowid, entry_id in ids.items():
            if "~" not in entry_id:
                continue
            chain, k = entry_id.rsplit("~", 1)
            original = row_of.get(chain)
            if original is None or rowid not in rep:
                continue
            tier = f"{int(identity[int(k) % 5] * 100)}%"
            tiers.setdefault(tier, [0, 0])
            tiers[tier][0] += rep[rowid] == rep.get(original)
            tiers[tier][1] += 1
        out[name] = {t: round(a / b, 4) for t, (a, b) in sorted(tiers.items(), reverse=True)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("atlas", nargs="?")
    ap.add_argument("--grow", help="StructureDB NPZ: build bench_scale's atlas of --size entries in --work")
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--check", type=int, default=1000)
    ap.add_argument("--work", default="/tmp/cluster_structure")
    ap.add_argument("--out")
    args = ap.parse_args()
    import tmtools

    from foldatlas.atlas import open_atlas
    from foldatlas.atlas.cluster import ClusterOptions, cluster_atlas
    from foldatlas.atlas.structindex import update_structure_index
    from foldatlas.structure.io import ca_trace

    result: dict = {}
    if args.grow:
        import sys

        sys.path.insert(0, str(Path(__file__).parent))
        import bench_scale as bs

        work = Path(args.work) / f"atlas{args.size}"
        atlas = open_atlas(work, create=True)
        for key in [k for k in atlas.clusterings()]:  # a rerun clusters from scratch
            atlas.write_clusters(key, np.zeros(0, np.int64), np.zeros(0, np.int64), {}, replace=True)
        result["grow"] = bs.grow(atlas, args.grow, args.size, 2)
    else:
        work = Path(args.work) / "atlas"
        if work.exists():
            shutil.rmtree(work)
        shutil.copytree(args.atlas, work)
        atlas = open_atlas(work)
    t = time.perf_counter()
    update_structure_index(atlas)
    result.update({"atlas": str(work), "entries": len(atlas), "structure_index_s": round(time.perf_counter() - t, 2)})
    for opts in (ClusterOptions(by="structure", threads=2), ClusterOptions(threads=2)):
        info = cluster_atlas(atlas, opts)
        result[opts.name] = {k: info[k] for k in ("clusters", "singletons", "largest", "aligned_pairs", "seconds")}
    if args.grow:
        result["planted_copies_with_their_original"] = planted(atlas)
    members, reps = atlas.cluster_table("structure-tm0.50-cov0.80")
    pairs = [(m, r) for m, r in zip(members.tolist(), reps.tolist()) if m != r]
    if len(pairs) > args.check:
        pick = np.random.default_rng(0).choice(len(pairs), args.check, replace=False)
        pairs = [pairs[i] for i in sorted(pick)]
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
