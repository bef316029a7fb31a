"""Slow, obvious numpy references for the union-of-balls greedy (METHOD.md s4).

Full distance matrices, every candidate centre and every m, literally the
definition. Squared distances are summed in feature order in float64 (exact
integers for uint8 data; the same rounding as the kernels for float data).
"""

import math

import numpy as np


def sq_distances(A, B):
    """(len(A), len(B)) float64 squared distances, summed feature by feature."""
    if np.asarray(A).dtype == np.uint8 and np.all(np.asarray(B) == np.rint(B)):
        # integers: the expansion is exact in float64 (every term < 2**53)
        A = np.asarray(A, dtype=np.float64)
        B = np.asarray(B, dtype=np.float64)
        return (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T)
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    out = np.zeros((A.shape[0], B.shape[0]))
    for k in range(A.shape[1]):
        t = A[:, k][:, None] - B[:, k][None, :]
        out += t * t
    return out


def grown(r2, eps):
    return np.maximum(r2, (np.sqrt(r2) + eps) ** 2)


def brute_knn(X, k):
    """Neighbour lists (indices, distances) sorted by (distance, index), self included."""
    D2 = sq_distances(X, X)
    n = len(X)
    order = np.lexsort((np.broadcast_to(np.arange(n), (n, n)), D2), axis=1)[:, :k]
    return order.astype(np.int64), np.sqrt(np.take_along_axis(D2, order, axis=1))


class Knn:
    """Stand-in for numbaconc.knn.KnnResult."""

    def __init__(self, X, k, metric="l2"):
        self.indices, self.distances = brute_knn(X, k)
        self.metric = metric
        self.k = k
        self.include_self = True


def fit_balls_ref(X, alpha, eps, T, delta=0.0):
    """Returns (centers idx, radii_sq, gains, covered, expanded)."""
    n = len(X)
    D2 = sq_distances(X, X)
    N = math.ceil(alpha * n * (1 + delta) - 1e-9)
    cov = np.zeros(n, bool)
    exp = np.zeros(n, bool)
    centers, radii, gains = [], [], []
    for t in range(T):
        if cov.sum() >= N:
            break
        need = N - int(cov.sum())
        n_lo = math.ceil(need / (T - t))
        n_hi = need
        best = None
        for i in range(n):
            du = np.sort(D2[i, ~cov])
            de = np.sort(D2[i, ~exp])
            for m in range(n_lo, n_hi + 1):
                r2 = du[m - 1]
                C = np.searchsorted(du, r2, side="right")
                E = np.searchsorted(de, grown(r2, eps), side="right")
                key = (int(E) - int(C), i, r2)
                if best is None or key < best:
                    best = key
        g, i, r2 = best
        cov |= D2[i] <= r2
        exp |= D2[i] <= grown(r2, eps)
        centers.append(i)
        radii.append(r2)
        gains.append(g)
    return np.array(centers), np.array(radii), gains, cov, exp


def coverage_ref(X, centers, radii_sq, margin):
    D2 = sq_distances(X, centers)
    r2 = np.asarray(radii_sq, dtype=np.float64)[None, :]
    return (D2 <= r2).any(axis=1), (D2 <= grown(r2, margin)).any(axis=1)
