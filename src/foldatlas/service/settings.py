"""Settings of the HTTP service: command-line options, else ``FOLDATLAS_*`` environment variables, else defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

from foldatlas.errors import InvalidOptionError
from foldatlas.models.registry import DEFAULT_FOLD_MODEL, DEFAULT_LM
from foldatlas.models.esmfold2 import MAX_SAMPLES
from foldatlas.predict.engine import MAX_RECYCLES, MAX_SEED

__all__ = ["ServiceSettings", "memory_max_length", "MAX_RECYCLES", "MAX_SAMPLES", "MAX_SEED"]


def memory_max_length(available: int | None = None, fraction: float = 0.8, ceiling: int = 8192,
                      folding_model=None, options=None) -> int:
    """The longest input (residues) whose activations fit in ``fraction`` of the free memory.

    Uses the same estimate as the CLI's refusal of over-long inputs: the model's own
    ``estimate_peak_bytes`` with ``options`` when a model is given, else ESMFold v1's
    (:func:`foldatlas.predict.memory.estimate_peak_bytes`, with the automatic chunk size).
    """
    from foldatlas.predict.memory import auto_chunk_size, available_memory_bytes, estimate_peak_bytes, longest_fitting

    have = available_memory_bytes() if available is None else available
    budget = have * fraction

    def need(length: int) -> int:
        if folding_model is not None:
            return folding_model.estimate_peak_bytes(length, options, have)
        return estimate_peak_bytes(length, chunk_size=auto_chunk_size(length, available=have))

    return max(16, longest_fitting(need, budget, ceiling))


@dataclass(frozen=True)
class ServiceSettings:
    """What ``foldatlas serve`` runs with.

    Every field can be set by an environment variable ``FOLDATLAS_<FIELD>`` (upper case), e.g.
    ``FOLDATLAS_MAX_LENGTH=1000``; command-line options win over the environment.

    Attributes
    ----------
    atlas : Path or None
        The atlas folder served and used as the fold cache (created if missing). None: a temporary atlas that
        lives as long as the process.
    model : str
        Folding model (registered name, hub id from the local cache, or checkpoint folder).
    embedding_model : str or None
        Language model of the entries' mean embeddings (default: the atlas' own, else the embedded one);
        ``none`` stores no embeddings.
    device, precision : str
        As for ``foldatlas fold``.
    dtype : str or None
        As ``foldatlas fold --dtype`` (an expert override).
    num_recycles : int or None
        Recycles of every fold (0..:data:`MAX_RECYCLES`); None: the model's own. The atlas remembers it.
        ESMFold v1 only.
    num_samples, seed : int or None
        ESMFold2's diffusion samples (default: the checkpoint's) and seed (default 0) of every fold; the atlas
        remembers them. ESMFold2 only.
    threads : int or None
        Torch CPU threads.
    max_length : int or None
        Longest sequence (residues, all chains) accepted for folding; None: what the free memory allows
        (:func:`memory_max_length`), read at start.
    fold_workers : int
        Folds run at the same time (each uses all the CPU threads; more helps only with several GPUs).
    queue_size : int
        Fold jobs that may wait beyond those running; a submission beyond it gets 503 with ``Retry-After``.
    fold_timeout : float
        Seconds a synchronous fold request (``/foldSequence``) waits before it answers 504; the job goes on
        and its result lands in the atlas.
    max_body_bytes : int
        Largest request body (uploads included); larger gets 413.
    lm_model : str
        Language model of the ``/api/v1/lm`` tools (embeddings, contacts, variant scores, unmasking).
    max_hits : int
        Ceiling on the hits a search may ask for.
    jobs_kept : int
        Finished jobs remembered (the oldest are forgotten; their entries stay in the atlas).
    """

    atlas: Path | None = None
    model: str = DEFAULT_FOLD_MODEL
    embedding_model: str | None = None
    device: str = "auto"
    dtype: str | None = None
    precision: str = "auto"
    num_recycles: int | None = None
    num_samples: int | None = None
    seed: int | None = None
    threads: int | None = None
    max_length: int | None = None
    fold_workers: int = 1
    queue_size: int = 16
    fold_timeout: float = 600.0
    max_body_bytes: int = 10 * 2**20
    lm_model: str = DEFAULT_LM
    max_hits: int = 1000
    jobs_kept: int = 10000

    def __post_init__(self) -> None:
        if self.fold_workers < 1:
            raise InvalidOptionError("fold_workers must be >= 1")
        if self.queue_size < 0:
            raise InvalidOptionError("queue_size must be >= 0")
        if self.max_length is not None and self.max_length < 1:
            raise InvalidOptionError("max_length must be >= 1")
        if self.num_recycles is not None and not 0 <= self.num_recycles <= MAX_RECYCLES:
            raise InvalidOptionError(f"num_recycles must be between 0 and {MAX_RECYCLES}")
        if self.num_samples is not None and not 1 <= self.num_samples <= MAX_SAMPLES:
            raise InvalidOptionError(f"num_samples must be between 1 and {MAX_SAMPLES}")
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise InvalidOptionError(f"seed must be between 0 and {MAX_SEED}")
        if self.fold_timeout <= 0 or self.max_body_bytes < 1024 or self.max_hits < 1 or self.jobs_kept < 1:
            raise InvalidOptionError("fold_timeout must be > 0, max_body_bytes >= 1024, max_hits and jobs_kept >= 1")

    @classmethod
    def from_env(cls, environ: dict | None = None, **overrides) -> "ServiceSettings":
        """Settings from ``FOLDATLAS_*`` variables, then ``overrides`` (values of None are ignored).

        Raises
        ------
        InvalidOptionError
            If a variable does not parse as its field's type.
        """
        env = os.environ if environ is None else environ
        values: dict = {}
        for f in fields(cls):
            raw = env.get(f"FOLDATLAS_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            kind = str(f.type)
            try:
                if "Path" in kind:
                    values[f.name] = Path(raw)
                elif "int" in kind:
                    values[f.name] = int(raw)
                elif "float" in kind:
                    values[f.name] = float(raw)
                else:
                    values[f.name] = raw
            except ValueError:
                raise InvalidOptionError(f"FOLDATLAS_{f.name.upper()}={raw!r} is not a valid "
                                         f"{kind.replace(' | None', '')}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values)
