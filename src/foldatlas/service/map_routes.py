"""The map of every entry for the WebGL page: a JSON header, one binary buffer, point lookups.

* ``GET /api/v1/map/layout``: the header (point count, byte offsets and types of the fields, the clustering that
  colours and places entries, variance explained); ``clustering=`` picks a stored clustering (default: the
  successor endpoints' :func:`~foldatlas.service.successor_routes.default_clustering`).
* ``GET /api/v1/map/points.bin``: the fields one after another (little-endian; gzip-encoded for clients that take
  it: about 8 bytes a point).
* ``GET /api/v1/map/points/{index}``: one point's entry (ID, length, mean pLDDT, representative).
* ``POST /api/v1/map/locate`` ``{"ids": [...]}``: the point indices of entries (search hits to highlight).

The layout (:func:`foldatlas.atlas.mapping.map_layout`) is computed once per state of the atlas and clustering.
"""

from __future__ import annotations

import gzip

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from foldatlas.errors import UnknownEntryError
from foldatlas.service.common import context

router = APIRouter(prefix="/api/v1/map", tags=["JSON API"])
MAX_LOCATE = 10_000


class LocateRequest(BaseModel):
    """Entries to find on the map."""

    model_config = ConfigDict(extra="forbid")
    ids: list[str] = Field(..., max_length=MAX_LOCATE, description="Entry IDs, aliases or sequence MD5s")
    clustering: str | None = None


def _state(atlas, clustering: str | None) -> tuple:
    info = atlas.clusterings().get(clustering, {}) if clustering else {}
    return (atlas.max_rowid(), len(atlas), clustering, info.get("updated"), info.get("runs"))


async def _layout(request: Request, clustering: str | None):
    """``(layout, header, raw bytes, gzip bytes)`` of the atlas now, computed in a worker thread when stale."""
    from foldatlas.atlas.mapping import map_layout
    from foldatlas.service.successor_routes import clustering_of

    ctx = context(request)
    atlas = ctx.atlas
    clustering = clustering_of(atlas, clustering)
    key = _state(atlas, clustering)
    cached = ctx.map_layouts.get(clustering)
    if cached is not None and cached[0] == key:
        return cached[1]

    def build():
        layout = map_layout(atlas, clustering)
        raw = layout.to_bytes()
        return layout, layout.header(), raw, gzip.compress(raw, compresslevel=6)

    built = await run_in_threadpool(build)
    ctx.map_layouts[clustering] = (key, built)
    return built


@router.get("/layout")
async def layout_header(request: Request, clustering: str | None = None) -> dict:
    """The map's header: how to read ``points.bin``."""
    layout, header, raw, packed = await _layout(request, clustering)
    return {**header, "total_entries": len(context(request).atlas), "bytes_gzip": len(packed),
            "points": "/api/v1/map/points.bin" + (f"?clustering={clustering}" if clustering else "")}


@router.get("/points.bin", response_class=Response, responses={200: {"content": {"application/octet-stream": {}}}})
async def points(request: Request, clustering: str | None = None) -> Response:
    """Every point's fields (see ``/api/v1/map/layout``), gzip-encoded when the client accepts it."""
    _, header, raw, packed = await _layout(request, clustering)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(packed, media_type="application/octet-stream",
                        headers={"Content-Encoding": "gzip", "Cache-Control": "no-cache"})
    return Response(raw, media_type="application/octet-stream", headers={"Cache-Control": "no-cache"})


@router.get("/points/{index}")
async def point(index: int, request: Request, clustering: str | None = None) -> dict:
    """One point's entry: ID, length, mean pLDDT and its cluster representative's ID."""
    layout, *_ = await _layout(request, clustering)
    if not 0 <= index < len(layout):
        raise UnknownEntryError(f"no map point {index} (the map has {len(layout)})")
    atlas = context(request).atlas
    rowid, rep = int(layout.rowids[index]), int(layout.rowids[int(layout.cluster[index])])
    ids = atlas.ids_of([rowid, rep])
    meta = atlas.metadata_of([rowid], ("id", "mean_plddt", "length"))[rowid]
    return {"index": index, "id": ids[rowid], "mean_plddt": meta[1], "length": meta[2],
            "cluster_rep": ids.get(rep), "cluster_index": int(layout.cluster[index])}


@router.post("/locate")
async def locate(req: LocateRequest, request: Request) -> dict:
    """Point indices of entries (-1 for an entry the map does not show); unknown IDs are listed as missing."""
    layout, *_ = await _layout(request, req.clustering)
    atlas = context(request).atlas

    def find():
        indices, missing = [], []
        for key in req.ids:
            try:
                rowid = atlas.resolve(key)[0]
            except UnknownEntryError:
                missing.append(key)
                continue
            where = int(np.searchsorted(layout.rowids, rowid))
            indices.append(where if where < len(layout) and layout.rowids[where] == rowid else -1)
        return indices, missing

    indices, missing = await run_in_threadpool(find)
    return {"indices": indices, "missing": missing}
