import csv
import json

import pytest

from foldatlas.errors import OutputConflictError
from foldatlas.predict.runner import RunConfig, run_fold
from foldatlas.seq import make_record


def _records():
    return [make_record("a|1", "MKTAYIAKQRQISFV"), make_record("b", "GSHMLEDPVVKLLG:MKKV"),
            make_record("c", "ACDEFGHIKLMNPQRSTVWY")]


def _summary(folder):
    with open(folder / "summary.tsv") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_outputs_manifest_and_summary(tmp_path, tiny_model):
    out = tmp_path / "out"
    result = run_fold(_records(), RunConfig(output=out, chunk_size=0), tiny_model, progress=False)
    assert result.folded == 3 and result.ok
    for stem in ("a_1", "b", "c"):
        for suffix in (".pdb", ".cif", ".json", ".pae.json", ".png"):
            assert (out / f"{stem}{suffix}").stat().st_size > 0
    data = json.loads((out / "b.json").read_text())
    assert data["length"] == 18 and len(data["plddt"]) == 18 and data["iptm"] is not None
    assert all(0 <= v <= 100 for v in data["plddt"])
    pae = json.loads((out / "b.pae.json").read_text())
    assert len(pae) == 1 and len(pae[0]["predicted_aligned_error"]) == 18
    assert pae[0]["max_predicted_aligned_error"] == 31.75
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["weights_sha256"] == tiny_model.weights_sha256
    assert manifest["runs"][-1]["counts"] == {"folded": 3, "skipped": 0, "failed": 0}
    rows = _summary(out)
    assert [r["name"] for r in rows] == ["a|1", "b", "c"] and {r["status"] for r in rows} == {"ok"}
    # every record's geometry: in its JSON and the summary (a random-weight model's structures are no proteins)
    geo = data["geometry"]
    assert geo["residues"] == 18 and geo["bonds_checked"] > 0 and geo["plausible"] == (geo["warning"] is None)
    assert rows[1]["chain_breaks"] == str(geo["chain_breaks"]) and float(rows[1]["clashscore"]) == geo["clashscore"]
    # pLDDT in the PDB B-factor column is on the 0-100 scale
    bfac = [float(line[60:66]) for line in (out / "c.pdb").read_text().splitlines() if line.startswith("ATOM")]
    assert max(bfac) > 1.0


def test_an_implausible_prediction_gets_one_warning_line(tmp_path, tiny_model):
    lines = []
    run_fold([make_record("c", "ACDEFGHIKLMNPQRSTVWY")], RunConfig(output=tmp_path / "o", chunk_size=0), tiny_model,
             progress=False, log=lines.append)
    data = json.loads((tmp_path / "o" / "c.json").read_text())
    warnings = [x for x in lines if "warning" in x]
    if data["geometry"]["plausible"]:
        assert not warnings
    else:
        assert warnings == [f"record 'c': warning: {data['geometry']['warning']}"]
        assert "implausible" in warnings[0] and "\n" not in warnings[0]


def test_rerun_skips_finished_records(tmp_path, tiny_model):
    out = tmp_path / "out"
    run_fold(_records()[:1], RunConfig(output=out, chunk_size=0), tiny_model, progress=False)
    mtime = (out / "a_1.json").stat().st_mtime_ns
    result = run_fold(_records(), RunConfig(output=out, chunk_size=0), tiny_model, progress=False)
    assert (result.folded, result.skipped) == (2, 1)
    assert (out / "a_1.json").stat().st_mtime_ns == mtime
    assert len(json.loads((out / "manifest.json").read_text())["runs"]) == 2


def test_a_failing_record_is_recorded_and_the_run_goes_on(tmp_path, tiny_model):
    out = tmp_path / "out"
    records = _records() + [make_record("huge", "A" * 300)]
    result = run_fold(records, RunConfig(output=out, chunk_size=0, max_length=100), tiny_model, progress=False,
                      log=lambda m: None)
    assert (result.folded, result.failed) == (3, 1)
    row = [r for r in _summary(out) if r["name"] == "huge"][0]
    assert row["status"] == "failed" and "exceed the limit of 100" in row["error"]
    assert not (out / "huge.pdb").exists()


def test_oom_batch_is_split_then_recorded(tmp_path, tiny_model, monkeypatch):
    from foldatlas.predict import runner

    real = runner.fold_batch

    def fake(model, records, options):
        if len(records) > 1 or records[0].name == "c":
            raise RuntimeError("CPU out of memory (simulated)")
        return real(model, records, options)

    monkeypatch.setattr(runner, "fold_batch", fake)
    result = run_fold(_records(), RunConfig(output=tmp_path, chunk_size=0, max_tokens_per_batch=4096), tiny_model,
                      progress=False, log=lambda m: None)
    assert (result.folded, result.failed) == (2, 1)
    assert [r["error"] for r in _summary(tmp_path) if r["name"] == "c"] == ["out of memory"]


def test_other_model_in_same_folder_is_refused(tmp_path, tiny_model):
    run_fold(_records()[:1], RunConfig(output=tmp_path, chunk_size=0), tiny_model, progress=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["model"]["weights_sha256"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(OutputConflictError, match="new output folder"):
        run_fold(_records(), RunConfig(output=tmp_path, chunk_size=0), tiny_model, progress=False)


def test_config_validation():
    with pytest.raises(ValueError):
        RunConfig(output=".", num_recycles=-1)
    with pytest.raises(ValueError):
        RunConfig(output=".", max_tokens_per_batch=-5)
    with pytest.raises(ValueError):
        RunConfig(output=".", max_length=0)


def test_too_long_for_memory_is_refused_with_a_reason(tmp_path, tiny_model, monkeypatch):
    from foldatlas.predict import runner

    monkeypatch.setattr(runner, "available_memory_bytes", lambda device=None: 50 * 2**20)  # 50 MiB free
    result = run_fold([make_record("big", "MKTAYIAKQR" * 30), make_record("small", "MKT")],
                      RunConfig(output=tmp_path, chunk_size=0), tiny_model, progress=False, log=lambda m: None)
    assert (result.folded, result.failed) == (1, 1)
    row = [r for r in _summary(tmp_path) if r["name"] == "big"][0]
    assert "GiB" in row["error"] and "--max-length" in row["error"]


def test_memory_estimate_grows_with_length_and_chunking_bounds_attention():
    from foldatlas.predict.memory import auto_chunk_size, estimate_peak_bytes

    assert estimate_peak_bytes(512) < estimate_peak_bytes(1024)
    assert estimate_peak_bytes(1024, chunk_size=16) < estimate_peak_bytes(1024, chunk_size=0)
    assert auto_chunk_size(64) == 0  # short inputs are not chunked
    assert 1 <= auto_chunk_size(4000) <= 128
