"""Direct exact kNN kernels: squared l2 on uint8 rows, and l1 / l2 / linf on
float32 rows (one source, a kernel generated per metric).

Each ``knn_block_*`` kernel merges one block of base rows ``B`` into a running
top-k of each query row of ``Q`` (see ``knn_topk``):

- ``qidx`` / ``bidx`` are the global row indices (the API reorders rows); ties
  are broken by global index, so the result does not depend on the order in
  which blocks or rows are visited.
- ``exclude_self``: skip the pair whose global indices are equal.
- ``qkey`` / ``bkey`` (uint8 l2): the Euclidean row norms, a lower bound on
  the distance by the reverse triangle inequality.
- A pair is dropped as soon as its partial distance (the columns come in
  decreasing-variance order) passes the k-th best (distance, index).

Parallelism is over query rows; each query owns its top-k row, so results are
identical for any thread count. (l1 and linf on uint8 go through
``knn_prefilter``.)
"""

import numpy as np
from numba import prange

from ._jit import jit, jit_parallel
from .knn_intrinsics import L1, L2, LINF, tile
from .knn_topk import CHUNK, finish_l2, insert, span_width

# ------------------------------------------------------------ uint8, l2
# Per tile of 4 queries and one base block, two stages, so that most pairs cost
# no unpredictable branch:
# 1. branch-free: the first ``width`` columns (the highest-variance ones) of
#    every pair, one reduction each; a pair stays a candidate when that partial
#    distance and the key bound do not already lose against the k-th best at
#    the start of the block (a stale, hence safe, threshold);
# 2. the same, span after span, for the surviving candidates only (compacted
#    in place), then insertion of the survivors (now exact distances).
# ``cand`` and ``part`` (int32), both at least (nq, nb), are scratch.


@jit
def _stage1_l2(Q, qidx, qkey, B, bidx, bkey, exclude_self, topd, topi, i0, ni, width,
               cand, part, cnt):
    """Stage 1 for queries i0 .. i0+ni-1 (ni is 4, or 1 for a short last tile)."""
    dp = Q.shape[1]
    k = topd.shape[1]
    r1 = i0 + 1 if ni == 4 else i0
    r2 = i0 + 2 if ni == 4 else i0
    r3 = i0 + 3 if ni == 4 else i0
    t0 = topd[i0, k - 1]
    t1 = topd[r1, k - 1]
    t2 = topd[r2, k - 1]
    t3 = topd[r3, k - 1]
    # (t, w): the k-th best (distance, index) at block start; a pair loses
    # for good once its partial distance passes it (ties go to the lower index)
    w0 = topi[i0, k - 1]
    w1 = topi[r1, k - 1]
    w2 = topi[r2, k - 1]
    w3 = topi[r3, k - 1]
    q0, q1, q2, q3 = qkey[i0], qkey[r1], qkey[r2], qkey[r3]
    # (|x| - |y|)^2 <= |x - y|^2 (an integer): prune only beyond a rounding margin
    m0 = float(t0) * (1.0 + 1e-9) + 0.5
    m1 = float(t1) * (1.0 + 1e-9) + 0.5
    m2 = float(t2) * (1.0 + 1e-9) + 0.5
    m3 = float(t3) * (1.0 + 1e-9) + 0.5
    c0 = c1 = c2 = c3 = 0
    for j in range(B.shape[0]):
        bo = j * dp
        if width == 256:
            s0, s1, s2, s3 = tile(L2, 256, Q, i0 * dp, r1 * dp, r2 * dp, r3 * dp, B, bo)
        elif width == 128:
            s0, s1, s2, s3 = tile(L2, 128, Q, i0 * dp, r1 * dp, r2 * dp, r3 * dp, B, bo)
        else:
            s0, s1, s2, s3 = tile(L2, 64, Q, i0 * dp, r1 * dp, r2 * dp, r3 * dp, B, bo)
        jg = bidx[j]
        kb = bkey[j]
        cand[i0, c0] = j
        part[i0, c0] = s0
        c0 += np.int64(((s0 < t0) | ((s0 == t0) & (jg < w0)))
                        & ((q0 - kb) * (q0 - kb) <= m0)
                        & ~(exclude_self & (jg == qidx[i0])))
        if ni == 4:
            cand[r1, c1] = j
            part[r1, c1] = s1
            c1 += np.int64(((s1 < t1) | ((s1 == t1) & (jg < w1)))
                            & ((q1 - kb) * (q1 - kb) <= m1)
                            & ~(exclude_self & (jg == qidx[r1])))
            cand[r2, c2] = j
            part[r2, c2] = s2
            c2 += np.int64(((s2 < t2) | ((s2 == t2) & (jg < w2)))
                            & ((q2 - kb) * (q2 - kb) <= m2)
                            & ~(exclude_self & (jg == qidx[r2])))
            cand[r3, c3] = j
            part[r3, c3] = s3
            c3 += np.int64(((s3 < t3) | ((s3 == t3) & (jg < w3)))
                            & ((q3 - kb) * (q3 - kb) <= m3)
                            & ~(exclude_self & (jg == qidx[r3])))
    cnt[0] = c0
    cnt[1] = c1
    cnt[2] = c2
    cnt[3] = c3


