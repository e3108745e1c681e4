"""Clustering of an atlas by sequence or by structure, as MMseqs2's Linclust and Foldseek's cluster do.

1. **Candidates in linear time** (Linclust, Steinegger & Soeding 2018): every entry's k-mers (sequence: a 13-letter
   reduced amino-acid alphabet, k = 10; structure: 3Di states, k = 6, and the sequence k-mers too) are hashed and
   the ``kmers_per_entry`` with the lowest hashes kept. Entries sharing a kept k-mer form a group; the longest entry
   of a group is its centre and every other one becomes a candidate member of it, with the diagonal of the shared
   k-mer (:mod:`foldatlas.atlas.linclust`). Memory and time grow with the number of entries, not its square.
2. **Verification**: sequence candidates first by an ungapped alignment on the shared diagonal (identity and
   coverage of the overlap); those it rejects, and whose lengths still allow the coverage, by a Smith-Waterman
   alignment (pyopal, BLOSUM62, gaps 11/1 as MMseqs2's). Identity is identical pairs over alignment columns
   (MMseqs2's ``--seq-id-mode 0``); coverage is of both sequences (``--cov-mode 0``). Structure candidates by a 3Di
   Smith-Waterman alignment and the TM-score of the C-alphas it pairs (the lower of the two normalisations).
3. **Greedy set cover by length**: entries in order of decreasing length (then row id); an entry no cluster holds
   yet becomes a representative and takes every unassigned entry with a verified edge to it (MMseqs2's
   ``--cluster-mode 2``, CD-HIT's order).

A later run clusters only the entries added since (``info['last_rowid']``): they first join an existing cluster
whose representative they share a kept k-mer with and pass the thresholds against, and the rest are clustered
among themselves. Existing representatives stay (as MMseqs2's ``clusterupdate``), even where a new, longer entry
would have been chosen in a run from scratch.

Multi-chain entries are compared as their chains in order (a k-mer never spans two chains).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import numpy as np

from foldatlas.atlas.linclust import lowest_kmers, separated, star_edges, unique_pairs
from foldatlas.errors import InvalidOptionError

__all__ = ["ClusterOptions", "cluster_atlas", "cluster_sequences", "CLUSTER_BY", "cluster_groups"]

CLUSTER_BY = ("sequence", "structure")
_GROUPS = ("LM", "IV", "FY", "W", "C", "A", "G", "ST", "P", "EQ", "DN", "KR", "H")  # 13 letters, as MMseqs2's
_NO_LETTER = 255
_REDUCED = np.full(256, _NO_LETTER, np.uint8)
for _g, _letters in enumerate(_GROUPS):
    _REDUCED[np.frombuffer(_letters.encode(), np.uint8)] = _g
SEQ_K, THREEDI_K = 10, 6
_GAP_OPEN, _GAP_EXTEND = 11, 1  # BLOSUM62 gap costs of MMseqs2
_PAIRS_PER_CHUNK = 4_000_000  # residue comparisons per vectorised block of the ungapped check


@dataclass(frozen=True)
class ClusterOptions:
    """How to cluster.

    Attributes
    ----------
    by : {"sequence", "structure"}
    min_identity : float
        Sequence: identical pairs over alignment columns at least this (0-1).
    coverage : float
        Aligned fraction of both entries at least this (0-1).
    min_tm : float
        Structure: TM-score at least this (0-1).
    min_plddt, min_ptm : float, optional
        Leave out entries whose mean pLDDT (0-100) or pTM (0-1) is lower (entries without one are kept), as the
        ESM Atlas' high-confidence clusters did.
    kmers_per_entry : int
        k-mers kept per entry (Linclust's ``--kmer-per-seq``, 21 there): more finds more distant members, slower.
    threads : int, optional
        Alignment threads (default: the CPUs available).
    """

    by: str = "sequence"
    min_identity: float = 0.3
    coverage: float = 0.8
    min_tm: float = 0.5
    min_plddt: float | None = None
    min_ptm: float | None = None
    kmers_per_entry: int = 21
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.by not in CLUSTER_BY:
            raise InvalidOptionError(f"--by must be one of {', '.join(CLUSTER_BY)}, not {self.by!r}")
        for name in ("min_identity", "coverage", "min_tm", "min_ptm"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise InvalidOptionError(f"--{name.replace('_', '-')} must be between 0 and 1, not {value}")
        if self.min_plddt is not None and not 0.0 <= self.min_plddt <= 100.0:
            raise InvalidOptionError(f"--min-plddt must be between 0 and 100, not {self.min_plddt}")
        if not 1 <= self.kmers_per_entry <= 1000:
            raise InvalidOptionError(f"--kmers-per-entry must be 1-1000, not {self.kmers_per_entry}")
        if self.threads is not None and self.threads < 1:
            raise InvalidOptionError(f"--threads must be at least 1, not {self.threads}")

    @property
    def name(self) -> str:
        """The clustering's name in the atlas, from its thresholds (``sequence-id0.30-cov0.80``)."""
        head = f"sequence-id{self.min_identity:.2f}" if self.by == "sequence" else f"structure-tm{self.min_tm:.2f}"
        name = f"{head}-cov{self.coverage:.2f}"
        if self.min_plddt is not None:
            name += f"-plddt{self.min_plddt:g}"
        if self.min_ptm is not None:
            name += f"-ptm{self.min_ptm:g}"
        return name


# -- verification ---------------------------------------------------------------------------------------------

def _ungapped(residues: np.ndarray, offsets: np.ndarray, member: np.ndarray, centre: np.ndarray,
              diagonal: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Identity and coverage (of member, of centre) of the ungapped overlap on each pair's diagonal."""
    la, lb = np.diff(offsets)[member], np.diff(offsets)[centre]
    a0 = np.maximum(0, diagonal)
    a1 = np.minimum(la, lb + diagonal)
    overlap = np.maximum(a1 - a0, 1)
    identity = np.zeros(len(member))
    bounds = np.r_[0, np.cumsum(overlap)]
    start = 0
    while start < len(member):
        stop = int(np.searchsorted(bounds, bounds[start] + _PAIRS_PER_CHUNK, side="right")) - 1
        stop = max(stop, start + 1)
        ov = overlap[start:stop]
        inner = np.arange(int(ov.sum())) - np.repeat(np.r_[0, np.cumsum(ov)[:-1]], ov)
        ia = np.repeat(offsets[member[start:stop]] + a0[start:stop], ov) + inner
        ib = np.repeat(offsets[centre[start:stop]] + a0[start:stop] - diagonal[start:stop], ov) + inner
        same = residues[ia] == residues[ib]
        identity[start:stop] = np.add.reduceat(same, np.r_[0, np.cumsum(ov)[:-1]]) / ov
        start = stop
    return identity, overlap / la, overlap / lb


def _by_centre(member: np.ndarray, centre: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``(centre, indices of its pairs)`` for every centre."""
    order = np.argsort(centre, kind="stable")
    starts = np.flatnonzero(np.r_[True, centre[order][1:] != centre[order][:-1]]) if len(order) else []
    ends = np.r_[starts[1:], len(order)] if len(order) else []
    return [(int(centre[order[s]]), order[s:e]) for s, e in zip(starts, ends)]


def _aligned(texts: list[str], member: np.ndarray, centre: np.ndarray, threads: int, scoring: dict,
             measure) -> np.ndarray:
    """``measure(centre, member, pyopal result)`` of the full Smith-Waterman alignment of every pair, the centre as
    the query and its members as one database (pyopal), centres spread over ``threads``."""
    import pyopal

    out = np.zeros(len(member))

    def run(job: tuple[int, np.ndarray]) -> None:
        c, idx = job
        results = pyopal.align(texts[c], [texts[m] for m in member[idx]], mode="full", threads=1, ordered=True,
                               **scoring)
        for i, res in zip(idx, results):
            out[i] = measure(c, int(member[i]), res)

    jobs = _by_centre(member, centre)
    if threads > 1 and len(jobs) > 1:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, jobs, chunksize=64))
    else:
        for job in jobs:
            run(job)
    return out


def _sequence_accept(data: dict, member: np.ndarray, centre: np.ndarray, diagonal: np.ndarray,
                     opts: ClusterOptions, threads: int) -> np.ndarray:
    lengths = np.diff(data["offsets"])
    identity, cov_m, cov_c = _ungapped(data["residues"], data["offsets"], member, centre, diagonal)
    accept = (identity >= opts.min_identity) & (cov_m >= opts.coverage) & (cov_c >= opts.coverage)
    ratio = lengths[member] / lengths[centre]
    retry = np.flatnonzero(~accept & (ratio >= opts.coverage))
    if len(retry) == 0:
        return accept

    def measure(c: int, m: int, res) -> float:
        ops = res.alignment
        cov_c = (res.query_end - res.query_start + 1) / len(texts[c])
        cov_m = (res.target_end - res.target_start + 1) / len(texts[m])
        if min(cov_c, cov_m) < opts.coverage:
            return 0.0
        return ops.count("M") / max(len(ops), 1)

    texts = data["texts"]
    ident = _aligned(texts, member[retry], centre[retry], threads,
                     {"gap_open": _GAP_OPEN, "gap_extend": _GAP_EXTEND}, measure)
    accept[retry[ident >= max(opts.min_identity, 1e-9)]] = True
    data["aligned_pairs"] = data.get("aligned_pairs", 0) + len(retry)
    return accept


def _structure_accept(data: dict, member: np.ndarray, centre: np.ndarray, opts: ClusterOptions,
                      threads: int) -> np.ndarray:
    from scoring_matrices import ScoringMatrix

    from foldatlas.atlas.structsearch import GAP_EXTEND, GAP_OPEN, THREEDI_LETTERS, _path, alignment_tm_score
    from foldatlas.structure.threedi import matrix_3di

    lengths = np.diff(data["offsets"])
    possible = np.flatnonzero(lengths[member] / lengths[centre] >= opts.coverage)
    accept = np.zeros(len(member), bool)
    ca_of = data["ca_of"]

    def measure(c: int, m: int, res) -> float:
        cov_c = (res.query_end - res.query_start + 1) / lengths[c]
        cov_m = (res.target_end - res.target_start + 1) / lengths[m]
        if min(cov_c, cov_m) < opts.coverage:
            return 0.0
        qi, ti = _path(res.alignment, res.query_start, res.target_start)
        tm, tm_t, *_ = alignment_tm_score(ca_of(c), ca_of(m), qi, ti)
        return min(tm, tm_t)

    matrix = ScoringMatrix(matrix_3di().astype(int).tolist(), alphabet=THREEDI_LETTERS, name="3Di")
    tm = _aligned(data["texts3di"], member[possible], centre[possible], threads,
                  {"scoring_matrix": matrix, "gap_open": GAP_OPEN, "gap_extend": GAP_EXTEND}, measure)
    accept[possible[tm >= opts.min_tm]] = True
    data["aligned_pairs"] = data.get("aligned_pairs", 0) + len(possible)
    return accept


def cluster_groups(order: np.ndarray, member: np.ndarray, centre: np.ndarray, n: int,
                   assigned: np.ndarray | None = None) -> np.ndarray:
    """Greedy set cover: entries in ``order``; an unassigned one becomes a representative and takes its
    unassigned neighbours (edges ``member``-``centre``, either way). Returns each entry's representative index
    (``assigned`` entries, >= 0, are kept and never become representatives)."""
    rep = np.full(n, -1, np.int64) if assigned is None else assigned.copy()
    a = np.r_[member, centre]
    b = np.r_[centre, member]
    by = np.argsort(a, kind="stable")
    neighbours = b[by]
    ptr = np.searchsorted(a[by], np.arange(n + 1))
    for v in order.tolist():
        if rep[v] >= 0:
            continue
        rep[v] = v
        nb = neighbours[ptr[v]:ptr[v + 1]]
        if len(nb):
            rep[nb[rep[nb] < 0]] = v
    return rep


# -- the atlas' entries ---------------------------------------------------------------------------------------

def _eligible(atlas, opts: ClusterOptions) -> np.ndarray:
    """Row ids of the entries to cluster (pLDDT and pTM filters applied), ascending."""
    rows = []
    for meta in atlas.iter_metadata(("rowid", "mean_plddt", "ptm")):
        if opts.min_plddt is not None and meta["mean_plddt"] is not None and meta["mean_plddt"] < opts.min_plddt:
            continue
        if opts.min_ptm is not None and meta["ptm"] is not None and meta["ptm"] < opts.min_ptm:
            continue
        rows.append(meta["rowid"])
    return np.asarray(rows, np.int64)


def _sequence_data(atlas, rows: np.ndarray) -> dict:
    """Entries' sequences: ``texts`` (str), ``residues`` (uint8, chains joined by ':'), ``offsets`` per entry,
    and the k-mer source (13-letter reduced alphabet, one unit per entry)."""
    wanted = set(rows.tolist())
    return _texts_data([seq.upper() for rowid, seq in atlas.iter_sequences() if rowid in wanted])


def _texts_data(texts: list[str]) -> dict:
    residues = np.frombuffer("".join(texts).encode("ascii", "replace"), np.uint8)
    offsets = np.r_[0, np.cumsum([len(t) for t in texts])].astype(np.int64)
    units = np.arange(len(texts), dtype=np.int64)
    letters = _REDUCED[np.frombuffer(("\0".join(texts) + "\0").encode("ascii", "replace"), np.uint8)]
    unit_offsets = offsets + np.arange(len(offsets))  # as separated(_REDUCED[residues], offsets, _NO_LETTER)
    return {"texts": texts, "residues": residues, "offsets": offsets,
            "sources": [(letters, unit_offsets, units, np.zeros(len(texts), np.int64), len(_GROUPS), SEQ_K, units)]}


def _structure_data(atlas, rows: np.ndarray) -> dict:
    """Entries' chains from the structure index: 3Di text, C-alphas (on demand), per-entry offsets, and two k-mer
    sources over chains (3Di states; reduced amino acids)."""
    from foldatlas.atlas.structindex import load_structure_shards, update_structure_index
    from foldatlas.atlas.structsearch import THREEDI_LETTERS

    if not atlas.readonly:
        update_structure_index(atlas)
    shards = load_structure_shards(atlas.folder)
    index_of = {r: i for i, r in enumerate(rows.tolist())}
    chain_rows = np.concatenate([s.target_row for s in shards]) if shards else np.zeros(0, np.int64)
    chain_entry = np.array([index_of.get(r, -1) for r in chain_rows.tolist()], np.int64)
    states = np.concatenate([s.states3di for s in shards]) if shards else np.zeros(0, np.uint8)
    residues = np.concatenate([s.residues for s in shards]) if shards else np.zeros(0, np.uint8)
    chain_len = np.concatenate([np.diff(s.offsets) for s in shards]) if shards else np.zeros(0, np.int64)
    chain_off = np.r_[0, np.cumsum(chain_len)].astype(np.int64)
    chain_ref = [(s, t) for s in shards for t in range(s.size)]
    kept = np.flatnonzero(chain_entry >= 0)
    lengths = np.bincount(chain_entry[kept], weights=chain_len[kept], minlength=len(rows)).astype(np.int64)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    run_start = np.flatnonzero(np.r_[True, chain_entry[kept][1:] != chain_entry[kept][:-1]]) if len(kept) else []
    run_len = np.diff(np.r_[run_start, len(kept)]).astype(np.int64)
    shift = np.zeros(len(chain_len), np.int64)  # a chain's first residue within its entry
    shift[kept] = chain_off[kept] - np.repeat(chain_off[kept[run_start]] if len(kept) else [], run_len)
    first_of = np.zeros(len(rows), np.int64)  # entry -> its first chain's place in ``kept``, and its chains
    count_of = np.zeros(len(rows), np.int64)
    if len(kept):
        first_of[chain_entry[kept[run_start]]] = run_start
        count_of[chain_entry[kept[run_start]]] = run_len

    def chains_of(i: int) -> np.ndarray:
        return kept[first_of[i]:first_of[i] + count_of[i]]

    table = np.frombuffer(THREEDI_LETTERS.encode(), np.uint8)
    text_cache: dict[int, str] = {}

    def text3di(i: int) -> str:
        if i not in text_cache:
            parts = [states[chain_off[c]:chain_off[c + 1]] for c in chains_of(i)]
            text_cache[i] = table[np.concatenate(parts) if parts else np.zeros(0, np.uint8)].tobytes().decode()
        return text_cache[i]

    def ca(i: int) -> np.ndarray:
        parts = [chain_ref[c][0].target_ca(chain_ref[c][1]) + chain_ref[c][0].centre[chain_ref[c][1]]
                 for c in chains_of(i)]
        return np.concatenate(parts) if parts else np.zeros((0, 3))

    units = kept
    entry_of_unit = np.where(chain_entry >= 0, chain_entry, 0)
    return {"texts3di": _Lazy(text3di), "ca_of": ca, "offsets": offsets,
            "sources": [(*separated(states, chain_off, 20), units, shift, 20, THREEDI_K, entry_of_unit),
                        (*separated(_REDUCED[residues], chain_off, _NO_LETTER), units, shift, len(_GROUPS), SEQ_K,
                         entry_of_unit)]}


class _Lazy:
    """``obj[i]`` computed on first use."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def __getitem__(self, i: int) -> str:
        return self.fn(int(i))


# -- the run --------------------------------------------------------------------------------------------------

def _candidates(data: dict, tables: list, can_centre: np.ndarray, can_join: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linclust edges of every k-mer source, merged (a pair found twice keeps its first diagonal)."""
    lengths = np.diff(data["offsets"])
    parts = [star_edges(code, entry, pos, lengths, can_centre, can_join) for code, entry, pos in tables]
    return unique_pairs(*(np.concatenate(x) for x in zip(*parts)))


def _kmer_tables(data: dict, entries: np.ndarray, m: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per k-mer source, the kept k-mers of the given entries as ``(code, entry, position in the entry)``."""
    wanted = np.zeros(len(data["offsets"]) - 1, bool)
    wanted[entries] = True
    tables = []
    for letters, unit_offsets, units, shift, alphabet, k, unit_entry in data["sources"]:
        units = units[wanted[unit_entry[units]]]
        code, unit, pos = lowest_kmers(letters, unit_offsets, alphabet, k, m, units)
        tables.append((code, unit_entry[unit], pos + shift[unit]))
    return tables


def _verify(data: dict, member: np.ndarray, centre: np.ndarray, diagonal: np.ndarray, opts: ClusterOptions,
            threads: int) -> tuple[np.ndarray, np.ndarray]:
    if opts.by == "sequence":
        ok = _sequence_accept(data, member, centre, diagonal, opts, threads)
    else:
        ok = _structure_accept(data, member, centre, opts, threads)
    return member[ok], centre[ok]


def _length_order(lengths: np.ndarray, among: np.ndarray) -> np.ndarray:
    """``among`` by decreasing length, then increasing index."""
    return among[np.lexsort((among, -lengths[among]))]


def _cluster(data: dict, opts: ClusterOptions, threads: int, rep: np.ndarray | None = None,
             new: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Each entry's representative index, and how many new entries joined an existing cluster. With ``rep``
    (existing assignments, -1 for none) and ``new`` (mask), only the new entries are placed."""
    lengths = np.diff(data["offsets"])
    n = len(lengths)
    joined = 0
    if rep is None:
        rep, remaining = np.full(n, -1, np.int64), np.ones(n, bool)
        tables = _kmer_tables(data, np.arange(n), opts.kmers_per_entry)
    elif not new.any():
        return rep, 0
    else:
        is_rep = (rep == np.arange(n)) & ~new
        tables = _kmer_tables(data, np.flatnonzero(is_rep | new), opts.kmers_per_entry)
        member, centre = _verify(data, *_candidates(data, tables, is_rep, new), opts, threads)
        if len(member):  # each new entry joins the longest representative it passes against
            order = np.lexsort((centre, -lengths[centre], member))
            first = np.r_[True, member[order][1:] != member[order][:-1]]
            rep = rep.copy()
            rep[member[order][first]] = centre[order][first]
            joined = int(first.sum())
        remaining = new & (rep < 0)
    member, centre = _verify(data, *_candidates(data, tables, remaining, remaining), opts, threads)
    return cluster_groups(_length_order(lengths, np.flatnonzero(remaining)), member, centre, n, rep), joined


def cluster_sequences(sequences: list[str], options: ClusterOptions = ClusterOptions(),
                      assigned: np.ndarray | None = None) -> np.ndarray:
    """Cluster sequences (no atlas): each one's representative's index.

    Parameters
    ----------
    sequences : list of str
        One-letter codes (chains joined by ``:``).
    options : ClusterOptions
        With ``by="sequence"``.
    assigned : ndarray of int, optional
        The representatives of the first ``len(assigned)`` sequences from an earlier run: only the rest are
        placed (joining those clusters or forming new ones), as :func:`cluster_atlas` does on its next run.

    Returns
    -------
    ndarray of int64, shape (N,)
    """
    if options.by != "sequence":
        raise InvalidOptionError("cluster_sequences clusters by sequence; structures need an atlas")
    threads = options.threads or len(os.sched_getaffinity(0))
    data = _texts_data([s.upper() for s in sequences])
    if assigned is None:
        return _cluster(data, options, threads)[0]
    rep = np.full(len(sequences), -1, np.int64)
    rep[:len(assigned)] = assigned
    new = rep < 0
    return _cluster(data, options, threads, rep, new)[0]


def cluster_atlas(atlas, options: ClusterOptions = ClusterOptions()) -> dict:
    """Cluster an atlas' entries (or, when the clustering exists, the entries added since) and store the result.

    Parameters
    ----------
    atlas : foldatlas.atlas.store.Atlas
        Opened writable.
    options : ClusterOptions

    Returns
    -------
    dict
        The clustering's ``info`` as stored (``name``, thresholds, ``entries``, ``clusters``, ``singletons``,
        ``largest``, ``new_entries``, ``joined_existing``, ``seconds``, ...).
    """
    from foldatlas.errors import AtlasError

    if atlas.readonly:
        raise AtlasError(f"the atlas {atlas.folder} is open read-only: clustering writes to it")
    start = time.perf_counter()
    threads = options.threads or len(os.sched_getaffinity(0))
    name = options.name
    previous = atlas.clusterings().get(name)
    last_rowid = int(previous["last_rowid"]) if previous else 0
    rows = _eligible(atlas, options)
    n = len(rows)
    data = _sequence_data(atlas, rows) if options.by == "sequence" else _structure_data(atlas, rows)
    new = rows > last_rowid
    if previous:
        rep = np.full(n, -1, np.int64)
        old_members, old_reps = atlas.cluster_table(name)
        where = np.searchsorted(rows, old_members)
        inside = (where < n) & (rows[np.minimum(where, n - 1)] == old_members) if n else np.zeros(0, bool)
        rep_where = np.searchsorted(rows, old_reps[inside])
        rep[where[inside]] = np.where(rows[np.minimum(rep_where, n - 1)] == old_reps[inside], rep_where,
                                      where[inside])
        rep[~new & (rep < 0)] = np.flatnonzero(~new & (rep < 0))  # left out before: not reclustered
        rep, joined = _cluster(data, options, threads, rep, new)
    else:
        rep, joined = _cluster(data, options, threads)
    stored = np.flatnonzero(new) if previous else np.arange(n)
    sizes = np.bincount(rep, minlength=n) if n else np.zeros(0, np.int64)
    info = {"name": name, **{k: v for k, v in asdict(options).items() if k != "threads"},
            "last_rowid": int(rows[-1]) if n else last_rowid, "entries": int(n),
            "clusters": int((sizes > 0).sum()), "singletons": int((sizes == 1).sum()),
            "largest": int(sizes.max()) if n else 0, "new_entries": int(len(stored)),
            "joined_existing": joined, "aligned_pairs": int(data.get("aligned_pairs", 0)),
            "seconds": round(time.perf_counter() - start, 2),
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "runs": int(previous.get("runs", 1)) + 1 if previous else 1}
    atlas.write_clusters(name, rows[stored], rows[rep[stored]], info, replace=not previous)
    return info


def representatives_only(atlas, results: list[list], name: str, max_hits: int) -> list[list]:
    """Per query, the hits whose target represents its cluster in clustering ``name`` (as a search of the
    representatives alone would report them), at most ``max_hits``; hits are anything with a ``target`` ID."""
    out = []
    for hits in results:
        kept = []
        for hit in hits:
            rowid = atlas.resolve(hit.target)[0]
            if atlas.cluster_rep(name, rowid) == rowid:
                kept.append(hit)
                if len(kept) == max_hits:
                    break
        out.append(kept)
    return out
