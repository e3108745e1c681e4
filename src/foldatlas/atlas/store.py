"""The atlas store: one folder, one SQLite database, no server.

Why SQLite (measured in ``benchmarks/atlas/bench_store.py``, numbers in BENCHMARKS.md): an ID lookup
through its primary-key index takes microseconds; every insert batch is one ACID transaction, so a
build killed at any moment (``kill -9`` included) leaves the store exactly as it was after the last
commit, never corrupt; it ships with Python; and it holds many gigabytes of compressed blobs in one
file. DuckDB and Parquet shards answer analytical scans faster but a point lookup far slower, and
Parquet files cannot be appended to transactionally; the atlas exports Parquet instead
(:mod:`foldatlas.atlas.export`).

Layout of an atlas folder::

    atlas.sqlite      entries (metadata), blobs (structure, pLDDT, PAE, embedding), samples (every
                      sample of an ESMFold2 prediction), aliases, failures, meta, jobs (the fold jobs
                      of ``foldatlas serve``); write-ahead log mode
    seqindex/         the sequence-search index (:mod:`foldatlas.atlas.seqindex`)

Metadata and payload live in two tables joined on the row id, so that scans over metadata (stats,
export, the map) do not read the blobs. Row ids are never reused (``AUTOINCREMENT``), which lets
the search indexes name entries by row id. Imports neither torch nor transformers.

Schema changes are additive (``CREATE TABLE IF NOT EXISTS``, run at every writable open), so an atlas
written by an older foldatlas gains new tables (``jobs``, ``samples``) the first time it is opened for
writing, and ``FORMAT_VERSION`` only changes for what an older foldatlas could not read. Read-only opens
of an older atlas treat a missing table as empty.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from foldatlas.atlas import codec
from foldatlas.atlas.entry import AtlasEntry, NewEntry, SampleScores
from foldatlas.errors import AtlasError, UnknownEntryError

__all__ = ["Atlas", "open_atlas", "DB_NAME", "FORMAT_VERSION", "JOB_COLUMNS", "JOB_STATES"]

DB_NAME = "atlas.sqlite"
FORMAT_VERSION = 1
_MD5 = re.compile(r"^[0-9a-f]{32}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    checksum TEXT NOT NULL,
    crc64 TEXT NOT NULL,
    length INTEGER NOT NULL,
    num_chains INTEGER NOT NULL,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    model_version TEXT,
    mean_plddt REAL,
    ptm REAL,
    iptm REAL,
    max_pae REAL,
    num_conf INTEGER,
    description TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    provenance TEXT NOT NULL DEFAULT '{}',
    created TEXT NOT NULL,
    sequence TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_checksum ON entries (checksum);
CREATE TABLE IF NOT EXISTS blobs (
    rowid INTEGER PRIMARY KEY,
    structure BLOB NOT NULL,
    plddt BLOB,
    pae BLOB,
    embedding BLOB
);
CREATE TABLE IF NOT EXISTS aliases (
    alias TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    id TEXT PRIMARY KEY,
    checksum TEXT,
    length INTEGER,
    reason TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    time TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    sequence TEXT NOT NULL,
    substitutions TEXT NOT NULL DEFAULT '[]',
    checksum TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    entry_id TEXT,
    cached INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    submitted REAL NOT NULL DEFAULT 0,
    started REAL NOT NULL DEFAULT 0,
    finished REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
-- Every sample of a prediction that draws several (ESMFold2), the entry's own included. Entries are never
-- deleted; the cascade states the ownership for a connection that turns foreign keys on.
CREATE TABLE IF NOT EXISTS samples (
    entry_rowid INTEGER NOT NULL REFERENCES entries (rowid) ON DELETE CASCADE,
    sample INTEGER NOT NULL,
    structure BLOB NOT NULL,
    plddt BLOB,
    mean_plddt REAL,
    ptm REAL,
    iptm REAL,
    ranking_score REAL,
    PRIMARY KEY (entry_rowid, sample)
) WITHOUT ROWID;
-- Clusterings (foldatlas.atlas.cluster): every clustered entry's representative, per named clustering; the
-- clustering's settings and counts are in meta under 'clustering:<name>'.
CREATE TABLE IF NOT EXISTS clusters (
    clustering TEXT NOT NULL,
    member INTEGER NOT NULL,
    rep INTEGER NOT NULL,
    PRIMARY KEY (clustering, member)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS clusters_rep ON clusters (clustering, rep);
"""

