"""Structure search of an atlas: a structural-alphabet prefilter over every chain, then TM-scores of the best.

For each query chain:

1. **Prefilter**: Smith-Waterman alignment (pyopal, SIMD) of the query's structural-alphabet string (Foldseek's 3Di,
   :mod:`foldatlas.structure.threedi`, or the project's own :mod:`foldatlas.structure.alphabet`) against every
   chain of the atlas, scored by the alphabet's substitution matrix and corrected for length (``S - ln(m n) /
   lambda``, the log of an E-value up to a constant). From :data:`KMER_FROM` chains on (or when asked), Foldseek's
   3Di k-mer stage (:mod:`foldatlas.atlas.kmerindex`) first picks the chains the scan aligns, a twentieth of the
   atlas: the scan alone grows linearly with the atlas.
2. **Ranking** of the best ``candidates`` (default): TM-scores refined from their 3Di alignments, local and global,
   and the best gapless threading, by TM-align's own iterations of superposition and dynamic programming
   (:mod:`foldatlas.structure.tmrefine`, compiled; about 1-2 ms a pair against TM-align's 40): hits ranked by
   TM-score (method ``refined``). Without ``refine``, mode ``3diaa`` ranks by Foldseek's 3Di+BLOSUM62 alignment
   score instead, and hits past TM-align show the superposition of their 3Di alignment (method ``alignment``).
3. **TM-align** (tmtools) on the best ``tmalign`` candidates: exact TM-scores (by query and by target length),
   RMSD, aligned length, sequence identity and the superposition (method ``tmalign``).

``exhaustive`` TM-aligns the query against every chain (exact, slow: about 40 ms a pair on this machine).
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from foldatlas.atlas.kmerindex import THRESHOLD as KMER_THRESHOLD
from foldatlas.atlas.structindex import (ChainTrace, StructureShard, chain_traces, load_structure_shards,
                                         update_structure_index)
from foldatlas.atlas.shards import require_current
from foldatlas.errors import InvalidOptionError
from foldatlas.structure.alphabet import StructureAlphabet, load_alphabet

__all__ = ["threedi_aa_scores", "StructureHit", "StructureSearchOptions", "StructureSearcher", "QueryChain",
           "query_chains", "structure_of", "chains_of", "search_structures", "superposed_chain",
           "STRUCTURE_HIT_COLUMNS"]

SEARCH_MODES = ("3diaa", "3di", "alphabet")
PREFILTERS = ("auto", "scan", "kmer")
KMER_FROM = 100_000  # chains from which prefilter "auto" puts the 3Di k-mer stage in front of the scan
SHORTLIST_FRACTION, SHORTLIST_MIN = 0.05, 5_000  # chains the k-mer stage passes to the scan
GAP_OPEN, GAP_EXTEND = 10, 1  # Foldseek's gap costs (half bits), for 3Di and 3Di+AA alike
THREEDI_LETTERS = "ACDEFGHIKLMNPQRSTVWYX"  # the 3Di states as pyopal takes them (uppercase; X = undefined)
_STATE_OF_BYTE = np.full(256, 20, np.int64)  # 3Di letter (byte) -> state, anything else undefined
_STATE_OF_BYTE[np.frombuffer(THREEDI_LETTERS.encode(), np.uint8)] = np.arange(len(THREEDI_LETTERS))
STRUCTURE_HIT_COLUMNS = ("query", "target", "chain", "tm_score", "tm_score_target", "rmsd", "aligned_length",
                         "identity", "query_length", "target_length", "prefilter_score", "evalue", "method")
# The E-value law of the 3Di+AA score (aa_weight 0.5, no reversed-query correction), fitted on random StructureDB
# pairs outside the benchmark set: benchmarks/atlas/calibrate_3diaa.py (BENCHMARKS.md, "Search: Foldseek's recipe
# and an MMseqs2 engine").
EVALUE_LAMBDA, EVALUE_LOG_K = 0.0512, -8.001
# The same for the 3Di Smith-Waterman score alone (gaps 10/1), reported when hits are ranked by refined TM-scores:
# `calibrate_3diaa.py --score 3di` (40,000 random pairs: 11.8% / 2.4% / 0.69% at P <= 0.1 / 0.01 / 0.001).
EVALUE_3DI_LAMBDA, EVALUE_3DI_LOG_K = 0.0408, -8.155


@dataclass(frozen=True)
class QueryChain:
    """A query: a name and one chain's C-alpha trace and sequence."""

    name: str
    trace: ChainTrace


