"""Running top-k of the kNN kernels: insertion, and the exact span-by-span
check of a query's candidates (``finish_*``, one per metric, from one source).

``topd[i]`` / ``topi[i]`` hold the current best ``k`` (distance, index) pairs of
query ``i``, sorted by (distance, index); unfilled slots hold the sentinel
(``BIG``, ``BIG``) that every real candidate beats.
"""

import numpy as np

from ._jit import jit
from .knn_intrinsics import L1, L2, LINF, span

CHUNK = 64  # dimensions per early-exit check; uint8 rows are padded to a multiple
BIG = np.int64(1) << np.int64(62)  # sentinel index / uint8 distance


@jit
def insert(topd, topi, i, dist, idx):
    """Insert (dist, idx) into the sorted row i (caller checked it beats the last)."""
    p = topd.shape[1] - 1
    while p > 0 and (topd[i, p - 1] > dist or (topd[i, p - 1] == dist and topi[i, p - 1] > idx)):
        topd[i, p] = topd[i, p - 1]
        topi[i, p] = topi[i, p - 1]
        p -= 1
    topd[i, p] = dist
    topi[i, p] = idx


@jit
def span_width(dp, cap):
    """Widest span (64, 128 or 256 columns, at most ``cap``) that fits in ``dp`` columns."""
    w = 64
    while w * 2 <= dp and w * 2 <= cap:
        w *= 2
    return w


@jit
def _insert_survivors(i, bidx, cand, part, cnt, topd, topi):
    """Insert query i's surviving candidates, whose ``part`` is now their
    exact distance, into its running top-k (ties by index)."""
    k = topd.shape[1]
    thr = topd[i, k - 1]
    worst = topi[i, k - 1]
    for t in range(cnt):
        s = np.int64(part[i, t])
        jg = bidx[cand[i, t]]
        if s < thr or (s == thr and jg < worst):
            insert(topd, topi, i, s, jg)
            thr = topd[i, k - 1]
            worst = topi[i, k - 1]


def _make_finish(kind):
    """The later stages for one metric (``kind`` is frozen into the code)."""

    @jit
    def finish(Q, i, B, bidx, cand, part, cnt, c0, topd, topi):
        """Later stages for query i from column c0: the next span (<= 256
        columns) of every surviving candidate, branch-free, compacting the
        survivors; then insert the survivors, whose ``part`` is now their
        exact distance. ``cand`` / ``part`` (int32) row i holds the ``cnt``
        candidates (block row positions) and their partial distances."""
        dp = Q.shape[1]
        k = topd.shape[1]
        qo = i * dp
        c = c0
        while c < dp and cnt > 0:
            thr = topd[i, k - 1]
            worst = topi[i, k - 1]
            w = span_width(dp - c, 256)
            kept = 0
            for t in range(cnt):
                j = cand[i, t]
                if w == 256:
                    s = span(kind, 256, np.int64(part[i, t]), Q, qo + c, B, j * dp + c)
                elif w == 128:
                    s = span(kind, 128, np.int64(part[i, t]), Q, qo + c, B, j * dp + c)
                else:
                    s = span(kind, 64, np.int64(part[i, t]), Q, qo + c, B, j * dp + c)
                cand[i, kept] = j
                part[i, kept] = s
                kept += np.int64((s < thr) | ((s == thr) & (bidx[j] < worst)))
            cnt = kept
            c += w
        _insert_survivors(i, bidx, cand, part, cnt, topd, topi)

    return finish


finish_l1 = _make_finish(L1)
finish_l2 = _make_finish(L2)
finish_linf = _make_finish(LINF)
