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
