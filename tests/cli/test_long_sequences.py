"""Raw sequences of any length on the command line: an argument that is no file and reads as a sequence is a sequence.

A 2,000-residue argument is longer than any file name the OS accepts (255 bytes); looking it up as a path first
once stopped every command with "File name too long".
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.smoke

LONG = "".join(np.random.default_rng(7).choice(list("ACDEFGHIKLMNPQRSTVWY"), 2000))


def _ok(result, code: int = 0) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr and "too long:" not in result.stderr.lower()
    assert "file name too long" not in result.stderr.lower()


def test_fold_takes_a_2000_residue_argument(run_cli, tmp_path, tiny_checkpoint):
    # --max-length keeps the test fast: the record is read, counted and skipped with its reason (exit 1).
    result = run_cli("fold", LONG, "-m", str(tiny_checkpoint), "-o", "out", "-q", "--max-length", "100", cwd=tmp_path)
    _ok(result, code=1)
    assert "2000 residues exceed the limit of 100 (--max-length)" in result.stderr
    assert "2000\t1" in (tmp_path / "out" / "summary.tsv").read_text()


def test_atlas_build_and_search_take_a_2000_residue_argument(run_cli, tmp_path, tiny_checkpoint):
    atlas = str(tmp_path / "atlas")
    _ok(run_cli("atlas", "build", LONG[:60], LONG, "-a", atlas, "-m", str(tiny_checkpoint), "--no-embed", "-q",
                "--max-length", "100", cwd=tmp_path), code=1)  # the long one is recorded as a failure
    stats = json.loads(run_cli("atlas", "stats", "-a", atlas, "--json", "--failures").stdout)
    assert stats["entries"] == 1 and "2000 residues" in json.dumps(stats["failed_records"])
    result = run_cli("atlas", "search", "-a", atlas, "--sequence", LONG, "-f", "json", cwd=tmp_path)
    _ok(result)
    [query] = json.loads(result.stdout)
    assert query["length"] == 2000 and query["hits"][0]["target"] == "query_1"


def test_language_model_tools_take_a_2000_residue_argument(run_cli, tmp_path, tiny_lm_checkpoint):
    m = ["--model", str(tiny_lm_checkpoint), "-q"]
    _ok(run_cli("embed", LONG, "-o", "e.npz", "--per-residue", *m, cwd=tmp_path))
    assert np.load(tmp_path / "e.npz")["query/per_residue/2"].shape == (2000, 32)
    # Variant scores over the model's 1,022-residue context come from the window centred on each position.
    _ok(run_cli("variants", LONG, "--mutations", f"{LONG[0]}1A,{LONG[1999]}2000C", "-o", "v.csv", *m, cwd=tmp_path))
    assert (tmp_path / "v.csv").read_text().count("\n") == 3


@pytest.mark.parametrize("command", [["contacts", "-o", "maps"], ["unmask"]])
def test_tools_that_need_the_whole_sequence_in_context_name_their_limit(run_cli, tmp_path, tiny_lm_checkpoint, command):
    seq = LONG if command[0] == "contacts" else LONG[:1500] + "_"
    result = run_cli(command[0], seq, *command[1:], "--model", str(tiny_lm_checkpoint), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "at most 1022" in result.stderr and "file name" not in result.stderr.lower()
