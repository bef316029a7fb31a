"""The optimal adversarial 0-1 loss of a labelled sample: a lower bound for any classifier.

Bhagoji, Cullina and Mittal (NeurIPS 2019), Pydi and Jog (2020), Dai et al.
(NeurIPS 2023). For the empirical distribution of n labelled points and an
attacker who moves each point by at most epsilon (l2 or linf), the *conflict
graph* joins two points of different classes whose distance is <= 2 epsilon
(inclusive): some input lies within epsilon of both, so no classifier gets
both right under attack. The smallest adversarial 0-1 loss any classifier can
reach (corrupted-input definition: any change of the output away from the
original label counts) is bounded from below by

- degree 2: 1 - LP / n, LP = max sum q_v s.t. q_u + q_v <= 1 on every edge,
  0 <= q <= 1. Since q is feasible iff 1 - q is a fractional vertex cover, LP =
  n - tau_f, and tau_f = nu_f (LP duality) = M / 2 with M a maximum matching of
  the bipartite double cover (rows and columns both the n points, the
  adjacency matrix as biadjacency; Numba Hopcroft-Karp warm-started along the
  epsilon grid: edges only get added). So the loss is M / (2 n); with two classes
  the graph is bipartite, M = 2 x (its maximum matching) and the loss is
  matching / n, each matched pair forcing one error.
- degree 3 (Dai et al.): the same LP with a constraint q_u + q_v + q_w <= 1
  for every triangle that can be attacked jointly (linf: every triangle of the
  conflict graph, since pairwise box intersections meet in a common point;
  l2: a triangle whose minimum enclosing ball has radius <= epsilon), solved
  with HiGHS. Its loss is >= the degree-2 loss.

The range search computes each pair's distance once and buckets it by the
smallest grid epsilon it conflicts at, so the whole epsilon grid costs one
pass; blocks of query x base rows are sized by ``numbaconc.budget``, never an
n x n matrix. On uint8 data the comparisons are exact in integers (see
``storage_thresholds``); l2 uses float32 GEMM blocks with the certified error
bound of ``numbaconc.neighbours`` and decides the uncertain pairs exactly.

Memory: a copy of the points (zero-padded uint8, or float32), a float32 copy
for the GEMM when it fits in a quarter of the budget, block scratch, and the
edge list itself, 9 bytes an edge (two int32 and a uint8 bucket), plus the CSR
of one epsilon at a time (8 bytes per edge: int32 indices both ways). The edge list is the result, so it is not bounded by
the budget: MNIST l2 at epsilon 4 has tens of millions of edges.

Certificates. Degree 2: a fractional matching y (weights 1 or 1/2 on conflict
pairs, at most 1 per point) proves loss >= sum y / n on its own (weak
duality); the primal q (0, 1/2 or 1, from König's cover of the double cover)
with sum q = n - sum y proves it optimal. Two classes: y is a matching (index
pairs). Degree 3: HiGHS's primal q and its dual (edge, triangle and q <= 1
multipliers).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numba
import numpy as np

from . import budget
from .datasets import RowView
from .errors import NumbaconcError
from .kernels import bound as _kernels
from .neighbours import column_order, gemm_slack, prepare_rows
from .validation import REGION_METRICS as METRICS
from .validation import canonical_metric, check_finite, check_matrix
DEFINITIONS = (
    "The concentration estimate uses the error-region definition of adversarial risk (an "
    "attack succeeds only if the perturbed point lands where the classifier disagrees with "
    "the true label of that point); the lower bound uses the corrupted-input definition (any "
    "change of the output away from the original label counts). They are not two bounds on "
    "one number, and neither need be below the other.")
ZERO_BOUND = ("The bound is exactly 0: no two differently labelled points lie within 2 eps, so "
              "label overlap explains none of a classifier's vulnerability at this eps.")
DEGREES = (2, 3)
_TOLERANCE = 1e-9       # relative: an epsilon typed as a decimal still reaches its pixel level
_MAX_BLOCK = 4096        # rows per query / base block (BLAS likes large blocks)
_PAR_CHUNK = 8           # query rows per dynamic scheduling chunk (diagonal blocks are uneven)
_LP_MAX_ROWS = 500_000    # degree 3: edges + triangles given to HiGHS at most (140,000 rows took 27 s)


def storage_thresholds(epsilons, *, metric: str, scale: float, dtype) -> np.ndarray:
    """The conflict thresholds of an epsilon grid ([0,1] units) in storage units.

    A pair conflicts at epsilon when its distance is <= 2 epsilon, inclusive.
    With r = 2 epsilon / scale: uint8 l2 compares the squared integer distance
    with floor(r^2 (1 + 1e-9)), uint8 linf the max abs difference with
    floor(r (1 + 1e-9)) (so 2 x 0.3 x 255 = 152.99999999999997 in float64
    still reaches 153 levels); float32 data compares its float64 distance (l2:
    squared) with r^2 or r.
    """
    r = 2.0 * np.asarray(epsilons, dtype=np.float64) / float(scale)
    value = r * r if metric == "l2" else r
    if np.dtype(dtype) == np.uint8:
        return np.floor(value * (1.0 + _TOLERANCE))
    return value


def _check_epsilons(epsilons) -> np.ndarray:
    eps = np.atleast_1d(np.asarray(epsilons, dtype=np.float64))
    if eps.size < 1:
        raise NumbaconcError("epsilon: no values given")
    if not np.all(np.isfinite(eps)) or np.any(eps < 0):
        raise NumbaconcError(f"epsilon: values must be finite and >= 0, got {eps.tolist()}")
    eps = np.unique(eps)
    if eps.size > 255:
        raise NumbaconcError(f"epsilon: at most 255 grid values, got {eps.size}")
    return eps


# ------------------------------------------------------------ range search


@dataclass
class ConflictEdges:
    """Edges u < v (int32, row positions of the points given) and their
    bucket: the index of the smallest grid epsilon at which they conflict."""

    u: np.ndarray
    v: np.ndarray
    bucket: np.ndarray
    n: int
    epsilons: np.ndarray
    thresholds: np.ndarray
    metric: str
    seconds: float = 0.0

    def count(self, k: int) -> int:
        """Edges at grid epsilon k (every edge whose bucket is <= k)."""
        return int(np.count_nonzero(self.bucket <= k))

    def csr(self, k: int, sort_rows: bool = True):
        """(indptr, indices int32) of the graph at grid epsilon k; rows sorted
        unless ``sort_rows=False`` (then in edge order, still deterministic)."""
        return _kernels.symmetric_csr(self.u, self.v, self.bucket, np.uint8(k), self.n,
                                      bool(sort_rows))

    def pairs(self, k: int) -> np.ndarray:
        """(edges, 2) int64 pairs u < v at grid epsilon k, sorted."""
        keep = self.bucket <= k
        pairs = np.stack([self.u[keep], self.v[keep]], axis=1).astype(np.int64)
        return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def _labels(labels, n: int) -> np.ndarray:
    if labels is None:
        raise NumbaconcError("labels are required for the lower bound (this split has none)")
    y = np.asarray(labels).reshape(-1)
    if len(y) != n:
        raise NumbaconcError(f"labels: {len(y)} labels for {n} points")
    if not np.issubdtype(y.dtype, np.integer):
        raise NumbaconcError(f"labels must be integers, got {y.dtype}")
    return np.ascontiguousarray(y, dtype=np.int64)


def block_rows(n: int, d: int) -> int:
    """Rows of a query (and a base) block: the GEMM block (4 bytes), the
    listed partners (4) and buckets (1) of each pair fit an eighth of the budget."""
    side = min(n, _MAX_BLOCK)
    return budget.rows_for(9 * side + 4 * d, share=0.125, minimum=64, maximum=_MAX_BLOCK)


def conflict_edges(X, labels, *, metric: str, epsilons, scale: float,
                   block: int | None = None, progress=None) -> ConflictEdges:
    """Every pair of rows of ``X`` with different ``labels`` within 2 epsilon
    of the largest grid value, bucketed by the smallest grid epsilon.

    ``X``: (n, d) uint8 or float32 in storage units (memmaps and h5py datasets
    are read in blocks); ``epsilons`` in [0,1] units; ``scale`` converts
    storage units to [0,1] units (1/255 for uint8 pixels).
    """
    start = time.perf_counter()
    metric = canonical_metric(metric)
    if metric not in METRICS:
        raise NumbaconcError(f"metric {metric!r}: the lower bound supports l2 and linf")
    n, d, dtype = check_matrix(X, name="X")
    y = _labels(labels, n)
    eps = _check_epsilons(epsilons)
    if n >= 2 ** 31:
        raise NumbaconcError(f"{n} points: int32 indices hold at most 2^31 - 1")
    thr = storage_thresholds(eps, metric=metric, scale=scale, dtype=dtype)
    exact_u8 = dtype == np.uint8
    if metric == "linf":
        cols = column_order(X, n, d, "X")
    else:
        check_finite(X, "X")
        cols = np.arange(d)
    P, _, _, sq = prepare_rows(X, n, d, dtype, cols, np.arange(n))
    gemm = metric == "l2" and exact_u8
    if gemm:
        # rows by norm: a block pair whose norms differ by more than 2 eps is
        # skipped, and so is every later base block (|x| - |y| <= |x - y|)
        order = np.argsort(sq, kind="stable")
        P, sq = P[order], sq[order]
    else:
        order = np.arange(n)
    y_sorted = np.ascontiguousarray(y[order])
    idx = np.ascontiguousarray(order.astype(np.int32))
    bs = int(block) if block else block_rows(n, d)
    blocks = [(a, min(a + bs, n)) for a in range(0, n, bs)]
    if gemm:
        sqf = sq.astype(np.float64)
        norm = np.sqrt(sqf)
        slack = gemm_slack(d)
        whole = P[:, :d].astype(np.float32) if budget.fits(4.0 * n * d, share=0.25) else None
        # norms differ by more than this: no pair of the blocks can conflict
        reach = math.sqrt(thr[-1]) * (1.0 + 1e-9) + 1.0
        kind = _kernels.GEMM_L2_U8
    else:
        sqf = norm = np.zeros(n)
        slack = 0.0
        kind = _kernels.LINF_U8 if exact_u8 else (
            _kernels.L2_F32 if metric == "l2" else _kernels.LINF_F32)
    kernel = _kernels.RANGE_KERNELS[kind]
    thr_arg = thr.astype(np.int64) if kind == _kernels.LINF_U8 else thr.astype(np.float64)
    no_gemm = np.zeros((1, 1), dtype=np.float32)

    def floats(a, b):
        return whole[a:b] if whole is not None else P[a:b, :d].astype(np.float32)

    out_j = np.empty((bs, bs), dtype=np.int32)
    out_k = np.empty((bs, bs), dtype=np.uint8)
    count = np.empty(bs, dtype=np.int64)
    parts_u, parts_v, parts_k = [], [], []
    with numba.parallel_chunksize(_PAR_CHUNK):
        for qi, (qa, qb) in enumerate(blocks):
            nq = qb - qa
            Qf = floats(qa, qb) if gemm else None
            for bi in range(qi, len(blocks)):
                ba, bb = blocks[bi]
                nb = bb - ba
                if gemm and norm[ba] - norm[qb - 1] > reach:
                    break
                oj, ok, cnt = out_j[:nq, :nb], out_k[:nq, :nb], count[:nq]
                G = Qf @ floats(ba, bb).T if gemm else no_gemm
                kernel(G, P[qa:qb], P[ba:bb], sqf[qa:qb], norm[qa:qb], sqf[ba:bb], norm[ba:bb],
                       y_sorted[qa:qb], y_sorted[ba:bb], bi == qi, slack, thr_arg, oj, ok, cnt)
                total = int(cnt.sum())
                if total:
                    U = np.empty(total, dtype=np.int32)
                    V = np.empty(total, dtype=np.int32)
                    K = np.empty(total, dtype=np.uint8)
                    _kernels.collect_edges(idx[qa:qb], idx[ba:bb], oj, ok, cnt, U, V, K)
                    parts_u.append(U)
                    parts_v.append(V)
                    parts_k.append(K)
            if progress is not None:
                progress(qb, n)

    del P, out_j, out_k
    whole = None

    def join(parts, dtype):
        """One array from the block parts, freeing them as it goes (the peak is
        the parts plus one joined array, not twice the edge list)."""
        out = np.concatenate(parts) if parts else np.empty(0, dtype=dtype)
        parts.clear()
        return out

    u = join(parts_u, np.int32)
    v = join(parts_v, np.int32)
    bucket = join(parts_k, np.uint8)
    return ConflictEdges(u=u, v=v, bucket=bucket, n=n, epsilons=eps, thresholds=thr,
                         metric=metric, seconds=time.perf_counter() - start)


# ------------------------------------------------------------------ solvers


@dataclass
class Degree2Solution:
    """Maximum matching ``M`` of the double cover; ``pairs`` (m, 2) with
    ``weights`` (1 or 1/2): the fractional matching (sum = M / 2); ``q``: the
    primal optimum (0, 1/2, 1) with sum q = n - M / 2."""

    double_cover_matching: int
    pairs: np.ndarray
    weights: np.ndarray
    q: np.ndarray

    @property
    def loss(self) -> float:
        n = len(self.q)
        return self.double_cover_matching / (2.0 * n) if n else 0.0


def solve_degree2(indptr, indices, n: int, warm=None, side=None) -> Degree2Solution:
    """The degree-2 LP through a maximum matching of the bipartite double cover
    (Numba Hopcroft-Karp, started from ``warm`` = (row_match, col_match) of a
    subgraph when given, updated in place) and König's cover for the primal.

    ``side``: for a bipartite graph (two classes), a mask of one class; the
    double cover is then two copies of the graph and its matched rows of that
    class form a maximum matching of the graph itself (weights 1).
    """
    if warm is None:
        warm = (np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64))
    row_match, col_match = warm
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    size = int(_kernels.hopcroft_karp(indptr, indices, row_match, col_match))
    zr, zc = _kernels.konig_reachable(indptr, indices, row_match, col_match)
    cover = (~zr).astype(np.float64) + zc.astype(np.float64)  # 0, 1 or 2 per point
    q = 1.0 - cover / 2.0
    matched = np.flatnonzero(row_match >= 0)
    if side is not None:
        a = matched[np.asarray(side)[matched]]
        b = row_match[a]
        pairs = np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1)
        pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
        return Degree2Solution(size, pairs, np.ones(len(pairs)), q)
    a, b = matched, row_match[matched]
    key = np.minimum(a, b) * n + np.maximum(a, b)
    uniq, counts = np.unique(key, return_counts=True)  # both directions -> weight 1
    pairs = np.stack([uniq // n, uniq % n], axis=1)
    return Degree2Solution(size, pairs, counts / 2.0, q)


@dataclass
class Degree3Solution:
    q: np.ndarray
    edge_dual: np.ndarray
    triangle_dual: np.ndarray
    upper_dual: np.ndarray
    value: float

    @property
    def loss(self) -> float:
        n = len(self.q)
        return 1.0 - self.value / n if n else 0.0


def jointly_attackable(sides, *, metric: str, r2: float) -> np.ndarray:
    """Which triangles (squared side lengths (t, 3), storage units) can be
    attacked jointly: linf always; l2 when the minimum enclosing ball has
    radius <= epsilon, i.e. 4 R^2 <= r2 = (2 eps / scale)^2 (relative
    tolerance 1e-9, as for the thresholds). A right or obtuse triangle's ball
    has its longest side as diameter, already <= 2 eps; an acute one's is the
    circumcircle, 4 R^2 = 4 a2 b2 c2 / (16 area^2)."""
    t = len(sides)
    if metric == "linf" or t == 0:
        return np.ones(t, dtype=bool)
    s = np.asarray(sides, dtype=np.float64)
    a2, b2, c2 = s[:, 0], s[:, 1], s[:, 2]
    acute = (a2 < b2 + c2) & (b2 < a2 + c2) & (c2 < a2 + b2)
    area16 = 2 * (a2 * b2 + b2 * c2 + c2 * a2) - (a2 * a2 + b2 * b2 + c2 * c2)
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = 4.0 * a2 * b2 * c2 <= r2 * (1.0 + _TOLERANCE) * area16
    return ~acute | inside


def solve_lp(n: int, pairs: np.ndarray, triangles: np.ndarray) -> Degree3Solution:
    """max sum q s.t. q_u + q_v <= 1 (pairs), q_u + q_v + q_w <= 1 (triangles),
    0 <= q <= 1, with HiGHS (scipy.optimize.linprog)."""
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix

    m2, m3 = len(pairs), len(triangles)
    if m2 + m3 == 0:
        # no constraint but q <= 1: its dual z = 1 proves the value n
        return Degree3Solution(np.ones(n), np.empty(0), np.empty(0), np.ones(n), float(n))
    rows = np.concatenate([np.repeat(np.arange(m2), 2), m2 + np.repeat(np.arange(m3), 3)])
    cols = np.concatenate([np.asarray(pairs, dtype=np.int64).ravel(),
                           np.asarray(triangles, dtype=np.int64).ravel()])
    A = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(m2 + m3, n))
    res = linprog(-np.ones(n), A_ub=A, b_ub=np.ones(m2 + m3), bounds=(0.0, 1.0), method="highs")
    if res.status != 0:
        raise NumbaconcError(f"HiGHS did not solve the LP: {res.message}")
    dual = -np.asarray(res.ineqlin.marginals)
    return Degree3Solution(q=np.asarray(res.x), edge_dual=dual[:m2], triangle_dual=dual[m2:],
                           upper_dual=-np.asarray(res.upper.marginals), value=float(-res.fun))


def conflict_triangles(edges: ConflictEdges, k: int, indptr, indices, P, *, scale: float,
                       dtype) -> np.ndarray:
    """(t, 3) int64 triangles u < v < w of the graph at grid epsilon k that can
    be attacked jointly. ``P``: the points (for l2 side lengths)."""
    t = int(_kernels.count_triangles(indptr, indices))
    if t > _LP_MAX_ROWS:
        raise NumbaconcError(f"degree 3: {t} triangles in the conflict graph at epsilon "
                             f"{edges.epsilons[k]:g}, more than the {_LP_MAX_ROWS} LP rows HiGHS "
                             f"is given here; use degree 2, smaller epsilons or fewer points")
    tri = np.empty((t, 3), dtype=np.int64)
    _kernels.list_triangles(indptr, indices, tri)
    if edges.metric == "linf" or t == 0:
        return tri
    if np.dtype(dtype) == np.uint8:
        d = P.shape[1]
        padded = np.zeros((len(P), -(-d // 64) * 64), dtype=np.uint8)
        padded[:, :d] = P
        sides = np.empty((t, 3), dtype=np.int64)
        _kernels.triangle_sides_u8(padded, tri, sides)
    else:
        sides = np.empty((t, 3))
        _kernels.triangle_sides_f32(np.ascontiguousarray(P, dtype=np.float32), tri, sides)
    r2 = (2.0 * float(edges.epsilons[k]) / float(scale)) ** 2
    return tri[jointly_attackable(sides, metric="l2", r2=r2)]


# --------------------------------------------------------------------- API


@dataclass
class BoundRow:
    epsilon: float
    lower_bound: float
    n: int
    edges: int
    degree: int
    triangles: int | None
    n_classes: int
    matching: int | None
    double_cover_matching: int | None
    conflicting_points: int
    solve_seconds: float


@dataclass
class BoundResult:
    rows: list
    metric: str
    degree: int
    n: int
    classes: list
    points: np.ndarray = field(repr=False)
    range_search_seconds: float = 0.0
    certificates: list = field(default_factory=list, repr=False)
    inputs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(metric=self.metric, degree=self.degree, n=self.n, classes=self.classes,
                    range_search_seconds=self.range_search_seconds, inputs=self.inputs,
                    rows=[asdict(r) for r in self.rows])


def lower_bound(X, labels, *, metric: str, epsilons, scale: float, degree: int = 2,
                classes=None, points=None, progress=None) -> BoundResult:
    """Per grid epsilon, the optimal adversarial 0-1 loss of the labelled
    points (a fraction of them) under the conflict-graph LP of ``degree``.

    ``classes``: keep only the points of these labels (all when None);
    ``points``: the row numbers reported in the certificate (default 0..n-1).
    """
    if degree not in DEGREES:
        raise NumbaconcError(f"degree must be 2 or 3, got {degree!r}")
    n_all, _, _ = check_matrix(X, name="X")
    y = _labels(labels, n_all)
    rows_kept = np.arange(n_all)
    if classes is not None:
        classes = sorted({int(c) for c in classes})
        missing = [c for c in classes if not np.any(y == c)]
        if len(classes) < 2:
            raise NumbaconcError(f"classes: at least two are needed, got {classes}")
        if missing:
            raise NumbaconcError(f"classes {missing} have no points in this split")
        rows_kept = np.flatnonzero(np.isin(y, classes))
        X = RowView(X).take(rows_kept)
        y = y[rows_kept]
    points = rows_kept if points is None else np.asarray(points)[rows_kept]
    n = len(y)
    n_classes = int(len(np.unique(y)))
    edges = conflict_edges(X, y, metric=metric, epsilons=epsilons, scale=scale, progress=progress)
    result = BoundResult(rows=[], metric=edges.metric, degree=int(degree), n=n,
                         classes=[int(c) for c in np.unique(y)], points=points,
                         range_search_seconds=edges.seconds)
    dtype = np.dtype(X.dtype)
    dense = None
    warm = (np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64))
    for k, eps in enumerate(edges.epsilons):
        start = time.perf_counter()
        indptr, indices = edges.csr(k, sort_rows=degree == 3)
        n_edges = len(indices) // 2
        conflicting = int(np.count_nonzero(np.diff(indptr)))
        if degree == 2:
            sol = solve_degree2(indptr, indices, n, warm,
                                side=(y == y.min()) if n_classes == 2 else None)
            loss, n_tri, dc = sol.loss, None, sol.double_cover_matching
            matching = dc // 2 if n_classes == 2 else None
            cert = dict(kind="matching", epsilon=float(eps), pairs=points[sol.pairs] if len(sol.pairs)
                        else np.empty((0, 2), dtype=np.int64), weights=sol.weights, q=sol.q,
                        lower_bound=loss)
        else:
            if n_edges > _LP_MAX_ROWS:
                raise NumbaconcError(f"degree 3: {n_edges} edges at epsilon {eps:g}, more than the "
                                     f"{_LP_MAX_ROWS} LP rows HiGHS is given here; use degree 2")
            if dense is None and metric == "l2":
                dense = np.asarray(X) if isinstance(X, np.ndarray) else np.asarray(RowView(X))
            tri = conflict_triangles(edges, k, indptr, indices, dense, scale=scale, dtype=dtype)
            if n_edges + len(tri) > _LP_MAX_ROWS:
                raise NumbaconcError(f"degree 3: {n_edges} edges + {len(tri)} triangles at epsilon "
                                     f"{eps:g}, more than the {_LP_MAX_ROWS} LP rows allowed")
            pairs = edges.pairs(k)
            sol3 = solve_lp(n, pairs, tri)
            loss, n_tri, matching, dc = sol3.loss, int(len(tri)), None, None
            cert = dict(kind="lp", epsilon=float(eps), pairs=points[pairs] if len(pairs)
                        else np.empty((0, 2), dtype=np.int64),
                        triangles=points[tri] if len(tri) else np.empty((0, 3), dtype=np.int64),
                        q=sol3.q, edge_dual=sol3.edge_dual, triangle_dual=sol3.triangle_dual,
                        upper_dual=sol3.upper_dual, lower_bound=loss)
        result.rows.append(BoundRow(epsilon=float(eps), lower_bound=float(loss), n=n, edges=n_edges,
                                    degree=int(degree), triangles=n_tri, n_classes=n_classes,
                                    matching=matching, double_cover_matching=dc,
                                    conflicting_points=conflicting,
                                    solve_seconds=time.perf_counter() - start))
        result.certificates.append(cert)
    return result


def dataset_lower_bound(dataset, *, metric: str, epsilons, split: str = "train", degree: int = 2,
                        classes=None, progress=None) -> BoundResult:
    """``lower_bound`` on one split of an opened ``Dataset`` (labels required)."""
    part = dataset.split(split)
    if part.y is None:
        raise NumbaconcError(f"{dataset.path}: the {split} split has no labels (/{split}/y), "
                             f"which the lower bound needs")
    result = lower_bound(part.x, part.y, metric=metric, epsilons=epsilons, scale=dataset.scale,
                         degree=degree, classes=classes, progress=progress)
    result.inputs = dict(dataset=dataset.name, path=str(dataset.path), split=split,
                         checksum=dataset.checksum, scale=dataset.scale)
    return result


def save_certificate(result: BoundResult, path):
    """Write the certificates (one group per epsilon) to HDF5, atomically.

    Point numbers are row numbers of the split. Degree 2: ``pairs`` (m, 2) and
    ``weights`` form a fractional matching of conflict pairs, so the loss is
    >= sum(weights) / n whatever else holds; ``q`` is the primal optimum (check
    q_u + q_v <= 1 on every conflict pair) with sum(q) = n - sum(weights).
    Degree 3: ``q`` (primal), ``edge_dual`` / ``triangle_dual`` for ``pairs`` /
    ``triangles``, ``upper_dual`` for q <= 1.
    """
    import h5py

    from .datasets import atomic_path

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs.update(metric=result.metric, degree=result.degree, n=result.n,
                           classes=np.asarray(result.classes, dtype=np.int64))
            f.attrs.update({k: v for k, v in result.inputs.items() if v is not None})
            f.create_dataset("points", data=np.asarray(result.points, dtype=np.int64))
            for k, cert in enumerate(result.certificates):
                g = f.create_group(f"eps{k}")
                for key, value in cert.items():
                    if isinstance(value, np.ndarray):
                        g.create_dataset(key, data=value)
                    else:
                        g.attrs[key] = value
    return path


def _pair_distances(X, a, b, metric: str) -> np.ndarray:
    """Distances (l2: squared) of rows a[i], b[i] of X in storage units,
    in integers for uint8, in float64 otherwise (numpy, row blocks)."""
    view = RowView(X)
    out = np.empty(len(a))
    for s in range(0, len(a), 4096):
        A = view.take(a[s:s + 4096]).astype(np.int64 if X.dtype == np.uint8 else np.float64)
        B = view.take(b[s:s + 4096]).astype(A.dtype)
        diff = A - B
        out[s:s + 4096] = (diff * diff).sum(axis=1) if metric == "l2" else np.abs(diff).max(axis=1)
    return out


def verify_certificate(path, dataset) -> list:
    """Check a certificate written by ``save_certificate`` against the data,
    independently of the range search and the solvers; per epsilon a dict with
    the ``claimed`` bound and the ``verified`` one (None if a check fails).

    Degree 2: every pair has two labels and a distance <= 2 eps (recomputed
    here), each point's weights sum to <= 1; then loss >= sum(weights) / n.
    Degree 3: the same for the pairs; each triangle has three labels, pairwise
    conflicts and (l2) an enclosing ball of radius <= eps; the dual covers
    every point, c = min_v (upper_dual_v + its edge and triangle duals) > 0,
    so dual / c is feasible and loss >= 1 - (sum of duals / c) / n.
    """
    import h5py

    out = []
    with h5py.File(path, "r") as f:
        metric, degree, n = str(f.attrs["metric"]), int(f.attrs["degree"]), int(f.attrs["n"])
        part = dataset.split(str(f.attrs.get("split", "train")))
        if part.y is None:
            raise NumbaconcError("the certificate's split has no labels in this dataset")
        points = np.asarray(f["points"][...], dtype=np.int64)
        position = np.full(part.n_samples, -1, dtype=np.int64)
        position[points] = np.arange(len(points))
        y = np.asarray(part.y)
        for name in sorted((k for k in f if k.startswith("eps")), key=lambda k: int(k[3:])):
            g = f[name]
            eps = float(g.attrs["epsilon"])
            thr = storage_thresholds([eps], metric=metric, scale=dataset.scale, dtype=part.dtype)[0]
            pairs = np.asarray(g["pairs"][...], dtype=np.int64).reshape(-1, 2)
            ok = len(points) == n and bool(np.all(position[pairs] >= 0))
            if len(pairs):
                dist = _pair_distances(part.x, pairs[:, 0], pairs[:, 1], metric)
                ok &= bool(np.all((dist <= thr) & (y[pairs[:, 0]] != y[pairs[:, 1]])))
            if degree == 2:
                weights = np.asarray(g["weights"][...])
                load = np.zeros(n)
                if len(pairs) and ok:
                    np.add.at(load, position[pairs].ravel(), np.repeat(weights, 2))
                ok &= bool(np.all(weights >= 0) and np.all(load <= 1.0 + 1e-12))
                verified = float(weights.sum() / n) if ok else None
            else:
                tri = np.asarray(g["triangles"][...], dtype=np.int64).reshape(-1, 3)
                if len(tri):
                    sides = np.stack([_pair_distances(part.x, tri[:, i], tri[:, j], metric)
                                      for i, j in ((0, 1), (0, 2), (1, 2))], axis=1)
                    labels = y[tri]
                    ok &= bool(np.all(position[tri] >= 0) and np.all(sides <= thr)
                               and np.all((labels[:, 0] != labels[:, 1]) & (labels[:, 0] != labels[:, 2])
                                          & (labels[:, 1] != labels[:, 2])))
                    r2 = (2.0 * eps / dataset.scale) ** 2
                    ok &= bool(np.all(jointly_attackable(sides, metric=metric, r2=r2)))
                edge_dual, tri_dual = np.asarray(g["edge_dual"][...]), np.asarray(g["triangle_dual"][...])
                upper = np.asarray(g["upper_dual"][...])
                ok &= bool(np.all(edge_dual >= 0) and np.all(tri_dual >= 0) and np.all(upper >= 0))
                cover = upper.astype(np.float64).copy()
                if ok:
                    np.add.at(cover, position[pairs].ravel(), np.repeat(edge_dual, 2))
                    np.add.at(cover, position[tri].ravel(), np.repeat(tri_dual, 3))
                c = float(cover.min()) if n else 1.0
                ok &= c > 0
                value = edge_dual.sum() + tri_dual.sum() + upper.sum()
                verified = float(max(0.0, 1.0 - value / c / n)) if ok else None
            out.append(dict(epsilon=eps, claimed=float(g.attrs["lower_bound"]), verified=verified))
    return out
