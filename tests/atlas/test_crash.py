"""Crash safety: a build killed with SIGKILL at any moment, then rerun, stores every record exactly once."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np

from foldatlas.atlas import open_atlas
from foldatlas.atlas import codec
from foldatlas.atlas.seqindex import load_shards

AA = "ACDEFGHIKLMNPQRSTVWY"


def _count(db) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_killed_build_resumes_without_loss_or_duplicates(tmp_path, tiny_checkpoint):
    rng = np.random.default_rng(11)
    seqs = ["".join(rng.choice(list(AA), int(rng.integers(30, 90)))) for _ in range(36)]
    records = [(f"r{k}", s) for k, s in enumerate(seqs)] + [("dup1", seqs[0]), ("dup2", seqs[5])]
    fasta = tmp_path / "in.fasta"
    fasta.write_text("".join(f">{n}\n{s}\n" for n, s in records))
    atlas_dir = tmp_path / "atlas"
    cmd = [sys.executable, "-m", "foldatlas.cli.main", "atlas", "build", str(fasta), "--atlas", str(atlas_dir),
           "-m", str(tiny_checkpoint), "-q", "--max-tokens-per-batch", "0", "--chunk-size", "0"]
    env = dict(os.environ)
    seen = []
    for stop_at in (3, 15):  # kill twice, at different points of the run
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None and _count(atlas_dir / "atlas.sqlite") < stop_at:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen.append(_count(atlas_dir / "atlas.sqlite"))
        con = sqlite3.connect(atlas_dir / "atlas.sqlite")
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        con.close()
    assert 0 < seen[0] <= seen[1] < len(seqs), f"the kills should land mid-run ({seen})"
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    with open_atlas(atlas_dir) as atlas:
        assert len(atlas) == len(seqs)
        assert atlas.stats()["aliases"] == 2 and atlas.failures() == []
        rows = list(atlas.iter_metadata(("rowid", "id", "checksum", "sequence")))
        assert sorted(r["id"] for r in rows) == sorted(f"r{k}" for k in range(len(seqs)))
        for r in rows:  # every stored entry is whole: checksum, structure and embedding of its own sequence
            assert r["checksum"] == codec.sequence_md5(r["sequence"]) == codec.sequence_md5(seqs[int(r["id"][1:])])
            e = atlas.get(r["id"])
            assert len(e.atoms()[e.atoms().atom_name == "CA"]) == len(r["sequence"]) and e.embedding is not None
        assert atlas.get("dup1").id == "r0" and atlas.get("dup2").id == "r5"
        indexed = sorted(int(x) for s in load_shards(atlas.folder) for x in s.target_row)
        assert indexed == sorted(r["rowid"] for r in rows)


def test_structure_index_killed_mid_update_resumes_with_every_chain_once(tmp_path, split_dir):
    """SIGKILL while the structure index (3Di, C-alphas) is being built leaves no partial shard; the next update
    indexes every entry exactly once (the sequence index of a killed build: the test above)."""
    from foldatlas.atlas import NewEntry
    from foldatlas.atlas.structindex import load_structure_shards
    from foldatlas.structure.io import ca_trace, read_structure

    atlas_dir = tmp_path / "atlas"
    structures = [read_structure(p) for p in sorted(split_dir.glob("*.pdb"))]
    blobs = [(codec.encode_structure(a), "".join(ca_trace(a)[1])) for a in structures]
    with open_atlas(atlas_dir, create=True) as atlas:
        atlas.insert([NewEntry(id=f"e{k}", sequence=blobs[k % len(blobs)][1], kind="imported", model="test",
                               structure=blobs[k % len(blobs)][0]) for k in range(400)])
    # the update marks that its first batch is indexed and then waits, so the kill lands mid-build on any machine
    script = ("import sys, time, pathlib\nimport foldatlas.atlas.structindex as si\nindex = si._index_blobs\n"
              "def slow(*args):\n    done = index(*args)\n    pathlib.Path(sys.argv[2]).touch()\n"
              "    time.sleep(60)\n    return done\n"
              "si._index_blobs = slow\nfrom foldatlas.atlas import open_atlas\n"
              "si.update_structure_index(open_atlas(sys.argv[1]))")
    marker = tmp_path / "first-batch-indexed"
    proc = subprocess.Popen([sys.executable, "-c", script, str(atlas_dir), str(marker)])
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists() and proc.poll() is None, "the update should be mid-build when killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with open_atlas(atlas_dir) as atlas:
        assert sum(s.size for s in load_structure_shards(atlas.folder)) == 0  # nothing half-written is visible
        from foldatlas.atlas.structindex import update_structure_index

        assert update_structure_index(atlas) == 400
        shards = load_structure_shards(atlas.folder)
        rows = sorted(int(r) for s in shards for r in s.target_row)
        assert rows == sorted(r["rowid"] for r in atlas.iter_metadata(("rowid",)))
        assert all((s.states3di < 20).mean() > 0.9 for s in shards)  # 3Di states stored


def test_killed_import_resumes_with_both_indexes_whole(tmp_path, split_dir):
    """``atlas import`` killed with SIGKILL while storing entries, then again while updating its indexes: the rerun
    stores every file once and both search indexes (sequences, structures) cover every entry exactly once."""
    from foldatlas.atlas.structindex import load_structure_shards

    sources = sorted(split_dir.glob("*.pdb"))
    files = tmp_path / "files"
    files.mkdir()
    for k in range(160):
        (files / f"s{k:03d}.pdb").write_bytes(sources[k % len(sources)].read_bytes())
    atlas_dir = tmp_path / "atlas"
    cmd = [sys.executable, "-m", "foldatlas.cli.main", "atlas", "import", str(files), "--atlas", str(atlas_dir),
           "--no-embed", "--workers", "0", "-q"]
    seen = []
    for stop_at in (50, 160):  # mid-insert, then with every entry stored (the indexes being brought up to date)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None and _count(atlas_dir / "atlas.sqlite") < stop_at:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the import should still be running when killed"
        seen.append(_count(atlas_dir / "atlas.sqlite"))
    assert 0 < seen[0] < 160 and seen[1] == 160, seen
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    with open_atlas(atlas_dir) as atlas:
        rows = sorted(r["rowid"] for r in atlas.iter_metadata(("rowid",)))
        assert len(rows) == 160 and atlas.failures() == []
        assert sorted(int(x) for s in load_shards(atlas.folder) for x in s.target_row) == rows
        assert sorted(int(x) for s in load_structure_shards(atlas.folder) for x in s.target_row) == rows
