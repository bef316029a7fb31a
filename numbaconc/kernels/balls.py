"""Numba kernels for the union-of-balls greedy (METHOD.md section 4): l2
balls, and l-inf balls ("cubes", the region of Zhang and Evans 2022).

The ranking key of a pair is its squared distance under l2 and its distance
under l-inf (``linf``); radii are keys, and "within r + eps" is
``key <= grown_threshold(r_key, eps, linf)``. The label-uncertainty
constraint (numbaconc.lu) enters as integer weights ``lw`` (quantised LU) and
an integer threshold ``G``: a candidate radius counts only if its newly
covered points have ``sum(lw) >= G * count`` (G = 0: no constraint, the same
greedy exactly).

Pair keys and the grown threshold are in ``ball_geometry``.

No kernel validates or allocates in a hot loop; results go to per-row (per
candidate) output slots, so they do not depend on the thread count. Cheap
kernels (linear in n per call) are serial: parallel ones cost compile time.
"""

import numpy as np
from numba import prange

from ._jit import jit, jit_parallel
from .ball_geometry import grown_threshold, pair_key

BIG = np.int64(1) << np.int64(62)  # "no value" for int64 gains / bounds


@jit_parallel
def prepare_lists(X, rows, idx, dist, d2, lim, recompute, integer, rel_slack, linf, n):
    """Exact squared distances along each neighbour list, rows sorted by
    (d2, index), and ``lim[s]``: every point with d2 < lim[s] is in row s.

    Row s is the list of X[rows[s]] among the n rows of X. ``recompute``:
    compute d2 from X (else, uint8 data only, d2 = rint(dist**2) from exact
    neighbour distances; l-inf: rint(dist)). ``idx`` (m, K) is sorted in place
    with ``d2`` (insertion sort: O(K) when already sorted). A list with K == n
    holds every point (lim = inf); otherwise lim = the last d2, times
    1 - rel_slack for float data (the lists' own distances may differ from
    ours by rounding).
    """
    K = idx.shape[1]
    for i in prange(idx.shape[0]):
        if recompute:
            xi = X[rows[i]]
            for p in range(K):
                d2[i, p] = pair_key(xi, X[idx[i, p]], integer, linf)
        elif linf:
            for p in range(K):
                d2[i, p] = np.rint(dist[i, p])
        else:
            for p in range(K):
                d2[i, p] = np.rint(dist[i, p] * dist[i, p])
        for p in range(1, K):
            v = d2[i, p]
            j = idx[i, p]
            q = p - 1
            while q >= 0 and (d2[i, q] > v or (d2[i, q] == v and idx[i, q] > j)):
                d2[i, q + 1] = d2[i, q]
                idx[i, q + 1] = idx[i, q]
                q -= 1
            d2[i, q + 1] = v
            idx[i, q + 1] = j
        if K >= n:
            lim[i] = np.inf
        else:
            lim[i] = d2[i, K - 1] * (1.0 - rel_slack)


@jit_parallel
def unsorted_rows(idx, d2):
    """How many rows of (d2, idx) are not strictly increasing by (d2, index)."""
    n, K = idx.shape
    bad = 0
    for i in prange(n):
        for p in range(1, K):
            if d2[i, p - 1] > d2[i, p] or (d2[i, p - 1] == d2[i, p] and idx[i, p - 1] >= idx[i, p]):
                bad += 1
                break
    return bad


@jit
def list_sqdist(X, rows, idx, integer, linf, out):
    """out[s, p] = exact key between X[rows[s]] and X[idx[s, p]] (spot checks)."""
    for s in range(rows.shape[0]):
        for p in range(idx.shape[1]):
            out[s, p] = pair_key(X[rows[s]], X[idx[s, p]], integer, linf)


