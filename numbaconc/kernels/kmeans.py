"""Lloyd's k-means kernels: assignment (l2 / l1) with chunk-local sums.

How one assignment step stays both fast and exact:

* The *defining* distance of a row x to a centre c is the float64 direct form,
  summed strictly in feature order (``exact_sqeuclidean`` / ``exact_cityblock``,
  compiled without reassociation or FMA contraction, so a numpy loop over the
  features reproduces it bit for bit). Ties in it go to the lowest cluster id.
* Ranking every centre that way would be slow, so a row first gets a cheap
  float32 score per centre (l2: ``|c|^2 - 2 x.c``; l1: the float32 l1 sum;
  uint8 rows are converted on the fly or 128 rows at a time, never copied whole). ``bound[j]`` is a proven
  bound on how far a score can be from the defining distance (float32
  rounding of the centre, the products and the sum, plus the float64 rounding
  of the defining form). Only centres whose interval reaches the smallest
  upper end can win; when there is one, it is the winner. Otherwise (near
  ties, duplicate centres, centres that are data rows) the few candidates are
  re-ranked with the defining distance.
* Most rows need no score at all: Elkan-style bounds (an upper bound to the
  assigned centre, a lower bound to every other one, aged by how far the
  centres moved) decide them, with a safety margin larger than the float64
  rounding, so skipping never changes a label. Rows with many undecided
  centres (and every row in the first iteration) are scored against all
  centres by a blocked kernel (4 rows x 4 centres per pass over the features).
* Sums per cluster are chunk-local (int64 for uint8 rows: exact, updated only
  for relabelled rows) and the API merges them in chunk order, so 1 and 2
  threads give identical bits.
"""

import numpy as np
from numba import prange

from ._jit import jit, jit_parallel

# ------------------------------------------------------------ exact distances


@jit(fastmath=False)
def exact_sqeuclidean(x, c):
    """sum_t (float64(x[t]) - c[t])**2, strictly in order (no FMA, no reordering)."""
    acc = 0.0
    for t in range(x.shape[0]):
        diff = np.float64(x[t]) - c[t]
        acc += diff * diff
    return acc


@jit(fastmath=False)
def exact_cityblock(x, c):
    """sum_t |float64(x[t]) - c[t]|, strictly in order."""
    acc = 0.0
    for t in range(x.shape[0]):
        acc += abs(np.float64(x[t]) - c[t])
    return acc


@jit
def _fast_sqeuclidean(x, c):
    # Reassociated (vectorised) float64 distance: used for inertia / farthest only.
    acc = 0.0
    for t in range(x.shape[0]):
        diff = np.float64(x[t]) - c[t]
        acc += diff * diff
    return acc


@jit
def _fast_cityblock(x, c):
    acc = 0.0
    for t in range(x.shape[0]):
        acc += abs(np.float64(x[t]) - c[t])
    return acc


# ------------------------------------------------------------- row utilities


@jit_parallel
def row_norms(X, norm2, norm1):
    """Per row: float64 sum of squares and sum of absolute values."""
    for i in prange(X.shape[0]):
        s2 = 0.0
        s1 = 0.0
        for t in range(X.shape[1]):
            v = np.float64(X[i, t])
            s2 += v * v
            s1 += abs(v)
        norm2[i] = s2
        norm1[i] = s1


@jit_parallel
def count_nonfinite(X, chunk_rows):
    """Number of NaN/inf entries (float input); chunk counts merged in order."""
    n = X.shape[0]
    n_chunks = (n + chunk_rows - 1) // chunk_rows
    counts = np.zeros(n_chunks, np.int64)
    for ch in prange(n_chunks):
        c = 0
        for i in range(ch * chunk_rows, min(n, (ch + 1) * chunk_rows)):
            for t in range(X.shape[1]):
                if not np.isfinite(X[i, t]):
                    c += 1
        counts[ch] = c
    return counts.sum()


