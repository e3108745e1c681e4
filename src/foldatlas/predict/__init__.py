"""Prediction: batching, the fold engine, outputs and bulk runs.

``Prediction`` and the writers import without torch; the engine and runner
import torch when called.
"""

from foldatlas.predict.prediction import Prediction

__all__ = ["Prediction", "FoldOptions", "fold_batch", "RunConfig", "RunResult", "run_fold"]


def __getattr__(name: str):
    if name in ("FoldOptions", "fold_batch"):
        from foldatlas.predict import engine

        return getattr(engine, name)
    if name in ("RunConfig", "RunResult", "run_fold"):
        from foldatlas.predict import runner

        return getattr(runner, name)
    raise AttributeError(name)
