"""Per-residue and mean representations of proteins, from chosen layers; written as .npy, .npz or Parquet.

Layers are numbered as in fair-esm's ``repr_layers``: 0 the token embeddings, ``num_layers`` the final layer
(after the final norm — ESM-2's ``emb_layer_norm_after``, ESM C's ``EsmcModel.norm`` — the representation
:mod:`foldatlas.models.embedding` averages), negative from the end; layers in between are block outputs before any
norm, in both families. A chain longer than 1,022 residues is embedded in consecutive windows, each residue once; a
complex one chain at a time, its per-residue rows in chain order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from foldatlas.errors import InvalidOptionError
from foldatlas.lm.model import MAX_RESIDUES, LanguageModel, encode, forward

__all__ = ["Embedding", "embed", "write_embeddings", "check_embedding_output", "embedding_tokens", "FORMATS"]

FORMATS = ("npy", "npz", "parquet")


@dataclass
class Embedding:
    """Representations of one record.

    Attributes
    ----------
    name : str
    length : int
        Residues over all chains.
    mean : dict
        Layer -> ndarray (D,), the mean over residues.
    per_residue : dict
        Layer -> ndarray (length, D); empty unless asked for.
    """

    name: str
    length: int
    mean: dict[int, np.ndarray] = field(default_factory=dict)
    per_residue: dict[int, np.ndarray] = field(default_factory=dict)


def embed(lm: LanguageModel, records: list, layers: tuple[int, ...] = (-1,), per_residue: bool = False,
          max_tokens: int = 4096, progress=None) -> list[Embedding]:
    """Representations of records.

    Parameters
    ----------
    lm : LanguageModel
    records : list of Record
    layers : tuple of int
        Representation layers (negative: from the end).
    per_residue : bool
        Keep every residue's vector, not only the mean.
    max_tokens : int
        Padded tokens per forward pass.
    progress : callable, optional
        Receives token counts of finished batches.

    Returns
    -------
    list of Embedding, in the order of ``records``

    Raises
    ------
    InvalidOptionError
        If a layer does not exist.
    """
    wanted = tuple(dict.fromkeys(lm.layer_index(k) for k in layers))
    if not wanted:
        raise InvalidOptionError("give at least one layer")
    pieces, owner = _pieces(records)
    parts: dict[int, dict[int, np.ndarray]] = {}
    for i, out in forward(lm, [encode(p) for p in pieces], max_tokens, logits=False, layers=wanted,
                          progress=progress):
        parts[i] = {layer: h[1:-1] for layer, h in out["hidden"].items()}
    results = [Embedding(rec.name, rec.length) for rec in records]
    rows: list[list[dict[int, np.ndarray]]] = [[] for _ in records]
    for i in range(len(pieces)):  # in piece order: chain order, window order
        rows[owner[i]].append(parts[i])
    for result, chunks in zip(results, rows):
        for layer in wanted:
            full = np.concatenate([c[layer] for c in chunks]).astype(np.float32)
            result.mean[layer] = full.mean(axis=0, dtype=np.float64).astype(np.float32)
            if per_residue:
                result.per_residue[layer] = full
    return results


def _pieces(records: list) -> tuple[list[str], list[int]]:
    """Each record's chains cut into windows of the model's context, and the record each window belongs to."""
    pieces, owner = [], []
    for k, rec in enumerate(records):
        for chain in rec.chains:
            for start in range(0, len(chain), MAX_RESIDUES):
                pieces.append(chain[start:start + MAX_RESIDUES])
                owner.append(k)
    return pieces, owner


def embedding_tokens(records: list) -> int:
    """Tokens :func:`embed` runs through the model for ``records`` (residues plus two per window): a progress total."""
    return sum(len(p) + 2 for p in _pieces(records)[0])


def check_embedding_output(path: str | Path, fmt: str | None, layers: tuple[int, ...], per_residue: bool) -> str:
    """The output format, checked before any embedding is computed.

    Raises
    ------
    InvalidOptionError
        If the format is unknown, or is ``npy`` asked to hold several layers or per-residue vectors.
    """
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise InvalidOptionError(f"--output {path}: unknown output format '{fmt}': name the file .npy, .npz or "
                                 f".parquet (or --format)")
    if fmt == "npy" and (per_residue or len(set(layers)) != 1):
        raise InvalidOptionError(".npy holds one layer's mean embeddings; use .npz or .parquet for several layers "
                                 "or per-residue vectors")
    return fmt


def write_embeddings(results: list[Embedding], path: str | Path, fmt: str | None = None) -> Path:
    """Write embeddings atomically.

    * ``npz``: arrays ``{name}/mean/{layer}`` and ``{name}/per_residue/{layer}``, plus ``names``;
    * ``npy``: one (N, D) array of means, rows in input order; one layer and no per-residue vectors only;
    * ``parquet``: one row per record and layer: ``name``, ``layer``, ``length``, ``mean`` (list of float32) and
      ``per_residue`` (list of lists) when present.

    Raises
    ------
    InvalidOptionError
        If the format is unknown or cannot hold what was computed.
    """
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise InvalidOptionError(f"unknown output format '{fmt}': name the file .npy, .npz or .parquet (or --format)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if fmt == "npy":
            layers = {tuple(r.mean) for r in results}
            if any(r.per_residue for r in results) or len(layers) != 1 or len(next(iter(layers))) != 1:
                raise InvalidOptionError(".npy holds one layer's mean embeddings; use .npz or .parquet for "
                                         "several layers or per-residue vectors")
            with open(tmp, "wb") as f:
                np.save(f, np.stack([next(iter(r.mean.values())) for r in results]))
        elif fmt == "npz":
            arrays = {"names": np.array([r.name for r in results])}
            for r in results:
                for layer, v in r.mean.items():
                    arrays[f"{r.name}/mean/{layer}"] = v
                for layer, v in r.per_residue.items():
                    arrays[f"{r.name}/per_residue/{layer}"] = v
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            rows = {"name": [], "layer": [], "length": [], "mean": [], "per_residue": []}
            for r in results:
                for layer, v in r.mean.items():
                    rows["name"].append(r.name)
                    rows["layer"].append(layer)
                    rows["length"].append(r.length)
                    rows["mean"].append(v.tolist())
                    rows["per_residue"].append(r.per_residue[layer].tolist() if layer in r.per_residue else None)
            schema = pa.schema([("name", pa.string()), ("layer", pa.int32()), ("length", pa.int32()),
                                ("mean", pa.list_(pa.float32())), ("per_residue", pa.list_(pa.list_(pa.float32())))])
            pq.write_table(pa.table(rows, schema=schema), tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
