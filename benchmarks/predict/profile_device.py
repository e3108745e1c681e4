"""Where a short fold spends its time on a GPU: seconds per fold of each tool at 128/256 residues, foldatlas fast
with and without the cuEquivariance kernels, and a cProfile and a torch.profiler table of one 128-residue fold each.

Writes ``prof.json``, ``cprof_TOOL.txt`` and ``tprof_TOOL.txt`` under ``$OUT``. On the device machine (carry ``.cueq``,
see ``device_kernels.sh``)::

    mkdir -p /tmp/site && tar -xJf .cueq/cueq_cu13.tar.xz -C /tmp/site && export PYTHONPATH=/tmp/site:src
    python3 benchmarks/predict/profile_device.py

``SMOKE=1`` runs it on the CPU with a tiny checkpoint.
"""
from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

TOOLS = ("transformers_fp32", "foldatlas_exact", "transformers_notebook", "foldatlas_fast")


def main() -> None:
    import torch
    from bench_device import Runner, sequences

    from foldatlas.models.kernels import install_kernels, uninstall_kernels
    from foldatlas.models.random_checkpoint import write_random_esmfold

    out_dir = Path(os.environ.get("OUT", "/tmp"))
    smoke = bool(os.environ.get("SMOKE"))
    device = "cpu" if smoke else "cuda"
    checkpoint = write_random_esmfold(Path(tempfile.mkdtemp()) / "ck", size="tiny" if smoke else "full", seed=0,
                                      device=device)
    dev = torch.device(device)

    def sync() -> None:
        if not smoke:
            torch.cuda.synchronize()

    def timed(runner: Runner, n: int, repeats: int = 3) -> float:
        runner.fold(sequences(n, 1, 1))
        runner.fold(sequences(n, 1, 2))  # two warm-ups
        sync()
        start = time.perf_counter()
        for k in range(repeats):
            runner.fold(sequences(n, 1, 10 + k))
        sync()
        return round((time.perf_counter() - start) / repeats, 4)

    seconds = {}
    for tool in TOOLS:
        runner = Runner(tool, checkpoint, dev)
        for n in (128, 256):
            seconds[f"{tool} {n}"] = timed(runner, n)
        if tool == "foldatlas_fast":
            uninstall_kernels(runner.model.model)
            for n in (128, 256, 384):
                seconds[f"{tool}_nokernels {n}"] = timed(runner, n, 2)
            install_kernels(runner.model.model, use_kernel=None if smoke else True)
            seconds[f"{tool} 384"] = timed(runner, 384, 2)
        print(json.dumps(seconds), flush=True)
        profile = cProfile.Profile()
        profile.enable()
        runner.fold(sequences(128, 1, 7))
        sync()
        profile.disable()
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(30)
        (out_dir / f"cprof_{tool}.txt").write_text(text.getvalue())
        activities = [torch.profiler.ProfilerActivity.CPU] + ([] if smoke else [torch.profiler.ProfilerActivity.CUDA])
        with torch.profiler.profile(activities=activities) as prof:
            runner.fold(sequences(128, 1, 8))
            sync()
        table = prof.key_averages().table
        (out_dir / f"tprof_{tool}.txt").write_text(
            table(sort_by="self_cpu_time_total" if smoke else "self_cuda_time_total", row_limit=30)
            + "\n\n" + table(sort_by="self_cpu_time_total", row_limit=30))
        runner.close()
    (out_dir / "prof.json").write_text(json.dumps(seconds, indent=1))
    print(json.dumps(seconds, indent=1))


if __name__ == "__main__":
    main()
