"""Bulk prediction into an atlas: fold, embed, insert; deduplicated, resumable, crash-safe.

* Every batch of predictions is inserted in one SQLite transaction, after it is folded: a build
  killed at any moment loses at most the batch in flight, and a rerun of the same command
  folds only what is missing.
* Deduplication by sequence checksum (MD5): a record whose sequence the atlas already holds,
  predicted by the same weights, is stored as an *alias* of that entry without folding; records
  of the input with the same sequence are folded once.
* A record whose ID is already in the atlas with the same sequence is skipped; with another
  sequence it fails (IDs are unique). Failures (too long, out of memory, ...) are recorded with
  the reason in the atlas and retried by the next run.
* An atlas remembers the folding model (weights SHA-256 and what it ran: recycles, or ESMFold2's
  seed, samples, steps and loops) and the embedding model it was built with; adding predictions
  of other weights or settings is refused. ESMFold2 entries are the best sample; every sample's
  scores are in the entry's provenance, and every sample's structure, pLDDT and scores are stored
  with the entry (:meth:`Atlas.samples`, :meth:`Atlas.get_sample`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from foldatlas.atlas import codec
from foldatlas.atlas.entry import EntrySample, NewEntry
from foldatlas.atlas.store import Atlas
from foldatlas.errors import OutputConflictError
from foldatlas.seq.records import Record

__all__ = ["BuildOptions", "BuildResult", "build_atlas", "check_embedding_model", "check_folding_model",
           "prediction_entry", "batch_entries", "plan_build", "store_batch"]


@dataclass(frozen=True)
class BuildOptions:
    """Settings of an atlas build.

    Attributes
    ----------
    num_recycles, chunk_size, max_tokens_per_batch, max_length, num_samples, seed, num_steps, num_loops
        As for ``foldatlas fold`` (:class:`foldatlas.predict.RunConfig`).
    store_pae : bool
        Store each entry's PAE matrix (the largest part of an entry: about L^2 / 3 bytes).
    source : str
        Where the records came from (input files), stored with every entry.
    relax : bool
        Store the Amber-relaxed model (:mod:`foldatlas.structure.relax`) as the entry's structure, the
        before/after report under ``provenance["relax"]``; an ESMFold2 entry's samples stay as predicted.
    """

    num_recycles: int | None = None
    chunk_size: int | None = None
    max_tokens_per_batch: int = 1024
    max_length: int | None = None
    store_pae: bool = True
    source: str = ""
    num_samples: int | None = None
    seed: int | None = None
    num_steps: int | None = None
    num_loops: int | None = None
    relax: bool = False

    def __post_init__(self) -> None:
        from foldatlas.predict.runner import check_bulk_options

        check_bulk_options(self)
        if self.relax:
            from foldatlas.structure.relax import require_relax

            require_relax()


@dataclass
class BuildResult:
    """Counts of a build: folded, already present, stored as aliases, failed."""

    folded: int = 0
    skipped: int = 0
    deduplicated: int = 0
    failed: int = 0

    @property
    def ok(self) -> bool:
        """True when no record failed."""
        return self.failed == 0


def check_embedding_model(atlas: Atlas, embedder) -> None:
    """Record the atlas' embedding model, or refuse one that differs from it.

    Raises
    ------
    OutputConflictError
        If the atlas' embeddings were made by another language model: embeddings of two models
        cannot be compared, searched or mapped together.
    """
    if embedder is None:
        return
    current = {"name": embedder.name, "weights_sha256": embedder.weights_sha256, "dim": embedder.dim,
               "load": embedder.spec or embedder.name}
    stored = atlas.get_meta("embedding_model")
    if stored is None:
        atlas.set_meta("embedding_model", current)
    elif stored.get("weights_sha256") != current["weights_sha256"]:
        raise OutputConflictError(
            f"{atlas.folder} holds embeddings of '{stored.get('name')}'; embed with the same model "
            f"(--embedding-model {stored.get('load', stored.get('name'))}) or use a new atlas")


def check_folding_model(atlas: Atlas, folding_model, options: BuildOptions) -> None:
    """Record the atlas' folding model and what it runs, or refuse other weights or settings (OutputConflictError)."""
    from foldatlas.predict.runner import fold_options

    settings = folding_model.run_settings(fold_options(options))  # what runs, every default a number
    current = {"name": folding_model.name, "weights_sha256": folding_model.weights_sha256, **settings,
               "source": folding_model.source}
    precision = getattr(folding_model, "precision", None)  # what the first build ran in (not a setting to match)
    if precision is not None:
        current["precision"] = precision if isinstance(precision, dict) else precision.as_dict()
    stored = atlas.get_meta("build_model")
    if stored is None or (stored.get("num_recycles") is None and "num_recycles" in settings and
                          stored.get("weights_sha256") == current["weights_sha256"] and
                          settings["num_recycles"] == folding_model.default_num_recycles):
        atlas.set_meta("build_model", current)  # new, or an atlas of before 0.1 that stored null for the default
        return
    if stored != current and not atlas.has_predictions():
        # no prediction to keep consistent with (imported entries only, e.g. a record left by a service that never
        # folded, or by an embedded model since replaced): the record follows the model in use
        atlas.set_meta("build_model", current)
        return
    if stored.get("weights_sha256") != current["weights_sha256"]:
        raise OutputConflictError(
            f"{atlas.folder} holds predictions of model '{stored.get('name')}' (weights "
            f"{str(stored.get('weights_sha256'))[:12]}); build with the same model or use a new atlas "
            f"for '{folding_model.name}'")
    for key, value in settings.items():
        if stored.get(key) != value:
            raise OutputConflictError(f"{atlas.folder} was built with {key}={stored.get(key)}; "
                                      f"use the same value or a new atlas")


