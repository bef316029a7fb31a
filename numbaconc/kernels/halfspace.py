"""Half-space kernels: exact row projections and per-direction quantile counts.

``project_rows`` is the float64 projection used for every reported figure, so
``fit_halfspace`` and ``halfspace_coverage`` see bit-identical values (each
row's dot product is one fixed loop, whatever the block size or thread count).

``select_thresholds`` works on a (n_directions, n_samples) float32 matrix of
projections from the search: per direction it finds the k-th largest and the
k-th smallest value with a histogram between the row's min and max (one pass,
then only the members of the two threshold bins are collected and sorted);
``count_sides`` then counts the points inside each side's region and its
expansion for one or more epsilons. The selection beats
``np.partition`` because it needs no copy of the row and answers both sides
from one histogram. Rows are independent, so results do not depend on the
thread count.
"""

import numpy as np
from numba import prange

from ._jit import jit, jit_parallel


@jit_parallel
def project_rows(X, w, out):
    """out[i] = sum_j X[i, j] * w[j] in float64 (uint8 widened before use)."""
    n, d = X.shape
    for i in prange(n):
        acc = 0.0
        for j in range(d):
            acc += np.float64(X[i, j]) * w[j]
        out[i] = acc


@jit
def _sift_down(heap, start, size):
    # min-heap on heap[0:size]
    i = start
    while True:
        left = 2 * i + 1
        if left >= size:
            return
        smallest = left
        right = left + 1
        if right < size and heap[right] < heap[left]:
            smallest = right
        if heap[smallest] < heap[i]:
            tmp = heap[i]
            heap[i] = heap[smallest]
            heap[smallest] = tmp
            i = smallest
        else:
            return


