"""A structure as ProteinMPNN reads it: backbone atoms per residue, residue numbers, chains, and the positions a
user names on the command line.

Residues are the amino-acid residues with a C-alpha, in file order (:func:`foldatlas.structure.io.ca_atoms`); a
residue without all of N, CA, C and O is kept in the sequence but masked (the network neither reads nor designs
it), as the reference does. Residue numbers are the file's, with a residue that repeats its predecessor's number
(an insertion code) shifted up by one for each repeat, as the reference's ``featurize`` renumbers them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from foldatlas.errors import InvalidOptionError

__all__ = ["Backbone", "backbone", "parse_positions", "tied_groups"]

_BACKBONE = ("N", "CA", "C", "O")


@dataclass(frozen=True)
class Backbone:
    """One structure's residues for ProteinMPNN.

    Attributes
    ----------
    coords : ndarray of float32, shape (L, 4, 3)
        N, CA, C, O (zeros where missing).
    mask : ndarray of float32, shape (L,)
        1 where all four atoms are present.
    residue_index : ndarray of int64, shape (L,)
        Residue numbers, insertion codes renumbered (see the module docstring).
    chain_labels : ndarray of int64, shape (L,)
        Chain number, in order of first appearance.
    chain_ids : ndarray of str, shape (L,)
    res_ids : ndarray of int64, shape (L,)
        The file's residue numbers.
    ins_codes : ndarray of str, shape (L,)
    sequence : str
        One-letter amino acids (X for anything else).
    """

    coords: np.ndarray
    mask: np.ndarray
    residue_index: np.ndarray
    chain_labels: np.ndarray
    chain_ids: np.ndarray
    res_ids: np.ndarray
    ins_codes: np.ndarray
    sequence: str

    def __len__(self) -> int:
        return len(self.sequence)

    @property
    def chains(self) -> list[str]:
        """Chain IDs in order of appearance."""
        return list(dict.fromkeys(self.chain_ids.tolist()))

    def chain_sequences(self) -> dict[str, str]:
        """Each chain's sequence."""
        return {c: "".join(np.array(list(self.sequence))[self.chain_ids == c]) for c in self.chains}

    def codes(self) -> np.ndarray:
        """The sequence as ProteinMPNN's amino-acid indices (int64, shape (L,); 20 = X)."""
        from foldatlas.models.proteinmpnn import MPNN_ALPHABET

        table = np.full(256, 20, dtype=np.int64)
        for k, ch in enumerate(MPNN_ALPHABET):
            table[ord(ch)] = k
        return table[np.frombuffer(self.sequence.encode("ascii"), dtype=np.uint8)]

    def select(self, chains: list[str]) -> Backbone:
        """The residues of some chains only (in the structure's order)."""
        keep = np.isin(self.chain_ids, chains)
        seq = "".join(np.array(list(self.sequence))[keep]) if keep.any() else ""
        return Backbone(self.coords[keep], self.mask[keep], self.residue_index[keep], self.chain_labels[keep],
                        self.chain_ids[keep], self.res_ids[keep], self.ins_codes[keep], seq)


def backbone(atoms) -> Backbone:
    """The :class:`Backbone` of a biotite ``AtomArray`` (its first model).

    Raises
    ------
    InvalidOptionError
        If the structure has no amino-acid residue with a C-alpha.
    """
    from foldatlas.seq.alphabet import RESTYPE_3TO1
    from foldatlas.structure.io import residue_atoms

    ca_index, xyz = residue_atoms(atoms, _BACKBONE)
    if not ca_index.size:
        raise InvalidOptionError("the structure has no amino-acid residue with a C-alpha to design")
    ca = atoms[ca_index]
    stacked = np.stack([xyz[name] for name in _BACKBONE], axis=1)  # [L, 4, 3], NaN where missing
    present = np.isfinite(stacked).all(axis=2)
    coords = np.nan_to_num(stacked).astype(np.float32)
    chain_ids = np.asarray(ca.chain_id).astype(str)
    labels = {c: k for k, c in enumerate(dict.fromkeys(chain_ids.tolist()))}
    res_ids = np.asarray(ca.res_id, dtype=np.int64)
    renumbered, count = [], 0
    for k, r in enumerate(res_ids):  # the reference's featurize: a repeated number moves everything after it up
        if k and r == res_ids[k - 1]:
            count += 1
        renumbered.append(r + count)
    return Backbone(coords, present.all(axis=1).astype(np.float32), np.array(renumbered, dtype=np.int64),
                    np.array([labels[c] for c in chain_ids], dtype=np.int64), chain_ids, res_ids,
                    np.asarray(ca.ins_code).astype(str), "".join(RESTYPE_3TO1.get(r, "X") for r in ca.res_name))


_POSITION = re.compile(r"^([A-Za-z0-9]{1,4}?)(-?\d+)([A-Za-z]?)(?:-(-?\d+)([A-Za-z]?))?$")


def parse_positions(text: str | None, structure: Backbone, option: str = "--fixed") -> np.ndarray:
    """Residue positions named like ``A10-25,B3,B7A`` (chain, residue number, optional insertion code; ranges
    inclusive, in file order) as a boolean mask over the structure's residues.

    Raises
    ------
    InvalidOptionError
        If an item is malformed or names a residue the structure does not have.
    """
    out = np.zeros(len(structure), dtype=bool)
    if not text:
        return out
    for item in (x.strip() for x in text.split(",")):
        m = _POSITION.match(item)
        if not item or not m:
            raise InvalidOptionError(f"{option}: {item!r} is not a residue or range like A10, A10-25 or B7A")
        chain, start, ins, stop, stop_ins = m.groups()
        in_chain = np.flatnonzero(structure.chain_ids == chain)
        if not in_chain.size:
            raise InvalidOptionError(f"{option}: no chain {chain} (chains: {', '.join(structure.chains)})")

        def find(number: str, code: str) -> int:
            hit = in_chain[(structure.res_ids[in_chain] == int(number)) & (structure.ins_codes[in_chain] == code)]
            if not hit.size:
                raise InvalidOptionError(f"{option}: chain {chain} has no residue {number}{code}")
            return int(hit[0])

        first = find(start, ins)
        last = find(stop, stop_ins) if stop is not None else first
        if last < first:
            raise InvalidOptionError(f"{option}: range {item} runs backwards")
        out[first:last + 1] = True
    return out


def tied_groups(text: str | None, structure: Backbone, homo_oligomer: bool = False) -> list[list[int]]:
    """Groups of positions that must get the same amino acid: ``A10,B10|A11,B11`` (groups split by ``|``), or with
    ``homo_oligomer`` every residue tied to the residues at the same place in the other chains (all chains must
    have one sequence)."""
    if homo_oligomer:
        chains = structure.chain_sequences()
        if len(chains) < 2 or len(set(chains.values())) != 1:
            raise InvalidOptionError("--homo-oligomer needs two or more chains with the same sequence")
        members = [np.flatnonzero(structure.chain_ids == c) for c in chains]
        return [[int(m[k]) for m in members] for k in range(len(members[0]))]
    if not text:
        return []
    groups = []
    for part in text.split("|"):
        positions = np.flatnonzero(parse_positions(part, structure, "--tied"))
        if len(positions) < 2:
            raise InvalidOptionError(f"--tied: group {part!r} names fewer than two residues")
        groups.append([int(p) for p in positions])
    seen: set[int] = set()
    for g in groups:
        if seen & set(g):
            raise InvalidOptionError("--tied: a residue is in two groups")
        seen.update(g)
    return groups
