"""The web page: one HTML document and its vendored assets (no CDN: it works offline).

Page URLs (each renders the same document; the script reads the path and query):

* ``/`` fold form; ``/?sequence=...&fasta_header=...`` folds that sequence at once (ESM Atlas-style deep link)
* ``/entry/{id}`` an entry: 3D model coloured by pLDDT, pLDDT plot, PAE heatmap, downloads, superposition
* ``/search?sequence=...`` or ``/search?entry=ID`` a sequence or structure search with its result table
* ``/map`` the atlas map
* ``/docs`` the API's OpenAPI documentation (Swagger UI, vendored)
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"

__all__ = ["mount", "STATIC"]


def mount(app: FastAPI) -> None:
    """Add the page routes and ``/static`` to the application."""
    index = STATIC / "index.html"

    def page() -> FileResponse:
        return FileResponse(index, media_type="text/html", headers={"Cache-Control": "no-cache"})

    for path in ("/", "/search", "/map", "/entry/{entry_id}"):
        app.add_api_route(path, page, methods=["GET"], include_in_schema=False, response_class=FileResponse)
    def docs():
        # Swagger UI from the vendored files, not FastAPI's default CDN: the docs work offline too.
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="foldatlas API",
                                   swagger_js_url="/static/vendor/swagger-ui-bundle.js",
                                   swagger_css_url="/static/vendor/swagger-ui.css", swagger_favicon_url="")

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
