"""The atlas build on a local Ray cluster (2 worker processes started by the tests): the same atlas as the
single-machine build, nothing lost when a worker is killed mid-run, resumable, and no Ray import without --ray."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from foldatlas.atlas import BuildOptions, build_atlas, open_atlas
from foldatlas.seq.records import make_record

ray = pytest.importorskip("ray")

AA = "ACDEFGHIKLMNPQRSTVWY"


def _records(n=10, seed=0):
    rng = np.random.default_rng(seed)
    recs = [make_record(f"P{k:02d}", "".join(rng.choice(list(AA), int(rng.integers(20, 60))))) for k in range(n)]
    recs.append(make_record("DUP", recs[3].sequence))  # identical sequence: folded once, stored as an alias
    return recs


def _dump(folder):
    with open_atlas(folder, readonly=True) as atlas:
        out = {}
        for meta in atlas.iter_metadata(("id", "checksum")):
            e = atlas.get(meta["id"])
            out[e.id] = (e.checksum, e.plddt, e.pae, e.embedding, e.atoms().coord)
        aliases = dict(atlas._conn.execute("SELECT alias, id FROM aliases").fetchall())
        return out, aliases, atlas.get_meta("build_model"), atlas.get_meta("embedding_model")


@pytest.fixture(scope="module")
def single_machine(tmp_path_factory, tiny_model):
    from foldatlas.models.embedding import load_embedder

    folder = tmp_path_factory.mktemp("single") / "atlas"
    with open_atlas(folder, create=True) as atlas:
        result = build_atlas(atlas, _records(), tiny_model, load_embedder("foldatlas-lm-small"),
                             BuildOptions(max_tokens_per_batch=64), progress=False, log=lambda m: None)
    assert result.folded == 10 and result.deduplicated == 1
    return folder


def _ray_build(folder, checkpoint, on_batch=None, records=None, workers=2):
    from foldatlas.scale.ray_build import RayOptions, build_atlas_ray

    with open_atlas(folder, create=True) as atlas:
        return build_atlas_ray(atlas, records or _records(), str(checkpoint), "foldatlas-lm-small",
                               BuildOptions(max_tokens_per_batch=64), RayOptions(workers=workers, max_in_flight=1),
                               device="cpu", progress=False, log=lambda m: None, on_batch=on_batch)


def _same_atlas(a, b):
    entries_a, aliases_a, model_a, lm_a = _dump(a)
    entries_b, aliases_b, model_b, lm_b = _dump(b)
    assert sorted(entries_a) == sorted(entries_b) and aliases_a == aliases_b == {"DUP": "P03"}
    assert model_a["weights_sha256"] == model_b["weights_sha256"] and lm_a["weights_sha256"] == lm_b["weights_sha256"]
    for key, (checksum, plddt, pae, emb, coord) in entries_a.items():
        other = entries_b[key]
        assert checksum == other[0]
        np.testing.assert_allclose(plddt, other[1], atol=0.05)  # batch composition differs: float rounding only
        np.testing.assert_allclose(pae, other[2], atol=0.2)
        np.testing.assert_allclose(emb, other[3], atol=1e-3)
        np.testing.assert_allclose(coord, other[4], atol=0.01)


def test_ray_build_makes_the_same_atlas_as_one_machine(single_machine, tiny_checkpoint, tmp_path):
    result = _ray_build(tmp_path / "ray", tiny_checkpoint)
    assert (result.folded, result.deduplicated, result.failed) == (10, 1, 0)
    _same_atlas(single_machine, tmp_path / "ray")
    again = _ray_build(tmp_path / "ray", tiny_checkpoint)  # a rerun folds nothing
    assert (again.folded, again.skipped) == (0, 11)
    from foldatlas.atlas.seqsearch import search_sequences

    with open_atlas(tmp_path / "ray") as atlas:  # the indexes were brought up to date
        hits = search_sequences(atlas, [_records()[5]])[0]
    assert hits[0].target == "P05"


def test_a_worker_killed_mid_run_loses_nothing(single_machine, tiny_checkpoint, tmp_path):
    killed = []

    def kill_one(state):
        if not killed and state["batch"] == 1:
            pid = state["workers"][0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    result = _ray_build(tmp_path / "ray", tiny_checkpoint, on_batch=kill_one)
    assert killed and result.failed == 0 and result.folded + result.deduplicated == 11
    _same_atlas(single_machine, tmp_path / "ray")
    with open_atlas(tmp_path / "ray", readonly=True) as atlas:
        assert atlas._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert atlas.failures() == []


def test_cli_builds_on_ray_and_nothing_imports_ray_without_it(tiny_checkpoint, tmp_path):
    fasta = tmp_path / "in.fasta"
    fasta.write_text("".join(f">{r.name}\n{r.sequence}\n" for r in _records(4)))
    args = ["atlas", "build", str(fasta), "--model", str(tiny_checkpoint), "--device", "cpu", "-q"]
    out = subprocess.run([sys.executable, "-m", "foldatlas.cli.main", *args, "--atlas", str(tmp_path / "a"), "--ray",
                          "local", "--ray-workers", "2"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "4 folded on Ray, 1 stored as aliases" in out.stderr
    probe = ("import sys, runpy; sys.argv = " + repr(["foldatlas", *args, "--atlas", str(tmp_path / "b")])
             + "\ntry:\n    runpy.run_module('foldatlas.cli.main', run_name='__main__')\nexcept SystemExit as e:\n"
             "    assert e.code == 0, e.code\nassert 'ray' not in sys.modules, 'ray imported'\n")
    single = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr


def test_ray_build_with_esmfold2_equals_one_machine(tiny_fold2_checkpoint, tiny_fold2_model, tmp_path):
    """ESMFold2 on Ray workers: each record is seeded alone, so the entries equal the one-machine build exactly."""
    from foldatlas.scale.ray_build import RayOptions, build_atlas_ray

    records = _records(n=4, seed=1)[:4]
    options = BuildOptions(seed=5, num_samples=2)
    with open_atlas(tmp_path / "one", create=True) as atlas:
        build_atlas(atlas, records, tiny_fold2_model, None, options, progress=False, log=lambda m: None)
    with open_atlas(tmp_path / "ray", create=True) as atlas:
        result = build_atlas_ray(atlas, records, str(tiny_fold2_checkpoint), None, options,
                                 RayOptions(workers=2, max_in_flight=1), device="cpu", progress=False,
                                 log=lambda m: None)
    assert (result.folded, result.failed) == (4, 0)
    with open_atlas(tmp_path / "one", readonly=True) as one, open_atlas(tmp_path / "ray", readonly=True) as ray_atlas:
        assert ray_atlas.get_meta("build_model") == one.get_meta("build_model")
        assert ray_atlas.get_meta("build_model")["seed"] == 5
        for record in records:
            a, b = one.get(record.name), ray_atlas.get(record.name)
            np.testing.assert_array_equal(a.atoms().coord, b.atoms().coord)
            assert a.provenance["samples"] == b.provenance["samples"]