@jit_parallel
def list_pass(idx, d2, lim, covered, expanded, n_lo, n_hi, eps, x_total, linf, lw, G,
              best_gain, best_r2, lower, list_top):
    """One greedy step over every candidate centre, from its neighbour list.

    For candidate i, walks the list's tie groups of equal d2 in increasing
    order; the group holding the m-th uncovered point gives r2 = r_m**2 for
    every m of that group (C = uncovered with d2 <= r2, exact if r2 < lim[i]);
    a second pointer counts the not-expanded points with d2 <= grown(r2)
    (exact if grown < lim[i], else a lower bound). Writes
    ``best_gain[i], best_r2[i]``: the smallest exact gain (then smallest r2),
    BIG if none; ``lower[i]``: a lower bound on every gain of i not computed
    exactly (BIG if none). An r_m beyond the list gets the bound -x_total
    (gain = new expanded in the shell - expanded-but-uncovered inside r).
    ``list_top[i]``: r_{n_hi}**2 when the list holds it exactly, else -1.
    A radius inside the list whose newly covered points fail the LU
    constraint (sum lw < G * count, known exactly there) is no candidate.
    """
    n, K = idx.shape
    for i in prange(n):
        bg = BIG
        br2 = np.inf
        lb = BIG
        lim_i = lim[i]
        list_top[i] = -1.0
        uncov = 0
        lsum = np.int64(0)
        not_exp = 0
        q = 0
        p = 0
        reached = False
        while p < K:
            r2 = d2[i, p]
            end = p
            before = uncov
            while end < K and d2[i, end] == r2:
                j = idx[i, end]
                if not covered[j]:
                    uncov += 1
                    lsum += lw[j]
                end += 1
            if uncov > before and uncov >= n_lo and before < n_hi:
                if not r2 < lim_i:
                    # ties may be cut at the list end: r_m and C unknown
                    if -x_total < lb:
                        lb = -x_total
                    reached = True
                    break
                g = grown_threshold(r2, eps, linf)
                while q < K and d2[i, q] <= g:
                    if not expanded[idx[i, q]]:
                        not_exp += 1
                    q += 1
                gain = np.int64(not_exp) - np.int64(uncov)
                if lsum < G * np.int64(uncov):
                    pass  # fails the LU constraint: no candidate
                elif g < lim_i:
                    if gain < bg:
                        bg = gain
                        br2 = r2
                elif gain < lb:
                    lb = gain
            if uncov >= n_hi:
                if r2 < lim_i:
                    list_top[i] = r2
                reached = True
                break
            p = end
        if not reached and -x_total < lb:
            lb = -x_total
        best_gain[i] = bg
        best_r2[i] = br2
        lower[i] = lb


@jit
def _select(a, k):
    """The k-th smallest (0-based) value of ``a``, reordering ``a`` in place
    (Hoare quickselect, median-of-three pivots; numba's np.partition copies
    and was measured 3.7x slower here)."""
    lo = 0
    hi = a.shape[0] - 1
    while hi > lo:
        mid = (lo + hi) >> 1
        x, y, z = a[lo], a[mid], a[hi]
        if x > y:
            x, y = y, x
        if y > z:
            y = z
            if x > y:
                y = x
        pivot = y
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        # now a[lo..j] <= pivot, a[i..hi] >= pivot, a[j+1..i-1] == pivot
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return a[k]
    return a[lo]


@jit(inline="always")
def _cell(v, lo, inv_w, n_cells):
    """Lookup cell of a value: monotone non-decreasing in v (every step is)."""
    c = min(max((v - lo) * inv_w, 0.0), n_cells - 1.0)
    return int(c)


