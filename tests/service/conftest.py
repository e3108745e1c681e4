"""Service fixtures: an atlas of the four real test chains (imported, with embeddings) and a test client on the
tiny random ESMFold checkpoint (a fixture; the service's default is the embedded model)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "data" / "test_split"


@pytest.fixture(scope="session")
def lm_embedder():
    """The shipped language model (the atlas' default embedder)."""
    from foldatlas.models.embedding import load_embedder

    return load_embedder("foldatlas-lm-small")


@pytest.fixture(scope="session")
def seeded_atlas(tmp_path_factory, lm_embedder):
    """An atlas holding the four real PDB chains of tests/data/test_split, with embeddings."""
    from foldatlas.atlas import ImportOptions, import_structures, open_atlas

    folder = tmp_path_factory.mktemp("service") / "atlas"
    with open_atlas(folder, create=True) as atlas:
        import_structures(atlas, [DATA], lm_embedder, ImportOptions(), progress=False, log=lambda m: None)
    return folder


@pytest.fixture
def atlas_dir(seeded_atlas, tmp_path):
    """A private copy of the seeded atlas."""
    target = tmp_path / "atlas"
    shutil.copytree(seeded_atlas, target)
    return target


@pytest.fixture
def make_client(atlas_dir, tiny_model, lm_embedder):
    """``make_client(**settings)``: a TestClient on a fresh app over the atlas copy (closed after the test)."""
    from fastapi.testclient import TestClient

    from foldatlas.service import ServiceSettings, create_app

    clients = []

    def make(**settings):
        settings.setdefault("atlas", atlas_dir)
        settings.setdefault("max_length", 400)
        app = create_app(ServiceSettings(**settings), folding_model=tiny_model, embedder=lm_embedder)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    """A TestClient with default settings (max length 400)."""
    return make_client()


@pytest.fixture
def blocked_folds(monkeypatch):
    """Folds wait until the returned event is set."""
    import foldatlas.predict.engine as engine

    release = threading.Event()
    real = engine.fold_batch

    def slow(*args, **kwargs):
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "fold_batch", slow)
    yield release
    release.set()
