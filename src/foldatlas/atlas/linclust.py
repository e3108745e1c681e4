"""Linclust's linear-time candidate pairs (Steinegger & Soeding, Nat. Commun. 2018), as numpy array passes.

Each unit (an entry's sequence, or one chain) contributes the ``m`` distinct k-mers of lowest hash; units sharing a
k-mer form a group whose longest member is its centre, and every other member becomes a candidate pair with it,
with the diagonal of the shared k-mer. Memory and time grow with the number of units times ``m``, not with the
square of the number of units. Used by :mod:`foldatlas.atlas.cluster`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["separated", "window_codes", "kmers", "kmer_hash", "lowest_kmers", "star_edges", "unique_pairs",
           "sort_order", "UNITS_PER_CHUNK"]

UNITS_PER_CHUNK = 4000  # units whose k-mers are hashed and sorted at once (< 2 ** _UNIT_BITS)


def separated(letters: np.ndarray, offsets: np.ndarray, sentinel: int) -> tuple[np.ndarray, np.ndarray]:
    """The units' letters with ``sentinel`` after each (so that no k-mer spans two), and their new offsets."""
    lengths = np.diff(offsets)
    out = np.full(len(letters) + len(lengths), sentinel, np.uint8)
    new_offsets = offsets + np.arange(len(offsets))
    out[np.arange(len(letters)) + np.repeat(np.arange(len(lengths)), lengths)] = letters
    return out, new_offsets


def window_codes(s: np.ndarray, k: int, alphabet: int, n: int) -> np.ndarray:
    """The code (base ``alphabet``, first letter most significant) of the window of ``k`` letters at each of the
    first ``n`` positions, from the codes of windows of 1, 2, 4, ... letters (log k passes, not k)."""
    codes = {1: s.astype(np.int64)}
    width = 1
    while width * 2 <= k:
        codes[width * 2] = codes[width][:-width] * alphabet ** width + codes[width][width:]
        width *= 2
    out, used = None, 0
    for part in sorted(codes, reverse=True):
        if used + part <= k:
            piece = codes[part][used:used + n]
            out = piece.copy() if out is None else out * alphabet ** part + piece
            used += part
    return out


