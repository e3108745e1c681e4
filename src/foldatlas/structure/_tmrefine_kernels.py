"""Compiled kernels of :mod:`foldatlas.structure.tmrefine` (numba; imported on first use, cached on disk)."""

from __future__ import annotations

import numpy as np
from numba import njit

@njit(cache=True, nogil=True)
def _jacobi_top(n4):
    """Eigenvector of the largest eigenvalue of a symmetric 4x4 matrix (cyclic Jacobi rotations)."""
    a = n4.copy()
    v = np.eye(4)
    for _ in range(30):
        off = 0.0
        for p in range(3):
            for q in range(p + 1, 4):
                off += a[p, q] * a[p, q]
        if off < 1e-18:
            break
        for p in range(3):
            for q in range(p + 1, 4):
                if abs(a[p, q]) < 1e-30:
                    continue
                theta = (a[q, q] - a[p, p]) / (2.0 * a[p, q])
                t = (1.0 if theta >= 0 else -1.0) / (abs(theta) + np.sqrt(theta * theta + 1.0))
                c = 1.0 / np.sqrt(t * t + 1.0)
                s = t * c
                for k in range(4):
                    akp, akq = a[k, p], a[k, q]
                    a[k, p] = c * akp - s * akq
                    a[k, q] = s * akp + c * akq
                for k in range(4):
                    apk, aqk = a[p, k], a[q, k]
                    a[p, k] = c * apk - s * aqk
                    a[q, k] = s * apk + c * aqk
                for k in range(4):
                    vkp, vkq = v[k, p], v[k, q]
                    v[k, p] = c * vkp - s * vkq
                    v[k, q] = s * vkp + c * vkq
    best = 0
    for k in range(1, 4):
        if a[k, k] > a[best, best]:
            best = k
    return v[:, best]


@njit(cache=True, nogil=True)
def _superpose(a, b, sel, n):
    """Rotation ``R`` and translation ``t`` with ``a[i] ~ R b[i] + t`` in least squares over the first ``n`` indices
    of ``sel`` (Horn's quaternion method)."""
    ca = np.zeros(3)
    cb = np.zeros(3)
    for k in range(n):
        i = sel[k]
        for d in range(3):
            ca[d] += a[i, d]
            cb[d] += b[i, d]
    ca /= n
    cb /= n
    s = np.zeros((3, 3))  # s[x, y] = sum mobile_x * ref_y
    for k in range(n):
        i = sel[k]
        for x in range(3):
            bx = b[i, x] - cb[x]
            for y in range(3):
                s[x, y] += bx * (a[i, y] - ca[y])
    n4 = np.empty((4, 4))
    n4[0, 0] = s[0, 0] + s[1, 1] + s[2, 2]
    n4[0, 1] = s[1, 2] - s[2, 1]
    n4[0, 2] = s[2, 0] - s[0, 2]
    n4[0, 3] = s[0, 1] - s[1, 0]
    n4[1, 1] = s[0, 0] - s[1, 1] - s[2, 2]
    n4[1, 2] = s[0, 1] + s[1, 0]
    n4[1, 3] = s[2, 0] + s[0, 2]
    n4[2, 2] = -s[0, 0] + s[1, 1] - s[2, 2]
    n4[2, 3] = s[1, 2] + s[2, 1]
    n4[3, 3] = -s[0, 0] - s[1, 1] + s[2, 2]
    for p in range(4):
        for q in range(p):
            n4[p, q] = n4[q, p]
    q = _jacobi_top(n4)
    q0, q1, q2, q3 = q[0], q[1], q[2], q[3]
    r = np.empty((3, 3))
    r[0, 0] = q0 * q0 + q1 * q1 - q2 * q2 - q3 * q3
    r[0, 1] = 2 * (q1 * q2 - q0 * q3)
    r[0, 2] = 2 * (q1 * q3 + q0 * q2)
    r[1, 0] = 2 * (q1 * q2 + q0 * q3)
    r[1, 1] = q0 * q0 - q1 * q1 + q2 * q2 - q3 * q3
    r[1, 2] = 2 * (q2 * q3 - q0 * q1)
    r[2, 0] = 2 * (q1 * q3 - q0 * q2)
    r[2, 1] = 2 * (q2 * q3 + q0 * q1)
    r[2, 2] = q0 * q0 - q1 * q1 - q2 * q2 + q3 * q3
    t = ca - r @ cb
    return r, t


@njit(cache=True, nogil=True)
def _dist2(a, b, r, t, out):
    """Squared distances between ``a`` and ``R b + t``, pair by pair, into ``out``."""
    for i in range(a.shape[0]):
        s = 0.0
        for d in range(3):
            x = r[d, 0] * b[i, 0] + r[d, 1] * b[i, 1] + r[d, 2] * b[i, 2] + t[d] - a[i, d]
            s += x * x
        out[i] = s


