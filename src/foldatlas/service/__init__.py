"""The HTTP service: ESM Atlas-compatible endpoints, a JSON API and a web page (FastAPI + uvicorn).

``foldatlas serve`` runs it; :func:`create_app` builds the ASGI application for tests or another server.
"""

from foldatlas.service.settings import ServiceSettings, memory_max_length

__all__ = ["ServiceSettings", "create_app", "memory_max_length"]


def __getattr__(name: str):
    if name == "create_app":
        from foldatlas.service.app import create_app

        return create_app
    raise AttributeError(name)
