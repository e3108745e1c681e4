"""The FastAPI application: context, error mapping, body limit, routers and the web page.

Every error a request can cause is answered as JSON ``{"error": {"code": ..., "message": ...}}`` with a 4xx
status (503 with ``Retry-After`` when the fold queue is full); an unexpected failure is a 500 with a one-line
message, its traceback only in the server log.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections import OrderedDict
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from foldatlas import __version__
from foldatlas.errors import (
    AtlasError,
    FoldatlasError,
    InvalidFileError,
    InvalidOptionError,
    InvalidSequenceError,
    OutputConflictError,
    SequenceTooLongError,
    ServiceBusyError,
    UnknownEntryError,
    UnknownModelError,
)
from foldatlas.service.settings import ServiceSettings, memory_max_length

__all__ = ["create_app", "open_service", "ServiceContext", "error_response"]

log = logging.getLogger("foldatlas.service")

_STATUS = [  # most specific first
    (SequenceTooLongError, 422, "sequence_too_long"),
    (InvalidSequenceError, 422, "invalid_sequence"),
    (InvalidFileError, 422, "invalid_file"),
    (InvalidOptionError, 422, "invalid_option"),
    (UnknownEntryError, 404, "not_found"),
    (UnknownModelError, 404, "unknown_model"),
    (ServiceBusyError, 503, "busy"),
    (OutputConflictError, 409, "conflict"),
    (AtlasError, 500, "atlas_error"),
]


def error_response(status: int, code: str, message: str, headers: dict | None = None,
                   field: str | None = None) -> JSONResponse:
    """The service's one error shape: ``{"error": {"code", "message"[, "field"]}}`` (``field``: the request field at
    fault, when one is)."""
    error = {"code": code, "message": message}
    if field:
        error["field"] = field
    return JSONResponse({"error": error}, status_code=status, headers=headers)


class ServiceContext:
    """What the routes share: settings, the atlas, the fold queue, caches.

    Attributes
    ----------
    settings : ServiceSettings
    atlas : foldatlas.atlas.Atlas
    folds : foldatlas.service.jobs.FoldService
    max_length : int
    """

    def __init__(self, settings: ServiceSettings, atlas, folds, max_length: int,
                 temp: tempfile.TemporaryDirectory | None) -> None:
        self.settings = settings
        self.atlas = atlas
        self.folds = folds
        self.max_length = max_length
        self._temp = temp
        self._renders: OrderedDict[tuple, bytes] = OrderedDict()
        self._render_lock = threading.Lock()
        self.map_cache: tuple[tuple, dict] | None = None
        self.map_layouts: dict = {}  # clustering -> (atlas state, the map's layout and buffers)
        self.lm_lock = threading.Lock()
        self._lm = None
        self.designs = None  # the design job queue, made on first use (foldatlas.service.design_routes)

    def language_model(self):
        """The language model of the LM tools, loaded on first use."""
        with self.lm_lock:
            if self._lm is None:
                from foldatlas.lm import load_lm

                self._lm = load_lm(self.settings.lm_model)
            return self._lm

    def cached_render(self, key: tuple) -> bytes | None:
        """A rendered file (entry ID, format) from the cache, or None."""
        with self._render_lock:
            data = self._renders.get(key)
            if data is not None:
                self._renders.move_to_end(key)
            return data

    def store_render(self, key: tuple, data: bytes, keep: int = 512) -> None:
        """Remember a rendered file; the least recently used go first beyond ``keep``."""
        with self._render_lock:
            self._renders[key] = data
            while len(self._renders) > keep:
                self._renders.popitem(last=False)

    def close(self) -> None:
        """Finish running folds, close the atlas, remove a temporary atlas."""
        if self.designs is not None:
            self.designs.close()
        self.folds.close()
        self.atlas.close()
        if self._temp is not None:
            self._temp.cleanup()


def open_service(settings: ServiceSettings, folding_model=None, embedder=None) -> ServiceContext:
    """Open what the service runs on (the atlas, the models, the fold queue with its resumed jobs).

    ``foldatlas serve`` calls it before the server starts, so that a bad atlas folder, model or device is one
    ``error:`` line from the CLI rather than a failed ASGI start-up with a traceback.

    Raises
    ------
    FoldatlasError
        An atlas, model, device or option problem (e.g. OutputConflictError for an atlas of other weights).
    """
    return _open_context(settings, folding_model, embedder)


def _open_context(settings: ServiceSettings, folding_model=None, embedder=None) -> ServiceContext:
    from foldatlas.atlas import open_atlas
    from foldatlas.models.registry import DEFAULT_LM
    from foldatlas.service.jobs import FoldService

    if folding_model is None:  # before the atlas folder is created: a model that does not load leaves nothing
        from foldatlas.models.loading import load_folding_model

        folding_model = load_folding_model(settings.model, device=settings.device, dtype=settings.dtype,
                                           threads=settings.threads, precision=settings.precision)
    temp = None
    folder = settings.atlas
    if folder is None:
        temp = tempfile.TemporaryDirectory(prefix="foldatlas-serve-")
        folder = Path(temp.name) / "atlas"
    created = not Path(folder).exists()
    atlas = open_atlas(folder, create=True)
    try:
        if embedder is None and (settings.embedding_model or "").lower() != "none":
            from foldatlas.models.embedding import load_embedder

            stored = atlas.get_meta("embedding_model") or {}
            embedder = load_embedder(settings.embedding_model or stored.get("load") or DEFAULT_LM)
        elif embedder is False:
            embedder = None
        from foldatlas.predict.engine import FoldOptions

        options = FoldOptions(num_recycles=settings.num_recycles, num_samples=settings.num_samples, seed=settings.seed)
        max_length = settings.max_length or memory_max_length(folding_model=folding_model, options=options)
        folds = FoldService(atlas, folding_model, embedder, max_length, settings.fold_workers, settings.queue_size,
                            settings.jobs_kept, num_recycles=settings.num_recycles, num_samples=settings.num_samples,
                            seed=settings.seed)
        try:
            folds.resume()  # the jobs a stopped or killed server left queued or running (none in a temporary atlas)
        except BaseException:
            folds.close()
            raise
    except BaseException:
        atlas.close()
        if temp is not None:
            temp.cleanup()
        elif created:  # refused (other weights, an embedder that does not load): leave nothing behind
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        raise
    return ServiceContext(settings, atlas, folds, max_length, temp)


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with 413 (declared or streamed)."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = error_response(413, "body_too_large", f"the request body exceeds this server's limit of "
                                                        f"{self.limit} bytes (FOLDATLAS_MAX_BODY_BYTES)")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await too_big(scope, receive, send)
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await too_big(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def create_app(settings: ServiceSettings | None = None, folding_model=None, embedder=None,
               language_model=None, context: ServiceContext | None = None) -> FastAPI:
    """The service as an ASGI application.

    Parameters
    ----------
    settings : ServiceSettings, optional
        Default: from the environment (:meth:`ServiceSettings.from_env`).
    folding_model : foldatlas.models.FoldingModel, optional
        An already loaded model (tests, notebooks); default: load ``settings.model`` at start-up.
    embedder : foldatlas.models.embedding.Embedder or False, optional
        An already loaded embedder; False: store no embeddings; default: per ``settings.embedding_model``.
    language_model : foldatlas.lm.LanguageModel, optional
        The model of the ``/api/v1/lm`` tools; default: ``settings.lm_model``, loaded on first use.
    context : ServiceContext, optional
        Already opened by :func:`open_service` (the CLI does, to report start-up errors in one line); the
        application closes it at shutdown.

    Returns
    -------
    fastapi.FastAPI
        The model loads when the application starts (the lifespan), so the first request is not slow.
    """
    from foldatlas.service import (afdb_routes, api_routes, design_routes, esm_routes, lm_routes, map_routes, pages,
                                   successor_routes)

    settings = settings or ServiceSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.ctx = context or _open_context(settings, folding_model, embedder)
        if language_model is not None:
            app.state.ctx._lm = language_model
        try:
            yield
        finally:
            app.state.ctx.close()

    app = FastAPI(title="foldatlas", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Protein structure prediction (ESMFold architecture), an atlas of structures, "
                              "and search. ESM Atlas-compatible endpoints plus a JSON API under /api/v1.")

    @app.exception_handler(FoldatlasError)
    async def _foldatlas_error(request: Request, exc: FoldatlasError):
        for kind, status, code in _STATUS:
            if isinstance(exc, kind):
                headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, ServiceBusyError) else None
                return error_response(status, code, str(exc), headers, getattr(exc, "field", None))
        return error_response(400, "bad_request", str(exc), field=getattr(exc, "field", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        problems, fields = [], []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")) or "request"
            message = err.get("msg", "invalid")
            if err.get("type") == "extra_forbidden":
                message = "unknown field (see the API docs at /docs)"
            problems.append(f"{where}: {message}")
            fields.append(where)
        return error_response(422, "invalid_request", "; ".join(problems) or "invalid request",
                              field=fields[0] if fields else None)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such path: {request.url.path[:200]}"
        return error_response(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        return error_response(500, "internal_error", f"{exc.__class__.__name__}: {first}")

    app.include_router(esm_routes.router)
    app.include_router(successor_routes.router)
    app.include_router(afdb_routes.router)
    app.include_router(map_routes.router)
    app.include_router(api_routes.router)
    app.include_router(lm_routes.router)
    app.include_router(design_routes.router)
    pages.mount(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app
