"""``foldatlas train``: one-line errors for missing inputs, and the LM commands end to end on the fixture."""

from __future__ import annotations

import json

import pytest

from foldatlas.cli.main import main


def _run(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("args, message", [
    (["train", "lm", "--data", "{tmp}/nothing", "--out", "{tmp}/run"], "no lm_train.fasta"),
    (["train", "lm-release", "--run", "{tmp}", "--data", "{tmp}", "--dest", "{tmp}/w"], "no finished model"),
    (["train", "data", "--out", "{tmp}/d", "--exclude", "{tmp}/missing.fasta"], "no such file"),
    (["train", "lm", "--data", "{tmp}", "--out", "{tmp}/run", "--hidden", "30", "--heads", "4"], None),
    (["train", "fold-release", "--run", "{tmp}", "--data", "{tmp}", "--eval", "{tmp}", "--dest", "{tmp}/w",
      "--previous", "{tmp}/previous.json"], "previous.json: not a JSON file"),
    (["train", "fold-eval", "-m", "foldatlas-fold-small", "--eval", "{tmp}", "--previous", "{tmp}/previous.json"],
     "previous.json: not a JSON file"),
    (["train", "fold-average", "{tmp}/a=half", "{tmp}/b", "--out", "{tmp}/o"], "a=half: the weight after '='"),
    (["train", "fold-average", "{tmp}=1", "{tmp}=2", "--out", "{tmp}/o"], "not a run folder"),
])
def test_train_errors_are_one_line(tmp_path, capsys, args, message):
    if "--previous" in args:  # a finished run and evaluation domains, so that --previous is read
        (tmp_path / "model").mkdir()
        (tmp_path / "model" / "config.json").write_text("{}")
        (tmp_path / "targets.tsv").write_text("id\tfile\n")
        (tmp_path / "previous.json").write_text("{not json")
    if message is None:  # valid data folder, bad option
        (tmp_path / "lm_train.fasta").write_text(">a\nMKV\n")
        (tmp_path / "lm_valid.fasta").write_text(">b\nMKV\n")
        message = "not a multiple of --heads"
    code, _, err = _run([a.format(tmp=tmp_path) for a in args], capsys)
    assert code == 2 and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_train_lm_then_evaluate_from_the_command_line(tiny_data, tmp_path, capsys):
    data, _ = tiny_data
    run = tmp_path / "run"
    code, _, err = _run(["train", "lm", "--data", str(data), "--out", str(run), "--steps", "4", "--layers", "1",
                         "--hidden", "16", "--heads", "2", "--batch-size", "4", "--crop", "48", "--threads", "1"],
                        capsys)
    assert code == 0, err
    code, out, err = _run(["train", "lm-eval", "-m", str(run / "model"), "--data", str(data),
                           "-o", str(tmp_path / "m.json")], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert json.loads(out) == metrics and metrics["parameters"] > 0
    assert metrics["valid_uniprot"]["perplexity"] > 1.0
