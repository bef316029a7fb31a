"""Half-space error regions: the top-PC baseline and the Prescott et al. search.

The error region is E = {x : w.x >= b}. Under a metric with dual norm
||.||_* (l2 -> l2, l-inf -> l1) its epsilon-expansion is exactly
E_eps = {x : w.x >= b - eps * ||w||_*}, so every candidate direction costs one
projection of the data, a quantile and two counts.

``method="pca"`` (Gilmer et al.): w = the top principal component, b at the
alpha-quantile, the better of the two sides.

``method="search"`` (Prescott, Zhang, Evans, ICLR 2021): for each principal
component v and each power e in ``powers``, w = sign(v) * |v|^e (normalised),
both sides, b at the alpha'-quantile with alpha' = alpha + margin (default
margin 0.5 / sqrt(n)); the winner has the lowest adversarial risk. Powers
above 1 concentrate the weight on the largest coordinates of v, which shrinks
||w||_1 relative to ||w||_2 and so the l-inf shift; the default grid
``DEFAULT_POWERS = (1, 2, 4, 8, 16)`` spans that range geometrically (under l2,
e = 1 is the natural choice and the others rarely win).

Everything is in storage units (pixel levels for uint8 data): pass
``epsilon / dataset.scale``. The search projects batches of directions with
float32 matrix products per row block (uint8 blocks are cast per block,
never the whole matrix; single-threaded BLAS calls on fixed pieces, so the
values do not depend on the thread count, see ``_products``); the winner is then re-fitted in float64 with the
same kernel ``halfspace_coverage`` uses, so the reported b and risks are exact
and reproducible by ``halfspace_coverage``.

``fit_halfspace_curve`` fits several epsilons in one pass: directions,
projections and thresholds do not depend on epsilon, only the counts do.

On MNIST under l-inf the search tends to pick high powers of high components,
i.e. nearly one-pixel half-spaces {x_j >= b} on pixels that are rarely and
brightly lit; their expansion barely grows with epsilon. That is a valid
member of the family; report it with its test risk (valid only if >= alpha).
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass, field

import numpy as np

from . import budget, cluster
from .coverage import _coverage_from_projection, _project64
from .coverage import halfspace_coverage, project_rows  # noqa: F401 (re-exported)
from .errors import NumbaconcError
from .kernels import halfspace as _k
from .stages import stage
from .validation import (REGION_METRICS, as_matrix, check_float, check_int, check_metric,
                         checked_blocks, read_block)

METRICS = REGION_METRICS
METHODS = ("pca", "search")
STRATEGIES = ("auto", "batches", "passes")
_FEW_PASSES = 4  # "auto": batches while they pass over the data at most this often
_DTYPES = (np.uint8, np.float32, np.float64)
DEFAULT_POWERS = (1.0, 2.0, 4.0, 8.0, 16.0)
_SEARCH_BLOCK = 8192  # rows per float32 block cast from X in the search
_STAT_BLOCK = 8192  # rows per float64 block for the covariance


@dataclass
class HalfSpaceFit:
    """A fitted half-space E = {x : w.x >= b} (storage units)."""

    w: np.ndarray  # (d,) float64, direction in storage units (unit l2 norm)
    b: float  # threshold, storage units
    metric: str  # "l2" or "linf"
    method: str  # "pca" or "search"
    component: int  # which principal component (0 = top)
    power: float  # exponent e (1 for plain PCs)
    train_risk: float  # fraction of the fitting set in E
    train_adv_risk: float  # fraction of the fitting set in E_eps
    search: list[dict] = field(default_factory=list, repr=False)  # every candidate tried
    alpha: float = float("nan")  # requested risk
    alpha_fit: float = float("nan")  # quantile actually used (alpha + margin)
    epsilon: float = 0.0  # storage units
    shift: float = 0.0  # epsilon * ||w||_*: E_eps = {w.x >= b - shift}
    side: int = 1  # +1: E on the +v side of the component, -1: on the -v side
    select_risk: float | None = None  # on X_select, when given
    select_adv_risk: float | None = None
    selection: str = "train"  # "train", "select", or a note when X_select could not be used


# ------------------------------------------------------------------ helpers


def dual_norm(w: np.ndarray, metric: str) -> float:
    """||w||_* for the metric's dual: l2 -> l2, l-inf -> l1."""
    w = np.asarray(w, dtype=np.float64)
    return float(np.abs(w).sum()) if metric == "linf" else float(np.sqrt(np.dot(w, w)))


