"""Precision modes: the per-device table, the fast mode within its measured tolerance, what outputs record."""

import dataclasses
import json

import numpy as np
import pytest

from foldatlas.errors import InvalidOptionError
from foldatlas.models.precision import resolve_precision
from foldatlas.predict.engine import FoldOptions, fold_batch
from foldatlas.seq import make_record

RECORDS = [make_record("m", "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQWWPLKD"), make_record("d", "MKTAYIAKQRQ:GSHMLEDPVVKL")]


def _tm(a: np.ndarray, b: np.ndarray, seq: str) -> float:
    import tmtools

    res = tmtools.tm_align(np.ascontiguousarray(a, dtype=np.float64), np.ascontiguousarray(b, dtype=np.float64),
                           seq, seq)
    return float(res.tm_norm_chain2)


def test_table_on_a_cpu_without_native_bfloat16(monkeypatch):
    monkeypatch.setenv("FOLDATLAS_ASSUME_NATIVE_BF16", "0")
    fast = resolve_precision("fast", "cpu")
    assert (fast.mode, fast.requested, fast.language_model, fast.autocast) == ("exact", "fast", "float32", None)
    assert "no native bfloat16" in fast.note
    assert resolve_precision("auto", "cpu").mode == "exact"


def test_table_on_a_cpu_with_native_bfloat16(monkeypatch):
    monkeypatch.setenv("FOLDATLAS_ASSUME_NATIVE_BF16", "1")
    fast = resolve_precision("fast", "cpu")
    assert (fast.mode, fast.language_model, fast.trunk, fast.autocast, fast.tf32, fast.kernels) == (
        "fast", "float32", "float32", "bfloat16", False, False)
    assert resolve_precision("auto", "cpu").mode == "exact"  # auto stays exact on CPUs


def test_table_on_gpus():
    fast = resolve_precision("auto", "cuda:1")
    assert (fast.mode, fast.device, fast.language_model, fast.autocast, fast.tf32, fast.kernels) == (
        "fast", "cuda", "stored", "bfloat16", True, True)
    exact = resolve_precision("exact", "cuda")
    assert (exact.language_model, exact.trunk, exact.autocast, exact.tf32, exact.kernels) == (
        "float32", "float32", None, False, False)


def test_dtype_override_and_refusals():
    custom = resolve_precision("auto", "cpu", dtype="bfloat16")
    assert (custom.mode, custom.trunk, custom.requested) == ("custom", "bfloat16", "--dtype bfloat16")
    assert resolve_precision("exact", "cpu", dtype="float32").mode == "exact"
    with pytest.raises(InvalidOptionError, match="cannot be combined"):
        resolve_precision("fast", "cpu", dtype="float16")
    with pytest.raises(InvalidOptionError, match="unknown precision 'turbo'"):
        resolve_precision("turbo", "cpu")


def test_fast_mode_within_tolerance_of_exact(tiny_checkpoint, monkeypatch):
    """The trunk under bfloat16 autocast against float32, on the tiny random checkpoint: the aims of the
    precision policy (TM-score >= 0.98, mean |pLDDT difference| <= 1), and a real difference (bfloat16 ran)."""
    from foldatlas.models.loading import load_folding_model

    monkeypatch.setenv("FOLDATLAS_ASSUME_NATIVE_BF16", "1")
    exact = fold_batch(load_folding_model(str(tiny_checkpoint), device="cpu", precision="exact"), RECORDS)
    fast_model = load_folding_model(str(tiny_checkpoint), device="cpu", precision="fast")
    fast = fold_batch(fast_model, RECORDS)
    for e, f in zip(exact, fast):
        assert e.extra["precision"]["mode"] == "exact" and f.extra["precision"]["mode"] == "fast"
        assert f.extra["precision"]["autocast"] == "bfloat16"
        assert np.abs(e.plddt - f.plddt).max() > 1e-3  # bfloat16 arithmetic really ran
        assert np.abs(e.plddt - f.plddt).mean() <= 1.0
        assert np.abs(e.pae - f.pae).mean() <= 1.0
        assert _tm(f.ca_positions, e.ca_positions, "".join(f.record.chains)) >= 0.98
        assert abs(e.ptm - f.ptm) <= 0.02


