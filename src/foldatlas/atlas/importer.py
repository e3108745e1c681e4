"""Importing existing structure files (PDB / mmCIF, gzipped too) into an atlas.

Each file becomes one entry (all its protein chains, as a complex), or one entry per chain with
``split_chains``; the ID is the file name without its extensions (``_<chain>`` added per chain).
The first model is read, amino-acid residues with a Cα atom are kept, hydrogens dropped.

pLDDT: with ``plddt="auto"`` the B-factor column is read as pLDDT when the file says it comes from
a structure predictor (AlphaFold DB's titles and ModelCIF ``_ma_qa_metric`` records, ESMFold,
ColabFold, OmegaFold, foldatlas), and is ignored otherwise (experimental B-factors are not
confidences); ``"bfactor"`` always reads it, ``"none"`` never. Values on the 0-1 scale (as
transformers writes them) are scaled to 0-100. The per-residue pLDDT is the Cα atom's, as in
AlphaFold DB.

Inserts are grouped in transactions; a rerun skips files whose IDs are stored with the same
sequence, and bad files are recorded as failures with the reason while the import goes on.
"""

from __future__ import annotations

import gzip
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from foldatlas.atlas import codec
from foldatlas.atlas.entry import NewEntry
from foldatlas.atlas.store import Atlas
from foldatlas.errors import FoldatlasError, InvalidFileError, InvalidOptionError

__all__ = ["ImportOptions", "ImportResult", "import_structures", "find_structure_files", "read_entry_file"]

STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")
# Markers of predicted models in a file's header (PDB records before the atoms, or mmCIF categories).
# Markers of predicted models in a file's header (PDB records before the atoms, or mmCIF categories);
# the first that matches names the predictor.
_PREDICTORS = ((re.compile(r"foldatlas (prediction|atlas entry .*: predicted)|^_software\.name\s+foldatlas", re.M),
                "foldatlas"),
               (re.compile(r"alphafold", re.I), "AlphaFold"), (re.compile(r"^_ma_qa_metric", re.M), "ModelCIF model"),
               (re.compile(r"esmfold", re.I), "ESMFold"), (re.compile(r"colabfold", re.I), "ColabFold"),
               (re.compile(r"omegafold", re.I), "OmegaFold"), (re.compile(r"plddt", re.I), "predicted"))
_EXPERIMENTAL = re.compile(r"^EXPDTA\s+(.+)$|^_exptl\.method\s+(.+)$", re.MULTILINE)


@dataclass(frozen=True)
class ImportOptions:
    """Settings of an import.

    Attributes
    ----------
    plddt : {"auto", "bfactor", "none"}
        Whether B-factors are read as pLDDT (see the module docstring).
    split_chains : bool
        One entry per chain instead of one per file.
    chains : str or None
        Comma-separated chain IDs to keep (default: all).
    label : str or None
        What made the structures, stored as the entries' model (default: detected from the file,
        e.g. "AlphaFold" or "experimental (X-RAY DIFFRACTION)", else "unknown").
    batch_size : int
        Entries per transaction (and per embedding batch).
    workers : int
        Processes that read and encode files while the main process embeds and inserts (0: read in
        the main process). Workers are started with ``spawn``, so a script that sets this must
        guard its entry point with ``if __name__ == "__main__":``. The CLI uses half the CPUs for
        64 files or more, and gives the language model the other half (all of them without embeddings).
    """

    plddt: str = "auto"
    split_chains: bool = False
    chains: str | None = None
    label: str | None = None
    batch_size: int = 64
    workers: int = 0

    def __post_init__(self) -> None:
        if self.plddt not in ("auto", "bfactor", "none"):
            raise InvalidOptionError(f"--plddt must be auto, bfactor or none, not {self.plddt!r}")
        if self.batch_size < 1:
            raise InvalidOptionError("batch size must be >= 1")
        if self.workers < 0:
            raise InvalidOptionError("workers must be >= 0")


