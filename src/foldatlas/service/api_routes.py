"""The JSON API under ``/api/v1``: fold jobs, entries (and their samples), sequence and structure search,
superposition, the map."""

from __future__ import annotations

import gzip
import time
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from foldatlas import __version__
from foldatlas.errors import InvalidFileError, InvalidOptionError
from foldatlas.service.common import (
    FORMATS,
    context,
    field_error,
    parse_sequence,
    render_entry,
    request_field,
    wait_for,
)
from foldatlas.service.settings import MAX_RECYCLES, MAX_SAMPLES, MAX_SEED

router = APIRouter(prefix="/api/v1", tags=["JSON API"])

_UPLOAD_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif", ".pdb.gz", ".ent.gz", ".cif.gz", ".mmcif.gz")
MAX_WAIT = 600.0  # seconds a fold request may wait for its result
MAX_EVALUE = 1000.0
MAX_TMALIGN = 200  # candidates a structure search may TM-align per query
MAX_MAP_POINTS = 200_000


class FoldRequest(BaseModel):
    """A fold: a raw sequence (``:`` between chains) or one FASTA record. Unknown fields are refused (422)."""

    model_config = ConfigDict(extra="forbid")
    sequence: str = Field(..., max_length=200_000, description="Raw sequence or one FASTA record")
    name: str = Field("query", max_length=200, description="Name (the FASTA header wins when one is given)")
    wait: float = Field(0.0, ge=0.0, le=MAX_WAIT, description="Seconds to wait for the result before answering 202")
    num_recycles: int | None = Field(None, ge=0, le=MAX_RECYCLES, description="Must equal the server's "
                                     "(GET /api/v1/info: limits.num_recycles): its atlas holds folds of one setting")
    num_samples: int | None = Field(None, ge=1, le=MAX_SAMPLES, description="ESMFold2 samples; must equal the "
                                    "server's (GET /api/v1/info: limits.fold.num_samples)")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="ESMFold2 seed; must equal the server's "
                             "(GET /api/v1/info: limits.fold.seed)")


class SequenceSearchRequest(BaseModel):
    """A sequence search of the atlas."""

    model_config = ConfigDict(extra="forbid")
    sequence: str = Field(..., max_length=200_000)
    max_hits: int = Field(50, ge=1, description="At most the server's max_hits (GET /api/v1/info)")
    evalue: float = Field(1e-3, gt=0, le=MAX_EVALUE)


def limits(ctx) -> dict:
    """Every limit a request is checked against, as ``GET /api/v1/info`` lists them."""
    from foldatlas.service import design_routes, lm_routes

    return {
        "fold": {"max_length": ctx.max_length, "num_recycles": ctx.folds.num_recycles,
                 "num_samples": ctx.folds.settings.get("num_samples"), "seed": ctx.folds.settings.get("seed"),
                 "settings": ctx.folds.settings,
                 "num_recycles_range": [0, MAX_RECYCLES], "wait_seconds": [0, MAX_WAIT],
                 "queue_size": ctx.settings.queue_size, "fold_workers": ctx.settings.fold_workers,
                 "timeout_seconds": ctx.settings.fold_timeout, "name_max_chars": 200},
        "search": {"max_hits": [1, ctx.settings.max_hits], "evalue": [0, MAX_EVALUE], "min_tm": [0.0, 1.0],
                   "tmalign": [0, MAX_TMALIGN]},
        "map": {"max_points": [1, MAX_MAP_POINTS]},
        "lm": lm_routes.limits(),
        "design": design_routes.limits(),
        "max_body_bytes": ctx.settings.max_body_bytes,
    }


@router.get("/info")
async def info(request: Request) -> dict:
    """Version, model, limits (every range a request is checked against) and atlas size."""
    ctx = context(request)
    model = ctx.folds.model
    return {"version": __version__, "model": model.name, "model_source": model.source,
            "weights_sha256": model.weights_sha256, "max_length": ctx.max_length,
            "num_recycles": ctx.folds.num_recycles,
            "precision": model.precision.as_dict() if getattr(model, "precision", None) is not None else None,
            "fold_workers": ctx.settings.fold_workers, "queue_size": ctx.settings.queue_size,
            "pending_folds": ctx.folds.pending, "atlas_entries": len(ctx.atlas),
            "embedding_model": (ctx.atlas.get_meta("embedding_model") or {}).get("name"),
            "max_body_bytes": ctx.settings.max_body_bytes, "max_hits": ctx.settings.max_hits,
            "limits": limits(ctx)}


