"""What the outputs say is what happened: whole names in PDB headers, TER between chains, the recycles that ran,
limits in real residues, FASTA exports that round-trip, export permissions like every other output, progress bars
that finish."""

from __future__ import annotations

import json
import os
import stat

import pytest

from foldatlas.cli.main import main

LONG_NAME = "a_record_with_a_very_long_name_that_no_68_column_pdb_line_holds_" * 2


def _remark_text(pdb: str) -> str:
    return "".join(line[11:] for line in pdb.splitlines() if line.startswith("REMARK 250"))


def test_pdb_keeps_whole_names_and_has_ter_between_chains(tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "out"
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">{LONG_NAME} a description that is long as well, for good measure\nMKTAYIAKQR:GSHMLEDPVV\n")
    assert main(["fold", str(fasta), "-m", str(tiny_checkpoint), "-o", str(out), "-q"]) == 0
    [pdb_path] = out.glob("*.pdb")
    pdb = pdb_path.read_text()
    lines = pdb.splitlines()
    assert max(len(line) for line in lines) <= 80
    text = _remark_text(pdb)
    assert LONG_NAME in text and "for good measure" in text and tiny_checkpoint.name in text
    ter = [i for i, line in enumerate(lines) if line.startswith("TER")]
    atoms = [i for i, line in enumerate(lines) if line.startswith("ATOM")]
    assert len(ter) == 2 and lines[ter[0] - 1][21] == "A" and lines[ter[0] + 1][21] == "B" and ter[1] > atoms[-1]
    serials = [int(lines[i][6:11]) for i in sorted(atoms + ter)]
    assert serials == list(range(1, len(serials) + 1))  # TER takes a serial number, as the PDB format counts
    from foldatlas.structure.io import read_structure

    atoms_read = read_structure(pdb_path)
    assert sorted(set(atoms_read.chain_id)) == ["A", "B"] and len(atoms_read) == len(atoms)


def test_recycles_that_ran_are_recorded_never_null(tmp_path, tiny_checkpoint, tiny_model, capsys):
    out = tmp_path / "out"
    assert main(["fold", "MKTAYIAKQR", "-m", str(tiny_checkpoint), "-o", str(out), "-q"]) == 0
    default = tiny_model.default_num_recycles
    assert default == tiny_model.model.config.esmfold_config.trunk.max_recycles - 1
    assert json.loads((out / "query.json").read_text())["num_recycles"] == default
    assert json.loads((out / "manifest.json").read_text())["options"]["num_recycles"] == default
    assert f"num_recycles {default}" in _remark_text((out / "query.pdb").read_text())
    # the same number given explicitly is the same run: the folder is resumed, not refused
    assert main(["fold", "MKTAYIAKQR", "-m", str(tiny_checkpoint), "-o", str(out), "-q",
                 "--num-recycles", str(default)]) == 0
    assert main(["fold", "MKTAYIAKQR", "-m", str(tiny_checkpoint), "-o", str(out), "-q",
                 "--num-recycles", str(default + 1)]) == 4

    atlas = tmp_path / "atlas"
    assert main(["atlas", "build", "MKTAYIAKQR", "-a", str(atlas), "-m", str(tiny_checkpoint), "--no-embed",
                 "-q"]) == 0
    capsys.readouterr()
    assert main(["atlas", "stats", "-a", str(atlas), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["build_model"]["num_recycles"] == default
    from foldatlas.atlas import open_atlas

    with open_atlas(atlas, readonly=True) as a:
        assert a.get("query").provenance["num_recycles"] == default


def test_an_atlas_that_stored_null_recycles_takes_the_default(tmp_path, tiny_model):
    from foldatlas.atlas import BuildOptions, open_atlas
    from foldatlas.atlas.build import check_folding_model

    with open_atlas(tmp_path / "a", create=True) as atlas:  # as foldatlas wrote it before recycles were resolved
        atlas.set_meta("build_model", {"name": tiny_model.name, "weights_sha256": tiny_model.weights_sha256,
                                       "num_recycles": None, "source": "folder"})
        check_folding_model(atlas, tiny_model, BuildOptions())
        assert atlas.get_meta("build_model")["num_recycles"] == tiny_model.default_num_recycles


def test_length_limits_count_real_residues_not_the_linker(tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "out"
    # 2 x 30 residues: 60 real, 85 positions with fair-esm's 25-glycine linker
    assert main(["fold", "A" * 30 + ":" + "G" * 30, "-m", str(tiny_checkpoint), "-o", str(out), "-q",
                 "--max-length", "60"]) == 0
    assert main(["fold", "A" * 30 + ":" + "G" * 31, "--name", "longer", "-m", str(tiny_checkpoint), "-o", str(out),
                 "-q", "--max-length", "60"]) == 1
    assert "61 residues exceed the limit of 60" in capsys.readouterr().err


def test_fasta_export_names_each_id_once_and_round_trips(tmp_path, tiny_checkpoint, capsys):
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">P1 lysozyme C, chicken\nKVFGRCELAAAMKRHGLDNY\n>P2\nMKTAYIAKQR\n")
    first, second = tmp_path / "a1", tmp_path / "a2"
    common = ["-m", str(tiny_checkpoint), "--no-embed", "-q"]
    assert main(["atlas", "build", str(fasta), "-a", str(first), *common]) == 0
    assert main(["atlas", "export", "-a", str(first), "--fasta", str(tmp_path / "e1.fasta")]) == 0
    exported = (tmp_path / "e1.fasta").read_text()
    assert exported.splitlines()[0::2] == [">P1 lysozyme C, chicken", ">P2"]
    assert main(["atlas", "build", str(tmp_path / "e1.fasta"), "-a", str(second), *common]) == 0
    assert main(["atlas", "export", "-a", str(second), "--fasta", str(tmp_path / "e2.fasta")]) == 0
    assert (tmp_path / "e2.fasta").read_text() == exported
    capsys.readouterr()
    assert main(["atlas", "get", "P1", "-a", str(first), "-f", "fasta"]) == 0
    assert capsys.readouterr().out.startswith(">P1 lysozyme C, chicken\n")


def test_exported_files_get_the_permissions_of_other_outputs(tmp_path, tiny_checkpoint, capsys):
    old = os.umask(0o022)
    try:
        atlas = tmp_path / "atlas"
        assert main(["atlas", "build", "MKTAYIAKQR", "-a", str(atlas), "-m", str(tiny_checkpoint), "--no-embed",
                     "-q"]) == 0
        assert main(["atlas", "export", "-a", str(atlas), "--fasta", str(tmp_path / "x.fasta"), "--metadata",
                     str(tmp_path / "x.parquet"), "--structures", str(tmp_path / "tars")]) == 0
        assert main(["atlas", "get", "query", "-a", str(atlas), "-f", "pdb", "-o", str(tmp_path / "q.pdb")]) == 0
        files = [tmp_path / "x.fasta", tmp_path / "x.parquet", tmp_path / "q.pdb", *(tmp_path / "tars").iterdir()]
        assert len(files) == 4
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    finally:
        os.umask(old)


@pytest.mark.parametrize("args", [["--mutations", "M1A,K2G"], ["--mutations", "M1A", "--methods", "pll"]])
def test_progress_bars_finish(run_cli, tmp_path, tiny_lm_checkpoint, args):
    result = run_cli("variants", "MKTAYIAKQR", *args, "-o", "v.csv", "--model", str(tiny_lm_checkpoint), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    last = [part for part in result.stderr.replace("\r", "\n").splitlines() if "scoring" in part][-1]
    assert "100%" in last, result.stderr
