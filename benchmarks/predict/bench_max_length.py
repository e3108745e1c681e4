"""Peak memory of long inputs with foldatlas' defaults: the longest sequence that fits in a memory budget.

A full fold of a 1,500-residue protein takes hours on a 2-core CPU (the trunk
grows as L^3), but its memory peak is reached in every trunk block alike. For
each length this runs, in a fresh process with foldatlas' default settings
(automatic chunk size, lean trunk, streamed 16-bit language model), the language
model and the first ``--blocks`` trunk blocks of the first pass, then stops, and
reports the peak resident memory. Later recycling passes hold one more
pair-sized tensor (the previous pass's output); the report adds it as
``peak_estimate_gib``.

Usage::

    python benchmarks/predict/bench_max_length.py --checkpoint DIR --lengths 1024 1536 1792
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


class _Stop(Exception):
    pass


def _child(checkpoint: str, length: int, blocks: int) -> dict:
    from foldatlas.models.loading import load_folding_model
    from foldatlas.predict.engine import FoldOptions, fold_batch
    from foldatlas.predict.memory import auto_chunk_size
    from foldatlas.seq import make_record

    fm = load_folding_model(checkpoint, device="cpu")
    seen = {"n": 0}

    def hook(module, args, output):
        seen["n"] += 1
        if seen["n"] >= blocks:
            raise _Stop

    for block in fm.model.trunk.blocks[:blocks]:
        block.register_forward_hook(hook)
    seq = ("MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHD" * 40)[:length]
    t0 = time.perf_counter()
    status = "stopped after block"
    try:
        fold_batch(fm, [make_record("long", seq)], FoldOptions())
    except _Stop:
        pass
    except (RuntimeError, MemoryError) as e:
        status = f"failed: {str(e).splitlines()[0][:120]}"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    pair = length * length * 128 * 4
    return {"length": length, "blocks": blocks, "status": status, "seconds": round(time.perf_counter() - t0, 1),
            "chunk_size": auto_chunk_size(length), "peak_rss_gib": round(peak / 2**30, 2),
            "peak_estimate_gib": round((peak + pair) / 2**30, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 1536])
    parser.add_argument("--blocks", type=int, default=1)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.checkpoint, args.child, args.blocks)))
        return
    for length in args.lengths:
        cmd = [sys.executable, __file__, "--checkpoint", args.checkpoint, "--child", str(length),
               "--blocks", str(args.blocks)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 and proc.stdout.strip() else json.dumps(
            {"length": length, "status": f"process died (exit {proc.returncode}; killed for memory?)"})
        print(line, flush=True)


if __name__ == "__main__":
    main()
