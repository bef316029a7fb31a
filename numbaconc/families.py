"""The pieces ``measure.Concentration`` is made of, one concern each:

- ``Splits``: the protocol (the fitting / selection / test row views, the
  selection target every choice must reach);
- ``NeighbourLists``: the neighbour-list cache (one search per metric,
  read off for the holdout subset);
- one strategy per region family (``BoxesFamily``, ``BallsFamily``,
  ``CubesFamily``, ``HalfSpaceFamily``): ``fit(alpha=, epsilon=, **options)`` fits the
  family under the protocol and returns a ``FamilyFit`` (its regions and how
  they were chosen), keeping the family's own caches (k-means fits, the
  half-space search of an epsilon grid, projections).

Epsilon arrives in [0, 1] units; ``Splits.to_storage`` converts it once
for the fitting code below.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .boxes import DEFAULT_T_GRID, DENSITY_K, BoxesModel, search_q, tune_boxes
from .datasets import Dataset
from .density import density_variant, sampled_density_scores
from .errors import NumbaconcError, OptionError
from .neighbours import cached_knn, subset_fetch_k, subset_knn
from .regions import Region, ball_region, cube_region, halfspace_region
from .stages import stage
from .validation import check_alpha, check_choice, check_epsilon, check_float, check_int

PROTOCOLS = ("holdout", "paper")
# one-sided 95 %: the selection risk must clear alpha by this many standard
# deviations of (validation estimate - test estimate)
SELECTION_Z = 1.645


@dataclass
class FamilyFit:
    """What a family strategy returns: its regions (one per restart) and how
    it chose them; ``measure.Concentration`` evaluates them on every split."""

    family: str
    method: str
    metric: str
    params: dict
    regions: list
    tuning: dict | None = None
    timings: dict = field(default_factory=dict)
    frontier: dict | None = None


class Splits:
    """The protocol: which rows fit, which select, which only report.

    ``X_fit``, ``X_select`` and ``X_test`` are row views of the file
    (``numbaconc.datasets.RowView``: the holdout split is two sorted index
    arrays), never copies. ``progress`` is the callable the long stages
    report to (it may be replaced between queries). ``weights``: the
    label-uncertainty vectors (``numbaconc.lu.LabelWeights``), split like
    the rows into ``lu`` (set name -> LU vector or None).
    """

    def __init__(self, dataset: Dataset, *, protocol: str = "holdout",
                 val_fraction: float = 0.2, seed: int = 0, progress=None,
                 selection_z: float = SELECTION_Z, weights=None):
        check_choice(protocol, PROTOCOLS, "protocol")
        val_fraction = check_float(val_fraction, "val_fraction", low=0.0, high=1.0,
                                   low_open=True, high_open=True)
        self.ds = dataset
        self.protocol = protocol
        self.val_fraction = val_fraction
        self.seed = seed
        self.progress = progress
        self.selection_z = selection_z
        self.scale = dataset.scale
        train = dataset.train
        self.X_test = dataset.test.view()
        if len(self.X_test) == 0:
            raise NumbaconcError(f"{dataset.path}: the test set is empty")
        if protocol == "holdout":
            n = train.n_samples
            perm = np.random.default_rng(seed).permutation(n)
            n_val = int(round(val_fraction * n))
            if n_val < 1 or n - n_val < 2:
                raise NumbaconcError(f"training set of {n} rows is too small to hold out {val_fraction}")
            self.fit_rows = np.sort(perm[n_val:])
            self.val_rows = np.sort(perm[:n_val])
            del perm
            self.X_fit = train.view(self.fit_rows)
            self.X_select = train.view(self.val_rows)
            self.select_name = "validation"
        else:
            self.fit_rows = None
            self.val_rows = None
            self.X_fit = train.view()
            self.X_select = self.X_test
            self.select_name = "test"
        self.weights = weights
        self.lu = None
        if weights is not None:
            from .lu import split_weights

            self.lu = split_weights(weights, self.fit_rows, self.val_rows, protocol)

    @property
    def fit_lu(self):
        """(LU vector of the fitting rows, gamma), or (None, 0.0) without weights."""
        if self.lu is None:
            return None, 0.0
        return self.lu["train"], self.weights.gamma

    def selection_alpha(self, alpha: float) -> float:
        """The risk every choice must reach on the selection set.

        ``paper``: alpha itself (the 2019 code). ``holdout``: alpha plus 1.645
        standard deviations of the difference between the validation and the
        test estimates of a risk of alpha (two independent binomial samples):
        a region then passes the target yet shows a test risk below alpha with
        probability at most 5 % (12-13 % with a margin covering the
        validation sample alone). Only the test set's size is used, never its
        points.
        """
        if self.protocol == "paper":
            return alpha
        var = alpha * (1 - alpha) * (1.0 / len(self.X_select) + 1.0 / len(self.X_test))
        return alpha + self.selection_z * math.sqrt(var)

    def check_inputs(self, alpha: float, epsilon: float) -> None:
        """alpha, epsilon, and a selection target a region can reach: the
        families are handed the target, and their own messages would name it
        as if the user had typed it."""
        check_alpha(alpha)
        check_epsilon(epsilon)
        if self.selection_alpha(alpha) >= 1.0:
            raise NumbaconcError(f"alpha = {alpha:g} is too close to 1: the selection target "
                                 f"(alpha plus the holdout margin) is {self.selection_alpha(alpha):.4g}")

    def target_text(self, alpha: float) -> str:
        """The selection target in words, naming the user's alpha too (a
        failure message that says 0.021 when the user typed 0.01 explains
        nothing)."""
        target = self.selection_alpha(alpha)
        if self.protocol == "paper":
            return f"risk >= alpha = {alpha:g} on the {self.select_name} set"
        return (f"risk >= {target:.4g} on the {self.select_name} set (the selection target for "
                f"alpha = {alpha:g}: alpha plus the holdout margin)")

    @property
    def halfspace_margin(self):
        """Margin the half-space thresholds add on top of ``selection_alpha``:
        none under ``holdout`` (the selection target alone sets how much a
        region covers; with Prescott's margin too the region overshot alpha
        by both); ``paper`` keeps Prescott's 0.5 / sqrt(n) (None: the
        search's default). The balls' delta is the caller's: reproduce plans
        the paper's 0.25 on MNIST paper rows only, 0 under holdout."""
        return 0.0 if self.protocol == "holdout" else None

    def to_storage(self, epsilon: float) -> float:
        return float(epsilon) / self.scale

    @property
    def domain(self):
        """The data domain in storage units: pixel levels [0, 255] for uint8
        images; None for float data (e.g. the Gaussian ground-truth sets,
        which live in all of R^d)."""
        return (0.0, 255.0) if self.X_test.dtype == np.uint8 else None

    def figures(self, region: Region) -> dict:
        """The region's counts on the fitting, (validation) and test splits."""
        sets = {"train": self.X_fit, "test": self.X_test}
        if self.protocol == "holdout":
            sets["validation"] = self.X_select
        figures = {name: region.evaluate(X) for name, X in sets.items()}
        if self.lu is not None:  # each region's mean LU where the set has weights
            from .lu import add_region_lu

            add_region_lu(figures, region, sets, self.lu)
        return figures


