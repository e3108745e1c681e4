"""Fold jobs of the service: a bounded queue in front of the folding model, with the atlas as the cache.

* A submitted sequence whose prediction by the same weights is already in the atlas is answered at once
  from the store (``cached``); the same sequence submitted again while it folds joins the running job.
* At most ``fold_workers`` folds run at once and ``queue_size`` wait; beyond that a submission is refused
  with :class:`~foldatlas.errors.ServiceBusyError` (HTTP 503 with ``Retry-After``), never queued without bound.
* A finished fold is inserted into the atlas (one transaction) with its PAE and mean embedding, under the
  entry ID of its sequence's MD5 checksum; the name the user gave is its description.
* Jobs outlive the process: each is a row of the atlas' ``jobs`` table, written in one committed transaction
  when it is submitted, starts and finishes (queued -> running -> done | failed; an answer from the atlas is
  done at once). :meth:`FoldService.resume`, called at start-up, re-queues the jobs that a stopped or killed
  server left queued or running; IDs of finished jobs answer from the table after a restart, the newest
  ``jobs_kept`` of them. A temporary atlas (``foldatlas serve`` without ``--atlas``) is deleted when its process
  ends, and its jobs with it. Serve an atlas from one server at a time: two would both resume its jobs.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from foldatlas.atlas import codec
from foldatlas.atlas.build import BuildOptions, batch_entries, check_embedding_model, check_folding_model
from foldatlas.atlas.store import JOB_COLUMNS
from foldatlas.errors import AtlasError, SequenceTooLongError, ServiceBusyError, UnknownEntryError
from foldatlas.seq.records import Record

__all__ = ["FoldJob", "FoldService", "MAX_ATTEMPTS"]

MAX_ATTEMPTS = 3  # folds of one job a server may die in before a restart gives it up (a sequence that kills it)

log = logging.getLogger("foldatlas.service")


@dataclass
class FoldJob:
    """One fold request.

    Attributes
    ----------
    id : str
        Job ID (random hex).
    name : str
        The name given with the sequence (FASTA header), kept as the entry's description.
    sequence : str
        Chains joined by ``:``.
    checksum : str
        MD5 of the sequence; also the ID of the entry a fold creates.
    description : str
        The record's full header line.
    substitutions : tuple of (chain, position, original, folded_as)
        Nonstandard letters the alphabet policy replaced (kept so that a resumed fold is the same fold).
    status : {"queued", "running", "done", "failed"}
    entry_id : str or None
        The atlas entry holding the result, once done.
    cached : bool
        Answered from the atlas without folding.
    error : str or None
        Why the fold failed (one line).
    attempts : int
        Folds of the job started (more than one when a server died while folding it).
    submitted, started, finished : float
        Unix times (0 when not reached).
    done : threading.Event
        Set once the job is done or failed.
    """

    id: str
    name: str
    sequence: str
    checksum: str
    description: str = ""
    substitutions: tuple = ()
    status: str = "queued"
    entry_id: str | None = None
    cached: bool = False
    error: str | None = None
    attempts: int = 0
    submitted: float = 0.0
    started: float = 0.0
    finished: float = 0.0
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def length(self) -> int:
        """Residues over all chains."""
        return len(self.sequence.replace(":", ""))

    @property
    def is_finished(self) -> bool:
        """Done or failed (no more changes)."""
        return self.status in ("done", "failed")

    def record(self) -> Record:
        """The record to fold, named by the checksum (the entry ID) and described by the user's name."""
        return Record(name=self.checksum, chains=tuple(self.sequence.split(":")), description=self.name,
                      substitutions=tuple(tuple(s) for s in self.substitutions))

    def to_row(self) -> dict:
        """The job as a row of the atlas' ``jobs`` table."""
        return {c: getattr(self, c) for c in JOB_COLUMNS}

    @classmethod
    def from_row(cls, row: Mapping) -> FoldJob:
        """A job from a row of the atlas' ``jobs`` table (its ``done`` event set when it is finished)."""
        job = cls(**{c: row[c] for c in JOB_COLUMNS})
        job.substitutions = tuple(tuple(s) for s in job.substitutions)
        if job.is_finished:
            job.done.set()
        return job

    def to_dict(self) -> dict:
        """JSON-ready status."""
        seconds = (self.finished - self.started) if self.finished and self.started else None
        return {"job_id": self.id, "status": self.status, "name": self.name, "length": self.length,
                "checksum": self.checksum, "entry_id": self.entry_id, "cached": self.cached, "error": self.error,
                "fold_seconds": None if seconds is None else round(seconds, 3)}


