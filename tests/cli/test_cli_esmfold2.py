"""ESMFold2 through the command line (tiny random checkpoint)."""

from __future__ import annotations

import json

import pytest

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGW"


def test_fold_writes_best_sample_every_sample_pde_and_resumes(run_cli, tiny_fold2_checkpoint, tmp_path):
    out = tmp_path / "out"
    args = ("fold", f"{SEQ}:GSHMDNLLK", "-m", str(tiny_fold2_checkpoint), "-o", str(out), "--seed", "4",
            "--num-samples", "2", "-q")
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    data = json.loads((out / "query.json").read_text())
    assert (data["seed"], data["num_samples"]) == (4, 2)
    assert "num_recycles" not in data
    assert [s["sample"] for s in data["samples"]] == [0, 1] and data["sample"] == data["best_sample"]
    assert data["iptm"] is not None and len(data["chain_pair_iptm"]) == 2
    for k in (0, 1):
        for suffix in ("pdb", "cif", "pae.json", "json"):
            assert (out / f"query_sample_{k}.{suffix}").is_file()
    best = data["best_sample"]
    assert (out / "query.pdb").read_text().split("\n", 3)[3] == \
        (out / f"query_sample_{best}.pdb").read_text().split("\n", 3)[3]  # same atoms (remarks differ)
    pde = json.loads((out / "query.pde.json").read_text())["predicted_distance_error"]
    assert len(pde) == data["length"]
    atoms = [line for line in (out / "query.pdb").read_text().splitlines() if line.startswith("ATOM")]
    assert 0 < max(float(line[60:66]) for line in atoms) <= 100  # per-atom pLDDT on the 0-100 scale
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["seed"] == 4 and manifest["options"]["num_loops"] == 2
    again = run_cli(*args)
    assert again.returncode == 0 and "1 already done" in again.stderr
    other = run_cli(*args[:6], "--seed", "5", "--num-samples", "2")
    assert other.returncode != 0 and "seed=4" in other.stderr and "Traceback" not in other.stderr


@pytest.mark.parametrize("extra, message", [
    (("--num-samples", "0"), "--num-samples"),
    (("--num-samples", "1000"), "--num-samples"),
    (("--num-recycles", "2"), "--num-loops"),
    (("--chunk-size", "8"), "chunk_size"),
])
def test_bad_options_one_line_nonzero_nothing_written(run_cli, tiny_fold2_checkpoint, tmp_path, extra, message):
    out = tmp_path / "out"
    done = run_cli("fold", SEQ, "-m", str(tiny_fold2_checkpoint), "-o", str(out), *extra)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


def test_v1_model_refuses_sampling_options(run_cli, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    done = run_cli("fold", SEQ, "-m", str(tiny_checkpoint), "-o", str(out), "--num-samples", "3")
    assert done.returncode == 2 and "ESMFold2" in done.stderr and not out.exists()


def test_nucleic_acid_record_is_refused(run_cli, tiny_fold2_checkpoint, tmp_path):
    fasta = tmp_path / "mixed.fa"
    fasta.write_text(f">A|protein\n{SEQ}\n>B|dna\nACGTACGT\n")
    out = tmp_path / "out"
    done = run_cli("fold", str(fasta), "-m", str(tiny_fold2_checkpoint), "-o", str(out))
    assert done.returncode == 2 and "DNA" in done.stderr and "protein chains only" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not out.exists()


def test_missing_language_model_weights_exit_3_nothing_written(run_cli, tiny_fold2_without_lm, tmp_path):
    out = tmp_path / "out"
    done = run_cli("fold", SEQ, "-m", str(tiny_fold2_without_lm), "-o", str(out))
    assert done.returncode == 3 and "language-model weights" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()
