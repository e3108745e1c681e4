"""Fold benchmark: foldatlas against plain transformers on the same ESMFold checkpoint.

Each (tool, length) runs in its own subprocess so that peak memory (the child's
maximum resident set size) is measured cleanly; the two tools run back to back
for each length so that they see the same machine state. Prints one JSON line per
measurement and a final JSON summary with time and memory ratios and the largest
output difference.

The baseline is what a transformers user does on a CPU: ``from_pretrained``, the
16-bit language model converted to float32 (fair-esm's ``--cpu-only`` does the
same: float16 matrix products are unusable on CPUs), then ``model.infer``.

Usage::

    python benchmarks/predict/make_checkpoint.py /data/esmfold_full_random   # once, 8.4 GB
    python benchmarks/predict/bench_fold.py --checkpoint /data/esmfold_full_random --lengths 64 128 256
    python benchmarks/predict/bench_fold.py --checkpoint /tmp/tiny --lengths 16   # smoke run (tests do this)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _sequence(length: int, seed: int = 0) -> str:
    rng = random.Random(seed + length)
    return "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(length))


def _child(tool: str, checkpoint: str, length: int, out_npz: str, num_recycles: int | None) -> dict:
    import numpy as np
    import torch

    seq = _sequence(length)
    t0 = time.perf_counter()
    if tool == "transformers":
        from transformers import EsmForProteinFolding
        from transformers.models.esm.openfold_utils.feats import atom14_to_atom37

        model = EsmForProteinFolding.from_pretrained(checkpoint).eval()
        model.esm.float()
        load_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        with torch.no_grad():
            out = model.infer([seq]) if num_recycles is None else model(
                *_hf_inputs(seq), num_recycles=num_recycles)
        fold_s = time.perf_counter() - t1
        positions = atom14_to_atom37(out["positions"][-1], out)[0].numpy()
        plddt = out["plddt"][0].numpy() * 100
        pae = out["predicted_aligned_error"][0].numpy()
        ptm = float(out["ptm"])
    else:
        from foldatlas.models.loading import load_folding_model
        from foldatlas.predict.engine import FoldOptions, fold_batch
        from foldatlas.seq import make_record

        fm = load_folding_model(checkpoint, device="cpu")
        load_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        pred = fold_batch(fm, [make_record("bench", seq)], FoldOptions(num_recycles=num_recycles))[0]
        fold_s = time.perf_counter() - t1
        positions, plddt, pae, ptm = pred.positions, pred.atom_plddt, pred.pae, pred.ptm
    np.savez(out_npz, positions=positions, plddt=plddt, pae=pae)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"tool": tool, "length": length, "load_s": round(load_s, 2), "fold_s": round(fold_s, 2),
            "peak_rss_gib": round(peak / 2**30, 2), "ptm": ptm, "threads": torch.get_num_threads()}


def _hf_inputs(seq: str):
    import torch
    from transformers.models.esm.openfold_utils import residue_constants as rc

    aatype = torch.tensor([[rc.restype_order_with_x.get(a, 20) for a in seq]])
    return aatype, torch.ones_like(aatype), torch.arange(len(seq))[None]


def _compare(a: str, b: str) -> dict:
    import numpy as np

    x, y = np.load(a), np.load(b)
    return {k: float(np.max(np.abs(x[k] - y[k]))) for k in ("positions", "plddt", "pae")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--tools", nargs="+", default=["transformers", "foldatlas"])
    parser.add_argument("--num-recycles", type=int, default=None)
    parser.add_argument("--child", nargs=3, metavar=("TOOL", "LENGTH", "NPZ"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        tool, length, npz = args.child
        print(json.dumps(_child(tool, args.checkpoint, int(length), npz, args.num_recycles)))
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for length in args.lengths:
            row = {"length": length}
            for tool in args.tools:
                npz = os.path.join(tmp, f"{tool}_{length}.npz")
                cmd = [sys.executable, __file__, "--checkpoint", args.checkpoint, "--child", tool, str(length), npz]
                if args.num_recycles is not None:
                    cmd += ["--num-recycles", str(args.num_recycles)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    row[tool] = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
                else:
                    row[tool] = json.loads(proc.stdout.strip().splitlines()[-1])
                print(json.dumps(row[tool]), flush=True)
            if len(args.tools) == 2 and all("error" not in row[t] for t in args.tools):
                base, ours = (row[t] for t in args.tools)
                row["speedup"] = round(base["fold_s"] / ours["fold_s"], 3)
                row["memory_ratio"] = round(ours["peak_rss_gib"] / base["peak_rss_gib"], 3)
                row["max_abs_diff"] = _compare(*(os.path.join(tmp, f"{t}_{length}.npz") for t in args.tools))
            results.append(row)
    summary = {"benchmark": "fold", "checkpoint": str(args.checkpoint), "machine": platform.machine(),
               "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "results": results}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
