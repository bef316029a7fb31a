"""Slow, obvious references for k-means and boxes (full matrices, small data).

Distances follow the engine's definition: float64, x widened before the
subtraction, summed over the features in order (one numpy pass per feature),
no fused multiply-add, ties to the lowest cluster id (np.argmin).
"""

import numpy as np


def distance_matrix(X, C, metric):
    X = np.asarray(X)
    C = np.asarray(C, dtype=np.float64)
    D = np.zeros((X.shape[0], C.shape[0]))
    for t in range(X.shape[1]):
        diff = X[:, t, None].astype(np.float64) - C[None, :, t]
        D = D + (diff * diff if metric == "l2" else np.abs(diff))
    return D


def lloyd(X, C0, metric="l2", max_iter=30, empty="keep"):
    """Returns (centers, labels, n_iter, converged, history) like numbaconc.kmeans."""
    X = np.asarray(X)
    C = np.array(C0, dtype=np.float64)
    prev = None
    history = []
    converged = False
    for it in range(1, max_iter + 1):
        D = distance_matrix(X, C, metric)
        labels = np.argmin(D, axis=1)
        dist = D[np.arange(len(X)), labels]
        n_changed = len(X) if prev is None else int((labels != prev).sum())
        counts = np.bincount(labels, minlength=len(C))
        history.append(dict(iteration=it, n_changed=n_changed, inertia=float(dist.sum()),
                            n_empty=int((counts == 0).sum())))
        if it > 1 and n_changed == 0:
            converged = True
            break
        new = C.copy()
        for j in range(len(C)):
            if counts[j]:
                new[j] = X[labels == j].astype(np.float64).sum(axis=0) / counts[j]
        if empty == "farthest":
            order = np.argsort(-dist, kind="stable")
            for j, i in zip(np.flatnonzero(counts == 0), order):
                new[j] = X[i]
        C = new
        prev = labels
    return C, labels, it, converged, history


def boxes(X, labels, n_clusters, centers=None, shape="symmetric"):
    X64 = np.asarray(X).astype(np.float64)
    d = X64.shape[1]
    box_c = np.zeros((n_clusters, d))
    box_w = np.full((n_clusters, d), -1.0)
    for j in range(n_clusters):
        members = X64[labels == j]
        if len(members) == 0:
            if centers is not None and shape == "symmetric":
                box_c[j] = centers[j]
            continue
        if shape == "tight":
            box_c[j] = (members.min(axis=0) + members.max(axis=0)) / 2
        elif centers is not None:
            box_c[j] = centers[j]
        else:
            box_c[j] = members.sum(axis=0) / len(members)
        box_w[j] = np.abs(members - box_c[j]).max(axis=0)
    return box_c, box_w


def coverage(X, centers, widths, margin):
    """Brute force: every row against every box, every coordinate."""
    X64 = np.asarray(X).astype(np.float64)
    dev = np.abs(X64[:, None, :] - np.asarray(centers)[None, :, :])
    W = np.asarray(widths)[None, :, :]
    valid = ~(np.asarray(widths) < 0).any(axis=1)
    inside = ((dev <= W).all(axis=2) & valid).any(axis=1)
    grown = ((dev <= W + margin).all(axis=2) & valid).any(axis=1)
    return inside, grown


def coverage_in_domain(X, centers, widths, margin, lo, hi):
    """Brute force of the domain-aware E_eps count, from its definition: row x
    is safe when its eps-ball cut to [lo, hi]^d lies in some grown box, i.e.
    max(lo, x - m) >= c - w - m and min(hi, x + m) <= c + w + m in every t."""
    X64 = np.asarray(X).astype(np.float64)[:, None, :]
    C = np.asarray(centers)[None, :, :]
    W = np.asarray(widths)[None, :, :]
    valid = ~(np.asarray(widths) < 0).any(axis=1)
    ok = (np.maximum(lo, X64 - margin) >= C - W - margin) & (np.minimum(hi, X64 + margin) <= C + W + margin)
    return (ok.all(axis=2) & valid).any(axis=1)
