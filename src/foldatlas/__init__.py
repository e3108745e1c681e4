"""foldatlas: protein structure prediction with protein language models, on your own machine.

Importing foldatlas is cheap: torch and transformers load only when a model is.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "fold", "compare", "load_model", "Prediction", "Comparison", "errors"]


def __getattr__(name: str):
    if name in ("fold", "compare", "load_model"):
        from foldatlas import api

        return getattr(api, name)
    if name == "Prediction":
        from foldatlas.predict.prediction import Prediction

        return Prediction
    if name == "Comparison":
        from foldatlas.structure.compare import Comparison

        return Comparison
    if name == "errors":
        from foldatlas import errors

        return errors
    raise AttributeError(f"module 'foldatlas' has no attribute {name!r}")
