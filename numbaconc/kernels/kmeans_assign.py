"""One Lloyd assignment step, l2 and l1: exact labels, Elkan-style bounds,
chunk-local sums (see ``kernels.kmeans``).

Bounds (Elkan's algorithm, made exact): upper[i] >= true distance of row i
to its assigned centre, lower[i, j] <= true distance to centre j (l2: not
squared). The API passes move[j] (how far centre j moved, rounded up) and
half_sep[j] (half the distance from c_j to its nearest other centre,
rounded down). Centre j is skipped for row i when the bounds put it farther
than the assigned centre by more than ``margin``, the float64 rounding of
the defining distance, so a skipped centre can never win or tie. The other
centres get float32 scores and are selected as described in ``kernels.kmeans``.
"""

import numpy as np
from numba import prange

from ._jit import jit, jit_parallel
from .kmeans_distance import (dense_scores, exact_cityblock, exact_sqeuclidean, fast_cityblock,
                              score_ids)


@jit
def move_row(x, old, new, xq, dsums_c, dcounts_c, dq_c):
    if old >= 0:
        dcounts_c[old] -= 1
        dq_c[old] -= xq
        row = dsums_c[old]
        for t in range(x.shape[0]):
            row[t] -= x[t]
    dcounts_c[new] += 1
    dq_c[new] += xq
    row = dsums_c[new]
    for t in range(x.shape[0]):
        row[t] += x[t]


@jit
def _select(x, C, score, bound, ids, n, l1):
    """Winner among the candidate centres ids[0:n] (any order): the only one
    whose score interval reaches the smallest upper end, else the exact
    (defining) minimum, lowest id on ties."""
    best_hi = np.inf
    for k in range(n):
        j = ids[k]
        if score[j] + bound[j] < best_hi:
            best_hi = score[j] + bound[j]
    lab = -1
    n_cand = 0
    for k in range(n):
        j = ids[k]
        if score[j] - bound[j] <= best_hi:
            n_cand += 1
            if lab < 0 or j < lab:
                lab = j
    if n_cand > 1:
        best = np.inf
        lab = -1
        for k in range(n):
            j = ids[k]
            if score[j] - bound[j] <= best_hi:
                if l1:
                    dj = exact_cityblock(x, C[j])
                else:
                    dj = exact_sqeuclidean(x, C[j])
                if dj < best or (dj == best and j < lab):
                    best = dj
                    lab = j
    return lab, n_cand > 1


@jit
def _relabel(x, i, old, lab, xq, labels, track, dsums_c, dcounts_c, dq_c):
    """Row i goes from cluster ``old`` to ``lab`` (chunk sums follow when
    ``track``); returns 1 when it moved, else 0."""
    if lab == old:
        return 0
    labels[i] = lab
    if track:
        move_row(x, old, lab, xq, dsums_c, dcounts_c, dq_c)
    return 1


@jit
def _chunk_start(ch, chunk_rows, n, T, track, dsums, dcounts, dq):
    """Chunk ``ch``'s rows [a, b), its rows of the sum buffers (zeroed when
    ``track``), and the per-row scratch (score, bound: float64 per centre;
    every: 0 .. T-1, the candidates of a row scored against every centre;
    rows: the rows left to the blocked step)."""
    a = ch * chunk_rows
    b = min(n, a + chunk_rows)
    dsums_c = dsums[ch]
    dcounts_c = dcounts[ch]
    dq_c = dq[ch]
    if track:
        dsums_c[:] = 0
        dcounts_c[:] = 0
        dq_c[:] = 0.0
    return (a, b, dsums_c, dcounts_c, dq_c, np.empty(T), np.empty(T), np.arange(T),
            np.empty(b - a, np.int64))


@jit
def _store_stats(stats, ch, changed, refined, n_scores):
    stats[ch, 0] = changed
    stats[ch, 1] = refined
    stats[ch, 2] = n_scores


