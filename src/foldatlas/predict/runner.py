"""Bulk folding into an output folder: resumable, atomic, with a manifest and a summary.

A rerun on the same folder skips finished records (their ``{name}.json``
exists for the same sequence); a record that fails (out of memory, too long) is
recorded in ``summary.tsv`` with the reason and the run goes on. A batch that
runs out of memory is split in halves and retried before a record is given up.
"""

from __future__ import annotations

import csv
import io
import json
import platform
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from foldatlas.errors import OutputConflictError
from foldatlas.files import atomic_write_text
from foldatlas.seq.batching import token_batches
from foldatlas.predict.engine import FoldOptions, fold_batch
from foldatlas.predict.memory import available_memory_bytes, longest_fitting
from foldatlas.predict.outputs import load_done, write_prediction
from foldatlas.predict.prediction import Prediction
from foldatlas.seq.records import Record, safe_names

__all__ = ["RunConfig", "RunResult", "run_fold", "length_problem", "fold_in_batches", "BatchOutcome",
           "check_bulk_options", "fold_options", "SUMMARY_COLUMNS"]

_SUMMARY_INTERVAL_S = 10.0
SUMMARY_COLUMNS = ("name", "file", "length", "chains", "mean_plddt", "ptm", "iptm", "chain_breaks", "clashscore",
                   "status", "seconds", "error")


@dataclass(frozen=True)
class RunConfig:
    """Settings of a bulk folding run.

    Attributes
    ----------
    output : Path
        Output folder (created).
    num_recycles, chunk_size, num_samples, seed, num_steps, num_loops : see :class:`FoldOptions`.
    max_tokens_per_batch : int
        Padded residues per batch (fair-esm's default 1024); 0: one record per batch.
    max_length : int or None
        Refuse records longer than this (real residues over all chains; a complex's linker is not counted);
        None: refuse those whose estimated memory exceeds what is available.
    plot : bool
        Write the pLDDT/PAE PNG of each record.
    relax : bool
        Also write an Amber-relaxed model (``{stem}.relaxed.pdb`` and ``.cif``; :mod:`foldatlas.structure.relax`),
        its before/after report in ``{stem}.json`` under ``relax``.
    """

    output: Path
    num_recycles: int | None = None
    chunk_size: int | None = None
    max_tokens_per_batch: int = 1024
    max_length: int | None = None
    plot: bool = True
    num_samples: int | None = None
    seed: int | None = None
    num_steps: int | None = None
    num_loops: int | None = None
    relax: bool = False

    def __post_init__(self) -> None:
        check_bulk_options(self)
        if self.relax:
            from foldatlas.structure.relax import require_relax

            require_relax()  # one line now, not after the folding

    def fold_options(self) -> FoldOptions:
        """The :class:`FoldOptions` of this run."""
        return fold_options(self)


def check_bulk_options(options) -> None:
    """Validate the bulk-folding fields shared by :class:`RunConfig` and the atlas build's options.

    Raises
    ------
    ValueError
        If ``max_tokens_per_batch`` is negative, ``max_length`` below 1, or ``num_recycles`` /
        ``chunk_size`` invalid (see :class:`FoldOptions`).
    """
    if options.max_tokens_per_batch < 0:
        raise ValueError("max_tokens_per_batch must be >= 0")
    if options.max_length is not None and options.max_length < 1:
        raise ValueError("max_length must be >= 1")
    fold_options(options)  # validates


def fold_options(options) -> FoldOptions:
    """The :class:`FoldOptions` of a run's settings (:class:`RunConfig` or the atlas build's options)."""
    return FoldOptions(num_recycles=options.num_recycles, chunk_size=options.chunk_size,
                       num_samples=getattr(options, "num_samples", None), seed=getattr(options, "seed", None),
                       num_steps=getattr(options, "num_steps", None), num_loops=getattr(options, "num_loops", None))


