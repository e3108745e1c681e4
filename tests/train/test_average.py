"""Averaging fine-tunings of one folding model (``foldatlas train fold-average``)."""

from __future__ import annotations

import json
import shutil

import pytest


def _two_runs(tiny_fold, tmp_path):
    """Two run folders holding the tiny model, the second's first floating tensor moved by +1."""
    from safetensors.torch import load_file, save_file

    _, model = tiny_fold
    a, b = tmp_path / "a", tmp_path / "b"
    for run in (a, b):
        shutil.copytree(model.parent, run, ignore=shutil.ignore_patterns("state", "*.npz"))
    state = load_file(str(b / "model" / "model.safetensors"))
    name = next(k for k, v in state.items() if v.is_floating_point() and not k.startswith("esm."))
    state[name] = state[name] + 1.0
    save_file(state, str(b / "model" / "model.safetensors"))
    (b / "config.json").write_text(json.dumps(dict(json.loads((b / "config.json").read_text()), violation_clash=0.2)))
    return a, b, name


def test_average_is_weighted_and_lends_the_heaviest_runs_config(tiny_fold, tmp_path):
    from safetensors.torch import load_file

    from foldatlas.train.average import average_fold_runs

    a, b, name = _two_runs(tiny_fold, tmp_path)
    summary = average_fold_runs([(a, 1.0), (b, 3.0)], tmp_path / "avg")
    avg = load_file(str(tmp_path / "avg" / "model" / "model.safetensors"))
    ref = load_file(str(a / "model" / "model.safetensors"))
    assert float((avg[name] - ref[name].float()).abs().max()) == pytest.approx(0.75, abs=1e-5)
    assert all(avg[k].equal(ref[k].float()) for k in ref if k != name and ref[k].is_floating_point())
    assert summary["tensors_differing"] == 1 and [r["weight"] for r in summary["runs"]] == [0.25, 0.75]
    assert summary["lead"] == 1 and json.loads((tmp_path / "avg" / "config.json").read_text())["violation_clash"] == 0.2
    assert json.loads((tmp_path / "avg" / "average.json").read_text())["runs"][0]["run"] == str(a)
    assert {p.name for p in (tmp_path / "avg" / "model").iterdir()} == {p.name for p in (a / "model").iterdir()}

    from transformers import EsmForProteinFolding

    EsmForProteinFolding.from_pretrained(str(tmp_path / "avg" / "model"))  # loads as a model


def test_average_refuses_what_it_cannot_average(tiny_fold, tmp_path):
    from safetensors.torch import load_file, save_file

    from foldatlas.errors import InvalidFileError, InvalidOptionError
    from foldatlas.train.average import average_fold_runs

    a, b, name = _two_runs(tiny_fold, tmp_path)
    with pytest.raises(InvalidOptionError, match="at least two"):
        average_fold_runs([(a, 1.0)], tmp_path / "x")
    with pytest.raises(InvalidOptionError, match="positive"):
        average_fold_runs([(a, 1.0), (b, 0.0)], tmp_path / "x")
    with pytest.raises(InvalidFileError, match="not a run folder"):
        average_fold_runs([(a, 1.0), (tmp_path, 1.0)], tmp_path / "x")
    state = load_file(str(b / "model" / "model.safetensors"))
    state[name] = state[name][..., :1]
    save_file(state, str(b / "model" / "model.safetensors"))
    with pytest.raises(InvalidOptionError, match="not the same architecture"):
        average_fold_runs([(a, 1.0), (b, 1.0)], tmp_path / "x")
    assert not (tmp_path / "x").exists()
