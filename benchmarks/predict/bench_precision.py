"""The fast precision mode against the exact one on a CPU: tolerance on a trained model, speed on this CPU.

For every sequence of a FASTA file (the 19 CASP14 domains of ``../shared/eval/structure/targets.fasta`` by
default), folds with ``--precision exact`` and with ``--precision fast`` (bfloat16 language model and bfloat16
autocast in the trunk blocks; ``--assume-native-bf16`` runs that arithmetic on CPUs without native bfloat16, where
it is emulated, to measure its numbers), and reports per target and in summary: TM-score between the two
predictions (TM-align, tmtools), mean and max |pLDDT difference|, mean |PAE difference|, |pTM difference|, and the
seconds of each mode (their ratio is the fast mode's speed-up on this CPU). Prints JSON::

    python benchmarks/predict/bench_precision.py --model foldatlas-fold-small --assume-native-bf16
    python benchmarks/predict/bench_precision.py --model /work/data/esmfold_mid_random --lengths 128 256
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
    for mode in args.modes:
        model = load_folding_model(args.model, device="cpu", precision=mode)
        precision[mode] = model.precision.as_dict()
        fold_batch(model, [make_record("warm", "MKTAYIAKQR")], FoldOptions())
        for record in records:
            start = time.perf_counter()
            predictions[mode, record.name] = fold_batch(model, [record], FoldOptions())[0]
            seconds[mode, record.name] = time.perf_counter() - start
        del model
    out["precision"] = precision
    exact, fast = args.modes[0], args.modes[-1]
    for record in records:
        a, b = predictions[exact, record.name], predictions[fast, record.name]
        out["targets"].append({
            "name": record.name, "length": record.length,
            "tm_score": round(tm_score(b.ca_positions, a.ca_positions, "".join(record.chains)), 4),
            "plddt_mean_abs": round(float(np.abs(a.plddt - b.plddt).mean()), 3),
            "plddt_max_abs": round(float(np.abs(a.plddt - b.plddt).max()), 3),
            "pae_mean_abs": round(float(np.abs(a.pae - b.pae).mean()), 3),
            "ptm_abs": round(abs(a.ptm - b.ptm), 4), "mean_plddt_exact": round(a.mean_plddt, 2),
            f"seconds_{exact}": round(seconds[exact, record.name], 2),
            f"seconds_{fast}": round(seconds[fast, record.name], 2)})
        print(json.dumps(out["targets"][-1]), flush=True)
    rows = out["targets"]
    out["summary"] = {
        "targets": len(rows),
        "tm_score_min": min(r["tm_score"] for r in rows),
        "tm_score_mean": round(float(np.mean([r["tm_score"] for r in rows])), 4),
        "plddt_mean_abs_mean": round(float(np.mean([r["plddt_mean_abs"] for r in rows])), 3),
        "plddt_mean_abs_max": max(r["plddt_mean_abs"] for r in rows),
        "plddt_max_abs_max": max(r["plddt_max_abs"] for r in rows),
        "pae_mean_abs_mean": round(float(np.mean([r["pae_mean_abs"] for r in rows])), 3),
        "ptm_abs_max": max(r["ptm_abs"] for r in rows),
        f"seconds_{exact}": round(sum(seconds[exact, r.name] for r in records), 1),
        f"seconds_{fast}": round(sum(seconds[fast, r.name] for r in records), 1),
    }
    out["summary"]["speedup_fast_over_exact"] = round(out["summary"][f"seconds_{exact}"]
                                                      / out["summary"][f"seconds_{fast}"], 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
