"""``atlas build`` on a Ray cluster: one model replica per worker, length-bucketed batches, backpressure.

How it runs:

* The driver (the process that runs ``foldatlas atlas build --ray``) plans the build exactly as the single-machine
  build does (:func:`foldatlas.atlas.build.plan_build`): what is stored is skipped, known sequences become aliases,
  identical sequences in the input are folded once.
* Ray actors (:class:`FoldWorker`), each holding the folding model and the embedding model once, fold batches of
  similar length (the same token-budget batching) and return finished atlas entries (structure encoded, PAE,
  embedding) through Ray's object store; at most ``max_in_flight`` batches per worker are outstanding
  (backpressure: the driver never holds more than that in memory).
* The driver writes each returned batch into the atlas in one SQLite transaction, as the single-machine build does:
  the atlas is written by one process, so its crash-safety is unchanged. A killed driver loses at most the batches in
  flight, and rerunning the command resumes.
* A worker that dies (killed, out of memory, its node lost) is restarted by Ray and its batch retried
  (``max_restarts``, ``max_task_retries``); batches that fail for a reason of their own are recorded as failures and
  retried by the next run, as on one machine.

Ray is imported only here, only when ``--ray`` is given; it is an optional extra (``pip install foldatlas[ray]``).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from foldatlas.atlas.build import (
    BuildOptions,
    BuildResult,
    check_embedding_model,
    check_folding_model,
    plan_build,
    store_batch,
)
from foldatlas.errors import FoldatlasError, InvalidOptionError, OutputConflictError
from foldatlas.seq.batching import token_batches

__all__ = ["RayOptions", "build_atlas_ray", "FoldWorker", "ray_cluster"]

# local | auto | ray://host:port (Ray Client) | host:port (the head node's GCS); host a name, IPv4 or [IPv6].
_ADDRESS = re.compile(r"^(local|auto|(ray://)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):\d{1,5})$")


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a Ray build runs.

    Attributes
    ----------
    address : str
        ``local`` starts a Ray cluster on this machine for the build (and stops it after); ``auto`` joins the
        running cluster; ``ray://host:10001`` or ``host:6379`` a remote one.
    workers : int
        Model replicas (Ray actors).
    cpus_per_worker : int
        CPU threads each replica's torch uses (and reserves from Ray).
    gpus_per_worker : float
        GPUs each replica reserves (1 on a GPU cluster: one replica per GPU).
    max_in_flight : int
        Batches outstanding per worker.
    max_restarts : int
        Times a dead worker is restarted (its batch retried each time).
    """

    address: str = "local"
    workers: int = 2
    cpus_per_worker: int = 1
    gpus_per_worker: float = 0.0
    max_in_flight: int = 2
    max_restarts: int = 3

    def __post_init__(self) -> None:
        if not _ADDRESS.match(self.address):
            raise InvalidOptionError(f"--ray {self.address[:100]!r}: give local, auto, ray://HOST:PORT (Ray Client) "
                                     f"or HOST:PORT (a running cluster's head)")
        if self.workers < 1 or self.cpus_per_worker < 1 or self.gpus_per_worker < 0:
            raise InvalidOptionError("--ray-workers and --ray-cpus-per-worker must be >= 1, "
                                     "--ray-gpus-per-worker >= 0")
        if self.max_in_flight < 1 or self.max_restarts < 0:
            raise InvalidOptionError("max_in_flight must be >= 1 and max_restarts >= 0")


