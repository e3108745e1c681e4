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
chains in the atlas, as phmmer's are. A search starts one program, ``mmseqs search``, with the database memory-mapped
(:data:`LOAD_MODE`): the query database is written here as ``createdb`` would write it, and the hits are read
straight from the alignment database it leaves (aligned strings rebuilt from its CIGAR strings, targets named through
a key table kept with the database) instead of through ``convertalis``, which re-reads the whole target index on
every call: at a million chains 0.11 s per query instead of 0.40 s, the same hits (BENCHMARKS.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from foldatlas.atlas.shards import file_lock
from foldatlas.errors import FoldatlasError, InvalidOptionError

__all__ = ["mmseqs_binary", "search_mmseqs", "search_database", "ensure_database", "create_database",
           "SENSITIVITY", "DB_DIR", "LOAD_MODE"]

DB_DIR = "mmseqs-v1"
SENSITIVITY = 5.7
# MMseqs2's --db-load-mode 2: the database and its index are memory-mapped and read page by page as the search
# touches them, instead of its default, which reads the parts it needs for every call (at 1M chains 0.06 s of a
# query's time; BENCHMARKS.md). The pages stay in the page cache between calls; ColabFold's server runs the same way.
LOAD_MODE = "2"
# the fields of a hit, as MMseqs2's convertalis names them (search_database rebuilds them from the alignments)
_COLUMNS = "query,target,fident,alnlen,qstart,qend,tstart,tend,evalue,bits,qlen,tlen,qaln,taln"
_CIGAR = re.compile(r"(\d+)([MID])")  # an alignment's backtrace: M both sequences, I the query, D the target


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
        create_database(work / "targets.fasta", work / "targets", threads)
        (work / "targets.fasta").unlink()
        (work / "meta.json").write_text(json.dumps({"covered": covered}))
        old = folder.with_name(f".old-{DB_DIR}-{os.getpid()}")
        if folder.exists():
            folder.rename(old)
        work.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def create_database(fasta: Path, targets: Path, threads: int) -> None:
    """MMseqs2's database and k-mer index of a FASTA (``createdb`` + ``createindex``) and the key table searches read
    (:func:`_key_table`), at the path prefix ``targets``."""
    binary = _require()
    _run([binary, "createdb", str(fasta), str(targets), "-v", "1"])
    tmp = targets.with_name(targets.name + ".tmp")
    _run([binary, "createindex", str(targets), str(tmp), "--threads", str(threads), "-v", "1"])
    shutil.rmtree(tmp, ignore_errors=True)
    _key_table(targets)


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


def search_database(targets: Path, sequences: list[str], options, threads: int) -> list[list[list[str]]]:
    """Search an MMseqs2 target database (as :func:`ensure_database` builds it) with protein sequences.

    Parameters
    ----------
    targets : Path
        The database's path prefix.
    sequences : list of str
        One sequence per query.
    options : foldatlas.atlas.seqsearch.SearchOptions
        ``evalue``, ``sensitivity`` and ``max_candidates`` (``--max-seqs``) apply.
    threads : int

    Returns
    -------
    list of list of list of str
        Per query, its hits in MMseqs2's order, each the fields of ``_COLUMNS``.
    """
    import mmap

    binary = _require()
    raw: list[list[list[str]]] = [[] for _ in sequences]
    if not sequences or Path(targets).stat().st_size == 0:
        return raw
    table = _key_table(targets)
    with tempfile.TemporaryDirectory(prefix="foldatlas-mmseqs-") as tmp, open(targets, "rb") as f, \
            mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        work = Path(tmp)
        _write_queries(work / "q", sequences)  # keys 0..n-1 in order
        _run([binary, "search", str(work / "q"), str(targets), str(work / "res"), str(work / "tmp"),
              "-s", str(options.sensitivity), "-e", repr(float(options.evalue)),
              "--max-seqs", str(options.max_candidates), "--db-load-mode", LOAD_MODE,
              "--threads", str(threads), "-a", "-v", "1"])
        for key, rows in _alignments(work / "res").items():
            raw[key] = [_fields(key, sequences[key], row, table, data) for row in rows]
    return raw


def _write_queries(prefix: Path, sequences: list[str]) -> None:
    """The query database as ``createdb`` writes it (sequences, headers, their indexes and types), keys in order,
    without starting the program: one process less per search."""
    def database(path: Path, records: list[bytes], dbtype: int) -> None:
        offsets, at = [], 0
        for r in records:
            offsets.append(f"{len(offsets)}\t{at}\t{len(r)}\n")
            at += len(r)
        path.write_bytes(b"".join(records))
        path.with_name(path.name + ".index").write_text("".join(offsets))
        path.with_name(path.name + ".dbtype").write_bytes(dbtype.to_bytes(4, "little"))

    database(prefix, [f"{seq}\n\0".encode() for seq in sequences], 0)  # amino acids
    database(prefix.with_name(prefix.name + "_h"), [f"{k}\n\0".encode() for k in range(len(sequences))], 12)
    prefix.with_name(prefix.name + ".lookup").write_text("".join(f"{k}\t{k}\t0\n" for k in range(len(sequences))))


def _key_table(targets: Path):
    """Per MMseqs2 key of the target database: atlas row, chain, offset and length of its sequence record.

    ``createdb`` shuffles its input, so keys are not the FASTA's order; the table comes from the database's
    ``.lookup`` and ``.index`` files (1M lines each at a million chains, about a second to parse) and is kept beside
    them as ``targets.keys.npy``, so a search reads the rows it needs from a memory map instead of MMseqs2's
    ``convertalis`` parsing both files again for every call (at 1M chains half of a query's time).
    """
    import numpy as np

    path = targets.with_name(targets.name + ".keys.npy")
    if path.is_file():
        return np.load(path, mmap_mode="r")
    tokens = targets.with_name(targets.name + ".lookup").read_bytes().split()
    keys = np.array(tokens[0::3], dtype=np.int64)
    names = np.array(b" ".join(tokens[1::3]).replace(b":", b" ").split(), dtype=np.int64).reshape(-1, 2)
    index = _read_index(targets)
    table = np.zeros((len(index), 4), dtype=np.int64)
    table[keys, :2] = names
    table[index[:, 0], 2:] = index[:, 1:]
    if os.access(path.parent, os.W_OK):  # a read-only atlas computes it per call
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
        np.save(tmp, table)
        os.replace(tmp, path)
    return table


def _read_index(database: Path):
    """An MMseqs2 database's ``.index`` (one ``key offset length`` line per record) as an (n, 3) int64 array."""
    import numpy as np

    return np.array(database.with_name(database.name + ".index").read_bytes().split(), dtype=np.int64).reshape(-1, 3)


def _alignments(result: Path) -> dict[int, list[list[bytes]]]:
    """An MMseqs2 alignment database (``search -a``): per query key, its rows (target key, bits, identity,
    E-value, query start, end, length, target start, end, length, CIGAR; 0-based positions)."""
    # with several threads and queries, search leaves one data file per thread (res.0, res.1, ...) whose index
    # offsets run over the files in order
    parts = [result] if result.is_file() else sorted(result.parent.glob(result.name + ".[0-9]*"),
                                                     key=lambda f: int(f.suffix[1:]))
    if not parts:
        raise FoldatlasError(f"mmseqs search left no alignment database at {result}")
    data = b"".join(f.read_bytes() for f in parts)
    return {int(key): [line.split(b"\t") for line in data[off:off + length].rstrip(b"\0\n").split(b"\n") if line]
            for key, off, length in _read_index(result)}


def _fields(query_number: int, query: str, row: list[bytes], table, data) -> list[str]:
    """One hit as the fields of ``_COLUMNS``, the aligned strings rebuilt from the CIGAR (M: both sequences move,
    I: the query only, D: the target only), the positions made 1-based as ``convertalis`` writes them."""
    key, bits, identity, evalue, qs, qe, qlen, ts, te, tlen = (x.decode() for x in row[:10])
    rowid, chain, offset, length = (int(x) for x in table[int(key)])
    target = bytes(data[offset:offset + length]).rstrip(b"\0\n").decode()
    i, j, qa, ta = int(qs), int(ts), [], []
    for count, op in _CIGAR.findall(row[10].decode()):
        n = int(count)
        qa.append(query[i:i + n] if op != "D" else "-" * n)
        ta.append(target[j:j + n] if op != "I" else "-" * n)
        i += n if op != "D" else 0
        j += n if op != "I" else 0
    qaln, taln = "".join(qa), "".join(ta)
    return [str(query_number), f"{rowid}:{chain}", identity, str(len(qaln)), str(int(qs) + 1), str(int(qe) + 1),
            str(int(ts) + 1), str(int(te) + 1), evalue, bits, qlen, tlen, qaln, taln]


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

    threads = options.threads or len(os.sched_getaffinity(0))
    targets = ensure_database(atlas, threads)
    raw = search_database(targets, [q.chains[0] for q in queries], options, threads)
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