# ------------------------------------------------------------- float32 scores
# Each fills S[k, j] for the rows rows[0:m] of a chunk. S has at least T columns.


@jit
def _score_ids(x, C32, ids, n_ids, l1, out):
    """out[k] = float32 score of row x against C32[ids[k]], for k < n_ids:
    the dot product, or the l1 distance when ``l1``. x is converted to
    float32 on the fly; two to four centres share one pass over the row (a
    short group repeats its first centre: extra products cost less than
    another pass)."""
    k = 0
    while k < n_ids:
        g = min(4, n_ids - k)
        c0 = C32[ids[k]]
        if g == 1:
            out[k] = _pass1(x, c0, l1)
        else:
            c1 = C32[ids[k + 1]]
            c2 = C32[ids[k + 2]] if g > 2 else c0
            c3 = C32[ids[k + 3]] if g > 3 else c0
            a0, a1, a2, a3 = _pass4(x, c0, c1, c2, c3, l1)
            out[k] = a0
            out[k + 1] = a1
            if g > 2:
                out[k + 2] = a2
            if g > 3:
                out[k + 3] = a3
        k += g


@jit
def _pass4(x, c0, c1, c2, c3, l1):
    a0 = np.float32(0.0)
    a1 = np.float32(0.0)
    a2 = np.float32(0.0)
    a3 = np.float32(0.0)
    if l1:
        for t in range(x.shape[0]):
            v = np.float32(x[t])
            a0 += abs(v - c0[t])
            a1 += abs(v - c1[t])
            a2 += abs(v - c2[t])
            a3 += abs(v - c3[t])
    else:
        for t in range(x.shape[0]):
            v = np.float32(x[t])
            a0 += v * c0[t]
            a1 += v * c1[t]
            a2 += v * c2[t]
            a3 += v * c3[t]
    return a0, a1, a2, a3


@jit
def _pass1(x, c0, l1):
    a0 = np.float32(0.0)
    if l1:
        for t in range(x.shape[0]):
            a0 += abs(np.float32(x[t]) - c0[t])
    else:
        for t in range(x.shape[0]):
            a0 += np.float32(x[t]) * c0[t]
    return a0


_DENSE_BLOCK = 128  # rows widened to float32 at a time for the blocked scorer


@jit
def _dense_scores(X, rows, m, C32, l1, S):
    """S[k, j] = float32 score of row rows[k] against centre j, for k < m and
    every j: the dot product, or the l1 distance when ``l1``. Rows are widened
    to float32 a block at a time, then scored 4 rows x 4 centres per pass
    over the features (each loaded value feeds four products)."""
    d = X.shape[1]
    T = C32.shape[0]
    W = np.empty((min(m, _DENSE_BLOCK), d), np.float32)
    for a in range(0, m, _DENSE_BLOCK):
        mb = min(m, a + _DENSE_BLOCK) - a
        for k in range(mb):
            x = X[rows[a + k]]
            w = W[k]
            for t in range(d):
                w[t] = np.float32(x[t])
        j = 0
        while j < T:
            g = min(4, T - j)
            c0 = C32[j]
            c1 = C32[j + 1] if g > 1 else c0
            c2 = C32[j + 2] if g > 2 else c0
            c3 = C32[j + 3] if g > 3 else c0
            k = 0
            if g == 4:
                while k + 3 < mb:
                    if l1:
                        _block44_l1(W, k, c0, c1, c2, c3, S, a + k, j)
                    else:
                        _block44_dot(W, k, c0, c1, c2, c3, S, a + k, j)
                    k += 4
            while k < mb:
                if g == 1:
                    S[a + k, j] = _pass1(W[k], c0, l1)
                else:
                    s0, s1, s2, s3 = _pass4(W[k], c0, c1, c2, c3, l1)
                    S[a + k, j] = s0
                    S[a + k, j + 1] = s1
                    if g > 2:
                        S[a + k, j + 2] = s2
                    if g > 3:
                        S[a + k, j + 3] = s3
                k += 1
            j += g