def _check_matrix(X, name: str):
    """An ndarray / memmap, h5py.Dataset, RowView or numbaconc Split (its rows)."""
    return as_matrix(X, _DTYPES, name)


def _column_sums(block: np.ndarray) -> np.ndarray:
    return block.sum(axis=0, dtype=np.float64)


def _centred_products(block: np.ndarray, mean: np.ndarray) -> np.ndarray:
    centred = block.astype(np.float64) - mean
    return centred.T @ centred  # numpy uses syrk for A.T @ A


def _quantile_rank(alpha: float, n: int) -> int:
    """k = ceil(alpha * n) (guarding against 0.01 * 600 = 6.000000000000001)."""
    return int(min(n, max(1, math.ceil(round(alpha * n, 9)))))


def _kth_largest(p: np.ndarray, k: int) -> float:
    return float(np.partition(p, p.shape[0] - k)[p.shape[0] - k])


def _threshold(p: np.ndarray, k: int, lu) -> float:
    """b of the region {p >= b}: the k-th largest value, or with ``lu`` =
    (weights, G) the largest b covering >= k points whose region meets the
    LU constraint (+inf if no threshold does; numbaconc.lu)."""
    if lu is None:
        return _kth_largest(p, k)
    b_hi, b_lo = np.empty(1), np.empty(1)
    _k.lu_thresholds(np.ascontiguousarray(p, dtype=np.float64)[None, :], k, lu[0], lu[1],
                     b_hi, b_lo)
    return float(b_hi[0])