_META_COLUMNS = ("rowid", "id", "checksum", "crc64", "length", "num_chains", "kind", "model", "model_version",
                 "mean_plddt", "ptm", "iptm", "max_pae", "num_conf", "description", "source", "provenance",
                 "created", "sequence")
JOB_COLUMNS = ("id", "name", "description", "sequence", "substitutions", "checksum", "status", "entry_id", "cached",
               "error", "attempts", "submitted", "started", "finished")
JOB_STATES = ("queued", "running", "done", "failed")
_FINISHED = "('done', 'failed')"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _number(value) -> float | None:
    """A score as a plain float for SQLite (numpy scalars are not bound as numbers)."""
    return None if value is None else float(value)


class Atlas:
    """An atlas folder opened for reading and writing.

    Use :func:`open_atlas` to open or create one. Safe to use from several threads (one SQLite
    connection guarded by SQLite's own locking; write transactions are serialised by a lock).

    Parameters
    ----------
    folder : str or Path
        The atlas folder.
    create : bool
        Create the folder and database if they do not exist.
    readonly : bool
        Open the database read-only.

    Raises
    ------
    AtlasError
        If the folder is not an atlas (and ``create`` is false), or was written by a newer
        foldatlas.
    """

    def __init__(self, folder: str | Path, create: bool = False, readonly: bool = False) -> None:
        self.folder = Path(folder)
        # One connection holds one transaction at a time: another thread's BEGIN would fail, and its
        # single statements would join (and be rolled back with) the open transaction.
        self._write_lock = threading.RLock()
        db = self.folder / DB_NAME
        if not db.is_file():
            if not create:
                hint = "" if self.folder.exists() else " (no such folder)"
                raise AtlasError(f"{self.folder}: not an atlas{hint}; create one with 'foldatlas atlas build' "
                                 f"or 'foldatlas atlas import'")
            if self.folder.exists() and not self.folder.is_dir():
                raise AtlasError(f"{self.folder}: exists and is not a folder")
            self.folder.mkdir(parents=True, exist_ok=True)
        uri = f"file:{db}?mode=ro" if readonly else f"file:{db}"
        try:
            self._conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                                         timeout=60.0)
            self._conn.execute("PRAGMA busy_timeout = 60000")
            if not readonly:
                # WAL: readers never block the writer; synchronous=NORMAL in WAL mode is safe against a
                # killed process (a committed transaction survives, an open one is rolled back).
                self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute("PRAGMA synchronous = NORMAL")
                self._conn.executescript(_SCHEMA)
            version = self._meta_value("format_version")
        except sqlite3.DatabaseError as e:
            raise AtlasError(f"{db}: not a readable atlas database ({e})") from e
        if version is None:
            if readonly:
                raise AtlasError(f"{self.folder}: not an atlas (no format version)")
            self.set_meta("format_version", FORMAT_VERSION)
            self.set_meta("created", _now())
        elif int(version) > FORMAT_VERSION:
            raise AtlasError(f"{self.folder}: atlas format {version} is newer than this foldatlas reads "
                             f"({FORMAT_VERSION}); upgrade foldatlas")
        self.readonly = readonly

    # -- plumbing -------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()

    def __enter__(self) -> "Atlas":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    def __repr__(self) -> str:
        return f"Atlas({str(self.folder)!r}, entries={len(self)})"

    def _meta_value(self, key: str):
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:
            return None
        return None if row is None else json.loads(row[0])

    def get_meta(self, key: str, default=None):
        """A value of the atlas' ``meta`` table (JSON-decoded), or ``default``."""
        value = self._meta_value(key)
        return default if value is None else value

    def set_meta(self, key: str, value) -> None:
        """Store a JSON-ready value in the ``meta`` table."""
        self._conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                           "value = excluded.value", (key, json.dumps(value)))

    # -- writing --------------------------------------------------------------------------------------------

    def insert(self, entries: list[NewEntry], aliases: list[tuple[str, str, str]] = ()) -> list[int]:
        """Insert entries and aliases in one transaction; clear their failure records.

        Parameters
        ----------
        entries : list of NewEntry
        aliases : list of (alias, id, source)
            More IDs for entries (already stored or in ``entries``) with the same sequence.

        Returns
        -------
        list of int
            The row id of each entry; 0 for an entry whose ID was already present (left as it was).
        """
        now = _now()
        rowids = []
        with self._transaction() as cur:
            for e in entries:
                seq = e.sequence
                plddt = None if e.plddt is None else np.asarray(e.plddt, dtype=np.float32)
                num_conf = None if plddt is None else int(np.sum(plddt > 70.0))
                cur.execute(
                    "INSERT INTO entries (id, checksum, crc64, length, num_chains, kind, model, model_version, "
                    "mean_plddt, ptm, iptm, max_pae, num_conf, description, source, provenance, created, sequence) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING",
                    (e.id, codec.sequence_md5(seq), codec.sequence_crc64(seq), e.length, seq.count(":") + 1, e.kind,
                     e.model, e.model_version, e.mean_plddt, e.ptm, e.iptm,
                     None if e.pae is None else e.max_pae, num_conf, e.description, e.source,
                     json.dumps(e.provenance, separators=(",", ":")), now, seq))
                if cur.rowcount == 0:
                    rowids.append(0)
                    continue
                rowid = cur.lastrowid
                cur.execute("INSERT INTO blobs (rowid, structure, plddt, pae, embedding) VALUES (?, ?, ?, ?, ?)",
                            (rowid, e.structure, None if plddt is None else codec.encode_plddt(plddt),
                             None if e.pae is None else codec.encode_pae(e.pae),
                             None if e.embedding is None else codec.encode_embedding(e.embedding)))
                if e.samples:  # in the entry's transaction: an entry is stored with all its samples or not at all
                    cur.executemany(
                        "INSERT INTO samples (entry_rowid, sample, structure, plddt, mean_plddt, ptm, iptm, "
                        "ranking_score) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [(rowid, int(x.sample), x.structure,
                          None if x.plddt is None else codec.encode_plddt(np.asarray(x.plddt, dtype=np.float32)),
                          x.mean_plddt, _number(x.ptm), _number(x.iptm), _number(x.ranking_score))
                         for x in e.samples])
                cur.execute("DELETE FROM failures WHERE id = ?", (e.id,))
                rowids.append(rowid)
            for alias, target, source in aliases:
                cur.execute("INSERT INTO aliases (alias, id, source, created) VALUES (?, ?, ?, ?) "
                            "ON CONFLICT(alias) DO NOTHING", (alias, target, source, now))
                cur.execute("DELETE FROM failures WHERE id = ?", (alias,))
        return rowids

    def record_failures(self, failures: list[tuple[str, str | None, int | None, str, str]]) -> None:
        """Record failed records ``(id, checksum, length, reason, source)`` (replacing older reasons)."""
        if not failures:
            return
        now = _now()
        with self._transaction() as cur:
            cur.executemany("INSERT INTO failures (id, checksum, length, reason, source, time) VALUES "
                            "(?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET checksum = excluded.checksum, "
                            "length = excluded.length, reason = excluded.reason, source = excluded.source, "
                            "time = excluded.time", [(*f, now) for f in failures])

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction: committed on success, rolled back on any exception."""
        with self._write_lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")  # take the write lock now, not at the first write
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def write_clusters(self, name: str, members: np.ndarray, reps: np.ndarray, info: Mapping[str, object],
                       replace: bool = False) -> None:
        """Store (or with ``replace``, replace) the representative of each member of clustering ``name`` and its
        ``info`` (``meta['clustering:<name>']``), in one transaction."""
        pairs = zip(np.asarray(members, np.int64).tolist(), np.asarray(reps, np.int64).tolist())
        with self._transaction() as cur:
            if replace:
                cur.execute("DELETE FROM clusters WHERE clustering = ?", (name,))
            cur.executemany("INSERT OR REPLACE INTO clusters (clustering, member, rep) VALUES (?, ?, ?)",
                            ((name, m, r) for m, r in pairs))
            cur.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                        "value = excluded.value", (f"clustering:{name}", json.dumps(dict(info))))

    def clusterings(self) -> dict[str, dict]:
        """The stored clusterings: name -> settings and counts."""
        rows = self._conn.execute("SELECT key, value FROM meta WHERE key LIKE 'clustering:%' ORDER BY key")
        return {k.split(":", 1)[1]: json.loads(v) for k, v in rows}

    def _cluster_rows(self, query: str, params: tuple) -> list[tuple]:
        try:
            return self._conn.execute(query, params).fetchall()
        except sqlite3.OperationalError as e:  # an atlas from before clusters, opened read-only
            if "no such table" in str(e):
                return []
            raise

    def cluster_table(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(members, representatives)`` row ids of a clustering, by member."""
        rows = self._cluster_rows("SELECT member, rep FROM clusters WHERE clustering = ? ORDER BY member", (name,))
        table = np.array(rows, dtype=np.int64).reshape(-1, 2)
        return table[:, 0], table[:, 1]

    def cluster_rep(self, name: str, rowid: int) -> int | None:
        """The representative row id of an entry in a clustering (None: not clustered)."""
        rows = self._cluster_rows("SELECT rep FROM clusters WHERE clustering = ? AND member = ?", (name, int(rowid)))
        return int(rows[0][0]) if rows else None

    def cluster_members(self, name: str, rep: int, limit: int | None = None, offset: int = 0) -> list[int]:
        """Row ids of a cluster's members (its representative included), in row-id order."""
        rows = self._cluster_rows("SELECT member FROM clusters WHERE clustering = ? AND rep = ? ORDER BY member "
                                  "LIMIT ? OFFSET ?", (name, int(rep), -1 if limit is None else int(limit),
                                                       int(offset)))
        return [int(r[0]) for r in rows]

    def cluster_size(self, name: str, rep: int) -> int:
        """Members of the cluster of representative ``rep``."""
        rows = self._cluster_rows("SELECT COUNT(*) FROM clusters WHERE clustering = ? AND rep = ?", (name, int(rep)))
        return int(rows[0][0]) if rows else 0

    # -- fold jobs of the service ---------------------------------------------------------------------------

    def put_job(self, job: Mapping[str, object]) -> None:
        """Record a new fold job (one committed transaction).

        Parameters
        ----------
        job : dict
            Values of :data:`JOB_COLUMNS`; ``id``, ``name``, ``sequence``, ``checksum`` and ``status`` are
            required, ``substitutions`` is a list of ``(chain, position, original, folded_as)``.

        Raises
        ------
        AtlasError
            If the job cannot be stored (unknown column or status, duplicate ID, database error).
        """
        row = self._job_values(job)
        cols = list(row)
        self._job_write(f"INSERT INTO jobs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        [row[c] for c in cols])

    def update_job(self, job_id: str, **changes: object) -> None:
        """Change columns of a stored fold job (one committed transaction), e.g. ``status="running"``.

        Raises
        ------
        AtlasError
            If a column or status is unknown, the job is not stored, or the database fails.
        """
        row = self._job_values(changes)
        if not row:
            return
        if self._job_write(f"UPDATE jobs SET {', '.join(f'{c} = ?' for c in row)} WHERE id = ?",
                           [*row.values(), job_id]) == 0:
            raise AtlasError(f"no fold job '{job_id[:80]}' in the atlas {self.folder}")

    def get_job(self, job_id: str) -> dict | None:
        """A stored fold job (a dict of :data:`JOB_COLUMNS`), or None."""
        rows = self._job_rows("WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    def unfinished_jobs(self) -> list[dict]:
        """Stored fold jobs that are queued or running, oldest first."""
        return self._job_rows(f"WHERE status NOT IN {_FINISHED}", ())

    def prune_jobs(self, keep: int) -> int:
        """Delete the oldest finished jobs until at most ``keep`` jobs are stored; unfinished ones stay.

        Returns
        -------
        int
            Jobs deleted.
        """
        # rowid order is insertion order: a rowid is one more than the largest one present
        return self._job_write(
            f"DELETE FROM jobs WHERE rowid IN (SELECT rowid FROM jobs WHERE status IN {_FINISHED} ORDER BY rowid "
            f"LIMIT max(0, (SELECT COUNT(*) FROM jobs) - ?))", (max(0, int(keep)),))

    @staticmethod
    def _job_values(job: Mapping[str, object]) -> dict:
        bad = [c for c in job if c not in JOB_COLUMNS]
        if bad:
            raise AtlasError(f"unknown fold-job columns: {bad}")
        if "status" in job and job["status"] not in JOB_STATES:
            raise AtlasError(f"unknown fold-job status {job['status']!r}; one of {', '.join(JOB_STATES)}")
        row = dict(job)
        if "substitutions" in row:
            row["substitutions"] = json.dumps([list(s) for s in row["substitutions"]], separators=(",", ":"))
        if "cached" in row:
            row["cached"] = int(bool(row["cached"]))
        return row

    def _job_write(self, sql: str, params) -> int:
        try:
            with self._transaction() as cur:
                cur.execute(sql, params)
                return cur.rowcount
        except sqlite3.Error as e:
            raise AtlasError(f"{self.folder}: cannot store a fold job ({e})") from e

    def _job_rows(self, where: str, params) -> list[dict]:
        try:
            cur = self._conn.execute(f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs {where} ORDER BY rowid", params)
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):  # an atlas older than the jobs table, opened read-only
                return []
            raise AtlasError(f"{self.folder}: cannot read fold jobs ({e})") from e
        rows = [dict(zip(JOB_COLUMNS, r)) for r in cur]
        for row in rows:
            row["substitutions"] = [tuple(s) for s in json.loads(row["substitutions"])]
            row["cached"] = bool(row["cached"])
        return rows

    # -- reading --------------------------------------------------------------------------------------------

    def resolve(self, key: str) -> tuple[int, str]:
        """The row id and entry ID for an ID, an alias, or a sequence MD5.

        Raises
        ------
        UnknownEntryError
            If the key names no entry.
        """
        row = self._conn.execute("SELECT rowid, id FROM entries WHERE id = ?", (key,)).fetchone()
        if row is None:
            alias = self._conn.execute("SELECT id FROM aliases WHERE alias = ?", (key,)).fetchone()
            if alias is not None:
                row = self._conn.execute("SELECT rowid, id FROM entries WHERE id = ?", (alias[0],)).fetchone()
        if row is None and _MD5.match(key.lower()):
            row = self._conn.execute("SELECT rowid, id FROM entries WHERE checksum = ? ORDER BY rowid LIMIT 1",
                                     (key.lower(),)).fetchone()
        if row is None:
            shown = key if len(key) <= 80 else key[:77] + "..."
            raise UnknownEntryError(f"no entry '{shown}' in the atlas {self.folder}")
        return int(row[0]), str(row[1])

    def get(self, key: str, pae: bool = True, embedding: bool = True) -> AtlasEntry:
        """Read one entry by ID, alias or sequence MD5.

        Parameters
        ----------
        key : str
        pae, embedding : bool
            Decode the PAE matrix / the embedding too.

        Raises
        ------
        UnknownEntryError
        """
        rowid, _ = self.resolve(key)
        return self.get_rowid(rowid, pae=pae, embedding=embedding)

    def get_rowid(self, rowid: int, pae: bool = True, embedding: bool = True) -> AtlasEntry:
        """Read one entry by row id (see :meth:`get`)."""
        meta = self._conn.execute(f"SELECT {', '.join(_META_COLUMNS)} FROM entries WHERE rowid = ?",
                                  (rowid,)).fetchone()
        if meta is None:
            raise UnknownEntryError(f"no entry with row id {rowid} in the atlas {self.folder}")
        m = dict(zip(_META_COLUMNS, meta))
        cols = ["structure", "plddt", "pae IS NOT NULL", "pae" if pae else "NULL", "embedding" if embedding else "NULL"]
        structure, plddt, has_pae, pae_blob, emb = self._conn.execute(
            f"SELECT {', '.join(cols)} FROM blobs WHERE rowid = ?", (rowid,)).fetchone()
        return AtlasEntry(
            id=m["id"], checksum=m["checksum"], crc64=m["crc64"], sequence=m["sequence"], length=m["length"],
            kind=m["kind"], model=m["model"], model_version=m["model_version"], mean_plddt=m["mean_plddt"],
            ptm=m["ptm"], iptm=m["iptm"], max_pae=m["max_pae"],
            plddt=None if plddt is None else codec.decode_plddt(plddt),
            pae=None if pae_blob is None else codec.decode_pae(pae_blob, m["length"]),
            embedding=None if emb is None else codec.decode_embedding(emb),
            description=m["description"], source=m["source"], provenance=json.loads(m["provenance"]),
            created=m["created"], has_pae=bool(has_pae), structure_blob=bytes(structure))

    def _sample_rows(self, sql: str, params) -> list[tuple]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):  # an atlas older than the samples table, opened read-only
                return []
            raise AtlasError(f"{self.folder}: cannot read samples ({e})") from e

    def samples(self, key: str) -> list[SampleScores]:
        """The scores of an entry's stored samples (ESMFold2's diffusion samples), by sample index.

        Parameters
        ----------
        key : str
            Entry ID, alias or sequence MD5.

        Returns
        -------
        list of SampleScores
            Empty for an entry without samples (ESMFold v1 predictions, imports). Which one is the entry itself
            is in its provenance (``best_sample``).

        Raises
        ------
        UnknownEntryError
            If the key names no entry.
        """
        rowid, _ = self.resolve(key)
        rows = self._sample_rows("SELECT sample, mean_plddt, ptm, iptm, ranking_score FROM samples "
                                 "WHERE entry_rowid = ? ORDER BY sample", (rowid,))
        return [SampleScores(int(k), *values) for k, *values in rows]

    def get_sample(self, key: str, sample: int) -> AtlasEntry:
        """One stored sample of an entry, as the entry with that sample's structure, pLDDT, pTM and ipTM.

        The result renders like any entry (:meth:`AtlasEntry.to_pdb` puts the sample's pLDDT in the B-factor
        column); its ``sample`` attribute names the sample. It carries no PAE and no embedding.

        Parameters
        ----------
        key : str
            Entry ID, alias or sequence MD5.
        sample : int
            The sample's index (see :meth:`samples`).

        Raises
        ------
        UnknownEntryError
            If the key names no entry, or the entry stores no sample of that index.
        """
        rowid, entry_id = self.resolve(key)
        rows = self._sample_rows("SELECT structure, plddt, mean_plddt, ptm, iptm FROM samples "
                                 "WHERE entry_rowid = ? AND sample = ?", (rowid, int(sample)))
        if not rows:
            have = [s.sample for s in self.samples(entry_id)]
            held = (f"its samples are {', '.join(map(str, have))}" if have else
                    "it stores none (only predictions of models that draw several samples, such as ESMFold2, do)")
            raise UnknownEntryError(f"entry '{entry_id}' has no sample {sample}; {held}")
        structure, plddt, mean_plddt, ptm, iptm = rows[0]
        entry = self.get_rowid(rowid, pae=False, embedding=False)
        return replace(entry, structure_blob=bytes(structure),
                       plddt=None if plddt is None else codec.decode_plddt(plddt), mean_plddt=mean_plddt,
                       ptm=ptm, iptm=iptm, max_pae=None, pae=None, has_pae=False, sample=int(sample))

    def ids_of(self, rowids: list[int]) -> dict[int, str]:
        """Entry IDs of row ids (those that exist)."""
        out: dict[int, str] = {}
        rowids = [int(r) for r in rowids]
        for start in range(0, len(rowids), 900):  # SQLite's limit on bound parameters
            part = rowids[start:start + 900]
            q = f"SELECT rowid, id FROM entries WHERE rowid IN ({', '.join('?' * len(part))})"
            out.update({int(r): str(i) for r, i in self._conn.execute(q, part)})
        return out

    def metadata_of(self, rowids: list[int], columns: tuple[str, ...] = ("id", "mean_plddt", "length")
                    ) -> dict[int, tuple]:
        """``rowid -> (column values...)`` of the row ids that exist."""
        bad = [c for c in columns if c not in _META_COLUMNS]
        if bad:
            raise ValueError(f"unknown columns: {bad}")
        out: dict[int, tuple] = {}
        for start in range(0, len(rowids), 900):
            part = [int(r) for r in rowids[start:start + 900]]
            q = f"SELECT rowid, {', '.join(columns)} FROM entries WHERE rowid IN ({', '.join('?' * len(part))})"
            out.update({int(row[0]): tuple(row[1:]) for row in self._conn.execute(q, part)})
        return out

    def known_ids(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        """For IDs already in the atlas (as entries or aliases): ``id -> (checksum, kind)``."""
        out: dict[str, tuple[str, str]] = {}
        for start in range(0, len(ids), 900):
            part = ids[start:start + 900]
            marks = ", ".join("?" * len(part))
            for i, c, k in self._conn.execute(f"SELECT id, checksum, kind FROM entries WHERE id IN ({marks})", part):
                out[i] = (c, k)
            for a, c, k in self._conn.execute(
                    f"SELECT a.alias, e.checksum, 'alias' FROM aliases a JOIN entries e ON e.id = a.id "
                    f"WHERE a.alias IN ({marks})", part):
                out.setdefault(a, (c, k))
        return out

    def predicted_ids(self, checksums: list[str], model_version: str) -> dict[str, str]:
        """``checksum -> id`` of entries predicted by the model with these weights."""
        out: dict[str, str] = {}
        for start in range(0, len(checksums), 900):
            part = checksums[start:start + 900]
            q = (f"SELECT checksum, id FROM entries WHERE kind = 'predicted' AND model_version = ? AND checksum IN "
                 f"({', '.join('?' * len(part))}) ORDER BY rowid DESC")
            out.update({c: i for c, i in self._conn.execute(q, [model_version, *part])})
        return out

    def max_rowid(self) -> int:
        """The largest row id ever used (0 for an empty atlas)."""
        row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'entries'").fetchone()
        return 0 if row is None else int(row[0])

    def iter_sequences(self, after_rowid: int = 0, upto_rowid: int | None = None) -> Iterator[tuple[int, str]]:
        """``(rowid, sequence)`` of entries in row-id order, from ``after_rowid`` (exclusive)."""
        upto = self.max_rowid() if upto_rowid is None else upto_rowid
        yield from self._conn.execute("SELECT rowid, sequence FROM entries WHERE rowid > ? AND rowid <= ? "
                                      "ORDER BY rowid", (after_rowid, upto))

    def iter_metadata(self, columns: tuple[str, ...] = _META_COLUMNS) -> Iterator[dict]:
        """Every entry's metadata (no blobs), in row-id order."""
        bad = [c for c in columns if c not in _META_COLUMNS]
        if bad:
            raise ValueError(f"unknown columns: {bad}")
        cur = self._conn.execute(f"SELECT {', '.join(columns)} FROM entries ORDER BY rowid")
        for row in cur:
            yield dict(zip(columns, row))

    def iter_blobs(self, column: str, rowids: list[int] | None = None) -> Iterator[tuple[int, bytes | None]]:
        """``(rowid, blob)`` of one blob column, in row-id order (all entries, or the given ones)."""
        if column not in ("structure", "plddt", "pae", "embedding"):
            raise ValueError(f"unknown blob column {column!r}")
        if rowids is None:
            yield from self._conn.execute(f"SELECT rowid, {column} FROM blobs ORDER BY rowid")
            return
        for start in range(0, len(rowids), 900):
            part = [int(r) for r in rowids[start:start + 900]]
            yield from self._conn.execute(f"SELECT rowid, {column} FROM blobs WHERE rowid IN "
                                          f"({', '.join('?' * len(part))}) ORDER BY rowid", part)

    def failures(self) -> list[dict]:
        """Failed records: id, checksum, length, reason, source, time."""
        cols = ("id", "checksum", "length", "reason", "source", "time")
        return [dict(zip(cols, r)) for r in self._conn.execute(f"SELECT {', '.join(cols)} FROM failures ORDER BY id")]

    def has_predictions(self) -> bool:
        """Whether any entry is a prediction (``kind == "predicted"``)."""
        return self._conn.execute("SELECT 1 FROM entries WHERE kind = 'predicted' LIMIT 1").fetchone() is not None

    def stats(self) -> dict:
        """Counts, confidence distribution, models and disk use, as a JSON-ready dict."""
        q = self._conn.execute
        by_kind = dict(q("SELECT kind, COUNT(*) FROM entries GROUP BY kind").fetchall())
        n, residues, mean_plddt, mean_ptm = q("SELECT COUNT(*), COALESCE(SUM(length), 0), AVG(mean_plddt), AVG(ptm) "
                                              "FROM entries").fetchone()
        models = [{"model": m, "model_version": v, "kind": k, "entries": c} for m, v, k, c in
                  q("SELECT model, model_version, kind, COUNT(*) FROM entries GROUP BY model, model_version, kind")]
        bands = q("SELECT SUM(mean_plddt >= 90), SUM(mean_plddt >= 70 AND mean_plddt < 90), "
                  "SUM(mean_plddt >= 50 AND mean_plddt < 70), SUM(mean_plddt < 50), SUM(mean_plddt IS NULL) "
                  "FROM entries").fetchone()
        size = sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())
        return {
            "atlas": str(self.folder),
            "format_version": self.get_meta("format_version"),
            "created": self.get_meta("created"),
            "entries": n,
            "by_kind": by_kind,
            "aliases": q("SELECT COUNT(*) FROM aliases").fetchone()[0],
            "failures": q("SELECT COUNT(*) FROM failures").fetchone()[0],
            "residues": residues,
            "mean_plddt": None if mean_plddt is None else round(mean_plddt, 2),
            "mean_ptm": None if mean_ptm is None else round(mean_ptm, 4),
            "mean_plddt_bands": dict(zip(("very_high_90_100", "confident_70_90", "low_50_70", "very_low_0_50",
                                          "none"), [int(b or 0) for b in bands])),
            "with_pae": q("SELECT COUNT(*) FROM blobs WHERE pae IS NOT NULL").fetchone()[0],
            "with_embedding": q("SELECT COUNT(*) FROM blobs WHERE embedding IS NOT NULL").fetchone()[0],
            "models": models,
            "build_model": self.get_meta("build_model"),
            "embedding_model": self.get_meta("embedding_model"),
            "disk_bytes": size,
            "bytes_per_entry": round(size / n) if n else None,
            "clusterings": {name: {k: info.get(k) for k in ("entries", "clusters", "singletons", "largest",
                                                             "updated")}
                            for name, info in self.clusterings().items()},
        }

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file (done by SQLite on its own too)."""
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def open_atlas(folder: str | Path, create: bool = False, readonly: bool = False) -> Atlas:
    """Open (or with ``create``, create) the atlas in ``folder``; see :class:`Atlas`."""
    return Atlas(folder, create=create, readonly=readonly)
