"""Bulk exports of an atlas: FASTA, ESM Atlas-style metadata Parquet, structure tarballs by confidence.

Every file is written under a temporary name and renamed when complete. Imports neither torch nor
transformers (pyarrow only for the Parquet file).
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

from foldatlas import __version__
from foldatlas.atlas.entry import AtlasEntry
from foldatlas.atlas.store import Atlas
from foldatlas.errors import InvalidOptionError
from foldatlas.files import atomic_open
from foldatlas.seq.fasta import fasta_header
from foldatlas.seq.records import safe_names

__all__ = ["export_fasta", "export_metadata", "export_structures", "export_clusters", "confidence_bin",
           "METADATA_COLUMNS", "CLUSTER_COLUMNS"]

# The ESM Atlas metadata columns (id, ptm, plddt on 0-1, num_conf, len, sequenceChecksum, model version,
# atlas version), then foldatlas' own.
METADATA_COLUMNS = ("id", "ptm", "plddt", "num_conf", "len", "sequenceChecksum", "esmfold_version", "atlas_version",
                    "iptm", "mean_plddt", "num_chains", "md5", "model", "kind", "description", "source", "created")


def export_fasta(atlas: Atlas, path: str | Path) -> int:
    """Write every entry's sequence as FASTA (``>ID description``, the ID once; ``:`` between chains); returns the count.

    A description that is a FASTA header already (it starts with the ID) is written as it is, so that
    export -> build -> export gives the same file.
    """
    n = 0
    with atomic_open(path, "w") as f:
        for m in atlas.iter_metadata(("id", "description", "sequence")):
            f.write(f"{fasta_header(m['id'], m['description'])}\n{m['sequence']}\n")
            n += 1
    return n


def export_metadata(atlas: Atlas, path: str | Path) -> int:
    """Write a Parquet table of every entry's metadata (:data:`METADATA_COLUMNS`); returns the row count.

    ``plddt`` is the mean pLDDT on the 0-1 scale and ``num_conf`` the residues with pLDDT above 70,
    as in the ESM Atlas metadata; ``mean_plddt`` is the same mean on the 0-100 scale;
    ``sequenceChecksum`` is the CRC64 of the sequence; ``esmfold_version`` is the folding model's
    name and ``atlas_version`` the foldatlas version.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = ("id", "ptm", "mean_plddt", "num_conf", "length", "crc64", "model", "model_version", "iptm", "num_chains",
            "checksum", "kind", "description", "source", "created")
    data: dict[str, list] = {c: [] for c in METADATA_COLUMNS}
    for m in atlas.iter_metadata(cols):
        row = {"id": m["id"], "ptm": m["ptm"], "plddt": None if m["mean_plddt"] is None else m["mean_plddt"] / 100,
               "num_conf": m["num_conf"], "len": m["length"], "sequenceChecksum": m["crc64"],
               "esmfold_version": m["model"], "atlas_version": f"foldatlas-{__version__}", "iptm": m["iptm"],
               "mean_plddt": m["mean_plddt"], "num_chains": m["num_chains"], "md5": m["checksum"], "model": m["model"],
               "kind": m["kind"], "description": m["description"], "source": m["source"], "created": m["created"]}
        for c in METADATA_COLUMNS:
            data[c].append(row[c])
    types = {"ptm": pa.float32(), "plddt": pa.float32(), "iptm": pa.float32(), "mean_plddt": pa.float32(),
             "num_conf": pa.int32(), "len": pa.int32(), "num_chains": pa.int16()}
    table = pa.table({c: pa.array(v, type=types.get(c, pa.string())) for c, v in data.items()})
    with atomic_open(path) as f:
        pq.write_table(table, f, compression="zstd")
    return table.num_rows

# AlphaFold DB's cluster files name the representative and the member by accession (repId, memberId); the
# cluster's size and whether the member is the representative follow.
CLUSTER_COLUMNS = ("repId", "memberId", "clusterSize", "isRepresentative")


def choose_clustering(atlas: Atlas, name: str | None) -> str:
    """The clustering named, or the atlas' only one; a one-line error listing the stored ones otherwise."""
    names = list(atlas.clusterings())
    if name is None and len(names) == 1:
        return names[0]
    if name is not None and name in names:
        return name
    stored = ", ".join(names) if names else "none; run 'foldatlas atlas cluster' first"
    what = f"no clustering {name!r}" if name is not None else "several clusterings: name one with --clustering"
    raise InvalidOptionError(f"{what} in {atlas.folder} (stored: {stored})")


