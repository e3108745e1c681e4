"""foldatlas' precision modes against plain transformers on one GPU (ESMFold v1 architecture, random weights).

Builds the full-size random ESMFold v1 checkpoint on the machine itself (the weights are drawn on the GPU in
seconds and written as safetensors, the language model in float16 as released), then, in one run and on the same
inputs, times and compares:

* ``transformers_fp32``: ``EsmForProteinFolding.from_pretrained`` + ``model.esm.float()``, ``model.infer`` (plain
  transformers in float32, TF32 off: PyTorch's default);
* ``transformers_notebook``: the same with a 16-bit language model and ``allow_tf32`` (what Hugging Face's ESMFold
  notebook recommends, and what fair-esm does);
* ``foldatlas_exact`` and ``foldatlas_fast``: ``load_folding_model(..., precision=...)`` + ``fold_batch`` (the path
  of ``foldatlas fold``), outputs with PAE, pTM and ipTM over real residues.

Rows: one protein at a time at each length (latency), and batches of 128-residue records (throughput); proteins/s
after a warm-up, peak GPU memory, and each tool's outputs against ``transformers_fp32`` (C-alpha RMSD after
superposition, TM-score under that superposition, pLDDT and PAE differences). With cuEquivariance installed, the
fused kernels against their PyTorch reference as well. JSON is printed and written (``--out``) after every row, so
a run stopped by its time limit keeps what it measured. On the device machine, with the kernels packed by
``benchmarks/predict/device_kernels.sh`` (carry ``.cueq``)::

    mkdir -p /tmp/site && tar -xJf .cueq/cueq_cu13.tar.xz -C /tmp/site && export PYTHONPATH=/tmp/site:src
    python3 benchmarks/predict/bench_device.py --out $OUT/bench_device.json

A smoke run on a CPU::

    python benchmarks/predict/bench_device.py --device cpu --size tiny --lengths 32 48 --batch-records 4
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import tempfile
import time
from pathlib import Path

TOOLS = ("transformers_fp32", "transformers_notebook", "foldatlas_fast", "foldatlas_exact")  # most wanted first


def sequences(length: int, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(length)) for _ in range(count)]


class Runner:
    """One tool loaded on the device: ``fold(seqs)`` returns per-sequence (CA [L, 3], pLDDT [L], PAE [L, L], pTM)."""

    def __init__(self, tool: str, checkpoint: Path, device):
        import torch

        self.tool, self.device = tool, device
        self.tf32 = False
        if tool.startswith("transformers"):
            from transformers import EsmForProteinFolding

            model = EsmForProteinFolding.from_pretrained(str(checkpoint), dtype=torch.float32)
            model.esm.float() if tool == "transformers_fp32" else model.esm.half()
            if tool == "transformers_notebook" and device.type == "cpu":
                model.esm.float()  # float16 does not run usefully on CPUs: the smoke run keeps float32
            self.tf32 = tool == "transformers_notebook"
            self.model = model.to(device).eval()
            self.precision = {"language_model": str(next(model.esm.parameters()).dtype).removeprefix("torch."),
                              "trunk": "float32", "tf32": self.tf32}
        else:
            from foldatlas.models.loading import load_folding_model

            mode = tool.removeprefix("foldatlas_")
            self.model = load_folding_model(str(checkpoint), device=str(device), precision=mode)
            self.precision = self.model.precision.as_dict()

    def fold(self, seqs: list[str]) -> list[tuple]:
        import torch

        if self.tool.startswith("transformers"):
            saved = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = self.tf32
            try:
                with torch.inference_mode():
                    out = self.model.infer(seqs)
            finally:
                torch.backends.cuda.matmul.allow_tf32 = saved
            ca = out["positions"][-1][:, :, 1].float().cpu().numpy()
            plddt = (out["plddt"][:, :, 1].float() * 100).cpu().numpy()
            pae = out["predicted_aligned_error"].float().cpu().numpy()
            ptm = out["ptm"].float().cpu().numpy().reshape(-1)
            # transformers' compute_tm takes one maximum over the whole batch: a batch gets a single pTM
            return [(ca[i, :len(s)], plddt[i, :len(s)], pae[i, :len(s), :len(s)],
                     float(ptm[i]) if ptm.size == len(seqs) else None) for i, s in enumerate(seqs)]
        from foldatlas.predict.engine import FoldOptions, fold_batch
        from foldatlas.seq.records import make_record

        preds = fold_batch(self.model, [make_record(f"s{i}", s) for i, s in enumerate(seqs)], FoldOptions())
        return [(p.ca_positions, p.plddt, p.pae, p.ptm) for p in preds]

    def close(self) -> None:
        import torch

        del self.model
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def differences(got: tuple, ref: tuple) -> dict:
    """One tool's outputs against the float32 reference's, on the same sequence."""
    import numpy as np

    from foldatlas.structure.metrics import kabsch

    ca, plddt, pae, ptm = got
    rca, rplddt, rpae, rptm = ref
    rot, shift = kabsch(ca.astype(np.float64), rca.astype(np.float64))
    moved = ca.astype(np.float64) @ rot.T + shift
    dist = np.linalg.norm(moved - rca, axis=1)
    n = len(rca)
    d0 = 1.24 * (max(n, 19) - 15) ** (1 / 3) - 1.8
    return {"ca_rmsd": round(float(np.sqrt((dist ** 2).mean())), 4),
            "tm_score": round(float((1 / (1 + (dist / d0) ** 2)).mean()), 4),  # under the RMSD superposition
            "plddt_mean_abs": round(float(np.abs(plddt - rplddt).mean()), 4),
            "plddt_max_abs": round(float(np.abs(plddt - rplddt).max()), 4),
            "pae_mean_abs": round(float(np.abs(pae - rpae).mean()), 4),
            "ptm_abs": None if ptm is None or rptm is None else round(abs(ptm - rptm), 5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 384, 512])
    parser.add_argument("--repeats", type=int, nargs="+", default=[4, 2, 1, 1],
                        help="Timed proteins per length (one at a time), in the order of --lengths")
    parser.add_argument("--batch-records", type=int, default=16, help="Batch of 128-residue records (0: none)")
    parser.add_argument("--tools", nargs="+", default=list(TOOLS), choices=TOOLS)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", default="full", choices=["full", "tiny"])
    parser.add_argument("--checkpoint", type=Path, help="Use this checkpoint instead of building one")
    parser.add_argument("--budget-seconds", type=float, default=480, help="Skip rows that start after this")
    parser.add_argument("--out", type=Path, help="JSON written here after every row")
    args = parser.parse_args()

    import torch

    from foldatlas.models.kernels import kernel_calls, kernel_failures
    from foldatlas.models.random_checkpoint import write_random_esmfold

    t0 = time.perf_counter()
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    out = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
           "transformers": __import__("transformers").__version__, "size": args.size, "rows": [], "skipped": []}
    checkpoint = args.checkpoint
    if checkpoint is None:
        checkpoint = write_random_esmfold(Path(tempfile.mkdtemp(prefix="esmfold_random_")) / args.size,
                                          size=args.size, seed=0, device=args.device)
    out["checkpoint_seconds"] = round(time.perf_counter() - t0, 1)

    def save() -> None:
        text = json.dumps(out, indent=1)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text)

    try:
        from foldatlas.models.kernels import compare_kernels, kernels_available

        out["kernels_available"] = kernels_available(dev)
        n = 256 if args.size == "full" else 48
        out["kernels"] = {"float32": compare_kernels(length=n, device=args.device),
                          "bfloat16_autocast": compare_kernels(length=n, device=args.device, autocast="bfloat16")}
    except Exception as e:  # report, never stop the timing rows
        out["kernels"] = {"error": f"{e.__class__.__name__}: {e}"[:300]}
    save()
    cases = [(n, 1, r) for n, r in zip(args.lengths, args.repeats)]
    if args.batch_records:
        cases.append((args.lengths[0], args.batch_records, 1))
    reference: dict = {}
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for tool in args.tools:
        if time.perf_counter() - t0 > args.budget_seconds:
            out["skipped"].append(tool)
            continue
        start = time.perf_counter()
        runner = Runner(tool, checkpoint, dev)
        load = time.perf_counter() - start
        for length, batch, repeats in cases:
            if time.perf_counter() - t0 > args.budget_seconds:
                out["skipped"].append(f"{tool} {length}x{batch}")
                continue
            try:
                runner.fold(sequences(length, batch, seed=1))  # warm-up
                sync()
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                start = time.perf_counter()
                results = []
                kernel_calls(reset=True)
                for k in range(repeats):
                    results += runner.fold(sequences(length, batch, seed=10 + k))
                sync()
                seconds = time.perf_counter() - start
                row = {"tool": tool, "length": length, "batch": batch, "proteins": batch * repeats,
                       "seconds": round(seconds, 3), "proteins_per_second": round(batch * repeats / seconds, 3),
                       "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
                       "load_seconds": round(load, 1), "precision": runner.precision,
                       "triangle_calls": kernel_calls()}
                key = (length, batch)
                if tool == "transformers_fp32":
                    reference[key] = results
                elif key in reference:
                    diffs = [differences(g, r) for g, r in zip(results, reference[key])]
                    worst = {k: [d[k] for d in diffs if d[k] is not None] for k in diffs[0]}
                    row["vs_transformers_fp32"] = {k: (min(v) if k == "tm_score" else max(v)) if v else None
                                                   for k, v in worst.items()}
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                row = {"tool": tool, "length": length, "batch": batch, "error": "out of memory"}
            out["rows"].append(row)
            print(json.dumps(row), flush=True)
            save()
        runner.close()
    rate = {(r["tool"], r["length"], r["batch"]): r["proteins_per_second"] for r in out["rows"] if "error" not in r}
    for tool, base in (("foldatlas_exact", "transformers_fp32"), ("foldatlas_fast", "transformers_notebook"),
                       ("foldatlas_fast", "transformers_fp32"), ("transformers_notebook", "transformers_fp32")):
        out[f"speedup_{tool}_over_{base}"] = {f"{n}x{b}": round(rate[(tool, n, b)] / rate[(base, n, b)], 3)
                                              for (t, n, b) in rate if t == tool and (base, n, b) in rate}
    out["kernel_failures"] = kernel_failures()
    out["total_seconds"] = round(time.perf_counter() - t0, 1)
    save()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    sys.exit(main())