def kmers(letters: np.ndarray, offsets: np.ndarray, alphabet: int, k: int, units: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(code, unit, position)`` of the k-mers of the given units (``letters`` from :func:`separated`: letters
    ``>= alphabet`` end k-mers); ``unit`` is the place in ``units``."""
    spans = np.diff(offsets)[units]  # each unit's letters and its sentinel
    if len(units) and units[-1] - units[0] + 1 == len(units):  # a run of units: one slice
        s = letters[offsets[units[0]]:offsets[units[-1] + 1]]
    else:
        inner = np.arange(int(spans.sum()), dtype=np.int64) - np.repeat(np.r_[0, np.cumsum(spans)[:-1]], spans)
        s = letters[np.repeat(offsets[units], spans) + inner]
    n = len(s) - k + 1
    if n <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    bad = np.zeros(len(s) + 1, np.int32)
    np.cumsum(s >= alphabet, out=bad[1:])
    keep = np.flatnonzero(bad[k:k + n] == bad[:n])
    code = window_codes(s, k, alphabet, n)[keep]
    base = np.r_[0, np.cumsum(spans)[:-1]]
    unit = np.repeat(np.arange(len(units), dtype=np.int64), spans)[keep]
    return code, unit, keep - base[unit]


def kmer_hash(code: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = code.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
    return h


_UNIT_BITS = 13  # units per chunk < 2 ** 13 (the sort key packs unit, hash bits and row in 63 bits)


def _lowest_of(code: np.ndarray, unit: np.ndarray, pos: np.ndarray, h: np.ndarray, m: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Of each unit's k-mers, the ``m`` distinct ones of lowest hash; the units seen and their distinct counts."""
    # one value sort of (unit, the hash's top bits, row) packed in 63 bits: faster than an argsort or a lexsort
    row_bits = max(int(len(h) - 1).bit_length(), 1)
    hash_bits = 63 - _UNIT_BITS - row_bits
    key = ((unit.astype(np.int64) << (hash_bits + row_bits))
           | ((h >> np.uint64(64 - hash_bits)).astype(np.int64) << row_bits)
           | np.arange(len(h), dtype=np.int64))
    key.sort()
    order = key & ((1 << row_bits) - 1)
    key >>= row_bits
    code, unit, pos = code[order], unit[order], pos[order]
    first = np.ones(len(key), bool)
    first[1:] = key[1:] != key[:-1]  # the first occurrence of each k-mer (equal top hash bits: one k-mer)
    code, unit, pos = code[first], unit[first], pos[first]
    starts = np.flatnonzero(np.r_[True, unit[1:] != unit[:-1]]) if len(unit) else np.zeros(0, np.int64)
    sizes = np.diff(np.r_[starts, len(unit)])
    rank = np.arange(len(unit)) - np.repeat(starts, sizes)
    keep = rank < m
    return code[keep], unit[keep], pos[keep], unit[starts], sizes


def lowest_kmers(letters: np.ndarray, offsets: np.ndarray, alphabet: int, k: int, m: int, units: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``m`` distinct k-mers of lowest hash of each of the given units: ``(code, unit, position)``.

    Only k-mers whose hash is below 2.5 times a unit's expected m-th lowest are sorted (a sixth of them for
    300-residue units); a unit left with fewer than ``m`` distinct ones (repeats, short units) is redone whole."""
    parts = []
    for first in range(0, len(units), UNITS_PER_CHUNK):
        chunk = units[first:first + UNITS_PER_CHUNK]
        code, unit, pos = kmers(letters, offsets, alphabet, k, chunk)
        h = kmer_hash(code)
        count = np.bincount(unit, minlength=len(chunk))
        limit = (np.minimum(2.5 * m / np.maximum(count, 1), 1.0) * 2.0 ** 64).clip(0, 2.0 ** 64 - 4096)
        low = np.flatnonzero(h < limit.astype(np.uint64)[unit])
        c2, u2, p2, seen, distinct = _lowest_of(code.take(low), unit.take(low), pos.take(low), h.take(low), m)
        have = np.zeros(len(chunk), np.int64)
        have[seen] = distinct
        # units with k-mers left out and fewer than m kept: redone with all their k-mers
        short = (np.bincount(unit.take(low), minlength=len(chunk)) < count) & (have < m)
        ok = ~short[u2]
        parts.append((c2[ok], chunk[u2[ok]], p2[ok]))
        redo = short[unit]
        if redo.any():
            c3, u3, p3 = _lowest_of(code[redo], unit[redo], pos[redo], h[redo], m)[:3]
            parts.append((c3, chunk[u3], p3))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return tuple(np.concatenate(x) for x in zip(*parts))


def star_edges(code: np.ndarray, entry: np.ndarray, pos: np.ndarray, lengths: np.ndarray,
                can_centre: np.ndarray, can_join: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linclust's edges: in each group of entries sharing a k-mer, every joinable entry -> the group's longest
    entry that may be a centre (ties: the lowest index). Returns unique ``(member, centre, diagonal)``
    (diagonal: member position minus centre position of the shared k-mer)."""
    order = sort_order(code)  # the groups
    code, entry, pos = code[order], entry[order], pos[order]
    new = np.ones(len(code), bool)
    new[1:] = code[1:] != code[:-1]
    sizes = np.diff(np.r_[np.flatnonzero(new), len(code)])
    shared = np.repeat(sizes > 1, sizes)  # k-mers of one entry only link nothing
    entry, pos, new = entry[shared], pos[shared], new[shared]
    starts = np.flatnonzero(new)
    if len(starts) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    group = np.cumsum(new) - 1
    # the centre: may be one, then longest, then first; one integer per row, its maximum per group
    priority = ((can_centre[entry].astype(np.int64) << 62) | (lengths[entry].astype(np.int64) << 36)
                | ((1 << 36) - 1 - entry))
    best = np.maximum.reduceat(priority, starts)
    is_best = priority == best[group]
    centre_of = np.zeros(len(starts), np.int64)
    centre_pos = np.zeros(len(starts), np.int64)
    centre_of[group[is_best]] = entry[is_best]
    centre_pos[group[is_best]] = pos[is_best]
    centre = centre_of[group]
    ok = ~is_best & can_centre[centre] & can_join[entry] & (entry != centre)
    return unique_pairs(entry[ok], centre[ok], pos[ok] - centre_pos[group[ok]])


def sort_order(code: np.ndarray) -> np.ndarray:
    """``np.argsort(code)`` for codes >= 0; by sorting ``code << b | row`` when that fits 63 bits (a value sort
    is about 2.5 times faster than an argsort of 20 million integers here)."""
    row_bits = max(int(len(code) - 1).bit_length(), 1)
    if len(code) == 0 or int(code.max()).bit_length() + row_bits > 63:
        return np.argsort(code)
    packed = np.sort((code << row_bits) | np.arange(len(code), dtype=np.int64))
    return packed & ((1 << row_bits) - 1)


def unique_pairs(member: np.ndarray, centre: np.ndarray, diagonal: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each ``(member, centre)`` pair once (one of its diagonals), sorted by member then centre."""
    width = int(max(member.max(initial=0), centre.max(initial=0))) + 1
    key = member.astype(np.int64) * width + centre
    order = np.argsort(key)
    key, member, centre, diagonal = key[order], member[order], centre[order], diagonal[order]
    first = np.ones(len(key), bool)
    first[1:] = key[1:] != key[:-1]
    return member[first], centre[first], diagonal[first]