def _make_block44(l1):
    """The 4 rows x 4 centres scorer, dot products or (``l1``) l1 distances.
    ``l1`` is frozen into the compiled code: a run-time flag made the inner
    loop about 40 % slower (bench: dot products 40 against 28 ns a score)."""

    @jit
    def block44(W, k, c0, c1, c2, c3, S, r, j):
        x = W[k]
        y = W[k + 1]
        z = W[k + 2]
        w = W[k + 3]
        a0 = np.float32(0.0)
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        a3 = np.float32(0.0)
        b0 = np.float32(0.0)
        b1 = np.float32(0.0)
        b2 = np.float32(0.0)
        b3 = np.float32(0.0)
        e0 = np.float32(0.0)
        e1 = np.float32(0.0)
        e2 = np.float32(0.0)
        e3 = np.float32(0.0)
        f0 = np.float32(0.0)
        f1 = np.float32(0.0)
        f2 = np.float32(0.0)
        f3 = np.float32(0.0)
        for t in range(W.shape[1]):
            xv = x[t]
            yv = y[t]
            zv = z[t]
            wv = w[t]
            a0 += abs(xv - c0[t]) if l1 else xv * c0[t]
            a1 += abs(xv - c1[t]) if l1 else xv * c1[t]
            a2 += abs(xv - c2[t]) if l1 else xv * c2[t]
            a3 += abs(xv - c3[t]) if l1 else xv * c3[t]
            b0 += abs(yv - c0[t]) if l1 else yv * c0[t]
            b1 += abs(yv - c1[t]) if l1 else yv * c1[t]
            b2 += abs(yv - c2[t]) if l1 else yv * c2[t]
            b3 += abs(yv - c3[t]) if l1 else yv * c3[t]
            e0 += abs(zv - c0[t]) if l1 else zv * c0[t]
            e1 += abs(zv - c1[t]) if l1 else zv * c1[t]
            e2 += abs(zv - c2[t]) if l1 else zv * c2[t]
            e3 += abs(zv - c3[t]) if l1 else zv * c3[t]
            f0 += abs(wv - c0[t]) if l1 else wv * c0[t]
            f1 += abs(wv - c1[t]) if l1 else wv * c1[t]
            f2 += abs(wv - c2[t]) if l1 else wv * c2[t]
            f3 += abs(wv - c3[t]) if l1 else wv * c3[t]
        S[r, j] = a0
        S[r, j + 1] = a1
        S[r, j + 2] = a2
        S[r, j + 3] = a3
        S[r + 1, j] = b0
        S[r + 1, j + 1] = b1
        S[r + 1, j + 2] = b2
        S[r + 1, j + 3] = b3
        S[r + 2, j] = e0
        S[r + 2, j + 1] = e1
        S[r + 2, j + 2] = e2
        S[r + 2, j + 3] = e3
        S[r + 3, j] = f0
        S[r + 3, j + 1] = f1
        S[r + 3, j + 2] = f2
        S[r + 3, j + 3] = f3

    return block44


_block44_dot = _make_block44(False)
_block44_l1 = _make_block44(True)


# ------------------------------------------------------------ assignment step
#
# Bounds (Elkan's algorithm, made exact): upper[i] >= true distance of row i
# to its assigned centre, lower[i, j] <= true distance to centre j (l2: not
# squared). The API passes move[j] (how far centre j moved, rounded up) and
# half_sep[j] (half the distance from c_j to its nearest other centre,
# rounded down). Centre j is skipped for row i when the bounds put it farther
# than the assigned centre by more than ``margin``, the float64 rounding of
# the defining distance, so a skipped centre can never win or tie. The other
# centres get float32 scores and are selected as described above.


