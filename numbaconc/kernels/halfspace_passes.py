"""Kernels of the fixed-pass half-space search (numbaconc.halfspace_passes).

Each kernel sees one row block of float32 projections P (n_directions,
block_rows) and updates per-direction (or per-target) state, so the search
reads the data a fixed number of times whatever n is:

- ``histogram_block``: a histogram of every direction's projections over a
  fixed value range (set from the first block; values outside go to the edge
  bins) and the running min / max;
- ``target_block``: for each target (a direction and a side), the values that
  lie in its current bin and key interval, either counted into sub-bins of the
  interval with each sub-bin's smallest and largest key (``collect=False``)
  or copied out (``collect=True``).

A target selects the k-th largest of ``sign * p`` (sign +1: the high side,
-1: the low side). Keys order float32 values as unsigned integers (-0 is
taken as +0), so refining a key interval ends at one value in a bounded number
of passes. Targets and directions are independent: results do not depend on
the thread count.
"""

import numpy as np
from numba import prange

from ._jit import jit, jit_parallel


@jit(fastmath=False)
def _bin_of(v, mn, inv, nb):
    # no fastmath: every pass must map a value to the same bin; values outside
    # the range (and an overflowing product) go to the edge bins
    t = (np.float64(v) - mn) * inv
    if t >= 0.0:
        if t < nb:
            return np.int64(t)
        return np.int64(nb - 1)
    return np.int64(0)


@jit
def _key(bits, sign):
    """Order-preserving key in [0, 2**32) of the float32 ``sign * v`` (bits of v)."""
    b = np.int64(bits)
    if sign < 0:
        b = b ^ 0x80000000
    if b == 0x80000000:  # -0 counts as +0
        b = 0
    if b >= 0x80000000:
        return 0xFFFFFFFF - b
    return b + 0x80000000


@jit_parallel
def histogram_block(P, mn, inv, hist, vmin, vmax):
    """hist[r, bin(P[r, i])] += 1 over the block; vmin / vmax: running min / max."""
    n_dir, n = P.shape
    nb = hist.shape[1]
    for r in prange(n_dir):
        lo, hi = vmin[r], vmax[r]
        for i in range(n):
            v = P[r, i]
            lo, hi = min(lo, v), max(hi, v)
            hist[r, _bin_of(v, mn[r], inv[r], nb)] += 1
        vmin[r], vmax[r] = lo, hi


@jit_parallel
def target_block(P, bits, row_of, sign, jbin, mn, inv, nb, klo, kspan, collect, hist, kmin, kmax,
                 buf, fill):
    """Members of target t: values v of row ``row_of[t]`` (of P; ``bits`` its
    uint32 view) with bin ``jbin[t]`` and key(sign[t] * v) in
    [klo[t], klo[t] + kspan[t]). ``collect``: copy sign * v into buf[t]
    (fill[t] counts every member, also past the buffer's end); else add each
    member to sub-bin (key - klo) * n_sub // kspan of hist[t], and keep the
    sub-bin's smallest and largest key - klo in kmin[t] / kmax[t] (a sub-bin
    whose two are equal holds one value: a tie group is resolved there)."""
    n_t = row_of.shape[0]
    n = P.shape[1]
    n_sub = hist.shape[1]
    cap = buf.shape[1]
    for t in prange(n_t):
        r = row_of[t]
        s = sign[t]
        j = jbin[t]
        a = mn[r]
        w = inv[r]
        k0 = klo[t]
        span = kspan[t]
        f = fill[t]
        for i in range(n):
            v = P[r, i]
            if _bin_of(v, a, w, nb) != j:
                continue
            kk = _key(bits[r, i], s) - k0
            if kk < 0 or kk >= span:
                continue
            if collect:
                if f < cap:
                    buf[t, f] = s * v
                f += 1
            else:
                u = kk * n_sub // span
                hist[t, u] += 1
                kmin[t, u] = min(kmin[t, u], kk)
                kmax[t, u] = max(kmax[t, u], kk)
        fill[t] = f
