"""Box kernels: per-cluster extents, and membership of rows in a union of boxes.

Every comparison uses the float64 expression ``|float64(x[t]) - c[t]|``, the
same one that builds the half-widths, so a cluster member is always inside
its own box whatever the rounding.
"""

import numpy as np
from numba import prange

from ._jit import jit_parallel


@jit_parallel
def cluster_minmax(X, labels, chunk_rows, lo, hi):
    """Chunk-local per-cluster coordinate min / max (rows with label >= 0).

    ``lo[ch]`` / ``hi[ch]`` (n_clusters, d) float64 are reset to +inf / -inf.
    """
    n, d = X.shape
    n_chunks = (n + chunk_rows - 1) // chunk_rows
    for ch in prange(n_chunks):
        lo_c = lo[ch]
        hi_c = hi[ch]
        lo_c[:] = np.inf
        hi_c[:] = -np.inf
        for i in range(ch * chunk_rows, min(n, (ch + 1) * chunk_rows)):
            lab = labels[i]
            if lab < 0:
                continue
            lrow = lo_c[lab]
            hrow = hi_c[lab]
            for t in range(d):
                v = np.float64(X[i, t])
                lrow[t] = min(lrow[t], v)
                hrow[t] = max(hrow[t], v)


@jit_parallel
def box_coverage(X, centers, widths, below, above, empty_box, margin, inside, inside_grown):
    """inside[i]: some box j has c[j,t] - x[i,t] <= below[j,t] and
    x[i,t] - c[j,t] <= above[j,t] for all t; inside_grown[i]: some box j has
    |x[i,t] - c[j,t]| <= w[j,t] + margin for all t. Boxes flagged empty
    contain nothing, grown or not.

    ``below`` and ``above`` are the half-widths (``below = above = widths``
    gives the plain test |x - c| <= w, bit for bit) or +inf for a face that
    binds nothing (see ``numbaconc.boxes_coverage.face_slack``).

    Per row: stop at the first box that contains it (then it is also in the
    grown union); while it is only known to be in a grown box, test the
    remaining boxes without the margin. Each box test exits at the first
    failing coordinate.
    """
    n, d = X.shape
    T = centers.shape[0]
    for i in prange(n):
        x = X[i]
        in0 = False
        in1 = False
        for j in range(T):
            if empty_box[j]:
                continue
            c = centers[j]
            w = widths[j]
            lo = below[j]
            hi = above[j]
            if in1:
                ok = True
                for t in range(d):
                    dev = np.float64(x[t]) - c[t]
                    if dev > hi[t] or -dev > lo[t]:
                        ok = False
                        break
                if ok:
                    in0 = True
                    break
            else:
                ok0 = True
                ok1 = True
                for t in range(d):
                    dev = np.float64(x[t]) - c[t]
                    if abs(dev) > w[t] + margin:
                        ok1 = False
                        break
                    if dev > hi[t] or -dev > lo[t]:
                        ok0 = False
                if ok1:
                    in1 = True
                    if ok0:
                        in0 = True
                        break
        inside[i] = in0
        inside_grown[i] = in1
