"""Axis-aligned boxes around clusters, and which rows lie in their union.

This is the geometry of the l-inf estimator (METHOD.md section 3): box j
around cluster j, the error region E is the complement of the union of the
boxes grown by epsilon, so a row is outside E_eps iff it is inside some box
and outside E iff it is inside some grown box.

Everything is in storage units (pixel levels for uint8 data). ``X`` may be a
numpy array, a read-only memmap or an ``h5py.Dataset`` (read in row blocks).

The data domain. Images live in [0, 1]^d (pixel levels [0, 255]), and so do
E and the adversary's perturbed points. A face of a grown box that lies
outside the domain has no point of E beyond it, so it cannot put anything in
E_eps: with ``domain=(lo, hi)`` such faces are not tested when counting E_eps.
That is still an upper bound on E_eps (a point is counted safe only when its
whole eps-ball, cut to the domain, lies in one grown box), tighter than the
2019 count, which treats E as extending outside the domain (``domain=None``).
"""

from __future__ import annotations

import numpy as np

from .errors import NumbaconcError
from .kernels import boxes as _b
from .kernels import kmeans as _k
from .validation import CHUNK_ROWS as _CHUNK_ROWS
from .validation import check_choice, check_float, check_int, check_matrix, checked_blocks, readonly

SHAPES = ("symmetric", "tight")


def _n_rows_cols(X, name="X"):
    n, d, _ = check_matrix(X, name=name)
    return n, d


def _blocks(X, block_rows):
    """Yield (start, C-contiguous read-only block) over the rows of X, NaN/inf
    checked (read-only: one compiled signature per dtype)."""
    for a, _, block in checked_blocks(X, block_rows):
        yield a, readonly(block)


def _block_rows(X, block_rows):
    """Rows per block: as given, or one eighth of the memory budget's worth."""
    if block_rows is None:
        from .budget import rows_for

        # whole chunks: the chunk layout (and so any float sum) is that of any other block size
        rows = rows_for(X.shape[1] * (np.dtype(X.dtype).itemsize + 8), 0.125, minimum=_CHUNK_ROWS)
        return rows // _CHUNK_ROWS * _CHUNK_ROWS
    return check_int(block_rows, "block_rows", low=1)


def _check_float_matrix(A, shape, name):
    A = np.asarray(A)
    if A.shape != shape:
        raise NumbaconcError(f"{name} must have shape {shape}, got {A.shape}")
    if not np.issubdtype(A.dtype, np.number):
        raise NumbaconcError(f"{name} must be numeric, got {A.dtype}")
    A = np.array(A, dtype=np.float64, order="C")
    if np.isnan(A).any():
        raise NumbaconcError(f"{name} contains NaN")
    return A