@jit_parallel
def knn_block_l2_u8(Q, qidx, qkey, B, bidx, bkey, exclude_self, topd, topi, cand, part):
    """Squared l2 on uint8 rows; ``topd`` int64; keys are float64 row norms.
    Rows padded to a multiple of 64 columns (zero columns add nothing)."""
    nq, dp = Q.shape
    width = span_width(dp, 256)
    for g in prange((nq + 3) // 4):
        i0 = 4 * g
        cnt = np.zeros(4, dtype=np.int64)
        if i0 + 4 <= nq:
            _stage1_l2(Q, qidx, qkey, B, bidx, bkey, exclude_self, topd, topi,
                       i0, 4, width, cand, part, cnt)
            for t in range(4):
                finish_l2(Q, i0 + t, B, bidx, cand, part, cnt[t], width, topd, topi)
        else:
            for i in range(i0, nq):
                _stage1_l2(Q, qidx, qkey, B, bidx, bkey, exclude_self, topd, topi,
                           i, 1, width, cand, part, cnt)
                finish_l2(Q, i, B, bidx, cand, part, cnt[0], width, topd, topi)


# ---------------------------------------------------------- float32
# Distances are computed in float64 from the float32 values (exact enough to
# rank; the only rounding is float64 accumulation). Keys and scratch are unused.


def _make_block_f32(kind):
    """The float32 kernel of one metric (``kind`` frozen into the code)."""

    @jit_parallel
    def knn_block_f32(Q, qidx, qkey, B, bidx, bkey, exclude_self, topd, topi, cand, part):
        """l1, squared l2 or linf on float32 rows; ``topd`` float64."""
        nq, d = Q.shape
        nb = B.shape[0]
        k = topd.shape[1]
        for i in prange(nq):
            thr = topd[i, k - 1]
            worst = topi[i, k - 1]
            qi = qidx[i]
            for j in range(nb):
                jg = bidx[j]
                if exclude_self and jg == qi:
                    continue
                s = 0.0
                for c0 in range(0, d, CHUNK):
                    part = 0.0
                    for t in range(c0, min(c0 + CHUNK, d)):
                        if kind == L1:
                            part += abs(np.float64(Q[i, t]) - np.float64(B[j, t]))
                        elif kind == L2:
                            v = np.float64(Q[i, t]) - np.float64(B[j, t])
                            part += v * v
                        else:
                            part = max(part, abs(np.float64(Q[i, t]) - np.float64(B[j, t])))
                    if kind == LINF:
                        s = max(s, part)
                    else:
                        s += part
                    if s > thr:
                        break
                if s < thr or (s == thr and jg < worst):
                    insert(topd, topi, i, s, jg)
                    thr = topd[i, k - 1]
                    worst = topi[i, k - 1]

    return knn_block_f32


knn_block_l1_f32 = _make_block_f32(L1)
knn_block_l2_f32 = _make_block_f32(L2)
knn_block_linf_f32 = _make_block_f32(LINF)

# the direct kernel of each (metric, dtype); l1 / linf on uint8: knn_prefilter
KERNELS = {
    ("l2", "uint8"): knn_block_l2_u8,
    ("l1", "float32"): knn_block_l1_f32,
    ("l2", "float32"): knn_block_l2_f32,
    ("linf", "float32"): knn_block_linf_f32,
}
