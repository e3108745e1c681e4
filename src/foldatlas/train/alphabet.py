"""Fitting the structural alphabet of :mod:`foldatlas.structure.alphabet` on real PDB chains.

1. Pairs: training chains that phmmer (pyhmmer) calls homologous are TM-aligned (tmtools); pairs with a TM-score
   of at least 0.5 by both lengths give the residue pairs TM-align superposes within 5 A.
2. Projection: the standardised features are projected on the 8 directions along which aligned residues differ
   least relative to the features' overall spread (generalised eigenvectors, scipy), so that the states keep
   what structural alignments conserve.
3. States: k-means (scikit-learn) with 20 clusters in the projected space.
4. Substitution matrix: log-odds of the aligned residue pairs' states against the background, in half-bits, as
   BLOSUM is made.
5. Gap penalties: open 10, extend 1 (half-bits). Choosing them by how well each pair ranks remote positives above
   random training chains did not discriminate (every pair beat 99.8% of the decoys), so they are fixed.

Reads the StructureDB dump of :mod:`foldatlas.train.promod3_dump`; chains named in ``exclude`` (those of a
benchmark) are never used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from foldatlas.structure.alphabet import NUM_FEATURES, StructureAlphabet, ca_features

__all__ = ["train_alphabet"]

_DIMS = 8
GAP_OPEN, GAP_EXTEND = 10, 1


def _chains(npz: str, exclude: set[str], count: int, rng) -> list[tuple[str, str, np.ndarray]]:
    data = np.load(npz)
    ids, offsets, sequence, coords = data["ids"], data["offsets"], str(data["sequence"]), data["coords"]
    lengths = np.diff(offsets)
    eligible = [k for k in range(len(ids)) if 40 <= lengths[k] <= 800 and str(ids[k]) not in exclude]
    pick = sorted(rng.choice(eligible, min(count, len(eligible)), replace=False))
    return [(str(ids[k]), sequence[offsets[k]:offsets[k + 1]], coords[offsets[k]:offsets[k + 1], 1].astype(float))
            for k in pick]


def _homolog_pairs(chains, queries: int, rng) -> list[tuple[int, int]]:
    import pyhmmer

    alphabet = pyhmmer.easel.Alphabet.amino()
    block = pyhmmer.easel.TextSequenceBlock(
        [pyhmmer.easel.TextSequence(name=str(k).encode(), sequence=s) for k, (_, s, _) in enumerate(chains)]
    ).digitize(alphabet)
    chosen = rng.choice(len(chains), min(queries, len(chains)), replace=False)
    pairs = set()
    for q, hits in zip(chosen, pyhmmer.hmmer.phmmer([block[int(i)] for i in chosen], block, cpus=0, E=1e-3)):
        for hit in hits:
            t = int(hit.name.decode() if isinstance(hit.name, bytes) else hit.name)
            if t != q and hit.evalue <= 1e-3:
                pairs.add((min(int(q), t), max(int(q), t)))
    return sorted(pairs)


def _aligned_residues(res) -> list[tuple[int, int]]:
    """Residue index pairs that TM-align superposes within 5 A (':' in its match line)."""
    out, i, j = [], 0, 0
    for a, m, b in zip(res.seqxA, res.seqM, res.seqyA):
        if a != "-" and b != "-" and m == ":":
            out.append((i, j))
        i += a != "-"
        j += b != "-"
    return out


def _projection(feats, positives, mean, std, spread) -> np.ndarray:
    from scipy.linalg import eigh

    diffs = []
    for a, b, pairs in positives:
        za, zb = (feats[a] - mean) / std, (feats[b] - mean) / std
        for i, j in pairs:
            d = za[i] - zb[j]
            if not np.isnan(d).any():
                diffs.append(d)
    diffs = np.asarray(diffs)
    _, vectors = eigh(diffs.T @ diffs / len(diffs), spread)
    return vectors[:, :_DIMS]


def train_alphabet(npz: str, out: str | Path, exclude: set[str] = frozenset(), chains: int = 3000,
                   queries: int = 1000, max_pairs: int = 3000, seed: int = 0,
                   log: Callable[[str], None] = print) -> dict:
    """Fit projection, states, substitution matrix and gap penalties; write ``alphabet.json`` into ``out``.

    Returns
    -------
    dict
        What was fitted and measured (for the model card).
    """
    import tmtools
    from sklearn.cluster import KMeans

    start = time.time()
    rng = np.random.default_rng(seed)
    data = _chains(npz, set(exclude), chains, rng)
    feats = [ca_features(ca) for _, _, ca in data]
    allf = np.concatenate(feats)
    allf = allf[~np.isnan(allf).any(axis=1)]
    mean, std = allf.mean(axis=0), allf.std(axis=0) + 1e-6
    candidates = _homolog_pairs(data, queries, rng)
    rng.shuffle(candidates)
    positives, identity = [], []
    for a, b in candidates[:max_pairs]:
        res = tmtools.tm_align(data[a][2], data[b][2], data[a][1], data[b][1])
        if min(res.tm_norm_chain1, res.tm_norm_chain2) >= 0.5:
            pairs = _aligned_residues(res)
            positives.append((a, b, pairs))
            identity.append(np.mean([data[a][1][i] == data[b][1][j] for i, j in pairs]) if pairs else 1.0)
    log(f"{len(data)} chains, {len(candidates)} phmmer pairs, {len(positives)} with TM-score >= 0.5 "
        f"({time.time() - start:.0f} s)")
    projection = _projection(feats, positives, mean, std, np.cov(((allf - mean) / std).T))
    km = KMeans(n_clusters=20, n_init=4, random_state=seed).fit(((allf - mean) / std) @ projection)
    draft = StructureAlphabet(km.cluster_centers_, mean, std, projection, np.zeros((21, 21), np.int64), 10, 1)
    states = [draft.states(ca) for _, _, ca in data]
    counts = np.full((20, 20), 0.5)
    for a, b, pairs in positives:
        for i, j in pairs:
            si, sj = states[a][i], states[b][j]
            if si >= 0 and sj >= 0:
                counts[si, sj] += 1
                counts[sj, si] += 1
    background = np.bincount(np.concatenate([s[s >= 0] for s in states]), minlength=20).astype(float)
    background /= background.sum()
    matrix = np.full((21, 21), -1, dtype=np.int64)
    matrix[:20, :20] = np.round(2 * np.log2((counts / counts.sum()) / np.outer(background, background)))

    alphabet = StructureAlphabet(km.cluster_centers_, mean, std, projection, matrix, GAP_OPEN, GAP_EXTEND,
                                 background)
    Path(out).mkdir(parents=True, exist_ok=True)
    alphabet.save(out)
    report = {"chains": len(data), "residues": int(len(allf)), "homolog_pairs": len(candidates),
              "tm_aligned_pairs": min(len(candidates), max_pairs), "positive_pairs": len(positives),
              "remote_positive_pairs": int(sum(i < 0.4 for i in identity)),
              "aligned_residue_pairs": int((counts.sum() - 200) / 2), "lambda": round(alphabet.lam, 4),
              "gap_open": GAP_OPEN, "gap_extend": GAP_EXTEND, "dims": _DIMS,
              "features": NUM_FEATURES, "seed": seed, "seconds": round(time.time() - start)}
    log(f"{report['positive_pairs']} positive pairs, {report['aligned_residue_pairs']} aligned residue pairs; "
        f"{report['seconds']} s")
    return report