@jit
def _gains_from_row(drow, covered, expanded, n_lo, n_hi, eps, top_hint, buf_u, prof,
                    linf, lw, G_lu):
    """Best (gain, r2) of one candidate from its d2 to all n points (``drow``).

    Also fills ``prof[b]`` = min gain over the radii r_m with m in [2**b, n_hi]
    (BIG if 2**b > n_hi), and returns r_{n_hi}**2: the bound carried to later
    balls (see fit_balls). ``top_hint``: that value when the candidate's
    neighbour list already gives it (skips the selection), else < 0.

    Only the n_hi smallest uncovered distances (and ties) are sorted. The
    not-expanded points are never sorted: each is dropped into the bin of the
    first grown threshold it does not exceed (a lookup table over the
    thresholds' range, then a short exact scan), and the counts per radius
    are prefix sums of those bins. O(n + n_hi log n_hi) per candidate.

    With the LU constraint (G > 0) the best is taken over the radii whose
    newly covered points have sum(lw) >= G * count (each uncovered point's
    weight goes to the bin of its own radius: O(n log n_hi) more); the
    profile stays unconstrained (a lower bound either way). No feasible
    radius: (BIG, inf).
    """
    cu = 0
    if top_hint >= 0.0:
        top = top_hint
        for j in range(drow.shape[0]):
            if drow[j] <= top and not covered[j]:
                buf_u[cu] = drow[j]
                cu += 1
    else:
        nu = 0
        for j in range(drow.shape[0]):
            if not covered[j]:
                buf_u[nu] = drow[j]
                nu += 1
        if n_hi < nu:
            top = _select(buf_u[:nu], n_hi - 1)
        else:
            top = buf_u[:nu].max()
        for s in range(nu):
            if buf_u[s] <= top:
                buf_u[cu] = buf_u[s]
                cu += 1
    bu = buf_u[:cu]
    bu.sort()
    # distinct radii r (in order) with P = uncovered points within r, and
    # their grown thresholds G (non-decreasing, since grown() is monotone)
    slots = min(cu, n_hi)
    G = np.empty(slots)
    R = np.empty(slots)
    P = np.empty(slots, dtype=np.int64)
    n_r = 0
    p = 0
    while p < cu and p < n_hi:
        r2 = bu[p]
        while p < cu and bu[p] == r2:
            p += 1
        R[n_r] = r2
        P[n_r] = p
        G[n_r] = grown_threshold(r2, eps, linf)
        n_r += 1
    # L[k] = sum of lw over the uncovered points within R[k] (LU constraint)
    L = np.zeros(n_r if G_lu > 0 else 0, dtype=np.int64)
    if G_lu > 0:
        for j in range(drow.shape[0]):
            v = drow[j]
            if v <= R[n_r - 1] and not covered[j]:
                lo_k = 0  # first k with R[k] >= v (v is one of the radii)
                hi_k = n_r - 1
                while lo_k < hi_k:
                    mid = (lo_k + hi_k) >> 1
                    if R[mid] < v:
                        lo_k = mid + 1
                    else:
                        hi_k = mid
                L[lo_k] += lw[j]
        for k in range(1, n_r):
            L[k] += L[k - 1]
    # hist[k] = not-expanded points with G[k-1] < d2 <= G[k]
    lo = G[0]
    hi = G[n_r - 1]
    n_cells = 8 * n_r
    inv_w = n_cells / (hi - lo) if hi > lo else 0.0
    start = np.zeros(n_cells + 1, dtype=np.int64)
    for k in range(n_r):  # start[c] = #{k: cell(G[k]) < c} after the prefix sum
        start[_cell(G[k], lo, inv_w, n_cells) + 1] += 1
    for c in range(1, n_cells + 1):
        start[c] += start[c - 1]
    hist = np.zeros(n_r, dtype=np.int64)
    for j in range(drow.shape[0]):
        v = drow[j]
        if v <= hi and not expanded[j]:
            # every k below start[cell(v)] has G[k] < v (monotone cells)
            k = start[_cell(v, lo, inv_w, n_cells)]
            while G[k] < v:
                k += 1
            hist[k] += 1
    for b in range(prof.shape[0]):
        prof[b] = BIG
    bg = BIG
    br2 = np.inf
    q = 0  # walk every m from 1 (for the profile); the best uses m >= n_lo
    for k in range(n_r):
        q += hist[k]
        p = P[k]
        gain = np.int64(q) - p
        feasible = G_lu == 0 or L[k] >= G_lu * p
        if p >= n_lo and gain < bg and feasible:  # r_m for some m in [n_lo, n_hi]
            bg = gain
            br2 = R[k]
        b = 0
        while b < prof.shape[0] and (np.int64(1) << b) <= p:
            if gain < prof[b]:
                prof[b] = gain
            b += 1
    return bg, br2, top


@jit_parallel
def fill_rows(X, rows, cols, integer, linf, D2):
    """D2[s, j] = key(X[rows[s]], X[cols[j]]) by the direct kernel (float data, l-inf)."""
    for s in prange(rows.shape[0]):
        xi = X[rows[s]]
        for j in range(cols.shape[0]):
            D2[s, j] = pair_key(xi, X[cols[j]], integer, linf)


@jit_parallel
def gains_from_rows(D2, n_rows, covered, expanded, n_lo, n_hi, eps, top_hint, buf_u,
                    linf, lw, G_lu, out_gain, out_r2, out_top, out_prof):
    """Exact best (gain, r2), r_{n_hi}**2 and gain profile of each candidate
    whose exact d2 to all n points is a row of D2 (rows of buf_* are scratch)."""
    for s in prange(n_rows):
        g, r2, top = _gains_from_row(D2[s], covered, expanded, n_lo, n_hi, eps,
                                     top_hint[s], buf_u[s], out_prof[s], linf, lw, G_lu)
        out_gain[s] = g
        out_r2[s] = r2
        out_top[s] = top


@jit
def add_penalties(D2, n_rows, reach, penalty):
    """penalty[i] += #{rows s: D2[s, i] <= reach[i]} (points newly expanded
    within a candidate's reach; one output slot per candidate)."""
    for i in range(D2.shape[1]):
        c = 0
        for s in range(n_rows):
            if D2[s, i] <= reach[i]:
                c += 1
        penalty[i] += c


@jit_parallel
def add_products(acc, G, sq_rows, sq_all, first, last):
    """acc += G (float32 partial products, exact integers; acc = G on the first
    chunk); on the last chunk turn acc into d2 = |x|^2 + |y|^2 - 2 x.y (all
    exact integers in float64). Rows are independent: parallel over rows."""
    for s in prange(G.shape[0]):
        for j in range(G.shape[1]):
            v = np.float64(G[s, j])
            if not first:
                v += acc[s, j]
            if last:
                v = sq_rows[s] + sq_all[j] - 2.0 * v
            acc[s, j] = v
