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
    """Stand-in for numbaconc.neighbours.KnnResult."""

    def __init__(self, X, k, metric="l2"):
        self.indices, self.distances = brute_knn(X, k)
        self.metric = metric
        self.k = k
        self.include_self = True


def fit_balls_ref(X, alpha, eps, T, delta=0.0, candidates=None):
    """Returns (centers idx, radii_sq, gains, covered, expanded): the l2
    greedy without a constraint (fit_greedy_lu_ref below); ``candidates``:
    the rows allowed as centres (every row when None)."""
    return fit_greedy_lu_ref(X, alpha, eps, T, delta, candidates=candidates)[:5]


def coverage_ref(X, centers, radii_sq, margin):
    D2 = sq_distances(X, centers)
    r2 = np.asarray(radii_sq, dtype=np.float64)[None, :]
    return (D2 <= r2).any(axis=1), (D2 <= grown(r2, margin)).any(axis=1)


def linf_distances(A, B):
    """(len(A), len(B)) float64 l-inf distances."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    return np.abs(A[:, None, :] - B[None, :, :]).max(axis=2)


def keys(A, B, metric):
    return linf_distances(A, B) if metric == "linf" else sq_distances(A, B)


def grown_key(r, eps, metric):
    return r + eps if metric == "linf" else grown(r, eps)


def brute_knn_metric(X, k, metric):
    D = keys(X, X, metric)
    n = len(X)
    order = np.lexsort((np.broadcast_to(np.arange(n), (n, n)), D), axis=1)[:, :k]
    d = np.take_along_axis(D, order, axis=1)
    return order.astype(np.int64), d if metric == "linf" else np.sqrt(d)


class KnnMetric:
    """Stand-in for numbaconc.neighbours.KnnResult under either metric."""

    def __init__(self, X, k, metric):
        self.indices, self.distances = brute_knn_metric(X, k, metric)
        self.metric = metric
        self.k = k
        self.include_self = True


def fit_greedy_lu_ref(X, alpha, eps, T, delta=0.0, metric="l2", lu=None, gamma=0.0,
                      candidates=None):
    """The greedy of fit_balls_ref under l2 or l-inf, skipping every (centre,
    radius) whose newly covered points fail the LU constraint, in numbaconc's
    integer form (weights floor(lu * 2**30), threshold ceil(gamma * 2**30):
    python integers, no overflow); stops when no candidate is left.
    Returns (centers, radii keys, gains, covered, expanded, stopped)."""
    n = len(X)
    D = keys(X, X, metric)
    N = math.ceil(alpha * n * (1 + delta) - 1e-9)
    q = [0] * n if lu is None else [math.floor(v * 2**30) for v in np.asarray(lu, float)]
    G = 0 if lu is None else math.ceil(gamma * 2**30)
    cov = np.zeros(n, bool)
    exp = np.zeros(n, bool)
    centers, radii, gains = [], [], []
    stopped = False
    for t in range(T):
        if cov.sum() >= N:
            break
        need = N - int(cov.sum())
        n_lo = math.ceil(need / (T - t))
        n_hi = need
        best = None
        for i in range(n) if candidates is None else candidates:
            i = int(i)
            du = np.sort(D[i, ~cov])
            de = np.sort(D[i, ~exp])
            for m in range(n_lo, n_hi + 1):
                r = du[m - 1]
                if lu is not None:
                    new = np.flatnonzero((D[i] <= r) & ~cov)
                    if sum(q[j] for j in new) < G * len(new):
                        continue
                C = np.searchsorted(du, r, side="right")
                E = np.searchsorted(de, grown_key(r, eps, metric), side="right")
                key = (int(E) - int(C), i, r)
                if best is None or key < best:
                    best = key
        if best is None:
            stopped = True
            break
        g, i, r = best
        cov |= D[i] <= r
        exp |= D[i] <= grown_key(r, eps, metric)
        centers.append(i)
        radii.append(r)
        gains.append(g)
    return np.array(centers, dtype=np.int64), np.array(radii), gains, cov, exp, stopped


def prefix_frontier_ref(X_fit, X_test, centers, radii, eps, metric, lo, hi, lu=None, gamma=0.0):
    """The greedy prefixes literally: member (t, r) = balls 0..t-1 in full and
    ball t at each fitting key r (up to its radius, the full ball included;
    the last ball at every key); under LU only the (t, r) whose newly covered
    fitting points (outside balls < t) have sum(floor(lu 2**30)) >=
    ceil(gamma 2**30) * count (the full balls < T-1 always kept); kept when
    the fitting risk is in [lo, hi] (fractions of n_fit). Returns [(t, r, R, A)], R
    and A the test counts of the member and of its expansion."""
    Df, Dt = keys(X_fit, centers, metric), keys(X_test, centers, metric)
    T, n_fit = len(radii), len(X_fit)
    q = None if lu is None else [math.floor(v * 2**30) for v in np.asarray(lu, float)]
    G = math.ceil(gamma * 2**30)
    out = []
    for t in range(T):
        full_f = (Df[:, :t] <= radii[None, :t]).any(1)
        full_t = (Dt[:, :t] <= radii[None, :t]).any(1)
        full_g = (Dt[:, :t] <= grown_key(radii[None, :t], eps, metric)).any(1)
        rs = np.unique(Df[:, t])
        if t < T - 1:
            rs = np.union1d(rs[rs <= radii[t]], [radii[t]])
        for r in rs:
            if q is not None and not (t < T - 1 and r == radii[t]):
                new = np.flatnonzero(~full_f & (Df[:, t] <= r))
                if sum(q[j] for j in new) < G * len(new):
                    continue
            count = (full_f | (Df[:, t] <= r)).sum()
            if lo * n_fit <= count <= hi * n_fit:
                out.append((t, r, int((full_t | (Dt[:, t] <= r)).sum()),
                            int((full_g | (Dt[:, t] <= grown_key(r, eps, metric))).sum())))
    return out