@dataclass
class ImportResult:
    """Counts of an import."""

    imported: int = 0
    skipped: int = 0
    failed: int = 0

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return self.failed == 0


def find_structure_files(paths: list[str | Path]) -> list[Path]:
    """Structure files named, or found (recursively, sorted) in the folders named.

    Raises
    ------
    InvalidFileError
        If a path does not exist, or nothing structure-like is found.
    """
    found: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            found.extend(sorted(f for f in p.rglob("*") if f.is_file() and _is_structure_name(f.name)))
        elif p.is_file():
            found.append(p)
        else:
            raise InvalidFileError(f"{p}: no such file or folder")
    if not found:
        raise InvalidFileError(f"no structure files (.pdb, .ent, .cif, .mmcif, gzipped or not) in "
                               f"{', '.join(str(p) for p in paths)}")
    return found


def _is_structure_name(name: str) -> bool:
    return name.lower().removesuffix(".gz").endswith(STRUCTURE_SUFFIXES)


def _entry_stem(path: Path) -> str:
    name = path.name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    for suffix in STRUCTURE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as e:
        raise InvalidFileError(f"{path}: cannot read as a text structure file ({e.__class__.__name__})") from e


def _origin(text: str) -> tuple[str | None, str]:
    """(predictor name or None, label) from a file's header text."""
    is_cif = "_atom_site." in text
    atom = text.find("\nATOM  ")
    # PDB: the records before the first atom; mmCIF: everything but the atom_site loop's rows.
    header = text if is_cif else text[:atom if atom >= 0 else 20000]
    if is_cif:
        header = "\n".join(line for line in text.splitlines() if not line.startswith(("ATOM", "HETATM")))
    for marker, name in _PREDICTORS:
        if marker.search(header):
            return name, name
    m = _EXPERIMENTAL.search(header[:200000])
    if m:
        method = (m.group(1) or m.group(2) or "").strip().strip("'\"")
        return None, f"experimental ({method})" if method else "experimental"
    return None, "unknown"


def _with_ca(atoms):
    """Atoms of the residues that have a Cα atom."""
    from foldatlas.structure.io import residue_keys

    keys = residue_keys(atoms)
    with_ca = np.unique(keys[atoms.atom_name == "CA"])
    if len(with_ca) == 0:
        return atoms[np.zeros(len(keys), dtype=bool)]
    keep = with_ca[np.minimum(np.searchsorted(with_ca, keys), len(with_ca) - 1)] == keys
    return atoms if keep.all() else atoms[keep]


def read_entry_file(path: Path, options: ImportOptions) -> list[tuple[str, object, np.ndarray | None, str, dict]]:
    """Read one structure file into ``(id, atoms, per-residue pLDDT or None, label, scores)`` per entry; ``scores``
    holds a ModelCIF file's global pTM and ipTM (``ptm``, ``iptm``) for a whole-file entry.

    Raises
    ------
    InvalidFileError
    """
    from foldatlas.structure.io import ca_atoms, read_structure, select_chains

    text = _read_text(path)
    predictor, label = _origin(text)
    atoms = read_structure(text=text, name=str(path))
    atoms = _with_ca(select_chains(atoms, options.chains, label=str(path)))
    use_plddt = options.plddt == "bfactor" or (options.plddt == "auto" and predictor is not None)
    # a ModelCIF file's per-residue pLDDT (its QA metrics, as AlphaFold DB writes them) rather than its B-factors
    qa, scores = _modelcif_plddt(text, atoms) if options.plddt != "none" and "_ma_qa_metric" in text else \
        (None, {})
    stem = _entry_stem(path)
    chain_ids = list(dict.fromkeys(atoms.chain_id.tolist()))
    groups = [(f"{stem}_{c}" if c else stem, atoms[atoms.chain_id == c]) for c in chain_ids] \
        if options.split_chains and len(chain_ids) > 1 else [(stem, atoms)]
    out = []
    for entry_id, part in groups:
        plddt = None
        if qa is not None:
            plddt = qa[np.isin(ca_atoms(atoms).chain_id, np.unique(part.chain_id))]
        elif use_plddt:
            plddt = np.asarray(ca_atoms(part).b_factor, dtype=np.float32)
            if plddt.size and float(plddt.max()) <= 1.0:
                plddt = plddt * 100.0  # the 0-1 scale transformers writes
                part = part.copy()
                part.b_factor = part.b_factor * 100.0
        out.append((entry_id, part, plddt, options.label or label, scores if len(groups) == 1 else {}))
    return out


