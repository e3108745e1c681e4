"""Endpoints shaped as the ESM Atlas successor's API (Biohub, alpha): proteins keyed by the MD5 of their sequence.

* ``GET /proteins/{protein_hash}``: the protein (``protein_hash``, ``accession``, ``source``, ``sequence``,
  ``sequence_length``, ``ptm``, ``mean_plddt`` on 0-1 as that API gives it, ``cluster_rep_protein_hash``) and links.
  An unknown hash is a 404; with ``fold_on_miss=true`` a fold already queued for it answers 202 with the job, and
  a ``sequence`` whose MD5 is the hash is queued (202; poll the same URL or the job). The hosted API folds on a miss
  because it holds 6.8 billion sequences; a self-hosted atlas knows only its own, hence the ``sequence``.
* ``GET /clusters/{protein_hash}``: the cluster holding the protein (its representative's hash, size, members,
  ``limit``/``offset`` pages), from a clustering stored by ``foldatlas atlas cluster`` (``clustering=`` names one;
  default: :func:`default_clustering`).
* ``GET /proteins/{protein_hash}/thumbnail/{type}``: a PNG (``structure``, ``plddt`` or ``pae``).
"""

from __future__ import annotations

import re
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from foldatlas.errors import InvalidOptionError, ServiceBusyError, UnknownEntryError
from foldatlas.service.common import context, field_error, parse_sequence, render_entry, request_field

router = APIRouter(tags=["ESM Atlas successor compatible"])

_MD5 = re.compile(r"^[0-9a-f]{32}$")
_PROTEIN_COLUMNS = ("id", "checksum", "sequence", "length", "ptm", "mean_plddt", "kind", "model", "source")
RETRY_AFTER_S = 5


def _hash(protein_hash: str) -> str:
    value = protein_hash.strip().lower()
    if not _MD5.match(value):
        raise field_error("protein_hash", InvalidOptionError(
            f"'{protein_hash[:40]}' is not an MD5 (32 hexadecimal digits of the sequence's MD5)"))
    return value


def default_clustering(atlas) -> str | None:
    """The clustering the successor endpoints report when none is named: the only one; else the sequence one of
    lowest identity threshold without confidence filters (the ESM Atlas' own kind), else the first by name."""
    stored = atlas.clusterings()
    if len(stored) <= 1:
        return next(iter(stored), None)
    ranked = sorted(stored, key=lambda n: (stored[n].get("by") != "sequence", stored[n].get("min_plddt") is not None
                                           or stored[n].get("min_ptm") is not None,
                                           stored[n].get("min_identity", 1.0), n))
    return ranked[0]


def clustering_of(atlas, name: str | None) -> str | None:
    """The clustering a request names (422 naming the field when the atlas has none of that name), or the
    default (:func:`default_clustering`)."""
    if name is None:
        return default_clustering(atlas)
    if name not in atlas.clusterings():
        raise field_error("clustering", InvalidOptionError(
            f"no clustering '{name[:80]}' in this atlas (stored: {', '.join(atlas.clusterings()) or 'none'})"))
    return name


def _rowid(atlas, protein_hash: str) -> int:
    """The first entry whose sequence has this MD5 (UnknownEntryError if none)."""
    rowid, _ = atlas.resolve(protein_hash)
    checksum = atlas.metadata_of([rowid], ("checksum",))[rowid][0]
    if checksum != protein_hash:  # an entry ID or alias that looks like an MD5
        raise UnknownEntryError(f"no protein with sequence MD5 {protein_hash}")
    return rowid


def protein_records(atlas, rowids: list[int], clustering: str | None) -> list[dict]:
    """The successor API's protein fields of entries, in the given order."""
    meta = atlas.metadata_of(rowids, _PROTEIN_COLUMNS)
    reps = {r: atlas.cluster_rep(clustering, r) for r in rowids} if clustering else {}
    rep_hash = {r: c[0] for r, c in atlas.metadata_of([v for v in reps.values() if v is not None],
                                                       ("checksum",)).items()}
    out = []
    for r in rowids:
        m = dict(zip(_PROTEIN_COLUMNS, meta[r]))
        md5 = m["checksum"]
        out.append({"protein_hash": md5, "accession": m["id"], "source": m["source"] or m["kind"],
                    "sequence": m["sequence"], "sequence_length": int(m["length"]), "ptm": m["ptm"],
                    "mean_plddt": None if m["mean_plddt"] is None else round(m["mean_plddt"] / 100.0, 4),
                    "cluster_rep_protein_hash": rep_hash.get(reps.get(r)), "model": m["model"], "kind": m["kind"],
                    "links": {"structure_pdb": f"/api/v1/entries/{quote(m['id'], safe='')}/structure.pdb",
                              "structure_cif": f"/api/v1/entries/{quote(m['id'], safe='')}/structure.cif",
                              "thumbnail": f"/proteins/{md5}/thumbnail/structure",
                              "cluster": f"/clusters/{md5}" if reps.get(r) is not None else None}})
    return out


