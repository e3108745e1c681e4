"""``foldatlas atlas``: build, get, search, stats, export, import from the command line; errors as one line."""

import json

import pytest

from foldatlas.cli.main import main

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRL"


def _run(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture()
def built(tmp_path, tiny_checkpoint, capsys):
    atlas = tmp_path / "atlas"
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">p1 first protein\n{SEQ}\n>p2\n{SEQ}\n>p3\nGSHMLEDPVVKKLLEEAAKRGVDLS\n")
    code, _, err = _run(["atlas", "build", str(fasta), "--atlas", str(atlas), "-m", str(tiny_checkpoint), "-q"], capsys)
    assert code == 0, err
    assert "2 folded, 1 stored as aliases" in err
    return atlas


@pytest.mark.smoke
def test_build_get_stats_search_export(built, tmp_path, capsys, split_dir):
    a = ["--atlas", str(built)]
    code, out, _ = _run(["atlas", "get", "p2", *a], capsys)  # an alias
    assert code == 0 and "foldatlas atlas entry p1" in out and "ATOM" in out
    code, out, _ = _run(["atlas", "get", "p1", *a, "-f", "json"], capsys)
    data = json.loads(out)
    assert data["id"] == "p1" and len(data["predicted_aligned_error"]) == len(SEQ) and len(data["embedding"]) == 256
    code, out, _ = _run(["atlas", "get", "p1", *a, "-f", "pae"], capsys)
    assert json.loads(out)[0]["max_predicted_aligned_error"] == pytest.approx(31.75)
    assert _run(["atlas", "get", "p1", *a, "-f", "bcif", "-o", str(tmp_path / "p1.bcif")], capsys)[0] == 0
    assert (tmp_path / "p1.bcif").stat().st_size > 0
    assert _run(["atlas", "get", "p1", *a, "-f", "cif", "-o", str(tmp_path / "p1.cif")], capsys)[0] == 0
    assert "_atom_site" in (tmp_path / "p1.cif").read_text()
    code, out, _ = _run(["atlas", "stats", *a, "--json"], capsys)
    stats = json.loads(out)
    assert stats["entries"] == 2 and stats["aliases"] == 1 and stats["by_kind"] == {"predicted": 2}
    code, out, err = _run(["atlas", "search", "-s", SEQ[5:90], *a], capsys)
    lines = out.strip().split("\n")
    assert code == 0 and lines[0].startswith("query\ttarget") and lines[1].split("\t")[1] == "p1"
    code, out, _ = _run(["atlas", "search", "-s", SEQ, *a, "--exhaustive", "-f", "json"], capsys)
    hit = json.loads(out)[0]["hits"][0]
    assert hit["target"] == "p1" and hit["identity"] == 1.0 and hit["query_aligned"] == SEQ
    code, _, err = _run(["atlas", "export", *a, "--fasta", str(tmp_path / "x.fa"), "--metadata",
                         str(tmp_path / "x.parquet"), "--structures", str(tmp_path / "tars")], capsys)
    assert code == 0 and (tmp_path / "x.parquet").is_file() and list((tmp_path / "tars").glob("*.tar"))
    code, _, err = _run(["atlas", "import", str(split_dir), *a, "-q"], capsys)
    assert code == 0 and "4 imported" in err


@pytest.mark.parametrize("args, message, exit_code", [
    (["get", "nope"], "no entry 'nope'", 2),
    (["get", "p1", "-f", "xml"], "--format must be one of", 2),
    (["get", "p1", "-f", "bcif"], "give --output", 2),
    (["get", "p3", "-f", "tsv"], "--format must be one of", 2),
    (["search", "-s", "MKTJQ"], "invalid residue 'J' at position 4", 2),
    (["search", "-s", "MKTAYIAKQR:GSHMLEDPVV"], "search one chain at a time", 2),
    (["search", "-s", "missing.fasta"], "no such file", 2),
    (["search", "-s", SEQ, "--evalue", "0"], "--evalue must be > 0", 2),
    (["search", "-s", SEQ, "--engine", "blast"], "--engine must be one of", 2),
    (["export"], "nothing to export", 2),
    (["build", "MKTAYIAK", "-m", "nope"], "unknown model 'nope'", 3),
    (["import", "missing_dir"], "no such file or folder", 2),
])
def test_errors_are_one_line(built, capsys, args, message, exit_code):
    code, _, err = _run(["atlas", *args, "--atlas", str(built)], capsys)
    assert code == exit_code and message in err and err.count("\n") == 1 and err.startswith("error: ")