def _job_answer(job, status: int | None = None) -> JSONResponse:
    body = job.to_dict()
    body["links"] = {"job": f"/api/v1/jobs/{job.id}"}
    if job.entry_id:
        base = f"/api/v1/entries/{job.entry_id}"
        body["links"].update(entry=base, pdb=f"{base}/structure.pdb", cif=f"{base}/structure.cif",
                             pae=f"{base}/pae.json", samples=f"{base}/samples", page=f"/entry/{job.entry_id}")
    code = status or (200 if job.status in ("done", "failed") else 202)
    return JSONResponse(body, status_code=code)


@router.post("/fold", status_code=202)
async def submit_fold(req: FoldRequest, request: Request) -> JSONResponse:
    """Submit a fold job: 200 with the result when it is known (or finishes within ``wait`` seconds), else 202.

    503 with ``Retry-After`` when the queue is full; 422 for an invalid or over-long sequence.
    """
    ctx = context(request)
    for option, flag in (("num_recycles", "--num-recycles"), ("num_samples", "--num-samples"), ("seed", "--seed")):
        asked, runs = getattr(req, option), ctx.folds.settings.get(option)
        if asked is not None and asked != runs:
            raise field_error(option, InvalidOptionError(
                f"this server folds with {option}={runs} (its atlas holds folds of one setting; serve {flag} sets it)"
                if runs is not None else f"{option} does not apply to this server's model {ctx.folds.model.name}"))
    with request_field("sequence"):
        job = ctx.folds.submit(parse_sequence(req.sequence, name=req.name or "query"))
    if req.wait > 0:
        await wait_for(job, min(req.wait, ctx.settings.fold_timeout))
    return _job_answer(job)


@router.get("/jobs/{job_id}")
async def job_status(job_id: str, request: Request) -> JSONResponse:
    """A fold job's status; when done, links to its entry."""
    return _job_answer(context(request).folds.job(job_id), 200)


@router.get("/entries/{entry_id}")
async def entry(entry_id: str, request: Request, pae: bool = False) -> Response:
    """An entry's metadata, per-residue pLDDT and geometry report (``pae=true``: the PAE matrix too)."""
    ctx = context(request)
    key = (entry_id, "json+pae" if pae else "json")
    data = ctx.cached_render(key)
    if data is None:
        data = await run_in_threadpool(lambda: ctx.atlas.get(entry_id, pae=pae, embedding=False).to_json(
            include_pae=pae, include_geometry=True).encode())
        ctx.store_render(key, data)
    return Response(data, media_type="application/json")


_FILES = {"structure.pdb": "pdb", "structure.cif": "cif", "structure.bcif": "bcif", "pae.json": "pae",
          "pae.png": "pae.png", "sequence.fasta": "fasta",
          "confidence.json": "confidence", "embedding.json": "embedding.json", "embedding.bin": "embedding.bin"}
_SAMPLE_FILES = {"structure.pdb": "pdb", "structure.cif": "cif"}


def _attachment(entry_id: str, file_name: str) -> dict:
    """The header that makes a browser save a file, named after the entry."""
    stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in entry_id)[:100]
    return {"Content-Disposition": f'attachment; filename="{stem}_{file_name}"'}


# Registered before entry_file, whose /entries/{entry_id}/{file_name} would take "samples" for a file name.
@router.get("/entries/{entry_id}/samples")
async def entry_samples(entry_id: str, request: Request) -> dict:
    """Every stored sample of an entry (ESMFold2 draws several; the entry itself is the best one, ``best_sample``):
    pTM, ipTM, mean pLDDT, ranking score and links to its structure. An entry without samples (ESMFold v1,
    imported) lists none."""
    ctx = context(request)

    def read():
        entry = ctx.atlas.get(entry_id, pae=False, embedding=False)
        return entry, ctx.atlas.samples(entry.id)

    entry, samples = await run_in_threadpool(read)
    base = f"/api/v1/entries/{quote(entry.id, safe='')}/samples"
    listed = [{**s.to_dict(), "links": {"pdb": f"{base}/{s.sample}/structure.pdb",
                                        "cif": f"{base}/{s.sample}/structure.cif"}} for s in samples]
    return {"id": entry.id, "best_sample": entry.provenance.get("best_sample") if samples else None,
            "samples": listed}


