"""Compiled kernels of :mod:`foldatlas.structure.io`'s fixed-column PDB reader (numba; loaded on first use, cached
on disk). Each replaces several numpy calls per column, whose overhead was most of the reader's time on files of a
few thousand atoms; the results are identical to the numpy code they replace (tests).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def first_appearance(codes):
    """Rank of each row of ``codes`` (n, w <= 9) among the distinct rows in order of first appearance, and the first
    row of each: ``(True, ranks, first)``; ``(False, ...)`` where a code is not ASCII (packed keys would not
    fit)."""
    n, w = codes.shape
    ranks = np.empty(n, np.int64)
    keys = np.empty(64, np.int64)
    first = np.empty(64, np.int64)
    m = 0
    last_key, last_rank = np.int64(-1), np.int64(-1)
    for i in range(n):
        key = np.int64(0)
        for c in range(w):
            v = np.int64(codes[i, c])
            if v >= 128:
                return False, ranks, first[:0].copy()
            key = key * 128 + v
        if key == last_key:
            ranks[i] = last_rank
            continue
        found = -1
        for k in range(m):
            if keys[k] == key:
                found = k
                break
        if found < 0:
            if m == len(keys):
                keys = np.concatenate((keys, np.empty(m, np.int64)))
                first = np.concatenate((first, np.empty(m, np.int64)))
            keys[m] = key
            first[m] = i
            found = m
            m += 1
        ranks[i] = found
        last_key, last_rank = key, np.int64(found)
    return True, ranks, first[:m].copy()


@njit(cache=True, nogil=True)
def atom_records(buf):
    """The ATOM/HETATM lines of a PDB text's first model (``buf``: its ASCII bytes) as an (n, 80) array, lines
    padded with spaces or cut at 80: ``(0, records)``; ``(1, ...)`` without atoms, ``(2, ...)`` when an atom line is
    shorter than 78 columns."""
    n = len(buf)
    lines = 1
    for b in buf:
        if b == 10 or b == 13:
            lines += 1
    starts = np.empty(lines, np.int64)
    ends = np.empty(lines, np.int64)
    m = 0
    i = 0
    while i <= n:
        j = i
        while j < n and buf[j] != 10 and buf[j] != 13:
            j += 1
        if j - i >= 6:
            atom = (buf[i] == 65 and buf[i + 1] == 84 and buf[i + 2] == 79 and buf[i + 3] == 77
                    and buf[i + 4] == 32 and buf[i + 5] == 32)  # "ATOM  "
            hetatm = (buf[i] == 72 and buf[i + 1] == 69 and buf[i + 2] == 84 and buf[i + 3] == 65
                      and buf[i + 4] == 84 and buf[i + 5] == 77)  # "HETATM"
            if atom or hetatm:
                starts[m] = i
                ends[m] = j
                m += 1
            elif m and (buf[i] == 69 and buf[i + 1] == 78 and buf[i + 2] == 68 and buf[i + 3] == 77
                        and buf[i + 4] == 68 and buf[i + 5] == 76):  # "ENDMDL" after the first model's atoms
                break
        i = j + 1
    out = np.full((m, 80), 32, np.uint8)
    if m == 0:
        return 1, out
    for k in range(m):
        if ends[k] - starts[k] < 78:
            return 2, out
    for k in range(m):
        for c in range(min(80, ends[k] - starts[k])):
            out[k, c] = buf[starts[k] + c]
    return 0, out


@njit(cache=True, nogil=True)
def fixed_number(raw, start, stop, decimals):
    """A right-aligned decimal column (``%w.df``, or ``%wd`` without decimals) of an (n, 80) byte array as integers
    (the decimal point dropped): ``(True, values)``, or ``(False, ...)`` when a field is not one block at the right
    of an optional minus sign and digits, or has no digit, or its point is not in place."""
    n = raw.shape[0]
    point = stop - decimals - 1 if decimals else -1
    out = np.zeros(n, np.int64)
    for r in range(n):
        if decimals and raw[r, point] != 46:
            return False, out
        started = False
        minus = False
        digits = 0
        value = np.int64(0)
        for c in range(start, stop):
            if c == point:
                continue
            ch = raw[r, c]
            if not started:
                if ch == 32:
                    continue
                started = True
                if ch == 45:
                    minus = True
                    continue
            if ch < 48 or ch > 57:
                return False, out
            value = value * 10 + (ch - 48)
            digits += 1
        if digits == 0:
            return False, out
        out[r] = -value if minus else value
    return True, out
