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

Memory: the base (and the queries, when given) are copied into a
column-permuted, zero-padded, row-reordered in-memory array (the size of the
data; twice that briefly while reordering; the GEMM path adds a float32 copy
of the base below 1 GiB; the linf prefilter a transposed copy of the base,
the l1 one 2 bytes per row and patch). The state is O(n_queries x k) plus block scratch.
No n x n matrix is ever built.

``cached_knn`` stores results in HDF5 under ``cache_dir()/knn``; a cached
result with a larger k serves a smaller k (rows are sorted, so it is a slice).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numba
import numpy as np

from . import datasets
from .errors import NumbaconcError
from .kernels import knn as _kernels

METRICS = {
    "l1": "l1", "cityblock": "l1", "manhattan": "l1",
    "l2": "l2", "euclidean": "l2",
    "linf": "linf", "chebyshev": "linf", "inf": "linf",
}

_READ_ROWS = 8192        # rows per read when copying the input
_BASE_BLOCK_BYTES = 1 << 20  # base block kept in L2 while queries stream over it
_QUERY_BLOCK = 512       # queries per kernel call (progress granularity)
_PAR_CHUNK = 8           # queries per dynamic scheduling chunk (early exit is uneven)


def canonical_metric(name: str) -> str:
    """Map an alias (``cityblock``, ``euclidean``, ``chebyshev`` ...) to l1 / l2 / linf."""
    try:
        return METRICS[str(name).lower()]
    except KeyError:
        raise NumbaconcError(
            f"unknown metric {name!r} (choose from {', '.join(sorted(METRICS))})") from None


@dataclass
class KnnResult:
    """``indices`` (n_queries, k) int64 and ``distances`` (n_queries, k) float64,
    each row sorted by (distance, index); distances in storage units (l2 is the
    Euclidean distance, not its square)."""

    indices: np.ndarray
    distances: np.ndarray
    metric: str
    k: int
    include_self: bool


# ------------------------------------------------------------------ input


def _check_matrix(X, name: str):
    shape = getattr(X, "shape", None)
    dtype = getattr(X, "dtype", None)
    if shape is None or dtype is None:
        raise NumbaconcError(f"{name}: expected an array (n, d), got {type(X).__name__}")
    if len(shape) != 2:
        raise NumbaconcError(f"{name}: expected a 2-D array (n, d), got shape {tuple(shape)}")
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.float32):
        raise NumbaconcError(f"{name}: dtype {dtype} not supported (uint8 or float32)")
    if shape[0] < 1 or shape[1] < 1:
        raise NumbaconcError(f"{name}: empty array of shape {tuple(shape)}")
    return int(shape[0]), int(shape[1]), dtype


def _column_order(X, n: int, d: int) -> np.ndarray:
    """Columns by decreasing variance (stable), computed block by block."""
    total = np.zeros(d)
    total_sq = np.zeros(d)
    for a in range(0, n, _READ_ROWS):
        block = np.asarray(X[a:a + _READ_ROWS], dtype=np.float64)
        total += block.sum(axis=0)
        total_sq += np.square(block).sum(axis=0)
    mean = total / n
    var = total_sq / n - mean * mean
    return np.argsort(-var, kind="stable")


def _prepare(X, n: int, d: int, dtype, cols: np.ndarray, name: str):
    """Copy X with permuted (and for uint8 zero-padded) columns; row sums / norms.

    Returns (P, row_sum float64, l1 key int64, squared norm int64); keys are 0 for float.
    """
    dp = -(-d // _kernels.CHUNK) * _kernels.CHUNK if dtype == np.uint8 else d
    P = np.zeros((n, dp), dtype=dtype)
    row_sum = np.empty(n)
    sq = np.empty(n, dtype=np.int64 if dtype == np.uint8 else np.float64)
    for a in range(0, n, _READ_ROWS):
        block = np.asarray(X[a:a + _READ_ROWS])
        b = a + len(block)
        if dtype == np.float32 and not np.isfinite(block).all():
            raise NumbaconcError(f"{name}: contains NaN or inf")
        P[a:b, :d] = block[:, cols]
        if dtype == np.uint8:
            wide = block.astype(np.int64)
            sums = wide.sum(axis=1)
            row_sum[a:b] = sums
            sq[a:b] = (wide * wide).sum(axis=1)
        else:
            row_sum[a:b] = block.sum(axis=1, dtype=np.float64)
    if dtype == np.uint8:
        return P, row_sum, row_sum.astype(np.int64), sq
    return P, row_sum, np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)


