"""Exact k-nearest neighbours (l1, l2, linf) with deterministic tie-breaking.

``knn`` streams blocks of queries against blocks of base rows and keeps a
running top-k per query (kernels in ``numbaconc.kernels.knn``). Results are
sorted by (distance, index) and equal a brute-force computation exactly for
uint8 data (distances are integers, or square roots of integers for l2); for
float32 data distances are computed in float64 from the float32 values.

Speed comes from pruning, never from approximation:

- columns are visited in order of decreasing variance, so a pair's partial
  distance passes the current k-th best after few dimensions and the pair
  is dropped (a stale k-th best is used, which is safe: it only decreases);
- rows are grouped by a coarse k-means in a small PCA space and each query
  block meets the nearest base blocks first, so thresholds get tight early;
  for l1 and l2 on uint8 the pixel sum / norm also bounds the distance from
  below and skips pairs;
- l1 and linf on uint8 first run a vertical prefilter (one SIMD lane per
  base row, 32 / 64 rows at a time): l1 compares 4 x 4 patch sums (a lower
  bound on l1), linf the query's 32 columns most likely to differ a lot;
  only rows whose bound does not already lose are checked exactly;
- l2 on uint8 with large k (>= ``_GEMM_MIN_K``) uses float32 BLAS GEMM blocks
  with a certified error bound to list candidates, then re-ranks them in
  exact integers (see ``kernels.knn.l2_gemm_collect``).

Memory (numbaconc.budget): the base (and the queries, when given) are copied
once into a column-permuted, zero-padded, row-reordered array, held in memory
when it fits the budget share and otherwise written to an unlinked scratch
file and memory-mapped (``scratch_array``); likewise the linf prefilter's
transposed copy. The GEMM path keeps a float32 copy of the base only when it
fits, else converts base blocks as they are used. Top-k state is per query
block; results go straight into compact output arrays (int32 indices, the
narrowest exact distance type, see ``list_dtypes``), which ``cached_knn``
places in the cache file itself when they do not fit.
No n x n matrix is ever built.

``cached_knn`` stores results in HDF5 under ``cache_dir()/knn``, keyed on
the dataset's content digest, with an ``array_digest`` of the lists that is
verified on every load (a damaged file is recomputed, with a notice); the
arrays are contiguous and uncompressed, memory-mapped read-only when they do
not fit the budget share. A cached result with a larger k serves a smaller k
(rows are sorted, so it is a column slice).
"""

from __future__ import annotations

import logging
import mmap
import os
import tempfile
from pathlib import Path

import h5py
import numba
import numpy as np

from . import budget, datasets
from .errors import NumbaconcError
from .integrity import array_digest
from .kernels import knn as _kernels
from .validation import METRICS, canonical_metric, check_finite, check_int, check_matrix  # noqa: F401 (METRICS: the registry, re-exported)

_READ_ROWS = 8192        # rows per read when copying the input
_BASE_BLOCK_BYTES = 1 << 20  # base block kept in L2 while queries stream over it
_QUERY_BLOCK = 512       # queries per kernel call (progress granularity)
_PAR_CHUNK = 8           # queries per dynamic scheduling chunk (early exit is uneven)


def list_dtypes(metric: str, dtype, n_rows: int, d: int):
    """(index dtype, stored distance dtype, squared) of compact neighbour lists.

    Indices int32 (int64 beyond 2**31 rows). uint8 data: exact integers,
    linf uint8, l1 int32, l2 the squared distance in int32 (int64 when d is
    too large for int32 sums: d > 33025). Float data: float64, the values the
    search computes (l2 already rooted).
    """
    metric = canonical_metric(metric)
    index = np.dtype(np.int32 if n_rows < 2**31 else np.int64)
    if np.dtype(dtype) != np.uint8:
        return index, np.dtype(np.float64), False
    top = {"l1": 255, "l2": 255 * 255, "linf": 255}[metric] * int(d)
    if metric == "linf":
        dist = np.uint8
    else:
        dist = np.int32 if top < 2**31 else np.int64
    return index, np.dtype(dist), metric == "l2"


class KnnResult:
    """Neighbour lists, each row sorted by (distance, index).

    ``indices`` (n_queries, k), int32 for numbaconc's own lists; ``stored``
    the distances as kept (``squared``: squared l2 distances, exact integers
    for uint8 data). ``distances`` / ``distance_block`` / ``distance_column``
    give float64 distances in storage units (l2 is the Euclidean distance,
    not its square): use the block readers on large lists, which may be
    read-only memmaps of the cache file.
    """

    def __init__(self, indices, distances, metric: str, k: int, include_self: bool,
                 squared: bool = False):
        self.indices = indices
        self.stored = distances
        self.metric = metric
        self.k = int(k)
        self.include_self = bool(include_self)
        self.squared = bool(squared)

    def __repr__(self):
        return (f"KnnResult(shape={tuple(self.indices.shape)}, metric={self.metric!r}, "
                f"k={self.k}, include_self={self.include_self}, "
                f"stored={np.dtype(self.stored.dtype)}{', squared' if self.squared else ''})")

    def distance_block(self, rows=slice(None), cols=slice(None)) -> np.ndarray:
        """float64 distances (storage units) of ``stored[rows, cols]``."""
        out = np.array(self.stored[rows, cols], dtype=np.float64)
        if self.squared:
            np.sqrt(out, out=out)
        return out

    def distance_column(self, j: int) -> np.ndarray:
        """Every query's ``j``-th neighbour distance (float64, storage units)."""
        return self.distance_block(slice(None), j)

    @property
    def distances(self) -> np.ndarray:
        """All distances as float64 (n_queries x k x 8 bytes: small lists only)."""
        return self.distance_block()

    def head(self, k: int) -> "KnnResult":
        """The first k neighbours of each row (a view; rows are sorted)."""
        return KnnResult(self.indices[:, :k], self.stored[:, :k], self.metric, k,
                         self.include_self, self.squared)