class NeighbourLists:
    """All-pairs neighbour lists of the fitting set (each point included),
    searched once per metric on the whole training set (cached on disk by its
    content digest) and read off for the holdout subset, so both protocols
    share one search. ``tick(stage, start)`` records the time spent."""

    def __init__(self, splits: Splits, tick):
        self.splits = splits
        self.tick = tick
        self._lists: dict = {}

    def get(self, metric: str, k: int, *, exact_k: bool = True):
        """Exact-k lists are fetched at the length the holdout subset needs
        under either protocol, so a paper run and a holdout run share one
        search. ``exact_k=False``: any length >= 1 will do (the whole-set k
        is fetched and the subset gets the shortest filtered length)."""
        key = (metric, k, exact_k)
        if key not in self._lists:
            s = self.splits
            t0 = time.perf_counter()
            n = s.ds.train.n_samples
            k_full = k
            if exact_k:  # both protocols fetch what the holdout subset needs: one search
                k_full = subset_fetch_k(k, 1.0 - s.val_fraction, n)
            with stage(f"knn_{metric}", n=n, d=s.ds.train.n_features, k=k_full):
                result, _ = cached_knn(s.ds, k_full, metric=metric, split="train",
                                       include_self=True, progress=s.progress)
            if s.fit_rows is not None:
                result = subset_knn(result, s.fit_rows, s.X_fit, k if exact_k else None)
            elif result.k > k and exact_k:  # rows are sorted: the first k are the k nearest
                result = result.head(k)
            self._lists[key] = result
            self.tick(f"knn_{metric}", t0)
        return self._lists[key]