_EMBED_DIMS = 16
_ROWS_PER_CLUSTER = 1000
_KMEANS_ITERS = 8


def _embed(B, Q, d: int):
    """Rows projected on the top principal directions of a base sample (float32)."""
    rng = np.random.default_rng(0)
    sample = B[np.sort(rng.choice(len(B), size=min(len(B), 2048), replace=False)), :d]
    sample = sample.astype(np.float64)
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
        out = np.empty((len(X), dims), dtype=np.float32)
        for a in range(0, len(X), _READ_ROWS):
            out[a:a + _READ_ROWS] = X[a:a + _READ_ROWS, :d].astype(np.float32) @ basis - shift
        return out

    return project(B), (None if Q is None else project(Q))


def _cluster_order(emb: np.ndarray) -> np.ndarray:
    """Row order grouping similar rows: a few seeded Lloyd steps in the embedding."""
    n = len(emb)
    n_clusters = max(1, n // _ROWS_PER_CLUSTER)
    if n_clusters == 1:
        return np.argsort(emb[:, 0], kind="stable")
    rng = np.random.default_rng(0)
    centres = emb[rng.choice(n, size=n_clusters, replace=False)].astype(np.float64)
    X = emb.astype(np.float64)
    sq = np.square(X).sum(axis=1)
    for _ in range(_KMEANS_ITERS):
        dist = sq[:, None] - 2.0 * X @ centres.T + np.square(centres).sum(axis=1)[None, :]
        labels = np.argmin(dist, axis=1)
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

_SKETCH = True           # use the prefilter for l1 / linf on uint8
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
    out = np.zeros((M.shape[1], M.shape[0] + _PAD), dtype=M.dtype)
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
_GEMM_QUERY_BLOCK = 1024
_GEMM_BASE_BLOCK = 4096
_GEMM_FLOAT_COPY_BYTES = 1 << 30  # keep a float32 copy of the base below this size
_GEMM_EXTRA = 256  # candidate list length is 2 k + this


def _l2_gemm(Q, q_idx, q_sq, B, b_idx, b_sq, q_emb, b_emb, d, k, exclude_self,
             block_rows, progress, topd, topi):
    """Exact l2 kNN on uint8 rows: float32 GEMM blocks give candidates with a
    certified error bound, which are then re-ranked in exact integers."""
    m, n = len(Q), len(B)
    bq = int(block_rows) if block_rows else _GEMM_QUERY_BLOCK
    bb = int(block_rows) if block_rows else _GEMM_BASE_BLOCK
    unit = 2.0 ** -24
    gamma = d * unit / (1.0 - d * unit)  # float32 dot product: |err| <= gamma |q| |b|
    slack = 2.0 * gamma * 1.01 + 1e-12   # approx uses -2 q.b; 1 % margin for the float64 steps
    q_sqf, b_sqf = q_sq.astype(np.float64), b_sq.astype(np.float64)
    q_norm, b_norm = np.sqrt(q_sqf), np.sqrt(b_sqf)
    blocks = [(a, min(a + bb, n)) for a in range(0, n, bb)]
    base_mean = np.array([b_emb[a:b].mean(axis=0) for a, b in blocks])
    keep_float = n * d * 4 <= _GEMM_FLOAT_COPY_BYTES
    floats = {}

    def base_float(blk):
        if blk in floats:
            return floats[blk]
        a, b = blocks[blk]
        out = B[a:b, :d].astype(np.float32)
        if keep_float:
            floats[blk] = out
        return out

    cap = 2 * k + _GEMM_EXTRA
    for qa in range(0, m, bq):
        qb = min(qa + bq, m)
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
        _kernels.l2_rerank_u8(Q[qa:qb], B, b_idx, heap, cand, lower, count, overflow, keys,
                              topd[qa:qb], topi[qa:qb])
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
            topd[rows] = td
            topi[rows] = ti
        if progress is not None:
            progress(qb, m)


# -------------------------------------------------------------------- knn


def knn(base, k: int, *, metric: str, queries=None, include_self: bool = True,
        block_rows: int | None = None, progress=None) -> KnnResult:
    """Exact k nearest neighbours of each query row among the rows of ``base``.

    ``base`` / ``queries``: (n, d) uint8 or float32 arrays (read-only memmaps
    and h5py datasets are fine), in storage units. ``queries=None`` means all
    pairs within ``base``; then ``include_self`` says whether row i counts as
    its own neighbour (at distance 0, ties with duplicates by index).
    ``progress(done, total)`` is called between query blocks.
    """
    metric = canonical_metric(metric)
    n, d, dtype = _check_matrix(base, "base")
    all_pairs = queries is None
    if all_pairs:
        m = n
        exclude_self = not include_self
        available = n if include_self else n - 1
    else:
        m, dq, qdtype = _check_matrix(queries, "queries")
        if dq != d:
            raise NumbaconcError(f"queries: {dq} features but base has {d}")
        if qdtype != dtype:
            raise NumbaconcError(f"queries: dtype {qdtype} but base is {dtype}")
        exclude_self = False
        available = n
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise NumbaconcError(f"k must be an integer, got {k!r}")
    k = int(k)
    if k < 1:
        raise NumbaconcError(f"k must be >= 1, got {k}")
    if k > available:
        raise NumbaconcError(
            f"k={k} exceeds the {available} available neighbours "
            f"({n} base rows{'' if include_self or not all_pairs else ', self excluded'})")
    if block_rows is not None and (not isinstance(block_rows, (int, np.integer)) or block_rows < 1):
        raise NumbaconcError(f"block_rows must be a positive integer, got {block_rows!r}")

    cols = _column_order(base, n, d)
    B, b_sum, b_l1, b_sq = _prepare(base, n, d, dtype, cols, "base")
    if all_pairs:
        Q, q_sum, q_l1, q_sq = B, b_sum, b_l1, b_sq
    else:
        Q, q_sum, q_l1, q_sq = _prepare(queries, m, d, dtype, cols, "queries")
    b_key = np.sqrt(b_sq.astype(np.float64)) if metric == "l2" else b_l1
    q_key = np.sqrt(q_sq.astype(np.float64)) if metric == "l2" else q_l1

    # Visit order (never affects the result, only the speed): rows are grouped
    # by a coarse k-means in a small PCA space, and each query block meets the
    # base blocks nearest to it first, so thresholds get tight early.
    b_emb, q_emb = _embed(B, Q if not all_pairs else None, d)
    b_order = _cluster_order(b_emb)
    q_order = b_order if all_pairs else _cluster_order(q_emb)
    B = B[b_order]
    b_key = np.ascontiguousarray(b_key[b_order])
    b_sq = b_sq[b_order]
    b_emb = b_emb[b_order]
    if all_pairs:
        Q, q_key, q_sq, q_emb = B, b_key, b_sq, b_emb
    else:
        Q = Q[q_order]
        q_key = np.ascontiguousarray(q_key[q_order])
        q_sq = q_sq[q_order]
        q_emb = q_emb[q_order]
    b_idx = np.ascontiguousarray(b_order.astype(np.int64))
    q_idx = np.ascontiguousarray(q_order.astype(np.int64))

    bytes_per_row = B.shape[1] * B.itemsize
    bb = int(block_rows) if block_rows else max(64, _BASE_BLOCK_BYTES // bytes_per_row)
    bq = int(block_rows) if block_rows else _QUERY_BLOCK
    base_blocks = [(a, min(a + bb, n)) for a in range(0, n, bb)]
    base_mean = np.array([b_emb[a:b].mean(axis=0) for a, b in base_blocks])
    seed_rows = max(2 * k, 128)

    kernel = _kernels.KERNELS[(metric, dtype.name)]
    sketch = _SKETCH and dtype == np.uint8 and metric in ("l1", "linf")
    if sketch and metric == "l1":
        b_sk = _l1_sketch(B, d, cols)
        q_extra = b_sk if all_pairs else _l1_sketch(Q, d, cols)
        base_t = _transposed(b_sk)
        kernel = _kernels.knn_block_l1_u8_sketch
    elif sketch:
        q_extra = _linf_columns(Q, B, d, k)
        base_t = _transposed(B)
        kernel = _kernels.knn_block_linf_u8_sketch
    if dtype == np.uint8:
        topd = np.full((m, k), _kernels.BIG, dtype=np.int64)
    else:
        topd = np.full((m, k), np.inf)
    topi = np.full((m, k), _kernels.BIG, dtype=np.int64)
    cand = np.empty((min(bq, m), min(bb, n)), dtype=np.int32)
    # partial distances fit int32 unless d is huge (l2 on uint8: d >= 33026)
    big = {"l1": 255, "l2": 255 * 255, "linf": 255}[metric] * d >= 2 ** 31
    part = np.empty((min(bq, m), min(bb, n)), dtype=np.int64 if big else np.int32)

    # large k: the direct kernel's pruning weakens and its insertions cost O(k),
    # so l2 goes through BLAS (measured crossover on MNIST between k=200 and 1200)
    use_gemm = metric == "l2" and dtype == np.uint8 and n < _GEMM_MAX_ROWS and k >= _GEMM_MIN_K
    with numba.parallel_chunksize(_PAR_CHUNK):
        if use_gemm:
            _l2_gemm(Q, q_idx, q_sq, B, b_idx, b_sq, q_emb, b_emb, d, k, exclude_self,
                     block_rows, progress, topd, topi)
        for qa in range(0 if not use_gemm else m, m, bq):
            qb = min(qa + bq, m)
            td = topd[qa:qb]
            ti = topi[qa:qb]
            gap = np.square(base_mean - q_emb[qa:qb].mean(axis=0)).sum(axis=1)
            for step, blk in enumerate(np.argsort(gap, kind="stable")):
                a, b = base_blocks[blk]
                ranges = [(a, b)]
                if step == 0 and b - a > 2 * seed_rows:
                    # every pair of the first block is computed in full (no threshold
                    # yet): start with a small piece, nearest to the queries in the
                    # visit order, so the rest of the block meets a real threshold
                    centre = (qa + qb) // 2 if all_pairs else (a + b) // 2
                    lo = min(max(centre - seed_rows // 2, a), b - seed_rows)
                    ranges = [(lo, lo + seed_rows), (a, lo), (lo + seed_rows, b)]
                for ra, rb in ranges:
                    if rb > ra:
                        if sketch:
                            kernel(Q[qa:qb], q_idx[qa:qb], q_extra[qa:qb], B[ra:rb],
                                   b_idx[ra:rb], base_t, ra, exclude_self, td, ti, cand, part)
                        else:
                            kernel(Q[qa:qb], q_idx[qa:qb], q_key[qa:qb], B[ra:rb],
                                   b_idx[ra:rb], b_key[ra:rb], exclude_self, td, ti, cand, part)
            if progress is not None:
                progress(qb, m)

    indices = np.empty((m, k), dtype=np.int64)
    distances = np.empty((m, k))
    indices[q_idx] = topi
    distances[q_idx] = topd
    if metric == "l2":
        np.sqrt(distances, out=distances)
    return KnnResult(indices=indices, distances=distances, metric=metric, k=k,
                     include_self=bool(include_self))


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
    indices = np.ascontiguousarray(full.indices)
    count = np.empty(m, dtype=np.int64)
    if k is None:  # first count, so the output is allocated at its final width
        _kernels.count_in_subset(indices, rows, position, count)
    k_out = int(count.min()) if k is None else int(k)
    if not 1 <= k_out <= m:
        raise NumbaconcError(f"k={k_out} must be in [1, {m}]")
    idx = np.empty((m, k_out), dtype=np.int64)
    dist = np.empty((m, k_out), dtype=np.float64)
    _kernels.filter_to_subset(indices, np.ascontiguousarray(full.distances), rows, position,
                              idx, dist, count)
    if k is not None:
        short = np.flatnonzero(count < k_out)
        if len(short):
            fixed = knn(X_subset, k_out, metric=full.metric,
                        queries=np.ascontiguousarray(X_subset[short]), include_self=True)
            idx[short], dist[short] = fixed.indices, fixed.distances
    return KnnResult(indices=idx, distances=dist, metric=full.metric, k=k_out, include_self=True)


def _unit(dtype) -> str:
    return "pixel levels" if np.dtype(dtype) == np.uint8 else "[0,1] units"


def save_knn(result: KnnResult, path, **attrs) -> Path:
    """Write ``indices`` / ``distances`` and attributes to HDF5, atomically."""
    path = Path(path)
    with datasets.atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("indices", data=result.indices)
            f.create_dataset("distances", data=result.distances)
            f.attrs.update(metric=result.metric, k=result.k, include_self=result.include_self)
            f.attrs.update({key: value for key, value in attrs.items() if value is not None})
    return path


def _cache_stem(dataset, split: str, metric: str, include_self: bool) -> str:
    safe = re.sub(r"[^0-9A-Za-z]", "", str(dataset.content_digest))[:24] or "nochecksum"
    return f"{safe}-{split}-{metric}-{'self' if include_self else 'noself'}"


def _load_cached(path: Path, dataset, split, metric, include_self, k, n):
    try:
        with h5py.File(path, "r") as f:
            a = f.attrs
            if (str(a.get("checksum")) != str(dataset.checksum) or str(a.get("split")) != split
                    or str(a.get("metric")) != metric or bool(a.get("include_self")) != include_self
                    or int(a.get("k", 0)) < k):
                return None
            indices = np.asarray(f["indices"][:, :k], dtype=np.int64)
            distances = np.asarray(f["distances"][:, :k], dtype=np.float64)
    except (OSError, KeyError, ValueError, TypeError):
        return None  # unreadable or foreign file: recompute
    if indices.shape != (n, k) or distances.shape != (n, k):
        return None
    return KnnResult(indices=indices, distances=distances, metric=metric, k=k,
                     include_self=include_self)


def cached_knn(dataset, k: int, *, metric: str, split: str = "train",
               include_self: bool = True, progress=None) -> tuple[KnnResult, Path]:
    """All-pairs kNN of one split of ``dataset``, loaded from or saved to the cache.

    Keyed by the dataset checksum, split, metric and include_self; a cached file
    with k' >= k is sliced. Returns (result, path of the cache file).
    """
    metric = canonical_metric(metric)
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
            result = _load_cached(path, dataset, split, metric, include_self, int(k), n)
            if result is not None:
                return result, path
    result = knn(part.x, k, metric=metric, include_self=include_self, progress=progress)
    path = folder / f"{stem}-k{result.k}.h5"
    save_knn(result, path, checksum=str(dataset.checksum), split=split, unit=_unit(part.dtype))
    return result, path