def _make_assign_dense(l1):
    """The blocked step of one assignment (``l1`` frozen into the code)."""

    @jit
    def assign_dense(X, C, C32, rows, m, cnorm, cnorm_root, xnorm, tol32, tol64, it, labels,
                     upper, lower, lmin, stamp, dist, track, dsums_c, dcounts_c, dq_c, score,
                     bound, every):
        """Rows rows[:m] scored against every centre with the blocked kernel,
        then labelled, their bounds and the chunk sums updated; returns
        (n_changed, n_refined). l2: ``cnorm`` |c|^2, ``cnorm_root`` |c|,
        ``xnorm`` |x|^2, bounds kept lazily (``lmin``, ``stamp`` at ``it``),
        ``dist`` unused. l1: ``cnorm`` = ``cnorm_root`` = |c|_1, ``xnorm``
        |x|_1, ``dist[i]`` = the row's l1 distance to its new centre,
        ``lmin`` / ``stamp`` / ``it`` unused."""
        T = C.shape[0]
        S = np.empty((m, T), np.float32)
        dense_scores(X, rows, m, C32, l1, S)
        changed = 0
        refined = 0
        for k in range(m):
            i = rows[k]
            xn2 = xnorm[i]
            if l1:
                for j in range(T):
                    score[j] = np.float64(S[k, j])
                    bound[j] = (tol32 + tol64) * (xn2 + cnorm[j])
            else:
                xn = np.sqrt(xn2)
                for j in range(T):
                    score[j] = cnorm[j] - 2.0 * np.float64(S[k, j])
                    bound[j] = tol32 * xn * cnorm_root[j] + tol64 * (xn2 + cnorm[j])
            lab, ref = _select(X[i], C, score, bound, every, T, l1)
            refined += ref
            if l1:
                for j in range(T):
                    lower[i, j] = max(score[j] - bound[j], 0.0)
                upper[i] = score[lab] + bound[lab]
                dist[i] = fast_cityblock(X[i], C[lab])
                xq = 0.0
            else:
                lo = np.inf
                for j in range(T):
                    lower[i, j] = np.sqrt(max(xn2 + score[j] - bound[j], 0.0))
                    if j != lab:
                        lo = min(lo, lower[i, j])
                upper[i] = np.sqrt(max(xn2 + score[lab] + bound[lab], 0.0))
                lmin[i] = lo
                stamp[i] = it
                xq = xn2
            changed += _relabel(X[i], i, labels[i], lab, xq, labels, track, dsums_c, dcounts_c,
                                dq_c)
        return changed, refined

    return assign_dense


_assign_dense_l2 = _make_assign_dense(False)
_assign_dense_l1 = _make_assign_dense(True)


