"""The command line: exit codes, one-line errors, no partial output, resume after kill -9."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from foldatlas.cli.main import main


def _run(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.smoke
def test_fold_raw_sequence_and_complex(tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "out"
    code, err = _run(["fold", "MKTAYIAKQR:GSHMLE", "-m", str(tiny_checkpoint), "-o", str(out), "-q",
                      "--num-recycles", "1"], capsys)
    assert code == 0, err
    data = json.loads((out / "query.json").read_text())
    assert [c["id"] for c in data["chains"]] == ["A", "B"] and data["num_recycles"] == 1


@pytest.mark.parametrize("content, message", [
    ("", "empty file"),
    ("just some text\n", "not FASTA"),
    (">a\nMKZ7T\n", "record 'a': invalid residue '7' at position 4"),
])
def test_bad_inputs_exit_nonzero_with_one_line_and_no_output(tmp_path, tiny_checkpoint, capsys, content, message):
    fasta = tmp_path / "in.fasta"
    fasta.write_text(content)
    out = tmp_path / "out"
    code, err = _run(["fold", str(fasta), "-m", str(tiny_checkpoint), "-o", str(out), "-q"], capsys)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("model, message, exit_code", [
    ("no-such-model", "unknown model", 3),
    ("facebook/esmfold_v1", "hf download", 3),
])
def test_model_errors(tmp_path, capsys, monkeypatch, model, message, exit_code):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    out = tmp_path / "out"
    code, err = _run(["fold", "MKT", "-m", model, "-o", str(out)], capsys)
    assert code == exit_code and message in err and err.count("\n") == 1
    assert not out.exists()


def test_missing_input_file(tmp_path, tiny_checkpoint, capsys):
    code, err = _run(["fold", str(tmp_path / "nope.fasta"), "-m", str(tiny_checkpoint), "-o", str(tmp_path / "o")],
                     capsys)
    assert code == 2 and "no such file" in err


def test_compare_cli_and_bad_structure(tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "out"
    assert _run(["fold", "MKTAYIAKQRQISFV", "-m", str(tiny_checkpoint), "-o", str(out), "-q"], capsys)[0] == 0
    code = main(["compare", str(out / "query.pdb"), str(out / "query.cif"), "--json"])
    captured = capsys.readouterr()
    assert code == 0
    result = json.loads(captured.out)
    assert result["tm_score"] == pytest.approx(1.0, abs=1e-4) and result["rmsd"] < 1e-3
    bad = tmp_path / "bad.pdb"
    bad.write_text("nothing here\n")
    code, err = _run(["compare", str(bad), str(out / "query.pdb")], capsys)
    assert code == 2 and "neither PDB nor mmCIF" in err and err.count("\n") == 1


def test_killed_run_resumes_and_folds_every_record_exactly_once(tmp_path, tiny_checkpoint):
    fasta = tmp_path / "many.fasta"
    names = [f"p{i}" for i in range(8)]
    fasta.write_text("".join(f">{n}\n{'MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ' * 6}\n" for n in names))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "foldatlas.cli.main", "fold", str(fasta), "-m", str(tiny_checkpoint),
           "-o", str(out), "-q", "--max-tokens-per-batch", "0", "--chunk-size", "0"]
    env = dict(os.environ)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("*.json")) or len(list(out.glob("p*.json"))) < 2:
        if proc.poll() is not None or time.time() > deadline:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {p.stem for p in out.glob("p*.json") if not p.name.endswith(".pae.json")}
    assert 0 < len(done_before) < len(names), "the kill should land mid-run"
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["runs"][-1]["counts"]
    assert counts["skipped"] == len(done_before) and counts["folded"] == len(names) - len(done_before)
    assert counts["failed"] == 0
    for n in names:
        assert json.loads((out / f"{n}.json").read_text())["name"] == n
    assert not list(out.glob(".*.tmp")), "no temp file may survive a rerun"


@pytest.mark.parametrize("args, message", [
    (["--device", "cuda"], "no CUDA device"),
    (["--device", "toaster"], "unknown device 'toaster'"),
    (["--dtype", "float8"], "unknown dtype 'float8'"),
])
def test_bad_device_or_dtype_is_one_line(tmp_path, tiny_checkpoint, capsys, args, message):
    code, err = _run(["fold", "MKT", "-m", str(tiny_checkpoint), "-o", str(tmp_path / "o")] + args, capsys)
    assert code == 2 and message in err and err.count("\n") == 1


def test_unwritable_output_is_one_line(tmp_path, tiny_checkpoint, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = _run(["fold", "MKT", "-m", str(tiny_checkpoint), "-o", str(blocker / "out"), "-q"], capsys)
    assert code == 2 and err.startswith("error: --output") and err.count("\n") == 1


@pytest.mark.smoke
def test_default_model_folds_offline_names_itself_and_says_so_once(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    """No --model: the shipped foldatlas-fold-small folds a real protein with no network."""
    from foldatlas.models import DEFAULT_FOLD_MODEL

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    out = tmp_path / "out"
    ubiquitin = "MQIFVKTLTGKTITLEVEPSDTIENVKAKIQDKEGIPPDQQRLIFAGKQLEDGRTLSDYNIQKESTLHLVLRLRGG"
    code, err = _run(["fold", ubiquitin, "--name", "ubiquitin", "-o", str(out), "-q", "--no-plot"], capsys)
    assert code == 0, err
    assert err.count("ESMFold is far more accurate") == 1 and "--model facebook/esmfold_v1" in err
    record = json.loads((out / "ubiquitin.json").read_text())
    assert record["model"] == DEFAULT_FOLD_MODEL and 0 < record["mean_plddt"] < 100
    assert DEFAULT_FOLD_MODEL in (out / "ubiquitin.pdb").read_text().splitlines()[0]
    assert json.loads((out / "manifest.json").read_text())["model"]["name"] == DEFAULT_FOLD_MODEL
    # Other models say nothing of the kind.
    code, err = _run(["fold", "MKTAYIAKQR", "-m", str(tiny_checkpoint), "-o", str(tmp_path / "o2"), "-q"], capsys)
    assert code == 0 and "far more accurate" not in err