# What an ESMFold2 entry's provenance keeps of its prediction: how it was drawn, which sample it is, every
# sample's scores, and the complex's per-chain-pair ipTM.
_SAMPLING_KEYS = ("seed", "num_samples", "num_steps", "num_loops", "sample", "best_sample", "ranking_score", "samples",
                  "chain_pair_iptm")


def _entry_samples(prediction, structure: bytes) -> tuple[EntrySample, ...]:
    """Every sample of a prediction to store with its entry (``structure``: the prediction's own, encoded)."""
    out = []
    for k, sample in enumerate(prediction.samples):
        blob = structure if sample is prediction else codec.encode_structure(sample.to_atoms())
        ranking = sample.extra.get("ranking_score")
        out.append(EntrySample(sample=int(sample.extra.get("sample", k)), structure=blob, plddt=sample.plddt,
                               ptm=None if sample.ptm is None else float(sample.ptm),
                               iptm=None if sample.iptm is None else float(sample.iptm),
                               ranking_score=None if ranking is None else float(ranking)))
    return tuple(out)


def prediction_entry(prediction, embedding, folding_model, options: BuildOptions, seconds: float,
                     batch_size: int) -> NewEntry:
    """The atlas entry of a prediction (its record's name is the ID), with provenance and, for a model that
    draws several samples (ESMFold2), every sample (:class:`~foldatlas.atlas.entry.EntrySample`)."""
    from foldatlas import __version__

    rec = prediction.record
    structure = codec.encode_structure(prediction.to_atoms())
    stored, relaxed = structure, {}
    if options.relax:
        from foldatlas.structure.relax import relax_structure

        result = relax_structure(prediction.to_atoms())
        stored, relaxed = codec.encode_structure(result.atoms), {"relax": result.to_dict()}
    return NewEntry(
        id=rec.name, sequence=rec.sequence, kind="predicted", model=folding_model.name,
        model_version=folding_model.weights_sha256, structure=stored,
        samples=_entry_samples(prediction, structure), plddt=prediction.plddt, ptm=prediction.ptm, iptm=prediction.iptm,
        pae=prediction.pae if options.store_pae else None, max_pae=prediction.max_pae, embedding=embedding,
        description=rec.description, source=options.source,
        provenance={"foldatlas_version": __version__, "model": folding_model.name,
                    "model_source": folding_model.source, "model_revision": folding_model.revision,
                    **({"num_recycles": prediction.num_recycles} if prediction.num_recycles is not None else {}),
                    **{k: prediction.extra[k] for k in _SAMPLING_KEYS if k in prediction.extra},
                    **({"precision": prediction.extra["precision"]} if "precision" in prediction.extra else {}),
                    "seconds": round(seconds, 3), "batch_size": batch_size,
                    "substitutions": [list(s) for s in rec.substitutions], **relaxed})


def batch_entries(predictions: list, folding_model, embedder, options: BuildOptions, seconds: float) -> list[NewEntry]:
    """Atlas entries of a folded batch, with the batch's mean embeddings (one language-model pass)."""
    embeddings = embedder([p.record.sequence for p in predictions]) if embedder is not None else None
    return [prediction_entry(p, None if embeddings is None else embeddings[k], folding_model, options, seconds,
                             len(predictions)) for k, p in enumerate(predictions)]


def _plan(atlas: Atlas, records: list[Record], model_version: str, source: str, log):
    """Split records into skipped, aliases of stored entries, failures, and groups to fold."""
    result = BuildResult()
    failures: list[tuple[str, str | None, int | None, str, str]] = []
    seen: dict[str, str] = {}
    unique: list[Record] = []
    for rec in records:  # the same ID twice in the input
        checksum = codec.sequence_md5(rec.sequence)
        if rec.name in seen:
            if seen[rec.name] != checksum:
                failures.append((rec.name, checksum, rec.length, "ID given twice in the input with different "
                                 "sequences", source))
            continue
        seen[rec.name] = checksum
        unique.append(rec)
    known = atlas.known_ids([r.name for r in unique])
    fresh: list[Record] = []
    for rec in unique:
        if rec.name in known:
            if known[rec.name][0] == seen[rec.name]:
                result.skipped += 1
            else:
                failures.append((rec.name, seen[rec.name], rec.length,
                                 "ID already in the atlas with another sequence", source))
        else:
            fresh.append(rec)
    stored = atlas.predicted_ids([seen[r.name] for r in fresh], model_version)
    aliases = [(r.name, stored[seen[r.name]], source) for r in fresh if seen[r.name] in stored]
    groups: dict[str, list[Record]] = {}
    for rec in fresh:
        if seen[rec.name] not in stored:
            groups.setdefault(seen[rec.name], []).append(rec)
    result.failed += len(failures)
    for f in failures:
        log(f"record '{f[0]}': failed: {f[3]}")
    return result, failures, aliases, groups