@jit_parallel
def lloyd_assign_l2(X, C, C32, cnorm2, xnorm2, tol32, tol64, cum, it, half_sep, chunk_rows,
                    labels, upper, lower, lmin, stamp, track, dsums, dcounts, dq, stats):
    """One l2 assignment (labels and bounds updated in place).

    Chunk ``ch`` covers rows [ch*chunk_rows, (ch+1)*chunk_rows) and writes only
    row ``ch`` of ``dsums``/``dcounts``/``dq`` (changes of the per-cluster row
    sums, counts and sums of |x|^2 caused by relabelled rows; only when
    ``track``) and ``stats[ch] = (n_changed, n_refined, n_scores)``. Labels < 0
    mean "not assigned yet" (all centres are scored, blocked). Score bound:
    |score_j - D_j| <= tol32 |x||c_j| + tol64 (|x|^2 + |c_j|^2), with
    score_j = |c_j|^2 - 2 x.c_j and D_j - |x|^2 the defining squared distance.

    Bounds are lazy: upper/lower/lmin of row i hold at iteration stamp[i];
    cum[k, j] is how far centre j moved before iteration k (cumulative, rounded
    up), so they are aged on read. A row decided by its upper bound and lmin
    (the smallest lower bound of the other centres) costs O(1) and writes nothing.
    """
    n = X.shape[0]
    T = C.shape[0]
    cmax2 = 0.0
    for j in range(T):
        cmax2 = max(cmax2, cnorm2[j])
    cnorm = np.sqrt(cnorm2)
    # age[s, j]: how far centre j may have moved since iteration s (rounded up)
    age = np.empty((it + 1, T))
    maxage = np.empty(it + 1)
    for st in range(it + 1):
        mx = 0.0
        for j in range(T):
            age[st, j] = (cum[it, j] - cum[st, j]) + 1e-12 * cum[it, j]
            mx = max(mx, age[st, j])
        maxage[st] = mx
    n_chunks = (n + chunk_rows - 1) // chunk_rows
    for ch in prange(n_chunks):
        a, b, dsums_c, dcounts_c, dq_c, score, bound, every, rows = _chunk_start(
            ch, chunk_rows, n, T, track, dsums, dcounts, dq)
        ids = np.empty(T + 1, np.int64)  # [assigned centre, open centres...]
        dots = np.empty(T + 1, np.float32)
        changed = refined = n_scores = 0
        # Rows never assigned, and rows with many undecided centres, are
        # collected in ``rows`` and scored against every centre at the end
        # with the blocked kernel; the others are decided here.
        m = 0
        for i in range(a, b):
            old = labels[i]
            if old < 0:
                rows[m] = i
                m += 1
                continue
            st = stamp[i]
            xn2 = xnorm2[i]
            margin = 2.0 * tol64 * (xn2 + cmax2)
            u = upper[i] + age[st, old]
            hs = half_sep[old]
            if hs > 0.0 and u * u + margin < hs * hs:
                continue
            lb = lmin[i] - maxage[st]
            if lb > 0.0 and u * u + margin < lb * lb:
                continue
            # bring the row's bounds to this iteration; list the centres they
            # do not rule out (ids[1:]), and keep the smallest bound for lmin
            lrow = lower[i]
            uu = u * u + margin
            n_open = 0
            lo_other = np.inf
            for j in range(T):
                lj = lrow[j] - age[st, j]
                lrow[j] = lj
                if j != old:
                    lo_other = min(lo_other, lj)
                    if not (lj > 0.0 and uu < lj * lj):
                        n_open += 1
                        ids[n_open] = j
            stamp[i] = it
            if n_open == 0:
                upper[i] = u
                lmin[i] = lo_other
                continue
            if 2 * n_open >= T and T >= 8:
                # half the centres still open (typically the second iteration,
                # after the first big moves): tightening the upper bound would
                # rarely bring it under the blocked kernel's threshold
                rows[m] = i
                m += 1
                continue
            x = X[i]
            xn = np.sqrt(xn2)
            ids[0] = old
            # up to three open centres: score them with the assigned one in a
            # single pass over the row; more: score the assigned one first and
            # let the tightened upper bound rule some out
            n_sc = n_open + 1 if n_open <= 3 else 1
            score_ids(x, C32, ids, n_sc, False, dots)
            n_scores += n_sc
            s_old = cnorm2[old] - 2.0 * np.float64(dots[0])
            e_old = tol32 * xn * cnorm[old] + tol64 * (xn2 + cnorm2[old])
            u = np.sqrt(max(xn2 + s_old + e_old, 0.0))
            lrow[old] = np.sqrt(max(xn2 + s_old - e_old, 0.0))
            score[old] = s_old
            bound[old] = e_old
            if n_sc == 1:
                uu = u * u + margin
                n_open = 0
                for j in range(T):
                    lj = lrow[j]
                    if j != old and not (lj > 0.0 and uu < lj * lj):
                        n_open += 1
                        ids[n_open] = j
                if 4 * n_open >= T and T >= 8:
                    rows[m] = i
                    m += 1
                    continue
                score_ids(x, C32, ids[1:], n_open, False, dots[1:])
                n_scores += n_open
            lab = old
            if n_open > 0:
                for k in range(1, n_open + 1):
                    j = ids[k]
                    score[j] = cnorm2[j] - 2.0 * np.float64(dots[k])
                    bound[j] = tol32 * xn * cnorm[j] + tol64 * (xn2 + cnorm2[j])
                    lrow[j] = np.sqrt(max(xn2 + score[j] - bound[j], 0.0))
                lab, ref = _select(x, C, score, bound, ids, n_open + 1, False)
                refined += ref
                u = np.sqrt(max(xn2 + score[lab] + bound[lab], 0.0))
                changed += _relabel(x, i, old, lab, xn2, labels, track, dsums_c, dcounts_c, dq_c)
            upper[i] = u
            lo = np.inf
            for j in range(T):
                if j != lab:
                    lo = min(lo, lrow[j])
            lmin[i] = lo
        # blocked scoring of the collected rows against every centre
        d_changed, d_refined = _assign_dense_l2(X, C, C32, rows, m, cnorm2, cnorm, xnorm2, tol32,
                                                tol64, it, labels, upper, lower, lmin, stamp,
                                                upper, track, dsums_c, dcounts_c, dq_c, score,
                                                bound, every)
        _store_stats(stats, ch, changed + d_changed, refined + d_refined, n_scores + m * T)


