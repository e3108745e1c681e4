"""Fold jobs of the service: a bounded queue in front of the folding model, with the atlas as the cache.

* A submitted sequence whose prediction by the same weights is already in the atlas is answered at once
  from the store (``cached``); the same sequence submitted again while it folds joins the running job.
* At most ``fold_workers`` folds run at once and ``queue_size`` wait; beyond that a submission is refused
  with :class:`~foldatlas.errors.ServiceBusyError` (HTTP 503 with ``Retry-After``), never queued without bound.
* A finished fold is inserted into the atlas (one transaction) with its PAE and mean embedding, under the
  entry ID of its sequence's MD5 checksum; the name the user gave is its description.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from foldatlas.atlas import codec
from foldatlas.atlas.build import BuildOptions, batch_entries, check_embedding_model, check_folding_model
from foldatlas.errors import SequenceTooLongError, ServiceBusyError, UnknownEntryError
from foldatlas.seq.records import Record

__all__ = ["FoldJob", "FoldService"]


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
    status : {"queued", "running", "done", "failed"}
    entry_id : str or None
        The atlas entry holding the result, once done.
    cached : bool
        Answered from the atlas without folding.
    error : str or None
        Why the fold failed (one line).
    submitted, started, finished : float
        Unix times (0 when not reached).
    """

    id: str
    name: str
    sequence: str
    checksum: str
    status: str = "queued"
    entry_id: str | None = None
    cached: bool = False
    error: str | None = None
    submitted: float = 0.0
    started: float = 0.0
    finished: float = 0.0
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def length(self) -> int:
        """Residues over all chains."""
        return len(self.sequence.replace(":", ""))

    def to_dict(self) -> dict:
        """JSON-ready status."""
        seconds = (self.finished - self.started) if self.finished and self.started else None
        return {"job_id": self.id, "status": self.status, "name": self.name, "length": self.length,
                "checksum": self.checksum, "entry_id": self.entry_id, "cached": self.cached, "error": self.error,
                "fold_seconds": None if seconds is None else round(seconds, 3)}


class FoldService:
    """Folds sequences into an atlas through a bounded queue.

    Parameters
    ----------
    atlas : foldatlas.atlas.Atlas
        Opened for writing.
    folding_model : foldatlas.models.FoldingModel
    embedder : foldatlas.models.embedding.Embedder or None
    max_length : int
        Longest accepted input (residues over all chains).
    fold_workers, queue_size, jobs_kept : int
        See :class:`foldatlas.service.ServiceSettings`.

    Raises
    ------
    OutputConflictError
        If the atlas holds predictions of other weights or embeddings of another language model.
    """

    def __init__(self, atlas, folding_model, embedder, max_length: int, fold_workers: int = 1,
                 queue_size: int = 16, jobs_kept: int = 10000) -> None:
        self.atlas = atlas
        self.model = folding_model
        self.embedder = embedder
        self.max_length = max_length
        self.capacity = fold_workers + queue_size
        self.jobs_kept = jobs_kept
        self.write_lock = threading.RLock()  # atlas writes and index updates of this process
        self._lock = threading.Lock()  # the job tables
        self._jobs: OrderedDict[str, FoldJob] = OrderedDict()
        self._inflight: dict[str, FoldJob] = {}
        self._seconds_per_residue = 0.05  # running estimate, for Retry-After
        self._options = BuildOptions(source="foldatlas serve")
        with self.write_lock:
            check_folding_model(atlas, folding_model, self._options)
            check_embedding_model(atlas, embedder)
        self._executor = ThreadPoolExecutor(fold_workers, thread_name_prefix="fold")

    def close(self) -> None:
        """Stop taking jobs; wait for running folds to finish."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        with self._lock:
            return len(self._inflight)

    def job(self, job_id: str) -> FoldJob:
        """A job by ID; raises UnknownEntryError when unknown (or forgotten)."""
        with self._lock:
            job = self._jobs.get(job_id)
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
                      submitted=time.time())
        stored = self.atlas.predicted_ids([checksum], self.model.weights_sha256)
        with self._lock:
            if checksum in stored:
                job.status, job.entry_id, job.cached = "done", stored[checksum], True
                job.started = job.finished = job.submitted
                job.done.set()
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
        if not job.done.is_set():
            self._executor.submit(self._run, job, record)
        return job

    def _remember(self, job: FoldJob) -> None:
        self._jobs[job.id] = job
        while len(self._jobs) > self.jobs_kept:
            self._jobs.popitem(last=False)

    def _run(self, job: FoldJob, record: Record) -> None:
        from foldatlas.predict.engine import FoldOptions, fold_batch

        job.status, job.started = "running", time.time()
        try:
            named = Record(name=job.checksum, chains=record.chains, description=record.name,
                        substitutions=record.substitutions)
            start = time.perf_counter()
            prediction = fold_batch(self.model, [named], FoldOptions())[0]
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
            job.finished = time.time()
            with self._lock:
                self._inflight.pop(job.checksum, None)
            job.done.set()
