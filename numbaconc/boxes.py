"""The l-inf estimator of the 2019 paper (its Algorithm 1): the error region is
the complement of a union of T boxes grown by eps.

1. density score rho_i = l1 distance to the k-th nearest neighbour (k = 50,
   the point itself counted as its first neighbour, as the 2019 code does);
2. dense set D = the floor(q * n) points with the smallest rho (ties by index);
3. Lloyd's k-means on D with T clusters (l1 assignment, mean update, <= 30
   iterations, random initial centres drawn from D);
4. one box per cluster: ``symmetric`` (mean +- max deviation, the paper's) or
   ``tight`` (per-coordinate min/max of the cluster, same members, less volume);
5. risk = fraction outside every box grown by eps; adversarial risk = fraction
   outside every box (an upper bound on the measure of E_eps); with a data
   domain, faces whose grown copy lies outside it are not tested (a tighter
   upper bound, see numbaconc.boxes_coverage).

Tuning: for each T, binary search of q keeping the largest q whose risk on the
selection set is >= alpha, then the (T, q) with the lowest adversarial risk on
the selection set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from . import cluster
from .boxes_coverage import boxes_from_clusters
from .datasets import RowView
from .errors import NumbaconcError
from .kmeans import kmeans, rows_in_memory
from .regions import Region, box_region

DEFAULT_T_GRID = (5, 10, 15, 20, 40, 75)
DENSITY_K = 50
Q_TOLERANCE = 0.005
BOX_SHAPES = ("symmetric", "tight")


def dense_order(scores: np.ndarray) -> np.ndarray:
    """Indices sorted by density score, smallest (densest) first; ties by index."""
    return np.argsort(scores, kind="stable")


@dataclass
class BoxesModel:
    """Fits box regions on one fitting set, memoising k-means per (T, q, seed),
    so an epsilon grid or a q search never repeats a clustering."""

    X: np.ndarray            # fitting set (array, memmap or RowView), storage units
    scores: np.ndarray       # density score per row of X
    scale: float
    shape: str = "symmetric"
    kmeans_metric: str = "l1"
    max_iter: int = 30
    _order: np.ndarray = field(init=False, repr=False)
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        if self.shape not in BOX_SHAPES:
            raise NumbaconcError(f"unknown box shape {self.shape!r} (symmetric or tight)")
        self._order = dense_order(self.scores)

    def n_dense(self, q: float) -> int:
        return int(math.floor(q * len(self.X)))

    def boxes(self, n_clusters: int, q: float, seed: int):
        """(centers, half_widths, kmeans result without its labels) for T
        clusters on the top-q dense set."""
        n_dense = self.n_dense(q)
        if n_dense < n_clusters:
            raise NumbaconcError(
                f"q={q:g} keeps {n_dense} points, fewer than the {n_clusters} clusters"
            )
        key = (n_clusters, n_dense, seed)
        if key not in self._cache:
            # D: an index array over the fitting rows, held in memory only
            # when it fits the budget share (k-means reads it every iteration)
            D = rows_in_memory(RowView(self.X, np.sort(self._order[:n_dense])))
            km = kmeans(D, n_clusters, metric=self.kmeans_metric, init="random",
                        max_iter=self.max_iter, random_state=seed)
            centers, half_widths = boxes_from_clusters(
                D, km.labels, n_clusters, centers=km.centers, shape=self.shape
            )
            # a tuning run fits dozens of (T, q): keep no n_dense-long labels per fit
            self._cache[key] = (centers, half_widths, replace(km, labels=None))
        return self._cache[key]

    def prefit(self, keys) -> None:
        """Fit the boxes of every (n_clusters, q, seed) in ``keys`` (e.g. the
        restarts) ahead of ``boxes``: on a cluster one task each, else nothing
        (``boxes`` fits them when asked)."""
        todo = [key for key in keys if (key[0], self.n_dense(key[1]), key[2]) not in self._cache]
        if todo and cluster.current() is not None:
            for (n_clusters, q, seed), fitted in zip(todo, cluster.boxes_fits(self, todo)):
                self._cache[(n_clusters, self.n_dense(q), seed)] = fitted

    def region(self, n_clusters: int, q: float, seed: int, epsilon: float, domain=None) -> Region:
        centers, half_widths, km = self.boxes(n_clusters, q, seed)
        meta = dict(n_clusters=n_clusters, q=q, seed=seed, n_dense=self.n_dense(q),
                    kmeans_iterations=km.n_iter, kmeans_converged=bool(km.converged))
        return box_region(centers, half_widths, epsilon=epsilon, scale=self.scale,
                          shape=self.shape, domain=domain, meta=meta)


def search_q(model: BoxesModel, X_select, *, n_clusters: int, alpha: float, epsilon: float,
             seed: int, q_tol: float = Q_TOLERANCE, domain=None) -> dict:
    """Largest q in (0, 1) whose selection-set risk is >= alpha (bisection to q_tol).

    Risk falls as q grows (more points inside the boxes), so the feasible q
    form an interval starting at 0 (up to k-means noise).
    """
    lo, hi = 0.0, 1.0
    best = None
    trace = []
    min_q = n_clusters / len(model.X)
    while hi - lo > q_tol:
        mid = 0.5 * (lo + hi)
        if mid < min_q:  # too few dense points for T clusters: treat as infeasible-small
            lo = mid
            continue
        figures = model.region(n_clusters, mid, seed, epsilon, domain).evaluate(X_select)
        figures = {key: figures[key] for key in ("n", "risk", "adv_risk")}
        trace.append(dict(q=mid, **figures))
        if figures["risk"] >= alpha:
            lo = mid
            best = dict(q=mid, **figures)
        else:
            hi = mid
    if best is None:
        return dict(n_clusters=n_clusters, q=None, risk=None, adv_risk=None, trace=trace)
    return dict(n_clusters=n_clusters, **best, trace=trace)


def tune_boxes(model: BoxesModel, X_select, *, alpha: float, epsilon: float, seed: int,
               t_grid=DEFAULT_T_GRID, q_tol: float = Q_TOLERANCE, domain=None,
               progress=None, target_text: str | None = None) -> dict:
    """For every T in the grid, search q; pick the (T, q) with the lowest
    selection-set adversarial risk. ``target_text``: the target in words for
    the failure message (the caller knows the user's alpha behind it)."""
    options = dict(alpha=alpha, epsilon=epsilon, seed=seed, q_tol=q_tol, domain=domain)
    grid = [(i, n_clusters) for i, n_clusters in enumerate(t_grid) if n_clusters <= len(model.X)]
    if cluster.current() is not None:  # one task per T
        table = cluster.boxes_grid(model, X_select, [t for _, t in grid], options, progress,
                                   len(t_grid))
    else:
        table = []
        for i, n_clusters in grid:
            table.append(search_q(model, X_select, n_clusters=n_clusters, **options))
            if progress is not None:
                progress(i + 1, len(t_grid))
    feasible = [row for row in table if row["q"] is not None]
    if not feasible:
        target_text = target_text or f"risk >= {alpha:g} on the selection set"
        raise NumbaconcError(f"no (T, q) with T in {tuple(t_grid)} reached {target_text}")
    best = min(feasible, key=lambda row: (row["adv_risk"], row["n_clusters"]))
    return dict(n_clusters=best["n_clusters"], q=best["q"], table=table)
