import json
import shutil

import pytest

from foldatlas.errors import UnknownModelError, WeightsIntegrityError, WeightsNotFoundError
from foldatlas.models import DEFAULT_FOLD_MODEL, resolve_model
from foldatlas.models.loading import load_folding_model, weights_sha256


def test_local_folder_resolves(tiny_checkpoint):
    resolved = resolve_model(str(tiny_checkpoint))
    assert resolved.source == "folder" and resolved.path == tiny_checkpoint


def test_unknown_model_is_one_line():
    with pytest.raises(UnknownModelError) as e:
        resolve_model("no-such-model")
    assert "unknown model 'no-such-model'" in str(e.value) and "\n" not in str(e.value)


def test_missing_hub_weights_say_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="hf download facebook/esmfold_v1"):
        resolve_model("facebook/esmfold_v1")
    with pytest.raises(WeightsNotFoundError, match="hf download facebook/esmfold_v1"):
        resolve_model("esmfold_v1")


def test_default_model_ships_in_the_package():
    resolved = resolve_model(DEFAULT_FOLD_MODEL)
    assert resolved.source == "package" and resolved.name == DEFAULT_FOLD_MODEL


def test_missing_embedded_model_explains_itself(monkeypatch):
    from foldatlas.models import registry

    spec = registry.REGISTRY[DEFAULT_FOLD_MODEL]
    monkeypatch.setitem(registry.REGISTRY, DEFAULT_FOLD_MODEL,
                        registry.ModelSpec(spec.name, spec.kind, package_path="weights/not-installed"))
    with pytest.raises(WeightsNotFoundError, match="not part of this installation.*facebook/esmfold_v1"):
        resolve_model(DEFAULT_FOLD_MODEL)


def test_pickled_weights_are_refused(tmp_path, tiny_checkpoint):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(tiny_checkpoint / "config.json", folder / "config.json")
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(WeightsIntegrityError, match="pickled weights are not loaded"):
        resolve_model(str(folder))


def test_corrupt_weights_give_a_clear_error(tmp_path, tiny_checkpoint):
    folder = tmp_path / "corrupt"
    shutil.copytree(tiny_checkpoint, folder)
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsIntegrityError, match="cannot load weights"):
        load_folding_model(str(folder), device="cpu")


def test_non_esmfold_config_is_refused(tmp_path, tiny_checkpoint):
    folder = tmp_path / "lm"
    shutil.copytree(tiny_checkpoint, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop("esmfold_config")
    cfg["is_folding_model"] = False
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsIntegrityError, match="not an ESMFold checkpoint"):
        load_folding_model(str(folder), device="cpu")


def test_weights_hash_is_stable_and_cached(tiny_checkpoint):
    h1 = weights_sha256(tiny_checkpoint)
    h2 = weights_sha256(tiny_checkpoint)
    assert h1 == h2 and len(h1) == 64


def test_hub_id_resolves_from_local_cache_and_loads(tmp_path, monkeypatch, tiny_checkpoint):
    """A hub-cache snapshot (as `hf download` leaves it) is found offline and loaded by the same code."""
    cache = tmp_path / "hub"
    repo = cache / "models--facebook--esmfold_v1"
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    for f in tiny_checkpoint.iterdir():
        shutil.copy(f, snapshot / f.name)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    resolved = resolve_model("facebook/esmfold_v1")
    assert (resolved.source, resolved.name, resolved.revision) == ("hub-cache", "esmfold_v1", revision)
    model = load_folding_model("esmfold_v1", device="cpu")
    assert model.name == "esmfold_v1" and model.revision == revision and len(model.weights_sha256) == 64