def export_clusters(atlas: Atlas, path: str | Path, name: str | None = None) -> int:
    """Write a clustering's table, one row per member: ``.tsv`` as MMseqs2's ``easy-linclust`` writes
    ``_cluster.tsv`` (representative ID, member ID; no header), ``.parquet`` with :data:`CLUSTER_COLUMNS`.
    Rows by representative, its own row first. Returns the row count."""
    import numpy as np

    name = choose_clustering(atlas, name)
    members, reps = atlas.cluster_table(name)
    ids = {m["rowid"]: m["id"] for m in atlas.iter_metadata(("rowid", "id"))}
    order = np.lexsort((members != reps, members, reps))
    members, reps = members[order], reps[order]
    sizes = np.unique(reps, return_counts=True)
    size_of = dict(zip(sizes[0].tolist(), sizes[1].tolist()))
    rep_ids = [ids[r] for r in reps.tolist()]
    member_ids = [ids[m] for m in members.tolist()]
    if str(path).endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({"repId": pa.array(rep_ids, pa.string()), "memberId": pa.array(member_ids, pa.string()),
                          "clusterSize": pa.array([size_of[r] for r in reps.tolist()], pa.int32()),
                          "isRepresentative": pa.array((members == reps).tolist(), pa.bool_())})
        with atomic_open(path) as f:
            pq.write_table(table, f, compression="zstd")
    else:
        with atomic_open(path, "w") as f:
            f.writelines(f"{r}\t{m}\n" for r, m in zip(rep_ids, member_ids))
    return len(members)


def confidence_bin(ptm: float | None, mean_plddt: float | None, width: float = 0.1) -> str:
    """Tarball name stem of an entry's confidence bin, as the ESM Atlas bins its bulk downloads.

    Examples
    --------
    >>> confidence_bin(0.734, 81.2)
    'tm_.70_.80_plddt_.80_.90'
    >>> confidence_bin(None, None)
    'tm_none_plddt_none'
    """
    def edge(x: float) -> str:
        return f"{x:.2f}".lstrip("0") if x < 1 - 1e-9 else "1.00"

    def part(value: float | None) -> str:
        if value is None:
            return "none"
        lo = min(int(value / width + 1e-9), round(1 / width) - 1)
        return f"{edge(lo * width)}_{edge((lo + 1) * width)}"

    return f"tm_{part(ptm)}_plddt_{part(None if mean_plddt is None else mean_plddt / 100)}"


def _structure_text(entry: AtlasEntry, fmt: str) -> bytes:
    return (entry.to_pdb() if fmt == "pdb" else entry.to_mmcif()).encode()


def export_structures(atlas: Atlas, folder: str | Path, fmt: str = "pdb", width: float = 0.1) -> dict[str, int]:
    """Write every entry's structure into tarballs binned by pTM and mean pLDDT.

    Parameters
    ----------
    atlas : Atlas
    folder : str or Path
        Output folder (created); one ``<bin>.tar`` per bin (see :func:`confidence_bin`), each holding
        ``<ID>.pdb.gz`` (or ``.cif.gz``) files, IDs made safe for file names.
    fmt : {"pdb", "cif"}
    width : float
        Bin width on the 0-1 scale.

    Returns
    -------
    dict
        Tarball name -> number of structures.
    """
    if fmt not in ("pdb", "cif"):
        raise InvalidOptionError(f"structure format must be pdb or cif, not {fmt!r}")
    if not 0 < width <= 1:
        raise InvalidOptionError("bin width must be in (0, 1]")
    meta = list(atlas.iter_metadata(("rowid", "id", "ptm", "mean_plddt")))
    names = safe_names([m["id"] for m in meta])
    bins: dict[str, list[tuple[int, str]]] = {}
    for m, name in zip(meta, names):
        bins.setdefault(confidence_bin(m["ptm"], m["mean_plddt"], width), []).append((m["rowid"], name))
    counts = {}
    for stem, members in sorted(bins.items()):
        with atomic_open(Path(folder) / f"{stem}.tar") as f, tarfile.open(fileobj=f, mode="w") as tar:
            for rowid, name in members:
                data = gzip.compress(_structure_text(atlas.get_rowid(rowid, pae=False, embedding=False), fmt), 6)
                info = tarfile.TarInfo(f"{name}.{fmt}.gz")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        counts[f"{stem}.tar"] = len(members)
    return counts
