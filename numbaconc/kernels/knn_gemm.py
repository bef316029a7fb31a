"""Exact squared l2 kNN on uint8 rows through float32 GEMM, with a certificate.

The API computes G = Q @ B.T in float32 (BLAS) for a block. For a pair,
approx = |q|^2 + |b|^2 - 2 G (norms exact) is within err = slack * |q| |b| of
the true squared distance (float32 dot-product error bound, slack given by
the API). Per query we keep a max-heap of the k smallest upper bounds
approx + err (its top T is an upper bound on the true k-th distance) and a
list of every pair whose lower bound approx - err is <= T at the time it is
seen. Any pair not listed is provably farther than the true k-th neighbour,
so re-ranking the listed pairs exactly gives the exact answer. A query whose
list overflows is flagged and recomputed by the direct kernel.
"""

import numpy as np
from numba import prange

from ._jit import jit, jit_parallel
from .knn_intrinsics import L2, span
from .knn_topk import CHUNK


@jit
def _heap_replace_top(heap, i, value):
    """Replace the max of the max-heap row i by value and sift down."""
    k = heap.shape[1]
    p = 0
    while True:
        c = 2 * p + 1
        if c >= k:
            break
        if c + 1 < k and heap[i, c + 1] > heap[i, c]:
            c += 1
        if heap[i, c] <= value:
            break
        heap[i, p] = heap[i, c]
        p = c
    heap[i, p] = value


@jit_parallel
def l2_gemm_collect(G, q_sq, q_norm, b_sq, b_norm, qidx, bidx, b_start, exclude_self, slack,
                    heap, cand, lower, count, overflow):
    """Merge one GEMM block into each query's upper-bound heap and candidate list.

    ``cand`` holds base row positions ``b_start + j`` (into the API's prepared
    base; the block's rows are ``b_start ...``), ``lower``
    their lower bounds, ``count`` the list lengths, ``overflow`` flags queries
    whose list could not hold every needed candidate.
    """
    nq, nb = G.shape
    cap = cand.shape[1]
    for i in prange(nq):
        if overflow[i]:
            continue
        T = heap[i, 0]
        c = count[i]
        for j in range(nb):
            if exclude_self and bidx[j] == qidx[i]:
                continue
            approx = q_sq[i] + b_sq[j] - 2.0 * np.float64(G[i, j])
            err = slack * q_norm[i] * b_norm[j]
            lo = approx - err
            if lo > T:
                continue
            hi = approx + err
            if hi < T:
                _heap_replace_top(heap, i, hi)
                T = heap[i, 0]
            if c == cap:
                # compact: drop the listed pairs that the tighter T now excludes
                kept = 0
                for t in range(c):
                    if lower[i, t] <= T:
                        cand[i, kept] = cand[i, t]
                        lower[i, kept] = lower[i, t]
                        kept += 1
                c = kept
                if c == cap:
                    overflow[i] = True
                    break
            cand[i, c] = b_start + j
            lower[i, c] = lo
            c += 1
        count[i] = c


@jit
def _packed_candidates(Q, B, bidx, T, cand, lower, count, keys, i):
    """keys[i, :n] = the listed candidates of query i whose lower bound is <= T,
    each as (exact squared distance << 23) | index, which sorts by (distance,
    index); returns n."""
    dp = Q.shape[1]
    n = 0
    for t in range(count[i]):
        if lower[i, t] <= T:
            j = cand[i, t]
            s = np.int64(0)
            for c in range(0, dp, CHUNK):
                s = span(L2, 64, s, Q, i * dp + c, B, j * dp + c)
            keys[i, n] = (s << np.int64(23)) | bidx[j]
            n += 1
    return n


@jit_parallel
def l2_rerank_u8(Q, B, bidx, heap, cand, lower, count, overflow, keys, topd, topi):
    """Exact squared distances of the listed candidates whose lower bound is
    <= the final T; the k best by (distance, index) go to topd / topi.
    ``keys`` (int64, like ``cand``) is scratch; padded uint8 rows as in the
    direct kernels."""
    k = topd.shape[1]
    mask = (np.int64(1) << np.int64(23)) - 1
    for i in prange(Q.shape[0]):
        if not overflow[i]:
            n = _packed_candidates(Q, B, bidx, heap[i, 0], cand, lower, count, keys, i)
            row = keys[i, :n]
            row.sort()
            for t in range(min(k, n)):
                topd[i, t] = row[t] >> np.int64(23)
                topi[i, t] = row[t] & mask