def plan_build(atlas: Atlas, records: list[Record], model_version: str, options: BuildOptions,
               log: Callable[[str], None]) -> tuple[BuildResult, list[list[Record]]]:
    """Plan a build: count what is stored, store aliases of known sequences, record input failures.

    Returns
    -------
    result : BuildResult
        Counts so far (skipped, deduplicated, failed).
    groups : list of list of Record
        Records to fold, grouped by sequence: each group's first record is folded, the others become its aliases.
    """
    result, failures, aliases, groups = _plan(atlas, records, model_version, options.source, log)
    if aliases:
        atlas.insert([], aliases=aliases)
        result.deduplicated += len(aliases)
    atlas.record_failures(failures)
    return result, list(groups.values())


def store_batch(atlas: Atlas, groups: list[list[Record]], entries: list[NewEntry] | None, error: str | None,
                options: BuildOptions, result: BuildResult, log: Callable[[str], None]) -> None:
    """Store one folded batch in one transaction (its entries and their aliases), or record why it failed.

    ``entries`` holds one entry per group, for the group's first record; None with ``error`` records every
    record of the groups as failed (retried by the next build).
    """
    if entries is None:
        failed = [(r.name, codec.sequence_md5(r.sequence), r.length, str(error).removeprefix("failed: ")
                   .removeprefix("skipped: "), options.source) for group in groups for r in group]
        atlas.record_failures(failed)
        result.failed += len(failed)
        for group in groups:
            log(f"record '{group[0].name}': {error}")
        return
    extra = [(r.name, group[0].name, options.source) for group in groups for r in group[1:]]
    atlas.insert(entries, aliases=extra)
    result.folded += len(entries)
    result.deduplicated += len(extra)


def build_atlas(atlas: Atlas, records: list[Record], folding_model, embedder=None,
                options: BuildOptions = BuildOptions(), progress: bool = True,
                log: Callable[[str], None] | None = None) -> BuildResult:
    """Fold records into an atlas, resuming what earlier runs stored.

    Parameters
    ----------
    atlas : Atlas
        Opened for writing.
    records : list of Record
        Validated input; each record's name is its entry ID.
    folding_model : foldatlas.models.FoldingModel
    embedder : foldatlas.models.embedding.Embedder, optional
        Computes each entry's mean language-model embedding; None stores none.
    options : BuildOptions
    progress : bool
        Progress bar (residues, with ETA) on stderr.
    log : callable, optional
        Receives one-line messages (failures); default prints to stderr.

    Returns
    -------
    BuildResult

    Raises
    ------
    OutputConflictError
        If the atlas was built with other weights, recycles or embedding model.
    """
    from tqdm import tqdm

    from foldatlas.atlas.seqindex import update_sequence_index
    from foldatlas.atlas.structindex import update_structure_index
    from foldatlas.predict.memory import available_memory_bytes
    from foldatlas.predict.runner import fold_in_batches, fold_options, length_problem

    log = log or (lambda msg: print(msg, file=sys.stderr))
    check_folding_model(atlas, folding_model, options)
    check_embedding_model(atlas, embedder)
    result, groups = plan_build(atlas, records, folding_model.weights_sha256, options, log)
    todo: list[list[Record]] = []
    available = available_memory_bytes(folding_model.device)
    for group in groups:
        problem = length_problem(group[0], options.max_length, folding_model, fold_options(options), available)
        if problem:
            store_batch(atlas, [group], None, f"skipped: {problem}", options, result, log)
        else:
            todo.append(group)

    primaries = [group[0] for group in todo]
    bar = tqdm(total=sum(r.length for r in primaries), unit="res", disable=not progress or not primaries,
               desc="folding", file=sys.stderr, dynamic_ncols=True)
    for outcome in fold_in_batches(folding_model, primaries, fold_options(options), options.max_tokens_per_batch):
        groups_done = [todo[j] for j in outcome.indices]
        entries = None if outcome.error is not None else \
            batch_entries(outcome.predictions, folding_model, embedder, options, outcome.seconds)
        store_batch(atlas, groups_done, entries, outcome.error and f"failed: {outcome.error}", options, result, log)
        bar.update(sum(g[0].length for g in groups_done))
    bar.close()
    update_sequence_index(atlas)
    update_structure_index(atlas)
    return result
