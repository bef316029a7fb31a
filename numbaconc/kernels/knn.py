"""Exact k-nearest-neighbour kernels (l1, l2, linf) for uint8 and float32 rows.

The public kernels, split by concern:

- ``knn_intrinsics``: LLVM byte-span and vertical-bound intrinsics (uint8);
- ``knn_topk``: the running top-k and the exact span-by-span check;
- ``knn_direct``: squared l2 on uint8, and every metric on float32 (``KERNELS``);
- ``knn_prefilter``: l1 and linf on uint8 behind a vertical prefilter;
- ``knn_gemm``: squared l2 on uint8 through float32 GEMM with a certificate;
- here: neighbour lists of a row subset, read off the lists of the whole set.

Per-metric kernels are generated from one source by factories that capture a
literal metric code, so each metric gets its own compiled inner loop and
Numba's cache still works (a closure over a dispatcher would miss it).
uint8 kernels need ``Q.shape[1] == B.shape[1]`` to be a multiple of 64 (the
API pads with zero columns, which add nothing to any of the three metrics).
"""

from numba import prange

from ._jit import jit_parallel
from .knn_direct import KERNELS, knn_block_l2_u8  # noqa: F401
from .knn_gemm import l2_gemm_collect, l2_rerank_u8  # noqa: F401
from .knn_prefilter import knn_block_l1_u8_sketch, knn_block_linf_u8_sketch  # noqa: F401
from .knn_topk import BIG, CHUNK  # noqa: F401


# ------------------------------------------------------------------ subsets


@jit_parallel
def count_in_subset(indices, rows, position, count):
    """count[s] = entries of row ``rows[s]``'s list that belong to the subset."""
    for s in prange(rows.shape[0]):
        r = rows[s]
        c = 0
        for p in range(indices.shape[1]):
            if position[indices[r, p]] >= 0:
                c += 1
        count[s] = c


@jit_parallel
def filter_to_subset(indices, distances, rows, position, out_idx, out_dist, count):
    """Neighbour lists of a subset, read off the lists of the whole set.

    For subset member s (global row ``rows[s]``), walks that row's list in
    order and keeps the entries whose global index is in the subset
    (``position[g] >= 0``), renumbered to subset positions, up to
    ``out_idx.shape[1]``; ``count[s]`` = how many were kept. Lists sorted by
    (distance, global index) stay sorted by (distance, subset index) because
    ``position`` is increasing in the global index.
    """
    k_out = out_idx.shape[1]
    for s in prange(rows.shape[0]):
        r = rows[s]
        c = 0
        for p in range(indices.shape[1]):
            if c == k_out:
                break
            pos = position[indices[r, p]]
            if pos >= 0:
                out_idx[s, c] = pos
                out_dist[s, c] = distances[r, p]
                c += 1
        count[s] = c
