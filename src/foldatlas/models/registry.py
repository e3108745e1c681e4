"""One model registry: names to checkpoint locations, for the CLI, service and tests.

A model is named by

* a registered name (:data:`REGISTRY`), such as ``esmfold_v1``;
* a Hugging Face hub id (``facebook/esmfold_v1``), resolved from the local hub
  cache only: foldatlas never downloads at run time;
* a local folder holding ``config.json`` and safetensors weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from foldatlas.errors import UnknownModelError, WeightsIntegrityError, WeightsNotFoundError

__all__ = ["ModelSpec", "REGISTRY", "DEFAULT_FOLD_MODEL", "DEFAULT_LM", "DEFAULT_DESIGN_MODEL", "ResolvedModel",
           "hub_cache_dir",
           "resolve_model"]


@dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Attributes
    ----------
    name : str
        Short name used on the command line.
    kind : {"fold", "lm", "design"}
        A folding model (``EsmForProteinFolding`` or ``EsmFold2Model``), a language model
        (``EsmForMaskedLM`` or ``EsmcForMaskedLM``) or an inverse-folding model (ProteinMPNN).
    hub_id : str or None
        Hugging Face repository, looked up in the local hub cache.
    package_path : str or None
        Folder inside the installed package (embedded models).
    description : str
        One line for ``foldatlas models``.
    """

    name: str
    kind: str
    hub_id: str | None = None
    package_path: str | None = None
    description: str = ""


# The embedded default folding model, trained by the project and shipped in the package.
DEFAULT_FOLD_MODEL = "foldatlas-fold-small"
# The embedded language model, trained by the project and shipped in the package.
DEFAULT_LM = "foldatlas-lm-small"
# The design model: ProteinMPNN's released weights, converted and shipped in the package.
DEFAULT_DESIGN_MODEL = "proteinmpnn"

_ESM2 = (("esm2_t6_8M_UR50D", "8M"), ("esm2_t12_35M_UR50D", "35M"), ("esm2_t30_150M_UR50D", "150M"),
         ("esm2_t33_650M_UR50D", "650M"), ("esm2_t36_3B_UR50D", "3B"))

REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("esmfold_v1", "fold", hub_id="facebook/esmfold_v1",
                  description="ESMFold v1 (ESM-2 3B + 48 folding blocks), Meta's released weights"),
        ModelSpec("esmfold2", "fold", hub_id="biohub/ESMFold2",
                  description="ESMFold2 (ESM C 6B + pair trunk + diffusion head, several samples), Biohub, MIT"),
        ModelSpec("esmfold2_fast", "fold", hub_id="biohub/ESMFold2-Fast",
                  description="ESMFold2-Fast (ESMFold2 without MSA input, fewer trunk blocks), Biohub, MIT"),
        ModelSpec(DEFAULT_FOLD_MODEL, "fold", package_path="weights/foldatlas-fold-small",
                  description="foldatlas' embedded folding model, trained by the project; small, "
                              "far less accurate than esmfold_v1"),
        ModelSpec(DEFAULT_LM, "lm", package_path="weights/foldatlas-lm-small",
                  description="foldatlas' embedded ESM-2-architecture language model, trained by the project"),
        ModelSpec(DEFAULT_DESIGN_MODEL, "design", package_path="weights/proteinmpnn_v_48_020",
                  description="ProteinMPNN v_48_020 (Dauparas et al. 2022), the released weights (MIT), shipped"),
        ModelSpec("soluble", "design", package_path="weights/solublempnn_v_48_020",
                  description="SolubleMPNN v_48_020: ProteinMPNN trained on soluble proteins only (MIT), shipped"),
        *(ModelSpec(name, "lm", hub_id=f"facebook/{name}", description=f"ESM-2 {size}, Meta's released weights")
          for name, size in _ESM2),
        *(ModelSpec(f"esmc_{size.lower()}", "lm", hub_id=f"biohub/ESMC-{size}",
                    description=f"ESM C {size}, Biohub's released weights (MIT)")
          for size in ("300M", "600M", "6B")),
    )
}

_HUB_ALIASES = {spec.hub_id: spec.name for spec in REGISTRY.values() if spec.hub_id}