def test_fast_without_native_bfloat16_equals_exact(tiny_checkpoint, monkeypatch):
    from foldatlas.models.loading import load_folding_model

    monkeypatch.setenv("FOLDATLAS_ASSUME_NATIVE_BF16", "0")
    exact = fold_batch(load_folding_model(str(tiny_checkpoint), device="cpu", precision="exact"), RECORDS[:1])[0]
    fast = fold_batch(load_folding_model(str(tiny_checkpoint), device="cpu", precision="fast"), RECORDS[:1])[0]
    np.testing.assert_array_equal(exact.positions, fast.positions)
    np.testing.assert_array_equal(exact.pae, fast.pae)
    assert fast.extra["precision"]["requested"] == "fast" and fast.extra["precision"]["mode"] == "exact"
    assert "precision exact" in fast.to_pdb()


def test_trunk_forward_chosen_by_memory_when_not_fixed(tiny_checkpoint, monkeypatch):
    """On GPUs (``lean_trunk`` None) transformers' own block forward runs unless the batch would not fit."""
    from foldatlas.models.loading import load_folding_model
    from foldatlas.models.trunk import trunk_configuration
    from foldatlas.predict import memory

    loaded = load_folding_model(str(tiny_checkpoint), device="cpu")
    assert loaded.lean_trunk is True and trunk_configuration(loaded.model) == (True, None)  # CPUs: always lean
    model = dataclasses.replace(loaded, lean_trunk=None)
    monkeypatch.setattr(memory, "available_memory_bytes", lambda device=None: 2**50)
    assert model.configure_trunk(64, 2, 0) is False and trunk_configuration(model.model) == (False, None)
    plain = fold_batch(model, RECORDS[:1])[0]
    monkeypatch.setattr(memory, "available_memory_bytes", lambda device=None: 10**6)
    assert model.configure_trunk(64, 2, 0) is True
    lean = fold_batch(model, RECORDS[:1])[0]
    np.testing.assert_allclose(plain.positions, lean.positions, atol=1e-4)
    assert memory.estimate_peak_bytes(300, lean=False) > memory.estimate_peak_bytes(300)


def test_confidence_on_the_device_equals_numpy():
    import torch

    from foldatlas.predict.confidence import confidence, expected_aligned_error, predicted_tm

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(23, 23, 64)).astype(np.float32) * 3
    chains = np.array([0] * 10 + [1] * 13)
    for index in (None, chains):
        pae, max_pae = expected_aligned_error(logits)  # the numpy formulas
        want = (pae, max_pae, predicted_tm(logits, index),
                predicted_tm(logits, index, interface=True) if index is not None else None)
        got = confidence(torch.from_numpy(logits), index)
        np.testing.assert_allclose(got[0], want[0], atol=1e-5)
        assert got[1] == want[1]
        assert got[2] == pytest.approx(want[2], abs=1e-12)
        assert (got[3] is None) == (want[3] is None)
        if want[3] is not None:
            assert got[3] == pytest.approx(want[3], abs=1e-12)


