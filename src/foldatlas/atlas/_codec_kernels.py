"""Compiled kernels of :mod:`foldatlas.atlas.codec`'s BinaryCIF writer (numba; loaded on first use, cached on disk).

Each replaces about ten numpy calls on a few thousand values per column, where numpy's per-call overhead was most of
an import's encoding time. The output is byte-identical to the numpy code they replace (tests).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def run_length(values):
    """BinaryCIF's RunLength encoding: (value, count) pairs of the runs, flattened."""
    n = len(values)
    out = np.empty(2 * n, np.int64)
    k = 0
    i = 0
    while i < n:
        j = i + 1
        while j < n and values[j] == values[i]:
            j += 1
        out[k] = values[i]
        out[k + 1] = j - i
        k += 2
        i = j
    return out[:k]


@njit(cache=True, nogil=True)
def integer_packing(values, byte_count):
    """BinaryCIF's IntegerPacking of int values into 1- or 2-byte integers: each value as a run of the type's
    extreme, then the remainder. Returns the packed values (int64) and whether the type is unsigned."""
    unsigned = True
    for v in values:
        if v < 0:
            unsigned = False
            break
    if unsigned:
        hi, lo = (255, 0) if byte_count == 1 else (65535, 0)
    else:
        hi, lo = (127, -128) if byte_count == 1 else (32767, -32768)
    total = 0
    for v in values:
        total += v // hi + 1 if v >= 0 else v // lo + 1
    out = np.empty(total, np.int64)
    k = 0
    for v in values:
        fill = hi if v >= 0 else lo
        count = v // fill + 1
        for _ in range(count - 1):
            out[k] = fill
            k += 1
        out[k] = v - (count - 1) * fill
        k += 1
    return out, unsigned