class FoldWorker:
    """A Ray actor: the folding model and the embedding model, loaded once; folds batches into atlas entries."""

    def __init__(self, model: str, embedding_model: str | None, options: BuildOptions, device: str,
                 dtype: str | None, threads: int, precision: str = "auto") -> None:
        from foldatlas.models.loading import load_folding_model

        self.options = options
        self.model = load_folding_model(model, device=device, dtype=dtype, threads=threads, precision=precision)
        self.embedder = None
        if embedding_model:
            from foldatlas.models.embedding import load_embedder

            self.embedder = load_embedder(embedding_model)

    def info(self) -> dict:
        """The replica's model identity (checked against the atlas) and process id."""
        from foldatlas.predict.runner import fold_options

        emb = self.embedder
        return {"pid": os.getpid(), "name": self.model.name, "weights_sha256": self.model.weights_sha256,
                "source": self.model.source, "default_num_recycles": self.model.default_num_recycles,
                "run_settings": self.model.run_settings(fold_options(self.options)),
                "precision": self.model.precision.as_dict() if self.model.precision is not None else None,
                "embedder": None if emb is None else
                {"name": emb.name, "weights_sha256": emb.weights_sha256, "dim": emb.dim, "spec": emb.spec}}

    def fold(self, records: list) -> list[tuple[list[int], list | None, str | None]]:
        """Fold records (primaries of their groups); per sub-batch: positions, entries or None, error."""
        from foldatlas.atlas.build import batch_entries
        from foldatlas.predict.runner import fold_in_batches, fold_options, length_problem

        out: list[tuple[list[int], list | None, str | None]] = []
        todo = []
        for k, rec in enumerate(records):
            problem = length_problem(rec, self.options.max_length, self.model, fold_options(self.options))
            if problem:
                out.append(([k], None, f"skipped: {problem}"))
            else:
                todo.append(k)
        for outcome in fold_in_batches(self.model, [records[k] for k in todo], fold_options(self.options),
                                       self.options.max_tokens_per_batch):
            positions = [todo[j] for j in outcome.indices]
            if outcome.error is not None:
                out.append((positions, None, f"failed: {outcome.error}"))
                continue
            out.append((positions, batch_entries(outcome.predictions, self.model, self.embedder, self.options,
                                                 outcome.seconds), None))
        return out


class _Identity:
    """What the atlas' model checks read, from a worker's :meth:`FoldWorker.info`."""

    def run_settings(self, options) -> dict:
        """What the workers run for the build's options (they resolved them when they loaded the model)."""
        return dict(self._settings)

    def __init__(self, info: dict) -> None:
        self.name, self.weights_sha256, self.source = info["name"], info["weights_sha256"], info["source"]
        self.default_num_recycles = info["default_num_recycles"]
        self._settings = info["run_settings"]
        self.precision = info.get("precision")
        emb = info["embedder"]
        self.embedder = None if emb is None else type("E", (), {**emb})()


def _ray():
    try:
        import ray
    except ImportError:
        raise FoldatlasError("--ray needs Ray: pip install 'foldatlas[ray]' (or pip install ray)") from None
    return ray


@contextmanager
def ray_cluster(ray_options: RayOptions) -> Iterator:
    """Connect to (or, for ``local``, start) the Ray cluster of a build; shut it down after if started here.

    Used by the CLI before the atlas is opened, so that a cluster that cannot be reached leaves nothing behind.
    Inside an already initialised Ray session it yields that session and leaves it running.

    Raises
    ------
    FoldatlasError
        If Ray (or, for ``ray://``, Ray Client) is not installed.
    InvalidOptionError
        If the cluster cannot be reached or started.
    """
    ray = _ray()
    if ray.is_initialized():
        yield ray
        return
    if ray_options.address.startswith("ray://"):
        try:
            import grpc  # noqa: F401  (Ray Client's transport; ray.init says so only after a traceback)
        except ImportError:
            raise FoldatlasError("--ray ray://...: Ray Client is not installed: pip install 'ray[client]'") from None
    if ray_options.address not in ("local", "auto"):
        _check_reachable(ray_options.address)
    try:
        if ray_options.address == "local":
            ray.init(num_cpus=ray_options.workers * ray_options.cpus_per_worker, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=ray_options.address, log_to_driver=False, configure_logging=False)
    except Exception as e:  # Ray raises ConnectionError, ValueError, RuntimeError, TimeoutError... here
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else e.__class__.__name__
        raise InvalidOptionError(f"--ray {ray_options.address}: cannot start or reach the Ray cluster ({first})") \
            from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Refuse an address whose port does not answer within ``timeout`` seconds (ray.init would retry for minutes)."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as e:
        raise InvalidOptionError(f"--ray {address}: nothing answers there ({e.strerror or e}); is the cluster "
                                 f"running (ray start --head)?") from None