def _one_blas_thread():
    """LAPACK's eigh makes many small BLAS calls: with 2 BLAS threads on a busy
    2-core machine it was measured 3.9-12 s for d = 784 instead of 0.27 s on one
    thread. threadpoolctl (when installed) limits it; otherwise a no-op."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def principal_components(X, *, block_rows: int = _STAT_BLOCK, name: str = "X"):
    """(eigenvalues descending, eigenvectors as columns) of the centred covariance.

    Two passes over row blocks in float64 (mean, then the centred X^T X), so
    memory is O(block_rows * d + d^2) and uint8 data is never copied whole.
    Each eigenvector's sign is fixed (largest |entry| positive) for
    reproducibility.
    """
    X = _check_matrix(X, name)
    n, d = X.shape
    if n < 2:
        raise NumbaconcError(f"{name} needs at least 2 samples for a covariance, got {n}")
    # per-block sums added in block order (on a cluster: one task per block)
    read = functools.partial(read_block, name=name)
    total = np.zeros(d, dtype=np.float64)
    for part in cluster.map_blocks(_column_sums, X, block_rows, reader=read):
        total += part
    mean = total / n
    cov = np.zeros((d, d), dtype=np.float64)
    for part in cluster.map_blocks(_centred_products, X, block_rows, (mean,), reader=read):
        cov += part
    cov /= n - 1
    with _one_blas_thread():
        values, vectors = np.linalg.eigh(cov)
    values, vectors = values[::-1].copy(), np.ascontiguousarray(vectors[:, ::-1])
    pivot = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[pivot, np.arange(d)])
    signs[signs == 0] = 1.0
    return values, vectors * signs


def _directions(vectors: np.ndarray, n_components: int, powers, metric: str):
    """(d, n_dir) unit-l2 directions in (component, power) order, their dual norms, labels."""
    d = vectors.shape[0]
    n_dir = n_components * len(powers)
    W = np.empty((d, n_dir), dtype=np.float64)
    labels = []
    j = 0
    for c in range(n_components):
        v = vectors[:, c]
        for e in powers:
            u = np.sign(v) * np.abs(v) ** e
            norm = np.sqrt(np.dot(u, u))
            W[:, j] = u / norm if norm > 0 else v
            labels.append((c, float(e)))
            j += 1
    if metric == "linf":
        dual = np.abs(W).sum(axis=0)
    else:
        dual = np.sqrt((W * W).sum(axis=0))
    return W, dual, labels


class _Projector:
    """Float32 projections of X onto a batch of directions, block by block."""

    def __init__(self, X, batch: int, name: str):
        self.X, self.name = X, name
        n, d = X.shape
        rows = min(n, _SEARCH_BLOCK)
        self.rows = rows
        self.buf = np.empty((rows, d), dtype=np.float32)
        self.tmp = np.empty((batch, rows), dtype=np.float32)
        self.P = np.empty((batch, n), dtype=np.float32)
        self._checked = False

    def __call__(self, Wt: np.ndarray) -> np.ndarray:
        """Wt: (m, d) float32 -> (m, n) float32 view of the shared buffer."""
        m = Wt.shape[0]
        P = self.P[:m]
        # finite check only on the first pass over the data
        rows_iter = checked_blocks(self.X, self.rows, self.name, finite=not self._checked)
        for start, stop, block in rows_iter:
            size = stop - start
            if block.dtype == np.float32:
                src = block
            else:
                src = self.buf[:size]
                np.copyto(src, block, casting="unsafe")
            tmp = self.tmp[:m, :size]
            _products(Wt, src, tmp)
            P[:, start:stop] = tmp
        self._checked = True
        return P


_PIECE_ROWS = 1024  # rows per single-threaded BLAS call in _products


def _products(Wt: np.ndarray, src: np.ndarray, out: np.ndarray) -> None:
    """out = Wt @ src.T, identical for any thread count: a multi-threaded sgemm
    rounds differently for each thread count, so each piece of _PIECE_ROWS rows
    is one single-threaded BLAS call, the pieces spread over Numba's thread
    count (the same rounding in this process and on any cluster worker)."""
    _products_of_batches([(Wt, out)], src)


def _products_of_batches(jobs, src: np.ndarray) -> None:
    """``_products`` of every (Wt, out) of ``jobs`` on one row block: the same
    BLAS calls, over one thread pool."""
    import numba
    from concurrent.futures import ThreadPoolExecutor

    def piece(item):
        Wt, out, a = item
        np.matmul(Wt, src[a:a + _PIECE_ROWS].T, out=out[:, a:a + _PIECE_ROWS])

    items = [(Wt, out, a) for Wt, out in jobs for a in range(0, src.shape[0], _PIECE_ROWS)]
    threads = min(numba.get_num_threads(), len(items))
    with _one_blas_thread():
        if threads <= 1:
            for item in items:
                piece(item)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(piece, items))


# ---------------------------------------------------------------------- API


def fit_halfspace(X, alpha: float, epsilon: float, *, metric: str, method: str = "search",
                  n_components: int | None = None, powers=DEFAULT_POWERS, margin: float | None = None,
                  X_select=None, batch: int = 256, progress=None,
                  strategy: str = "auto") -> HalfSpaceFit:
    """Fit a half-space error region of risk >= alpha with small adversarial risk.

    X: (n_samples, n_features) uint8 / float32 / float64 array, memmap, h5py
    dataset or ``Split``, in storage units; epsilon in storage units.
    ``method``: "pca" (top principal component, b at the alpha-quantile) or
    "search" (all components x ``powers``, b at the alpha'-quantile with
    alpha' = alpha + margin, margin defaulting to 0.5 / sqrt(n) for "search"
    and 0 for "pca"). Both sides of every direction are tried. The winner has
    the lowest adversarial risk on X, or, when ``X_select`` (a validation
    split) is given, the lowest adversarial risk on X_select among the
    candidates whose X_select risk is >= alpha (thresholds always come from
    X). ``progress(done, total)`` is called between direction batches.

    ``batch`` directions are projected per matrix product; the search holds a
    (batch, n_samples) float32 buffer (61 MB for MNIST at 256): the batch is
    lowered to what the memory budget allows (``search_batch``), so large n
    costs passes over the data, not memory. Small batches make thin matrix
    products that run well below the BLAS peak; the result does not depend
    on the batch.

    ``strategy`` of the search: "batches" (the above), "passes"
    (numbaconc.halfspace_passes: every direction per row block, a fixed number
    of passes whatever n, the same thresholds and counts) or "auto": passes
    where the batches would make more than a few passes over data that does
    not fit in memory.
    """
    epsilon = check_float(epsilon, "epsilon", low=0.0)
    return fit_halfspace_curve(X, alpha, [epsilon], metric=metric, method=method,
                               n_components=n_components, powers=powers, margin=margin,
                               X_select=X_select, batch=batch, progress=progress,
                               strategy=strategy)[0]


def fit_halfspace_curve(X, alpha: float, epsilons, *, metric: str, method: str = "search",
                        n_components: int | None = None, powers=DEFAULT_POWERS,
                        margin: float | None = None, X_select=None, batch: int = 256,
                        progress=None, lu=None, strategy: str = "auto") -> list[HalfSpaceFit]:
    """``fit_halfspace`` for several epsilons at once: one fit per epsilon.

    ``lu``: (int64 weights of X, integer threshold G) from numbaconc.lu: every
    threshold is then the largest one whose region covers >= the quantile's
    count and has mean LU >= gamma (directions with none are never chosen).

    The covariance, the projections and the thresholds do not depend on
    epsilon, so a curve costs one search plus one count pass per epsilon and
    direction (METHOD.md section 6: one run over a grid of epsilon values).
    """
    X = _check_matrix(X, "X")
    n, d = X.shape
    alpha = check_float(alpha, "alpha")
    if not 0.0 < alpha < 1.0:
        raise NumbaconcError(f"alpha must be in (0, 1), got {alpha}")
    try:
        eps_list = [float(e) for e in np.atleast_1d(np.asarray(epsilons, dtype=object)).ravel()]
    except (TypeError, ValueError):
        raise NumbaconcError(f"epsilon values must be numbers, got {epsilons!r}") from None
    if not eps_list:
        raise NumbaconcError("epsilon: give at least one value")
    eps_arr = np.array([check_float(e, "epsilon", low=0.0) for e in eps_list])
    metric = check_metric(metric)
    if method not in METHODS:
        raise NumbaconcError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    batch = check_int(batch, "batch", low=1)
    if strategy not in STRATEGIES:
        raise NumbaconcError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if strategy == "passes" and lu is not None:
        raise NumbaconcError("strategy 'passes' does not take label-uncertainty weights: "
                             "use 'batches' (or 'auto')")
    n_components = check_int(d if n_components is None else n_components, "n_components",
                             low=1, high=d)
    if method == "pca":
        powers, n_components = (1.0,), 1
    try:
        powers = tuple(float(e) for e in powers)
    except (TypeError, ValueError):
        raise NumbaconcError(f"powers must be a sequence of positive numbers, got {powers!r}") from None
    if not powers or not all(math.isfinite(e) and e > 0 for e in powers):
        raise NumbaconcError(f"powers must be a non-empty sequence of positive numbers, got {powers!r}")
    if margin is None:
        margin = 0.5 / math.sqrt(n) if method == "search" else 0.0
    margin = check_float(margin, "margin", low=0.0)
    alpha_fit = alpha + margin
    if alpha_fit >= 1.0:
        raise NumbaconcError(f"alpha + margin must be < 1, got {alpha} + {margin:.4g}")
    if X_select is not None:
        X_select = _check_matrix(X_select, "X_select")
        if X_select.shape[1] != d:
            raise NumbaconcError(f"X_select has {X_select.shape[1]} features but X has {d}")
    k = _quantile_rank(alpha_fit, n)

    with stage("halfspace_components", n=n, d=d):
        _, vectors = principal_components(X, name="X")
    W, dual, labels = _directions(vectors, int(n_components), powers, metric)
    n_dir = W.shape[1]
    shifts = dual[:, None] * eps_arr[None, :]  # (n_dir, n_eps)

    if method == "pca":
        records = _exact_candidates(X, X_select, W, shifts, labels, k, lu)
    else:
        records = _search_candidates(X, X_select, W, shifts, labels, k, int(batch), progress, lu,
                                     strategy)

    fits = []
    projections = {}
    for i, epsilon in enumerate(eps_arr):
        best, selection = _choose(records[i], alpha, X_select is not None)
        c, e, side = best["component"], best["power"], best["side"]
        j = labels.index((c, e))
        w = side * W[:, j]
        # recomputed from w itself (the formula a saved region uses), not the batch's column sum
        shift = float(epsilon * dual_norm(w, metric))
        # exact float64 re-fit of the winner (same kernel as halfspace_coverage)
        if (j, side) not in projections:
            with stage("halfspace_refit", n=n):
                p = _project64(X, w, "X")
                p_sel = _project64(X_select, w, "X_select") if X_select is not None else None
                projections[(j, side)] = (p, _threshold(p, k, lu), p_sel)
        p, b, p_sel = projections[(j, side)]
        if not math.isfinite(b):
            raise NumbaconcError(f"half-space: in none of the {2 * n_dir} directions (both sides) "
                                 "does a threshold cover the target with mean LU >= gamma")
        inside, inside_eps = _coverage_from_projection(p, b, shift)
        fit = HalfSpaceFit(
            w=w, b=b, metric=metric, method=method, component=int(c), power=float(e),
            train_risk=float(inside.mean()), train_adv_risk=float(inside_eps.mean()),
            search=records[i], alpha=alpha, alpha_fit=alpha_fit, epsilon=float(epsilon), shift=shift,
            side=int(side), selection=selection,
        )
        if p_sel is not None:
            inside, inside_eps = _coverage_from_projection(p_sel, b, shift)
            fit.select_risk, fit.select_adv_risk = float(inside.mean()), float(inside_eps.mean())
        fits.append(fit)
    if progress is not None and method == "pca":
        progress(n_dir, n_dir)
    return fits


def _record(c, e, side, b, n_in, n_adv, n, sel=None, m=None):
    rec = dict(component=int(c), power=float(e), side=int(side), b=float(b),
               risk=n_in / n, adv_risk=n_adv / n)
    if sel is not None:
        rec["select_risk"] = sel[0] / m
        rec["select_adv_risk"] = sel[1] / m
    return rec


def _exact_candidates(X, X_select, W, shifts, labels, k, lu=None):
    """Both sides of each direction in float64 (the few PCA candidates): records per epsilon."""
    n, n_eps = X.shape[0], shifts.shape[1]
    records = [[] for _ in range(n_eps)]
    for j, (c, e) in enumerate(labels):
        for side in (1, -1):
            w = side * W[:, j]
            p = _project64(X, w, "X")
            b = _threshold(p, k, lu)
            p_sel = _project64(X_select, w, "X_select") if X_select is not None else None
            for i in range(n_eps):
                inside, inside_eps = _coverage_from_projection(p, b, float(shifts[j, i]))
                sel = m = None
                if p_sel is not None:
                    m = X_select.shape[0]
                    si, se = _coverage_from_projection(p_sel, b, float(shifts[j, i]))
                    sel = (int(si.sum()), int(se.sum()))
                records[i].append(_record(c, e, side, b, int(inside.sum()), int(inside_eps.sum()), n, sel, m))
    return records


def search_batch(n: int, n_select: int = 0, share: float = 0.5) -> int:
    """Directions per batch that the memory budget allows: the search holds
    one float32 projection per direction and row of X and of X_select
    (``share`` of the budget; the row blocks and the n float64 re-fit
    projection live in the rest). At 1.5 GB and 8 + 2 million rows: 18;
    MNIST (60k rows) keeps the default 256 under any budget above 120 MB.

    The float32 search values come from BLAS, whose rounding depends on the
    batch shape: a smaller batch moves candidate thresholds by float32
    rounding (the reported region is re-fitted exactly in float64). Runs under
    one budget are identical, capped or not; the fixed-pass search, which
    holds no projection per row, keeps the requested batch at any budget."""
    return budget.rows_for(4.0 * (n + n_select), share)


def _use_passes(X, X_select, n_dir: int, batch: int, strategy: str, lu) -> bool:
    """Whether the search runs in fixed passes (numbaconc.halfspace_passes)."""
    if strategy != "auto":
        return strategy == "passes"
    if lu is not None or cluster.current() is not None:
        return False
    rows = X.shape[0] + (X_select.shape[0] if X_select is not None else 0)
    data_bytes = rows * X.shape[1] * np.dtype(X.dtype).itemsize
    return -(-n_dir // batch) > _FEW_PASSES and not budget.fits(data_bytes, 0.25)


def _search_candidates(X, X_select, W, shifts, labels, k, batch, progress, lu=None,
                       strategy="auto"):
    """Float32 search over all directions in batches, both sides: records per epsilon."""
    n, _ = X.shape
    n_dir, n_eps = shifts.shape
    n_sel = X_select.shape[0] if X_select is not None else 0
    capped = min(batch, n_dir, search_batch(n, n_sel))
    passes = _use_passes(X, X_select, n_dir, capped, strategy, lu)
    # The passes hold no n-long buffer, so they keep the requested batch at any
    # budget: their BLAS calls (whose rounding depends on the shape) are those of
    # the batched search at that batch, and the GEMMs do not shrink as n grows.
    batch = min(batch, n_dir) if passes else capped
    n_sel = n_sel or None
    bounds = [(start, min(n_dir, start + batch)) for start in range(0, n_dir, batch)]
    batches = ((np.ascontiguousarray(W[:, a:b].T, dtype=np.float32),
                np.ascontiguousarray(shifts[a:b], dtype=np.float64)) for a, b in bounds)
    with stage("halfspace_search", strategy="passes" if passes else "batches", batch=batch,
               directions=n_dir, n=n, n_select=n_sel or 0):
        if passes:
            from .halfspace_passes import search_in_passes

            b_hi, b_lo, cnt, scnt = search_in_passes(
                X, X_select, [(a, b, Wt) for (a, b), (Wt, _) in zip(bounds, batches)], shifts, k,
                progress)
            results = [(b_hi[a:b], b_lo[a:b], cnt[a:b].tolist(),
                        None if scnt is None else scnt[a:b].tolist()) for a, b in bounds]
        elif cluster.current() is not None:  # direction batches as tasks
            results = cluster.halfspace_batches(X, X_select, batches, batch, k, lu)
        else:
            proj = _Projector(X, batch, "X")
            proj_sel = _Projector(X_select, batch, "X_select") if X_select is not None else None
            results = (_batch_counts(proj, proj_sel, Wt, sh, k, lu) for Wt, sh in batches)
        return _records(results, bounds, labels, n, n_eps, n_sel, None if passes else progress)


def _records(results, bounds, labels, n, n_eps, n_sel, progress):
    """Both sides of every direction of ``bounds``' batches: records per epsilon."""
    n_dir = bounds[-1][1]
    records = [[] for _ in range(n_eps)]
    for (start, stop), (b_hi, b_lo, cnt, scnt) in zip(bounds, results):
        m = stop - start
        for r in range(m):
            c, e = labels[start + r]
            hi, lo = float(b_hi[r]), -float(b_lo[r])
            for i in range(n_eps):
                ct = cnt[r][i]
                sel_hi = sel_lo = None
                if scnt is not None:
                    sc = scnt[r][i]
                    sel_hi, sel_lo = (sc[0], sc[1]), (sc[2], sc[3])
                # the low side is E = {-w.x >= -b_lo}: threshold -b_lo on -w
                records[i].append(_record(c, e, 1, hi, ct[0], ct[1], n, sel_hi, n_sel))
                records[i].append(_record(c, e, -1, lo, ct[2], ct[3], n, sel_lo, n_sel))
        if progress is not None:
            progress(stop, n_dir)
    return records


