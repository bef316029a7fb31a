"""Ball geometry for the kernels of ``numbaconc.kernels.balls`` and for
coverage: the ranking key of a pair (squared l2 distance, or l-inf distance),
the grown threshold, and which rows lie in a union of balls.

Squared distances are carried as float64 everywhere. For uint8 data they are
computed in integers and are exact (integers < 2**53), so every "<= r" test is
exact. For float data they are computed in float64 from the values, summed in
feature order with no fast-math (``_sqdist_f``), so every kernel here (and the
numpy reference that sums in the same order) gets bit-identical values.

The "grown" threshold for a ball of squared radius r2 and margin eps is
``max(r2, (sqrt(r2) + eps) ** 2)`` in float64: the ``max`` keeps "covered
implies expanded" true when rounding makes ``sqrt(r2) ** 2 < r2`` (eps = 0).
"""

import numpy as np

from ._jit import jit

_INT32_SAFE_D = (2**31 - 1) // (255 * 255)  # int32 sums cannot overflow up to this d


@jit(inline="always")
def grown_threshold(r2, eps, linf):
    if linf:
        return r2 + eps
    g = (np.sqrt(r2) + eps) ** 2
    return g if g > r2 else r2


@jit
def _sqdist_u8(a, b):
    """Exact squared distance of two uint8 rows (int32 sums vectorise best)."""
    d = a.shape[0]
    if d <= _INT32_SAFE_D:
        acc = np.int32(0)
        for k in range(d):
            t = np.int32(a[k]) - np.int32(b[k])
            acc += t * t
        return np.float64(acc)
    acc64 = np.int64(0)
    for k in range(d):
        t = np.int64(a[k]) - np.int64(b[k])
        acc64 += t * t
    return np.float64(acc64)


@jit(fastmath=False)
def _sqdist_f(a, b):
    """Squared distance in float64, summed in feature order (no reassociation)."""
    acc = 0.0
    for k in range(a.shape[0]):
        t = np.float64(a[k]) - np.float64(b[k])
        acc += t * t
    return acc


@jit
def _linf_u8(a, b):
    """l-inf distance of two uint8 rows (widened before subtracting)."""
    acc = np.int32(0)
    for k in range(a.shape[0]):
        t = abs(np.int32(a[k]) - np.int32(b[k]))
        if t > acc:
            acc = t
    return np.float64(acc)


@jit(fastmath=False)
def _linf_f(a, b):
    acc = 0.0
    for k in range(a.shape[0]):
        t = abs(np.float64(a[k]) - np.float64(b[k]))
        if t > acc:
            acc = t
    return acc


@jit(inline="always")
def pair_key(a, b, integer, linf):
    """The ranking key: squared l2 distance, or the l-inf distance (``linf``)."""
    if linf:
        if integer:
            return _linf_u8(a, b)
        return _linf_f(a, b)
    if integer:
        return _sqdist_u8(a, b)
    return _sqdist_f(a, b)


@jit
def mark_ball(X, center, r2, eps, integer, linf, covered, expanded):
    """Mark points with d2 <= r2 covered and d2 <= grown(r2) expanded.

    Returns how many points not covered before lie strictly inside (d2 < r2).
    """
    g = grown_threshold(r2, eps, linf)
    strictly = 0
    for j in range(X.shape[0]):
        v = pair_key(center, X[j], integer, linf)
        if v < r2 and not covered[j]:
            strictly += 1
        if v <= r2:
            covered[j] = True
        if v <= g:
            expanded[j] = True
    return strictly


@jit
def coverage(X, centers, radii_sq, margin, integer, linf, inside, inside_grown):
    """Per row of X: inside some ball / inside some ball grown by margin
    (``radii_sq``: the radii's keys, squared under l2)."""
    n_balls = centers.shape[0]
    for j in range(X.shape[0]):
        a = False
        b = False
        for t in range(n_balls):
            v = pair_key(centers[t], X[j], integer, linf)
            if v <= radii_sq[t]:
                a = True
            if v <= grown_threshold(radii_sq[t], margin, linf):
                b = True
                if a:
                    break
        inside[j] = a
        inside_grown[j] = b