@jit
def _move_row(x, old, new, xq, dsums_c, dcounts_c, dq_c):
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
        a = ch * chunk_rows
        b = min(n, a + chunk_rows)
        dsums_c = dsums[ch]
        dcounts_c = dcounts[ch]
        dq_c = dq[ch]
        if track:
            dsums_c[:] = 0
            dcounts_c[:] = 0
            dq_c[:] = 0.0
        score = np.empty(T)
        bound = np.empty(T)
        every = np.arange(T)  # the candidates of a row scored against every centre
        ids = np.empty(T + 1, np.int64)  # [assigned centre, open centres...]
        dots = np.empty(T + 1, np.float32)
        changed = 0
        refined = 0
        n_scores = 0
        # Rows never assigned, and rows with many undecided centres, are
        # collected in ``rows`` and scored against every centre at the end
        # with the blocked kernel; the others are decided here.
        rows = np.empty(b - a, np.int64)
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
            _score_ids(x, C32, ids, n_sc, False, dots)
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
                _score_ids(x, C32, ids[1:], n_open, False, dots[1:])
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
                if lab != old:
                    changed += 1
                    labels[i] = lab
                    if track:
                        _move_row(x, old, lab, xn2, dsums_c, dcounts_c, dq_c)
            upper[i] = u
            lo = np.inf
            for j in range(T):
                if j != lab:
                    lo = min(lo, lrow[j])
            lmin[i] = lo
        # blocked scoring of the collected rows against every centre
        S = np.empty((m, T), np.float32)
        _dense_scores(X, rows, m, C32, False, S)
        n_scores += m * T
        for k in range(m):
            i = rows[k]
            xn2 = xnorm2[i]
            xn = np.sqrt(xn2)
            for j in range(T):
                score[j] = cnorm2[j] - 2.0 * np.float64(S[k, j])
                bound[j] = tol32 * xn * cnorm[j] + tol64 * (xn2 + cnorm2[j])
            lab, ref = _select(X[i], C, score, bound, every, T, False)
            refined += ref
            lo = np.inf
            for j in range(T):
                lower[i, j] = np.sqrt(max(xn2 + score[j] - bound[j], 0.0))
                if j != lab:
                    lo = min(lo, lower[i, j])
            upper[i] = np.sqrt(max(xn2 + score[lab] + bound[lab], 0.0))
            lmin[i] = lo
            stamp[i] = it
            old = labels[i]
            if old != lab:
                changed += 1
                labels[i] = lab
                if track:
                    _move_row(X[i], old, lab, xn2, dsums_c, dcounts_c, dq_c)
        stats[ch, 0] = changed
        stats[ch, 1] = refined
        stats[ch, 2] = n_scores


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
    for ch in prange(n_chunks):
        a = ch * chunk_rows
        b = min(n, a + chunk_rows)
        dsums_c = dsums[ch]
        dcounts_c = dcounts[ch]
        if track:
            dsums_c[:] = 0
            dcounts_c[:] = 0
        dummy_q = np.zeros(T)
        score = np.empty(T)
        bound = np.empty(T)
        every = np.arange(T)  # the candidates of a row scored against every centre
        ids = np.empty(T, np.int64)
        dists32 = np.empty(T, np.float32)
        changed = 0
        refined = 0
        n_scores = 0
        # rows never assigned and rows with many undecided centres are scored
        # against every centre at the end with the blocked kernel
        rows = np.empty(b - a, np.int64)
        m = 0
        for i in range(a, b):
            old = labels[i]
            if old < 0:
                rows[m] = i
                m += 1
                continue
            x = X[i]
            margin = 2.0 * tol64 * (xnorm1[i] + cmax1)
            lrow = lower[i]
            for j in range(T):
                lrow[j] = (lrow[j] - move[j]) * (1.0 - 1e-12)
            # the inertia needs this distance anyway: it is also the tight bound
            dl = _fast_cityblock(x, C[old])
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
            _score_ids(x, C32, ids, n_open, True, dists32)
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
                dist[i] = _fast_cityblock(x, C[lab])
                changed += 1
                labels[i] = lab
                if track:
                    _move_row(x, old, lab, 0.0, dsums_c, dcounts_c, dummy_q)
        S = np.empty((m, T), np.float32)
        _dense_scores(X, rows, m, C32, True, S)
        n_scores += m * T
        for k in range(m):
            i = rows[k]
            for j in range(T):
                score[j] = np.float64(S[k, j])
                bound[j] = (tol32 + tol64) * (xnorm1[i] + cnorm1[j])
            lab, ref = _select(X[i], C, score, bound, every, T, True)
            refined += ref
            for j in range(T):
                lower[i, j] = max(score[j] - bound[j], 0.0)
            upper[i] = score[lab] + bound[lab]
            dist[i] = _fast_cityblock(X[i], C[lab])
            old = labels[i]
            if old != lab:
                changed += 1
                labels[i] = lab
                if track:
                    _move_row(X[i], old, lab, 0.0, dsums_c, dcounts_c, dummy_q)
        stats[ch, 0] = changed
        stats[ch, 1] = refined
        stats[ch, 2] = n_scores


