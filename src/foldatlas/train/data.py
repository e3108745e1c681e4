"""The training data: extraction, deduplication and a homology-aware split.

Split rule (recorded in the manifest):

1. Structure chains (StructureDB) are clustered with MMseqs2 at 30% identity;
   whole clusters go to test, valid or train (seeded shuffle).
2. A held-out query set is formed: the test and valid chains, the evaluation
   domains (``../shared/eval/structure``) and a random sample of UniProt
   sequences kept aside for language-model validation.
3. Every training candidate (train chains and all other UniProt sequences) is
   searched with those queries (``mmseqs search``, E <= 1e-3); any candidate
   with an alignment of >= 30% identity to a held-out query is removed from
   every training set, the language model's included.

So no test chain, evaluation domain or held-out sequence has a homolog above
30% identity (as MMseqs2 finds them) in any training set.

Files written to the data folder:

* ``lm_train.fasta``, ``lm_valid.fasta``: language-model sequences;
* ``structures_{train,valid,test}.npz``: chains in the
  :mod:`foldatlas.train.promod3_dump` format;
* ``split.tsv``: every structure chain and its split and cluster;
* ``manifest.json``: sources and their checksums, counts, the rule, tools.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foldatlas.files import atomic_write_text, sha256_file
from foldatlas.seq.alphabet import RESTYPES_WITH_X
from foldatlas.train.sources import mmseqs_version, run_tool

__all__ = ["SplitOptions", "StructureSet", "build_dataset", "load_structures", "pack_structures", "ideal_cb",
           "training_windows",
           "read_fasta_pairs"]

_ALLOWED = frozenset(RESTYPES_WITH_X)


@dataclass(frozen=True)
class SplitOptions:
    """Parameters of the split (all recorded in the manifest)."""

    identity: float = 0.30
    evalue: float = 1e-3
    coverage: float = 0.5
    frac_test: float = 0.05
    frac_valid: float = 0.05
    lm_valid: int = 1000
    min_length: int = 30
    max_length: int = 2000
    max_x_fraction: float = 0.05
    seed: int = 0
    threads: int = 2


@dataclass
class StructureSet:
    """Structure chains in concatenated form (see :mod:`foldatlas.train.promod3_dump`)."""

    ids: np.ndarray
    offsets: np.ndarray
    sequence: str
    dssp: str
    coords: np.ndarray
    profile: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def chain(self, k: int) -> dict:
        """One chain's ``id``, ``sequence``, ``dssp``, ``coords`` and ``profile``."""
        a, b = int(self.offsets[k]), int(self.offsets[k + 1])
        return dict(id=str(self.ids[k]), sequence=self.sequence[a:b], dssp=self.dssp[a:b],
                    coords=self.coords[a:b], profile=self.profile[a:b])

    def subset(self, keep: list[int]) -> StructureSet:
        """The chains ``keep``, in that order."""
        spans = [(int(self.offsets[k]), int(self.offsets[k + 1])) for k in keep]
        idx = np.concatenate([np.arange(a, b) for a, b in spans]) if spans else np.zeros(0, dtype=np.int64)
        lengths = np.array([b - a for a, b in spans], dtype=np.int64)
        return StructureSet(ids=self.ids[keep] if keep else self.ids[:0],
                            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                            sequence="".join(self.sequence[a:b] for a, b in spans),
                            dssp="".join(self.dssp[a:b] for a, b in spans),
                            coords=self.coords[idx], profile=self.profile[idx])

    def save(self, path: Path) -> None:
        """Write atomically as compressed NPZ."""
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, ids=self.ids, offsets=self.offsets, sequence=np.array(self.sequence),
                            dssp=np.array(self.dssp), coords=self.coords, profile=self.profile)
        tmp.replace(path)


PACK_SCALE = 100  # packed coordinates: integer hundredths of an angstrom