def test_cli_records_the_precision(run_cli, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("FOLDATLAS_ASSUME_NATIVE_BF16", "1")
    out = tmp_path / "fast"
    r = run_cli("fold", "MKTAYIAKQRQISFVKSHF", "--name", "q", "-m", str(tiny_checkpoint), "-o", str(out),
                "--precision", "fast", "--device", "cpu", "--no-plot", "-q")
    assert r.returncode == 0, r.stderr
    assert "note: precision fast" in r.stderr
    record = json.loads((out / "q.json").read_text())
    assert record["precision"]["mode"] == "fast" and record["precision"]["autocast"] == "bfloat16"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["runs"][-1]["precision"]["mode"] == "fast"
    assert "REMARK 250 precision fast" in (out / "q.pdb").read_text()


def test_cli_refuses_contradicting_precision_options(run_cli, tiny_checkpoint, tmp_path):
    for args, message in ((["--precision", "turbo"], "unknown precision 'turbo'"),
                          (["--precision", "fast", "--dtype", "bfloat16"], "cannot be combined")):
        out = tmp_path / args[1]
        r = run_cli("fold", "MKTAYIAKQR", "-m", str(tiny_checkpoint), "-o", str(out), "--device", "cpu", *args)
        assert r.returncode == 2, r.stderr
        assert message in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert not out.exists()
    r = run_cli("serve", "-m", str(tiny_checkpoint), "--device", "cpu", "--precision", "turbo")
    assert r.returncode == 2 and "unknown precision 'turbo'" in r.stderr and "Traceback" not in r.stderr


def test_esmfold2_fast_loads_bfloat16(tiny_fold2_checkpoint, monkeypatch):
    import torch

    from foldatlas.models.loading import load_folding_model

    monkeypatch.setenv("FOLDATLAS_ASSUME_NATIVE_BF16", "1")
    model = load_folding_model(str(tiny_fold2_checkpoint), device="cpu", precision="fast")
    assert model.dtype == torch.bfloat16
    assert (model.precision.language_model, model.precision.trunk, model.precision.autocast) == (
        "bfloat16", "bfloat16", None)
    pred = fold_batch(model, [make_record("x", "MKTAYIAKQRQISF")], FoldOptions(num_samples=1))[0]
    assert pred.extra["precision"]["mode"] == "fast" and np.isfinite(pred.positions).all()
    monkeypatch.setenv("FOLDATLAS_ASSUME_NATIVE_BF16", "0")
    exact = load_folding_model(str(tiny_fold2_checkpoint), device="cpu", precision="fast")
    assert exact.dtype == torch.float32 and exact.precision.mode == "exact"


def test_tf32_is_restored_after_the_last_fold_that_asked_for_it():
    import threading

    import torch

    from foldatlas.models.precision import matmul_precision

    fast = resolve_precision("fast", "cuda")
    before = torch.backends.cuda.matmul.allow_tf32
    inside, release = threading.Event(), threading.Event()

    def fold():
        with matmul_precision(fast):
            inside.set()
            release.wait(5)

    worker = threading.Thread(target=fold)
    worker.start()
    inside.wait(5)
    with matmul_precision(fast):
        assert torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cuda.matmul.allow_tf32  # the other fold still runs
    release.set()
    worker.join()
    assert torch.backends.cuda.matmul.allow_tf32 == before
    with matmul_precision(resolve_precision("exact", "cuda")):
        assert torch.backends.cuda.matmul.allow_tf32 == before


def test_gpu_fast_mode_dtypes_prepared_on_the_cpu(tiny_checkpoint):
    """What prepare_esmfold makes of the GPU fast mode (run here on the CPU): a float32 checkpoint's language model
    in float16, the trunk under bfloat16 autocast, the kernels reported missing; the fold within tolerance."""
    import torch
    from transformers import EsmForProteinFolding

    from foldatlas.models.loading import FoldingModel, load_folding_model, prepare_esmfold
    from foldatlas.models.trunk import trunk_configuration

    cpu = torch.device("cpu")
    wanted = resolve_precision("fast", "cuda")
    model, done = prepare_esmfold(EsmForProteinFolding.from_pretrained(str(tiny_checkpoint)), cpu, wanted)
    assert next(model.esm.parameters()).dtype == torch.float16 and done.language_model == "float16"
    assert trunk_configuration(model) == (True, "bfloat16")
    assert done.kernels is False and "foldatlas[cuda]" in done.note
    fast = FoldingModel(model=model, name="tiny", path=tiny_checkpoint, source="folder", revision=None, device=cpu,
                        dtype=torch.float32, precision=done, lean_trunk=True)
    exact = load_folding_model(str(tiny_checkpoint), device="cpu", precision="exact")
    for e, f in zip(fold_batch(exact, RECORDS[:1]), fold_batch(fast, RECORDS[:1])):
        assert f.extra["precision"]["language_model"] == "float16"
        assert np.abs(e.plddt - f.plddt).mean() <= 1.0
        assert _tm(f.ca_positions, e.ca_positions, "".join(f.record.chains)) >= 0.98