# ------------------------------------------------------------ scratch space

_log = logging.getLogger("numbaconc")


def scratch_array(shape, dtype, share: float = 0.25, *, zero: bool = False) -> np.ndarray:
    """A writable array: in memory when it fits ``share`` of the budget, else a
    memmap of an unlinked file under ``cache_dir()/tmp`` (freed with the array;
    the page cache it uses can be evicted, resident memory cannot)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if budget.fits(nbytes, share) or nbytes == 0:
        return np.zeros(shape, dtype=dtype) if zero else np.empty(shape, dtype=dtype)
    folder = datasets.cache_dir() / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="scratch-", suffix=".bin", dir=folder)
    try:
        os.ftruncate(fd, nbytes)  # sparse: reads as zeros
        out = np.memmap(name, dtype=dtype, mode="r+", shape=tuple(shape))
    finally:
        os.close(fd)
        os.unlink(name)
    return out


def _mapped_root(array):
    """The memmap that owns ``array``'s file mapping (``array`` or a base of it), or None."""
    while isinstance(array, np.ndarray):
        if isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap):
            return array
        array = array.base
    return None


def release_pages(array, start: int = 0, stop: int | None = None) -> None:
    """Rows [start, stop) of a file-backed memmap (or of a view that slices
    its columns) are not needed soon: unmap their pages from this process
    and drop them from the page cache where clean, so a single pass over a
    large cache file does not keep the file's pages charged to the run. The
    values are unchanged (pages are read back from the file when touched
    again). A no-op for arrays in memory and where the calls do not exist."""
    root = _mapped_root(array)
    if root is None or root.ndim < 1 or not root.flags.c_contiguous or root.size == 0:
        return
    stop = len(root) if stop is None else min(int(stop), len(root))
    if stop <= start:
        return
    row = root.strides[0]
    page = mmap.PAGESIZE
    inner = root.offset % mmap.ALLOCATIONGRANULARITY  # where the array starts in its mapping
    lo = (inner + start * row) // page * page
    hi = -(-(inner + stop * row) // page) * page
    try:
        root.base.madvise(mmap.MADV_DONTNEED, lo, min(hi, len(root.base)) - lo)
        with open(root.filename, "rb") as f:
            base = root.offset - inner
            os.posix_fadvise(f.fileno(), base + lo, hi - lo, os.POSIX_FADV_DONTNEED)
    except (AttributeError, OSError, ValueError):
        pass


# ------------------------------------------------------------------ input


def column_order(X, n: int, d: int, name: str = "base") -> np.ndarray:
    """Columns by decreasing variance (stable), computed block by block
    (float input is checked for NaN / inf on the way)."""
    total = np.zeros(d)
    total_sq = np.zeros(d)
    for a in range(0, n, _READ_ROWS):
        block = np.asarray(X[a:a + _READ_ROWS], dtype=np.float64)
        if not np.isfinite(block).all():
            raise NumbaconcError(f"{name}: contains NaN or inf")
        total += block.sum(axis=0)
        total_sq += np.square(block).sum(axis=0)
    mean = total / n
    var = total_sq / n - mean * mean
    return np.argsort(-var, kind="stable")


def prepare_rows(X, n: int, d: int, dtype, cols: np.ndarray, position: np.ndarray):
    """Copy X with permuted (and for uint8 zero-padded) columns, row i going to
    row ``position[i]`` (the visit order), into a scratch array; row sums /
    norms in the same order. One pass over X.

    Returns (P, row_sum float64, l1 key int64, squared norm int64); keys are 0 for float.
    """
    dp = -(-d // _kernels.CHUNK) * _kernels.CHUNK if dtype == np.uint8 else d
    P = scratch_array((n, dp), dtype, zero=dp > d)
    row_sum = np.empty(n)
    sq = np.zeros(n, dtype=np.int64)
    for a in range(0, n, _READ_ROWS):
        block = np.asarray(X[a:a + _READ_ROWS])
        b = a + len(block)
        rows = position[a:b]
        P[rows, :d] = block[:, cols]
        if dtype == np.uint8:
            wide = block.astype(np.int64)
            row_sum[rows] = wide.sum(axis=1)
            sq[rows] = (wide * wide).sum(axis=1)
        else:
            row_sum[rows] = block.sum(axis=1, dtype=np.float64)
    if dtype == np.uint8:
        return P, row_sum, row_sum.astype(np.int64), sq
    return P, row_sum, np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)


_EMBED_DIMS = 16
_ROWS_PER_CLUSTER = 1000
_KMEANS_ITERS = 8


def _embed(B, Q, cols: np.ndarray, d: int):
    """Rows (of the inputs, columns permuted by ``cols``) projected on the top
    principal directions of a base sample (float32), block by block."""
    rng = np.random.default_rng(0)
    n = B.shape[0]
    sample = datasets.RowView(B).take(np.sort(rng.choice(n, size=min(n, 2048), replace=False)))
    sample = sample[:, cols].astype(np.float64)
    mean = sample.mean(axis=0)
    sample -= mean
    dims = min(_EMBED_DIMS, d)
    # a few steps of subspace iteration: cheap and plenty for a visit order
    basis = rng.standard_normal((d, dims))
    for _ in range(4):
        basis, _ = np.linalg.qr(sample.T @ (sample @ basis))
    basis = basis.astype(np.float32)
    shift = (mean.astype(np.float32) @ basis)

    def project(X):
        out = np.empty((X.shape[0], dims), dtype=np.float32)
        for a in range(0, X.shape[0], _READ_ROWS):
            out[a:a + _READ_ROWS] = np.asarray(X[a:a + _READ_ROWS])[:, cols].astype(np.float32) \
                @ basis - shift
        return out

    return project(B), (None if Q is None else project(Q))


def _cluster_order(emb: np.ndarray) -> np.ndarray:
    """Row order grouping similar rows: a few seeded Lloyd steps in the embedding
    (distances to the centres in row blocks: no n x n_clusters matrix)."""
    n = len(emb)
    n_clusters = max(1, n // _ROWS_PER_CLUSTER)
    if n_clusters == 1:
        return np.argsort(emb[:, 0], kind="stable")
    rng = np.random.default_rng(0)
    centres = emb[rng.choice(n, size=n_clusters, replace=False)].astype(np.float64)
    X = emb.astype(np.float64)
    sq = np.square(X).sum(axis=1)
    labels = np.empty(n, dtype=np.int64)
    step = budget.rows_for(8 * n_clusters, 0.05, minimum=1024)
    for _ in range(_KMEANS_ITERS):
        c_sq = np.square(centres).sum(axis=1)[None, :]
        for a in range(0, n, step):
            dist = sq[a:a + step, None] - 2.0 * X[a:a + step] @ centres.T + c_sq
            labels[a:a + step] = np.argmin(dist, axis=1)
        counts = np.bincount(labels, minlength=n_clusters)
        sums = np.stack([np.bincount(labels, weights=X[:, c], minlength=n_clusters)
                         for c in range(X.shape[1])], axis=1)
        nonempty = counts > 0
        centres[nonempty] = sums[nonempty] / counts[nonempty, None]
    # clusters in the order of their first principal coordinate, rows likewise within
    rank = np.argsort(np.argsort(centres[:, 0], kind="stable"), kind="stable")
    return np.lexsort((X[:, 0], rank[labels]))


# ------------------------------------------------ vertical sketch prefilter
# (kernels.knn.knn_block_*_u8_sketch): a cheap lower bound for 32 / 64 base
# rows at once drops most pairs before any exact span is computed.

_PATCH = 4               # l1 groups: 4 x 4 pixel patches when d is a square
_GROUP = 16              # otherwise runs of 16 consecutive columns
_LINF_COLS = 32          # columns each linf query checks in the prefilter
_PAD = 64                # extra zero columns of the transposed arrays


def _l1_groups(d: int) -> np.ndarray:
    """Group id of every original column (<= 16 columns per group, so group
    sums of uint8 fit uint16): square patches if d is a square (images)."""
    s = int(round(np.sqrt(d)))
    if s * s == d and s >= _PATCH:
        r, c = np.divmod(np.arange(d), s)
        return (r // _PATCH) * (-(-s // _PATCH)) + c // _PATCH
    return np.arange(d) // _GROUP


def _l1_sketch(P, d: int, cols: np.ndarray):
    """Group sums (n, n_groups) uint16 of prepared rows (columns permuted by cols)."""
    groups = _l1_groups(d)[cols]
    n_groups = int(groups.max()) + 1
    onehot = np.zeros((d, n_groups), dtype=np.float32)
    onehot[np.arange(d), groups] = 1.0
    out = np.empty((len(P), n_groups), dtype=np.uint16)
    for a in range(0, len(P), _READ_ROWS):
        # sums of <= 16 values <= 255 are exact in float32
        out[a:a + _READ_ROWS] = P[a:a + _READ_ROWS, :d].astype(np.float32) @ onehot
    return out


def _transposed(M) -> np.ndarray:
    """M.T, C-contiguous, with _PAD zero columns (vector loads may run past n)."""
    out = scratch_array((M.shape[1], M.shape[0] + _PAD), M.dtype, zero=True)
    for a in range(0, len(M), _READ_ROWS):
        b = min(a + _READ_ROWS, len(M))
        out[:, a:b] = M[a:b].T
    return out


def _linf_typical_kth(Q, B, d: int, k: int):
    """(typical k-th linf distance, base sample): the matching rank among a
    sample of base rows, median over a few sampled queries."""
    n = len(B)
    rng = np.random.default_rng(0)
    sample = B[np.sort(rng.choice(n, size=min(n, 4096), replace=False)), :d]
    probe = Q[np.sort(rng.choice(len(Q), size=min(len(Q), 32), replace=False)), :d]
    rank = min(len(sample) - 1, max(0, int(round(k * len(sample) / n)) - 1))
    kth = [np.sort(np.abs(sample.astype(np.int16) - row.astype(np.int16)).max(axis=1))[rank]
           for row in probe]
    return int(np.median(kth)), sample


def _linf_columns(Q, B, d: int, k: int) -> np.ndarray:
    """Per query, the _LINF_COLS prepared columns where a base row is most
    likely to differ from it by more than a typical k-th distance (estimated
    on samples). Only the speed depends on this choice."""
    margin, sample = _linf_typical_kth(Q, B, d, k)
    # cum[c, v] = fraction of sampled rows with value < v in column c
    hist = np.zeros((d, 257))
    for c in range(d):
        hist[c, 1:] = np.bincount(sample[:, c], minlength=256)
    cum = np.cumsum(hist, axis=1) / len(sample)
    # table[c, v] = P(|v - y_c| > margin) = P(y_c < v - margin) + P(y_c > v + margin)
    level = np.arange(256)
    table = (cum[:, np.clip(level - margin, 0, 256)]
             + 1.0 - cum[:, np.clip(level + margin + 1, 0, 256)]).astype(np.float32)
    flat = table.ravel()
    n_cols = min(_LINF_COLS, d)
    out = np.empty((len(Q), n_cols), dtype=np.int32)
    offset = (np.arange(d) * 256).astype(np.int32)
    for a in range(0, len(Q), _READ_ROWS):
        score = flat[Q[a:a + _READ_ROWS, :d] + offset]
        top = np.argpartition(-score, n_cols - 1, axis=1)[:, :n_cols]
        out[a:a + _READ_ROWS] = np.sort(top, axis=1)
    return out


_GEMM_MIN_K = 500
_GEMM_MAX_ROWS = 1 << 23   # the re-ranking packs (distance, index) with 23 index bits
_GEMM_QUERY_BLOCK = 1024   # at most; fewer when the budget is small
_GEMM_BASE_BLOCK = 4096
_GEMM_EXTRA = 256  # candidate list length is 2 k + this


def gemm_slack(d: int) -> float:
    """Certified error of a squared l2 distance |q|^2 + |b|^2 - 2 fl32(q.b) of
    rows of d features (exact norms): |approx - exact| <= slack |q| |b|."""
    unit = 2.0 ** -24
    gamma = d * unit / (1.0 - d * unit)  # float32 dot product: |err| <= gamma |q| |b|
    return 2.0 * gamma * 1.01 + 1e-12    # approx uses -2 q.b; 1 % margin for the float64 steps


def _l2_gemm(Q, q_idx, q_sq, B, b_idx, b_sq, q_emb, b_emb, d, k, exclude_self,
             block_rows, progress, store, lo=0, hi=None):
    """Exact l2 kNN on uint8 rows: float32 GEMM blocks give candidates with a
    certified error bound, which are then re-ranked in exact integers.
    ``store(qa, qb, topd, topi)`` receives each query block's result, for the
    query positions [lo, hi)."""
    m, n = len(Q), len(B)
    hi = m if hi is None else hi
    cap = 2 * k + _GEMM_EXTRA
    # per query: heap (k float64), candidates (cap x int32, float64, int64), top-k (2 x k int64)
    per_query = 8 * k + 20 * cap + 16 * k
    bq = int(block_rows) if block_rows else budget.rows_for(per_query, 0.25, minimum=16,
                                                           maximum=_GEMM_QUERY_BLOCK)
    bb = int(block_rows) if block_rows else _GEMM_BASE_BLOCK
    slack = gemm_slack(d)
    q_sqf, b_sqf = q_sq.astype(np.float64), b_sq.astype(np.float64)
    q_norm, b_norm = np.sqrt(q_sqf), np.sqrt(b_sqf)
    blocks = [(a, min(a + bb, n)) for a in range(0, n, bb)]
    base_mean = np.array([b_emb[a:b].mean(axis=0) for a, b in blocks])
    # a float32 copy of the base is kept only when it fits the budget share;
    # otherwise each base block is converted when a query block meets it
    keep_float = budget.fits(n * d * 4, 0.25)
    floats = {}

    def base_float(blk):
        if blk in floats:
            return floats[blk]
        a, b = blocks[blk]
        out = np.asarray(B[a:b, :d], dtype=np.float32)
        if keep_float:
            floats[blk] = out
        return out

    for qa in range(lo, hi, bq):
        qb = min(qa + bq, hi)
        nq = qb - qa
        Qf = Q[qa:qb, :d].astype(np.float32)
        heap = np.full((nq, k), np.inf)
        cand = np.empty((nq, cap), dtype=np.int32)
        lower = np.empty((nq, cap))
        count = np.zeros(nq, dtype=np.int64)
        overflow = np.zeros(nq, dtype=np.bool_)
        gap = np.square(base_mean - q_emb[qa:qb].mean(axis=0)).sum(axis=1)
        for blk in np.argsort(gap, kind="stable"):
            a, b = blocks[blk]
            G = Qf @ base_float(blk).T
            _kernels.l2_gemm_collect(G, q_sqf[qa:qb], q_norm[qa:qb], b_sqf[a:b], b_norm[a:b],
                                     q_idx[qa:qb], b_idx[a:b], a, exclude_self, slack,
                                     heap, cand, lower, count, overflow)
        keys = np.empty((nq, cap), dtype=np.int64)
        topd = np.full((nq, k), _kernels.BIG, dtype=np.int64)
        topi = np.full((nq, k), _kernels.BIG, dtype=np.int64)
        _kernels.l2_rerank_u8(Q[qa:qb], B, b_idx, heap, cand, lower, count, overflow, keys,
                              topd, topi)
        del keys, lower, cand
        redo = np.flatnonzero(overflow)
        if len(redo):  # rare: too many near-ties for the list; direct kernel instead
            rows = qa + redo
            Qr = np.ascontiguousarray(Q[rows])
            td = np.full((len(rows), k), _kernels.BIG, dtype=np.int64)
            ti = np.full((len(rows), k), _kernels.BIG, dtype=np.int64)
            cscr = np.empty((len(rows), bb), dtype=np.int32)
            pscr = np.empty((len(rows), bb), dtype=np.int32)
            key = np.sqrt(q_sqf[rows])
            for a, b in blocks:
                _kernels.knn_block_l2_u8(Qr, q_idx[rows], key, B[a:b], b_idx[a:b], b_norm[a:b],
                                         exclude_self, td, ti, cscr, pscr)
            topd[redo] = td
            topi[redo] = ti
        store(qa, qb, topd, topi)
        if progress is not None:
            progress(qb, m)


# -------------------------------------------------------------------- knn


def knn(base, k: int, *, metric: str, queries=None, include_self: bool = True,
        block_rows: int | None = None, progress=None, out=None) -> KnnResult:
    """Exact k nearest neighbours of each query row among the rows of ``base``.

    ``base`` / ``queries``: (n, d) uint8 or float32 arrays (read-only memmaps
    and h5py datasets are fine), in storage units. ``queries=None`` means all
    pairs within ``base``; then ``include_self`` says whether row i counts as
    its own neighbour (at distance 0, ties with duplicates by index).
    ``progress(done, total)`` is called between query blocks. ``out``: an
    optional (indices, stored distances) pair of writable (n_queries, k)
    arrays of the ``list_dtypes`` types (e.g. memmaps in a cache file); by
    default they are allocated in memory.
    """
    metric = canonical_metric(metric)
    n, d, dtype = check_matrix(base, name="base")
    all_pairs = queries is None
    if all_pairs:
        m = n
        available = n if include_self else n - 1
    else:
        m, dq, qdtype = check_matrix(queries, name="queries")
        if dq != d:
            raise NumbaconcError(f"queries: {dq} features but base has {d}")
        if qdtype != dtype:
            raise NumbaconcError(f"queries: dtype {qdtype} but base is {dtype}")
        available = n
    k = check_int(k, "k", low=1)
    if k > available:
        raise NumbaconcError(
            f"k={k} exceeds the {available} available neighbours "
            f"({n} base rows{'' if include_self or not all_pairs else ', self excluded'})")
    if block_rows is not None:
        block_rows = check_int(block_rows, "block_rows", low=1)
    idx_type, dist_type, squared = list_dtypes(metric, dtype, n, d)
    if out is None:
        out_idx = np.empty((m, k), dtype=idx_type)
        out_dist = np.empty((m, k), dtype=dist_type)
    else:
        out_idx, out_dist = out
        if out_idx.shape != (m, k) or out_dist.shape != (m, k) or out_idx.dtype != idx_type \
                or out_dist.dtype != dist_type:
            raise NumbaconcError(f"out: expected two ({m}, {k}) arrays of {idx_type} and {dist_type}")

    from . import cluster

    if cluster.current() is not None:  # query blocks as tasks on a dask cluster
        cluster.knn_on_cluster(base, k, metric=metric, queries=queries, include_self=include_self,
                               block_rows=block_rows, progress=progress, out=(out_idx, out_dist))
    else:
        plan = plan_search(base, k, metric=metric, queries=queries, include_self=include_self,
                           block_rows=block_rows)

        def store(qa, qb, topd, topi):
            """One query block's lists into the outputs, in the original row order."""
            rows = plan.query_order[qa:qb]
            out_idx[rows] = topi
            out_dist[rows] = plan.stored(topd)

        plan.run(0, m, store, progress)
    return KnnResult(out_idx, out_dist, metric, k, bool(include_self), squared)


class SearchPlan:
    """A prepared kNN search (``plan_search``): ``run(lo, hi, store, progress)``
    searches the queries at visit-order positions [lo, hi) and calls
    ``store(qa, qb, topd, topi)`` per query block; the lists belong to the
    queries ``query_order[qa:qb]`` and ``stored(topd)`` gives the distances as
    kept. The lists are exact, so any split of [0, n_queries) into runs gives
    the same lists."""

    def __init__(self, run, query_order, stored, n_queries):
        self.run, self.query_order, self.stored, self.n_queries = run, query_order, stored, n_queries


def plan_search(base, k: int, *, metric: str, queries=None, include_self: bool = True,
                block_rows: int | None = None) -> SearchPlan:
    """Everything ``knn`` prepares before its query loop (arguments checked by
    ``knn``): the visit order, the prepared copies and the prefilter arrays."""
    metric = canonical_metric(metric)
    n, d, dtype = check_matrix(base, name="base")
    all_pairs = queries is None
    m = n if all_pairs else int(queries.shape[0])
    exclude_self = all_pairs and not include_self
    squared = list_dtypes(metric, dtype, n, d)[2]
    k = int(k)

    # Visit order (never affects the result, only the speed): rows are grouped
    # by a coarse k-means in a small PCA space, and each query block meets the
    # base blocks nearest to it first, so thresholds get tight early. The
    # prepared copies are written in that order directly (one copy each).
    cols = column_order(base, n, d)
    if not all_pairs:
        check_finite(queries, "queries")
    b_emb, q_emb = _embed(base, None if all_pairs else queries, cols, d)
    b_order = _cluster_order(b_emb)
    q_order = b_order if all_pairs else _cluster_order(q_emb)
    b_emb = b_emb[b_order]
    q_emb = b_emb if all_pairs else q_emb[q_order]
    b_idx = np.ascontiguousarray(b_order.astype(np.int64))
    q_idx = np.ascontiguousarray(q_order.astype(np.int64))

    def position(order):
        pos = np.empty(len(order), dtype=np.int64)
        pos[order] = np.arange(len(order), dtype=np.int64)
        return pos

    B, b_sum, b_l1, b_sq = prepare_rows(base, n, d, dtype, cols, position(b_order))
    if all_pairs:
        Q, q_sum, q_l1, q_sq = B, b_sum, b_l1, b_sq
    else:
        Q, q_sum, q_l1, q_sq = prepare_rows(queries, m, d, dtype, cols, position(q_order))
    b_key = np.sqrt(b_sq.astype(np.float64)) if metric == "l2" else b_l1
    q_key = np.sqrt(q_sq.astype(np.float64)) if metric == "l2" else q_l1

    bytes_per_row = B.shape[1] * B.itemsize
    bb = int(block_rows) if block_rows else max(64, _BASE_BLOCK_BYTES // bytes_per_row)
    bq = int(block_rows) if block_rows else _QUERY_BLOCK
    base_blocks = [(a, min(a + bb, n)) for a in range(0, n, bb)]
    base_mean = np.array([b_emb[a:b].mean(axis=0) for a, b in base_blocks])
    seed_rows = max(2 * k, 128)

    kernel = _kernels.KERNELS.get((metric, dtype.name))
    sketch = dtype == np.uint8 and metric in ("l1", "linf")
    if sketch and metric == "l1":
        b_sk = _l1_sketch(B, d, cols)
        q_extra = b_sk if all_pairs else _l1_sketch(Q, d, cols)
        base_t = _transposed(b_sk)
        kernel = _kernels.knn_block_l1_u8_sketch
    elif sketch:
        q_extra = _linf_columns(Q, B, d, k)
        base_t = _transposed(B)
        kernel = _kernels.knn_block_linf_u8_sketch
    # partial distances fit int32 unless d is huge (l2 on uint8: d >= 33026)
    big = {"l1": 255, "l2": 255 * 255, "linf": 255}[metric] * d >= 2 ** 31

    def stored(topd):
        return np.sqrt(topd) if metric == "l2" and not squared else topd

    def run(lo, hi, store, progress=None):
        # large k: the direct kernel's pruning weakens and its insertions cost O(k),
        # so l2 goes through BLAS (measured crossover on MNIST between k=200 and 1200)
        use_gemm = metric == "l2" and dtype == np.uint8 and n < _GEMM_MAX_ROWS and k >= _GEMM_MIN_K
        # scratch per run: runs of one plan may go on at once (a worker with threads)
        cand = np.empty((min(bq, m), min(bb, n)), dtype=np.int32)
        part = np.empty((min(bq, m), min(bb, n)), dtype=np.int64 if big else np.int32)
        with numba.parallel_chunksize(_PAR_CHUNK):
            if use_gemm:
                _l2_gemm(Q, q_idx, q_sq, B, b_idx, b_sq, q_emb, b_emb, d, k, exclude_self,
                         block_rows, progress, store, lo, hi)
            for qa in range(hi if use_gemm else lo, hi, bq):
                qb = min(qa + bq, hi)
                # the running top-k of this query block only (sorted by (distance, index))
                if dtype == np.uint8:
                    td = np.full((qb - qa, k), _kernels.BIG, dtype=np.int64)
                else:
                    td = np.full((qb - qa, k), np.inf)
                ti = np.full((qb - qa, k), _kernels.BIG, dtype=np.int64)
                gap = np.square(base_mean - q_emb[qa:qb].mean(axis=0)).sum(axis=1)
                for step, blk in enumerate(np.argsort(gap, kind="stable")):
                    a, b = base_blocks[blk]
                    ranges = [(a, b)]
                    if step == 0 and b - a > 2 * seed_rows:
                        # every pair of the first block is computed in full (no threshold
                        # yet): start with a small piece, nearest to the queries in the
                        # visit order, so the rest of the block meets a real threshold
                        centre = (qa + qb) // 2 if all_pairs else (a + b) // 2
                        seed = min(max(centre - seed_rows // 2, a), b - seed_rows)
                        ranges = [(seed, seed + seed_rows), (a, seed), (seed + seed_rows, b)]
                    for ra, rb in ranges:
                        if rb > ra:
                            if sketch:
                                kernel(Q[qa:qb], q_idx[qa:qb], q_extra[qa:qb], B[ra:rb],
                                       b_idx[ra:rb], base_t, ra, exclude_self, td, ti, cand, part)
                            else:
                                kernel(Q[qa:qb], q_idx[qa:qb], q_key[qa:qb], B[ra:rb],
                                       b_idx[ra:rb], b_key[ra:rb], exclude_self, td, ti, cand, part)
                store(qa, qb, td, ti)
                if progress is not None:
                    progress(qb, m)

    return SearchPlan(run, q_idx, stored, m)


# ------------------------------------------------------------------ cache


def subset_fetch_k(k: int, fraction: float, n: int) -> int:
    """List length to fetch for the whole set so that, for a subset holding
    ``fraction`` of the rows, almost every member keeps >= k subset entries
    (binomial mean minus 5 std; the rare short rows are recomputed)."""
    k_full = k
    while k_full < n and fraction * k_full - 5.0 * np.sqrt(k_full * fraction * (1 - fraction)) < k:
        k_full += max(1, k_full // 32)
    return int(min(n, k_full))


def subset_knn(full: KnnResult, rows, X_subset, k: int | None = None) -> KnnResult:
    """kNN of a subset (sorted global ``rows``, data ``X_subset``) from the
    all-pairs lists ``full`` of the whole set, without a new search.

    ``k`` given: exactly the k nearest within the subset, as ``knn(X_subset, k)``
    would return them (rows whose filtered list is shorter are recomputed
    against the subset). ``k=None``: every row gets the length of the shortest
    filtered list (a valid prefix of the exact lists; for callers whose result
    does not depend on the list length, such as ``fit_balls``).
    The lists keep ``full``'s compact types; ``full`` may be a memmap (read in
    place, never copied whole) and the output goes to a scratch file when it
    does not fit the budget share.
    """
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    m = len(rows)
    n = full.indices.shape[0]
    if m < 1 or np.any(np.diff(rows) <= 0) or rows[0] < 0 or rows[-1] >= n:
        raise NumbaconcError("subset rows must be sorted, distinct and within the full set")
    if not full.include_self:
        raise NumbaconcError("subset_knn needs lists that include each point itself")
    position = np.full(n, -1, dtype=np.int64)
    position[rows] = np.arange(m, dtype=np.int64)
    indices, stored = full.indices, full.stored
    count = np.empty(m, dtype=np.int64)
    # passes over the whole set's lists in blocks of rows, releasing the pages of
    # a memmap behind them (each pass reads every row once)
    step = max(1, _SUBSET_BLOCK_BYTES // max(1, indices.shape[1]
                                               * (indices.itemsize + stored.itemsize)))
    blocks = [(a, min(a + step, n), *np.searchsorted(rows, [a, a + step])) for a in range(0, n, step)]

    def done_with(a, b):
        release_pages(indices, a, b)
        release_pages(stored, a, b)

    if k is None:  # first count, so the output is allocated at its final width
        for a, b, sa, sb in blocks:
            _kernels.count_in_subset(indices, rows[sa:sb], position, count[sa:sb])
            done_with(a, b)
    k_out = int(count.min()) if k is None else int(k)
    if not 1 <= k_out <= m:
        raise NumbaconcError(f"k={k_out} must be in [1, {m}]")
    idx_type = np.int32 if m < 2**31 else np.int64
    idx = scratch_array((m, k_out), idx_type, _LISTS_SHARE / 2)
    dist = scratch_array((m, k_out), stored.dtype, _LISTS_SHARE / 2)
    for a, b, sa, sb in blocks:
        _kernels.filter_to_subset(indices, stored, rows[sa:sb], position, idx[sa:sb],
                                  dist[sa:sb], count[sa:sb])
        done_with(a, b)
    if k is not None:
        short = np.flatnonzero(count < k_out)
        if len(short):
            fixed = knn(X_subset, k_out, metric=full.metric,
                        queries=np.ascontiguousarray(X_subset[short]), include_self=True)
            idx[short], dist[short] = fixed.indices, fixed.stored
    return KnnResult(idx, dist, full.metric, k_out, True, full.squared)


def _unit(dtype) -> str:
    return "pixel levels" if np.dtype(dtype) == np.uint8 else "[0,1] units"


_SUBSET_BLOCK_BYTES = 64 << 20  # rows of the whole set's lists read per subset step
_FORMAT = 2  # cache files: int32 indices, compact distances, array_digest
# lists are held in memory only within this budget share; longer ones are read
# through a memmap of the cache file (the balls' buffers and a holdout subset's
# lists need shares of their own)
_LISTS_SHARE = 0.25


def _create_lists(f: h5py.File, name: str, shape, dtype):
    """A contiguous, uncompressed dataset allocated at once (so it has a file
    offset to memory-map before anything is written)."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    space = h5py.h5s.create_simple(tuple(int(s) for s in shape))
    h5py.h5d.create(f.id, name.encode(), h5py.h5t.py_create(np.dtype(dtype)), space, dcpl=dcpl)
    return f[name]


def _map(path, ds: h5py.Dataset, mode: str):
    offset = ds.id.get_offset()
    if offset is None or ds.chunks is not None or ds.compression is not None:
        return None
    return np.memmap(path, dtype=ds.dtype, mode=mode, offset=offset, shape=ds.shape)


def _write_attrs(f, result_like, indices, stored, attrs):
    f.attrs.update(metric=result_like["metric"], k=result_like["k"],
                   include_self=result_like["include_self"], squared=result_like["squared"],
                   format=_FORMAT, array_digest=array_digest(indices, stored))
    f.attrs.update({key: value for key, value in attrs.items() if value is not None})


def save_knn(result: KnnResult, path, **attrs) -> Path:
    """Write ``indices`` / ``distances`` (the stored, compact arrays: contiguous,
    uncompressed, written in row blocks), their ``array_digest`` and attributes
    to HDF5, atomically. ``squared`` says whether distances are squared l2."""
    path = Path(path)
    meta = dict(metric=result.metric, k=result.k, include_self=result.include_self,
                squared=result.squared)
    n = result.indices.shape[0]
    with datasets.atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            di = _create_lists(f, "indices", result.indices.shape, result.indices.dtype)
            dd = _create_lists(f, "distances", result.stored.shape, result.stored.dtype)
            step = max(1, (16 << 20) // max(1, result.indices.shape[1] * 8))
            for a in range(0, n, step):
                di[a:a + step] = np.asarray(result.indices[a:a + step])
                dd[a:a + step] = np.asarray(result.stored[a:a + step])
            _write_attrs(f, meta, di, dd, attrs)
    return path


def _cache_stem(dataset, split: str, metric: str, include_self: bool) -> str:
    """Keyed on the data's own bytes (``Dataset.content_digest``), not a stored label."""
    safe = str(dataset.content_digest)[:24]
    return f"{safe}-{split}-{metric}-{'self' if include_self else 'noself'}"


def _load_cached(path: Path, dataset, split, metric, include_self, k, n, notice):
    """The cached lists cut to k columns, or None (then recompute). Served only
    if the attributes match (content digest, split, metric, include_self, k' >= k)
    and the arrays' digest matches the one stored when they were written; a
    damaged or unreadable file is reported through ``notice``. Lists that do
    not fit the budget share stay read-only memmaps of the file."""
    try:
        with h5py.File(path, "r") as f:
            a = f.attrs
            if (str(a.get("content_digest")) != str(dataset.content_digest)
                    or str(a.get("split")) != split or str(a.get("metric")) != metric
                    or bool(a.get("include_self")) != include_self or int(a.get("k", 0)) < k
                    or int(a.get("format", 0)) != _FORMAT):
                return None
            squared = bool(a.get("squared"))
            expected = str(a.get("array_digest"))
            indices = _map(path, f["indices"], "r")
            stored = _map(path, f["distances"], "r")
    except (OSError, KeyError, ValueError, TypeError) as exc:
        notice(f"neighbour-list cache {path.name} is unreadable ({type(exc).__name__}): recomputing")
        return None
    if indices is None or stored is None or indices.shape != stored.shape \
            or indices.shape[0] != n:
        notice(f"neighbour-list cache {path.name} has an unexpected layout: recomputing")
        return None
    # one pass over the file: its pages are released behind it
    if array_digest(indices, stored, after_block=release_pages) != expected:
        notice(f"neighbour-list cache {path.name} is damaged (its digest does not match): "
               "recomputing")
        return None
    indices, stored = indices[:, :k], stored[:, :k]
    if budget.fits(indices.nbytes + stored.nbytes, _LISTS_SHARE):
        indices, stored = np.ascontiguousarray(indices), np.ascontiguousarray(stored)
    return KnnResult(indices, stored, metric, k, include_self, squared)


def _warn(message: str) -> None:
    _log.warning(message)


def cached_knn(dataset, k: int, *, metric: str, split: str = "train",
               include_self: bool = True, progress=None, notice=None) -> tuple[KnnResult, Path]:
    """All-pairs kNN of one split of ``dataset``, loaded from or saved to the cache.

    Keyed by the dataset's content digest, split, metric and include_self; a
    cached file with k' >= k is sliced. A damaged cache file is recomputed
    and ``notice(message)`` (default: a logging warning) says so in one line.
    Lists too large for the budget share are written straight into the cache
    file and returned as read-only memmaps of it. Returns (result, cache path).
    """
    metric = canonical_metric(metric)
    notice = notice or _warn
    part = dataset.split(split)
    include_self = bool(include_self)
    folder = datasets.cache_dir() / "knn"
    stem = _cache_stem(dataset, split, metric, include_self)
    n = part.n_samples
    if folder.is_dir() and isinstance(k, (int, np.integer)) and k >= 1:
        found = []
        for path in folder.glob(f"{stem}-k*.h5"):
            tail = path.stem[len(stem) + 2:]
            if tail.isdigit() and int(tail) >= k:
                found.append((int(tail), path))
        for _, path in sorted(found):
            result = _load_cached(path, dataset, split, metric, include_self, int(k), n, notice)
            if result is not None:
                return result, path
    attrs = dict(checksum=str(dataset.checksum), content_digest=str(dataset.content_digest),
                 split=split, unit=_unit(part.dtype))
    idx_type, dist_type, squared = list_dtypes(metric, part.dtype, n, part.n_features)
    nbytes = n * int(k) * (idx_type.itemsize + dist_type.itemsize) \
        if isinstance(k, (int, np.integer)) else 0
    if budget.fits(nbytes, _LISTS_SHARE):
        result = knn(part.x, k, metric=metric, include_self=include_self, progress=progress)
        path = folder / f"{stem}-k{result.k}.h5"
        save_knn(result, path, **attrs)
        return result, path
    # too large to hold: the search writes into the cache file's own arrays
    k = int(k)
    path = folder / f"{stem}-k{k}.h5"
    meta = dict(metric=metric, k=k, include_self=include_self, squared=squared)
    with datasets.atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            _create_lists(f, "indices", (n, k), idx_type)
            _create_lists(f, "distances", (n, k), dist_type)
            out = (_map(tmp, f["indices"], "r+"), _map(tmp, f["distances"], "r+"))
        knn(part.x, k, metric=metric, include_self=include_self, progress=progress, out=out)
        for array in out:
            array.flush()
        with h5py.File(tmp, "r+") as f:
            _write_attrs(f, meta, out[0], out[1], attrs)
        del out
    result = _load_cached(path, dataset, split, metric, include_self, k, n, notice)
    if result is None:  # cannot happen unless the disk lies
        raise NumbaconcError(f"{path}: the neighbour lists just written do not read back")
    return result, path
