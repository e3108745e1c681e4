"""Smoke runs of the benchmark scripts on the tiny checkpoint: they run and print valid JSON."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_fold_benchmark_runs_and_compares(tiny_checkpoint):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/predict/bench_fold.py"), "--checkpoint",
                          str(tiny_checkpoint), "--lengths", "12"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    row = summary["results"][0]
    assert row["length"] == 12 and row["speedup"] > 0 and row["memory_ratio"] > 0
    assert max(row["max_abs_diff"].values()) < 1e-4  # same outputs as transformers


def test_max_length_benchmark_runs(tiny_checkpoint):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/predict/bench_max_length.py"), "--checkpoint",
                          str(tiny_checkpoint), "--lengths", "40"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["status"] == "stopped after block" and row["peak_rss_gib"] > 0
