"""Protein records: validation of sequences and complexes split on ``:``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from foldatlas.errors import InvalidSequenceError
from foldatlas.seq.alphabet import RESTYPES_WITH_X, SUBSTITUTIONS

__all__ = ["Record", "clean_sequence", "make_record", "safe_names"]

_VALID = frozenset(RESTYPES_WITH_X)
_WHITESPACE = re.compile(r"\s+")
CHAIN_IDS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True)
class Record:
    """One folding job: a named protein of one or more chains.

    Attributes
    ----------
    name : str
        The FASTA header's first word (or the name given with a raw sequence).
    description : str
        The full header line, without ``>``.
    chains : tuple of str
        Validated chain sequences over ``ACDEFGHIKLMNPQRSTVWYX``.
    substitutions : tuple of (chain, position, original, folded_as)
        Nonstandard letters replaced by the alphabet policy (1-based positions).
    """

    name: str
    chains: tuple[str, ...]
    description: str = ""
    substitutions: tuple[tuple[str, int, str, str], ...] = field(default=())

    @property
    def length(self) -> int:
        """Number of residues over all chains (linkers excluded)."""
        return sum(len(c) for c in self.chains)

    @property
    def sequence(self) -> str:
        """Chains joined by ``:``, the input notation of a complex."""
        return ":".join(self.chains)

    @property
    def chain_ids(self) -> tuple[str, ...]:
        """Chain identifiers A, B, ... in input order."""
        return tuple(CHAIN_IDS[i] for i in range(len(self.chains)))


def clean_sequence(raw: str, record: str = "sequence") -> tuple[tuple[str, ...], tuple]:
    """Validate a sequence (chains separated by ``:``) under the alphabet policy.

    Parameters
    ----------
    raw : str
        The sequence as given; whitespace is ignored and case folded.
    record : str
        The record's name, used in error messages.

    Returns
    -------
    chains : tuple of str
        The validated chains.
    substitutions : tuple
        ``(chain_id, position, original, folded_as)`` for each replaced letter.

    Raises
    ------
    InvalidSequenceError
        If the sequence, or one of its chains, is empty or holds a character that
        is not a residue; the message names the record and the 1-based position.
    """
    text = _WHITESPACE.sub("", raw).upper()
    if text.endswith("*"):
        text = text[:-1]
    if not text:
        raise InvalidSequenceError(f"record '{record}': empty sequence")
    parts = text.split(":")
    if len(parts) > len(CHAIN_IDS):
        raise InvalidSequenceError(f"record '{record}': {len(parts)} chains; at most {len(CHAIN_IDS)} are supported")
    chains: list[str] = []
    subs: list[tuple[str, int, str, str]] = []
    offset = 0
    for index, part in enumerate(parts):
        chain_id = CHAIN_IDS[index]
        if not part:
            raise InvalidSequenceError(
                f"record '{record}': chain {chain_id} is empty (check the ':' separators)"
            )
        letters = []
        for pos, letter in enumerate(part, start=1):
            if letter in _VALID:
                letters.append(letter)
            elif letter in SUBSTITUTIONS:
                letters.append(SUBSTITUTIONS[letter])
                subs.append((chain_id, pos, letter, SUBSTITUTIONS[letter]))
            else:
                where = f"position {offset + pos}" + (f" (chain {chain_id} position {pos})" if len(parts) > 1 else "")
                raise InvalidSequenceError(
                    f"record '{record}': invalid residue {letter!r} at {where}; "
                    f"allowed are the 20 standard amino acids, X, and B/Z/U/O"
                )
        chains.append("".join(letters))
        offset += len(part)
    return tuple(chains), tuple(subs)


def make_record(name: str, sequence: str, description: str = "") -> Record:
    """Build a validated :class:`Record` from a name and a raw sequence.

    Examples
    --------
    >>> make_record("dimer", "MKT:gav").chains
    ('MKT', 'GAV')
    """
    chains, subs = clean_sequence(sequence, record=name)
    return Record(name=name, chains=chains, description=description or name, substitutions=subs)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_names(names: list[str], max_length: int = 100) -> list[str]:
    """Turn record names into safe, unique file names (case-insensitively unique).

    Examples
    --------
    >>> safe_names(["sp|P1|X Y", "a/b", "A/B", ""])
    ['sp_P1_X_Y', 'a_b', 'A_B_2', 'record_4']
    """
    out: list[str] = []
    seen: set[str] = set()
    for i, name in enumerate(names, start=1):
        base = _UNSAFE.sub("_", name).strip("._-")[:max_length] or f"record_{i}"
        candidate, n = base, 1
        while candidate.lower() in seen:
            n += 1
            candidate = f"{base}_{n}"
        seen.add(candidate.lower())
        out.append(candidate)
    return out