def build_atlas_ray(atlas, records: list, model: str, embedding_model: str | None, options: BuildOptions,
                    ray_options: RayOptions = RayOptions(), device: str = "auto", dtype: str | None = None,
                    precision: str = "auto", progress: bool = True, log: Callable[[str], None] | None = None,
                    on_batch: Callable[[dict], None] | None = None) -> BuildResult:
    """Fold records into an atlas on a Ray cluster; same results and guarantees as :func:`build_atlas`.

    Parameters
    ----------
    atlas : foldatlas.atlas.Atlas
        Opened for writing (by this, the driver, process).
    records : list of Record
    model, embedding_model : str
        Names the workers load (registered names, hub ids in each node's cache, or folders every node can read);
        ``embedding_model`` None stores no embeddings.
    options : BuildOptions
    ray_options : RayOptions
    device, dtype, precision : str
        For each replica, as ``foldatlas fold``.
    progress : bool
        Progress bar (residues) on stderr.
    log : callable, optional
        One-line messages.
    on_batch : callable, optional
        Called after each stored batch with ``{"batch": n, "workers": [pids]}`` (tests use it to kill a worker).

    Returns
    -------
    BuildResult

    Raises
    ------
    OutputConflictError
        If the atlas holds predictions of other weights, or the workers disagree on the weights.
    """
    from tqdm import tqdm

    from foldatlas.atlas.seqindex import update_sequence_index
    from foldatlas.atlas.structindex import update_structure_index

    log = log or (lambda msg: print(msg, file=sys.stderr))
    with ray_cluster(ray_options) as ray:
        actor = ray.remote(num_cpus=ray_options.cpus_per_worker, num_gpus=ray_options.gpus_per_worker,
                           max_restarts=ray_options.max_restarts, max_task_retries=ray_options.max_restarts)(FoldWorker)
        workers = [actor.remote(model, embedding_model, options, device, dtype, ray_options.cpus_per_worker,
                                precision)
                   for _ in range(ray_options.workers)]
        infos = ray.get([w.info.remote() for w in workers])
        if len({i["weights_sha256"] for i in infos}) != 1:
            raise OutputConflictError(f"the workers loaded different weights for '{model}': give every node the "
                                      f"same checkpoint")
        identity = _Identity(infos[0])
        check_folding_model(atlas, identity, options)
        check_embedding_model(atlas, identity.embedder)
        result, groups = plan_build(atlas, records, identity.weights_sha256, options, log)
        # Length-bucketed work units: up to 4 model batches each, and small enough that every worker gets
        # several (a unit runs on one worker, so one big unit would leave the others idle).
        total = sum(g[0].length for g in groups)
        unit_tokens = max(1, min(max(options.max_tokens_per_batch, 1) * 4,
                                 -(-total // (len(workers) * 4))))
        units = [[groups[i] for i in unit] for unit in token_batches([g[0].length for g in groups], unit_tokens)]
        pids = [i["pid"] for i in infos]
        bar = tqdm(total=sum(g[0].length for g in groups), unit="res", disable=not progress or not groups,
                   desc=f"folding on {len(workers)} Ray workers", file=sys.stderr, dynamic_ncols=True)
        pending: dict = {}
        next_unit, stored = 0, 0
        limit = len(workers) * ray_options.max_in_flight
        while next_unit < len(units) or pending:
            while next_unit < len(units) and len(pending) < limit:
                unit = units[next_unit]
                ref = workers[next_unit % len(workers)].fold.remote([g[0] for g in unit])
                pending[ref] = unit
                next_unit += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            unit = pending.pop(done[0])
            try:
                parts = ray.get(done[0])
            except ray.exceptions.RayError as e:  # the worker died more often than it may be restarted
                reason = f"failed: Ray worker lost ({e.__class__.__name__})"
                store_batch(atlas, unit, None, reason, options, result, log)
                parts = []
            for positions, entries, error in parts:
                store_batch(atlas, [unit[k] for k in positions], entries, error, options, result, log)
            stored += 1
            bar.update(sum(g[0].length for g in unit))
            if on_batch is not None:
                on_batch({"batch": stored, "workers": pids})
        bar.close()
    update_sequence_index(atlas)
    update_structure_index(atlas)
    return result