@dataclass
class RunResult:
    """What a run did: counts and the summary rows of every record."""

    folded: int = 0
    skipped: int = 0
    failed: int = 0
    rows: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no record failed."""
        return self.failed == 0


def _relax(prediction, folder: Path, stem: str):
    """Relax a prediction and write ``{stem}.relaxed.pdb`` and ``.cif``; return the RelaxResult."""
    from foldatlas.structure.relax import relax_structure, write_relaxed

    result = relax_structure(prediction.to_atoms())
    what = f"foldatlas prediction of {prediction.name} by model {prediction.model_name}"
    for suffix in (".pdb", ".cif"):
        write_relaxed(result, folder / f"{stem}.relaxed{suffix}", what)
    return result


def _relaxed_warning(result, prediction) -> str | None:
    from foldatlas.structure.geometry import geometry_warning

    warning = geometry_warning(result.after, prediction.ptm, prediction.mean_plddt)
    return f"relaxed model {warning}" if warning else None


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, MemoryError) or "out of memory" in str(error).lower() or (
        error.__class__.__name__ == "OutOfMemoryError")


def _ok_row(stem: str, data: dict) -> dict:
    """Summary row of a finished record, from the content of its ``{stem}.json``."""
    return {"name": data["name"], "file": stem, "length": data["length"], "chains": len(data["chains"]),
            "mean_plddt": data["mean_plddt"], "ptm": data["ptm"], "iptm": data.get("iptm"),
            "chain_breaks": data.get("geometry", {}).get("chain_breaks"),
            "clashscore": data.get("geometry", {}).get("clashscore"), "status": "ok",
            "seconds": data.get("seconds", ""), "error": ""}


def _write_summary(folder: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, delimiter="\t", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in SUMMARY_COLUMNS})
    atomic_write_text(folder / "summary.tsv", buf.getvalue())


def _manifest(folding_model, config: RunConfig, inputs: list[str], previous: dict | None) -> dict:
    import torch
    import transformers

    from foldatlas import __version__

    settings = folding_model.run_settings(config.fold_options())
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    model = {"name": folding_model.name, "source": folding_model.source, "path": str(folding_model.path),
             "revision": folding_model.revision, "weights_sha256": folding_model.weights_sha256,
             "parameters": folding_model.num_parameters}
    if previous:
        old = previous.get("model", {})
        if old.get("weights_sha256") != model["weights_sha256"]:
            raise OutputConflictError(
                f"{config.output} holds predictions of model '{old.get('name')}' "
                f"(weights {str(old.get('weights_sha256'))[:12]}); use a new output folder for '{model['name']}'")
        old_options = previous.get("options", {})
        if old_options.get("num_recycles") is None and "num_recycles" in settings:
            old_options = {**old_options, "num_recycles": folding_model.default_num_recycles}  # before 0.1: null
        for key, value in settings.items():
            if old_options.get(key) != value:
                raise OutputConflictError(f"{config.output} was folded with {key}={old_options.get(key)}; use the "
                                          f"same value or a new output folder")
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    options.update(settings)  # what ran, every default resolved to a number
    runs = (previous or {}).get("runs", [])
    runs.append({"started": now, "inputs": inputs, "device": str(folding_model.device),
                 "dtype": str(folding_model.dtype).removeprefix("torch."), "threads": torch.get_num_threads(),
                 "precision": folding_model.precision.as_dict() if folding_model.precision is not None else None})
    return {
        "foldatlas_version": __version__,
        "created": (previous or {}).get("created", now),
        "model": model,
        "options": options,
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "transformers": transformers.__version__, "platform": platform.platform()},
        "runs": runs,
    }


def length_problem(record: Record, max_length: int | None, folding_model, options: FoldOptions | None = None,
                   available: int | None = None) -> str | None:
    """Why a record is too long to fold here, or None.

    Parameters
    ----------
    record : Record
    max_length : int or None
        The user's limit (residues they gave, never a linker); None: check the memory estimate.
    folding_model : loaded folding model
        Its ``model_length`` and ``estimate_peak_bytes`` give the memory a fold needs.
    options : FoldOptions, optional
    available : int, optional
        Free memory in bytes, if the caller has read it already.
    """
    if max_length is not None:
        if record.length > max_length:
            return f"{record.length} residues exceed the limit of {max_length} (--max-length)"
        return None
    n = folding_model.model_length(record)  # memory is what the model folds: a linker's positions included
    have = available_memory_bytes(folding_model.device) if available is None else available
    need = folding_model.estimate_peak_bytes(n, options, have)
    if need > have:
        fits = longest_fitting(lambda length: folding_model.estimate_peak_bytes(length, options, have), have)
        linker = f" ({n} positions with the linkers between chains)" if n != record.length else ""
        return (f"{record.length} residues{linker} need about {need / 2**30:.1f} GiB for the model's activations, more "
                f"than the {have / 2**30:.1f} GiB available (about {fits} positions would fit); split the protein, "
                f"or pass --max-length to try anyway")
    return None


def run_fold(records: list[Record], config: RunConfig, folding_model, inputs: list[str] | None = None,
             progress: bool = True, log=None) -> RunResult:
    """Fold records into ``config.output``, resuming what a previous run finished.

    Parameters
    ----------
    records : list of Record
    config : RunConfig
    folding_model : foldatlas.models.FoldingModel
    inputs : list of str, optional
        Input descriptions for the manifest.
    progress : bool
        Show a progress bar (residues, with ETA) on stderr.
    log : callable, optional
        Receives one-line messages (failures); default prints to stderr.

    Returns
    -------
    RunResult

    Raises
    ------
    OutputConflictError
        If the folder holds results of another model or recycling setting.
    """
    from tqdm import tqdm

    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))  # above the progress bar, not inside it
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.tmp"):  # left by a run killed in the middle of a write
        stale.unlink(missing_ok=True)
    manifest_path = out / "manifest.json"
    previous = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    manifest = _manifest(folding_model, config, inputs or [], previous)
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2))

    stems = safe_names([r.name for r in records])
    options = config.fold_options()
    result = RunResult()
    rows: dict[int, dict] = {}
    todo: list[int] = []
    available = available_memory_bytes(folding_model.device)  # read once, not per record
    for i, (record, stem) in enumerate(zip(records, stems)):
        done = load_done(out, stem, record.sequence)
        if done is not None:
            rows[i] = _ok_row(stem, done)
            result.skipped += 1
            continue
        problem = length_problem(record, config.max_length, folding_model, options, available)
        if problem:
            rows[i] = _failure_row(record, stem, problem)
            result.failed += 1
            log(f"record '{record.name}': skipped: {problem}")
            continue
        todo.append(i)

    last_flush = 0.0

    def flush(force: bool = False) -> None:
        # The summary is derivable from the records' JSON files (a rerun rebuilds it), so it is rewritten at
        # most every few seconds rather than after every batch, which would cost O(n^2) over a large run.
        nonlocal last_flush
        if force or time.monotonic() - last_flush >= _SUMMARY_INTERVAL_S:
            result.rows = [rows[i] for i in sorted(rows)]
            _write_summary(out, result.rows)
            last_flush = time.monotonic()

    flush(force=True)
    bar = tqdm(total=sum(records[i].length for i in todo), unit="res", disable=not progress or not todo,
               desc="folding", file=sys.stderr, dynamic_ncols=True)
    for outcome in fold_in_batches(folding_model, [records[i] for i in todo], options, config.max_tokens_per_batch):
        batch = [todo[j] for j in outcome.indices]
        if outcome.error is not None:
            for i in batch:
                rows[i] = _failure_row(records[i], stems[i], outcome.error)
                log(f"record '{records[i].name}': failed: {outcome.error}")
            result.failed += len(batch)
        else:
            for i, prediction in zip(batch, outcome.predictions):
                extra = {"seconds": round(outcome.seconds, 3), "batch_size": len(batch),
                         "model_weights_sha256": folding_model.weights_sha256}
                if config.relax:
                    relaxed = _relax(prediction, out, stems[i])
                    extra["relax"] = relaxed.to_dict()
                    warning = _relaxed_warning(relaxed, prediction)
                else:
                    warning = prediction.geometry_dict()["warning"]
                rows[i] = _ok_row(stems[i], write_prediction(prediction, out, stems[i], plot=config.plot,
                                                             extra=extra))
                result.folded += 1
                if warning:
                    log(f"record '{records[i].name}': warning: {warning}")
        bar.update(sum(records[i].length for i in batch))
        flush()
    bar.close()
    flush(force=True)
    manifest["runs"][-1]["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    manifest["runs"][-1]["counts"] = {"folded": result.folded, "skipped": result.skipped, "failed": result.failed}
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2))
    return result


@dataclass
class BatchOutcome:
    """One folded batch of :func:`fold_in_batches`.

    Attributes
    ----------
    indices : list of int
        Positions of the batch's records in the list given.
    predictions : list of Prediction or None
        In the order of ``indices``; None when the batch failed.
    error : str or None
        Why the batch failed (one line), else None.
    seconds : float
        Folding time per record.
    """

    indices: list[int]
    predictions: list[Prediction] | None
    error: str | None
    seconds: float


def fold_in_batches(folding_model, records: list[Record], options: FoldOptions,
                    max_tokens_per_batch: int) -> Iterator[BatchOutcome]:
    """Fold records in length-sorted batches under a token budget, yielding each batch as it is done.

    A batch that runs out of memory is split in halves and retried; a single record that fails
    (out of memory, or any other error) is yielded with the reason, and folding goes on.

    Parameters
    ----------
    folding_model : loaded folding model
    records : list of Record
    options : FoldOptions
    max_tokens_per_batch : int
        Padded residues per batch; 0: one record per batch (the model may ask for less: ESMFold2 folds
        one record at a time).

    Yields
    ------
    BatchOutcome
    """
    batches = token_batches([folding_model.model_length(r) for r in records],
                            folding_model.batch_tokens(max_tokens_per_batch))
    queue = deque(batches)
    while queue:
        batch = queue.popleft()
        start = time.perf_counter()
        try:
            predictions = fold_batch(folding_model, [records[i] for i in batch], options)
        except Exception as e:  # any failure of a batch is reported; folding goes on
            if len(batch) > 1 and _is_oom(e):
                half = len(batch) // 2
                queue.extendleft([batch[half:], batch[:half]])
                continue
            reason = "out of memory" if _is_oom(e) else f"{e.__class__.__name__}: {str(e).splitlines()[0][:200]}"
            yield BatchOutcome(batch, None, reason, 0.0)
            continue
        yield BatchOutcome(batch, predictions, None, (time.perf_counter() - start) / len(batch))


def _failure_row(record: Record, stem: str, reason: str) -> dict:
    return {"name": record.name, "file": stem, "length": record.length, "chains": len(record.chains),
            "mean_plddt": None, "ptm": None, "iptm": None, "status": "failed", "seconds": None, "error": reason}
