"""Slow, obvious references for the half-space estimators (numpy only)."""

import math

import numpy as np


def ref_dual_norm(w, metric):
    w = np.asarray(w, dtype=np.float64)
    return float(np.abs(w).sum()) if metric == "linf" else float(np.linalg.norm(w))


def ref_distance_to_halfspace(X, w, b, metric):
    """Distance (under metric) from each row of X to {x : w.x >= b}: 0 inside,
    (b - w.x) / ||w||_* outside (dual norm: l2 -> l2, linf -> l1)."""
    p = np.asarray(X, dtype=np.float64) @ np.asarray(w, dtype=np.float64)
    return np.where(p >= b, 0.0, (b - p) / ref_dual_norm(w, metric)), p


def ref_coverage(X, w, b, epsilon, metric):
    """(in E, in E_eps) by the distance definition: E_eps = points at distance <= eps."""
    dist, p = ref_distance_to_halfspace(X, w, b, metric)
    return p >= b, dist <= epsilon, p


def ref_top_pc(X):
    """Top right singular vector of the centred data (numpy SVD)."""
    Xc = np.asarray(X, dtype=np.float64)
    Xc = Xc - Xc.mean(axis=0)
    _, _, vt = np.linalg.svd(Xc, full_matrices=False)
    return vt[0]


def ref_components(X):
    """Principal components (columns), by decreasing variance, via SVD."""
    Xc = np.asarray(X, dtype=np.float64)
    Xc = Xc - Xc.mean(axis=0)
    _, _, vt = np.linalg.svd(Xc, full_matrices=True)
    return vt.T


def ref_rank(alpha, n):
    return min(n, max(1, math.ceil(round(alpha * n, 9))))


def ref_side(p, k, shift):
    """Half-space {p >= b} with b the k-th largest of p: (b, n_in, n_in_eps) by full sort."""
    b = np.sort(p)[::-1][k - 1]
    return b, int((p >= b).sum()), int((p >= b - shift).sum())


def ref_search(X, alpha_fit, epsilon, metric, n_components, powers):
    """Every (component, power, side) candidate by brute force: a list of dicts."""
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    k = ref_rank(alpha_fit, n)
    V = ref_components(X)
    out = []
    for c in range(n_components):
        v = V[:, c]
        for e in powers:
            u = np.sign(v) * np.abs(v) ** e
            u = u / np.linalg.norm(u)
            shift = epsilon * ref_dual_norm(u, metric)
            for side in (1, -1):
                b, n_in, n_eps = ref_side(X @ (side * u), k, shift)
                out.append(dict(component=c, power=e, side=side, b=b, risk=n_in / n, adv_risk=n_eps / n))
    return out


def ref_select_count(P, k, shifts):
    """Per row: k-th largest, k-th smallest (by sorting) and, per shift column,
    (#p >= hi, #p >= hi - shift, #p <= lo, #p <= lo + shift): (n_rows, n_eps, 4)."""
    S = np.sort(P, axis=1)
    b_hi, b_lo = S[:, -k], S[:, k - 1]
    P64 = P.astype(np.float64)[:, None, :]
    hi64, lo64 = b_hi.astype(np.float64)[:, None, None], b_lo.astype(np.float64)[:, None, None]
    sh = np.asarray(shifts, dtype=np.float64)[:, :, None]
    counts = np.stack([
        np.broadcast_to((P64 >= hi64).sum(2), sh.shape[:2]), (P64 >= hi64 - sh).sum(2),
        np.broadcast_to((P64 <= lo64).sum(2), sh.shape[:2]), (P64 <= lo64 + sh).sum(2),
    ], axis=2)
    return b_hi, b_lo, counts
