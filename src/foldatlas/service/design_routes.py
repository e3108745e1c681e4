"""Protein design over HTTP (``/api/v1/design``): ProteinMPNN designs for an atlas entry's structure, optionally
refolded by the server's folding model, as jobs.

A design runs in one worker thread (designs are CPU-bound; one at a time keeps folds and searches responsive);
``queue`` jobs may wait, beyond that a submission gets 503. Jobs live in memory (the newest :data:`KEPT`), not in
the atlas: a design is a computation on an entry, not an entry. Refolded models are kept with their job, superposed
on the entry's structure, for the web page's Design panel.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from foldatlas.errors import FoldatlasError, InvalidOptionError, ServiceBusyError, UnknownEntryError
from foldatlas.service.common import context, field_error

router = APIRouter(prefix="/api/v1/design", tags=["Design"])

MAX_DESIGNS = 32  # sequences per design request
MAX_REFOLD = 8  # designs a request may refold (each is a fold by the server's model)
MAX_RESIDUES = 2000  # residues of a structure a design request may take
QUEUE = 4  # design jobs that may wait
KEPT = 64  # finished jobs remembered


def limits() -> dict:
    """The design endpoint's limits (listed by ``GET /api/v1/info``)."""
    return {"num_sequences": [1, MAX_DESIGNS], "refold_max_designs": MAX_REFOLD, "max_residues": MAX_RESIDUES,
            "temperature": [0.0, 2.0], "queue_size": QUEUE, "models": ["proteinmpnn", "soluble"]}


class DesignRequest(BaseModel):
    """A design of an atlas entry's structure. Unknown fields are refused (422)."""

    model_config = ConfigDict(extra="forbid")
    entry_id: str = Field(..., min_length=1, max_length=200, description="The atlas entry whose structure to design")
    num_sequences: int = Field(8, ge=1, le=MAX_DESIGNS)
    temperature: float = Field(0.1, gt=0.0, le=2.0)
    seed: int = Field(0, ge=0, le=2 ** 31 - 1)
    chains: list[str] | None = Field(None, max_length=64, description="Chains to design (default: all)")
    fixed: str | None = Field(None, max_length=2000, description="Residues kept, like A10-25,B3")
    omit: str = Field("", max_length=20, description="Amino acids never sampled, like C")
    bias: dict[str, float] = Field({}, description="Logit bias per amino acid, like {\"A\": -1.0}")
    tied: str | None = Field(None, max_length=20000, description="Tied positions, like A10,B10|A11,B11")
    homo_oligomer: bool = False
    model: Literal["proteinmpnn", "soluble"] = "proteinmpnn"
    refold: bool = Field(False, description="Fold each design with the server's folding model (scTM, RMSD, pLDDT, "
                                            f"pTM); at most {MAX_REFOLD} designs")