def _modelcif_plddt(text: str, atoms) -> tuple[np.ndarray | None, dict]:
    """Per-residue pLDDT of ``atoms`` (in :func:`~foldatlas.structure.io.ca_atoms` order) from a ModelCIF file's
    local pLDDT QA metric (None when the file has none for every residue: the B-factor rule then applies), and its
    global pTM and ipTM."""
    import io

    from biotite.structure.io import pdbx

    from foldatlas.structure.io import ca_atoms
    from foldatlas.structure.modelcif import read_qa_metrics

    try:
        block = pdbx.CIFFile.read(io.StringIO(text)).block
        metrics = read_qa_metrics(block)
        site = block["atom_site"]
        names = site["label_atom_id"].as_array(str)
        label: dict = {}
        auth_asym = site["auth_asym_id" if "auth_asym_id" in site else "label_asym_id"].as_array(str)
        auth_seq = site["auth_seq_id" if "auth_seq_id" in site else "label_seq_id"].as_array(int)
        ins = site["pdbx_PDB_ins_code"].as_array(str, masked_value="") if "pdbx_PDB_ins_code" in site else \
            np.full(len(names), "")
        label_asym, label_seq = site["label_asym_id"].as_array(str), site["label_seq_id"].as_array(int)
        for k in np.flatnonzero(names == "CA"):
            label.setdefault((auth_asym[k], int(auth_seq[k]), ins[k]), (label_asym[k], int(label_seq[k])))
    except (KeyError, ValueError, IndexError):
        return None, {}
    if metrics is None:
        return None, {}
    scores = {k.lower(): v for k, v in metrics.global_metrics.items() if k.lower() in ("ptm", "iptm")}
    ca = ca_atoms(atoms)
    keys = [label.get((c, int(r), i)) for c, r, i in zip(ca.chain_id, ca.res_id, ca.ins_code)]
    if not metrics.local_plddt or any(k is None for k in keys):
        return None, scores
    return metrics.plddt_of([k[0] for k in keys], [k[1] for k in keys]), scores


def _read_encoded(path: Path, options: ImportOptions) -> tuple[Path, list[tuple] | str]:
    """Read and encode one file: ``(path, [(id, sequence, structure blob, pLDDT, label, scores), ...])``, or
    ``(path, error message)``. Runs in worker processes."""
    try:
        entries = read_entry_file(path, options)
    except FoldatlasError as e:
        return path, str(e)
    return path, [(entry_id, _sequence(atoms), codec.encode_structure(atoms), plddt, label, scores)
                  for entry_id, atoms, plddt, label, scores in entries]


def _read_all(files: list[Path], options: ImportOptions) -> Iterator[tuple[Path, list[tuple] | str]]:
    if options.workers == 0:
        yield from (_read_encoded(f, options) for f in files)
        return
    # 'spawn': the parent holds torch's OpenMP thread pool, which does not survive a fork.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(options.workers, mp_context=ctx) as pool:
        yield from pool.map(_read_encoded, files, [options] * len(files), chunksize=16)


@contextmanager
def _torch_threads(embedder, workers: int):
    """Leave the CPUs the reader processes use to them: fewer torch threads while they run."""
    if embedder is None or workers == 0:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) - workers))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _sequence(atoms) -> str:
    from foldatlas.atlas.structindex import chain_traces

    return ":".join(chain.sequence for chain in chain_traces(atoms, threedi=False))


