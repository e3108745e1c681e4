"""The Python API: ``foldatlas.fold`` and ``foldatlas.compare``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from foldatlas.errors import SequenceTooLongError
from foldatlas.models.registry import DEFAULT_FOLD_MODEL
from foldatlas.predict.prediction import Prediction
from foldatlas.seq.records import Record, make_record
from foldatlas.structure.compare import Comparison, compare_files

__all__ = ["fold", "compare", "load_model"]


@lru_cache(maxsize=2)
def load_model(model: str = DEFAULT_FOLD_MODEL, device: str = "auto", dtype: str | None = None,
               threads: int | None = None, precision: str = "auto"):
    """Load (once per process, cached) a folding model; see :func:`foldatlas.models.load_folding_model`."""
    from foldatlas.models.loading import load_folding_model

    return load_folding_model(model, device=device, dtype=dtype, threads=threads, precision=precision)


def fold(sequences: str | Record | list[str | Record], model: str = DEFAULT_FOLD_MODEL, *,
         num_recycles: int | None = None, chunk_size: int | None = None, max_length: int | None = None,
         device: str = "auto", dtype: str | None = None, precision: str = "auto", names: list[str] | None = None,
         num_samples: int | None = None, seed: int | None = None, num_steps: int | None = None,
         num_loops: int | None = None) -> Prediction | list[Prediction]:
    """Fold one or more sequences.

    Parameters
    ----------
    sequences : str, Record, or list of them
        Raw sequences (``:`` between the chains of a complex) or records.
    model : str
        Registered name, hub id (from the local cache) or checkpoint folder.
    num_recycles : int, optional
        Recycles after the first pass; default: the model's own.
    chunk_size : int, optional
        Triangle-attention chunk; default: from length and free memory; 0: none.
    max_length : int, optional
        Refuse longer inputs; default: refuse inputs that would not fit in memory.
    device, dtype, precision : str
        See :func:`foldatlas.models.load_folding_model` and :mod:`foldatlas.models.precision` (``exact``:
        float32 everywhere; ``fast``: bfloat16 matrix products where the device has them; ``auto``: exact on
        CPUs, fast on GPUs). Each prediction's ``extra["precision"]`` records what ran.
    names : list of str, optional
        Names of raw sequences (default ``seq_1``, ``seq_2``, ...).
    num_samples, seed, num_steps, num_loops : int, optional
        ESMFold2's diffusion samples, seed (default 0), noise-schedule length and trunk loops
        (defaults: the checkpoint's own). The best sample is returned; all of them are in its
        ``samples``.

    Returns
    -------
    Prediction, or list of Prediction when a list was given.

    Raises
    ------
    InvalidSequenceError, SequenceTooLongError, UnknownModelError, WeightsNotFoundError, InvalidOptionError

    Examples
    --------
    >>> pred = foldatlas.fold("MKTAYIAKQR", model="facebook/esmfold_v1")  # doctest: +SKIP
    >>> pred.ptm, pred.plddt.shape, pred.to_pdb()[:6]  # doctest: +SKIP
    """
    from foldatlas.predict.engine import FoldOptions, fold_batch
    from foldatlas.predict.runner import length_problem

    single = not isinstance(sequences, list)
    items = [sequences] if single else list(sequences)
    records = [item if isinstance(item, Record) else
               make_record(names[i] if names else f"seq_{i + 1}", item) for i, item in enumerate(items)]
    options = FoldOptions(num_recycles=num_recycles, chunk_size=chunk_size, num_samples=num_samples, seed=seed,
                          num_steps=num_steps, num_loops=num_loops)
    folding_model = load_model(model, device, dtype, precision=precision)
    folding_model.check_options(options)
    for record in records:
        problem = length_problem(record, max_length, folding_model, options)
        if problem:
            raise SequenceTooLongError(f"record '{record.name}': {problem}")
    predictions = [fold_batch(folding_model, [record], options)[0] for record in records]
    return predictions[0] if single else predictions


def compare(model: str | Path, reference: str | Path, *, model_chains: str | None = None,
            reference_chains: str | None = None, superposed: str | Path | None = None) -> Comparison:
    """Compare a model structure file with a reference; see :func:`foldatlas.structure.compare_files`."""
    return compare_files(model, reference, model_chains=model_chains, reference_chains=reference_chains,
                         superposed_path=superposed)
