"""l1 and linf kNN on uint8 rows: a vertical prefilter, then the exact check.

Stage 0: one SIMD lane per base row (the base is stored transposed), so a
cheap lower bound on the distance is computed for 32 / 64 base rows at once
with no horizontal reduction; only rows whose bound does not already lose go
on to the exact span-by-span check (``knn_topk.finish_*``).

- l1: ``ST`` (n_groups, n_pad) uint16 holds per-row sums over groups of
  columns; sum_g |S_g(x) - S_g(y)| <= |x - y|_1 (triangle inequality). The
  lane sums saturate at 65535, which keeps them lower bounds.
- linf: ``BT`` (d, n_pad) uint8 is the transposed base; each query checks
  its own list of columns (those most likely to differ a lot), and the max
  of |x_c - y_c| over any column subset bounds |x - y|_inf from below.

Kernels and arguments as in ``knn_direct``; rows padded to a multiple of 64.
"""

import numpy as np
from numba import prange
from numba.cpython.unsafe.numbers import trailing_zeros

from ._jit import jit, jit_parallel
from .knn_intrinsics import L1, LINF, vertical_l1, vertical_linf
from .knn_topk import finish_l1, finish_linf


def _make_prefilter(kind):
    """The candidate list of one query for one metric (``kind`` frozen)."""
    lanes = 32 if kind == L1 else 64

    @jit
    def prefilter(Q, i, extra, base_t, b0, nb, thr, qi, bidx, exclude_self, cand, part):
        """Candidates of query i (bound <= thr) into cand[i, :count]; returns count.
        ``extra`` row i: the query's group sums (l1) or its columns (linf).
        (A serial helper: the same loop inlined in the prange body ran 3x slower.)"""
        ne = extra.shape[1]
        c = 0
        for j0 in range(0, nb, lanes):
            if kind == L1:
                mask = vertical_l1(base_t, b0 + j0, extra, i * ne, ne, thr)
            else:
                mask = vertical_linf(base_t, b0 + j0, Q, i * Q.shape[1], extra, i * ne, ne, thr)
            if j0 + lanes > nb:
                mask &= (np.int64(1) << np.int64(nb - j0)) - 1
            while mask != 0:
                j = j0 + trailing_zeros(mask)
                mask &= mask - 1
                cand[i, c] = j
                part[i, c] = 0
                c += np.int64(not (exclude_self and bidx[j] == qi))
        return c

    return prefilter


_prefilter_l1 = _make_prefilter(L1)
_prefilter_linf = _make_prefilter(LINF)


def _make_sketch_kernel(kind):
    """The prefiltered kernel of one metric (``kind`` frozen)."""
    cap = 65535 if kind == L1 else 255  # largest threshold a lane can compare

    @jit_parallel
    def knn_block_u8_sketch(Q, qidx, extra, B, bidx, base_t, b0, exclude_self, topd, topi,
                            cand, part):
        """l1: ``extra`` = QS (nq, n_groups) and ``base_t`` = ST (n_groups, n_pad)
        uint16 (n_pad >= b0 + nb + 32). linf: ``extra`` = cols (nq, C) int32,
        columns (of the prepared rows) each query checks first, and ``base_t``
        = BT (dp, n_pad) uint8, the prepared base transposed (n_pad >= b0 + nb
        + 64). ``b0`` is the column of ``base_t`` holding base row 0 of this block."""
        nq = Q.shape[0]
        nb = B.shape[0]
        k = topd.shape[1]
        for i in prange(nq):
            thr = min(topd[i, k - 1], np.int64(cap))
            if kind == L1:
                c = _prefilter_l1(Q, i, extra, base_t, b0, nb, thr, qidx[i], bidx, exclude_self,
                                  cand, part)
                finish_l1(Q, i, B, bidx, cand, part, c, 0, topd, topi)
            else:
                c = _prefilter_linf(Q, i, extra, base_t, b0, nb, thr, qidx[i], bidx,
                                    exclude_self, cand, part)
                finish_linf(Q, i, B, bidx, cand, part, c, 0, topd, topi)

    return knn_block_u8_sketch


knn_block_l1_u8_sketch = _make_sketch_kernel(L1)
knn_block_linf_u8_sketch = _make_sketch_kernel(LINF)