class _Batch:
    """Entries read but not yet stored, the failures to record, and the counts, of one import."""

    def __init__(self, atlas: Atlas, embedder, result: ImportResult, log: Callable[[str], None]) -> None:
        self.atlas, self.embedder, self.result, self.log = atlas, embedder, result, log
        self.pending: list[NewEntry] = []
        self.failures: list[tuple[str, str | None, int | None, str, str]] = []
        self.seen: dict[str, str] = {}

    def fail(self, entry_id: str, checksum: str | None, length: int | None, reason: str, path: Path) -> None:
        self.failures.append((entry_id, checksum, length, reason, str(path)))
        self.result.failed += 1
        self.log(f"file {path}: failed: {reason}")

    def add(self, path: Path, entries: list[tuple]) -> None:
        from foldatlas import __version__

        known = self.atlas.known_ids([e[0] for e in entries])
        for entry_id, sequence, blob, plddt, label, scores in entries:
            checksum = codec.sequence_md5(sequence)
            if entry_id in known or entry_id in self.seen:
                stored = known[entry_id][0] if entry_id in known else self.seen[entry_id]
                if stored == checksum:
                    self.result.skipped += 1
                else:
                    self.fail(entry_id, checksum, len(sequence.replace(":", "")),
                              f"ID '{entry_id}' already in the atlas with another sequence", path)
                continue
            self.seen[entry_id] = checksum
            self.pending.append(NewEntry(
                id=entry_id, sequence=sequence, kind="imported", model=label, structure=blob, plddt=plddt,
                ptm=scores.get("ptm"), iptm=scores.get("iptm"),
                description=path.name, source=str(path),
                provenance={"foldatlas_version": __version__, "file": str(path),
                            "plddt_from_bfactor": plddt is not None,
                            "imported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))

    def flush(self) -> None:
        """Embed and store the pending entries and record the failures, in one transaction each."""
        if self.pending and self.embedder is not None:
            vectors = self.embedder([e.sequence for e in self.pending])
            self.pending = [replace(e, embedding=v) for e, v in zip(self.pending, vectors)]
        stored = self.atlas.insert(self.pending)
        self.result.imported += sum(1 for r in stored if r)
        self.result.skipped += sum(1 for r in stored if not r)
        self.atlas.record_failures(self.failures)
        self.pending, self.failures = [], []


def import_structures(atlas: Atlas, paths: list[str | Path], embedder=None, options: ImportOptions = ImportOptions(),
                      progress: bool = True, log: Callable[[str], None] | None = None) -> ImportResult:
    """Import structure files into an atlas.

    Parameters
    ----------
    atlas : Atlas
    paths : list of str or Path
        Files and folders (searched recursively for .pdb, .ent, .cif, .mmcif, gzipped or not).
    embedder : foldatlas.models.embedding.Embedder, optional
        Computes each entry's mean language-model embedding; None stores none.
    options : ImportOptions
    progress : bool
    log : callable, optional

    Returns
    -------
    ImportResult

    Raises
    ------
    InvalidFileError
        If no structure file is found.
    OutputConflictError
        If the atlas' embeddings come from another model.
    """
    from tqdm import tqdm

    from foldatlas.atlas.build import check_embedding_model
    from foldatlas.atlas.seqindex import update_sequence_index
    from foldatlas.atlas.structindex import update_structure_index

    log = log or (lambda msg: print(msg, file=sys.stderr))
    files = find_structure_files(paths)
    check_embedding_model(atlas, embedder)
    result = ImportResult()
    batch = _Batch(atlas, embedder, result, log)
    with _torch_threads(embedder, options.workers), \
            tqdm(total=len(files), unit="file", disable=not progress, desc="importing", file=sys.stderr,
                 dynamic_ncols=True) as bar:
        for path, entries in _read_all(files, options):
            bar.update(1)
            if isinstance(entries, str):
                batch.fail(_entry_stem(path), None, None, entries, path)
            else:
                batch.add(path, entries)
            if len(batch.pending) >= options.batch_size:
                batch.flush()
        batch.flush()
    update_sequence_index(atlas)
    update_structure_index(atlas)
    return result
