"""Which 2D projection for the atlas map: PCA against t-SNE on real embeddings, quality and time.

    python benchmarks/atlas/bench_map_projection.py /work/data/train/lm_valid.fasta --n 3000

``--n`` sequences of the language model's validation split (never the evaluation data) are embedded with the
embedded language model (``foldatlas-lm-small``, mean over residues, as the atlas stores them). Each projection is
timed and scored by scikit-learn's trustworthiness (k = 10: how many of a point's 2D neighbours are neighbours in
the embedding space; 1 is perfect) and by how many of each point's 10 nearest embedding neighbours stay among its
20 nearest 2D neighbours. UMAP is not measured: umap-learn needs numba, a heavy dependency the package does not
take; t-SNE stands for the neighbour-embedding family (UMAP is faster than t-SNE, but shares its properties that
matter here: a point moves when others are added, and it costs minutes per 100,000 points on two cores).
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def neighbours_kept(high: np.ndarray, low: np.ndarray, k: int = 10, within: int = 20) -> float:
    from sklearn.neighbors import NearestNeighbors

    hi = NearestNeighbors(n_neighbors=k + 1).fit(high).kneighbors(high, return_distance=False)[:, 1:]
    lo = NearestNeighbors(n_neighbors=within + 1).fit(low).kneighbors(low, return_distance=False)[:, 1:]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(hi, lo)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("fasta")
    ap.add_argument("--n", type=int, default=3000)
    args = ap.parse_args()
    from sklearn.manifold import TSNE, trustworthiness

    from foldatlas.atlas.mapping import _pca2
    from foldatlas.models.embedding import load_embedder
    from foldatlas.seq.fasta import read_fasta

    records = [r for r in read_fasta(args.fasta) if 30 <= r.length <= 500][:args.n]
    embedder = load_embedder("foldatlas-lm-small")
    t = time.perf_counter()
    vectors = np.asarray(embedder([r.sequence for r in records]), np.float32)
    result = {"sequences": len(records), "dim": int(vectors.shape[1]), "embed_s": round(time.perf_counter() - t, 1)}
    for name, project in (("pca", lambda x: _pca2(x)[0]),
                          ("tsne", lambda x: TSNE(2, init="pca", random_state=0).fit_transform(x))):
        t = time.perf_counter()
        low = project(vectors)
        seconds = time.perf_counter() - t
        result[name] = {"seconds": round(seconds, 2), "trustworthiness_k10": round(float(trustworthiness(
            vectors, low, n_neighbors=10)), 4), "neighbours_kept_10_in_20": round(neighbours_kept(vectors, low), 4)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