@dataclass(frozen=True)
class ResolvedModel:
    """A model located on disk.

    Attributes
    ----------
    name : str
        The registered name, hub id, or folder name.
    path : Path
        Checkpoint folder with ``config.json`` and ``*.safetensors``.
    source : str
        ``"hub-cache"``, ``"package"`` or ``"folder"``.
    revision : str or None
        Hub commit of a cached snapshot.
    """

    name: str
    path: Path
    source: str
    revision: str | None = None


def _check_folder(path: Path, name: str) -> None:
    if not (path / "config.json").is_file():
        raise WeightsIntegrityError(f"model '{name}': {path} has no config.json (expected a Hugging Face-format folder)")
    if not any(path.glob("*.safetensors")):
        pickles = [p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
        hint = f" (found {', '.join(pickles)}: pickled weights are not loaded; convert them to safetensors)" if pickles else ""
        raise WeightsIntegrityError(f"model '{name}': no .safetensors weights in {path}{hint}")


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time.

    ``HF_HUB_CACHE`` (or the older ``HUGGINGFACE_HUB_CACHE``), else ``$HF_HOME/hub``,
    else huggingface_hub's default (``~/.cache/huggingface/hub``).
    """
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expanduser(os.environ[var]))
    if os.environ.get("HF_HOME"):
        return Path(os.path.expanduser(os.environ["HF_HOME"])) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def _from_hub_cache(hub_id: str) -> tuple[Path, str | None] | None:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return None
    try:
        folder = Path(snapshot_download(hub_id, local_files_only=True, cache_dir=hub_cache_dir()))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None
    return folder, folder.name


def resolve_model(name: str) -> ResolvedModel:
    """Locate a model's checkpoint folder without any network access.

    Parameters
    ----------
    name : str
        Registered name, hub id, or path to a checkpoint folder.

    Returns
    -------
    ResolvedModel

    Raises
    ------
    UnknownModelError
        If ``name`` is none of the above.
    WeightsNotFoundError
        If the model is known but its weights are not on this machine; the
        message says how to get them.
    WeightsIntegrityError
        If the folder lacks ``config.json`` or safetensors weights.
    """
    path = Path(os.path.expanduser(name))
    try:
        is_folder = path.is_dir()
    except (OSError, ValueError):  # a name the OS cannot look up (too long, a NUL byte) is no folder
        is_folder = False
    if is_folder:
        _check_folder(path, name)
        return ResolvedModel(name=path.name, path=path, source="folder")
    spec = REGISTRY.get(name) or REGISTRY.get(_HUB_ALIASES.get(name, ""))
    hub_id = spec.hub_id if spec else (name if name.count("/") == 1 and not name.startswith((".", "/")) else None)
    if spec and spec.package_path:
        folder = Path(__file__).resolve().parent.parent / spec.package_path
        if not folder.is_dir():
            real = "facebook/esmfold_v1" if spec.kind == "fold" else "facebook/esm2_t6_8M_UR50D"
            raise WeightsNotFoundError(
                f"model '{spec.name}': the embedded model is not part of this installation; "
                f"use Meta's released weights instead: --model {real} (fetch once with: hf download {real})"
            )
        _check_folder(folder, spec.name)
        return ResolvedModel(name=spec.name, path=folder, source="package")
    if hub_id:
        found = _from_hub_cache(hub_id)
        if found is None:
            raise WeightsNotFoundError(
                f"model '{name}': weights for {hub_id} are not in the local Hugging Face cache; "
                f"fetch them once on a machine with network access with: hf download {hub_id} "
                f"(or pass the path of a folder with config.json and *.safetensors)"
            )
        folder, revision = found
        _check_folder(folder, name)
        return ResolvedModel(name=spec.name if spec else hub_id, path=folder, source="hub-cache", revision=revision)
    if "/" in name or name.startswith("."):
        raise UnknownModelError(f"model '{name}': no such folder")
    known = ", ".join(sorted(REGISTRY))
    raise UnknownModelError(f"unknown model '{name[:100]}': use one of {known}, a hub id such as facebook/esmfold_v1, "
                            f"or a checkpoint folder")
