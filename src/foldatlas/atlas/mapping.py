"""A 2D map of an atlas: its entries' mean language-model embeddings projected onto two axes.

The projection is PCA (the embeddings' first two principal axes, by SVD of the centred matrix): exact,
deterministic, linear in the number of entries, and a point's place does not move when unrelated entries are
added elsewhere, which a browsable map needs. UMAP or t-SNE draw tighter clusters but pull in numba or
scikit-learn at run time and cost minutes per 100,000 entries on two cores; PCA of 1 million 320-wide
embeddings takes seconds. Axes are oriented so the result is the same on every run (SVD's sign is arbitrary).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from foldatlas.atlas import codec

__all__ = ["AtlasMap", "embedding_map", "MapLayout", "compute_layout", "map_layout", "NO_PLDDT"]


@dataclass
class AtlasMap:
    """Projected entries.

    Attributes
    ----------
    ids : list of str
    x, y : ndarray of float32
        Coordinates, scaled to [0, 1] on the wider axis (the aspect ratio is kept).
    mean_plddt : ndarray of float32
        NaN for entries without confidence.
    length : ndarray of int32
    explained : tuple of float
        Share of the embeddings' variance on each axis.
    total : int
        Entries with an embedding (``ids`` may be a sample of them).
    """

    ids: list[str]
    x: np.ndarray
    y: np.ndarray
    mean_plddt: np.ndarray
    length: np.ndarray
    explained: tuple[float, float]
    total: int

    def to_dict(self) -> dict:
        """JSON-ready, coordinates rounded to 1e-4."""
        return {"total": self.total, "shown": len(self.ids),
                "explained_variance": [round(v, 4) for v in self.explained],
                "points": [{"id": i, "x": round(float(a), 4), "y": round(float(b), 4),
                            "mean_plddt": None if np.isnan(p) else round(float(p), 2), "length": int(n)}
                           for i, a, b, p, n in zip(self.ids, self.x, self.y, self.mean_plddt, self.length)]}


def embedding_map(atlas, max_points: int | None = 50000, seed: int = 0) -> AtlasMap:
    """Project the atlas' mean embeddings to 2D.

    Parameters
    ----------
    atlas : foldatlas.atlas.Atlas
    max_points : int, optional
        Points returned at most (a seeded uniform sample when the atlas holds more; the axes are fitted on
        all entries). None: all.
    seed : int

    Returns
    -------
    AtlasMap
        Empty when no entry has an embedding.
    """
    rowids, vectors = [], []
    for rowid, blob in atlas.iter_blobs("embedding"):
        if blob is not None:
            rowids.append(rowid)
            vectors.append(codec.decode_embedding(blob))
    if len(vectors) < 2:
        empty = np.zeros(0, np.float32)
        return AtlasMap([], empty, empty, empty, np.zeros(0, np.int32), (0.0, 0.0), len(vectors))
    matrix = np.stack(vectors).astype(np.float32)
    centred = matrix - matrix.mean(0)
    # the top two right singular vectors of the centred matrix, via the small D x D covariance
    cov = centred.T @ centred
    values, vecs = np.linalg.eigh(cov.astype(np.float64))
    axes = vecs[:, ::-1][:, :2]
    coords = centred @ axes.astype(np.float32)
    for k in range(2):  # a fixed orientation: the longest excursion is positive
        if abs(coords[:, k].min()) > abs(coords[:, k].max()):
            coords[:, k] *= -1
    total_var = float(values.sum()) or 1.0
    explained = (float(values[-1] / total_var), float(values[-2] / total_var))
    lo = coords.min(0)
    span = float((coords.max(0) - lo).max()) or 1.0
    coords = (coords - lo) / span
    keep = np.arange(len(rowids))
    if max_points is not None and len(keep) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(keep), max_points, replace=False))
    chosen = [rowids[i] for i in keep]
    meta = atlas.metadata_of(chosen)
    ids = [meta[r][0] for r in chosen]
    plddt = np.array([np.nan if meta[r][1] is None else meta[r][1] for r in chosen], np.float32)
    length = np.array([meta[r][2] for r in chosen], np.int32)
    return AtlasMap(ids, coords[keep, 0], coords[keep, 1], plddt, length, explained, len(rowids))


# -- the map of every entry, as binary buffers for WebGL ------------------------------------------------------

_FIELDS = (("cluster", np.uint32), ("x", np.uint16), ("y", np.uint16), ("length", np.uint16), ("plddt", np.uint8))
NO_PLDDT = 255
_JITTER = 0.004  # how far (map units) entries without an embedding sit from their representative


@dataclass
class MapLayout:
    """Every mapped entry: position, cluster, length, pLDDT; packed for the browser (:meth:`to_bytes`).

    Attributes
    ----------
    rowids : ndarray of int64, shape (N,)
        Ascending; the point index is the place in it.
    x, y : ndarray of uint16
        Coordinates on 0-65535 (the wider axis spans it; the aspect ratio is kept).
    cluster : ndarray of uint32
        Point index of the entry's cluster representative (its own index when unclustered).
    length : ndarray of uint16
        Residues (capped at 65,535).
    plddt : ndarray of uint8
        Mean pLDDT rounded (0-100); :data:`NO_PLDDT` when none.
    explained : tuple of float
        Variance share of the two axes.
    clustering : str or None
    placed_by_cluster : int
        Entries without an embedding, placed beside their representative.
    """

    rowids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    cluster: np.ndarray
    length: np.ndarray
    plddt: np.ndarray
    explained: tuple[float, float]
    clustering: str | None = None
    placed_by_cluster: int = 0

    def __len__(self) -> int:
        return len(self.rowids)

    def header(self) -> dict:
        """What the browser needs to read :meth:`to_bytes`: field names, types and byte offsets."""
        n, offset, fields = len(self), 0, []
        for name, dtype in _FIELDS:
            fields.append({"name": name, "type": np.dtype(dtype).name, "offset": offset, "count": n})
            offset += n * np.dtype(dtype).itemsize
        return {"count": n, "bytes": offset, "fields": fields, "coordinate_max": 65535, "no_plddt": NO_PLDDT,
                "explained_variance": [round(float(v), 4) for v in self.explained], "clustering": self.clustering,
                "placed_by_cluster": self.placed_by_cluster}

    def to_bytes(self) -> bytes:
        """The fields one after another, little-endian (the widest first, so each typed-array view is aligned)."""
        return b"".join(np.ascontiguousarray(getattr(self, name), np.dtype(dtype).newbyteorder("<")).tobytes()
                        for name, dtype in _FIELDS)

    def save(self, path, key: str = "") -> None:
        """Write the layout (``.npz``, atomically) with a cache ``key``."""
        from foldatlas.files import atomic_open

        with atomic_open(path) as f:
            np.savez(f, key=np.array(key), rowids=self.rowids, x=self.x, y=self.y, cluster=self.cluster, length=self.length,
                     plddt=self.plddt, explained=np.array(self.explained),
                     clustering=np.array(self.clustering or ""), placed=np.array(self.placed_by_cluster))

    @classmethod
    def load(cls, path) -> MapLayout:
        """Read a layout written by :meth:`save`."""
        d = np.load(path)
        return cls(d["rowids"], d["x"], d["y"], d["cluster"], d["length"], d["plddt"], tuple(d["explained"].tolist()),
                   str(d["clustering"]) or None, int(d["placed"]))


def _pca2(matrix: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """The rows on their first two principal axes (fixed orientation), and the variance share of each."""
    mean = matrix.mean(0, dtype=np.float64).astype(np.float32)
    cov = np.zeros((matrix.shape[1], matrix.shape[1]), np.float64)
    for start in range(0, len(matrix), 200_000):  # blocks: no centred copy of the whole matrix
        block = matrix[start:start + 200_000] - mean
        cov += (block.T @ block).astype(np.float64)
    values, vecs = np.linalg.eigh(cov)
    axes = vecs[:, ::-1][:, :2].astype(np.float32)
    coords = np.empty((len(matrix), 2), np.float32)
    for start in range(0, len(matrix), 200_000):
        coords[start:start + 200_000] = (matrix[start:start + 200_000] - mean) @ axes
    for k in range(2):  # a fixed orientation: the longest excursion is positive
        if abs(coords[:, k].min()) > abs(coords[:, k].max()):
            coords[:, k] *= -1
    total = float(values.sum()) or 1.0
    return coords, (float(values[-1] / total), float(values[-2] / total))


def compute_layout(rowids: np.ndarray, embedded: np.ndarray, vectors: np.ndarray, mean_plddt: np.ndarray,
                   length: np.ndarray, rep_rowid: np.ndarray | None = None, clustering: str | None = None
                   ) -> MapLayout:
    """Lay out entries: those with an embedding by PCA of the embeddings; those without, beside their cluster
    representative (a small fixed offset from its point), when it has one; the rest are left off.

    Parameters
    ----------
    rowids : ndarray of int64, shape (N,)
        Ascending.
    embedded : ndarray of bool, shape (N,)
        Which entries ``vectors`` holds rows for, in order.
    vectors : ndarray of float32, shape (embedded.sum(), D)
    mean_plddt : ndarray of float, shape (N,)
        NaN where none.
    length : ndarray of int, shape (N,)
    rep_rowid : ndarray of int64, shape (N,), optional
        Each entry's representative row id (-1: not clustered).
    clustering : str, optional
    """
    n = len(rowids)
    xy = np.full((n, 2), np.nan, np.float32)
    explained = (0.0, 0.0)
    if embedded.sum() >= 2:
        xy[embedded], explained = _pca2(np.asarray(vectors, np.float32))
    placed = 0
    rep_index = np.arange(n)
    if rep_rowid is not None:
        where = np.searchsorted(rowids, rep_rowid)
        known = (rep_rowid >= 0) & (where < n)
        known[known] = rowids[where[known]] == rep_rowid[known]
        rep_index = np.where(known, where, np.arange(n))
        lost = ~embedded & known & embedded[rep_index]
        if lost.any():  # beside the representative, at an angle fixed by the row id
            angle = (rowids[lost] * 2654435761 % 360).astype(np.float32) * np.float32(np.pi / 180)
            span = np.nanmax(xy, axis=0) - np.nanmin(xy, axis=0)
            radius = _JITTER * float(np.nanmax(span)) if np.isfinite(span).all() else 0.0
            xy[lost] = xy[rep_index[lost]] + radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
            placed = int(lost.sum())
    keep = np.flatnonzero(np.isfinite(xy[:, 0]))
    new_index = np.full(n, -1, np.int64)
    new_index[keep] = np.arange(len(keep))
    xy = xy[keep]
    lo = xy.min(0) if len(xy) else np.zeros(2, np.float32)
    span = float((xy.max(0) - lo).max()) if len(xy) else 1.0
    q = np.round((xy - lo) / (span or 1.0) * 65535).clip(0, 65535).astype(np.uint16)
    cluster = new_index[rep_index[keep]]
    cluster = np.where(cluster >= 0, cluster, np.arange(len(keep))).astype(np.uint32)
    plddt = np.where(np.isfinite(mean_plddt[keep]), np.round(np.nan_to_num(mean_plddt[keep])), NO_PLDDT)
    return MapLayout(np.asarray(rowids)[keep], q[:, 0], q[:, 1], cluster, np.minimum(length[keep], 65535)
                     .astype(np.uint16), plddt.astype(np.uint8), explained, clustering, placed)


def map_layout(atlas, clustering: str | None = None) -> MapLayout:
    """The layout of every entry of an atlas (see :func:`compute_layout`), cached beside the atlas' database
    while its entries and the clustering are unchanged (``map-<clustering>.npz``; read-only atlases compute it)."""
    info = atlas.clusterings().get(clustering, {}) if clustering else {}
    key = f"{atlas.max_rowid()}-{len(atlas)}-{clustering or ''}-{info.get('updated', '')}-{info.get('runs', '')}"
    cache = atlas.folder / f"map-{clustering or 'none'}.npz"
    if cache.exists():
        try:
            with np.load(cache) as d:
                if "key" in d and str(d["key"]) == key:
                    return MapLayout.load(cache)
        except (OSError, ValueError):
            pass
    meta = list(atlas.iter_metadata(("rowid", "mean_plddt", "length")))
    rowids = np.array([m["rowid"] for m in meta], np.int64)
    plddt = np.array([np.nan if m["mean_plddt"] is None else m["mean_plddt"] for m in meta], np.float64)
    length = np.array([m["length"] for m in meta], np.int64)
    embedded = np.zeros(len(rowids), bool)
    vectors = []
    for rowid, blob in atlas.iter_blobs("embedding"):
        if blob is not None:
            vectors.append(codec.decode_embedding(blob).astype(np.float32))
            embedded[np.searchsorted(rowids, rowid)] = True
    matrix = np.stack(vectors) if vectors else np.zeros((0, 1), np.float32)
    reps = None
    if clustering:
        members, rep_of = atlas.cluster_table(clustering)
        reps = np.full(len(rowids), -1, np.int64)
        where = np.searchsorted(rowids, members)
        ok = where < len(rowids)
        reps[where[ok]] = rep_of[ok]
    layout = compute_layout(rowids, embedded, matrix, plddt, length, reps, clustering)
    if not atlas.readonly:
        layout.save(cache, key)
    return layout
