"""The fast precision mode against the exact one on a CPU: tolerance on a trained model, speed on this CPU.

For every sequence of a FASTA file (the 19 CASP14 domains of ``../shared/eval/structure/targets.fasta`` by
default), folds with ``--precision exact`` and with ``--precision fast`` (bfloat16 language model and bfloat16
autocast in the trunk blocks; ``--assume-native-bf16`` runs that arithmetic on CPUs without native bfloat16, where
it is emulated, to measure its numbers), and reports per target and in summary: TM-score between the two
predictions (TM-align, tmtools), mean and max |pLDDT difference|, mean |PAE difference|, |pTM difference|, and the
seconds of each mode (their ratio is the fast mode's speed-up on this CPU). Prints JSON::

    python benchmarks/predict/bench_precision.py --model foldatlas-fold-small --assume-native-bf16
    python benchmarks/predict/bench_precision.py --model /work/data/esmfold_mid_random --lengths 128 256
    python benchmarks/predict/bench_precision.py --model DIR --lengths 64 --modes exact --assume-native-bf16 \\
        --variant float32:bfloat16 bfloat16:none float16:bfloat16

Every other mode or variant is compared with the first mode (``exact``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from pathlib import Path

DEFAULT_FASTA = Path(__file__).resolve().parents[3] / "shared" / "eval" / "structure" / "targets.fasta"


def tm_score(model_ca, reference_ca, sequence: str) -> float:
    import numpy as np
    import tmtools

    res = tmtools.tm_align(np.ascontiguousarray(model_ca, dtype=np.float64),
                           np.ascontiguousarray(reference_ca, dtype=np.float64), sequence, sequence)
    return float(res.tm_norm_chain2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="foldatlas-fold-small")
    parser.add_argument("--fasta", type=Path, default=DEFAULT_FASTA)
    parser.add_argument("--lengths", type=int, nargs="*", help="Random sequences of these lengths instead of FASTA")
    parser.add_argument("--assume-native-bf16", action="store_true",
                        help="Run the fast mode's bfloat16 arithmetic even where it is emulated")
    parser.add_argument("--modes", nargs="+", default=["exact", "fast"])
    parser.add_argument("--variant", nargs="*", default=[], metavar="LM:AUTOCAST",
                        help="Also one part of the fast mode alone, e.g. float32:bfloat16 (trunk only), "
                             "bfloat16:none (language model only), float16:bfloat16 (the GPU fast mode's dtypes)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.assume_native_bf16:
        os.environ["FOLDATLAS_ASSUME_NATIVE_BF16"] = "1"

    import numpy as np
    import torch

    from foldatlas.models.loading import load_folding_model
    from foldatlas.models.precision import cpu_has_native_bf16
    from foldatlas.predict.engine import FoldOptions, fold_batch
    from foldatlas.seq.fasta import read_inputs
    from foldatlas.seq.records import make_record

    torch.set_num_threads(args.threads)
    if args.lengths:
        rng = random.Random(0)
        records = [make_record(f"random_{n}", "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(n)))
                   for n in args.lengths]
    else:
        records = read_inputs([str(args.fasta)])
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    out = {"model": args.model, "machine": platform.processor() or platform.machine(),
           "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
           "native_bf16_assumed": cpu_has_native_bf16(), "threads": args.threads, "torch": torch.__version__,
           "targets": []}
    predictions, seconds, precision = {}, {}, {}
    modes = list(args.modes) + [f"variant:{v}" for v in args.variant]
    for mode in modes:
        model = (variant_model(args.model, *mode.split(":")[1:]) if mode.startswith("variant:") else
                 load_folding_model(args.model, device="cpu", precision=mode))
        precision[mode] = model.precision.as_dict()
        fold_batch(model, [make_record("warm", "MKTAYIAKQR")], FoldOptions())
        for record in records:
            start = time.perf_counter()
            predictions[mode, record.name] = fold_batch(model, [record], FoldOptions())[0]
            seconds[mode, record.name] = time.perf_counter() - start
        del model
    out["precision"] = precision
    reference = modes[0]
    for other in modes[1:]:
        rows = []
        for record in records:
            a, b = predictions[reference, record.name], predictions[other, record.name]
            rows.append({
                "name": record.name, "length": record.length, "against": reference, "mode": other,
                "tm_score": round(tm_score(b.ca_positions, a.ca_positions, "".join(record.chains)), 4),
                "plddt_mean_abs": round(float(np.abs(a.plddt - b.plddt).mean()), 3),
                "plddt_max_abs": round(float(np.abs(a.plddt - b.plddt).max()), 3),
                "pae_mean_abs": round(float(np.abs(a.pae - b.pae).mean()), 3),
                "ptm_abs": round(abs(a.ptm - b.ptm), 4), "mean_plddt_reference": round(a.mean_plddt, 2),
                "seconds_reference": round(seconds[reference, record.name], 2),
                "seconds": round(seconds[other, record.name], 2)})
            print(json.dumps(rows[-1]), flush=True)
        out["targets"] += rows
        summary = {
            "targets": len(rows),
            "tm_score_min": min(r["tm_score"] for r in rows),
            "tm_score_mean": round(float(np.mean([r["tm_score"] for r in rows])), 4),
            "plddt_mean_abs_mean": round(float(np.mean([r["plddt_mean_abs"] for r in rows])), 3),
            "plddt_mean_abs_max": max(r["plddt_mean_abs"] for r in rows),
            "plddt_max_abs_max": max(r["plddt_max_abs"] for r in rows),
            "pae_mean_abs_mean": round(float(np.mean([r["pae_mean_abs"] for r in rows])), 3),
            "ptm_abs_max": max(r["ptm_abs"] for r in rows),
            "seconds_reference": round(sum(seconds[reference, r.name] for r in records), 1),
            "seconds": round(sum(seconds[other, r.name] for r in records), 1),
        }
        summary["speedup"] = round(summary["seconds_reference"] / summary["seconds"], 3)
        out.setdefault("summary", {})[other] = summary
    print(json.dumps(out, indent=1))


def variant_model(name: str, language_model: str, autocast: str):
    """The checkpoint loaded with one part of the fast mode only: the language model computed in
    ``language_model`` (``float16`` = the GPU fast mode's, computed here at emulated speed) and the trunk blocks
    under ``autocast`` (``none`` for float32)."""
    import torch
    from transformers import EsmForProteinFolding

    from foldatlas.models.loading import FoldingModel, from_pretrained_quietly, prepare_esmfold
    from foldatlas.models.precision import Precision
    from foldatlas.models.registry import resolve_model

    resolved = resolve_model(name)
    cpu = torch.device("cpu")
    autocast = None if autocast == "none" else autocast
    wanted = Precision(mode="fast", requested=f"variant {language_model}:{autocast}", device="cpu",
                       language_model=language_model, autocast=autocast)
    model, done = prepare_esmfold(from_pretrained_quietly(EsmForProteinFolding, resolved.path, name), cpu, wanted)
    return FoldingModel(model=model, name=resolved.name, path=resolved.path, source=resolved.source,
                        revision=resolved.revision, device=cpu, dtype=torch.float32, precision=done, lean_trunk=True)

if __name__ == "__main__":
    main()