@router.get("/entries/{entry_id}/samples/{sample}/{file_name}")
async def entry_sample_file(entry_id: str, sample: int, file_name: str, request: Request,
                            download: bool = False) -> Response:
    """One sample's structure: structure.pdb or structure.cif, its pLDDT in the B-factor column (404 for a sample
    the entry does not store)."""
    fmt = _SAMPLE_FILES.get(file_name)
    if fmt is None:
        raise InvalidOptionError(f"unknown file '{file_name[:40]}': use one of {', '.join(_SAMPLE_FILES)}")
    ctx = context(request)
    key = (entry_id, f"sample {sample} {fmt}")
    data = ctx.cached_render(key)
    if data is None:
        def render() -> bytes:
            stored = ctx.atlas.get_sample(entry_id, sample)
            return (stored.to_pdb() if fmt == "pdb" else stored.to_mmcif()).encode()

        data = await run_in_threadpool(render)
        ctx.store_render(key, data)
    headers = _attachment(entry_id, f"sample{sample}_{file_name}") if download else {}
    return Response(data, media_type=FORMATS[fmt], headers=headers)


@router.get("/entries/{entry_id}/{file_name}")
async def entry_file(entry_id: str, file_name: str, request: Request, download: bool = False) -> Response:
    """An entry's file: structure.pdb, structure.cif (ModelCIF), structure.bcif (the same as BinaryCIF), pae.json
    (AlphaFold DB format), pae.png (AlphaFold DB's PAE image), confidence.json, sequence.fasta, embedding.json, embedding.bin."""
    fmt = _FILES.get(file_name)
    if fmt is None:
        raise InvalidOptionError(f"unknown file '{file_name[:40]}': use one of {', '.join(_FILES)}")
    data = await render_entry(request, entry_id, fmt)
    headers = _attachment(entry_id, file_name) if download else {}
    return Response(data, media_type=FORMATS[fmt], headers=headers)


@router.post("/search/sequence")
async def search_sequence(req: SequenceSearchRequest, request: Request) -> dict:
    """Search the atlas by sequence (HMMER3 phmmer; E-values over the whole atlas)."""
    from foldatlas.atlas.seqsearch import SearchOptions, search_sequences

    ctx = context(request)
    if req.max_hits > ctx.settings.max_hits:
        raise field_error("max_hits", InvalidOptionError(f"at most {ctx.settings.max_hits} on this server "
                                                         f"(FOLDATLAS_MAX_HITS)"))
    with request_field("sequence"):
        record = parse_sequence(req.sequence)
    options = SearchOptions(evalue=req.evalue, max_hits=req.max_hits, threads=1)
    start = time.perf_counter()

    def run():
        with ctx.folds.write_lock:  # the index may catch up with new entries first
            return search_sequences(ctx.atlas, [record], options)[0]

    hits = await run_in_threadpool(run)
    return {"query": record.name, "length": record.length, "seconds": round(time.perf_counter() - start, 3),
            "hits": [h.to_dict() for h in hits]}


async def _upload(request: Request) -> tuple[dict, tuple[str, bytes] | None]:
    """Form fields and the uploaded file (name, bytes; gunzipped) of a multipart request."""
    limit = context(request).settings.max_body_bytes
    try:
        form = await request.form(max_files=1, max_fields=20, max_part_size=limit)
    except Exception as e:  # malformed multipart bodies raise several types
        raise InvalidFileError(f"could not read the upload ({str(e)[:100] or e.__class__.__name__}); send "
                               f"multipart/form-data with a 'file' field") from None
    fields, upload = {}, None
    for key, value in form.multi_items():
        if hasattr(value, "read"):
            name = value.filename or "upload.pdb"
            data = await value.read()
            if data[:2] == b"\x1f\x8b":
                try:
                    data = gzip.decompress(data)
                except (OSError, EOFError) as e:
                    raise InvalidFileError(f"{name}: not a readable gzip file ({e})") from None
                if len(data) > 8 * limit:
                    raise InvalidFileError(f"{name}: too large once decompressed")
            upload = (name, data)
        else:
            fields[key] = str(value)
    await form.close()
    return fields, upload


def _atoms_of(upload: tuple[str, bytes]):
    from foldatlas.structure.io import read_structure

    name, data = upload
    if not data.strip():
        raise InvalidFileError(f"{name}: empty file")
    base = name.lower().removesuffix(".gz")
    if not base.endswith(_UPLOAD_SUFFIXES):
        base = "upload.cif" if data.lstrip().startswith(b"data_") else "upload.pdb"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidFileError(f"{name}: not a text PDB or mmCIF file") from None
    return read_structure(text=text, name=base)


def _number_field(fields: dict, key: str, default, lo, hi, kind=int):
    """A multipart form field as a number in ``[lo, hi]`` (422 naming the field otherwise)."""
    raw = fields.get(key)
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise field_error(key, InvalidOptionError(f"not {'an integer' if kind is int else 'a number'}: "
                                                  f"{raw[:20]!r}")) from None
    if not lo <= value <= hi:  # NaN fails this too
        raise field_error(key, InvalidOptionError(f"must be between {lo} and {hi}"))
    return value