def _pending(job, protein_hash: str) -> JSONResponse:
    body = {"protein_hash": protein_hash, "status": job.status, "job_id": job.id,
            "links": {"job": f"/api/v1/jobs/{job.id}", "protein": f"/proteins/{protein_hash}"}}
    return JSONResponse(body, status_code=202, headers={"Retry-After": str(RETRY_AFTER_S)})


@router.get("/proteins/{protein_hash}")
async def protein(protein_hash: str, request: Request, fold_on_miss: bool = False,
                  sequence: str | None = Query(None, max_length=200_000, description="With fold_on_miss: the "
                                               "sequence to fold when the atlas lacks it (its MD5 must match)"),
                  clustering: str | None = None) -> Response:
    """A protein by the MD5 of its sequence; 404 when unknown, or with ``fold_on_miss=true`` a queued fold (202)."""
    ctx = context(request)
    md5 = _hash(protein_hash)

    def read() -> dict:
        return protein_records(ctx.atlas, [_rowid(ctx.atlas, md5)], clustering_of(ctx.atlas, clustering))[0]

    try:
        return JSONResponse(await run_in_threadpool(read))
    except UnknownEntryError:
        if not fold_on_miss:
            raise UnknownEntryError(f"no protein with sequence MD5 {md5} in this atlas (fold_on_miss=true with "
                                    f"sequence=... folds it)") from None
    from foldatlas.atlas.codec import sequence_md5

    job = ctx.folds.inflight(md5)
    if job is not None:
        return _pending(job, md5)
    if sequence is None:
        raise UnknownEntryError(f"no protein with sequence MD5 {md5} in this atlas and no fold of it queued; this "
                                f"server folds on a miss given the sequence (add sequence=...)")
    busy = None
    with request_field("sequence"):
        record = parse_sequence(sequence, name=md5)
        if sequence_md5(record.sequence) != md5:
            raise InvalidOptionError(f"its MD5 is {sequence_md5(record.sequence)}, not {md5}")
        try:
            job = ctx.folds.submit(record)  # too long: the field's fault (422)
        except ServiceBusyError as e:  # a full queue is the server's state, not the field's (503)
            busy = e
    if busy is not None:
        raise busy
    if job.status == "done":
        return JSONResponse(await run_in_threadpool(read))
    if job.status == "failed":
        raise InvalidOptionError(f"the fold of {md5} failed: {job.error}")
    return _pending(job, md5)


@router.get("/clusters/{protein_hash}")
async def cluster(protein_hash: str, request: Request, clustering: str | None = None,
                  limit: int = Query(100, ge=1, le=10_000), offset: int = Query(0, ge=0)) -> dict:
    """The cluster holding a protein: representative, size and members (a page of them)."""
    ctx = context(request)
    md5 = _hash(protein_hash)

    def read() -> dict:
        atlas = ctx.atlas
        name = clustering_of(atlas, clustering)
        rowid = _rowid(atlas, md5)
        if name is None:
            raise UnknownEntryError("this atlas has no clusters yet: run 'foldatlas atlas cluster'")
        rep = atlas.cluster_rep(name, rowid)
        if rep is None:
            raise UnknownEntryError(f"protein {md5} is not in clustering '{name}' (left out by its filters, or "
                                    f"added since: run 'foldatlas atlas cluster' again)")
        members = atlas.cluster_members(name, rep, limit=limit, offset=offset)
        info = atlas.clusterings()[name]
        return {"cluster_rep_protein_hash": atlas.metadata_of([rep], ("checksum",))[rep][0], "clustering": name,
                "criteria": {k: info.get(k) for k in ("by", "min_identity", "coverage", "min_tm", "min_plddt",
                                                       "min_ptm")},
                "size": atlas.cluster_size(name, rep), "offset": offset, "limit": limit,
                "members": protein_records(atlas, members, name)}

    return await run_in_threadpool(read)


@router.get("/proteins/{protein_hash}/thumbnail/{kind}", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
async def thumbnail(protein_hash: str, kind: str, request: Request) -> Response:
    """A PNG thumbnail: ``structure`` (C-alpha trace coloured by pLDDT), ``plddt`` (curve) or ``pae`` (heatmap)."""
    from foldatlas.atlas.images import THUMBNAIL_KINDS

    md5 = _hash(protein_hash)
    name = kind.removesuffix(".png")
    if name not in THUMBNAIL_KINDS:
        raise field_error("type", InvalidOptionError(f"unknown thumbnail '{kind[:40]}': use one of "
                                                     f"{', '.join(THUMBNAIL_KINDS)}"))
    _rowid(context(request).atlas, md5)
    return Response(await render_entry(request, md5, f"thumbnail.{name}"), media_type="image/png")
