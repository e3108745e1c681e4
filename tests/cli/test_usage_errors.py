"""Usage mistakes through the installed console script: one usage line, one ``error:`` line, exit 2, no traceback.

These run ``foldatlas`` as a user does (a subprocess of the console script pip installed), so they catch what an
in-process ``main()`` call cannot: the entry point, and whichever Typer/Click versions the dependency bounds let
pip resolve (Typer 0.29 bundles its own click, which once turned every usage mistake into a traceback).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.smoke

# (arguments, what the message must name), across commands; each is a mistake a user makes in the first hour.
USAGE_MISTAKES = [
    (["fold"], "inputs"),                                            # no argument
    (["flod", "MKT"], "flod"),                                       # a typo in the command
    (["fold", "MKT", "--bogus"], "--bogus"),                         # an unknown option
    (["fold", "MKT", "-o"], "-o"),                                   # an option without its value
    (["fold", "MKT", "--num-recycles", "abc"], "--num-recycles"),   # not a number
    (["fold", "MKT", "--max-length", "-5"], "--max-length"),        # out of range
    (["fold", "MKT", "--threads", "0"], "--threads"),
    (["fold", "MKT", "--num-recycles", "25"], "--num-recycles"),     # above engine.MAX_RECYCLES (24)
    (["atlas", "build", "MKT", "--atlas", "a", "--ray"], "--ray"),
    (["atlas", "search", "--sequence", "MKT"], "--atlas"),           # a required option missing
    (["atlas", "get"], "entry_id"),
    (["atlas", "frobnicate"], "frobnicate"),
    (["serve", "--port", "abc"], "--port"),
    (["serve", "--port", "70000"], "--port"),
    (["compare", "a.pdb"], "reference"),                             # the second argument missing
    (["embed", "MKT"], "--output"),
    (["unmask", "MK_T", "--top-k", "0"], "--top-k"),
    (["variants", "MKT", "--offset", "x"], "--offset"),
    (["train", "fold", "--steps", "many"], "--steps"),
    (["--no-such-flag"], "--no-such-flag"),
]


@pytest.mark.parametrize("args, names", USAGE_MISTAKES, ids=[" ".join(a) for a, _ in USAGE_MISTAKES])
def test_usage_mistake_is_a_usage_line_and_an_error_line(run_cli, tmp_path, args, names):
    result = run_cli(*args, cwd=tmp_path)
    err = result.stderr
    assert result.returncode == 2, err
    assert "Traceback" not in err and "Traceback" not in result.stdout
    lines = err.strip("\n").split("\n")
    assert len(lines) == 2, err
    assert lines[0].startswith("usage: foldatlas") and lines[1].startswith("error: "), err
    assert names.lower() in lines[1].lower(), err
    assert list(tmp_path.iterdir()) == []  # a refused command creates nothing


def test_group_without_a_command_prints_its_help_and_exits_2(run_cli, tmp_path):
    result = run_cli("atlas", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    shown = result.stdout + result.stderr  # Typer's Rich help prints itself to stdout
    assert "build" in shown and "search" in shown


@pytest.mark.parametrize("command", [["fold", "MKT"], ["atlas", "build", "MKT", "-a", "x"], ["serve"]])
def test_every_num_recycles_option_stops_at_the_engine_s_ceiling(run_cli, tmp_path, command):
    from foldatlas.predict.engine import MAX_RECYCLES

    result = run_cli(*command, "--num-recycles", str(MAX_RECYCLES + 1), cwd=tmp_path)
    assert result.returncode == 2 and "--num-recycles" in result.stderr and "Traceback" not in result.stderr
    assert f"less than or equal to {MAX_RECYCLES}" in result.stderr or f"{MAX_RECYCLES}" in result.stderr


def test_help_and_version_exit_0(run_cli):
    assert run_cli("--version").stdout.startswith("foldatlas ")
    result = run_cli("fold", "--help")
    assert result.returncode == 0 and "--num-recycles" in result.stdout


# Refusals that need the command's own checks: each before any model loads, each leaving nothing behind.
REFUSALS = [
    (["fold", "MKT", "-o", "afile"], "--output afile"),
    (["fold", "MKT", "-o", "out", "--dtype", "float8"], "dtype"),
    (["fold", "MKT", "-o", "out", "--device", "tpu"], "device"),
    (["atlas", "build", "MKT", "--atlas", "afile"], "--atlas afile"),
    (["atlas", "build", "MKT", "--atlas", "new", "--ray", "nohost"], "--ray"),
    (["atlas", "build", "MKT", "--atlas", "new", "--ray", "127.0.0.1:1"], "--ray 127.0.0.1:1"),
    (["embed", "MKT", "-o", "x.txt"], "--output x.txt"),
    (["embed", "MKT", "-o", "x.npy", "--layers", "0,-1"], ".npy"),
    (["contacts", "MKT:GAV", "-o", "maps"], "complex"),
    (["variants", "MKT", "--mutations", "M1A", "--heatmap", "scan.jpg"], "--heatmap"),
    (["variants", "MKT", "--mutations", "M1A", "--methods", "magic"], "magic"),
    (["atlas", "export", "--atlas", "new", "--fasta", "x.fa", "--bin-width", "0"], "--bin-width"),
    (["atlas", "search", "--atlas", "new", "--sequence", "MKT", "--evalue", "-1"], "--evalue"),
    (["compare", "afile", "afile", "--superposed", "x.txt"], "--superposed"),
    (["serve", "--atlas", "afile"], "--atlas afile"),
    (["serve", "--atlas", "new", "--device", "tpu"], "device"),
    (["serve", "--atlas", "new", "--log-level", "loud"], "--log-level"),
]
MODEL_REFUSALS = [  # exit 3: a model problem; the atlas folder the service would have made is not left behind
    (["serve", "--atlas", "new", "--embedding-model", "no/such-model", "--port", "1"], "no/such-model"),
    (["serve", "--atlas", "new", "--model", "nope", "--port", "1"], "unknown model 'nope'"),
]


@pytest.mark.parametrize("args, names, code", [(a, n, 2) for a, n in REFUSALS] + [(a, n, 3) for a, n in MODEL_REFUSALS],
                         ids=[" ".join(a) for a, _ in REFUSALS + MODEL_REFUSALS])
def test_bad_option_values_are_refused_before_anything_is_made(run_cli, tmp_path, args, names, code):
    (tmp_path / "afile").write_text("not a folder\n")
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip("\n").split("\n")[-1]
    assert last.startswith("error: ") and names in last, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing created