@jit_parallel
def lloyd_assign_l1(X, C, C32, cnorm1, xnorm1, tol32, tol64, move, half_sep, chunk_rows,
                    labels, upper, lower, track, dsums, dcounts, dist, stats):
    """One l1 ("cityblock") assignment; same contract as ``lloyd_assign_l2``
    (bounds are l1 distances), plus ``dist[i]`` = float64 l1 distance of every
    row to its new centre (for the inertia). Score bound: |score_j - D_j| <=
    (tol32 + tol64) (|x|_1 + |c_j|_1)."""
    n = X.shape[0]
    T = C.shape[0]
    cmax1 = 0.0
    for j in range(T):
        cmax1 = max(cmax1, cnorm1[j])
    n_chunks = (n + chunk_rows - 1) // chunk_rows
    no_q = np.zeros((n_chunks, T))  # l1 keeps no sums of |x|^2
    for ch in prange(n_chunks):
        a, b, dsums_c, dcounts_c, dummy_q, score, bound, every, rows = _chunk_start(
            ch, chunk_rows, n, T, track, dsums, dcounts, no_q)
        ids = np.empty(T, np.int64)
        dists32 = np.empty(T, np.float32)
        changed = refined = n_scores = m = 0
        for i in range(a, b):  # rows[:m]: left to the blocked kernel, as in l2
            if labels[i] < 0:
                rows[m] = i
                m += 1
                continue
            old = labels[i]
            x = X[i]
            margin = 2.0 * tol64 * (xnorm1[i] + cmax1)
            lrow = lower[i]
            for j in range(T):
                lrow[j] = (lrow[j] - move[j]) * (1.0 - 1e-12)
            # the inertia needs this distance anyway: it is also the tight bound
            dl = fast_cityblock(x, C[old])
            dist[i] = dl
            u = dl + tol64 * (xnorm1[i] + cnorm1[old])
            upper[i] = u
            lrow[old] = max(dl - tol64 * (xnorm1[i] + cnorm1[old]), 0.0)
            if u + margin < half_sep[old]:
                continue
            n_open = 0
            for j in range(T):
                if j != old and not (u + margin < lrow[j]):
                    ids[n_open] = j
                    n_open += 1
            if n_open == 0:
                continue
            if 4 * n_open >= T and T >= 8:
                rows[m] = i
                m += 1
                continue
            score_ids(x, C32, ids, n_open, True, dists32)
            for k in range(n_open):
                j = ids[k]
                score[j] = np.float64(dists32[k])
                bound[j] = (tol32 + tol64) * (xnorm1[i] + cnorm1[j])
                lrow[j] = max(score[j] - bound[j], 0.0)
            n_scores += n_open
            score[old] = dl
            bound[old] = tol64 * (xnorm1[i] + cnorm1[old])
            ids[n_open] = old
            lab, ref = _select(x, C, score, bound, ids, n_open + 1, True)
            refined += ref
            if lab != old:
                upper[i] = score[lab] + bound[lab]
                dist[i] = fast_cityblock(x, C[lab])
            changed += _relabel(x, i, old, lab, 0.0, labels, track, dsums_c, dcounts_c, dummy_q)
        # blocked scoring of the collected rows (lmin / stamp unused for l1)
        d_changed, d_refined = _assign_dense_l1(X, C, C32, rows, m, cnorm1, cnorm1, xnorm1, tol32,
                                                tol64, 0, labels, upper, lower, upper, labels,
                                                dist, track, dsums_c, dcounts_c, dummy_q, score,
                                                bound, every)
        _store_stats(stats, ch, changed + d_changed, refined + d_refined, n_scores + m * T)
