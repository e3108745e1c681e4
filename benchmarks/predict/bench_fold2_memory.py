"""ESMFold2 activation memory against the memory check's estimate, at full widths and a fraction of the time.

The activation peak of an ESMFold2 fold depends on the widths (pair 256, single 384, diffusion 768, ...), the
length, the number of samples and ESM C's hidden states, not on how many blocks each stack has or how many
loops and steps run (each block, loop and step reuses the same shapes). This script builds a random checkpoint
with the ESMFold2-Fast widths but one block per stack and a small ESM C, folds one sequence per
(length, samples) in a fresh process with one trunk pass and two diffusion steps, and prints each peak above the
loaded model next to :meth:`foldatlas.models.esmfold2.Esmfold2FoldingModel.estimate_peak_bytes` (ESM C's
hidden-state term is that of the checkpoint measured; the 6B model's adds 3 x 81 x 2560 x 4 bytes per residue).

Usage::

    python benchmarks/predict/bench_fold2_memory.py --lengths 128 256 --samples 1 8 [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _write(folder: Path) -> None:
    import torch
    from transformers import EsmFold2Config, EsmFold2Model

    from foldatlas.models.random_checkpoint import esmc_config_dict, esmfold2_config_dict

    cfg = esmfold2_config_dict("full")
    cfg.update(folding_trunk_num_hidden_layers=1, parcae_num_coda_layers=1,
               lm_encoder=dict(num_hidden_layers=1), confidence_head=dict(num_hidden_layers=1))
    cfg["esmc_config"] = dict(esmc_config_dict("tiny"), hidden_size=64, num_attention_heads=4)
    torch.manual_seed(0)
    EsmFold2Model(EsmFold2Config(**cfg)).eval().save_pretrained(folder)


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _child(folder: str, length: int, samples: int) -> dict:
    from foldatlas.models.loading import load_folding_model
    from foldatlas.predict.engine import FoldOptions, fold_batch
    from foldatlas.seq.records import make_record

    model = load_folding_model(folder, device="cpu")
    loaded = _rss()
    options = FoldOptions(num_samples=samples, num_loops=0, num_steps=2)
    start = time.perf_counter()
    fold_batch(model, [make_record("q", ("ACDEFGHIKLMNPQRSTVWY" * (length // 20 + 1))[:length])], options)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    estimate = model.estimate_peak_bytes(length, options)
    return {"length": length, "samples": samples, "seconds": round(time.perf_counter() - start, 1),
            "activation_peak_gib": round((peak - loaded) / 2**30, 3), "estimate_gib": round(estimate / 2**30, 3),
            "estimate_over_measured": round(estimate / max(1, peak - loaded), 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[128, 256])
    p.add_argument("--samples", type=int, nargs="+", default=[1, 8])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(_child(args.child[0], int(args.child[1]), int(args.child[2]))))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "widths"
        _write(folder)
        for length in args.lengths:
            for samples in args.samples:
                cmd = [sys.executable, __file__, "--child", str(folder), str(length), str(samples)]
                if args.threads:
                    cmd += ["--threads", str(args.threads)]
                done = subprocess.run(cmd, capture_output=True, text=True)
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else
                            {"length": length, "samples": samples, "status": "failed",
                             "error": done.stderr.strip().splitlines()[-1][:300] if done.stderr.strip() else ""})
    print(json.dumps({"benchmark": "fold2_memory", "results": rows}))


if __name__ == "__main__":
    main()