class FoldService:
    """Folds sequences into an atlas through a bounded queue; its jobs are kept in the atlas.

    Parameters
    ----------
    atlas : foldatlas.atlas.Atlas
        Opened for writing.
    folding_model : foldatlas.models.FoldingModel
    embedder : foldatlas.models.embedding.Embedder or None
    max_length : int
        Longest accepted input (residues over all chains).
    fold_workers, queue_size, jobs_kept : int
        See :class:`foldatlas.service.ServiceSettings`. ``jobs_kept`` bounds the jobs remembered in memory and
        the finished jobs kept in the atlas (unfinished ones are never dropped).
    num_recycles : int or None
        Recycles of every fold (ESMFold v1); None: the model's own. :attr:`num_recycles` holds the number that
        runs (None for ESMFold2).
    num_samples, seed : int or None
        ESMFold2's samples and seed of every fold; None: the checkpoint's samples, seed 0.
        :attr:`settings` holds what every fold runs.

    Raises
    ------
    OutputConflictError
        If the atlas holds predictions of other weights or embeddings of another language model.

    Notes
    -----
    Jobs left queued or running in the atlas by an earlier server wait until :meth:`resume` is called (the
    service's start-up does).
    """

    def __init__(self, atlas, folding_model, embedder, max_length: int, fold_workers: int = 1,
                 queue_size: int = 16, jobs_kept: int = 10000, num_recycles: int | None = None,
                 num_samples: int | None = None, seed: int | None = None) -> None:
        from foldatlas.predict.engine import FoldOptions

        self.atlas = atlas
        self.model = folding_model
        self.fold_options = FoldOptions(num_recycles=num_recycles, num_samples=num_samples, seed=seed)
        self.settings = folding_model.run_settings(self.fold_options)  # numbers, as every output records them
        self.num_recycles = self.settings.get("num_recycles")
        self.embedder = embedder
        self.max_length = max_length
        self.capacity = fold_workers + queue_size
        self.jobs_kept = jobs_kept
        self.write_lock = threading.RLock()  # atlas writes and index updates of this process
        self._lock = threading.Lock()  # the job tables
        self._jobs: OrderedDict[str, FoldJob] = OrderedDict()
        self._inflight: dict[str, FoldJob] = {}  # checksum -> the job folding it
        self._followers: dict[str, list[FoldJob]] = {}  # checksum -> resumed jobs waiting on its inflight job
        self._seconds_per_residue = 0.05  # running estimate, for Retry-After
        self._options = BuildOptions(source="foldatlas serve", num_recycles=num_recycles, num_samples=num_samples,
                                     seed=seed)
        with self.write_lock:
            check_folding_model(atlas, folding_model, self._options)
            check_embedding_model(atlas, embedder)
        self._executor = ThreadPoolExecutor(fold_workers, thread_name_prefix="fold")

    def close(self) -> None:
        """Stop taking jobs; wait for running folds to finish. Queued jobs stay queued in the atlas."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        with self._lock:
            return len(self._inflight) + sum(len(f) for f in self._followers.values())

    def inflight(self, checksum: str) -> FoldJob | None:
        """The queued or running job folding the sequence of this MD5, if any."""
        with self._lock:
            return self._inflight.get(checksum)

    def job(self, job_id: str) -> FoldJob:
        """A job by ID, from memory or else from the atlas; raises UnknownEntryError when unknown (or pruned)."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            row = self.atlas.get_job(job_id)
            job = None if row is None else FoldJob.from_row(row)
        if job is None:
            raise UnknownEntryError(f"no fold job '{job_id[:80]}'")
        return job

    def submit(self, record: Record) -> FoldJob:
        """Queue a validated record for folding, or answer it from the atlas.

        Raises
        ------
        SequenceTooLongError
            If the record is longer than the service's limit.
        ServiceBusyError
            If the queue is full.
        """
        if record.length > self.max_length:
            raise SequenceTooLongError(f"record '{record.name}': {record.length} residues exceed this server's "
                                       f"limit of {self.max_length} (FOLDATLAS_MAX_LENGTH)")
        checksum = codec.sequence_md5(record.sequence)
        job = FoldJob(id=uuid.uuid4().hex, name=record.name, sequence=record.sequence, checksum=checksum,
                      description=record.description, substitutions=record.substitutions, submitted=time.time())
        stored = self.atlas.predicted_ids([checksum], self.model.weights_sha256)
        with self._lock:
            if checksum in stored:
                job.status, job.entry_id, job.cached = "done", stored[checksum], True
                job.started = job.finished = job.submitted
            elif checksum in self._inflight:
                return self._inflight[checksum]
            elif len(self._inflight) >= self.capacity:
                waiting = sum(j.length for j in self._inflight.values())
                retry = max(1, int(waiting * self._seconds_per_residue / max(1, self.capacity - len(self._inflight)
                                                                              + 1)))
                raise ServiceBusyError(f"the fold queue is full ({len(self._inflight)} jobs); retry in about "
                                       f"{retry} s", retry_after=min(retry, 3600))
            else:
                self._inflight[checksum] = job
            self._remember(job)
        self._save(job)  # committed before the job can run (or be answered), so that it survives a crash
        if job.is_finished:
            self._prune()
            job.done.set()
        else:
            self._executor.submit(self._run, job)
        return job

    def resume(self) -> int:
        """Re-queue the jobs that the atlas holds as queued or running (left by a stopped or killed server).

        A running job was interrupted and folds again from the start, unless servers died in :data:`MAX_ATTEMPTS`
        folds of it already (then it fails: its sequence may be what kills them). A job whose sequence the atlas
        already holds a prediction of (same weights) is marked done instead of folded. The others are queued in the
        order they were submitted, beyond the queue's capacity if need be (they were accepted), and a new
        submission of the same sequence joins them.

        Returns
        -------
        int
            Jobs re-queued or finished.
        """
        rows = self.atlas.unfinished_jobs()
        stored = self.atlas.predicted_ids(sorted({r["checksum"] for r in rows}), self.model.weights_sha256)
        count = 0
        for row in rows:
            job = FoldJob.from_row(row)
            job.status, job.started = "queued", 0.0
            settled = job.checksum in stored or job.attempts >= MAX_ATTEMPTS
            with self._lock:
                if job.id in self._jobs:
                    continue  # resumed (or submitted) by this process already
                self._remember(job)
                leader = None if settled else self._inflight.get(job.checksum)
                if leader is not None:
                    self._followers.setdefault(job.checksum, []).append(job)
                elif not settled:
                    self._inflight[job.checksum] = job
            count += 1
            if job.checksum in stored:
                job.entry_id, job.cached, job.status = stored[job.checksum], True, "done"
                self._finish(job)
            elif settled:
                job.status = "failed"
                job.error = f"the server stopped during each of {job.attempts} folds of this job; not retried"
                self._finish(job)
            elif leader is None:
                self._save(job, "status", "started")
                self._executor.submit(self._run, job)
        if count:
            log.info("resumed %d fold jobs from the atlas %s", count, self.atlas.folder)
        return count

    def _remember(self, job: FoldJob) -> None:
        self._jobs[job.id] = job
        while len(self._jobs) > self.jobs_kept:
            self._jobs.popitem(last=False)

    def _save(self, job: FoldJob, *columns: str) -> None:
        """Write a new job (no columns) or some of its columns to the atlas.

        A failed write is logged and the job goes on in memory: the service answers it until it restarts.
        """
        try:
            if columns:
                self.atlas.update_job(job.id, **{c: getattr(job, c) for c in columns})
            else:
                self.atlas.put_job(job.to_row())
        except AtlasError as e:
            log.warning("fold job %s not saved: %s", job.id, e)

    def _prune(self) -> None:
        try:
            self.atlas.prune_jobs(self.jobs_kept)
        except AtlasError as e:
            log.warning("old fold jobs not pruned: %s", e)

    def _save_result(self, job: FoldJob) -> None:
        """Stamp and save a job that is done or failed."""
        job.finished = time.time()
        job.started = job.started or job.finished
        self._save(job, "status", "entry_id", "cached", "error", "started", "finished")

    def _finish(self, job: FoldJob) -> None:
        """Save a job that is done or failed, drop the oldest finished jobs, then tell its waiters."""
        self._save_result(job)
        self._prune()
        job.done.set()

    def _run(self, job: FoldJob) -> None:
        from foldatlas.predict.engine import fold_batch

        job.status, job.started, job.attempts = "running", time.time(), job.attempts + 1
        self._save(job, "status", "started", "attempts")
        try:
            start = time.perf_counter()
            prediction = fold_batch(self.model, [job.record()], self.fold_options)[0]
            seconds = time.perf_counter() - start
            entry = batch_entries([prediction], self.model, self.embedder, self._options, seconds)[0]
            with self.write_lock:
                known = self.atlas.known_ids([job.checksum])
                if job.checksum not in known:
                    self.atlas.insert([entry])
            job.entry_id = job.checksum
            job.status = "done"
            self._seconds_per_residue = 0.8 * self._seconds_per_residue + 0.2 * seconds / max(1, job.length)
        except Exception as e:  # a failed fold is reported on the job; the service goes on
            text = str(e).splitlines()[0][:300] if str(e) else ""
            job.error = "out of memory" if "out of memory" in text.lower() else f"{e.__class__.__name__}: {text}"
            job.status = "failed"
        finally:
            # saved before it leaves the inflight table (a crash in between leaves it running; the restart finds
            # its entry and marks it done), and out of that table before its waiters hear of it (a waiter that
            # submits the sequence again is answered from the atlas)
            self._save_result(job)
            with self._lock:
                self._inflight.pop(job.checksum, None)
                followers = self._followers.pop(job.checksum, [])
            for other in followers:
                other.status, other.entry_id, other.error = job.status, job.entry_id, job.error
                other.started = job.started
                self._save_result(other)
                other.done.set()
            self._prune()
            job.done.set()
