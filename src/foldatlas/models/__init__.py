"""Models: registry (name -> checkpoint location) and loading through transformers."""

from foldatlas.models.registry import DEFAULT_FOLD_MODEL, REGISTRY, ModelSpec, ResolvedModel, resolve_model

__all__ = ["DEFAULT_FOLD_MODEL", "REGISTRY", "ModelSpec", "ResolvedModel", "resolve_model",
           "load_folding_model", "FoldingModel"]


def __getattr__(name: str):
    # Loading pulls in torch and transformers: only when asked for.
    if name in ("load_folding_model", "FoldingModel"):
        from foldatlas.models import loading

        return getattr(loading, name)
    raise AttributeError(name)
