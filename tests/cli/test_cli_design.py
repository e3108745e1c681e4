"""``foldatlas design`` as a user runs it: FASTA out, sequences scored, one-line errors."""

import json


def test_design_writes_fasta_and_scores_sequences(run_cli, split_dir, tmp_path):
    out = tmp_path / "designs.fasta"
    done = run_cli("design", str(split_dir / "1BUN_B.pdb"), "-n", "2", "--batch-size", "2", "--seed", "3",
                   "--omit", "C", "-o", str(out), timeout=300)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert text.count(">") == 3 and ">1BUN_B native score=" in text and ">1BUN_B_design_2 score=" in text
    native = text.splitlines()[1]
    scored = run_cli("design", str(split_dir / "1BUN_B.pdb"), "--score", native, "--json", timeout=300)
    assert scored.returncode == 0, scored.stderr
    result = json.loads(scored.stdout)[0]
    assert result["sequence"] == native and result["mean"] < 0 and len(result["per_residue"]) == len(native)


def test_design_errors_are_one_line(run_cli, split_dir, tmp_path):
    for args, message in ((["--fixed", "Z1-5"], "--fixed: no chain Z"), (["--bias", "A=1"], "--bias"),
                          (["--temperature", "0"], "--temperature"), (["--model", "esmfold_v1"], "is a fold model")):
        done = run_cli("design", str(split_dir / "1BUN_B.pdb"), *args, timeout=300)
        assert done.returncode != 0 and "Traceback" not in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, (args, done.stderr)
    missing = run_cli("design", str(tmp_path / "nope.pdb"))
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_variants_with_a_structure_add_proteinmpnn_scores(run_cli, split_dir, tmp_path):
    from foldatlas.design import backbone
    from foldatlas.structure.io import read_structure

    native = backbone(read_structure(split_dir / "1BUN_B.pdb")).sequence
    out = tmp_path / "v.csv"
    done = run_cli("variants", native, "--mutations", f"{native[4]}5A,{native[9]}10P", "--methods", "wt_marginal",
                   "--structure", str(split_dir / "1BUN_B.pdb"), "-o", str(out), "-q", timeout=300)
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "mutant,n_mutations,wt_marginal,proteinmpnn" and len(lines) == 3
    assert all(line.split(",")[-1] not in ("", "nan") for line in lines[1:])


def test_refold_reports_self_consistency(run_cli, split_dir, tmp_path, tiny_checkpoint):
    """--refold folds each design (here with a tiny random folding model: the numbers mean nothing, the plumbing
    is what is tested) and writes the models."""
    out, models = tmp_path / "d.fasta", tmp_path / "models"
    done = run_cli("design", str(split_dir / "1BUN_B.pdb"), "-n", "2", "--batch-size", "2", "--refold",
                   str(tiny_checkpoint), "--refold-dir", str(models), "-o", str(out), timeout=600)
    assert done.returncode == 0, done.stderr
    headers = [line for line in out.read_text().splitlines() if line.startswith(">")]
    assert len(headers) == 3 and all("sc_tm=" in h and "plddt=" in h for h in headers)
    assert sorted(p.name for p in models.iterdir()) == ["1BUN_B_design_1.pdb", "1BUN_B_design_2.pdb",
                                                        "1BUN_B_native.pdb"]
    assert "scTM" in done.stderr
    bad = run_cli("design", str(split_dir / "1BUN_B.pdb"), "--refold-dir", str(models))
    assert bad.returncode != 0 and "needs --refold" in bad.stderr
