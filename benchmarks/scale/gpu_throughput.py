"""Folding throughput of the ESMFold v1 architecture on one GPU: foldatlas' engine against plain transformers.

The model is built with ESMFold v1's exact architecture (ESM-2 3B language model in float16, 48 trunk blocks) and
random weights, on the GPU (its speed does not depend on the weights' values; the real weights are 8.4 GB that this
benchmark does not need). For each length, batches of random sequences run through

* ``transformers``: ``EsmForProteinFolding.infer`` (what a transformers user does),
* ``foldatlas``: :func:`foldatlas.predict.engine.fold_batch` with the lean trunk (the path ``fold`` and
  ``atlas build`` use),
* ``foldatlas_plain``: the same engine on transformers' own trunk (list it before ``foldatlas``),

with the model's default recycles, after a warm-up, timed with CUDA synchronisation. Prints JSON: proteins and
residues per second per tool, and the speed ratio. Used for the scale-out estimate in docs/scale-out.md::

    python benchmarks/scale/gpu_throughput.py --lengths 128 256 384 512 --batch-tokens 4096
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path


def sequences(length: int, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(length)) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 384, 512])
    parser.add_argument("--batch-tokens", type=int, default=4096, help="Residues per batch (batch = tokens / L)")
    parser.add_argument("--batches", type=int, default=2, help="Timed batches per length and tool")
    parser.add_argument("--tools", nargs="+", default=["transformers", "foldatlas"])
    parser.add_argument("--trunk-dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--device", default="cuda", help="cpu with --size tiny: a smoke run")
    parser.add_argument("--size", default="full", choices=["full", "tiny"])
    args = parser.parse_args()

    import torch
    from transformers import EsmConfig, EsmForProteinFolding

    from foldatlas.models.loading import FoldingModel
    from foldatlas.models.random_checkpoint import esmfold_config_dict
    from foldatlas.predict.engine import FoldOptions, fold_batch
    from foldatlas.seq.records import make_record

    dev = torch.device(args.device)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with dev:
        model = EsmForProteinFolding(EsmConfig(**esmfold_config_dict(args.size)))
    model.eval().requires_grad_(False)
    if dev.type == "cuda":
        model.esm.half()  # ESMFold keeps its language model in float16 on GPUs
    if args.trunk_dtype == "bfloat16":
        for name, child in model.named_children():
            if name != "esm":
                child.to(torch.bfloat16)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    out = {"gpu": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
           "transformers": __import__("transformers").__version__, "trunk_dtype": args.trunk_dtype,
           "parameters": sum(p.numel() for p in model.parameters()), "build_seconds": round(time.perf_counter() - t0, 1),
           "batch_tokens": args.batch_tokens, "results": []}
    folding = FoldingModel(model=model, name="esmfold_v1 architecture (random weights)", path=Path("."),
                           source="random", revision=None, device=dev, dtype=getattr(torch, args.trunk_dtype))

    def run(tool: str, seqs: list[str]) -> None:
        if tool == "transformers":
            with torch.inference_mode():
                model.infer(seqs)
        else:
            fold_batch(folding, [make_record(f"s{i}", s) for i, s in enumerate(seqs)], FoldOptions(chunk_size=0))

    lean_installed = False
    for tool in args.tools:
        if tool == "foldatlas_plain" and lean_installed:
            raise SystemExit("list foldatlas_plain before foldatlas (the lean trunk is installed in place)")
        if tool == "foldatlas" and not lean_installed:
            try:
                from foldatlas.models.trunk import install_lean_trunk

                install_lean_trunk(model)
                lean_installed = True
            except Exception as e:  # an older transformers on the device: the engine without the lean trunk
                out["lean_trunk_error"] = f"{e.__class__.__name__}: {e}"[:300]
        for length in args.lengths:
            batch = max(1, args.batch_tokens // length)
            try:
                run(tool, sequences(length, batch, seed=1))  # warm-up
                sync()
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                start = time.perf_counter()
                for k in range(args.batches):
                    run(tool, sequences(length, batch, seed=10 + k))
                sync()
                seconds = time.perf_counter() - start
                proteins = batch * args.batches
                row = {"tool": tool, "length": length, "batch": batch, "proteins": proteins,
                       "seconds": round(seconds, 3), "proteins_per_second": round(proteins / seconds, 3),
                       "residues_per_second": round(proteins * length / seconds, 1),
                       "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                row = {"tool": tool, "length": length, "batch": batch, "error": "out of memory"}
            out["results"].append(row)
            print(json.dumps(row), flush=True)
    by = {(r["tool"], r["length"]): r for r in out["results"] if "error" not in r}
    for tool in ("foldatlas", "foldatlas_plain"):
        out[f"speedup_{tool}_over_transformers"] = {
            str(n): round(by[(tool, n)]["proteins_per_second"] / by[("transformers", n)]["proteins_per_second"], 3)
            for n in args.lengths if (tool, n) in by and ("transformers", n) in by}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
