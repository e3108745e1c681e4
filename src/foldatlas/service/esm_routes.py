"""Endpoints compatible with the ESM Metagenomic Atlas API (``api.esmatlas.com``).

* ``POST /foldSequence/v1/pdb/``: the body is a raw sequence (a FASTA record is accepted too); the answer is
  PDB text with per-residue pLDDT (0-100) in the B-factor column. Unlike the hosted API there is no 400-residue
  cap: the limit is the server's (``GET /api/v1/info``), and a longer sequence gets a 422 naming it.
* ``GET /fetchPredictedStructure/{id}`` (``.pdb`` or ``.cif`` suffix optional), ``GET /fetchConfidencePrediction/{id}``
  (JSON: AlphaFold DB's ``predicted_aligned_error`` and ``max_predicted_aligned_error``, plus ``plddt``, ``ptm``),
  ``GET /fetchSequence/{id}`` (JSON ``{"id", "sequence"}``), ``GET /fetchEmbedding/ESM2/{id}.json|.bin`` (the
  entry's mean embedding; ``.bin`` is little-endian float16 like the Atlas').

IDs are atlas entry IDs, aliases or sequence MD5s; a fold's entry ID is its sequence's MD5.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from foldatlas.service.common import FORMATS, context, fold_failure, parse_sequence, render_entry, wait_for

router = APIRouter(tags=["ESM Atlas compatible"])


@router.post("/foldSequence/v1/pdb/", response_class=Response,
             responses={200: {"content": {"chemical/x-pdb": {}}}})
async def fold_sequence(request: Request) -> Response:
    """Fold a sequence (raw body); answer PDB text with pLDDT in the B-factors (from the atlas when known)."""
    ctx = context(request)
    record = parse_sequence(await request.body())
    job = ctx.folds.submit(record)
    if not await wait_for(job, ctx.settings.fold_timeout):
        return fold_failure(504, "timeout", f"the fold did not finish within {ctx.settings.fold_timeout:.0f} s; "
                                            f"it goes on: poll /api/v1/jobs/{job.id}", job)
    if job.status != "done":
        return fold_failure(500, "fold_failed", f"the fold failed: {job.error}", job)
    data = await render_entry(request, job.entry_id, "pdb")
    return Response(data, media_type=FORMATS["pdb"], headers={"X-Foldatlas-Entry": job.entry_id,
                                                              "X-Foldatlas-Cached": str(job.cached).lower()})


@router.get("/fetchPredictedStructure/{entry_id}", response_class=Response)
async def fetch_structure(entry_id: str, request: Request) -> Response:
    """The entry's structure: PDB (default, or ``.pdb``) or mmCIF (``.cif``)."""
    fmt = "pdb"
    if entry_id.lower().endswith(".cif"):
        entry_id, fmt = entry_id[:-4], "cif"
    elif entry_id.lower().endswith(".pdb"):
        entry_id = entry_id[:-4]
    return Response(await render_entry(request, entry_id, fmt), media_type=FORMATS[fmt])


@router.get("/fetchConfidencePrediction/{entry_id}", response_class=Response)
async def fetch_confidence(entry_id: str, request: Request) -> Response:
    """PAE (AlphaFold DB field names), per-residue pLDDT and pTM of the entry."""
    return Response(await render_entry(request, entry_id.removesuffix(".json"), "confidence"),
                    media_type="application/json")


@router.get("/fetchSequence/{entry_id}")
async def fetch_sequence(entry_id: str, request: Request) -> dict:
    """The entry's sequence (chains joined by ``:``)."""
    atlas = context(request).atlas
    rowid, eid = atlas.resolve(entry_id)
    meta = atlas.metadata_of([rowid], ("sequence",))
    return {"id": eid, "sequence": meta[rowid][0]}


@router.get("/fetchEmbedding/ESM2/{name}", response_class=Response)
async def fetch_embedding(name: str, request: Request) -> Response:
    """The entry's mean language-model embedding: ``{id}.json`` or ``{id}.bin`` (float16)."""
    from foldatlas.errors import InvalidOptionError

    if name.endswith(".json"):
        fmt, entry_id = "embedding.json", name[:-5]
    elif name.endswith(".bin"):
        fmt, entry_id = "embedding.bin", name[:-4]
    else:
        raise InvalidOptionError(f"'{name[:80]}': ask for {{id}}.json or {{id}}.bin")
    return Response(await render_entry(request, entry_id, fmt), media_type=FORMATS[fmt])
