"""Complex layout as fair-esm's ESMFold does it: chains joined by a poly-G linker.

ESMFold folds a complex as one chain: the chains are joined by a linker of 25
glycines and the residue index jumps by 512 at every chain break, so the trunk's
relative-position embedding (clipped at 32) sees the chains as unconnected. The
linker residues are folded but removed from every output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from foldatlas.seq.alphabet import RESTYPE_INDEX
from foldatlas.seq.records import Record

__all__ = ["LINKER", "RESIDUE_INDEX_OFFSET", "Layout", "layout"]

LINKER: str = "G" * 25  # fair-esm's chain_linker default
RESIDUE_INDEX_OFFSET: int = 512  # fair-esm's residue_index_offset default


@dataclass(frozen=True)
class Layout:
    """Model input for one record, linker included.

    Attributes
    ----------
    aatype : ndarray of int64, shape (N,)
        Residue type indices (``RESTYPES_WITH_X`` order) of chains and linkers.
    residue_index : ndarray of int64, shape (N,)
        Position ids fed to the model; each chain's linker continues its numbering and
        the next chain starts 512 further on (fair-esm's ``residue_index_offset``).
    chain_index : ndarray of int64, shape (N,)
        Chain number of each position (a linker takes the chain before it).
    keep : ndarray of bool, shape (N,)
        True on real residues, False on linker positions.
    """

    aatype: np.ndarray
    residue_index: np.ndarray
    chain_index: np.ndarray
    keep: np.ndarray

    @property
    def length(self) -> int:
        """Model length N (linkers included)."""
        return int(self.aatype.shape[0])


def layout(record: Record, linker: str = LINKER, offset: int = RESIDUE_INDEX_OFFSET) -> Layout:
    """Lay a record's chains out for the model, fair-esm style.

    Examples
    --------
    >>> from foldatlas.seq import make_record
    >>> lay = layout(make_record("ab", "MK:AV"), linker="GG")
    >>> lay.residue_index.tolist(), lay.keep.tolist()
    ([0, 1, 2, 3, 516, 517], [True, True, False, False, True, True])
    """
    seq_parts: list[str] = []
    residx: list[np.ndarray] = []
    chain_idx: list[np.ndarray] = []
    keep: list[np.ndarray] = []
    start = 0
    last = len(record.chains) - 1
    for k, chain in enumerate(record.chains):
        # As in fair-esm, a linker belongs to the chain before it: it continues
        # that chain's numbering, and the offset applies from the next chain on.
        tail = linker if k < last else ""
        piece = chain + tail
        seq_parts.append(piece)
        residx.append(np.arange(start, start + len(piece)))
        chain_idx.append(np.full(len(piece), k))
        keep.append(np.concatenate([np.ones(len(chain), bool), np.zeros(len(tail), bool)]))
        start += len(piece) + offset
    sequence = "".join(seq_parts)
    return Layout(
        aatype=np.fromiter((RESTYPE_INDEX[a] for a in sequence), dtype=np.int64, count=len(sequence)),
        residue_index=np.concatenate(residx).astype(np.int64),
        chain_index=np.concatenate(chain_idx).astype(np.int64),
        keep=np.concatenate(keep),
    )