class Family:
    """A region family fitted under one protocol: ``fit(alpha=, epsilon=,
    **options)`` returns a ``FamilyFit``; each family's options (and any
    per-point weight a family takes) enter through its ``fit``."""

    name = ""

    def __init__(self, splits: Splits, lists: NeighbourLists | None = None):
        self.splits = splits
        self.lists = lists

    def fit(self, *, alpha, epsilon, **options) -> FamilyFit:
        raise NotImplementedError


class BoxesFamily(Family):
    """Complement of T boxes (l-inf), the paper's Algorithm 1."""

    name = "boxes"

    def __init__(self, splits: Splits, lists: NeighbourLists):
        super().__init__(splits, lists)
        self._models: dict = {}
        self._scores: dict = {}

    def fit(self, *, alpha, epsilon, clusters=None, q=None, box="symmetric", repeats=1,
            t_grid=DEFAULT_T_GRID, density_k=DENSITY_K, max_iter=30, domain=None,
            density_sample=None) -> FamilyFit:
        """Fixed (T, q); or T fixed and q searched; or both tuned over
        ``t_grid`` (selection set decides).

        ``density_sample``: the density score (numbaconc.density): None or
        "auto" (exact up to ``density.EXACT_MAX_ROWS`` fitting rows, else a
        reference sample), "exact", or a sample of that many fitting rows.

        ``domain``: count E_eps within the data domain (faces whose grown copy
        lies outside the pixel range [0, 255] bind nothing; see
        numbaconc.coverage). None = the protocol's default: on under
        ``holdout`` for uint8 images, off under ``paper`` (the 2019 count,
        for reproduction) and for float data.
        """
        s = self.splits
        s.check_inputs(alpha, epsilon)
        if domain and s.domain is None:
            raise OptionError("counting within the data domain needs uint8 images "
                              f"(this dataset is {s.X_test.dtype}): use {{off}}", off="domain=False")
        if domain is None:
            domain = s.protocol == "holdout" and s.domain is not None
        box_domain = s.domain if domain else None
        if q is not None and not 0.0 < q < 1.0 + 1e-12:
            raise NumbaconcError(f"q must be in (0, 1], got {q}")
        if q is not None and clusters is None:
            raise OptionError("{q} needs {clusters} (or use {tune})", q="q", clusters="clusters",
                              tune="tune=True")
        eps = s.to_storage(epsilon)
        density = density_variant(len(s.X_fit), density_k, density_sample, s.seed)
        model = self._model(box, density, max_iter)
        timings = {}
        t0 = time.perf_counter()
        tuning = None
        if clusters is not None and q is not None:
            chosen_t, chosen_q = int(clusters), float(q)
        elif clusters is not None:
            found = search_q(model, s.X_select, n_clusters=int(clusters),
                             alpha=s.selection_alpha(alpha), epsilon=eps, seed=s.seed,
                             domain=box_domain)
            if found["q"] is None:
                raise NumbaconcError(f"no q reached {s.target_text(alpha)} with T={clusters}")
            chosen_t, chosen_q, tuning = int(clusters), found["q"], dict(table=[found])
        else:
            tuning = tune_boxes(model, s.X_select, alpha=s.selection_alpha(alpha),
                                epsilon=eps, seed=s.seed, t_grid=t_grid, domain=box_domain,
                                target_text=s.target_text(alpha))
            chosen_t, chosen_q = tuning["n_clusters"], tuning["q"]
        timings["tune"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.prefit([(chosen_t, chosen_q, s.seed + r) for r in range(repeats)])  # cluster: tasks
        regions = [model.region(chosen_t, chosen_q, s.seed + r, eps, box_domain)
                   for r in range(repeats)]
        timings["fit"] = time.perf_counter() - t0
        params = dict(clusters=chosen_t, q=chosen_q, box=box, repeats=repeats, seed=s.seed,
                      density_k=density_k, kmeans_metric="l1", max_iter=max_iter,
                      tuned=tuning is not None, domain=bool(domain), density=density)
        if tuning is not None:
            tuning = dict(selection=s.select_name, risk_target=s.selection_alpha(alpha),
                          table=[{k: v for k, v in row.items() if k != "trace"}
                                 for row in tuning["table"]])
        return FamilyFit("boxes", "boxes", "linf", params, regions, tuning, timings)

    def _model(self, box, density, max_iter) -> BoxesModel:
        key = (box, max_iter) + self._density_key(density)
        if key not in self._models:
            self._models[key] = BoxesModel(self.splits.X_fit, self._density(density),
                                           self.splits.scale, shape=box, max_iter=max_iter)
        return self._models[key]

    @staticmethod
    def _density_key(density) -> tuple:
        return (density["k"], density["variant"], density.get("sample_rows"))

    def _density(self, density) -> np.ndarray:
        """The density score of every fitting row (``density_variant``'s
        choice), computed once per variant for every box shape."""
        key = self._density_key(density)
        if key not in self._scores:
            k = density["k"]
            if density["variant"] == "exact":
                scores = self.lists.get("l1", k).distance_column(k - 1)
            else:
                s = self.splits
                t0 = time.perf_counter()
                with stage("density_sample", n=len(s.X_fit), m=density["sample_rows"],
                           k=density["k_sample"]):
                    scores = sampled_density_scores(s.X_fit, k, density["sample_rows"],
                                                    seed=density["seed"], progress=s.progress)
                self.lists.tick("knn_l1_sample", t0)
            self._scores[key] = scores
        return self._scores[key]


# the greedy balls: T of the 2019 code for MNIST l2, and the grid tuned over by default
GREEDY_T = 20
DEFAULT_BALLS_T_GRID = (10, 20, 40)
# the balls' coverage search: raised at most this many sd (of a selection-split risk
# at the target) above the target, bisected down to this many sd
COVERAGE_SEARCH_SD = 6.0
COVERAGE_TOL_SD = 0.25
TUNING_RULE = ("per T: the greedy at the selection target; where its selection risk misses the "
               "target, the fewest points to cover that reach it (bisection); then the T with the "
               "lowest selection adversarial risk among those that reach it (ties: smaller T)")


def check_t_grid(t_grid) -> list:
    """A T grid: distinct integers >= 1, sorted."""
    try:
        values = list(t_grid)
    except TypeError:
        raise NumbaconcError(f"t_grid must be a sequence of integers, got {t_grid!r}") from None
    if not values:
        raise NumbaconcError("t_grid is empty")
    return sorted({check_int(t, "each T of t_grid", low=1) for t in values})


def search_coverage(evaluate, n_first: int, *, target: float, n_fit: int, n_select: int) -> dict:
    """The fewest fitting points to cover whose region reaches ``target`` on
    the selection split, starting from ``n_first`` (the greedy at the target).

    ``evaluate(n)`` fits the greedy covering n fitting points and returns its
    selection figures (dict with ``risk`` and ``adv_risk``). If the first fit
    reaches the target it is kept. Otherwise n grows from n_first by the
    shortfall (the selection risk's deficit times n_fit), doubling the step,
    up to ``COVERAGE_SEARCH_SD`` sd above the target; then bisection between
    the last miss and the first hit down to ``COVERAGE_TOL_SD`` sd (in fitting
    points). Like the boxes' q search, it assumes the selection risk rises
    with the coverage (up to the greedy's noise) and returns the smallest n
    found to reach the target. ``n_target_fit`` is None when none does.
    """
    sd = math.sqrt(target * (1.0 - target) / n_select)
    tol = max(1, math.ceil(COVERAGE_TOL_SD * sd * n_fit))
    n_max = min(n_fit, max(n_first, math.ceil((target + COVERAGE_SEARCH_SD * sd) * n_fit)))
    trace = []

    def at(n):
        figures = evaluate(n)
        trace.append(dict(n_target_fit=int(n), **figures))
        return figures

    best = at(n_first)
    if best["risk"] >= target:
        return dict(n_target_fit=int(n_first), **best, trace=trace)
    lo, hi = n_first, None
    step = max(tol, math.ceil((target - best["risk"]) * n_fit))
    while lo < n_max:
        n = min(lo + step, n_max)
        figures = at(n)
        if figures["risk"] >= target:
            hi, best = n, figures
            break
        lo, step = n, 2 * step
    if hi is None:
        return dict(n_target_fit=None, covered_fit=None, balls_used=None, risk=None,
                    adv_risk=None, trace=trace)
    while hi - lo > tol:
        mid = (lo + hi) // 2
        figures = at(mid)
        if figures["risk"] >= target:
            hi, best = mid, figures
        else:
            lo = mid
    return dict(n_target_fit=int(hi), **best, trace=trace)


class BallsFamily(Family):
    """Union of T balls placed greedily (l2), the paper's Algorithm 2. With
    label weights, every ball meets the LU constraint (numbaconc.lu).

    One T (``clusters``, default ``GREEDY_T``) covering the selection target
    of the fitting split, as the paper rows do; or ``t_grid``: T and the
    coverage tuned on the selection split (``_tune``)."""

    name = "balls"
    metric = "l2"

    def __init__(self, splits: Splits, lists: NeighbourLists):
        super().__init__(splits, lists)
        self._fits: dict = {}  # (T, points to cover, eps, delta, list length) -> BallsFit

    def fit(self, *, alpha, epsilon, clusters=None, delta=0.0, n_neighbors=None,
            t_grid=None, candidates=None) -> FamilyFit:
        """``candidates``: M = centres drawn as a seeded (``seed``) uniform
        sample of M fitting rows, each still evaluated exactly against every
        fitting point (its own M x K lists); None or M >= n: every row."""
        from .balls import candidate_list_length, sample_candidates

        s = self.splits
        s.check_inputs(alpha, epsilon)
        delta = check_float(delta, "delta", low=0.0)
        if clusters is not None and t_grid is not None:
            raise OptionError("give {clusters} or {t_grid} (tuned on the selection split), "
                              "not both", clusters="clusters", t_grid="t_grid")
        grid = None if t_grid is None else check_t_grid(t_grid)
        # the paper used 2*ceil(alpha*n) neighbours; longer lists cost little in the kNN step
        # and leave far fewer candidates for the exact fallback (bench/RESULTS-balls.md).
        # Any length gives the same balls: the holdout subset takes what the
        # whole training set's lists hold for it (the paper protocol's search, shared).
        n = s.ds.train.n_samples
        k = n_neighbors or min(n, max(2 * math.ceil(alpha * n * (1 + delta)), 2000))
        rows = None if candidates is None else sample_candidates(len(s.X_fit), candidates, s.seed)
        if rows is None:
            knn = self.lists.get(self.metric, k, exact_k=False)
            list_k = knn.k
        else:  # lists of the sampled centres only, computed in fit_balls
            knn, list_k = None, min(len(s.X_fit), candidate_list_length(k, len(rows)))
        lists = (knn, list_k, rows)
        eps = s.to_storage(epsilon)
        t0 = time.perf_counter()
        timings, tuning = {}, None
        if grid is None:
            n_balls = GREEDY_T if clusters is None else check_int(clusters, "clusters", low=1)
            fit = self._fit(n_balls, None, alpha, eps, delta, lists)
        else:
            n_balls, n_target, tuning = self._tune(grid, alpha, eps, delta, lists)
            timings["tune"] = time.perf_counter() - t0
            fit = self._fit(n_balls, n_target, alpha, eps, delta, lists)
        timings["fit"] = time.perf_counter() - t0
        region = self._region(fit.centers, fit.radii_sq, epsilon=eps, scale=s.scale,
                              meta=dict(n_balls=n_balls, delta=delta))
        params = dict(clusters=n_balls, balls_used=int(len(fit.radii)), delta=delta,
                      n_neighbors=int(list_k),
                      candidates="all" if rows is None else int(len(rows)))
        if tuning is not None:
            params.update(t_grid=list(grid), tuned=True, n_target_fit=tuning["n_target_fit"],
                          coverage_fit=float(fit.covered.mean()))
        lu, gamma = s.fit_lu
        if lu is not None:
            from .lu import greedy_lu_params

            params.update(greedy_lu_params(fit, lu, gamma))
        t0 = time.perf_counter()  # the greedy's prefixes (LU-constrained with it)
        frontier = self._frontier(fit, alpha, eps)
        timings["frontier"] = time.perf_counter() - t0
        return FamilyFit(self.name, self.name, self.metric, params, [region], tuning=tuning,
                         timings=timings, frontier=frontier)

    def _fit(self, n_balls, n_target, alpha, eps, delta, lists):
        """The greedy on the fitting split (memoised), covering ``n_target``
        points; None: the selection target times (1 + delta) (``paper``: alpha
        itself, the 2019 code), the one rule of every untuned row."""
        from .balls import fit_balls

        s = self.splits
        knn, list_k, rows = lists
        key = (n_balls, n_target, float(eps), float(delta), int(list_k),
               None if rows is None else len(rows))
        if key not in self._fits:
            # like the half-space thresholds, the coverage aims at the selection
            # target, so that under holdout the balls can pass it on the validation split
            level, extra = s.selection_alpha(alpha), delta
            if n_target is not None:  # ceil(n_target / n * n - 1e-9) is n_target itself
                level, extra = n_target / len(s.X_fit), 0.0
            lu, gamma = s.fit_lu
            self._fits[key] = fit_balls(s.X_fit, level, eps, int(n_balls), delta=extra,
                                        neighbors=knn, n_neighbors=list_k,
                                        progress=s.progress, metric=self.metric,
                                        lu=lu, gamma=gamma, candidates=rows)
        return self._fits[key]

    def _select_figures(self, fit, eps) -> dict:
        """A fit's coverage of the fitting split and figures on the selection split."""
        region = self._region(fit.centers, fit.radii_sq, epsilon=eps, scale=self.splits.scale,
                              meta={})
        figures = region.evaluate(self.splits.X_select)
        return dict(covered_fit=int(fit.covered.sum()), balls_used=int(len(fit.radii)),
                    risk=float(figures["risk"]), adv_risk=float(figures["adv_risk"]))

    def _tune(self, grid, alpha, eps, delta, lists):
        """(T, points to cover or None, tuning record). For every T of the
        grid: the greedy at the selection target (times 1 + delta); where its
        selection-split risk misses the target, the coverage is raised
        (``search_coverage``). The T with the lowest selection-split
        adversarial risk among those that reach the target wins (ties: the
        smaller T). Reads the fitting and selection splits only."""
        from .balls import _target

        s = self.splits
        target = s.selection_alpha(alpha)
        n_fit = len(s.X_fit)
        n_first = _target(target, delta, n_fit)
        table = []
        for n_balls in grid:
            def evaluate(n_target, T=n_balls):
                fit = self._fit(T, None if n_target == n_first else n_target, alpha, eps, delta,
                                lists)
                return self._select_figures(fit, eps)

            found = search_coverage(evaluate, n_first, target=target, n_fit=n_fit,
                                    n_select=len(s.X_select))
            table.append(dict(n_clusters=int(n_balls), **found))
        feasible = [row for row in table if row["n_target_fit"] is not None]
        if not feasible:
            raise NumbaconcError(f"no T in {tuple(grid)} reached {s.target_text(alpha)}, even "
                                 f"with the coverage raised by {COVERAGE_SEARCH_SD:g} sd")
        best = min(feasible, key=lambda row: (row["adv_risk"], row["n_clusters"]))
        n_target = best["n_target_fit"]
        tuning = dict(selection=s.select_name, risk_target=target, t_grid=list(grid),
                      n_clusters=best["n_clusters"], n_target_fit=n_target,
                      n_target_first=n_first, rule=TUNING_RULE, table=table)
        return best["n_clusters"], None if n_target == n_first else n_target, tuning

    @staticmethod
    def _region(centers, radii_sq, **kwargs):
        return ball_region(centers, radii_sq, **kwargs)

    def _frontier(self, fit, alpha, eps) -> dict:
        """The fitted balls' prefixes (the last ball's radius running on past
        its fit), fixed by the fitting split, read at test risk alpha; under
        the LU constraint only the prefixes that keep it."""
        from .frontier import ball_prefix_frontier, read_frontier, unread

        s = self.splits
        lu = _lu_pair(s)
        one = self.name[:-1]
        out = dict(parameter=f"coverage (prefix of the greedy {self.name}, last {one}'s radius)",
                   fixed_by=f"fitting split (the row's own {self.name})")
        if lu is not None:
            out["fixed_by"] += (f"; LU: {one} t's partial radii only where the fitting points it "
                                f"newly covers keep mean LU >= gamma = {s.weights.gamma:g}, so "
                                "every member's fitting-set mean LU >= gamma")
        if not len(fit.radii_sq):
            return dict(unread(f"the greedy placed no {one} ({fit.stopped})"), **out,
                        fit_risk_range=None)
        counts = ball_prefix_frontier(s.X_fit, s.X_test, fit.centers, fit.radii_sq, eps, alpha,
                                      metric=self.metric, lu=lu)
        if lu is not None:
            out["lu"] = dict(gamma=s.weights.gamma, partial_radii_dropped=counts["lu_dropped"],
                             fit_risk_max=counts["fit_risk_max"])
        return dict(read_frontier(counts, alpha), **out, fit_risk_range=counts["fit_risk_range"])


def _lu_pair(splits):
    """(int64 LU weights of the fitting rows, integer threshold) or None (numbaconc.lu)."""
    if splits.lu is None:
        return None
    from .lu import lu_threshold, lu_weights

    return (lu_weights(splits.lu["train"], len(splits.X_fit)), lu_threshold(splits.weights.gamma))


class CubesFamily(BallsFamily):
    """Union of T l-inf balls (cubes, Zhang and Evans 2022) placed greedily:
    the balls' greedy under the l-inf metric (``radii_sq`` holds the radii)."""

    name = "cubes"
    metric = "linf"

    @staticmethod
    def _region(centers, radii, **kwargs):
        return cube_region(centers, radii, **kwargs)


class HalfSpaceFamily(Family):
    """Half-spaces: ``pca`` (top principal component, Gilmer et al.) or
    ``search`` (Prescott et al. direction search), one search per epsilon grid."""

    name = "halfspace"

    def __init__(self, splits: Splits):
        super().__init__(splits)
        self._eps_plan: dict = {}     # (metric, alpha) -> epsilons that will be asked for
        self._fits: dict = {}         # (metric, alpha, method, n_components, epsilon) -> fit
        self._projections: dict = {}  # direction -> (fit, test) projections

    def expect(self, metric: str, alpha: float, epsilons) -> None:
        """The epsilons that will be asked for at (metric, alpha): the search
        then fits the whole grid in one pass (directions, projections and
        thresholds do not depend on epsilon)."""
        self._eps_plan.setdefault((metric, float(alpha)), set()).update(float(e) for e in epsilons)

    def fit(self, *, alpha, epsilon, metric, method="search", n_components=None) -> FamilyFit:
        from .halfspace import fit_halfspace_curve

        s = self.splits
        s.check_inputs(alpha, epsilon)
        base = (metric, float(alpha), method, n_components)
        if base + (float(epsilon),) not in self._fits:
            grid = {float(epsilon)}
            if method == "search":  # the pca baseline is one direction: nothing to share
                grid |= self._eps_plan.get((metric, float(alpha)), set())
            grid = sorted(e for e in grid if base + (e,) not in self._fits)
            t0 = time.perf_counter()
            select = s.X_select if s.protocol == "holdout" else None
            # thresholds and the validation constraint both aim at the selection
            # target, and under holdout that target is the only margin (no
            # Prescott 0.5/sqrt(n) on top: two stacked margins overshoot alpha);
            # ``paper`` keeps Prescott's margin (None = the search's default)
            fits = fit_halfspace_curve(s.X_fit, s.selection_alpha(alpha),
                                       [s.to_storage(e) for e in grid], metric=metric,
                                       method=method, n_components=n_components,
                                       margin=s.halfspace_margin,
                                       X_select=select, progress=s.progress,
                                       lu=self._lu_weights())
            share = (time.perf_counter() - t0) / len(grid)
            for e, f in zip(grid, fits):
                self._fits[base + (e,)] = (f, share, len(grid))
        fit, share, n_shared = self._fits[base + (float(epsilon),)]
        # one search served n_shared epsilons: each row carries its share of the time
        timings = dict(fit=share)
        region = halfspace_region(fit.w, fit.b, metric=metric, epsilon=s.to_storage(epsilon),
                                  scale=s.scale,
                                  meta=dict(method=method, component=fit.component, power=fit.power))
        params = dict(method=method, component=int(fit.component), power=float(fit.power),
                      n_components=n_components, threshold_alpha=float(fit.alpha_fit),
                      search_shared_by_epsilons=n_shared)
        family = "pca" if method == "pca" else "halfspace"
        t0 = time.perf_counter()  # its thresholds keep the LU constraint when there is one
        frontier = self._frontier(base, fit, alpha)
        timings["frontier"] = time.perf_counter() - t0
        return FamilyFit(family, family, metric, params, [region], timings=timings,
                         frontier=frontier)

    def _lu_weights(self):
        """(int64 weights of the fitting rows, integer threshold) or None."""
        return _lu_pair(self.splits)

    def _frontier(self, base, fit, alpha) -> dict:
        """The fitted direction's thresholds at fitting-set ranks from a risk
        below to above alpha (fixed without the test set), read at test risk
        alpha (numbaconc.frontier); under the LU constraint only thresholds
        whose fitting-set region keeps it."""
        from .frontier import member_ranks, read_frontier, threshold_frontier
        from .halfspace import project_rows

        s = self.splits
        key = base + (fit.component, fit.power, fit.side)
        if key not in self._projections:  # one direction serves every epsilon of a grid
            self._projections[key] = (project_rows(s.X_fit, fit.w), project_rows(s.X_test, fit.w))
        p_fit, p_test = self._projections[key]
        lu = self._lu_weights()
        counts = threshold_frontier(p_fit, p_test, fit.shift, member_ranks(alpha, len(p_fit), len(p_test)),
                                    lu=lu)
        out = read_frontier(counts, alpha)
        ranks = counts["ranks"]
        out.update(parameter="threshold", fixed_by="fitting split (direction chosen as the row's)",
                   fit_risk_range=[float(ranks[0] / len(p_fit)), float(ranks[-1] / len(p_fit))]
                   if len(ranks) else None)
        if lu is not None:
            out["fixed_by"] += (f"; LU: only thresholds whose fitting-set region keeps mean LU >= "
                                f"gamma = {s.weights.gamma:g}")
            out["lu"] = dict(gamma=s.weights.gamma, thresholds_dropped=counts["lu_dropped"])
        return out