@njit(cache=True, nogil=True)
def _tm_sum(dd, m, d02, lnorm):
    """TM-score of ``m`` squared distances ``dd`` (d0 squared ``d02``), normalised by ``lnorm``."""
    sc = 0.0
    for i in range(m):
        sc += 1.0 / (1.0 + dd[i] / d02)
    return sc / lnorm


@njit(cache=True, nogil=True)
def _close(dd, m, cut, out):
    """Indices of the pairs closer than ``cut`` into ``out`` (``cut`` raised by 0.5 A until there are 3, as TM-score
    does); their count."""
    while True:
        n = 0
        for i in range(m):
            if dd[i] < cut * cut:
                out[n] = i
                n += 1
        if n >= 3 or n == m:
            return n
        cut += 0.5


@njit(cache=True, nogil=True)
def _tm_search(a, b, d0, d0_search, lnorm, step, iters, levels=99):
    """Best TM-score superposition of paired coordinates a ~ R b + t (TM-score's fragment search, simplified)."""
    m = a.shape[0]
    best = -1.0
    best_r = np.eye(3)
    best_t = np.zeros(3)
    if m < 3:
        return 0.0, best_r, best_t
    d02 = d0 * d0
    sel = np.empty(m, np.int64)
    nsel = np.empty(m, np.int64)
    dd = np.empty(m)
    L = m
    while True:
        start = 0
        while True:
            n = L
            for k in range(L):
                sel[k] = start + k
            for it in range(iters):
                r, t = _superpose(a, b, sel, n)
                _dist2(a, b, r, t, dd)
                sc = _tm_sum(dd, m, d02, lnorm)
                if sc > best:
                    best, best_r, best_t = sc, r, t
                nn = _close(dd, m, d0_search, nsel)
                same = nn == n
                if same:
                    for k in range(n):
                        if nsel[k] != sel[k]:
                            same = False
                            break
                if same:
                    break
                for k in range(nn):
                    sel[k] = nsel[k]
                n = nn
            if start == m - L:
                break
            start = min(start + step, m - L)
        levels -= 1
        if L <= 4 or levels <= 0:
            break
        L = max(L // 2, 4)
        if L > m:
            break
    return best, best_r, best_t


@njit(cache=True, nogil=True, inline="always")
def _gap_scores(val, path, i, j, gap_open):
    """Scores of reaching cell (i, j) by a gap in the target (from above) and in the query (from the left); a gap
    that follows an aligned pair opens (TM-align's rule)."""
    h = val[i - 1, j] + (gap_open if path[i - 1, j] else 0.0)
    v = val[i, j - 1] + (gap_open if path[i, j - 1] else 0.0)
    return h, v


@njit(cache=True, nogil=True)
def _nw_tm(q, t2, d02, gap_open, j2i):
    """TM-align's dynamic programming (its ``NWDP_TM``): global alignment scored ``1 / (1 + d^2 / d0^2)`` per pair of
    the query and the superposed target ``t2``, a gap opening after an aligned pair costing ``gap_open``, no end
    gaps; the target's query partner (or -1) in ``j2i``."""
    lq, lt = q.shape[0], t2.shape[0]
    val = np.zeros((lq + 1, lt + 1))
    path = np.zeros((lq + 1, lt + 1), np.bool_)
    for i in range(1, lq + 1):
        for j in range(1, lt + 1):
            s = 0.0
            for d in range(3):
                x = q[i - 1, d] - t2[j - 1, d]
                s += x * x
            dg = val[i - 1, j - 1] + 1.0 / (1.0 + s / d02)
            h, v = _gap_scores(val, path, i, j, gap_open)
            if dg >= h and dg >= v:
                path[i, j] = True
                val[i, j] = dg
            else:
                val[i, j] = h if h >= v else v
    for j in range(lt):
        j2i[j] = -1
    i, j = lq, lt
    while i > 0 and j > 0:
        if path[i, j]:
            j2i[j - 1] = i - 1
            i -= 1
            j -= 1
        else:
            h, v = _gap_scores(val, path, i, j, gap_open)
            if v >= h:
                j -= 1
            else:
                i -= 1


@njit(cache=True, nogil=True)
def _d0(length):
    """TM-score's distance scale for a chain of ``length`` residues (at least 0.5 A)."""
    L = max(length, 19)
    return max(0.5, 1.24 * (L - 15) ** (1.0 / 3.0) - 1.8)


@njit(cache=True, nogil=True)
def _fast_score(a, b, d0, d0s, lnorm):
    """TM-align's quick score of a fixed alignment: superpose all pairs, then twice the pairs within ``d0s`` (+1 A
    the second time); the best TM-score seen."""
    m = a.shape[0]
    sel = np.arange(m)
    dd = np.empty(m)
    r, t = _superpose(a, b, sel, m)
    _dist2(a, b, r, t, dd)
    best = 0.0
    for rnd in range(2):
        best = max(best, _tm_sum(dd, m, d0 * d0, lnorm))
        n = _close(dd, m, d0s + rnd, sel)
        if n < 3:
            break
        r, t = _superpose(a, b, sel, n)
        _dist2(a, b, r, t, dd)
    return max(best, _tm_sum(dd, m, d0 * d0, lnorm))


@njit(cache=True, nogil=True)
def _gapless_shift(q, t, keep, stride):
    """TM-align's first seed: the shift ``k`` (query residue ``i`` on target residue ``i - k``) of the best gapless
    threading. Every ``stride``-th shift is scored by one superposition of all its pairs; the best ``keep`` and
    their neighbours by three (TM-align's fast score)."""
    lq, lt = q.shape[0], t.shape[0]
    lmin = min(lq, lt)
    d0 = _d0(lmin)
    d0s = min(max(d0, 4.5), 8.0)
    min_ali = max(lmin // 2, 5)
    k0 = -lt + min_ali
    nk = lq - min_ali + 1 - k0
    if nk <= 0:
        return 0
    scores = np.full(nk, -1.0)
    dd = np.empty(lmin)
    sel = np.arange(lmin)
    for kk in range(0, nk, stride):
        k = k0 + kk
        i0 = max(0, k)
        i1 = min(lq, lt + k)
        m = i1 - i0
        if m < 3:
            continue
        a = q[i0:i1]
        b = t[i0 - k:i1 - k]
        r, tt = _superpose(a, b, sel, m)
        _dist2(a, b, r, tt, dd[:m])
        scores[kk] = _tm_sum(dd, m, d0 * d0, 1.0)
    order = np.argsort(-scores)
    best, best_k = -1.0, 0
    done = np.zeros(nk, np.bool_)
    for o in range(min(keep, nk)):
        for kk in range(order[o] - stride + 1, order[o] + stride):
            if kk < 0 or kk >= nk or done[kk]:
                continue
            done[kk] = True
            k = k0 + kk
            i0 = max(0, k)
            i1 = min(lq, lt + k)
            if i1 - i0 < 3:
                continue
            sc = _fast_score(q[i0:i1], t[i0 - k:i1 - k], d0, d0s, lmin)
            if sc > best:
                best, best_k = sc, k
    return best_k


@njit(cache=True, nogil=True)
def _gather(q, t, qi, ti):
    """The coordinates of aligned pairs, as two arrays."""
    a = np.empty((len(qi), 3))
    b = np.empty((len(qi), 3))
    for k in range(len(qi)):
        a[k] = q[qi[k]]
        b[k] = t[ti[k]]
    return a, b


@njit(cache=True, nogil=True)
def _iterate(q, t, qi, ti, best, r, tr, d0, d0s, lnorm, step, iterations, gap_open, floor, seen):
    """Best TM-score (normalised by ``lnorm``) of alternating superposition and alignment from one seed, whose
    superposition (``r``, ``tr``) scores ``best``. ``seen`` holds fingerprints of the alignments earlier seeds
    reached (count in ``seen[0]``): meeting one ends this seed's iterations, whose path from there is known."""
    lt = t.shape[0]
    bqi, bti = qi, ti
    j2i = np.empty(lt, np.int64)
    t2 = np.empty((lt, 3))
    for _ in range(iterations):
        for j in range(lt):
            for d in range(3):
                t2[j, d] = r[d, 0] * t[j, 0] + r[d, 1] * t[j, 1] + r[d, 2] * t[j, 2] + tr[d]
        _nw_tm(q, t2, d0 * d0, gap_open, j2i)
        n = 0
        mark = np.int64(0)
        for j in range(lt):
            if j2i[j] >= 0:
                n += 1
                mark = mark * np.int64(1000003) + np.int64(j2i[j] * 7919 + j)
        if n < 3:
            break
        known = False
        for k in range(1, seen[0] + 1):
            if seen[k] == mark:
                known = True
        if known:
            break
        if seen[0] + 1 < len(seen):
            seen[0] += 1
            seen[seen[0]] = mark
        nqi = np.empty(n, np.int64)
        nti = np.empty(n, np.int64)
        n = 0
        for j in range(lt):
            if j2i[j] >= 0:
                nqi[n] = j2i[j]
                nti[n] = j
                n += 1
        a, b = _gather(q, t, nqi, nti)
        sc, r2, tr2 = _tm_search(a, b, d0, d0s, lnorm, step, 8, 2)
        if sc > best + 1e-6:
            best, r, tr, bqi, bti = sc, r2, tr2, nqi, nti
        else:
            break
        if best < floor:  # far behind another seed's result: stop
            break
    return best, bqi, bti


@njit(cache=True, nogil=True)
def _refine_pair(q, qs, t, ts, sq, st, seed_off, first, last, gap_open, step, iterations, keep, stride, deep,
                 behind, low, out):
    """One pair: its seeds (``sq``/``st`` from ``seed_off[first]`` to ``seed_off[last]``, then the best gapless
    threading), each superposed; the best ``deep`` iterated; the final TM-scores, RMSD, pairs, identity and
    superposition written into ``out``."""
    lq, lt = q.shape[0], t.shape[0]
    lmin = min(lq, lt)
    d0 = _d0(lmin)
    d0s = min(max(d0, 4.5), 8.0)
    # every seed superposed (coarse search), the best ``deep`` of them iterated
    nseed = last - first + 1
    starts = np.full(nseed, -1.0)
    rots = np.zeros((nseed, 3, 3))
    trs = np.zeros((nseed, 3))
    seed_q = []
    seed_t = []
    for s in range(nseed):
        if first + s < last:
            qi = sq[seed_off[first + s]:seed_off[first + s + 1]].copy()
            ti = st[seed_off[first + s]:seed_off[first + s + 1]].copy()
        elif nseed > 1 and starts[:nseed - 1].max() < low:  # the given seeds find nothing: no gapless threading
            qi = np.zeros(0, np.int64)
            ti = np.zeros(0, np.int64)
        else:  # TM-align's first seed: the best gapless threading
            k = _gapless_shift(q, t, keep, stride) if lmin >= 5 else 0
            i0, i1 = max(0, k), min(lq, lt + k)
            qi = np.arange(i0, max(i0, i1))
            ti = qi - k
        seed_q.append(qi)
        seed_t.append(ti)
        if len(qi) >= 3:
            a, b = _gather(q, t, qi, ti)
            starts[s], rots[s], trs[s] = _tm_search(a, b, d0, d0s, lmin, step, 8, 2)
    best = -1.0
    bqi = np.zeros(0, np.int64)
    bti = np.zeros(0, np.int64)
    order = np.argsort(-starts)
    seen = np.zeros(deep * iterations + 1, np.int64)
    for o in range(min(deep, nseed)):
        s = order[o]
        if starts[s] < 0:
            break
        sc, aqi, ati = _iterate(q, t, seed_q[s], seed_t[s], starts[s], rots[s], trs[s], d0, d0s, lmin, step,
                                iterations, gap_open, behind * best, seen)
        if sc > best:
            best, bqi, bti = sc, aqi, ati
    if len(bqi) < 3:
        for c in range(out.shape[0]):
            out[c] = 0.0
        out[5] = out[9] = out[13] = 1.0
        return
    a, b = _gather(q, t, bqi, bti)
    d0q = _d0(lq)
    tmq, r, tr = _tm_search(a, b, d0q, min(max(d0q, 4.5), 8.0), lq, step, 8, 99)
    d0t = _d0(lt)
    tmt, _, _ = _tm_search(a, b, d0t, min(max(d0t, 4.5), 8.0), lt, step, 8, 2)
    dd = np.empty(len(bqi))
    _dist2(a, b, r, tr, dd)
    close, ident, sq_sum = 0, 0, 0.0
    for k in range(len(bqi)):
        if dd[k] < 25.0:
            close += 1
            sq_sum += dd[k]
            if qs[bqi[k]] == ts[bti[k]]:
                ident += 1
    out[0] = tmq
    out[1] = tmt
    out[2] = np.sqrt(sq_sum / close) if close else 0.0
    out[3] = close
    out[4] = ident
    for i in range(3):
        for j in range(3):
            out[5 + 3 * i + j] = r[i, j]
        out[14 + i] = tr[i]


@njit(cache=True, nogil=True)
def refine_batch(q, qs, tca, tseq, toff, sq, st, seed_off, seed_first, gap_open, step, iterations, keep, stride,
                 deep, behind, low, lo, hi, out):
    """Refine pairs ``lo`` to ``hi`` (see :func:`foldatlas.structure.tmrefine.refine_tm_scores`)."""
    for p in range(lo, hi):
        t = tca[toff[p]:toff[p + 1]]
        ts = tseq[toff[p]:toff[p + 1]]
        _refine_pair(q, qs, t, ts, sq, st, seed_off, seed_first[p], seed_first[p + 1], gap_open, step, iterations,
                     keep, stride, deep, behind, low, out[p])