@jit
def _kth_largest(row, k, sign, heap):
    """k-th largest of sign * row (sign = +1 or -1), using heap[0:k] as scratch."""
    n = row.shape[0]
    for i in range(k):
        heap[i] = sign * row[i]
    for i in range(k // 2 - 1, -1, -1):
        _sift_down(heap, i, k)
    for i in range(k, n):
        v = sign * row[i]
        if v > heap[0]:
            heap[0] = v
            _sift_down(heap, 0, k)
    return heap[0]


@jit(fastmath=False)
def _bin_index(v, mn, inv, nb):
    # no fastmath here: both passes of _bin_select must map a value to the same
    # bin; float64 so that no float32 range (even +-3e38) can overflow
    return min(nb - 1, np.int64((np.float64(v) - mn) * inv))


_N_BINS = 2048  # histogram bins between a row's min and max
_BIN_CAP = 4096  # largest threshold bin sorted directly; a larger one falls back to the heap


@jit
def _bin_select(row, k, mn, inv, hist, buf_hi, buf_lo):
    """(k-th largest, k-th smallest) of row via a histogram over [mn, max].

    Bin index is a monotone function of the value, so the k-th largest lies in
    the first bin (from the top) where the cumulative count reaches k; only
    that bin's members are collected and sorted. Exact for any input; a
    crowded threshold bin (heavy outliers) falls back to a bounded heap of size
    k (allocated only then).
    """
    n = row.shape[0]
    nb = hist.shape[0]
    cap = buf_hi.shape[0]
    hist[:] = 0
    for i in range(n):
        j = _bin_index(row[i], mn, inv, nb)
        hist[j] += 1
    # bin of the k-th largest and how many lie above it
    above = 0
    j_hi = nb - 1
    while above + hist[j_hi] < k:
        above += hist[j_hi]
        j_hi -= 1
    r_hi = k - above  # rank inside the bin, from the top (1-based)
    below = 0
    j_lo = 0
    while below + hist[j_lo] < k:
        below += hist[j_lo]
        j_lo += 1
    r_lo = k - below
    c_hi = hist[j_hi]
    c_lo = hist[j_lo]
    use_hi = c_hi <= cap
    use_lo = c_lo <= cap
    if use_hi or use_lo:
        a = 0
        b = 0
        for i in range(n):
            j = _bin_index(row[i], mn, inv, nb)
            if use_hi and j == j_hi and a < cap:
                buf_hi[a] = row[i]
                a += 1
            if use_lo and j == j_lo and b < cap:
                buf_lo[b] = row[i]
                b += 1
        # defensive: the two passes must agree on the bins
        use_hi = use_hi and a == c_hi
        use_lo = use_lo and b == c_lo
    if use_hi:
        buf_hi[:c_hi].sort()
        hi = buf_hi[c_hi - r_hi]
    else:
        hi = _kth_largest(row, k, np.float32(1.0), np.empty(k, dtype=np.float32))
    if use_lo:
        buf_lo[:c_lo].sort()
        lo = buf_lo[r_lo - 1]
    else:
        lo = -_kth_largest(row, k, np.float32(-1.0), np.empty(k, dtype=np.float32))
    return hi, lo


@jit_parallel
def select_thresholds(P, k, b_hi, b_lo):
    """Per row p of P (float32): b_hi = k-th largest, b_lo = k-th smallest.

    The high side is E = {w.x >= b_hi}; the low side is E = {-w.x >= -b_lo}.
    """
    n_rows, n = P.shape
    for r in prange(n_rows):
        # per-row scratch: small, once per direction (not per element)
        hist = np.empty(_N_BINS, dtype=np.int64)
        buf_hi = np.empty(_BIN_CAP, dtype=np.float32)
        buf_lo = np.empty(_BIN_CAP, dtype=np.float32)
        row = P[r]
        mn = row[0]
        mx = row[0]
        for i in range(n):
            v = row[i]
            mn = min(mn, v)
            mx = max(mx, v)
        if mx > mn:
            inv = _N_BINS / (np.float64(mx) - np.float64(mn))
            hi, lo = _bin_select(row, k, np.float64(mn), inv, hist, buf_hi, buf_lo)
        else:
            hi = mx
            lo = mn
        b_hi[r] = hi
        b_lo[r] = lo


@jit_parallel
def count_sides(P, b_hi, b_lo, shifts, counts):
    """counts[r, e] = (#p >= b_hi, #p >= b_hi - shift, #p <= b_lo, #p <= b_lo + shift)
    for row p = P[r] and shift = shifts[r, e] (one column per epsilon)."""
    n_rows, n = P.shape
    n_eps = shifts.shape[1]
    for r in prange(n_rows):
        row = P[r]
        hi = np.float64(b_hi[r])
        lo = np.float64(b_lo[r])
        for e in range(n_eps):
            hi_adv = hi - shifts[r, e]
            lo_adv = lo + shifts[r, e]
            c0 = 0
            c1 = 0
            c2 = 0
            c3 = 0
            for i in range(n):
                v = np.float64(row[i])
                c0 += v >= hi
                c1 += v >= hi_adv
                c2 += v <= lo
                c3 += v <= lo_adv
            counts[r, e, 0] = c0
            counts[r, e, 1] = c1
            counts[r, e, 2] = c2
            counts[r, e, 3] = c3


@jit_parallel
def count_coverage(p, b, shift, inside, inside_eps):
    """inside = p >= b, inside_eps = p >= b - shift (p float64)."""
    thr = b - shift
    for i in prange(p.shape[0]):
        inside[i] = p[i] >= b
        inside_eps[i] = p[i] >= thr


@jit_parallel
def lu_thresholds(P, k, lw, G, b_hi, b_lo):
    """Per row p of P, the thresholds of the label-uncertainty search
    (numbaconc.lu): b_hi = the largest value b with #{p >= b} >= k whose
    region {p >= b} has sum(lw) >= G * count (ties kept whole), +inf if none;
    b_lo likewise for the low side {p <= b} (-inf if none)."""
    n_rows, n = P.shape
    for r in prange(n_rows):
        row = P[r]
        order = np.argsort(row, kind="mergesort")
        b_hi[r] = np.inf
        b_lo[r] = -np.inf
        count = 0
        total = np.int64(0)
        pos = n - 1
        while pos >= 0:  # descending: tie groups of equal value
            v = row[order[pos]]
            while pos >= 0 and row[order[pos]] == v:
                total += lw[order[pos]]
                count += 1
                pos -= 1
            if count >= k and total >= G * np.int64(count):
                b_hi[r] = v
                break
        count = 0
        total = np.int64(0)
        pos = 0
        while pos < n:  # ascending
            v = row[order[pos]]
            while pos < n and row[order[pos]] == v:
                total += lw[order[pos]]
                count += 1
                pos += 1
            if count >= k and total >= G * np.int64(count):
                b_lo[r] = v
                break