def boxes_from_clusters(X, labels, n_clusters, *, centers=None, shape="symmetric",
                        block_rows: int | None = None):
    """One box per cluster, as (box_centers, half_widths), both (T, d) float64.

    shape="symmetric" (the paper's): the box centre is the cluster centre
    (``centers``, e.g. ``KMeansResult.centers``; by default the mean of the
    cluster's rows) and the half-width in coordinate t is the max over the
    cluster of ``|float64(x[t]) - c[t]|``.
    shape="tight": per coordinate [min, max] of the cluster, stored as centre
    (lo + hi) / 2 and half-width (hi - lo) / 2 (exact half-integers for uint8
    data); the half-width is computed as the max of |x - c| over the members,
    which equals (hi - lo) / 2 whenever that is exact and otherwise still
    keeps every member inside. ``centers`` is ignored.

    Rows with a negative label belong to no box. An empty cluster gets
    half-widths of -1 (it contains nothing, even grown; its centre is the given
    one, or 0).
    """
    n, d = _n_rows_cols(X)
    check_choice(shape, SHAPES, "box shape")
    T = check_int(n_clusters, "n_clusters", low=1)
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise NumbaconcError(f"labels must have shape ({n},), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise NumbaconcError(f"labels must be integers, got {labels.dtype}")
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    if labels.size and labels.max() >= T:
        raise NumbaconcError(f"labels must be < n_clusters={T}, got {labels.max()}")
    block_rows = _block_rows(X, block_rows)

    def chunked(kernel_out_shape):
        return np.empty((-(-min(block_rows, n) // _CHUNK_ROWS), *kernel_out_shape))

    if shape == "tight":
        lo_all = np.full((T, d), np.inf)
        hi_all = np.full((T, d), -np.inf)
        lo = chunked((T, d))
        hi = chunked((T, d))
        for a, block in _blocks(X, block_rows):
            nch = -(-block.shape[0] // _CHUNK_ROWS)
            _b.cluster_minmax(block, labels[a:a + block.shape[0]], _CHUNK_ROWS, lo, hi)
            np.minimum(lo_all, lo[:nch].min(axis=0), out=lo_all)
            np.maximum(hi_all, hi[:nch].max(axis=0), out=hi_all)
        with np.errstate(invalid="ignore"):  # empty clusters: inf + -inf
            box_centers = (lo_all + hi_all) / 2.0
    elif centers is not None:
        box_centers = _check_float_matrix(centers, (T, d), "centers")
    else:
        int_data = np.dtype(X.dtype) == np.uint8
        sums_all = np.zeros((T, d), np.int64 if int_data else np.float64)
        counts_all = np.zeros(T, np.int64)
        nch_max = -(-min(block_rows, n) // _CHUNK_ROWS)
        sums = np.empty((nch_max, T, d), sums_all.dtype)
        counts = np.empty((nch_max, T), np.int64)
        q = np.empty((nch_max, T))
        for a, block in _blocks(X, block_rows):
            m = block.shape[0]
            nch = -(-m // _CHUNK_ROWS)
            _k.cluster_sums(block, labels[a:a + m], np.zeros(m), _CHUNK_ROWS, sums, counts, q)
            for c in range(nch):  # fixed merge order
                sums_all += sums[c]
                counts_all += counts[c]
        box_centers = np.zeros((T, d))
        full = counts_all > 0
        box_centers[full] = sums_all[full] / counts_all[full, None]
    empty = ~np.isfinite(box_centers).all(axis=1)
    box_centers[empty] = 0.0

    widths = np.full((T, d), -1.0)
    dev = chunked((T, d))
    for a, block in _blocks(X, block_rows):
        nch = -(-block.shape[0] // _CHUNK_ROWS)
        _b.cluster_maxdev(block, labels[a:a + block.shape[0]], box_centers, _CHUNK_ROWS, dev)
        np.maximum(widths, dev[:nch].max(axis=0), out=widths)
    return box_centers, widths


def face_slack(box_centers, half_widths, margin: float, domain=None):
    """(below, above), (T, d) float64: the half-widths the E_eps test uses on
    each side of each box, +inf where the grown face lies outside ``domain``.

    With ``domain=(lo, hi)``: the lower face of box j in coordinate t binds
    nothing when c - w - margin < lo (every domain point is above the grown
    face there), likewise the upper face when c + w + margin > hi. The test
    is strict with a relative slack of 1e-9, so float rounding can only keep
    a face, never free one it should not (never optimistic).
    """
    w = np.asarray(half_widths, dtype=np.float64)
    below = w.copy()
    above = w.copy()
    if domain is not None:
        lo, hi = (float(v) for v in domain)
        c = np.asarray(box_centers, dtype=np.float64)
        slack = 1e-9 * (1.0 + np.abs(c) + np.abs(w) + margin)
        live = w >= 0  # empty boxes stay empty
        below[live & (c - w - margin < lo - slack)] = np.inf
        above[live & (c + w + margin > hi + slack)] = np.inf
    return below, above


def check_domain(domain):
    """``None`` or a (lo, hi) pair of finite floats with lo < hi."""
    if domain is None:
        return None
    try:
        lo, hi = (float(v) for v in domain)
    except (TypeError, ValueError):
        raise NumbaconcError(f"domain must be a (low, high) pair, got {domain!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise NumbaconcError(f"domain must be finite with low < high, got ({lo}, {hi})")
    return lo, hi


def box_coverage(X, box_centers, half_widths, margin: float, *, domain=None,
                 block_rows: int | None = None):
    """Which rows are in the union of the boxes, and of the boxes grown by ``margin``.

    Returns (inside, inside_grown), (n,) bool each, from one pass over X:
    ``inside[i]`` iff some box j has ``|float64(x[i,t]) - c[j,t]| <= w[j,t]``
    for every t (inclusive: a point on a face is inside), ``inside_grown[i]``
    the same with ``w[j,t] + margin`` (the float64 sum). A box with any
    negative half-width is empty and stays empty when grown.

    ``margin`` is in storage units: epsilon / dataset.scale, e.g. 0.1 * 255 =
    25.5 pixel levels. It is never rounded: the test is made in float64 as
    written. On integer pixels with a tight box (c and w integers or
    half-integers, c + w an integer) |x - c| - w is an integer, so
    |x - c| <= w + 25.5 holds exactly when |x - c| <= w + 25: a non-integer
    margin acts as its floor. For symmetric boxes (c a k-means mean) the
    comparison is simply the float64 one.

    ``domain=(lo, hi)`` (storage units): ``inside`` ignores the faces whose
    grown copy lies outside the domain (``face_slack``); every row of X must
    then lie in the domain. ``inside_grown`` does not depend on it.
    """
    n, d = _n_rows_cols(X)
    domain = check_domain(domain)
    box_centers = np.asarray(box_centers)
    if box_centers.ndim != 2 or box_centers.shape[1] != d:
        raise NumbaconcError(f"box_centers must have shape (T, {d}), got {box_centers.shape}")
    T = box_centers.shape[0]
    box_centers = _check_float_matrix(box_centers, (T, d), "box_centers")
    half_widths = _check_float_matrix(half_widths, (T, d), "half_widths")
    margin = check_float(margin, "margin", low=0.0)
    block_rows = _block_rows(X, block_rows)
    empty_box = (half_widths < 0).any(axis=1)
    below, above = face_slack(box_centers, half_widths, margin, domain)
    # uint8 rows cannot leave a domain that holds [0, 255]: no pass to check them
    check_rows = domain is not None and not (
        np.dtype(X.dtype) == np.uint8 and domain[0] <= 0 and domain[1] >= 255)
    inside = np.empty(n, np.bool_)
    inside_grown = np.empty(n, np.bool_)
    for a, block in _blocks(X, block_rows):
        b = a + block.shape[0]
        if check_rows and (block.min() < domain[0] or block.max() > domain[1]):
            raise NumbaconcError(
                f"rows {a}..{b - 1} have values outside the domain [{domain[0]:g}, {domain[1]:g}]: "
                "the domain-aware count does not apply (count without the domain)")
        _b.box_coverage(block, box_centers, half_widths, below, above, empty_box, margin,
                        inside[a:b], inside_grown[a:b])
    return inside, inside_grown
