"""Lloyd's k-means on uint8 or float32 rows, l2 or l1 assignment, mean update.

The kernels (``numbaconc.kernels.kmeans``) do the assignment (exact labels,
float32 scores with proven error bounds, Elkan-style pruning) and the
chunk-local sums; this module validates input, keeps the bounds between
iterations, merges chunk sums in chunk order and runs the loop.

The rows may be an array, a memmap, an h5py dataset or a ``RowView`` (the
boxes' dense set: an index array over the file). ``rows_in_memory`` holds a
view in memory when it fits ``ROWS_SHARE`` of the budget; otherwise every
pass reads it in blocks of whole chunks. The per-row lower bounds (n x T
float64) go to a scratch memmap past ``BOUNDS_SHARE``. Chunk layout and
merge order do not depend on either, so the result is the same bits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import time

import numpy as np

from . import budget
from .datasets import RowView
from .errors import NumbaconcError
from .kernels import kmeans as _k
from .neighbours import scratch_array
from .validation import (CHUNK_ROWS, canonical_metric, check_choice, check_int, check_matrix,
                         checked_blocks, readonly)

METRICS = ("l1", "l2")
EMPTY = ("keep", "farthest")
# Rows per kernel call = _BATCH_CHUNKS * chunk_rows; bounds the chunk-sum
# buffers to _BATCH_CHUNKS x n_clusters x n_features (chunk layout, and so
# the result, does not depend on it).
_BATCH_CHUNKS = 16
# k-means reads its rows once per iteration: a row view is held in memory
# within this share of the budget, else read in blocks every pass
ROWS_SHARE = 0.25
# the per-row state (the n x T lower bounds and seven n-long arrays, 8 bytes
# each) stays in memory within this share, else it lives in scratch memmaps
# (numbaconc.neighbours.scratch_array)
BOUNDS_SHARE = 0.25
# rows per block when a pass reads a view (at most _BATCH_CHUNKS chunks)
_STREAM_SHARE = 0.0625


@dataclass
class KMeansResult:
    """Outcome of :func:`kmeans` (all arrays in storage units)."""

    centers: np.ndarray  # (n_clusters, n_features) float64
    labels: np.ndarray  # (n_samples,) int64
    n_iter: int
    converged: bool
    inertia: float
    history: list = field(default_factory=list)


def check_rows(X, name: str = "X"):
    """A (n, d) uint8/float32 matrix: an array or memmap as a C-contiguous
    read-only view; a ``RowView`` or h5py dataset as it is (read in blocks).
    Float input is checked for NaN/inf chunk by chunk (no full-size temporary)."""
    if isinstance(X, np.ndarray):
        check_matrix(X, name=name)
        X = readonly(np.ascontiguousarray(X))
        if X.dtype == np.float32 and _k.count_nonfinite(X, CHUNK_ROWS) > 0:
            raise NumbaconcError(f"{name} contains NaN or inf")
        return X
    if not _is_view(X):
        raise NumbaconcError(f"{name} must be a numpy array, memmap, h5py dataset or RowView, "
                             f"got {type(X).__name__}")
    check_matrix(X, name=name)
    if np.dtype(X.dtype) == np.float32:
        for _ in checked_blocks(X, _stream_rows(X, CHUNK_ROWS), name):
            pass
    return X


def _is_view(X) -> bool:
    import h5py

    return isinstance(X, (RowView, h5py.Dataset))


def rows_in_memory(X):
    """X as k-means reads it: an array as it is; a ``RowView`` or h5py
    dataset materialised when it fits ``ROWS_SHARE`` of the memory budget,
    else as it is (every pass then reads it in blocks)."""
    if isinstance(X, np.ndarray) or not _is_view(X):
        return X
    n, d, dtype = check_matrix(X)
    if budget.fits(n * d * dtype.itemsize, ROWS_SHARE):
        return np.asarray(X)
    return X


def _stream_rows(X, chunk_rows: int) -> int:
    """Rows per pass block: every batch of an array (a view costs nothing);
    for a row view whole chunks, at most a batch, within ``_STREAM_SHARE``."""
    if isinstance(X, np.ndarray):
        return _BATCH_CHUNKS * chunk_rows
    row_bytes = int(X.shape[1]) * np.dtype(X.dtype).itemsize
    chunks = budget.rows_for(row_bytes, _STREAM_SHARE) // chunk_rows
    return chunk_rows * min(_BATCH_CHUNKS, max(1, chunks))


def _block(X, a: int, b: int) -> np.ndarray:
    """Rows [a, b) as a C-contiguous read-only array (of an array: a view)."""
    if isinstance(X, np.ndarray):
        return X[a:b]
    return readonly(np.ascontiguousarray(X[a:b]))


def _take(X, rows) -> np.ndarray:
    """The rows ``rows`` (any order) as an array."""
    rows = np.asarray(rows, dtype=np.int64)
    if isinstance(X, np.ndarray):
        return np.asarray(X[rows])
    return RowView(X).take(rows)


def _initial_centers(X, n_clusters, init, metric, rng):
    n, d = X.shape
    if isinstance(init, str):
        if init == "random":
            idx = rng.choice(n, size=n_clusters, replace=False)
            return _take(X, idx).astype(np.float64)
        if init in ("k-means++", "kmeans++"):
            return _kmeanspp(X, n_clusters, metric, rng)
        raise NumbaconcError(f"init must be 'random', 'k-means++' or an array, got {init!r}")
    C = np.asarray(init)
    if C.shape != (n_clusters, d):
        raise NumbaconcError(f"init array must have shape ({n_clusters}, {d}), got {C.shape}")
    if not np.issubdtype(C.dtype, np.number):
        raise NumbaconcError(f"init array must be numeric, got {C.dtype}")
    C = np.array(C, dtype=np.float64, order="C")
    if not np.isfinite(C).all():
        raise NumbaconcError("init array contains NaN or inf")
    return C


def _kmeanspp(X, n_clusters, metric, rng):
    """Plain k-means++ (D^2 sampling for l2, D sampling for l1), seeded."""
    n, d = X.shape
    kernel = _k.min_dist_update_l2 if metric == "l2" else _k.min_dist_update_l1
    step = _stream_rows(X, CHUNK_ROWS)

    def update(X, c, mind):  # per row: any block split gives the same values
        for a in range(0, n, step):
            b = min(n, a + step)
            kernel(_block(X, a, b), c, mind[a:b])

    C = np.empty((n_clusters, d), np.float64)
    first = int(rng.integers(n))
    C[0] = _take(X, [first])[0]
    mind = np.full(n, np.inf)
    update(X, C[0], mind)
    for k in range(1, n_clusters):
        cum = np.cumsum(mind)
        total = cum[-1]
        if total > 0:
            pick = int(np.searchsorted(cum, rng.random() * total, side="right"))
            pick = min(pick, n - 1)
        else:  # every row coincides with a chosen centre
            pick = int(rng.integers(n))
        C[k] = _take(X, [pick])[0]
        update(X, C[k], mind)
    return C


def kmeans(X, n_clusters: int, *, metric: str = "l2", init="random", max_iter: int = 30,
           random_state=None, empty: str = "keep", chunk_rows: int = CHUNK_ROWS) -> KMeansResult:
    """Lloyd's k-means, in the order of the 2019 code.

    Order of operations: ``centers`` = initial centres; then for iteration
    k = 1 .. max_iter: (1) assign every row to its nearest centre (iteration 1
    assigns to the initial centres); (2) if k > 1 and no label changed, stop
    (``converged=True``, no update); (3) replace each centre by the mean of its
    rows. So on return ``centers`` are the means of the final ``labels``
    (except empty clusters), while ``inertia`` and ``history`` describe each
    assignment against the centres it was made with.

    Parameters
    ----------
    X : (n_samples, n_features) uint8 or float32 array, read-only memmap OK,
        or an h5py dataset or ``RowView`` (read in blocks every pass; use
        ``rows_in_memory`` first to hold it when it fits the budget).
        Storage units; uint8 rows stay uint8 (no float copy of X).
    metric : "l2" (nearest by squared Euclidean) or "l1" (cityblock, as the
        2019 code). The update is always the mean. Distances are the float64
        direct form summed in feature order; ties go to the lowest cluster id.
    init : "random" (n_clusters distinct rows drawn with
        ``np.random.default_rng(random_state)``), "k-means++" (plain, seeded;
        D^2 weights for l2, D for l1) or an (n_clusters, n_features) array.
    empty : what an empty cluster's centre becomes at the update.
        "keep": its previous centre (it may win rows back later).
        "farthest": the row farthest from its assigned centre (largest
        ``dist``, ties to the lowest row index; several empty clusters take the
        next farthest rows in cluster-id order); other centres are plain means.
    chunk_rows : rows per parallel chunk. Sums are chunk-local (int64 for
        uint8: exact) and merged in chunk order: identical for any thread count.

    ``history`` has one dict per iteration: iteration, n_changed, inertia,
    n_empty, plus diagnostics n_refined (rows whose near-tied candidates were
    re-ranked with the defining distance), n_scores (row-centre float32
    scores computed; the rest were decided by bounds) and seconds.

    Memory: X is not copied; the per-row state takes n_samples x
    (n_clusters + 7) x 8 bytes (bounds, labels, norms: scratch memmaps past
    ``BOUNDS_SHARE`` of the budget, so ``labels`` may be one), the chunk sums
    16 x n_clusters x n_features.
    """
    X = check_rows(X)
    n, d = X.shape
    n_clusters = check_int(n_clusters, "n_clusters", low=1, high=n)
    metric = canonical_metric(metric, METRICS)
    max_iter = check_int(max_iter, "max_iter", low=1)
    check_choice(empty, EMPTY, "empty")
    chunk_rows = check_int(chunk_rows, "chunk_rows", low=1)

    rng = np.random.default_rng(random_state)
    C = _initial_centers(X, n_clusters, init, metric, rng)

    batch = _stream_rows(X, chunk_rows)  # whole chunks: the chunk layout of any batch size
    in_memory = budget.fits(n * (n_clusters + 7) * 8, BOUNDS_SHARE)

    def per_row(shape, dtype=np.float64, fill=0):
        shape = tuple(np.atleast_1d(shape))
        if in_memory:
            return np.full(shape, fill, dtype)
        out = scratch_array(shape, dtype, 0.0, zero=True)
        if fill:
            out[:] = fill
        return out

    xnorm2 = per_row(n)
    xnorm1 = per_row(n)
    for a in range(0, n, batch):
        b = min(n, a + batch)
        _k.row_norms(_block(X, a, b), xnorm2[a:b], xnorm1[a:b])
    # Proven bounds on |float32 score - float64 defining distance| (see kernels).
    u32, u64 = 2.0 ** -24, 2.0 ** -53
    if metric == "l2":
        tol32 = 1.25 * 2.0 * (d + 2) * u32
        tol64 = 1.25 * 4.0 * (d + 4) * u64
    else:
        tol32 = 1.25 * 2.0 * (d + 4) * u32
        tol64 = 1.25 * 2.0 * (d + 4) * u64

    # uint8 rows: relabelled rows update exact int64 sums incrementally;
    # float rows: sums are recomputed every iteration (same bits as a fresh sum).
    track = X.dtype == np.uint8
    sum_dtype = np.int64 if track else np.float64
    n_batch_chunks = min(_BATCH_CHUNKS, -(-n // chunk_rows))
    dsums = np.empty((n_batch_chunks, n_clusters, d), sum_dtype)
    dcounts = np.empty((n_batch_chunks, n_clusters), np.int64)
    dq = np.zeros((n_batch_chunks, n_clusters))  # l1 never writes it: keep it finite
    stats = np.empty((n_batch_chunks, 3), np.int64)

    labels = per_row(n, np.int64, -1)
    upper = per_row(n)
    lower = per_row((n, n_clusters))
    lmin = per_row(n)
    stamp = per_row(n, np.int64)
    cum = np.zeros((max_iter + 2, n_clusters))  # cumulative centre moves (l2 bounds)
    dist = per_row(n)
    move = np.zeros(n_clusters)
    half_sep = np.zeros(n_clusters)
    total_sums = np.zeros((n_clusters, d), sum_dtype)
    total_counts = np.zeros(n_clusters, np.int64)
    total_q = np.zeros(n_clusters)
    history = []
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        t0 = time.perf_counter()
        C32 = C.astype(np.float32)
        cnorm2 = np.einsum("ij,ij->i", C, C)
        cnorm1 = np.abs(C).sum(axis=1)
        n_changed = n_refined = n_scored = 0
        for a in range(0, n, batch):
            b = min(n, a + batch)
            nch = -(-(b - a) // chunk_rows)
            block = _block(X, a, b)
            if metric == "l2":
                _k.lloyd_assign_l2(block, C, C32, cnorm2, xnorm2[a:b], tol32, tol64, cum, it,
                                   half_sep, chunk_rows, labels[a:b], upper[a:b], lower[a:b],
                                   lmin[a:b], stamp[a:b], track, dsums, dcounts, dq, stats)
            else:
                _k.lloyd_assign_l1(block, C, C32, cnorm1, xnorm1[a:b], tol32, tol64, move,
                                   half_sep, chunk_rows, labels[a:b], upper[a:b], lower[a:b],
                                   track, dsums, dcounts, dist[a:b], stats)
            if track:
                _k.merge_chunk_sums(dsums, dcounts, dq, nch, total_sums, total_counts, total_q)
            n_changed += int(stats[:nch, 0].sum())
            n_refined += int(stats[:nch, 1].sum())
            n_scored += int(stats[:nch, 2].sum())
        if not track:
            total_sums, total_counts, total_q = _fresh_sums(X, labels, xnorm2, n_clusters,
                                                            chunk_rows, batch)
        if metric == "l2":
            # sum_i |x_i - c_j|^2 = sum |x_i|^2 - 2 c_j . S_j + n_j |c_j|^2, per cluster
            inertia = float(np.sum(total_q - 2.0 * np.einsum("ij,ij->i", C, total_sums)
                                   + total_counts * cnorm2))
        else:
            inertia = float(np.sum(dist))
        empty_ids = np.flatnonzero(total_counts == 0)
        history.append(dict(iteration=it, n_changed=n_changed, inertia=inertia,
                            n_empty=int(empty_ids.size), n_refined=n_refined,
                            n_scores=n_scored, seconds=time.perf_counter() - t0))
        if it > 1 and n_changed == 0:
            converged = True
            break
        if empty_ids.size and empty == "farthest" and metric == "l2":
            for a in range(0, n, batch):
                b = min(n, a + batch)
                _k.assigned_dist(_block(X, a, b), C, labels[a:b], False, dist[a:b])
        new = _update(X, C, total_sums, total_counts, empty_ids, empty, dist)
        move, half_sep = _motion(C, new, metric)
        cum[it + 1] = cum[it] + move
        C = new
    return KMeansResult(centers=C, labels=labels, n_iter=it, converged=converged,
                        inertia=history[-1]["inertia"], history=history)


def _fresh_sums(X, labels, xnorm2, n_clusters, chunk_rows, batch):
    """Per-cluster row sums, counts and sums of |x|^2, chunk sums merged in
    order (``batch``: rows per kernel call, whole chunks)."""
    n, d = X.shape
    n_batch_chunks = min(_BATCH_CHUNKS, -(-n // chunk_rows))
    sums = np.empty((n_batch_chunks, n_clusters, d))
    counts = np.empty((n_batch_chunks, n_clusters), np.int64)
    q = np.empty((n_batch_chunks, n_clusters))
    total_sums = np.zeros((n_clusters, d))
    total_counts = np.zeros(n_clusters, np.int64)
    total_q = np.zeros(n_clusters)
    for a in range(0, n, batch):
        b = min(n, a + batch)
        _k.cluster_sums(_block(X, a, b), labels[a:b], xnorm2[a:b], chunk_rows, sums, counts, q)
        _k.merge_chunk_sums(sums, counts, q, -(-(b - a) // chunk_rows),
                            total_sums, total_counts, total_q)
    return total_sums, total_counts, total_q


def _motion(old, new, metric):
    """Centre moves (rounded up) and half the distance from each new centre to
    its nearest other one (rounded down), in the metric's units (l2: not squared)."""
    T = old.shape[0]
    ord_ = 2 if metric == "l2" else 1
    move = np.linalg.norm(new - old, ord=ord_, axis=1) * (1.0 + 1e-9)
    nearest = np.empty(T)
    _k.nearest_centre_distance(new, metric == "l1", nearest)
    half_sep = 0.5 * nearest * (1.0 - 1e-9)
    return move, half_sep


def _update(X, C, sums, counts, empty_ids, empty, dist):
    nonempty = counts > 0
    new = C.copy()
    new[nonempty] = sums[nonempty] / counts[nonempty, None]
    if empty_ids.size and empty == "farthest":
        # stable sort on -dist: equal distances keep the lower row index first
        order = np.argsort(-dist, kind="stable")[: empty_ids.size]
        new[empty_ids] = _take(X, order)
    return new
