"""Lloyd's k-means kernels: assignment (l2 / l1) with chunk-local sums.

Split by concern: ``kmeans_distance`` (the defining distances and float32
scores), ``kmeans_assign`` (the assignment step), here the row utilities,
k-means++, cluster sums and centre separation.

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

from ._jit import jit_parallel
from .kmeans_assign import lloyd_assign_l1, lloyd_assign_l2, move_row  # noqa: F401
from .kmeans_distance import (exact_cityblock, exact_sqeuclidean,  # noqa: F401
                              fast_cityblock, fast_sqeuclidean)


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


@jit_parallel
def assigned_dist(X, C, labels, metric_l1, dist):
    """dist[i] = float64 distance (l2: squared) of row i to C[labels[i]]."""
    for i in prange(X.shape[0]):
        if metric_l1:
            dist[i] = fast_cityblock(X[i], C[labels[i]])
        else:
            dist[i] = fast_sqeuclidean(X[i], C[labels[i]])


# ------------------------------------------------------------------ k-means++


def _make_min_dist_update(l1):
    """The k-means++ distance update of one metric (``l1`` frozen into the code)."""

    @jit_parallel
    def min_dist_update(X, c, mind):
        """mind[i] = min(mind[i], d(x_i, c)): |x_i - c|^2 or |x_i - c|_1
        (float64, reassociated)."""
        for i in prange(X.shape[0]):
            if l1:
                dd = fast_cityblock(X[i], c)
            else:
                dd = fast_sqeuclidean(X[i], c)
            if dd < mind[i]:
                mind[i] = dd

    return min_dist_update


min_dist_update_l2 = _make_min_dist_update(False)
min_dist_update_l1 = _make_min_dist_update(True)


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
                move_row(X[i], -1, lab, xnorm2[i], sums_c, counts_c, q_c)


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
                    dd = fast_cityblock(C[j], C[k])
                else:
                    dd = np.sqrt(fast_sqeuclidean(C[j], C[k]))
                best = min(best, dd)
        out[j] = best
