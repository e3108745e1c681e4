"""Sequence clustering at atlas scale: foldatlas' Linclust-style clustering against MMseqs2 easy-linclust.

    python benchmarks/atlas/bench_cluster.py /work/data/structuredb.npz --work /work/data/cluster --size 1000000

The sequences are those of ``bench_scale.py``'s benchmark atlas of ``--size`` entries (every StructureDB chain, then
perturbed copies at 90, 70, 50, 40 and 30% identity, some with a deletion), written once as FASTA. Per identity
threshold (``--identities``, coverage 0.8 of both sequences), in the same run: ``foldatlas.atlas.cluster.
cluster_sequences`` and ``mmseqs easy-linclust --min-seq-id X -c 0.8 --cov-mode 0`` (its defaults otherwise; 2
threads each), each in its own process, timed from the outside (wall seconds, peak resident memory of the process
tree). Reported: clusters, singletons, the largest cluster, the adjusted Rand index between the two clusterings, and
of the planted pairs (a copy and its original) the fraction each puts in one cluster, by identity tier (at the
30% threshold every tier is a true pair; coverage may exclude copies with a deletion). ``--incremental N``: the
first ``size - N`` sequences clustered, then the last N placed by the incremental path (``assigned=``), timed, and
compared with the run from scratch.

Prints JSON (``--out`` writes it too).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

_MEASURE = ("import resource, subprocess, sys, time; t = time.perf_counter(); r = subprocess.run(sys.argv[1:]); "
            "print(round(time.perf_counter() - t, 2), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
            "r.returncode)")


def measured(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident MiB of ``cmd`` and its children (run under a fresh Python)."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], capture_output=True, text=True)
    seconds, kib, rc = out.stdout.strip().splitlines()[-1].split()
    if int(rc) != 0:
        raise RuntimeError(f"{cmd[:3]} failed:\n{out.stderr[-3000:]}")
    return float(seconds), round(int(kib) / 1024, 1)


def read_fasta(path: Path) -> list[str]:
    seqs, cur = [], []
    with open(path) as f:
        for line in f:
            if line.startswith(">"):
                if cur:
                    seqs.append("".join(cur))
                cur = []
            else:
                cur.append(line.strip())
    if cur:
        seqs.append("".join(cur))
    return seqs


def ours(fasta: str, identity: float, out: str, first: int = 0, previous: str = "", kmers: int = 21) -> None:
    """(In a child process) cluster the FASTA's sequences, save representatives as .npy."""
    from foldatlas.atlas.cluster import ClusterOptions, cluster_sequences

    seqs = read_fasta(Path(fasta))
    opts = ClusterOptions(min_identity=identity, coverage=0.8, threads=2, kmers_per_entry=kmers)
    if previous:
        reps = cluster_sequences(seqs, opts, assigned=np.load(previous))
    else:
        reps = cluster_sequences(seqs[:first] if first else seqs, opts)
    np.save(out, reps)


def mmseqs_reps(tsv: Path, n: int) -> np.ndarray:
    """Representative index per sequence from MMseqs2's ``_cluster.tsv`` (names ``row:0``, rows from 1)."""
    reps = np.full(n, -1, np.int64)
    with open(tsv) as f:
        for line in f:
            rep, member = line.split()
            reps[int(member.split(":")[0]) - 1] = int(rep.split(":")[0]) - 1
    return reps


def summary(reps: np.ndarray) -> dict:
    sizes = np.bincount(reps)
    sizes = sizes[sizes > 0]
    return {"clusters": int(len(sizes)), "singletons": int((sizes == 1).sum()), "largest": int(sizes.max())}


def planted_together(reps: np.ndarray, chains: int) -> dict:
    """Per identity tier, the fraction of copies in the cluster of their original chain."""
    import bench_scale as bs

    n = len(reps)
    k = np.arange(chains, n)
    copy = k // chains
    same = reps[k] == reps[k % chains]
    return {f"{int(p * 100)}%": round(float(same[copy % 5 == t].mean()), 4)
            for t, p in enumerate(bs.IDENTITY) if (copy % 5 == t).any()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("npz", nargs="?")
    ap.add_argument("--work", default="/work/data/cluster")
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--identities", default="0.3,0.5,0.9")
    ap.add_argument("--incremental", type=int, default=10_000)
    ap.add_argument("--skip-mmseqs", action="store_true")
    ap.add_argument("--kmers-per-entry", type=int, default=21)
    ap.add_argument("--out")
    ap.add_argument("--_ours", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._ours:
        a = args._ours
        ours(a[0], float(a[1]), a[2], int(a[3]) if len(a) > 3 else 0, a[4] if len(a) > 4 else "",
             args.kmers_per_entry)
        return
    import bench_scale as bs
    from bench_seqscale import write_fasta
    from sklearn.metrics import adjusted_rand_score

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    fasta = work / f"seqs{args.size}.fasta"
    write_fasta(args.npz, args.size, fasta)
    chains = len(bs._load(args.npz)["ids"])
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    cpu = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")), "")
    result = {"size": args.size, "threads": 2, "kmers_per_entry": args.kmers_per_entry, "cpu": cpu,
              "avx512_bf16": "avx512_bf16" in lscpu, "mmseqs": subprocess.run(
                  ["mmseqs", "version"], capture_output=True, text=True).stdout.strip(), "thresholds": {}}
    me = [sys.executable, __file__, "--kmers-per-entry", str(args.kmers_per_entry), "--_ours"]
    for identity in (float(x) for x in args.identities.split(",")):
        row: dict = {}
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            npy = f"{tmp}/ours.npy"
            row["foldatlas_s"], row["foldatlas_peak_mib"] = measured([*me, str(fasta), str(identity), npy])
            mine = np.load(npy)
            row["foldatlas"] = {**summary(mine), "planted_pairs_together": planted_together(mine, chains)}
            if not args.skip_mmseqs:
                row["mmseqs_s"], row["mmseqs_peak_mib"] = measured(
                    ["mmseqs", "easy-linclust", str(fasta), f"{tmp}/mm", f"{tmp}/mmtmp", "--min-seq-id",
                     str(identity), "-c", "0.8", "--cov-mode", "0", "--threads", "2", "-v", "1"])
                theirs = mmseqs_reps(Path(f"{tmp}/mm_cluster.tsv"), args.size)
                row["mmseqs"] = {**summary(theirs), "planted_pairs_together": planted_together(theirs, chains)}
                row["adjusted_rand_index"] = round(float(adjusted_rand_score(theirs, mine)), 4)
                row["speed_ratio"] = round(row["mmseqs_s"] / row["foldatlas_s"], 2)
            if args.incremental and identity == 0.3:
                first = args.size - args.incremental
                base = f"{tmp}/base.npy"
                row["incremental_base_s"], _ = measured([*me, str(fasta), str(identity), base, str(first)])
                inc = f"{tmp}/inc.npy"
                row["incremental_s"], row["incremental_peak_mib"] = measured(
                    [*me, str(fasta), str(identity), inc, "0", base])
                grown = np.load(inc)
                added = grown[first:]
                row["incremental"] = {"added": args.incremental, **summary(grown),
                                      "joined_existing": int((added < first).sum()),
                                      "adjusted_rand_index_vs_scratch": round(float(adjusted_rand_score(mine,
                                                                                                       grown)), 4)}
        result["thresholds"][f"{identity:.2f}"] = row
        print(json.dumps({f"{identity:.2f}": row}), file=sys.stderr, flush=True)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