@dataclass(frozen=True)
class StructureHit:
    """One query-target hit.

    Attributes
    ----------
    query, target, chain : str
        Query name, target entry ID, target chain ID.
    tm_score, tm_score_target : float
        TM-score normalised by the query's length and by the target's.
    rmsd : float
        RMSD of the aligned C-alphas (TM-align's, or of the pairs within 5 A of the superposition).
    aligned_length : int
        Residue pairs within 5 A after superposition.
    identity : float
        Identical residues among the aligned pairs.
    query_length, target_length : int
    prefilter_score : float
        The alignment stage's score: ranked by refined TM-scores, the 3Di Smith-Waterman score (half bits); in
        mode ``3diaa`` without ``refine`` the 3Di+AA local alignment score (half bits); otherwise the
        length-corrected alphabet alignment score.
    evalue : float or None
        Modes ``3diaa`` and ``3di`` with ``refine``, or ``3diaa`` without ``reverse``: unrelated chains expected to
        score as high in an atlas of this many chains (:mod:`foldatlas.atlas.evalues`), comparable between atlases
        of different sizes; None otherwise.
    method : {"tmalign", "refined", "alignment"}
        Where the scores come from: TM-align, TM-align's iterations from the 3Di alignments
        (:mod:`foldatlas.structure.tmrefine`), or the superposition of the prefilter's alignment.
    rotation, translation : list
        The superposition of the target chain onto the query, in the coordinates of the stored structure and the
        query file (``x_query = rotation @ x_target + translation``).
    """

    query: str
    target: str
    chain: str
    tm_score: float
    tm_score_target: float
    rmsd: float
    aligned_length: int
    identity: float
    query_length: int
    target_length: int
    prefilter_score: float | None
    evalue: float | None
    method: str
    rotation: list
    translation: list

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class StructureSearchOptions:
    """Options of a structure search.

    Attributes
    ----------
    max_hits : int
        Hits per query, best first.
    min_tm : float
        Report hits with a TM-score (by query) at least this.
    exhaustive : bool
        TM-align every chain (exact, about 30 ms a pair).
    candidates : int
        Chains per query passed from the prefilter to the ranking stage.
    tmalign : int
        Chains per query scored by TM-align (the best by the ranking stage's score): exact TM-scores at about 40 ms
        a chain. 0 by default: the refined TM-scores are within a few hundredths of TM-align's for partners
        (BENCHMARKS.md); without ``refine``, hits past TM-align carry the TM-score of their 3Di alignment.
    refine : bool
        Rank the candidates by TM-scores refined from their 3Di alignments (:mod:`foldatlas.structure.tmrefine`;
        modes ``3diaa`` and ``3di``): recall at 100 of TM-align's partners 0.91 against 0.64 for the 3Di+AA score
        (BENCHMARKS.md). Reported E-values are then those of the 3Di Smith-Waterman score.
    mode : {"3diaa", "3di", "alphabet"}
        ``3diaa`` (default, Foldseek's recipe): a 3Di prefilter, then the candidates ranked by a local alignment
        scored with the 3Di matrix plus ``aa_weight`` x BLOSUM62; ``3di``: ranked by the 3Di prefilter alone;
        ``alphabet``: the project's own 20-state alphabet as prefilter and ranking (the earlier default).
    aa_weight : float
        Weight of BLOSUM62 against the 3Di matrix in ``3diaa`` without ``refine`` (both in half bits). 0.5 ranked
        TM-align's partners best on the benchmark (BENCHMARKS.md).
    reverse : bool
        Without ``refine``: subtract the reversed query's score (Foldseek's correction for repeats and biased
        composition). Off by default: it lowered recall of TM-align's partners on the benchmark (0.58 against 0.635
        at 100); E-values are calibrated for the default only.
    threads : int or None
        Threads of the prefilter alignment (default: the CPUs available).
    workers : int
        Processes running TM-align (0: in this process). Started with ``spawn``, so a script that sets this
        must guard its entry point with ``if __name__ == "__main__":``; the CLI uses one per CPU.
    prefilter : {"auto", "scan", "kmer"}
        ``scan``: Smith-Waterman of the query's 3Di string against every chain; ``kmer``: Foldseek's k-mer stage
        (:mod:`foldatlas.atlas.kmerindex`) first, which passes the best :data:`SHORTLIST_FRACTION` of the chains
        (at least :data:`SHORTLIST_MIN`) to the scan; ``auto``: ``kmer`` from :data:`KMER_FROM` chains on.
        Modes ``3diaa`` and ``3di`` only.
    kmer_threshold : float
        The k-mer stage's similar-k-mer threshold (3Di matrix, half bits): lower finds more remote chains and costs
        more hits. At a million chains with the refined ranking (BENCHMARKS.md) 30 put 0.85 of each query's planted
        copies (TM-score >= 0.5) in its first 100 hits at 1.3 s per query, 26 (default) 0.90 at 1.7 s, 23 0.92 at
        2.6 s.
    """

    max_hits: int = 100
    min_tm: float = 0.0
    exhaustive: bool = False
    candidates: int = 500
    tmalign: int = 0
    refine: bool = True
    threads: int | None = None
    workers: int = 0
    mode: str = "3diaa"
    aa_weight: float = 0.5
    reverse: bool = False
    prefilter: str = "auto"
    kmer_threshold: float = KMER_THRESHOLD

    def __post_init__(self) -> None:
        if self.max_hits < 1:
            raise InvalidOptionError("--max-hits must be >= 1")
        if not 0.0 <= self.min_tm <= 1.0:
            raise InvalidOptionError("--min-tm must be between 0 and 1")
        if self.candidates < 1 or self.tmalign < 0:
            raise InvalidOptionError("--candidates must be >= 1 and --tmalign >= 0")
        if self.threads is not None and self.threads < 1:
            raise InvalidOptionError("--threads must be >= 1")
        if self.workers < 0:
            raise InvalidOptionError("workers must be >= 0")
        if self.mode not in SEARCH_MODES:
            raise InvalidOptionError(f"--mode must be one of {', '.join(SEARCH_MODES)}")
        if self.aa_weight < 0:
            raise InvalidOptionError("--aa-weight must be >= 0")
        if self.prefilter not in PREFILTERS:
            raise InvalidOptionError(f"--structure-prefilter must be one of {', '.join(PREFILTERS)}")
        if not 0 < self.kmer_threshold <= 60:
            raise InvalidOptionError("--kmer-threshold must be in (0, 60]")
        if self.prefilter == "kmer" and self.mode == "alphabet":
            raise InvalidOptionError("--structure-prefilter kmer needs --mode 3diaa or 3di")