class DesignJobs:
    """The design queue of a server: one worker thread, a bounded wait, results kept in memory."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="foldatlas-design")
        self._jobs: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def submit(self, run, entry_id: str) -> dict:
        """Queue ``run(job)`` (it fills ``job["result"]``); raises ServiceBusyError when the queue is full."""
        with self._lock:
            waiting = sum(1 for j in self._jobs.values() if j["status"] in ("queued", "running"))
            if waiting > QUEUE:
                raise ServiceBusyError(f"{waiting} design jobs are waiting; try again in a minute")
            job = {"id": uuid.uuid4().hex, "entry_id": entry_id, "status": "queued", "submitted": time.time(),
                   "finished": None, "error": None, "result": None, "models": {}}
            self._jobs[job["id"]] = job
            while len(self._jobs) > KEPT:
                oldest = next(iter(self._jobs))
                if self._jobs[oldest]["status"] in ("queued", "running"):
                    break
                self._jobs.popitem(last=False)
        self._pool.submit(self._run, run, job)
        return job

    def _run(self, run, job: dict) -> None:
        job["status"] = "running"
        try:
            run(job)
            job["status"] = "done"
        except FoldatlasError as e:
            job["status"], job["error"] = "failed", str(e)
        except Exception as e:  # noqa: BLE001 - a job fails with one line; the server goes on
            job["status"], job["error"] = "failed", f"design failed: {type(e).__name__}: {str(e)[:200]}"
        job["finished"] = time.time()

    def get(self, job_id: str) -> dict:
        """A job by ID (UnknownEntryError: 404)."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise UnknownEntryError(f"no design job {job_id[:64]!r} (jobs are kept in memory, the newest {KEPT})")
        return job

    def close(self) -> None:
        """Stop taking jobs; running ones finish."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _jobs(ctx) -> DesignJobs:
    with ctx.lm_lock:  # created once per server, on first use
        if getattr(ctx, "designs", None) is None:
            ctx.designs = DesignJobs()
        return ctx.designs


def _answer(job: dict, status: int | None = None) -> JSONResponse:
    body = {k: v for k, v in job.items() if k != "models"}
    base = f"/api/v1/design/{job['id']}"
    body["links"] = {"job": base, "entry": f"/api/v1/entries/{job['entry_id']}",
                     "models": {str(k): f"{base}/models/{k}.pdb" for k in sorted(job["models"])}}
    return JSONResponse(body, status_code=status or (200 if job["status"] in ("done", "failed") else 202))


@router.post("", status_code=202)
async def submit_design(req: DesignRequest, request: Request) -> JSONResponse:
    """Submit a design job for an entry's structure: 202 with the job (poll ``links.job``); 404 for an unknown
    entry, 422 naming the field for invalid options, 503 when the design queue is full."""
    from foldatlas.atlas import codec
    from foldatlas.design.features import backbone
    from foldatlas.design.mpnn import DesignOptions

    ctx = context(request)
    try:
        entry = ctx.atlas.get(req.entry_id, pae=False, embedding=False)
    except UnknownEntryError as e:
        raise field_error("entry_id", e) from None
    atoms = codec.decode_structure(entry.structure_blob)
    bb = backbone(atoms)
    length = len(bb)
    if length > MAX_RESIDUES:
        raise field_error("entry_id", InvalidOptionError(f"the entry has {length} residues; this server designs at "
                                                         f"most {MAX_RESIDUES}"))
    if req.refold and req.num_sequences > MAX_REFOLD:
        raise field_error("num_sequences", InvalidOptionError(f"refold takes at most {MAX_REFOLD} designs"))
    try:
        options = DesignOptions(num_sequences=req.num_sequences, temperature=req.temperature, seed=req.seed,
                                batch_size=min(req.num_sequences, 8), chains=tuple(req.chains) if req.chains else None,
                                fixed=req.fixed, omit=req.omit, bias=dict(req.bias), tied=req.tied,
                                homo_oligomer=req.homo_oligomer, model=req.model)
    except InvalidOptionError as e:
        raise field_error(_field_of(str(e)), e) from None
    _check(bb, options)
    folding_model = ctx.folds.model

    def run(job: dict) -> None:
        from foldatlas.design.mpnn import design_sequences
        from foldatlas.design.refold import refold_designs
        from foldatlas.structure.io import to_pdb_string

        result = design_sequences(atoms, options, name=entry.id)
        job["result"] = result.to_dict()
        if req.refold:
            def keep(index: int, prediction, superposed) -> None:
                job["models"][index] = to_pdb_string(superposed)

            rows = refold_designs(result, atoms, folding_model, keep=keep)
            job["result"]["refolded"] = {"model": folding_model.name, "designs": [r.to_dict() for r in rows]}

    return _answer(_jobs(ctx).submit(run, entry.id))


def _field_of(message: str) -> str:
    """The request field an option error is about (its message starts with the CLI option)."""
    for option, field in (("--num-sequences", "num_sequences"), ("--temperature", "temperature"),
                          ("--seed", "seed"), ("--omit", "omit"), ("--bias", "bias"), ("--chains", "chains"),
                          ("--fixed", "fixed"), ("--tied", "tied"), ("--homo-oligomer", "homo_oligomer")):
        if message.startswith(option):
            return field
    return "options"


def _check(bb, options) -> None:
    """Refuse (422) what the design would refuse, before queueing it: chains, positions, ties."""
    from foldatlas.design.mpnn import design_plan

    try:
        design_plan(bb, options)
    except InvalidOptionError as e:
        raise field_error(_field_of(str(e)), e) from None


@router.get("/{job_id}")
async def design_status(job_id: str, request: Request) -> JSONResponse:
    """A design job: its status and, when done, the designs (and refolded scores)."""
    return _answer(_jobs(context(request)).get(job_id), 200)


@router.get("/{job_id}/models/{index}.pdb", response_class=Response)
async def design_model(job_id: str, index: int, request: Request) -> Response:
    """A refolded design (index 0: the entry's own sequence), superposed on the entry's structure, as PDB."""
    job = _jobs(context(request)).get(job_id)
    if index not in job["models"]:
        raise UnknownEntryError(f"design job {job_id[:64]} has no refolded model {index}")
    return Response(job["models"][index], media_type="chemical/x-pdb")