@jit_parallel
def assigned_dist(X, C, labels, metric_l1, dist):
    """dist[i] = float64 distance (l2: squared) of row i to C[labels[i]]."""
    for i in prange(X.shape[0]):
        if metric_l1:
            dist[i] = _fast_cityblock(X[i], C[labels[i]])
        else:
            dist[i] = _fast_sqeuclidean(X[i], C[labels[i]])


# ------------------------------------------------------------------ k-means++


@jit_parallel
def min_dist_update_l2(X, c, mind):
    """mind[i] = min(mind[i], |x_i - c|^2) (float64, reassociated)."""
    for i in prange(X.shape[0]):
        dd = _fast_sqeuclidean(X[i], c)
        if dd < mind[i]:
            mind[i] = dd


@jit_parallel
def min_dist_update_l1(X, c, mind):
    for i in prange(X.shape[0]):
        dd = _fast_cityblock(X[i], c)
        if dd < mind[i]:
            mind[i] = dd


# ---------------------------------------------------------- cluster sums only


@jit_parallel
def cluster_sums(X, labels, xnorm2, chunk_rows, sums, counts, q):
    """Chunk-local per-cluster row sums, counts and sums of xnorm2 (label >= 0)."""
    n = X.shape[0]
    n_chunks = (n + chunk_rows - 1) // chunk_rows
    for ch in prange(n_chunks):
        sums_c = sums[ch]
        counts_c = counts[ch]
        q_c = q[ch]
        sums_c[:] = 0
        counts_c[:] = 0
        q_c[:] = 0.0
        for i in range(ch * chunk_rows, min(n, (ch + 1) * chunk_rows)):
            lab = labels[i]
            if lab >= 0:
                _move_row(X[i], -1, lab, xnorm2[i], sums_c, counts_c, q_c)


@jit_parallel
def merge_chunk_sums(sums, counts, q, n_chunks, total_sums, total_counts, total_q):
    """total_* += the first n_chunks chunk buffers, each cluster's in chunk
    order (the same bits whatever the thread count)."""
    for j in prange(sums.shape[1]):
        row = total_sums[j]
        for c in range(n_chunks):
            total_counts[j] += counts[c, j]
            total_q[j] += q[c, j]
            src = sums[c, j]
            for t in range(sums.shape[2]):
                row[t] += src[t]


# ------------------------------------------------------ centre separation


@jit_parallel
def nearest_centre_distance(C, metric_l1, out):
    """out[j] = distance (l2 or l1, not squared) from centre j to its nearest
    other centre (inf when there is none), float64."""
    T = C.shape[0]
    for j in prange(T):
        best = np.inf
        for k in range(T):
            if k != j:
                if metric_l1:
                    dd = _fast_cityblock(C[j], C[k])
                else:
                    dd = np.sqrt(_fast_sqeuclidean(C[j], C[k]))
                best = min(best, dd)
        out[j] = best
