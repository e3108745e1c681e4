"""MMseqs2 as the atlas' sequence-search engine, where the ``mmseqs`` binary is installed.

MMseqs2 (GPLv3, a separate program: Debian's ``mmseqs2``, bioconda, or a static build) has no Python bindings, so
it runs as a subprocess. The atlas keeps a target database and its k-mer index in ``mmseqs-v1/`` (every chain of
the sequence index, named ``rowid:chain``), built on first use and rebuilt when entries were added since: building
the database and index of the 21,119 StructureDB chains takes a few seconds, searching it then costs a fraction of
``easy-search``, which rebuilds both for every call. A rebuild goes into a fresh folder that replaces the old one
by a rename, so a killed rebuild leaves the previous database (or none) and never a partial one.

Searches run ``mmseqs search`` at the options' ``sensitivity`` (MMseqs2's ``-s``; default :data:`SENSITIVITY`,
MMseqs2's own 5.7: its hits, faster than ``easy-search`` because the database and index are kept; 7.5 finds about
1.5 times the homologs at about a quarter of the speed, BENCHMARKS.md). E-values are MMseqs2's, over the number of
chains in the atlas, as phmmer's are.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from foldatlas.atlas.shards import file_lock
from foldatlas.errors import FoldatlasError, InvalidOptionError

__all__ = ["mmseqs_binary", "search_mmseqs", "ensure_database", "SENSITIVITY", "DB_DIR"]

DB_DIR = "mmseqs-v1"
SENSITIVITY = 5.7
_COLUMNS = "query,target,fident,alnlen,qstart,qend,tstart,tend,evalue,bits,qlen,tlen,qaln,taln"


def mmseqs_binary() -> str | None:
    """Path of the ``mmseqs`` program (``FOLDATLAS_MMSEQS`` or the PATH), or None where it is not installed."""
    explicit = os.environ.get("FOLDATLAS_MMSEQS")
    if explicit:
        return explicit if Path(explicit).is_file() and os.access(explicit, os.X_OK) else None
    return shutil.which("mmseqs")


def _run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise FoldatlasError(f"mmseqs {args[1]} failed (exit {done.returncode}): {last[0][:200]}")


def ensure_database(atlas, threads: int) -> Path:
    """The atlas' MMseqs2 target database, (re)built if entries were added since it was made.

    Returns
    -------
    Path
        The database's path prefix (``.../mmseqs-v1/targets``).
    """
    from foldatlas.atlas.seqindex import load_shards, update_sequence_index

    binary = _require()
    folder = Path(atlas.folder) / DB_DIR
    if not atlas.readonly:
        update_sequence_index(atlas)
    shards = load_shards(atlas.folder)
    covered = max((s.last for s in shards), default=0)
    meta = folder / "meta.json"
    if meta.is_file() and json.loads(meta.read_text()).get("covered") == covered:
        return folder / "targets"
    if atlas.readonly and not os.access(atlas.folder, os.W_OK):
        raise InvalidOptionError("the atlas is read-only and has no current MMseqs2 database; run a search once "
                                 "with write access, or use --engine phmmer")
    with file_lock(Path(atlas.folder) / ".mmseqs.lock"):  # one build per atlas at a time
        if meta.is_file() and json.loads(meta.read_text()).get("covered") == covered:
            return folder / "targets"  # built by another process meanwhile
        for stale in [*Path(atlas.folder).glob(".tmp-mmseqs-*"), *Path(atlas.folder).glob(f".old-{DB_DIR}-*")]:
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed build (none runs: we hold the lock)
        _build(binary, folder, shards, covered, threads)
    return folder / "targets"


def _build(binary: str, folder: Path, shards, covered: int, threads: int) -> None:
    import numpy as np

    from foldatlas.atlas.seqindex import EASEL_AMINO

    work = Path(tempfile.mkdtemp(prefix=".tmp-mmseqs-", dir=folder.parent))
    try:
        letters = np.frombuffer(EASEL_AMINO.encode(), dtype=np.uint8)
        with open(work / "targets.fasta", "wb") as f:
            for shard in shards:
                for t in range(shard.num_targets):
                    residues = letters[shard.target_codes(t)].tobytes()
                    f.write(b">%d:%d\n%s\n" % (int(shard.target_row[t]), int(shard.target_chain[t]), residues))
        _run([binary, "createdb", str(work / "targets.fasta"), str(work / "targets"), "-v", "1"])
        _run([binary, "createindex", str(work / "targets"), str(work / "tmp"), "--threads", str(threads),
              "-v", "1"])
        shutil.rmtree(work / "tmp", ignore_errors=True)
        (work / "targets.fasta").unlink()
        (work / "meta.json").write_text(json.dumps({"covered": covered}))
        old = folder.with_name(f".old-{DB_DIR}-{os.getpid()}")
        if folder.exists():
            folder.rename(old)
        work.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _require() -> str:
    binary = mmseqs_binary()
    if binary is None:
        raise InvalidOptionError("--engine mmseqs needs the mmseqs program (apt install mmseqs2, conda install -c "
                                 "bioconda mmseqs2, or FOLDATLAS_MMSEQS=/path/to/mmseqs)")
    return binary


def _midline(a: str, b: str) -> str:
    from foldatlas.structure.threedi import aa_codes, matrix_blosum62

    m = matrix_blosum62()
    ca, cb = aa_codes(a), aa_codes(b)
    return "".join(x if x == y and x != "-" else ("+" if x != "-" and y != "-" and m[i, j] > 0 else " ")
                   for x, y, i, j in zip(a, b, ca, cb))


def search_mmseqs(atlas, queries, options) -> list[list]:
    """Search an atlas with single-chain records through MMseqs2 (see the module docstring).

    Parameters
    ----------
    atlas : foldatlas.atlas.Atlas
    queries : list of Record
    options : foldatlas.atlas.seqsearch.SearchOptions
        ``evalue``, ``max_hits``, ``threads`` and ``sensitivity`` apply; ``max_candidates`` is MMseqs2's
        ``--max-seqs``.

    Returns
    -------
    list of list of SequenceHit
        Per query, hits best first (lowest E-value).
    """
    from foldatlas.atlas.seqsearch import SequenceHit
    from foldatlas.seq.records import CHAIN_IDS

    binary = _require()
    threads = options.threads or len(os.sched_getaffinity(0))
    targets = ensure_database(atlas, threads)
    raw: list[list[tuple]] = [[] for _ in queries]
    with tempfile.TemporaryDirectory(prefix="foldatlas-mmseqs-") as tmp:
        work = Path(tmp)
        (work / "q.fasta").write_text("".join(f">{k}\n{q.chains[0]}\n" for k, q in enumerate(queries)))
        _run([binary, "createdb", str(work / "q.fasta"), str(work / "q"), "-v", "1"])
        _run([binary, "search", str(work / "q"), str(targets), str(work / "res"), str(work / "tmp"),
              "-s", str(options.sensitivity), "-e", repr(float(options.evalue)),
              "--max-seqs", str(options.max_candidates),
              "--threads", str(threads), "-a", "-v", "1"])
        _run([binary, "convertalis", str(work / "q"), str(targets), str(work / "res"), str(work / "out.tsv"),
              "--format-output", _COLUMNS, "--threads", str(threads), "-v", "1"])
        for line in (work / "out.tsv").read_text().splitlines():
            f = line.split("\t")
            raw[int(f[0])].append(f)
    rowids = sorted({int(f[1].split(":")[0]) for hits in raw for f in hits})
    ids = atlas.ids_of(rowids)
    out = []
    for query, hits in zip(queries, raw):
        hits.sort(key=lambda f: (float(f[8]), -float(f[9])))
        rows = []
        for f in hits:
            rowid, chain = (int(x) for x in f[1].split(":"))
            if rowid not in ids:
                continue
            qs, qe, ts, te, qlen, tlen = (int(f[i]) for i in (4, 5, 6, 7, 10, 11))
            rows.append(SequenceHit(
                query=query.name, target=ids[rowid], chain=CHAIN_IDS[chain], identity=round(float(f[2]), 4),
                alignment_length=int(f[3]), query_start=qs, query_end=qe, target_start=ts, target_end=te,
                evalue=float(f[8]), bitscore=float(f[9]), query_coverage=round((qe - qs + 1) / qlen, 4),
                target_coverage=round((te - ts + 1) / max(tlen, 1), 4), query_aligned=f[12], target_aligned=f[13],
                midline=_midline(f[12], f[13])))
            if len(rows) >= options.max_hits:
                break
        out.append(rows)
    return out
