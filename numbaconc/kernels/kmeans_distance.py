"""Distances of the k-means kernels: the defining float64 distance, and the
float32 scores that rank centres cheaply (see ``kmeans_assign``).

Each distance is generated from one source per metric (``l1`` frozen into
the code): ``exact_*`` strictly in feature order, compiled without
reassociation or FMA contraction, so that a numpy loop over the features
reproduces it bit for bit; ``fast_*`` reassociated (vectorised), for the
inertia, the farthest row and k-means++ only.
"""

import numpy as np

from ._jit import jit


def _make_distance(l1, exact):
    """sum_t |float64(x[t]) - c[t]| (``l1``) or sum_t (float64(x[t]) - c[t])**2."""

    def distance(x, c):
        acc = 0.0
        for t in range(x.shape[0]):
            diff = np.float64(x[t]) - c[t]
            if l1:
                acc += abs(diff)
            else:
                acc += diff * diff
        return acc

    # The exact and the fast variant of a metric have the same code and the
    # same closure (only their compile options differ), which is all Numba's
    # cache key holds: their own names give them separate cache files.
    name = f"{'exact' if exact else 'fast'}_{'cityblock' if l1 else 'sqeuclidean'}"
    distance.__name__ = distance.__qualname__ = name
    return jit(fastmath=False)(distance) if exact else jit(distance)


exact_sqeuclidean = _make_distance(False, True)
exact_cityblock = _make_distance(True, True)
fast_sqeuclidean = _make_distance(False, False)
fast_cityblock = _make_distance(True, False)


# ------------------------------------------------------------- float32 scores
# Each fills S[k, j] for the rows rows[0:m] of a chunk. S has at least T columns.


@jit
def score_ids(x, C32, ids, n_ids, l1, out):
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
def dense_scores(X, rows, m, C32, l1, S):
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
