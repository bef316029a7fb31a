"""Axis-aligned boxes around clusters (the l-inf estimator's geometry,
METHOD.md section 3): box j around cluster j, from one pass over the rows.

Which rows lie in the union of the boxes (``box_coverage``, with the data
domain) is region geometry and lives in ``numbaconc.coverage``, below the
estimators; it is re-exported here.

Everything is in storage units (pixel levels for uint8 data). ``X`` may be a
numpy array, a read-only memmap or an ``h5py.Dataset`` (read in row blocks).
"""

from __future__ import annotations

import numpy as np

from .coverage import _block_rows, _blocks, _check_float_matrix, _n_rows_cols
from .coverage import box_coverage, check_domain, face_slack  # noqa: F401 (re-exported)
from .errors import NumbaconcError
from .kernels import boxes as _b
from .kernels import kmeans as _k
from .validation import CHUNK_ROWS as _CHUNK_ROWS
from .validation import check_choice, check_int

SHAPES = ("symmetric", "tight")


def boxes_from_clusters(X, labels, n_clusters, *, centers=None, shape="symmetric",
                        block_rows: int | None = None):
    """One box per cluster, as (box_centers, half_widths), both (T, d) float64.

    shape="symmetric" (the paper's): the box centre is the cluster centre
    (``centers``, e.g. ``KMeansResult.centers``; by default the mean of the
    cluster's rows) and the half-width in coordinate t is the max over the
    cluster of ``|float64(x[t]) - c[t]|``.
    One pass over the rows gives each cluster's coordinate min and max (and
    the sums, for the mean): the half-widths follow from them.
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

    nch_max = -(-min(block_rows, n) // _CHUNK_ROWS)
    mean_centres = shape == "symmetric" and centers is None
    lo_all = np.full((T, d), np.inf)
    hi_all = np.full((T, d), -np.inf)
    lo = np.empty((nch_max, T, d))
    hi = np.empty((nch_max, T, d))
    if mean_centres:
        int_data = np.dtype(X.dtype) == np.uint8
        sums_all = np.zeros((T, d), np.int64 if int_data else np.float64)
        counts_all = np.zeros(T, np.int64)
        sums = np.empty((nch_max, T, d), sums_all.dtype)
        counts = np.empty((nch_max, T), np.int64)
        q = np.empty((nch_max, T))
    for a, block in _blocks(X, block_rows):  # one read of X for every shape
        m = block.shape[0]
        nch = -(-m // _CHUNK_ROWS)
        _b.cluster_minmax(block, labels[a:a + m], _CHUNK_ROWS, lo, hi)
        np.minimum(lo_all, lo[:nch].min(axis=0), out=lo_all)
        np.maximum(hi_all, hi[:nch].max(axis=0), out=hi_all)
        if mean_centres:
            _k.cluster_sums(block, labels[a:a + m], np.zeros(m), _CHUNK_ROWS, sums, counts, q)
            for c in range(nch):  # fixed merge order
                sums_all += sums[c]
                counts_all += counts[c]
    full = np.bincount(labels[labels >= 0], minlength=T) > 0
    if shape == "tight":
        box_centers = np.zeros((T, d))
        box_centers[full] = (lo_all[full] + hi_all[full]) / 2.0
    elif centers is not None:
        box_centers = _check_float_matrix(centers, (T, d), "centers")
    else:
        box_centers = np.zeros((T, d))
        box_centers[full] = sums_all[full] / counts_all[full, None]
    # max over members of |x - c| is reached at a coordinate's min or max
    # member: float subtraction is monotone, so this is bit for bit the max of
    # |float64(x[t]) - c[t]| over the members
    widths = np.full((T, d), -1.0)
    c = box_centers[full]
    widths[full] = np.maximum(hi_all[full] - c, c - lo_all[full])
    return box_centers, widths


