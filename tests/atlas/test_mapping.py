"""The map layout: PCA placement, entries without embeddings beside their representative, the binary buffer."""

import numpy as np

from foldatlas.atlas.mapping import NO_PLDDT, MapLayout, compute_layout


def _layout(n=60, missing=(5, 7), reps=True):
    rng = np.random.default_rng(0)
    rowids = np.arange(10, 10 + n, dtype=np.int64)
    family = np.arange(n) % 3
    centres = rng.normal(size=(3, 16)).astype(np.float32) * 10
    embedded = np.ones(n, bool)
    embedded[list(missing)] = False
    vectors = centres[family[embedded]] + rng.normal(size=(int(embedded.sum()), 16)).astype(np.float32)
    plddt = np.where(np.arange(n) == 1, np.nan, 80.0)
    rep = rowids[family] if reps else None  # the first three entries represent the three families
    return compute_layout(rowids, embedded, vectors, plddt, np.full(n, 120), rep, "c"), rowids, family


def test_families_separate_and_unembedded_entries_sit_by_their_representative():
    layout, rowids, family = _layout()
    assert len(layout) == 60 and layout.placed_by_cluster == 2 and (layout.rowids == rowids).all()
    xy = np.stack([layout.x, layout.y], 1).astype(float)
    assert xy.max() == 65535 and xy.min() >= 0
    centre = np.array([xy[family == f].mean(0) for f in range(3)])
    spread = max(np.linalg.norm(xy[family == f] - centre[f], axis=1).mean() for f in range(3))
    assert min(np.linalg.norm(centre[a] - centre[b]) for a, b in ((0, 1), (0, 2), (1, 2))) > 3 * spread
    for i in (5, 7):  # no embedding: within the jitter radius of the representative
        rep = int(layout.cluster[i])
        assert rep == family[i] and 0 < np.linalg.norm(xy[i] - xy[rep]) < 0.01 * 65535
    assert layout.plddt[1] == NO_PLDDT and layout.plddt[0] == 80


def test_without_clusters_unembedded_entries_are_left_off():
    layout, rowids, _ = _layout(reps=False)
    assert len(layout) == 58 and 5 + 10 not in layout.rowids.tolist()
    assert (layout.cluster == np.arange(58)).all() and layout.placed_by_cluster == 0


def test_buffer_header_and_save(tmp_path):
    layout, _, _ = _layout()
    header, data = layout.header(), layout.to_bytes()
    assert header["bytes"] == len(data) == 60 * 11
    fields = {f["name"]: f for f in header["fields"]}
    x = np.frombuffer(data, "<u2", count=60, offset=fields["x"]["offset"])
    cluster = np.frombuffer(data, "<u4", count=60, offset=fields["cluster"]["offset"])
    assert (x == layout.x).all() and (cluster == layout.cluster).all()
    assert all(f["offset"] % np.dtype(f["type"]).itemsize == 0 for f in header["fields"])  # aligned views
    layout.save(tmp_path / "m.npz", "k")
    back = MapLayout.load(tmp_path / "m.npz")
    assert back.to_bytes() == data and back.clustering == "c" and back.explained == layout.explained
