"""Helpers shared by the routers: the context, rendered entry files (cached), waiting for a fold job."""

from __future__ import annotations

import asyncio
import json
from contextlib import contextmanager

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from foldatlas.errors import FoldatlasError, InvalidOptionError, InvalidSequenceError
from foldatlas.seq.records import Record

__all__ = ["context", "render_entry", "FORMATS", "wait_for", "parse_sequence", "fold_failure", "request_field",
           "field_error"]

FORMATS = {  # name -> media type
    "pdb": "chemical/x-pdb",
    "cif": "chemical/x-mmcif",
    "bcif": "application/octet-stream",
    "pae": "application/json",
    "confidence": "application/json",
    "fasta": "text/x-fasta",
    "embedding.json": "application/json",
    "embedding.bin": "application/octet-stream",
    "pae.png": "image/png",
    "thumbnail.structure": "image/png",
    "thumbnail.plddt": "image/png",
    "thumbnail.pae": "image/png",
}


def field_error(name: str, error: FoldatlasError) -> FoldatlasError:
    """``error``, naming the request field behind it: its message starts with ``name:`` and the JSON error's
    ``field`` says it (the service's 422s name the field, as pydantic's validation errors do)."""
    if getattr(error, "field", None) is None:
        error.field = name
        error.args = (f"{name}: {error}", *error.args[1:])
    return error


@contextmanager
def request_field(name: str):
    """Name the request field behind any user error raised inside (see :func:`field_error`)."""
    try:
        yield
    except FoldatlasError as e:
        raise field_error(name, e)


def context(request: Request):
    """The application's :class:`~foldatlas.service.app.ServiceContext`."""
    return request.app.state.ctx


def _render(atlas, key: str, fmt: str) -> tuple[str, bytes]:
    entry = atlas.get(key, pae=fmt in ("pae", "confidence", "pae.png", "thumbnail.pae"),
                      embedding=fmt.startswith("embedding"))
    if fmt.startswith("thumbnail."):
        from foldatlas.atlas.images import thumbnail_png

        return entry.id, thumbnail_png(entry, fmt.split(".", 1)[1])
    if fmt == "pae.png":
        from foldatlas.atlas.images import pae_png

        if entry.pae is None:
            from foldatlas.errors import UnknownEntryError

            raise UnknownEntryError(f"entry '{entry.id}' has no PAE (imported, or built with --no-pae)")
        return entry.id, pae_png(entry.pae, entry.max_pae)
    if fmt == "pdb":
        return entry.id, entry.to_pdb().encode()
    if fmt == "cif":
        return entry.id, entry.to_mmcif().encode()
    if fmt == "bcif":
        return entry.id, entry.to_bcif()
    if fmt == "fasta":
        from foldatlas.seq.fasta import fasta_header

        return entry.id, f"{fasta_header(entry.id, entry.description)}\n{entry.sequence}\n".encode()
    if fmt in ("pae", "confidence"):
        if entry.pae is None:
            from foldatlas.errors import UnknownEntryError

            raise UnknownEntryError(f"entry '{entry.id}' has no PAE (imported, or built with --no-pae)")
        if fmt == "pae":
            return entry.id, json.dumps(entry.pae_json(), separators=(",", ":")).encode()
        out = {"id": entry.id, **entry.pae_json()[0], "plddt": entry.to_dict()["plddt"], "mean_plddt":
               entry.mean_plddt, "ptm": entry.ptm, "iptm": entry.iptm}
        return entry.id, json.dumps(out, separators=(",", ":")).encode()
    if entry.embedding is None:
        from foldatlas.errors import UnknownEntryError

        raise UnknownEntryError(f"entry '{entry.id}' has no embedding")
    if fmt == "embedding.bin":
        return entry.id, entry.embedding.astype("<f2").tobytes()
    model = (atlas.get_meta("embedding_model") or {}).get("name")
    return entry.id, json.dumps({"id": entry.id, "model": model, "dim": int(entry.embedding.shape[0]),
                                 "embedding": np.round(entry.embedding.astype(np.float64), 5).tolist()},
                                separators=(",", ":")).encode()


async def render_entry(request: Request, key: str, fmt: str) -> bytes:
    """An entry's file in ``fmt`` (see :data:`FORMATS`), from the cache or rendered in a worker thread.

    Raises
    ------
    UnknownEntryError
        If no entry has that ID, alias or MD5, or it lacks what the format needs.
    """
    if fmt not in FORMATS:
        raise InvalidOptionError(f"unknown format '{fmt[:20]}': use one of {', '.join(FORMATS)}")
    ctx = context(request)
    data = ctx.cached_render((key, fmt))
    if data is None:
        _, data = await run_in_threadpool(_render, ctx.atlas, key, fmt)
        ctx.store_render((key, fmt), data)
    return data


async def wait_for(job, timeout: float) -> bool:
    """Wait until a job is done; False on timeout.

    Polls (20 ms growing to 250 ms) on the event loop rather than parking a thread per waiting request: a full
    queue of synchronous fold requests would otherwise hold that many threads.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    pause = 0.02
    while not job.done.is_set():
        left = end - loop.time()
        if left <= 0:
            return False
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 1.5, 0.25)
    return True


def parse_sequence(body: bytes | str, name: str = "query") -> Record:
    """One record from a request: a raw sequence (``:`` between chains) or a single FASTA record.

    Raises
    ------
    InvalidSequenceError, InvalidFileError
        Empty, not text, several records, or an invalid residue (the message names the position).
    """
    from foldatlas.seq.fasta import parse_fasta
    from foldatlas.seq.records import make_record

    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidSequenceError("the sequence is not UTF-8 text") from None
    text = body.strip()
    if not text:
        raise InvalidSequenceError("empty sequence: send the amino-acid sequence (':' between chains)")
    if text.startswith(">"):
        records = parse_fasta(text, source="request")
        if len(records) != 1:
            raise InvalidSequenceError(f"{len(records)} FASTA records; send one per request")
        return records[0]
    return make_record(name, text)


def fold_failure(status: int, code: str, message: str, job) -> JSONResponse:
    """An error answer that carries the job (so a client can poll it)."""
    return JSONResponse({"error": {"code": code, "message": message}, "job": job.to_dict()}, status_code=status)
