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

On a dask cluster (``numbaconc.cluster``) each assignment pass runs as one
task per row range, the workers keeping their ranges' bounds between
iterations (``assign_range``); this process keeps the labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import time

import numpy as np

from . import budget, cluster
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
    given = X  # a memmap as given: cluster workers map its file instead of receiving a copy
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
    # On a cluster the workers keep the bounds of their row ranges between
    # iterations; this process keeps the labels (and l1 distances) only.
    passes = cluster.KMeansPasses(given, chunk_rows) if cluster.current() is not None else None
    if passes is None:
        state = _row_state(X, 0, n, n_clusters, batch)
        buffers = _Buffers(n_clusters, d, track, min(_BATCH_CHUNKS, -(-n // chunk_rows)))
        labels, dist, xnorm2 = state.labels, state.dist, state.xnorm2
    else:
        in_memory = budget.fits(n * 4 * 8, BOUNDS_SHARE)  # labels, dist and the two norms
        labels = _per_row(n, in_memory, np.int64, -1)
        dist = _per_row(n, in_memory)
        # float rows: the client sums them every iteration (order matters), with their |x|^2
        xnorm2 = None if track else _row_norms(X, 0, n, batch, in_memory)[0]
    cum = np.zeros((max_iter + 2, n_clusters))  # cumulative centre moves (l2 bounds)
    move = np.zeros(n_clusters)
    half_sep = np.zeros(n_clusters)
    total_sums = np.zeros((n_clusters, d), sum_dtype)
    total_counts = np.zeros(n_clusters, np.int64)
    total_q = np.zeros(n_clusters)
    history = []
    converged = False
    it = 0
    try:
        for it in range(1, max_iter + 1):
            t0 = time.perf_counter()
            step = Step(metric=metric, it=it, C=C, C32=C.astype(np.float32),
                        cnorm2=np.einsum("ij,ij->i", C, C), cnorm1=np.abs(C).sum(axis=1),
                        cum=cum, move=move, half_sep=half_sep, tol32=tol32, tol64=tol64,
                        chunk_rows=chunk_rows, track=track)
            if passes is None:
                counts = _assign(X, 0, n, batch, state, step, buffers,
                                 (total_sums, total_counts, total_q))
            else:
                counts = passes.assign(step, labels, dist, (total_sums, total_counts, total_q))
            n_changed, n_refined, n_scored = counts
            if not track:
                total_sums, total_counts, total_q = _fresh_sums(X, labels, xnorm2, n_clusters,
                                                                chunk_rows, batch)
            if metric == "l2":
                # sum_i |x_i - c_j|^2 = sum |x_i|^2 - 2 c_j . S_j + n_j |c_j|^2, per cluster
                inertia = float(np.sum(total_q - 2.0 * np.einsum("ij,ij->i", C, total_sums)
                                       + total_counts * step.cnorm2))
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
    finally:
        if passes is not None:
            passes.close()
    return KMeansResult(centers=C, labels=labels, n_iter=it, converged=converged,
                        inertia=history[-1]["inertia"], history=history)


@dataclass(frozen=True)
class Step:
    """What one assignment needs besides the rows and their state."""

    metric: str
    it: int                  # iteration, from 1
    C: np.ndarray            # (T, d) float64 centres, and their float32 copy
    C32: np.ndarray
    cnorm2: np.ndarray
    cnorm1: np.ndarray
    cum: np.ndarray          # cumulative centre moves before each iteration (l2 bounds)
    move: np.ndarray         # last move of each centre (l1 bounds)
    half_sep: np.ndarray
    tol32: float
    tol64: float
    chunk_rows: int
    track: bool              # uint8 rows: exact sums of the relabelled rows


@dataclass
class _RowState:
    """Per-row state of the rows [start, stop) between iterations (index 0 is row start)."""

    labels: np.ndarray
    upper: np.ndarray
    lower: np.ndarray        # (rows, T)
    lmin: np.ndarray
    stamp: np.ndarray
    dist: np.ndarray         # l1: each row's distance to its centre (the inertia)
    xnorm2: np.ndarray
    xnorm1: np.ndarray
    version: int = 0         # the iteration whose assignment the state holds


def _per_row(shape, in_memory: bool, dtype=np.float64, fill=0):
    shape = tuple(np.atleast_1d(shape))
    if in_memory:
        return np.full(shape, fill, dtype)
    out = scratch_array(shape, dtype, 0.0, zero=True)
    if fill:
        out[:] = fill
    return out


def _row_norms(X, start, stop, batch, in_memory: bool):
    """(|x|^2, |x|_1) of the rows [start, stop), in blocks of ``batch`` rows."""
    m = stop - start
    xnorm2, xnorm1 = _per_row(m, in_memory), _per_row(m, in_memory)
    for a in range(start, stop, batch):
        b = min(stop, a + batch)
        _k.row_norms(_block(X, a, b), xnorm2[a - start:b - start], xnorm1[a - start:b - start])
    return xnorm2, xnorm1


def _row_state(X, start, stop, n_clusters, batch) -> _RowState:
    """Fresh state of rows [start, stop): no labels yet, the row norms computed.
    In memory within ``BOUNDS_SHARE`` of the budget, else scratch memmaps."""
    m = stop - start
    in_memory = budget.fits(m * (n_clusters + 7) * 8, BOUNDS_SHARE)
    xnorm2, xnorm1 = _row_norms(X, start, stop, batch, in_memory)
    return _RowState(labels=_per_row(m, in_memory, np.int64, -1), upper=_per_row(m, in_memory),
                     lower=_per_row((m, n_clusters), in_memory), lmin=_per_row(m, in_memory),
                     stamp=_per_row(m, in_memory, np.int64), dist=_per_row(m, in_memory),
                     xnorm2=xnorm2, xnorm1=xnorm1)


class _Buffers:
    """The chunk-local buffers of one kernel call (made once per fit: a worker
    under dask's malloc settings would otherwise fault them in every call)."""

    def __init__(self, n_clusters, d, track, n_chunks):
        self.dsums = np.empty((n_chunks, n_clusters, d), np.int64 if track else np.float64)
        self.dcounts = np.empty((n_chunks, n_clusters), np.int64)
        self.dq = np.zeros((n_chunks, n_clusters))  # l1 never writes it: keep it finite
        self.stats = np.empty((n_chunks, 3), np.int64)


def _assign(X, start, stop, batch, state, step, buffers, totals, changed=None):
    """One assignment of the rows [start, stop) (``start`` on a chunk boundary),
    their labels and bounds updated in ``state``. With ``step.track`` the sums
    of the relabelled rows are added into ``totals`` = (sums, counts, q): exact
    integers, so any split into ranges adds up to the same. ``changed``: a list
    that receives, per block, the relabelled rows (global indices).
    Returns (n_changed, n_refined, n_scores)."""
    s, b_ = state, buffers
    n_changed = n_refined = n_scored = 0
    for a in range(start, stop, batch):
        b = min(stop, a + batch)
        i, j = a - start, b - start
        nch = -(-(b - a) // step.chunk_rows)
        block = _block(X, a, b)
        before = None if changed is None else np.array(s.labels[i:j])
        if step.metric == "l2":
            _k.lloyd_assign_l2(block, step.C, step.C32, step.cnorm2, s.xnorm2[i:j], step.tol32,
                               step.tol64, step.cum, step.it, step.half_sep, step.chunk_rows,
                               s.labels[i:j], s.upper[i:j], s.lower[i:j], s.lmin[i:j],
                               s.stamp[i:j], step.track, b_.dsums, b_.dcounts, b_.dq, b_.stats)
        else:
            _k.lloyd_assign_l1(block, step.C, step.C32, step.cnorm1, s.xnorm1[i:j], step.tol32,
                               step.tol64, step.move, step.half_sep, step.chunk_rows,
                               s.labels[i:j], s.upper[i:j], s.lower[i:j], step.track,
                               b_.dsums, b_.dcounts, s.dist[i:j], b_.stats)
        if step.track:
            _k.merge_chunk_sums(b_.dsums, b_.dcounts, b_.dq, nch, *totals)
        if changed is not None:
            changed.append(a + np.flatnonzero(s.labels[i:j] != before))
        n_changed += int(b_.stats[:nch, 0].sum())
        n_refined += int(b_.stats[:nch, 1].sum())
        n_scored += int(b_.stats[:nch, 2].sum())
    return n_changed, n_refined, n_scored


STATE_LOST = "state lost"


def assign_range(X, start, stop, step: Step, states: dict, labels=None):
    """One assignment of rows [start, stop) on a cluster worker, which keeps
    their state in ``states`` (by ``start``) between iterations. A worker
    without the state of the previous iteration (a new worker, a retried task)
    returns ``STATE_LOST`` unless the range's ``labels`` are given: it then
    starts from them with no bounds (every centre scored), which gives the
    same labels. Returns the relabelled rows and their labels, the range's
    sum changes (uint8 rows), the counts and (l1) every row's distance."""
    n_clusters, d = step.C.shape
    entry = states.get(start)
    if entry is None or entry[0].version != step.it - 1:
        if step.it > 1 and labels is None:
            return STATE_LOST
        batch = _stream_rows(X, step.chunk_rows)
        n_chunks = min(_BATCH_CHUNKS, -(-(stop - start) // step.chunk_rows))
        entry = (_row_state(X, start, stop, n_clusters, batch),
                 _Buffers(n_clusters, d, step.track, n_chunks), batch)
        if labels is not None:
            entry[0].labels[:] = labels
            entry[0].upper[:] = np.inf  # lower = 0: no centre ruled out
        states[start] = entry
    state, buffers, batch = entry
    totals = (np.zeros((n_clusters, d), buffers.dsums.dtype), np.zeros(n_clusters, np.int64),
              np.zeros(n_clusters))
    changed = []
    state.version = -1  # a task that fails inside the kernel leaves no usable state
    counts = _assign(X, start, stop, batch, state, step, buffers, totals, changed)
    state.version = step.it
    rows = np.concatenate(changed)
    return dict(rows=rows, labels=np.array(state.labels[rows - start]),
                totals=totals if step.track else None, counts=counts,
                dist=np.array(state.dist) if step.metric == "l1" else None)


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