def ideal_cb(n: np.ndarray, ca: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Virtual C-beta from N, CA, C (``[..., 3]``), with the constants of ProteinMPNN and trRosetta."""
    b, cc = ca - n, c - ca
    a = np.cross(b, cc)
    return -0.58273431 * a + 0.56802827 * b - 0.54067466 * cc + ca


def pack_structures(structures: StructureSet, path: str | Path) -> int:
    """Write ``structures`` compactly (for carrying a training set to another machine); return its bytes.

    Keeps ids, sequences, DSSP and the N, CA, C, O positions rounded to 0.01 A,
    stored as LZMA-compressed 16-bit steps between consecutive atoms of a chain
    (its first atom as an absolute 32-bit position). C-beta is dropped and
    rebuilt as :func:`ideal_cb` on reading, and the profiles are not kept
    (zeros on reading). About 13 bytes per residue, against 80 in the dump.

    Raises
    ------
    ValueError
        If two consecutive atoms of a chain are over 327 A apart.
    """
    import lzma

    q = np.round(np.asarray(structures.coords[:, :4], dtype=np.float64) * PACK_SCALE).astype(np.int64)
    flat = q.reshape(-1, 3)
    starts = structures.offsets[:-1] * 4
    steps = np.diff(flat, axis=0, prepend=flat[:1])
    steps[starts[starts < len(flat)]] = 0
    if np.abs(steps).max(initial=0) > 32767:
        raise ValueError("consecutive atoms over 327 A apart: cannot pack")
    first = flat[starts[starts < len(flat)]].astype(np.int32)
    blob = lzma.compress(steps.astype("<i2").tobytes(), preset=6)
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(tmp, ids=structures.ids, offsets=structures.offsets, sequence=np.array(structures.sequence),
                        dssp=np.array(structures.dssp), packed_first=first,
                        packed_steps=np.frombuffer(blob, np.uint8))
    tmp.replace(out)
    return out.stat().st_size


def training_windows(structures: StructureSet, window: int, max_chains: int | None = None, min_length: int = 40,
                     seed: int = 0) -> StructureSet:
    """One random window of at most ``window`` residues from each of (a seeded sample of) the chains.

    For a training set that must be small (:func:`pack_structures`): chains
    shorter than ``min_length`` are left out, as training leaves them out.
    """
    rng = np.random.default_rng(seed)
    lengths = np.diff(structures.offsets)
    pool = np.flatnonzero(lengths >= min_length)
    if max_chains is not None and max_chains < len(pool):
        pool = np.sort(rng.choice(pool, max_chains, replace=False))
    idx, new_lengths = [], []
    for k in pool:
        n = int(lengths[k])
        start = int(structures.offsets[k]) + (int(rng.integers(0, n - window + 1)) if n > window else 0)
        span = min(n, window)
        idx.append(np.arange(start, start + span))
        new_lengths.append(span)
    flat = np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(new_lengths)]).astype(np.int64)
    spans = [(int(a[0]), int(a[-1]) + 1) for a in idx]
    return StructureSet(ids=structures.ids[pool], offsets=offsets,
                        sequence="".join(structures.sequence[a:b] for a, b in spans),
                        dssp="".join(structures.dssp[a:b] for a, b in spans),
                        coords=structures.coords[flat], profile=structures.profile[flat])


def _unpack(d, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import lzma

    steps = np.frombuffer(lzma.decompress(d["packed_steps"].tobytes()), "<i2").reshape(-1, 3).astype(np.int64)
    starts = offsets[:-1] * 4
    starts = starts[starts < len(steps)]
    steps[starts] = d["packed_first"]
    flat = np.cumsum(steps, axis=0)
    # the cumulative sum runs across chains: take each chain's own start back out
    chain_of = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(steps))))
    base = flat[starts] - d["packed_first"]
    flat = flat - base[chain_of]
    bb = (flat.astype(np.float32) / PACK_SCALE).reshape(-1, 4, 3)
    coords = np.concatenate([bb, ideal_cb(bb[:, 0], bb[:, 1], bb[:, 2])[:, None]], axis=1).astype(np.float32)
    return coords, np.zeros((len(coords), 20), dtype=np.float16)


def load_structures(path: str | Path) -> StructureSet:
    """Read a structure NPZ written by the dump, by :func:`build_dataset` or by :func:`pack_structures`."""
    with np.load(path) as d:
        offsets = d["offsets"]
        if "packed_steps" in d.files:
            coords, profile = _unpack(d, offsets)
        else:
            coords, profile = d["coords"], d["profile"]
        return StructureSet(ids=d["ids"], offsets=offsets, sequence=str(d["sequence"]), dssp=str(d["dssp"]),
                            coords=coords, profile=profile)


def read_fasta_pairs(path: str | Path) -> list[tuple[str, str]]:
    """``(id, sequence)`` pairs of a FASTA file (first header word as id)."""
    pairs, name, parts = [], None, []
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if line.startswith(">"):
                if name is not None:
                    pairs.append((name, "".join(parts)))
                name, parts = line[1:].split()[0] if line[1:].strip() else f"seq{len(pairs)}", []
            elif line:
                parts.append(line)
    if name is not None:
        pairs.append((name, "".join(parts)))
    return pairs


def _write_fasta(path: Path, pairs) -> None:
    with open(path, "w") as fh:
        for name, seq in pairs:
            fh.write(f">{name}\n{seq}\n")


def _usable(seq: str, opts: SplitOptions) -> bool:
    return (opts.min_length <= len(seq) <= opts.max_length and set(seq) <= _ALLOWED
            and seq.count("X") <= opts.max_x_fraction * len(seq))


def _mmseqs(args: list[str], what: str) -> None:
    run_tool(["mmseqs", *args], f"mmseqs {what}")


def _cluster(pairs: list[tuple[str, str]], work: Path, opts: SplitOptions) -> dict[str, str]:
    fasta = work / "structures.fasta"
    _write_fasta(fasta, pairs)
    _mmseqs(["easy-cluster", str(fasta), str(work / "clu"), str(work / "tmp_clu"), "--min-seq-id", str(opts.identity),
             "-c", str(opts.coverage), "--cov-mode", "0", "-s", "7.5", "--threads", str(opts.threads), "-v", "1"],
            "easy-cluster")
    members = {}
    with open(work / "clu_cluster.tsv") as fh:
        for line in fh:
            rep, mem = line.split()
            members[mem] = rep
    return members


def _homologs(queries: list[tuple[str, str]], targets: list[tuple[str, str]], work: Path,
              opts: SplitOptions) -> list[tuple[str, str, float, float]]:
    qf, tf, out = work / "heldout.fasta", work / "candidates.fasta", work / "hits.m8"
    _write_fasta(qf, queries)
    _write_fasta(tf, targets)
    _mmseqs(["easy-search", str(qf), str(tf), str(out), str(work / "tmp_search"), "-e", str(opts.evalue),
             "--min-seq-id", str(opts.identity), "--threads", str(opts.threads), "-v", "1",
             "--format-output", "query,target,fident,evalue"], "easy-search")
    hits = []
    with open(out) as fh:
        for line in fh:
            q, t, ident, ev = line.split()
            hits.append((q, t, float(ident), float(ev)))
    return hits


def build_dataset(out_dir: str | Path, uniprot: list[tuple[str, str]], structures: StructureSet,
                  eval_domains: list[tuple[str, str]], sources: dict[str, str] | None = None,
                  options: SplitOptions | None = None, log=print) -> dict:
    """Deduplicate, split and write the training data.

    Parameters
    ----------
    out_dir : path
        The data folder (created).
    uniprot : list of (accession, sequence)
        Language-model sequences.
    structures : StructureSet
        Experimental chains with coordinates and profiles.
    eval_domains : list of (id, sequence)
        Evaluation sequences no training set may hold homologs of.
    sources : dict, optional
        Source file paths to checksum into the manifest.
    options : SplitOptions, optional
    log : callable
        Progress messages.

    Returns
    -------
    dict
        The manifest (also written to ``manifest.json``).
    """
    opts = options or SplitOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    rng = random.Random(opts.seed)
    counts: dict[str, int] = {"uniprot_records": len(uniprot), "structure_chains": len(structures)}

    # Structure chains: usable length and alphabet, one chain per distinct sequence.
    seen: set[str] = set()
    s_keep = []
    for k in range(len(structures)):
        a, b = int(structures.offsets[k]), int(structures.offsets[k + 1])
        seq = structures.sequence[a:b]
        if _usable(seq, opts) and seq not in seen:
            seen.add(seq)
            s_keep.append(k)
    counts["structure_chains_usable"] = len(s_keep)
    s_seq = {str(structures.ids[k]): structures.sequence[int(structures.offsets[k]):int(structures.offsets[k + 1])]
             for k in s_keep}
    s_index = {str(structures.ids[k]): k for k in s_keep}

    # UniProt: usable, exact duplicates (within UniProt and of structure chains) removed.
    u_pairs, u_seen = [], set(seen)
    bad = dup = 0
    for acc, seq in uniprot:
        seq = seq.upper()
        if not _usable(seq, opts):
            bad += 1
        elif seq in u_seen:
            dup += 1
        else:
            u_seen.add(seq)
            u_pairs.append((acc, seq))
    counts.update(uniprot_unusable=bad, uniprot_duplicates=dup, uniprot_unique=len(u_pairs))
    log(f"{len(s_keep)} structure chains, {len(u_pairs)} unique UniProt sequences")

    with tempfile.TemporaryDirectory(prefix="foldatlas-split-", dir=out) as tmp:
        work = Path(tmp)
        # 1. Clusters of structure chains -> test / valid / train.
        members = _cluster([(f"s|{i}", s) for i, s in s_seq.items()], work, opts)
        clusters: dict[str, list[str]] = {}
        for mem, rep in members.items():
            clusters.setdefault(rep, []).append(mem[2:])
        reps = sorted(clusters)
        rng.shuffle(reps)
        split_of, cluster_of = {}, {}
        n_total, n_test, n_valid = len(s_seq), 0, 0
        for rep in reps:
            ids = clusters[rep]
            if n_test < opts.frac_test * n_total:
                name, n_test = "test", n_test + len(ids)
            elif n_valid < opts.frac_valid * n_total:
                name, n_valid = "valid", n_valid + len(ids)
            else:
                name = "train"
            for i in ids:
                split_of[i], cluster_of[i] = name, rep[2:]
        counts["structure_clusters"] = len(clusters)
        log(f"{len(clusters)} clusters at {opts.identity:.0%} identity")

        # 2. Held-out queries; 3. remove their homologs from every training candidate.
        rng_u = random.Random(opts.seed + 1)
        lm_valid_idx = set(rng_u.sample(range(len(u_pairs)), min(opts.lm_valid, len(u_pairs) // 10)))
        lm_valid = [u_pairs[i] for i in sorted(lm_valid_idx)]
        queries = ([(f"s|{i}", s_seq[i]) for i in s_seq if split_of[i] != "train"]
                   + [(f"e|{i}", s) for i, s in eval_domains] + [(f"u|{a}", s) for a, s in lm_valid])
        candidates = ([(f"s|{i}", s_seq[i]) for i in s_seq if split_of[i] == "train"]
                      + [(f"u|{a}", s) for j, (a, s) in enumerate(u_pairs) if j not in lm_valid_idx])
        log(f"searching {len(candidates)} training candidates with {len(queries)} held-out queries")
        hits = _homologs(queries, candidates, work, opts)
    removed = {t for _, t, _, _ in hits}
    by_kind: dict[str, int] = {}
    for q, t, _, _ in hits:
        if t in removed:
            by_kind[q[0]] = by_kind.get(q[0], 0) + 1
    counts.update(homolog_hits=len(hits), removed_structure_chains=sum(t.startswith("s|") for t in removed),
                  removed_uniprot=sum(t.startswith("u|") for t in removed))
    for i in s_seq:
        if split_of[i] == "train" and f"s|{i}" in removed:
            split_of[i] = "removed"

    # Write the splits.
    for name in ("train", "valid", "test"):
        keep = [s_index[i] for i in s_seq if split_of[i] == name]
        structures.subset(keep).save(out / f"structures_{name}.npz")
        counts[f"structures_{name}"] = len(keep)
    lm_train = [(a, s) for j, (a, s) in enumerate(u_pairs) if j not in lm_valid_idx and f"u|{a}" not in removed]
    lm_train += [(i, s_seq[i]) for i in s_seq if split_of[i] == "train"]
    lm_train.sort(key=lambda p: p[0])
    _write_fasta(out / "lm_train.fasta", lm_train)
    _write_fasta(out / "lm_valid.fasta", lm_valid)
    counts.update(lm_train=len(lm_train), lm_train_residues=sum(len(s) for _, s in lm_train),
                  lm_valid=len(lm_valid), lm_valid_residues=sum(len(s) for _, s in lm_valid))
    atomic_write_text(out / "split.tsv", "id\tsplit\tcluster\n" + "".join(
        f"{i}\t{split_of[i]}\t{cluster_of[i]}\n" for i in sorted(s_seq)))

    manifest = {
        "format": 1,
        "split_rule": (f"structure chains clustered by MMseqs2 easy-cluster at {opts.identity:.0%} identity "
                       f"(coverage {opts.coverage}); whole clusters assigned to test ({opts.frac_test:.0%}), "
                       f"valid ({opts.frac_valid:.0%}) and train by a seeded shuffle; then every training "
                       f"candidate (train chains and UniProt sequences) with an MMseqs2 easy-search alignment of "
                       f">= {opts.identity:.0%} identity at E <= {opts.evalue:g} to any test or valid chain, "
                       f"evaluation domain or held-out UniProt sequence is removed from all training sets"),
        "options": opts.__dict__,
        "counts": counts,
        "sources": {k: {"path": v, "sha256": sha256_file(v)} for k, v in (sources or {}).items()},
        "eval_domains": len(eval_domains),
        "tools": {"mmseqs": mmseqs_version()},
        "files": {p.name: sha256_file(p) for p in sorted(out.iterdir())
                  if p.is_file() and p.name != "manifest.json"},
        "seconds": round(time.time() - started, 1),
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2))
    log(f"done: {counts['lm_train']} LM training sequences, structures train/valid/test "
        f"{counts['structures_train']}/{counts['structures_valid']}/{counts['structures_test']}")
    return manifest


def extract_training_data(out_dir: str | Path, eval_fasta: str | Path | None, options: SplitOptions | None = None,
                          install: bool = True, log=print) -> dict:
    """``foldatlas train data``: install, dump and split the Debian data sets.

    Parameters
    ----------
    out_dir : path
        Data folder; raw dumps go to ``out_dir/raw`` and are reused on reruns.
    eval_fasta : path, optional
        Sequences of the evaluation domains to keep out of training.
    options : SplitOptions, optional
    install : bool
        Install missing Debian packages (needs root).
    log : callable

    Returns
    -------
    dict
        The data manifest.
    """
    from foldatlas.train import sources as src

    if install:
        installed = src.ensure_debian_packages()
        if installed:
            log(f"installed {' '.join(installed)}")
    raw = Path(out_dir) / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    log("dumping UniProt sequences (metastudent-data)")
    dumps = src.dump_uniprot(raw)
    log("dumping the StructureDB (promod3-data)")
    sdb = src.dump_structure_db(raw / "structure_db.npz")
    evals = read_fasta_pairs(eval_fasta) if eval_fasta else []
    sources = {f"metastudent_{Path(db).parent.name}": db + ".psq" for db in src.METASTUDENT_DBS}
    sources["structure_db"] = src.STRUCTURE_DB
    if eval_fasta:
        sources["eval_domains"] = str(eval_fasta)
    return build_dataset(out_dir, src.read_uniprot_dump(dumps), load_structures(sdb), evals, sources=sources,
                         options=options, log=log)
