"""Error regions made of a union of balls, placed greedily (METHOD.md section 4):
l2 balls, and l-inf balls ("cubes", ``metric="linf"``: the region of Zhang and
Evans 2022, whose l-inf expansion is the union of the cubes grown by eps,
exact). An optional label-uncertainty constraint (numbaconc.lu) keeps only
balls whose newly covered points have mean LU >= gamma.

``fit_balls`` is the paper's Algorithm 2, computed exactly but without the
2019 code's all-pairs scan per ball. Each candidate centre i is first scored
from its sorted neighbour list (a two-pointer sweep, O(K)): gains whose radius
r and grown radius r + eps both fall inside the list's complete range are
exact; the others get a lower bound. Only candidates whose bound could still
beat the best exact gain are then evaluated against all n points, in order of
increasing bound, dropping the rest as soon as the best improves past them.

Choice among equal gains (documented tie-break): smallest gain, then smallest
centre index i, then smallest radius. Gains are compared as exact integers.
Distances are in storage units (pixel levels for uint8); radii are kept as
squared distances (exact integers for uint8 data) for the "<= r" tests, and
"<= r + eps" is ``d**2 <= max(r**2, (r + eps)**2)`` in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import budget
from .coverage import _DTYPES, _as_data, ball_coverage  # noqa: F401 (ball_coverage: re-exported)
from .errors import NumbaconcError
from .stages import stage
from .kernels import ball_geometry as _geometry
from .kernels import balls as _k
from .validation import (METRICS, REGION_METRICS, as_matrix, check_alpha, check_epsilon,
                         check_finite, check_float, check_int, check_metric)

_FIRST_BATCH = 64  # candidates evaluated exactly in a ball's first call; the batch
                   # doubles per call up to the evaluator's capacity (thin GEMMs
                   # waste BLAS; results never depend on the batch or thread count)
_BATCH_SHARE = 0.25  # capacity: rows of n float64 distances (two buffers) in this budget share
_HELD_LISTS_SHARE = 0.0625  # sampled candidates' lists (each array) held in memory up to this
                            # share, else in a scratch file: the greedy already holds X and the
                            # evaluator's buffers, and the kNN its prepared base
_MAX_BATCH = 256
_BASE_BLOCK_BYTES = 8 << 20  # float32 base rows converted at a time by the exact GEMM
_GEMM_CHUNK = (1 << 24) // (255 * 255)  # uint8 features per float32 GEMM chunk:
                                        # every partial sum is an integer < 2**24, exact
_SPOT_ROWS = 64  # rows of given neighbour distances checked against X
_REL_SLACK = 1e-9  # float data: neighbour distances may differ from ours by rounding
_N_PROFILE = 40  # carried bounds for m >= 2**b, b < 40
_INT32_MAX_D = (2**31 - 1) // (255 * 255)  # uint8 features whose squared distance fits int32


@dataclass
class BallsFit:
    center_index: np.ndarray  # (T',) int64, training index of each centre
    centers: np.ndarray       # (T', d) float64, storage units
    radii: np.ndarray         # (T',) float64, storage units (true distance)
    radii_sq: np.ndarray      # (T',) float64, exact squared radii (integers for uint8)
    covered: np.ndarray       # (n,) bool, training points inside some ball
    expanded: np.ndarray      # (n,) bool, inside some ball grown by epsilon
    history: list = field(default_factory=list)  # one dict per ball
    epsilon: float = 0.0      # storage units
    metric: str = "l2"        # l2: radii_sq are squared radii; linf: the radii themselves
    stopped: str | None = None  # why the greedy stopped short of its target (LU constraint)

    @property
    def risk(self) -> float:
        return float(self.covered.mean())

    @property
    def adv_risk(self) -> float:
        return float(self.expanded.mean())


# ------------------------------------------------------------------ helpers


def _check_neighbors(neighbors, n: int, metric: str = "l2", m: int | None = None):
    """The lists' indices, validated (read in place: memmaps are not copied);
    ``m``: rows expected (one per candidate centre; default n)."""
    m = n if m is None else m
    given = str(getattr(neighbors, "metric", "")).lower()
    if METRICS.get(given) != metric:
        raise NumbaconcError(f"neighbors must be {metric} neighbour lists, got metric {given!r}")
    if not getattr(neighbors, "include_self", True):
        raise NumbaconcError("neighbors must include each point itself (include_self=True)")
    idx = neighbors.indices
    if not hasattr(idx, "shape") or not hasattr(idx, "dtype"):
        idx = np.asarray(idx)
    if idx.ndim != 2 or idx.shape[0] != m or idx.shape[1] < 1 or idx.shape[1] > n:
        raise NumbaconcError(f"neighbors.indices must have shape ({m}, K) with 1 <= K <= {n}, "
                             f"got {idx.shape}")
    if not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= n:
        raise NumbaconcError(f"neighbors.indices must be integers in [0, {n})")
    return idx


def _spot_rows(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, _SPOT_ROWS)).astype(np.int64))


def _spot_keys(X, idx, centres, integer, linf):
    """(spot rows of the lists, their exact keys recomputed from X); list row s
    belongs to centre ``centres[s]`` (all rows in order when None)."""
    rows = _spot_rows(len(idx))
    exact = np.empty((len(rows), idx.shape[1]))
    _k.list_sqdist(X, rows if centres is None else centres[rows],
                    np.ascontiguousarray(idx[rows]), integer, linf, exact)
    return rows, exact


def _lists_as_given(X, idx, neighbors, integer, linf, centres=None):
    """(idx, d2) of numbaconc's compact lists used in place (no copy), or None.

    Usable when the lists hold exact keys of uint8 data (l2: squared
    distances in int32, ``KnnResult.squared``; l-inf: distances in uint8),
    already sorted by (key, index), and a few rows checked against X agree
    (so lists of other data are never trusted)."""
    stored = getattr(neighbors, "stored", None)
    if stored is None or not integer:
        return None
    if linf:
        kept_exactly = np.dtype(stored.dtype) == np.uint8
    else:
        kept_exactly = (getattr(neighbors, "squared", False) and X.shape[1] <= _INT32_MAX_D
                        and np.dtype(stored.dtype) == np.int32)
    if not (kept_exactly and np.dtype(idx.dtype) == np.int32 and stored.shape == idx.shape):
        return None
    rows, exact = _spot_keys(X, idx, centres, integer, linf)
    if not np.array_equal(exact, np.asarray(stored[rows], dtype=np.float64)):
        return None
    if _k.unsorted_rows(idx, stored) > 0:
        return None
    return idx, stored


def _list_distances(X, idx, neighbors, integer, linf, centres=None):
    """(dist, recompute): reuse the lists' distances for uint8 data when they are
    exact (numbaconc.neighbours's are: spot-checked on a few rows), else recompute."""
    if not integer:
        return np.zeros((1, 1)), True
    dist = getattr(neighbors, "distances", None)
    if dist is None or np.shape(dist) != idx.shape:
        return np.zeros((1, 1)), True
    dist = np.ascontiguousarray(dist, dtype=np.float64)
    rows, exact = _spot_keys(X, idx, centres, integer, linf)
    if not np.array_equal(exact, np.rint(dist[rows] if linf else dist[rows] ** 2)):
        return np.zeros((1, 1)), True
    return dist, False


def _prepared_lists(X, neighbors, n, integer, linf=False, centres=None):
    """(idx, d2, lim): the neighbour lists sorted by exact (d2, index), and
    ``lim[s]``: every point with d2 < lim[s] is in row s (kernels.prepare_lists).
    Row s is the list of X[centres[s]] (of X[s] when ``centres`` is None).
    numbaconc's compact exact lists are used as they are (memmaps read in
    place); any other lists are copied and re-sorted."""
    m = n if centres is None else len(centres)
    idx = _check_neighbors(neighbors, n, "linf" if linf else "l2", m)
    K = idx.shape[1]
    given = _lists_as_given(X, idx, neighbors, integer, linf, centres)
    if given is not None:
        idx, d2 = given
        lim = np.asarray(d2[:, K - 1], dtype=np.float64)
        if K >= n:
            lim[:] = np.inf
        return idx, d2, lim
    # our own copy: rows are re-sorted in place by exact distance (int32 halves
    # the memory of long lists; every index fits)
    idx = np.array(idx, dtype=np.int32 if n < 2**31 else np.int64, order="C", copy=True)
    # squared distances of uint8 rows are exact integers: int32 holds them when
    # d * 255**2 < 2**31 (d <= 33025), at half the memory of float64
    d2 = np.empty((m, K), dtype=np.int32 if integer and X.shape[1] <= _INT32_MAX_D else np.float64)
    lim = np.empty(m, dtype=np.float64)
    dist, recompute = _list_distances(X, idx, neighbors, integer, linf, centres)
    rows = np.arange(m, dtype=np.int64) if centres is None else centres
    _k.prepare_lists(X, rows, idx, dist, d2, lim, recompute, integer,
                     0.0 if integer else _REL_SLACK, linf, n)
    return idx, d2, lim


class _ExactEvaluator:
    """Exact d2 from a batch of points to all n points, and exact gains.

    uint8 data: x.y by float32 GEMM (BLAS) over feature chunks short enough that
    every partial sum is an integer below 2**24 (so exact in any summation
    order), summed in float64 in chunk order: exact integer d2 at BLAS speed.
    The base streams in row blocks converted to float32 as they are used (no
    float32 copy of X). Float data: the direct float64 kernel (the same
    rounding as everywhere else). The batch capacity comes from the budget.
    """

    def __init__(self, X, integer, linf=False, lw=None, G=0):
        self.X = X
        self.integer = integer
        self.linf = linf  # l-inf keys: the direct kernel (no GEMM form)
        self.lw = np.zeros(1, dtype=np.int64) if lw is None else lw
        self.lu_threshold = int(G)
        n, d = X.shape
        self.capacity = cap = batch_capacity(n)
        self.D2 = np.empty((cap, n))
        self.buf_u = np.empty((cap, n))
        self.gain = np.empty(cap, dtype=np.int64)
        self.r2 = np.empty(cap)
        self.top = np.empty(cap)
        self.prof = np.empty((cap, _N_PROFILE), dtype=np.int64)
        self.sq = None
        self._all_rows = None
        self.base_rows = int(min(n, max(256, _BASE_BLOCK_BYTES // (4 * d))))

    def _prepare_gemm(self):
        X = self.X
        d = X.shape[1]
        # buffers reused by every fill: a fresh multi-MB temporary per base block
        # is mapped and unmapped each time on a dask worker (its nanny sets
        # MALLOC_TRIM_THRESHOLD_), and the page faults cost a third of its CPU
        self.G = np.empty(self.capacity * self.base_rows, dtype=np.float32)
        self.left = np.empty((self.capacity, d), dtype=np.float32)
        self.right = np.empty(self.base_rows * min(d, _GEMM_CHUNK), dtype=np.float32)
        self.sq = np.concatenate([(np.asarray(X[a:a + 8192]).astype(np.int64) ** 2).sum(1)
                                  for a in range(0, X.shape[0], 8192)]).astype(np.float64)

    def fill(self, rows, cols=None):
        """Exact d2 from X[rows] to every row of X (self.D2[:len(rows)]), or to
        the rows ``cols`` only (sorted; a (len(rows), len(cols)) C-ordered view
        of the same buffer). Each value depends only on its pair of rows."""
        b = len(rows)
        n, d = self.X.shape
        m = n if cols is None else len(cols)
        acc = self.D2[:b] if cols is None else self.D2.reshape(-1)[:b * m].reshape(b, m)
        if not self.integer or self.linf:
            if cols is None:
                if self._all_rows is None:  # made once: fill runs for every batch
                    self._all_rows = np.arange(n)
                cols = self._all_rows
            _k.fill_rows(self.X, rows, cols, self.integer, self.linf, acc)
            return acc
        if self.sq is None:
            self._prepare_gemm()
        X = self.X
        sq_rows = np.ascontiguousarray(self.sq[rows])
        chunks = [(c, min(c + _GEMM_CHUNK, d)) for c in range(0, d, _GEMM_CHUNK)]
        left = self.left[:b]
        np.copyto(left, np.asarray(X[rows]))
        for a in range(0, m, self.base_rows):
            z = min(a + self.base_rows, m)
            if cols is None:
                block, sq_block = np.asarray(X[a:z]), self.sq[a:z]
            else:
                block, sq_block = np.asarray(X[cols[a:z]]), self.sq[cols[a:z]]
            G = self.G[:b * (z - a)].reshape(b, z - a)
            for c, (c0, c1) in enumerate(chunks):
                right = self.right[:(z - a) * (c1 - c0)].reshape(z - a, c1 - c0)
                np.copyto(right, block[:, c0:c1])
                np.matmul(left[:, c0:c1], right.T, out=G)
                _k.add_products(acc[:, a:z], G, sq_rows, sq_block, c == 0,
                                c == len(chunks) - 1)
        return acc

    def __call__(self, cand, covered, expanded, n_lo, n_hi, eps, top_hint):
        return self.gains(cand, covered, expanded, n_lo, n_hi, eps,
                          np.ascontiguousarray(top_hint[cand]))

    def gains(self, cand, covered, expanded, n_lo, n_hi, eps, hint):
        """(gain, r2, top, profile) of the candidates ``cand`` (``hint``: their list tops)."""
        b = len(cand)
        self.fill(cand)
        _k.gains_from_rows(self.D2, b, covered, expanded, n_lo, n_hi, eps, hint, self.buf_u,
                           self.linf, self.lw, self.lu_threshold, self.gain, self.r2, self.top,
                           self.prof)
        return self.gain[:b], self.r2[:b], self.top[:b], self.prof[:b]

    def add_penalties(self, rows, reach, penalty):
        """penalty[i] += #{r in rows: d2(x_r, x_i) <= reach[i]} (kernels.add_penalties).

        Only rows evaluated exactly have a reach (>= 0; the rest -1, never
        reached), so the distances go to those columns only when they are
        fewer than half the rows: with sampled candidates at most the sample,
        instead of all n (the same pairs, the same exact values)."""
        cols = np.flatnonzero(reach >= 0)
        if len(cols) == 0:
            return
        if 2 * len(cols) >= len(reach):
            cols = None
        for a in range(0, len(rows), self.capacity):
            part = rows[a:a + self.capacity]
            if cols is None:
                _k.add_penalties(self.fill(part), len(part), reach, penalty)
            else:
                increment = np.zeros(len(cols), dtype=np.int64)
                _k.add_penalties(self.fill(part, cols), len(part), reach[cols], increment)
                penalty[cols] += increment


def batch_capacity(n: int) -> int:
    """Candidates per exact evaluation: rows of n float64 distances (two buffers)
    within the budget share."""
    return budget.rows_for(16 * n, _BATCH_SHARE, minimum=1, maximum=_MAX_BATCH)


def _evaluator(X, integer, linf=False, lw=None, G=0):
    """The exact candidate evaluator: on a cluster, batches split across workers."""
    from . import cluster

    if cluster.current() is not None:
        return cluster.BallEvaluator(X, integer, batch_capacity(X.shape[0]), linf, lw, G)
    return _ExactEvaluator(X, integer, linf, lw, G)


def _target(alpha: float, delta: float, n: int) -> int:
    # tiny slack so that e.g. 0.01 * 60000 * 1.25 = 750.0000000000001 gives 750
    return int(math.ceil(alpha * n * (1.0 + delta) - 1e-9))


# ---------------------------------------------------------------------- API


def sample_candidates(n: int, m: int, seed: int = 0) -> np.ndarray | None:
    """A seeded uniform sample of m of the n rows as candidate centres, sorted;
    None (every row: the exact greedy) when m >= n."""
    m = check_int(m, "candidates", low=1)
    if m >= n:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False)).astype(np.int64)


def check_candidates(candidates, n: int) -> np.ndarray:
    rows = np.asarray(candidates)
    if rows.ndim != 1 or len(rows) < 1 or not np.issubdtype(rows.dtype, np.integer):
        raise NumbaconcError("candidates must be a non-empty 1-d array of row indices")
    rows = rows.astype(np.int64)
    if rows[0] < 0 or rows[-1] >= n or np.any(np.diff(rows) <= 0):
        raise NumbaconcError(f"candidates must be sorted, distinct rows in [0, {n})")
    return rows


def candidate_list_length(k: int, m: int) -> int:
    """List length for m sampled candidates: k, or fewer so that the m lists
    (int32 indices and distances) stay within a quarter of the budget (the
    length changes only how many candidates need the exact evaluation)."""
    return int(min(k, budget.rows_for(8 * m, _BATCH_SHARE, minimum=1)))


def candidate_lists(X, centres, k: int, metric: str = "l2"):
    """Exact neighbour lists (self included) of the rows ``centres`` among all
    rows of X (every row when None): m queries against n base rows.

    ``X`` may be a row view or a file's dataset: the search reads it in
    blocks. The m lists are held in memory up to a small budget share, else
    written into scratch files whose pages are flushed and released after
    every query block, so they never compete with the search's prepared
    copy of the base (read at random by its exact re-ranking)."""
    from .datasets import RowView  # imported late: optional until needed
    from .neighbours import knn, list_dtypes, release_pages, scratch_array

    n, d = X.shape
    if centres is None:
        return knn(X, k, metric=metric, include_self=True)
    m = len(centres)
    idx_type, dist_type, _ = list_dtypes(metric, X.dtype, n, d)
    out = (scratch_array((m, k), idx_type, _HELD_LISTS_SHARE),
           scratch_array((m, k), dist_type, _HELD_LISTS_SHARE))

    def written(done, total):
        for array in out:
            if isinstance(array, np.memmap):
                array.flush()  # clean pages can leave the page cache at once
                release_pages(array)

    with stage(f"knn_{metric}_candidates", m=m, n=n, d=d, k=k):
        return knn(X, k, metric=metric, queries=RowView(X).take(centres), include_self=True,
                   out=out, progress=written)


def fit_balls(X, alpha: float, epsilon: float, n_balls: int, *, delta: float = 0.0,
              neighbors=None, n_neighbors: int | None = None, progress=None,
              metric: str = "l2", lu=None, gamma: float = 0.0, candidates=None) -> BallsFit:
    """Greedy union of at most ``n_balls`` balls covering >= ceil(alpha n (1+delta))
    training points with the fewest points within ``epsilon`` of the union.

    ``metric``: "l2" (balls) or "linf" (cubes: l-inf balls; neighbour lists
    and radii are l-inf distances, ``radii_sq`` holds the radii themselves).
    ``lu``, ``gamma``: per-point label uncertainty of X (numbaconc.lu) and its
    threshold: a candidate (centre, radius) counts only if the points it newly
    covers have mean LU >= gamma, so the union's mean LU is >= gamma too.
    When no candidate meets gamma the greedy stops there (``stopped`` says
    so; the region then covers fewer than the target).

    ``X``: (n, d) uint8 or float32 (memmap, h5py dataset or ``RowView`` fine),
    storage units. Lists computed here are searched over X as it is (read in
    blocks); the rows are materialised once, after the search's prepared copy
    of them is freed.
    ``epsilon``: storage units (pixel levels for uint8: eps * 255).
    ``neighbors``: l2 ``KnnResult`` of X with include_self=True; if None it is
    computed with ``numbaconc.neighbours.knn`` with K = n_neighbors or 2 ceil(alpha n).
    Longer lists make more candidates exact from the list alone (faster), any
    K gives the same result. ``progress``: callable (done, total) per ball.
    ``candidates``: the rows allowed as centres (sorted, distinct; e.g.
    ``sample_candidates``), None = every row (the paper's greedy). Each is
    still evaluated exactly against all n points; ``neighbors`` then holds one
    list per candidate (m x K: the candidates as queries, X as the base).
    """
    X = as_matrix(X, _DTYPES, "X")  # read below: the lists first, then the rows held once
    check_finite(X, "X")
    n = X.shape[0]
    alpha = check_alpha(alpha)
    epsilon = check_epsilon(epsilon)
    delta = check_float(delta, "delta", low=0.0)
    n_balls = check_int(n_balls, "n_balls", low=1)
    N = _target(alpha, delta, n)
    if N > n:
        raise NumbaconcError(f"alpha * (1 + delta) asks for {N} covered points but n = {n}")
    linf = check_metric(metric, REGION_METRICS) == "linf"
    from .lu import check_lu, lu_threshold, lu_weights

    lu = check_lu(lu, n, split="X") if lu is not None else None
    lw = lu_weights(lu, n) if lu is not None else np.zeros(n, dtype=np.int64)
    G = lu_threshold(gamma) if lu is not None else 0
    centres = None if candidates is None else check_candidates(candidates, n)
    if neighbors is None:
        if n_neighbors is None:
            n_neighbors = min(n, 2 * math.ceil(alpha * n))
        n_neighbors = check_int(n_neighbors, "n_neighbors", low=1, high=n)
        # from the unread rows (a view, a file): the search's prepared copy of
        # them is gone before the fitting rows are materialised
        neighbors = candidate_lists(X, centres, int(n_neighbors), metric)
    X = _as_data(X)
    integer = X.dtype == np.uint8
    eps = float(epsilon)
    with stage("balls_lists", n=n, candidates=n if centres is None else len(centres)):
        idx, d2, lim = _prepared_lists(X, neighbors, n, integer, linf, centres)
    m = len(idx)  # candidate centres: slot s is row centres[s] (row s when None)
    with stage("balls_greedy", n=n, candidates=m, T=n_balls):
        return _greedy(X, idx, d2, lim, centres, N, n_balls, eps, integer, linf, lu, lw, G,
                       gamma, metric, progress)


def _greedy(X, idx, d2, lim, centres, N, n_balls, eps, integer, linf, lu, lw, G, gamma, metric,
            progress) -> BallsFit:
    """fit_balls' greedy over prepared lists (slot s: centre row centres[s], or s)."""
    n = X.shape[0]
    m = len(idx)

    covered = np.zeros(n, dtype=np.bool_)
    expanded = np.zeros(n, dtype=np.bool_)
    best_gain = np.empty(m, dtype=np.int64)
    best_r2 = np.empty(m, dtype=np.float64)
    lower = np.empty(m, dtype=np.int64)
    list_top = np.empty(m, dtype=np.float64)
    # the evaluators take rows of X and read hints and penalties by row
    top_by_row = list_top if centres is None else np.full(n, -1.0)
    exact = _evaluator(X, integer, linf, lw, G)
    # Bound carried across balls, for candidates once evaluated against all n:
    # later radii are r_m (m >= the later n_lo) among the then-uncovered points,
    # all <= r_{n_hi} of that evaluation; the gain at a radius can only drop by
    # points newly expanded within reach = grown(r_{n_hi}). So
    # gain_later >= profile[floor(log2(n_lo_later))] - penalty.
    # (carried per candidate slot; reach and penalty per row of X)
    carried = np.full((m, _N_PROFILE), -_k.BIG, dtype=np.int64)
    reach = np.full(n, -1.0)
    penalty = np.zeros(n, dtype=np.int64)

    centers, r2s, history = [], [], []
    n_cov = n_exp = 0
    stopped = None
    for t in range(n_balls):
        if n_cov >= N:
            break
        need = N - n_cov
        n_lo = -(-need // (n_balls - t))
        n_hi = need
        _k.list_pass(idx, d2, lim, covered, expanded, n_lo, n_hi, eps, n_exp - n_cov, linf, lw, G,
                     best_gain, best_r2, lower, list_top)
        # a gain not computed from the list is >= both bounds
        np.maximum(lower, carried[:, int(n_lo).bit_length() - 1]
                   - (penalty if centres is None else penalty[centres]), out=lower)
        if centres is not None:
            top_by_row[centres] = list_top
        # lexicographic best (gain, i, r2); argmin returns the smallest i (slots
        # are in row order, so the smallest slot is the smallest row)
        bi = int(np.argmin(best_gain))
        bg, br2 = int(best_gain[bi]), float(best_r2[bi])
        # candidates whose bound could still win (a bound never ties a better r2
        # of the same i: list bounds come after that i's exact radii)
        pending = np.flatnonzero((lower < bg) | ((lower == bg) & (np.arange(m) < bi)))
        pending = pending[np.lexsort((pending, lower[pending]))]
        n_exact = 0
        pos = 0
        size = min(_FIRST_BATCH, exact.capacity)
        while pos < len(pending):
            rest = pending[pos:]
            keep = (lower[rest] < bg) | ((lower[rest] == bg) & (rest < bi))
            if not keep.any():
                break
            cand = rest[keep][:size]
            size = min(2 * size, exact.capacity)
            pos += int(np.flatnonzero(keep)[len(cand) - 1]) + 1
            rows = cand if centres is None else centres[cand]
            out_gain, out_r2, out_top, out_prof = exact(rows, covered, expanded, n_lo, n_hi, eps,
                                                           top_by_row)
            n_exact += len(cand)
            carried[cand] = out_prof
            # the grown radius, rounded up a hair: over-counting penalties is safe
            grown = out_top + eps if linf else np.maximum(out_top, (np.sqrt(out_top) + eps) ** 2)
            reach[rows] = grown * (1 + 1e-12)
            penalty[rows] = 0
            for s, i in enumerate(cand):
                key = (int(out_gain[s]), int(i), float(out_r2[s]))
                if key < (bg, bi, br2):
                    bg, bi, br2 = key
        if bg >= _k.BIG:
            if G == 0:  # cannot happen: some candidate always reaches m = n_hi
                raise RuntimeError("fit_balls: no candidate ball found")
            # the LU constraint: no ball covering n_lo..n_hi new points meets
            # gamma; stop (never re-append the last ball, as the 2022 code did)
            stopped = (f"no candidate for ball {t} covering {n_lo}..{n_hi} new points has "
                       f"mean LU >= gamma = {gamma:g}")
            break

        centre = bi if centres is None else int(centres[bi])
        before = expanded.copy()
        before_cov = covered.copy() if lu is not None else None
        strictly = _geometry.mark_ball(X, X[centre], br2, eps, integer, linf, covered, expanded)
        ball_lu = None
        if lu is not None:
            new = covered & ~before_cov
            if int(lw[new].sum()) < G * int(new.sum()):
                raise RuntimeError(f"fit_balls: ball {t} breaks the LU constraint")
            ball_lu = float(lu[new].mean())
        fresh = np.flatnonzero(expanded & ~before)
        if (reach >= 0).any():
            exact.add_penalties(fresh, reach, penalty)
        new_cov = int(covered.sum()) - n_cov
        new_exp = int(expanded.sum()) - n_exp
        if new_exp - new_cov != bg:  # internal consistency of the two paths
            raise RuntimeError(f"fit_balls: ball {t} gain {bg} but marked {new_exp - new_cov}")
        n_cov += new_cov
        n_exp += new_exp
        centers.append(centre)
        r2s.append(br2)
        # m: the smallest m in [n_lo, n_hi] whose radius is r (one more than the
        # uncovered points strictly inside, if that is >= n_lo)
        history.append(dict(n_lo=n_lo, n_hi=n_hi, m=max(n_lo, strictly + 1), gain=bg,
                            n_covered=n_cov, n_expanded=n_exp, candidates_exact=n_exact,
                            candidates_bounded=int(len(pending)),
                            center_index=centre, radius_sq=br2, mean_lu=ball_lu))
        if progress is not None:
            progress(t + 1, n_balls)
    if progress is not None and len(history) < n_balls:
        progress(n_balls, n_balls)  # target reached early

    center_index = np.asarray(centers, dtype=np.int64)
    radii_sq = np.asarray(r2s, dtype=np.float64)
    return BallsFit(center_index=center_index,
                    centers=np.asarray(X[center_index], dtype=np.float64).reshape(len(centers), X.shape[1]),
                    radii=radii_sq.copy() if linf else np.sqrt(radii_sq), radii_sq=radii_sq,
                    covered=covered, expanded=expanded, history=history, epsilon=eps,
                    metric=metric, stopped=stopped)
