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


def test_fold2_benchmark_runs_and_compares(tmp_path):
    """make_fold2_checkpoint.py (tiny, bfloat16 as released) then bench_fold2.py against float32 transformers."""
    made = _json([str(ROOT / "benchmarks/predict/make_fold2_checkpoint.py"), str(tmp_path / "ckpt"), "--size",
                  "tiny", "--dtype", "bfloat16"])
    assert made["parameters"] > 0 and made["parameters_by_dtype"]["BF16"] > 0 and made["peak_rss_gib"] > 0
    out = _json([str(ROOT / "benchmarks/predict/bench_fold2.py"), "--checkpoint", str(tmp_path / "ckpt"),
                 "--lengths", "12", "--transformers", "fp32"])
    assert out["machine"]["cpus"] > 0 and out["machine"]["torch"]
    row = out["results"][0]
    assert row["foldatlas"]["status"] == row["transformers_fp32"]["status"] == "ok"
    same = row["max_abs_diff"]["vs_transformers_fp32"]
    assert max(same["all_samples"].values()) < 1e-4  # the same outputs as float32 transformers
    assert row["ratios"]["transformers_fp32_over_foldatlas"]["peak_rss_gib"] > 0


def _json(cmd):
    out = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_atlas_import_benchmark_runs(tmp_path, split_dir):
    row = _json([str(ROOT / "benchmarks/atlas/bench_import.py"), str(split_dir), "--atlas", str(tmp_path / "a"),
                 "--lookups", "20"])
    assert row["imported"] == 4 and row["bytes_per_entry"] > 0 and row["lookup_get"]["p50_ms"] > 0


def test_atlas_search_benchmark_runs(tmp_path, split_dir):
    import shutil

    import pytest

    if shutil.which("mmseqs") is None:
        pytest.skip("mmseqs2 not installed")
    _json([str(ROOT / "benchmarks/atlas/bench_import.py"), str(split_dir), "--atlas", str(tmp_path / "a"),
           "--no-embed", "--lookups", "5"])
    row = _json([str(ROOT / "benchmarks/atlas/bench_seqsearch.py"), "atlas", "--atlas", str(tmp_path / "a"),
                 "--queries", "2"])
    tools = row["tools"]
    assert set(tools) == {"foldatlas_prefilter", "foldatlas_exhaustive", "mmseqs2_easy_search",
                          "mmseqs2_prebuilt_index", "foldatlas_mmseqs_engine_s5.7", "foldatlas_mmseqs_engine_s7.5"}
    assert all(t["queries_per_second"] > 0 for t in tools.values())


def test_atlas_codec_benchmark_runs(tmp_path, split_dir):
    """The codec benchmark on an evaluation folder of two real chains (targets.fasta + pdb/<id>.pdb)."""
    import shutil

    from foldatlas.structure.io import ca_trace, read_structure

    (tmp_path / "pdb").mkdir()
    lines = []
    for path in sorted(split_dir.glob("*.pdb"))[:2]:
        shutil.copy(path, tmp_path / "pdb" / path.name)
        lines.append(f">{path.stem}\n{ca_trace(read_structure(path))[1]}\n")
    (tmp_path / "targets.fasta").write_text("".join(lines))
    row = _json([str(ROOT / "benchmarks/atlas/bench_codec.py"), "--eval", str(tmp_path)])
    assert row["experimental"]["structures"] == 2 and row["pae"]["uint8_max_error"] <= 0.0625


def test_variant_benchmark_runs():
    import pytest

    if not (ROOT.parent / "shared" / "eval" / "variants" / "datasets.tsv").is_file():
        pytest.skip("the evaluation data (../shared/eval) is not beside this checkout")
    row = _json([str(ROOT / "benchmarks/lm/bench_variants.py"), "--limit", "30", "--pll-sample", "2"])
    assert row["variants"] == 30 and set(row["spearman"]) >= {"masked_marginal", "wt_marginal", "pll_on_sample"}
    assert -1 <= row["spearman"]["masked_marginal"] <= 1 and "independent" in row["baselines_spearman"]


def test_load_benchmark_runs(tmp_path, split_dir):
    import shutil

    import pytest

    if shutil.which("wrk") is None:
        pytest.skip("wrk not installed")
    _json([str(ROOT / "benchmarks/atlas/bench_import.py"), str(split_dir), "--atlas", str(tmp_path / "a"),
           "--lookups", "5"])
    row = _json([str(ROOT / "benchmarks/service/bench_load.py"), "--atlas", str(tmp_path / "a"), "--seconds", "1",
                 "--fold-seconds", "2", "--fold-length", "20", "--connections", "4"])
    assert row["lookups"]["fetchPredictedStructure"]["requests_per_second"] > 0
    assert row["folds"]["other_errors"] == 0 and row["memory_mib"]["start"] > 0