def _tm_align(args: tuple) -> tuple:
    """TM-align of (query C-alphas, target C-alphas, query sequence, target sequence); picklable for workers."""
    import tmtools

    res = tmtools.tm_align(*args)
    close = [(a, b) for a, b, m in zip(res.seqxA, res.seqyA, res.seqM) if m == ":"]
    return (float(res.tm_norm_chain1), float(res.tm_norm_chain2), float(res.rmsd), len(close),
            sum(a == b for a, b in close) / max(len(close), 1), np.asarray(res.u), np.asarray(res.t))


def _d0(length: int) -> float:
    return max(0.5, 1.24 * (max(length, 19) - 15) ** (1 / 3) - 1.8)


def _kabsch(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation putting ``b`` onto ``a`` (least squares)."""
    ca, cb = a.mean(axis=0), b.mean(axis=0)
    h = (b - cb).T @ (a - ca)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return rot, ca - rot @ cb


def alignment_tm_score(query: np.ndarray, target: np.ndarray, qi: np.ndarray, ti: np.ndarray
                       ) -> tuple[float, float, float, int, np.ndarray, np.ndarray]:
    """TM-score of a fixed residue alignment, superposition refined as TM-score's search does.

    Returns
    -------
    tm_query, tm_target, rmsd, aligned (pairs within 5 A), rotation, translation
    """
    if len(qi) < 3:
        return 0.0, 0.0, 0.0, 0, np.eye(3), np.zeros(3)
    a, b = query[qi], target[ti]
    d0q, d0t = _d0(len(query)), _d0(len(target))
    best = (-1.0, np.eye(3), np.zeros(3))
    subset = np.arange(len(qi))
    dist = np.zeros(len(qi))
    for cutoff in (None, 8.0, 6.0, 4.5, 4.0, 3.5):
        if cutoff is not None:
            subset = np.flatnonzero(dist < max(cutoff, d0q))
            if len(subset) < 3:
                break
        rot, tr = _kabsch(a[subset], b[subset])
        dist = np.linalg.norm(a - (b @ rot.T + tr), axis=1)
        tm = float(np.sum(1 / (1 + (dist / d0q) ** 2)) / len(query))
        if tm > best[0]:
            best = (tm, rot, tr)
    tm, rot, tr = best
    dist = np.linalg.norm(a - (b @ rot.T + tr), axis=1)
    close = dist < 5.0
    tm_t = float(np.sum(1 / (1 + (dist / d0t) ** 2)) / len(target))
    rmsd = float(np.sqrt(np.mean(dist[close] ** 2))) if close.any() else 0.0
    return tm, tm_t, rmsd, int(close.sum()), rot, tr


def _path(alignment: str, q0: int, t0: int) -> tuple[np.ndarray, np.ndarray]:
    """Aligned residue pairs of a pyopal alignment string (M: identical pair, X: mismatched pair, D: query only,
    I: target only)."""
    ops = np.frombuffer(alignment.encode(), dtype=np.uint8)
    match = (ops == ord("M")) | (ops == ord("X"))
    qstep = match | (ops == ord("D"))
    tstep = match | (ops == ord("I"))
    qi = q0 + np.cumsum(qstep) - 1
    ti = t0 + np.cumsum(tstep) - 1
    return qi[match], ti[match]


def threedi_aa_scores(query_3di: np.ndarray, query_aa: np.ndarray, targets: list[tuple[np.ndarray, np.ndarray]],
                      aa_weight: float = 0.5, reverse: bool = False) -> np.ndarray:
    """Foldseek's alignment score: local alignment with 3Di + ``aa_weight`` x BLOSUM62 substitution scores (gap
    costs 10/1); with ``reverse``, minus the same score of the reversed query (which repeats and biased
    composition share).

    Parameters
    ----------
    query_3di, query_aa : ndarray of int
        The query's 3Di states (0-20) and amino-acid codes (0-20, :func:`foldatlas.structure.threedi.aa_codes`).
    targets : list of (ndarray, ndarray)
        Each target's 3Di states and amino-acid codes.
    aa_weight : float
    reverse : bool

    Returns
    -------
    ndarray of float32
        One score per target (half bits).
    """
    from foldatlas.atlas.profile_align import profile_scores
    from foldatlas.structure.threedi import matrix_3di, matrix_blosum62

    q3, qa = np.asarray(query_3di, np.int64), np.asarray(query_aa, np.int64)
    # the query profile over the 441 target letters (21 x 3Di state + amino acid)
    prof = (matrix_3di()[q3][:, :, None] + aa_weight * matrix_blosum62()[qa][:, None, :]).reshape(len(q3), -1)
    codes = [np.asarray(t3, np.int64) * 21 + np.asarray(ta, np.int64) for t3, ta in targets]
    forward = profile_scores(prof, codes, GAP_OPEN, GAP_EXTEND)
    if not reverse:
        return forward
    return forward - profile_scores(np.ascontiguousarray(prof[::-1]), codes, GAP_OPEN, GAP_EXTEND)


class StructureSearcher:
    """Searches structure-index shards; one object serves many queries (pyopal databases built once)."""

    def __init__(self, shards: list[StructureShard], options: StructureSearchOptions,
                 alphabet: StructureAlphabet | None = None) -> None:
        import pyopal

        from foldatlas.structure.alphabet import karlin_lambda
        from foldatlas.structure.threedi import matrix_3di

        self.pyopal = pyopal
        self.shards = shards
        self.options = options
        self.threads = options.threads or len(os.sched_getaffinity(0))
        self.lengths = [np.diff(s.offsets) for s in shards]
        self.chains = sum(s.size for s in shards)
        self._pool = None
        self._threads = None
        self._kmers = None
        if options.mode == "alphabet":
            self.alphabet = alphabet or load_alphabet()
            self.matrix = self.alphabet.scoring_matrix()
            self.lam = self.alphabet.lam
            self.gap_open, self.gap_extend = self.alphabet.gap_open, self.alphabet.gap_extend
            letters = pyopal.Alphabet(self.alphabet.letters)
            self.databases = [pyopal.Database([s.target_states(t) for t in range(s.size)], alphabet=letters)
                              for s in shards]
            return
        from scoring_matrices import ScoringMatrix

        self.m3di = matrix_3di()
        self.matrix = ScoringMatrix(self.m3di.astype(int).tolist(), alphabet=THREEDI_LETTERS, name="3Di")
        counts = sum((np.bincount(s.states3di, minlength=21)[:20] for s in shards), np.zeros(20)) + 1.0
        self.lam = karlin_lambda(self.m3di[:20, :20], counts / counts.sum())
        self.gap_open, self.gap_extend = GAP_OPEN, GAP_EXTEND
        table = np.frombuffer(THREEDI_LETTERS.encode(), dtype=np.uint8)
        letters = pyopal.Alphabet(THREEDI_LETTERS)
        self.databases = [pyopal.Database([table[s.target_states3di(t)].tobytes().decode() for t in range(s.size)],
                                          alphabet=letters) for s in shards]

    def _tm_pool(self):
        if self.options.workers == 0:
            return None
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(self.options.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def close(self) -> None:
        """Stop the TM-align worker processes and the k-mer stage's threads, if any."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._threads is not None:
            self._threads.shutdown()
            self._threads = None

    def uses_kmers(self, options: StructureSearchOptions | None = None) -> bool:
        """Whether the k-mer stage runs in front of the scan (see ``StructureSearchOptions.prefilter``)."""
        opts = options or self.options
        return opts.mode != "alphabet" and (opts.prefilter == "kmer" or
                                            (opts.prefilter == "auto" and self.chains >= KMER_FROM))

    def _shortlist(self, states: str, threshold: float = KMER_THRESHOLD) -> list[list[int]]:
        """Per shard, the chains the k-mer stage passes to the scan (ascending)."""
        from concurrent.futures import ThreadPoolExecutor

        from foldatlas.atlas.kmerindex import kmer_index, similar_kmers

        if self._kmers is None:
            self._kmers = [kmer_index(s) for s in self.shards]
        if self._threads is None and self.threads > 1:
            self._threads = ThreadPoolExecutor(self.threads)
        codes, qpos = similar_kmers(_STATE_OF_BYTE[np.frombuffer(states.encode(), np.uint8)], self.m3di, threshold)
        scores = [index.scores(codes, qpos, self._threads) for index in self._kmers]
        flat = np.concatenate(scores)
        n = max(SHORTLIST_MIN, int(SHORTLIST_FRACTION * self.chains))
        keep = np.sort(np.argpartition(-flat, n)[:n]) if n < len(flat) else np.arange(len(flat))
        bounds = np.cumsum([0] + [len(x) for x in scores])
        return [(keep[(keep >= bounds[k]) & (keep < bounds[k + 1])] - bounds[k]).tolist()
                for k in range(len(scores))]

    def _per_query(self, options: StructureSearchOptions | None) -> StructureSearchOptions:
        if options is None:
            return self.options
        if (options.mode, options.threads, options.workers) != (self.options.mode, self.options.threads,
                                                                self.options.workers):
            raise InvalidOptionError("a structure searcher keeps its mode, threads and TM-align processes")
        return options

    def _align(self, states: str, k: int, targets: list[int] | None, mode: str, algorithm: str = "sw", db=None):
        if db is None:
            db = self.databases[k] if targets is None else self.databases[k].extract(targets)
        return list(self.pyopal.align(states, db, self.matrix, gap_open=self.gap_open, gap_extend=self.gap_extend,
                                      mode=mode, algorithm=algorithm, threads=self.threads, ordered=True))

    def _query_string(self, query: QueryChain) -> str:
        if self.options.mode == "alphabet":
            return self.alphabet.encode(query.trace.ca)
        return "".join(THREEDI_LETTERS[s] for s in query.trace.threedi)

    def _prefilter(self, states: str, opts: StructureSearchOptions) -> list[tuple[int, int, float]]:
        shortlist = self._shortlist(states, opts.kmer_threshold) if self.uses_kmers(opts) else None
        scored = []
        for k in range(len(self.shards)):
            targets = None if shortlist is None else shortlist[k]
            if self.shards[k].size == 0 or targets == []:
                continue
            raw = np.array([r.score for r in self._align(states, k, targets, "score")], dtype=np.float64)
            index = np.arange(len(raw)) if targets is None else np.asarray(targets)
            corrected = raw - np.log(len(states) * np.maximum(self.lengths[k][index], 1)) / self.lam
            scored.append((np.full(len(raw), k), index, corrected))
        if not scored:
            return []
        shard_of, target, score = (np.concatenate(x) for x in zip(*scored))
        keep = np.argsort(-score, kind="stable")[:opts.candidates]
        return [(int(shard_of[i]), int(target[i]), float(score[i])) for i in keep]

    def _rescore(self, query: QueryChain, candidates: list[tuple[int, int, float]],
                 opts: StructureSearchOptions) -> list[tuple[int, int, float]]:
        """Foldseek's score of each candidate, best first (see :func:`threedi_aa_scores`)."""
        from foldatlas.structure.threedi import aa_codes

        targets = []
        for k, t, _ in candidates:
            shard = self.shards[k]
            lo, hi = shard.offsets[t], shard.offsets[t + 1]
            targets.append((shard.states3di[lo:hi], aa_codes(shard.residues[lo:hi])))
        score = threedi_aa_scores(query.trace.threedi, aa_codes(query.trace.sequence), targets,
                                  opts.aa_weight, opts.reverse)
        order = np.argsort(-score, kind="stable")
        return [(candidates[i][0], candidates[i][1], float(score[i])) for i in order]

    def search(self, query: QueryChain, options: StructureSearchOptions | None = None) -> list[dict]:
        """Raw hits of one query chain (dicts of :class:`StructureHit` fields without the entry ID).

        ``options`` may change what is searched for per query (hits, candidates, TM-align, weights); the mode,
        threads and TM-align processes stay the searcher's."""
        opts = self._per_query(options)
        if opts.exhaustive:
            pool = [(k, t, float("nan")) for k, s in enumerate(self.shards) for t in range(s.size)]
            scored = [self._approx(query, k, t, score, None, opts) for k, t, score in pool]
            n_tm = len(scored)
        else:
            states = self._query_string(query)
            candidates = self._prefilter(states, opts)
            if opts.refine and opts.mode != "alphabet":
                return self._refined_hits(query, states, candidates, opts)
            if opts.mode == "3diaa":
                candidates = self._rescore(query, candidates, opts)
            # the alignment superposition of every candidate that can be shown (TM-aligned or not)
            candidates = candidates[:max(opts.max_hits, opts.tmalign)]
            by_shard: dict[int, list[tuple[int, float]]] = {}
            for k, t, score in candidates:
                by_shard.setdefault(k, []).append((t, score))
            scored = []
            for k, items in by_shard.items():
                results = self._align(states, k, [t for t, _ in items], "full")
                for (t, score), res in zip(items, results):
                    scored.append(self._approx(query, k, t, score, res, opts))
            scored.sort(key=lambda h: -h["prefilter_score"])
            n_tm = opts.tmalign
        self._tm_align(query, scored[:n_tm])
        scored.sort(key=lambda h: (h["method"] != "tmalign", -h["tm_score"] if h["method"] == "tmalign"
                                   else -h["prefilter_score"]))
        return [h for h in scored if h["tm_score"] >= opts.min_tm][:opts.max_hits]

    def _refined_hits(self, query: QueryChain, states: str, candidates: list[tuple[int, int, float]],
                      opts: StructureSearchOptions) -> list[dict]:
        """Hits ranked by TM-scores refined from the candidates' 3Di alignments, the best TM-aligned."""
        from foldatlas.structure.tmrefine import refine_tm_scores

        by_shard: dict[int, list[int]] = {}
        for k, t, _ in candidates:
            by_shard.setdefault(k, []).append(t)
        pairs, seeds, raw = [], [], []
        for k, items in by_shard.items():
            db = self.databases[k].extract(items)
            local = self._align(states, k, items, "full", db=db)
            whole = self._align(states, k, items, "full", "nw", db=db)
            for t, a, b in zip(items, local, whole):
                pairs.append((k, t))
                seeds.append([_path(a.alignment, a.query_start, a.target_start),
                              _path(b.alignment, b.query_start, b.target_start)])
                raw.append(float(a.score))
        codes = np.frombuffer(query.trace.sequence.encode(), np.uint8)
        refined = refine_tm_scores(query.trace.ca, codes, [self.shards[k].target_ca(t) for k, t in pairs],
                                   [np.frombuffer(self.shards[k].target_sequence(t).encode(), np.uint8)
                                    for k, t in pairs], seeds, threads=self.threads)
        order = np.argsort(-refined[:, 0], kind="stable")[:max(opts.max_hits, opts.tmalign)]
        scored = []
        for i in order:
            k, t = pairs[i]
            hit = self._hit(query, k, t, raw[i], "refined")
            hit["evalue"] = self._evalue(raw[i], hit["query_length"], hit["target_length"], EVALUE_3DI_LAMBDA,
                                         EVALUE_3DI_LOG_K)
            tm, tm_t, rmsd, aligned, identical = refined[i, :5]
            hit.update(tm_score=float(tm), tm_score_target=float(tm_t), rmsd=float(rmsd), aligned_length=int(aligned),
                       identity=float(identical / max(aligned, 1)), rotation=refined[i, 5:14].reshape(3, 3).tolist(),
                       translation=refined[i, 14:17].tolist())
            scored.append(hit)
        self._tm_align(query, scored[:opts.tmalign])
        scored.sort(key=lambda h: -h["tm_score"])
        return [h for h in scored if h["tm_score"] >= opts.min_tm][:opts.max_hits]

    def _evalue(self, score: float, query_length: int, target_length: int, lam: float, log_k: float) -> float:
        from foldatlas.atlas.evalues import evalue

        return float(f"{float(evalue(score, query_length, target_length, self.chains, lam, log_k)):.3g}")

    def _tm_align(self, query: QueryChain, top: list[dict]) -> None:
        """TM-align the query with each hit's chain (in the worker processes, if any); the hits updated."""
        ca, seq = query.trace.ca, query.trace.sequence
        jobs = [(ca, self.shards[h["shard"]].target_ca(h["target_index"]), seq,
                 self.shards[h["shard"]].target_sequence(h["target_index"])) for h in top]
        pool = self._tm_pool() if len(jobs) > 1 else None
        results = pool.map(_tm_align, jobs, chunksize=max(1, len(jobs) // (4 * self.options.workers))) if pool \
            else map(_tm_align, jobs)
        for hit, (tm, tm_t, rmsd, aligned, identity, u, t) in zip(top, results):
            # TM-align moves chain 1 (the query) onto chain 2: x_t = u x_q + t; inverted here
            hit.update(tm_score=tm, tm_score_target=tm_t, rmsd=rmsd, aligned_length=aligned, identity=identity,
                       method="tmalign", rotation=u.T.tolist(), translation=(-u.T @ t).tolist())

    def _hit(self, query: QueryChain, k: int, t: int, score: float, method: str) -> dict:
        """A hit's fields that do not depend on how it is scored (no E-value yet)."""
        return {"shard": k, "target_index": t, "query": query.name, "chain": str(self.shards[k].target_chain[t]),
                "query_length": len(query.trace.ca), "target_length": int(self.lengths[k][t]),
                "prefilter_score": None if np.isnan(score) else round(score, 2), "method": method, "evalue": None}

    def _approx(self, query: QueryChain, k: int, t: int, score: float, res,
                opts: StructureSearchOptions) -> dict:
        shard = self.shards[k]
        target_ca = shard.target_ca(t)
        hit = self._hit(query, k, t, score, "alignment")
        if opts.mode == "3diaa" and not opts.reverse and not np.isnan(score):
            hit["evalue"] = self._evalue(score, len(query.trace.ca), len(target_ca), EVALUE_LAMBDA, EVALUE_LOG_K)
        if res is None:  # exhaustive: TM-align only
            hit.update(tm_score=0.0, tm_score_target=0.0, rmsd=0.0, aligned_length=0, identity=0.0,
                       rotation=np.eye(3).tolist(), translation=[0.0, 0.0, 0.0])
            return hit
        qi, ti = _path(res.alignment, res.query_start, res.target_start)
        tm, tm_t, rmsd, aligned, rot, tr = alignment_tm_score(query.trace.ca, target_ca, qi, ti)
        seq_t = shard.target_sequence(t)
        ident = np.mean([query.trace.sequence[i] == seq_t[j] for i, j in zip(qi, ti)]) if len(qi) else 0.0
        hit.update(tm_score=tm, tm_score_target=tm_t, rmsd=rmsd, aligned_length=aligned, identity=float(ident),
                   rotation=rot.tolist(), translation=tr.tolist())
        return hit


def query_chains(source: str | Path, atlas=None, chains: str | None = None) -> list[QueryChain]:
    """Query chains from a structure file (PDB/mmCIF, gzipped too) or, failing that, an atlas entry ID.

    Raises
    ------
    InvalidFileError
        If a path-like source is not a readable structure, or a requested chain is absent.
    UnknownEntryError
        If the source is neither a file nor an entry of the atlas.
    """
    atoms, name = structure_of(source, atlas)
    return chains_of(atoms, name, chains, label=str(source))


def structure_of(source: str | Path, atlas=None):
    """The atoms and a name of a structure file (PDB/mmCIF, gzipped too) or, failing that, an atlas entry ID.

    Returns
    -------
    atoms : biotite.structure.AtomArray
    name : str
        The file name without its suffixes, or the entry ID.

    Raises
    ------
    InvalidFileError
        If a path-like source is not a readable structure.
    UnknownEntryError
        If the source is neither a file nor an entry of the atlas.
    """
    from foldatlas.atlas import codec
    from foldatlas.errors import InvalidFileError
    from foldatlas.files import is_existing_file
    from foldatlas.structure.io import read_structure

    path = Path(source)
    if is_existing_file(path):
        return read_structure(path), path.name.split(".")[0]
    if atlas is not None and not any(c in str(source) for c in "/\\") and not str(source).lower().endswith(
            (".pdb", ".cif", ".gz", ".ent", ".mmcif")):
        entry = atlas.get(str(source), pae=False, embedding=False)
        return codec.decode_structure(entry.structure_blob), entry.id
    raise InvalidFileError(f"{source}: no such file")


def chains_of(atoms, name: str, chains: str | None = None, label: str | None = None) -> list[QueryChain]:
    """Query chains of a biotite ``AtomArray`` (one per protein chain, or the chains named, comma-separated).

    Raises
    ------
    InvalidFileError
        If a requested chain is absent.
    """
    from foldatlas.structure.io import select_chains

    atoms = select_chains(atoms, chains, label=label or name)
    traces = chain_traces(atoms)
    return [QueryChain(name if len(traces) == 1 else f"{name}_{t.chain_id}", t) for t in traces]


def superposed_chain(atlas, hit: StructureHit):
    """The hit's chain from the atlas, as a biotite ``AtomArray`` superposed onto the query."""
    from foldatlas.atlas import codec
    from foldatlas.structure.io import select_chains

    atoms = select_chains(codec.decode_structure(atlas.get(hit.target, pae=False, embedding=False).structure_blob),
                          hit.chain)
    atoms.coord = (atoms.coord.astype(np.float64) @ np.asarray(hit.rotation).T + np.asarray(hit.translation)
                   ).astype(np.float32)
    return atoms


_KEPT: dict[tuple, StructureSearcher] = {}
_KEPT_LOCK = threading.Lock()


def _kept_searcher(shards: list[StructureShard], options: StructureSearchOptions) -> StructureSearcher:
    """The searcher of these shards kept from an earlier call, or a new one that replaces it (held by a
    long-running caller: its pyopal databases and TM-align processes are built once per index state)."""
    key = (tuple((str(s.path), s.first, s.last) for s in shards), options.mode, options.threads, options.workers)
    searcher = _KEPT.get(key)
    if searcher is None:
        for old in _KEPT.values():
            old.close()
        _KEPT.clear()
        searcher = _KEPT[key] = StructureSearcher(shards, options)
    return searcher


def search_structures(atlas, queries: list[QueryChain], options: StructureSearchOptions = StructureSearchOptions(),
                      keep: bool = False) -> list[list[StructureHit]]:
    """Search an atlas with query chains.

    Parameters
    ----------
    atlas : foldatlas.atlas.Atlas
    queries : list of QueryChain
        From :func:`query_chains`.
    options : StructureSearchOptions
    keep : bool
        Keep the searcher (its prefilter databases and TM-align processes) for the next call on the same index,
        as a server does: at 100,000 chains building it costs seconds, a query less.

    Returns
    -------
    list of list of StructureHit
        For each query, its hits: the TM-aligned ones first, by TM-score (by query), then the other candidates in
        prefilter order.

    Raises
    ------
    InvalidOptionError
        If a read-only atlas' structure index does not cover all its entries (it cannot be updated).
    """
    if not atlas.readonly:
        update_structure_index(atlas)
    shards = load_structure_shards(atlas.folder)
    require_current(atlas, shards, "structure")
    if keep:
        with _KEPT_LOCK:
            searcher = _kept_searcher(shards, options)
            shards = searcher.shards
            raw = [searcher.search(q, options) for q in queries]
    else:
        searcher = StructureSearcher(shards, options)
        try:
            raw = [searcher.search(q) for q in queries]
        finally:
            searcher.close()
    rowids = sorted({int(shards[h["shard"]].target_row[h["target_index"]]) for hits in raw for h in hits})
    ids = atlas.ids_of(rowids)
    out = []
    for hits in raw:
        rows = []
        for h in hits:
            shard, t = shards[h.pop("shard")], h.pop("target_index")
            rowid = int(shard.target_row[t])
            # The index holds each chain about its centre c: x_query = R (x - c) + t0 = R x + (t0 - R c).
            rot = np.asarray(h["rotation"])
            h["translation"] = (np.asarray(h["translation"]) - rot @ shard.centre[t]).tolist()
            if rowid in ids:
                rows.append(StructureHit(target=ids[rowid], **{k: (round(v, 4) if isinstance(v, float) else v)
                                                               for k, v in h.items()}))
        out.append(rows)
    return out
