"""Sequence search of an atlas: MMseqs2 where it is installed, otherwise a k-mer prefilter and HMMER's phmmer.

``engine`` picks: ``mmseqs`` runs the MMseqs2 program on a database the atlas keeps
(:mod:`foldatlas.atlas.mmseqs`); ``phmmer`` (pyhmmer, always available) is described here; ``auto``, the default,
takes MMseqs2 where the program is installed (BENCHMARKS.md: its speed at more than its default sensitivity).

Every query is aligned by pyhmmer (HMMER3's phmmer pipeline: a profile built from the query with
BLOSUM62 and HMMER's gap and prior settings; MSV, Viterbi and Forward filters; E-values from its
calibrated score distributions). Two modes:

* default: the two-hit 3-mer prefilter of :mod:`foldatlas.atlas.seqindex` picks up to
  ``max_candidates`` chains per query, and phmmer aligns the query to those only;
* ``exhaustive``: phmmer against every chain of the atlas (most sensitive, slower).

By default the search is exhaustive up to :data:`EXHAUSTIVE_MAX_CHAINS` chains and prefiltered above: on
the 21,119 PDB chains of the StructureDB, exhaustive phmmer finds 1.45 times the homologs the prefiltered
search finds at 0.7 times its speed (BENCHMARKS.md), while its cost grows with the atlas and the
prefiltered alignment's does not.

In both modes E-values are computed for the whole atlas (``Z`` = its number of chains), so they
do not depend on the mode or the candidates. Complexes are indexed chain by chain; a hit names the
entry and the chain.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from foldatlas.atlas.seqindex import SequenceShard, diagonal_scores, encode_digital, load_shards, \
    update_sequence_index
from foldatlas.atlas.shards import require_current
from foldatlas.errors import InvalidOptionError, InvalidSequenceError
from foldatlas.seq.records import CHAIN_IDS, Record

__all__ = ["resolve_engine", "ENGINES", "SequenceHit", "SearchOptions", "SequenceSearcher", "search_sequences",
           "make_hit", "HIT_COLUMNS", "EXHAUSTIVE_MAX_CHAINS"]

EXHAUSTIVE_MAX_CHAINS = 50_000
ENGINES = ("auto", "phmmer", "mmseqs")
HIT_COLUMNS = ("query", "target", "chain", "identity", "alignment_length", "query_start", "query_end",
               "target_start", "target_end", "evalue", "bitscore", "query_coverage", "target_coverage")


@dataclass(frozen=True)
class SequenceHit:
    """One query-target hit, with the best-scoring domain's alignment (1-based, inclusive ends).

    Attributes
    ----------
    query, target : str
        Query name; target entry ID.
    chain : str
        The target's chain (A, B, ... in the entry's sequence order).
    identity : float
        Identical aligned columns over alignment columns.
    alignment_length : int
    query_start, query_end, target_start, target_end : int
    evalue : float
        E-value of the full-sequence hit over the whole atlas.
    bitscore : float
    query_coverage, target_coverage : float
        Fraction of each sequence in the alignment.
    query_aligned, target_aligned, midline : str
        The alignment as HMMER prints it (midline: identities as letters, ``+`` similar).
    """

    query: str
    target: str
    chain: str
    identity: float
    alignment_length: int
    query_start: int
    query_end: int
    target_start: int
    target_end: int
    evalue: float
    bitscore: float
    query_coverage: float
    target_coverage: float
    query_aligned: str
    target_aligned: str
    midline: str

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class SearchOptions:
    """Options of a sequence search.

    Attributes
    ----------
    evalue : float
        Report hits with an E-value at most this (MMseqs2's and BLAST's default 1e-3).
    max_hits : int
        Hits per query, best first.
    exhaustive : bool or None
        True: align every chain; False: only the prefilter's candidates; None: exhaustive for atlases
        of up to :data:`EXHAUSTIVE_MAX_CHAINS` chains.
    max_candidates : int
        Chains per query passed from the prefilter to the aligner.
    threads : int or None
        Queries searched in parallel (default: the CPUs available).
    engine : {"auto", "phmmer", "mmseqs"}
        ``phmmer``: pyhmmer as above; ``mmseqs``: MMseqs2 (:mod:`foldatlas.atlas.mmseqs`, where the program is
        installed); ``auto``: MMseqs2 where installed, phmmer otherwise (see :func:`resolve_engine`).
    sensitivity : float
        MMseqs2's ``-s`` (1-7.5; its default 5.7) for the ``mmseqs`` engine.
    """

    evalue: float = 1e-3
    max_hits: int = 100
    exhaustive: bool | None = None
    max_candidates: int = 1000
    threads: int | None = None
    engine: str = "auto"
    sensitivity: float = 5.7

    def __post_init__(self) -> None:
        if not self.evalue > 0:
            raise InvalidOptionError("--evalue must be > 0")
        if self.max_hits < 1:
            raise InvalidOptionError("--max-hits must be >= 1")
        if self.max_candidates < 1:
            raise InvalidOptionError("--max-candidates must be >= 1")
        if self.threads is not None and self.threads < 1:
            raise InvalidOptionError("--threads must be >= 1")
        if not 1.0 <= self.sensitivity <= 7.5:
            raise InvalidOptionError("--sensitivity must be between 1 and 7.5 (MMseqs2's -s)")
        if self.engine not in ENGINES:
            raise InvalidOptionError(f"--engine must be one of {', '.join(ENGINES)}")


def resolve_engine(engine: str) -> str:
    """The engine a search runs: ``auto`` is ``mmseqs`` where the program is installed, ``phmmer`` otherwise."""
    if engine != "auto":
        return engine
    from foldatlas.atlas.mmseqs import mmseqs_binary

    return "mmseqs" if mmseqs_binary() is not None else "phmmer"


class SequenceSearcher:
    """Searches a list of index shards: the pyhmmer alphabet, candidate selection and one pipeline per thread.

    Use :func:`search_sequences` for an atlas; this class serves any shards (benchmarks build them in memory).
    """

    def __init__(self, shards: list[SequenceShard], options: SearchOptions) -> None:
        import pyhmmer

        self.pyhmmer = pyhmmer
        self.shards = shards
        self.options = options
        self.alphabet = pyhmmer.easel.Alphabet.amino()
        self.num_targets = sum(s.num_targets for s in shards)
        self._local = threading.local()
        self._all_block = None
        self._lock = threading.Lock()
        self.exhaustive = options.exhaustive if options.exhaustive is not None else \
            self.num_targets <= EXHAUSTIVE_MAX_CHAINS

    def _pipeline(self):
        if not hasattr(self._local, "pipeline"):
            plan7 = self.pyhmmer.plan7
            # Z: the whole atlas, so that E-values do not depend on the prefilter's candidates.
            self._local.pipeline = plan7.Pipeline(self.alphabet, Z=max(self.num_targets, 1), E=self.options.evalue,
                                                  domZ=max(self.num_targets, 1))
            self._local.builder = plan7.Builder(self.alphabet)
        return self._local.pipeline, self._local.builder

    def _digital(self, shard_index: int, target: int):
        shard = self.shards[shard_index]
        name = f"{shard_index}:{target}".encode()
        return self.pyhmmer.easel.DigitalSequence(self.alphabet, name=name,
                                                  sequence=np.ascontiguousarray(shard.target_codes(target)))

    def _everything(self):
        with self._lock:
            if self._all_block is None:
                seqs = [self._digital(k, t) for k, s in enumerate(self.shards) for t in range(s.num_targets)]
                self._all_block = self.pyhmmer.easel.DigitalSequenceBlock(self.alphabet, seqs)
            return self._all_block

    def _candidates(self, codes: np.ndarray):
        parts = []
        for k, shard in enumerate(self.shards):
            targets, scores = diagonal_scores(shard, codes)
            if len(targets):
                parts.append((np.full(len(targets), k), targets, scores))
        if not parts:
            return self.pyhmmer.easel.DigitalSequenceBlock(self.alphabet, [])
        shard_of, target, score = (np.concatenate(x) for x in zip(*parts))
        keep = np.argsort(-score, kind="stable")[:self.options.max_candidates]
        return self.pyhmmer.easel.DigitalSequenceBlock(
            self.alphabet, [self._digital(int(shard_of[i]), int(target[i])) for i in keep])

    def search(self, record: Record) -> list[tuple[int, int, object]]:
        """Hits of one query as ``(shard index, target index, pyhmmer Hit)``, best first."""
        codes = encode_digital(record.chains[0])
        query = self.pyhmmer.easel.DigitalSequence(self.alphabet, name=record.name.encode("utf-8", "replace"),
                                                   sequence=codes)
        block = self._everything() if self.exhaustive else self._candidates(codes)
        if len(block) == 0:
            return []
        pipeline, builder = self._pipeline()
        hits = pipeline.search_seq(query, block, builder)
        pipeline.clear()
        out = []
        for hit in hits:
            if hit.evalue > self.options.evalue:
                continue
            name = hit.name.decode() if isinstance(hit.name, bytes) else hit.name
            shard_index, target = (int(x) for x in name.split(":"))
            out.append((shard_index, target, hit))
            if len(out) >= self.options.max_hits:
                break
        return out


def make_hit(query: Record, entry_id: str, chain: int, hit) -> SequenceHit:
    """A :class:`SequenceHit` from a pyhmmer hit of ``query`` on chain ``chain`` of entry ``entry_id``."""
    domain = hit.best_domain
    ali = domain.alignment
    columns = len(ali.hmm_sequence)
    identical = sum(1 for c in ali.identity_sequence if c.isalpha())
    target_length = ali.target_length
    return SequenceHit(
        query=query.name, target=entry_id, chain=CHAIN_IDS[chain], identity=round(identical / max(columns, 1), 4),
        alignment_length=columns, query_start=ali.hmm_from, query_end=ali.hmm_to, target_start=ali.target_from,
        target_end=ali.target_to, evalue=float(hit.evalue), bitscore=round(float(hit.score), 2),
        query_coverage=round((ali.hmm_to - ali.hmm_from + 1) / query.length, 4),
        target_coverage=round((ali.target_to - ali.target_from + 1) / max(target_length, 1), 4),
        query_aligned=ali.hmm_sequence.upper(), target_aligned=ali.target_sequence, midline=ali.identity_sequence)


def search_sequences(atlas, queries: list[Record], options: SearchOptions = SearchOptions()
                     ) -> list[list[SequenceHit]]:
    """Search an atlas with protein sequences.

    Parameters
    ----------
    atlas : foldatlas.atlas.Atlas
    queries : list of Record
        Single-chain records (a complex's chains are searched one at a time).
    options : SearchOptions

    Returns
    -------
    list of list of SequenceHit
        For each query, in the order of ``queries``: its hits, best (lowest E-value) first.

    Raises
    ------
    InvalidSequenceError
        If a query is a complex.
    InvalidOptionError
        If a read-only atlas' sequence index does not cover all its entries (it cannot be updated).
    """
    for q in queries:
        if len(q.chains) > 1:
            raise InvalidSequenceError(f"query '{q.name}': a complex ({len(q.chains)} chains); search one chain at "
                                       f"a time (one FASTA record per chain)")
    require_current(atlas, load_shards(atlas.folder), "sequence")
    if resolve_engine(options.engine) == "mmseqs":
        from foldatlas.atlas.mmseqs import search_mmseqs

        return search_mmseqs(atlas, queries, options)
    if not atlas.readonly:
        update_sequence_index(atlas)  # entries added since the last update (e.g. by the service)
    shards = load_shards(atlas.folder)
    searcher = SequenceSearcher(shards, options)
    threads = options.threads or min(len(os.sched_getaffinity(0)), 8)
    if threads > 1 and len(queries) > 1:
        with ThreadPoolExecutor(threads) as pool:
            raw = list(pool.map(searcher.search, queries))
    else:
        raw = [searcher.search(q) for q in queries]
    rowids = {int(shards[s].target_row[t]) for hits in raw for s, t, _ in hits}
    ids = atlas.ids_of(sorted(rowids))
    out: list[list[SequenceHit]] = []
    for query, hits in zip(queries, raw):
        rows = []
        for s, t, hit in hits:
            rowid = int(shards[s].target_row[t])
            if rowid in ids:  # an entry removed since it was indexed is skipped
                rows.append(make_hit(query, ids[rowid], int(shards[s].target_chain[t]), hit))
        out.append(rows)
    return out