def _batch_counts(proj, proj_sel, Wt: np.ndarray, sh: np.ndarray, k: int, lu=None):
    """One batch of directions (Wt: (m, d) float32, sh: (m, n_eps) shifts): the
    float32 thresholds of both sides (b_hi, b_lo) and the counts of each side and
    epsilon on X and X_select (lists, None without X_select). ``lu``: (weights,
    G) of numbaconc.lu: the thresholds of the label-uncertainty search."""
    m = Wt.shape[0]
    b_hi = np.empty(m, dtype=np.float32)
    b_lo = np.empty(m, dtype=np.float32)
    counts = np.empty((m, sh.shape[1], 4), dtype=np.int64)
    P = proj(Wt)
    if lu is None:
        _k.select_thresholds(P, k, b_hi, b_lo)
    else:
        _k.lu_thresholds(P, k, lu[0], lu[1], b_hi, b_lo)
    _k.count_sides(P, b_hi, b_lo, sh, counts)
    scnt = None
    if proj_sel is not None:
        sel_counts = np.empty((m, sh.shape[1], 4), dtype=np.int64)
        _k.count_sides(proj_sel(Wt), b_hi, b_lo, sh, sel_counts)
        scnt = sel_counts.tolist()
    return b_hi, b_lo, counts.tolist(), scnt