def _check_fields(fields: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise field_error(unknown[0][:40], InvalidOptionError(f"unknown field; this endpoint takes "
                                                              f"{', '.join(allowed)}"))


@router.post("/search/structure")
async def search_structure(request: Request) -> dict:
    """Search the atlas by structure: multipart with ``file`` (PDB/mmCIF, gzipped too) or ``entry_id``;
    optional ``chain``, ``max_hits``, ``min_tm``, ``tmalign``, ``mode`` (3diaa, 3di or alphabet)."""
    from foldatlas.atlas import codec
    from foldatlas.atlas.structsearch import StructureSearchOptions, chains_of, search_structures

    ctx = context(request)
    fields, upload = await _upload(request)
    _check_fields(fields, ("file", "entry_id", "chain", "max_hits", "min_tm", "tmalign", "mode"))
    max_hits = _number_field(fields, "max_hits", 50, 1, ctx.settings.max_hits)
    tmalign = _number_field(fields, "tmalign", 0, 0, MAX_TMALIGN)
    min_tm = _number_field(fields, "min_tm", 0.0, 0.0, 1.0, kind=float)
    with request_field("mode"):
        options = StructureSearchOptions(max_hits=max_hits, min_tm=min_tm, tmalign=tmalign,
                                         mode=fields.get("mode") or "3diaa")
    chain = fields.get("chain") or None
    if upload is not None:
        with request_field("file"):
            atoms, name = await run_in_threadpool(_atoms_of, upload), upload[0].split(".")[0][:80] or "upload"
    elif fields.get("entry_id"):
        with request_field("entry_id"):
            stored = await run_in_threadpool(ctx.atlas.get, fields["entry_id"], False, False)
        atoms, name = codec.decode_structure(stored.structure_blob), stored.id
    else:
        raise field_error("file", InvalidFileError("send a structure file ('file') or an atlas entry ID ('entry_id')"))
    with request_field("chain"):
        queries = chains_of(atoms, name, chain)
    if not queries:
        raise InvalidFileError(f"{name}: no protein chain to search with")
    start = time.perf_counter()

    def run():
        with ctx.folds.write_lock:
            return search_structures(ctx.atlas, queries[:1], options, keep=True)[0]

    hits = await run_in_threadpool(run)
    return {"query": queries[0].name, "length": len(queries[0].trace.ca), "seconds": round(time.perf_counter()
                                                                                          - start, 3),
            "chains_in_query": len(queries), "hits": [h.to_dict() for h in hits]}


@router.post("/superpose")
async def superpose(request: Request) -> dict:
    """Superpose an entry on an uploaded experimental structure (multipart ``entry_id`` + ``file``, optional
    ``chain``): TM-score (by the experimental structure's length), RMSD, GDT-TS, lDDT-Ca, and both structures as
    PDB text in the experimental structure's frame."""
    from foldatlas.atlas import codec
    from foldatlas.structure.compare import compare_structures
    from foldatlas.structure.io import select_chains, to_pdb_string

    ctx = context(request)
    fields, upload = await _upload(request)
    _check_fields(fields, ("file", "entry_id", "chain"))
    if upload is None or not fields.get("entry_id"):
        raise InvalidFileError("send the entry ('entry_id') and an experimental structure file ('file')")

    def run():
        stored = ctx.atlas.get(fields["entry_id"], pae=False, embedding=False)
        reference = select_chains(_atoms_of(upload), fields.get("chain") or None, label=upload[0])
        comparison, moved = compare_structures(codec.decode_structure(stored.structure_blob), reference)
        return stored.id, comparison, to_pdb_string(moved), to_pdb_string(reference)

    entry_id, comparison, model_pdb, reference_pdb = await run_in_threadpool(run)
    return {"entry_id": entry_id, "reference": upload[0][:200], **comparison.to_dict(),
            "model_pdb": model_pdb, "reference_pdb": reference_pdb}


@router.get("/map")
async def atlas_map(request: Request, max_points: int = Query(20000, ge=1, le=MAX_MAP_POINTS)) -> dict:
    """The atlas map: entries' mean embeddings projected to 2D (PCA), with mean pLDDT and length."""
    from foldatlas.atlas.mapping import embedding_map

    ctx = context(request)
    key = (ctx.atlas.max_rowid(), len(ctx.atlas), max_points)
    cached = ctx.map_cache
    if cached is not None and cached[0] == key:
        return cached[1]
    result = (await run_in_threadpool(embedding_map, ctx.atlas, max_points)).to_dict()
    ctx.map_cache = (key, result)
    return result