def test_failed_records_exit_1(tmp_path, built, tiny_checkpoint, capsys):
    code, _, err = _run(["atlas", "build", "MKTAYIAKQR", "--name", "p1", "--atlas", str(built), "-m",
                         str(tiny_checkpoint), "-q"], capsys)
    assert code == 1 and "ID already in the atlas with another sequence" in err and "1 failed" in err
    code, _, err = _run(["fold", "MKTAYIAKQRQISFV", "-o", str(tmp_path / "out"), "-m", str(tiny_checkpoint), "-q",
                         "--max-length", "5"], capsys)
    assert code == 1 and "1 failed" in err


def test_not_an_atlas_and_other_weights(tmp_path, built, capsys):
    code, _, err = _run(["atlas", "get", "x", "--atlas", str(tmp_path / "none")], capsys)
    assert code == 2 and "not an atlas" in err and not (tmp_path / "none").exists()
    from foldatlas.models.random_checkpoint import write_random_esmfold

    other = write_random_esmfold(tmp_path / "other", size="tiny", seed=3)
    code, _, err = _run(["atlas", "build", "MKTAYIAK", "--atlas", str(built), "-m", str(other), "-q"], capsys)
    assert code == 4 and "holds predictions of model" in err


def test_structure_search_cli(tmp_path, split_dir, capsys):
    a = ["--atlas", str(tmp_path / "atlas")]
    assert _run(["atlas", "import", str(split_dir), *a, "-q", "--no-embed"], capsys)[0] == 0
    code, out, _ = _run(["atlas", "search", "--structure", str(split_dir / "1DFU_C.pdb"), *a, "--max-hits", "3",
                         "--superposed", str(tmp_path / "sup")], capsys)
    lines = out.strip().split("\n")
    assert code == 0 and lines[0].startswith("query\ttarget\tchain\ttm_score") and len(lines) == 4
    top = dict(zip(lines[0].split("\t"), lines[1].split("\t")))
    assert top["target"] == "1DFU_C" and float(top["tm_score"]) > 0.99 and top["method"] == "refined"
    assert float(top["evalue"]) < 1e-3
    assert len(list((tmp_path / "sup").glob("*.pdb"))) == 3
    code, out, _ = _run(["atlas", "search", "--structure", "1DFU_C", *a, "--max-hits", "3", "--tmalign", "1",
                         "-f", "json"], capsys)
    hits = json.loads(out)[0]["hits"]
    assert code == 0 and [h["method"] for h in hits] == ["tmalign", "refined", "refined"]
    code, out, _ = _run(["atlas", "search", "--structure", "1DFU_C", *a, "--no-refine", "-f", "json"], capsys)
    assert code == 0 and json.loads(out)[0]["hits"][1]["method"] == "alignment"
    code, out, _ = _run(["atlas", "search", "--structure", "1AX8_A", *a, "-f", "json", "--exhaustive"], capsys)
    hits = json.loads(out)[0]["hits"]
    assert code == 0 and len(hits) == 4 and all(h["method"] == "tmalign" for h in hits)
    code, out, _ = _run(["atlas", "search", "--structure", "1AX8_A", *a, "-f", "json", "--structure-prefilter",
                         "kmer"], capsys)
    assert code == 0 and json.loads(out)[0]["hits"][0]["target"] == "1AX8_A"
    for args, message in ((["--structure", "NOPE"], "no entry 'NOPE'"),
                          (["--structure", "1AX8_A", "--structure-prefilter", "blast"],
                           "--structure-prefilter must be one of"),
                          (["--structure", str(tmp_path / "x.pdb")], "no such file"),
                          (["--structure", "1AX8_A", "--sequence", "MKT"], "either --sequence or --structure"),
                          (["--structure", "1AX8_A", "--min-tm", "2"], "--min-tm"),
                          (["--structure", "1AX8_A", "--chain", "Q"], "no chain Q"),
                          (["--structure", "1AX8_A", "--mode", "dali"], "--mode must be one of")):
        code, _, err = _run(["atlas", "search", *args, *a], capsys)
        assert code == 2 and message in err and err.count("\n") == 1, err