def _choose(records, alpha: float, use_select: bool):
    """Lowest adversarial risk (on the select split when given); ties go to the
    larger training risk, then to the earliest candidate. Candidates without a
    threshold (none met the LU constraint: b = +inf) are left out."""
    feasible = [r for r in records if math.isfinite(r["b"])]
    records = feasible or records
    adv = np.array([r["adv_risk"] for r in records])
    risk = np.array([r["risk"] for r in records])
    if use_select:
        s_risk = np.array([r["select_risk"] for r in records])
        s_adv = np.array([r["select_adv_risk"] for r in records])
        ok = np.flatnonzero(s_risk >= alpha)
        if len(ok):
            # lexsort: last key is primary -> select adv, then train adv, then order
            order = np.lexsort((ok, adv[ok], s_adv[ok]))
            return records[ok[order[0]]], "select"
        note = "train (no candidate reached alpha on X_select)"
    else:
        note = "train"
    order = np.lexsort((np.arange(len(records)), -risk, adv))
    return records[order[0]], note


def halfspace_risks(X, fit: HalfSpaceFit, *, block_rows: int | None = None) -> tuple[int, int, int]:
    """(n_inside, n_inside_eps, n_samples) of a fitted half-space on X (e.g. the test split)."""
    inside, inside_eps = halfspace_coverage(X, fit.w, fit.b, fit.shift, block_rows=block_rows)
    return int(inside.sum()), int(inside_eps.sum()), int(inside.shape[0])
