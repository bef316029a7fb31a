"""Measure concentration: fit an error-region family, report risk and
adversarial risk on the fitting, selection and test sets.

Two protocols, named in every output:

- ``holdout`` (default): a seeded validation split is carved from the training
  set. Regions are fitted on the rest, every choice (q, T, the winning
  direction, the winning family) is made on the validation split, and the test
  set is touched only to report.
- ``paper``: the 2019 protocol, kept for reproduction. Regions are fitted on
  the whole training set and the boxes' (T, q) and the best family are chosen
  by looking at the test set (which leaks; half-space directions are chosen on
  the training set as Prescott et al. do).

All figures are fractions. Test figures carry 95 % Clopper-Pearson intervals
(test sampling error only; with restarts, the spread over restarts is the std).
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, field

import numpy as np

from . import __version__
from .boxes import DEFAULT_T_GRID, DENSITY_K, BoxesModel, search_q, tune_boxes
from .datasets import Dataset
from .errors import NumbaconcError
from .knn import cached_knn, subset_fetch_k, subset_knn
from .regions import Region, ball_region, halfspace_region
from .stats import clopper_pearson

PROTOCOLS = ("holdout", "paper")
METHODS = ("boxes", "balls", "cubes", "halfspace", "pca", "best")
FAMILIES = {"linf": ("boxes", "halfspace"), "l2": ("balls", "halfspace")}
FAMILY_METRIC = {"boxes": "linf", "balls": "l2", "cubes": "linf"}
FAMILY_LABEL = {"boxes": "l-inf", "balls": "l2", "cubes": "l-inf"}
METHOD_OPTIONS = {
    "boxes": ("clusters", "q", "box", "repeats", "t_grid", "density_k", "domain"),
    "balls": ("clusters", "delta", "n_neighbors"),
    "cubes": ("clusters", "delta", "n_neighbors"),
    "halfspace": ("n_components",),
    "pca": (),
}
# one-sided 95 %: the selection risk must clear alpha by this many standard
# deviations of (validation estimate - test estimate)
SELECTION_Z = 1.645
METRIC_NAMES = {"linf": "linf", "l-inf": "linf", "inf": "linf", "chebyshev": "linf",
                "l2": "l2", "euclidean": "l2"}


def versions() -> dict:
    import numba

    return dict(numbaconc=__version__, numba=numba.__version__, numpy=np.__version__,
                python=platform.python_version(), machine=platform.machine(),
                processor=_cpu_name())


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@dataclass
class Estimate:
    """One family's result: figures per set (mean over restarts), the region
    of the first restart, and everything needed to reproduce it."""

    family: str
    method: str
    metric: str
    alpha: float
    epsilon: float                     # [0, 1] units
    protocol: str
    params: dict
    region: Region
    figures: dict                      # set name -> dict(risk, adv_risk, ...)
    repeats: list = field(default_factory=list)
    tuning: dict | None = None
    timings: dict = field(default_factory=dict)
    frontier: dict | None = None       # how test.adv_risk_at_alpha was read (numbaconc.frontier)

    @property
    def valid(self) -> bool:
        """The headline (test adversarial risk) counts only if test risk >= alpha."""
        return self.figures["test"]["risk"] >= self.alpha

    def to_dict(self) -> dict:
        out = dict(family=self.family, method=self.method, metric=self.metric, alpha=self.alpha,
                   epsilon=self.epsilon, protocol=self.protocol, params=self.params,
                   exact_expansion=self.region.exact, valid=self.valid,
                   region=self.region.summary(), timings=self.timings)
        out.update(self.figures)
        if len(self.repeats) > 1:
            out["repeats"] = self.repeats
        if self.tuning is not None:
            out["tuning"] = self.tuning
        if self.frontier is not None:
            out["frontier"] = self.frontier
        return out


class Concentration:
    """One dataset under one protocol: holds the splits and every cache
    (neighbour lists, k-means fits), so many (family, alpha, epsilon) queries
    share the expensive steps.

    ``X_fit``, ``X_select`` and ``X_test`` are row views of the file
    (``numbaconc.datasets.RowView``: the holdout split is two sorted index
    arrays), never copies. Half-spaces, every evaluation and the box coverage
    read them in blocks sized by the memory budget. Where a stage needs a
    dense array it materialises only its own subset: the boxes' k-means and
    box fit the dense set D (floor(q * n) rows), the balls the fitting set
    (in ``fit_balls``).
    """

    def __init__(self, dataset: Dataset, *, protocol: str = "holdout",
                 val_fraction: float = 0.2, seed: int = 0, progress=None,
                 selection_z: float = SELECTION_Z, weights=None):
        if protocol not in PROTOCOLS:
            raise NumbaconcError(f"unknown protocol {protocol!r} (holdout or paper)")
        if not 0.0 < val_fraction < 1.0:
            raise NumbaconcError(f"validation fraction must be in (0, 1), got {val_fraction}")
        self.ds = dataset
        self.protocol = protocol
        self.val_fraction = val_fraction
        self.seed = seed
        self.progress = progress
        self.selection_z = selection_z
        self.scale = dataset.scale
        # row views, not copies (see the class docstring)
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
        # label uncertainty (numbaconc.lu.LabelWeights): per-set LU vectors
        self.weights = weights
        self.lu = None
        self.lu_failures: dict = {}  # family -> why it has no region under the constraint
        if weights is not None:
            from .lu import split_weights

            self.lu = split_weights(weights, self.fit_rows, self.val_rows, protocol)
        self._boxes: dict = {}
        self._knn: dict = {}
        self._runs: dict = {}
        self._eps_plan: dict = {}    # (metric, alpha) -> epsilons that will be asked for
        self._halfspace: dict = {}   # (metric, alpha, method, n_components, epsilon) -> fit
        self._projections: dict = {}  # half-space direction -> (fit, test) projections
        self.timings: dict = {}

    # ------------------------------------------------------------ helpers
    def _tick(self, stage: str, start: float):
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start

    def neighbours(self, metric: str, k: int, *, exact_k: bool = True):
        """All-pairs neighbour lists of the fitting set (each point included).

        Always searched on the whole training set (cached on disk by its
        checksum): under ``holdout`` the fitting subset's lists are read off
        longer whole-set lists, so both protocols share one search.
        Exact-k lists are fetched at the length the holdout subset needs under
        either protocol, so a paper run and a holdout run share one search.
        ``exact_k=False``: any length >= 1 will do (the whole-set k is fetched
        and the subset gets the shortest filtered length).
        """
        key = (metric, k, exact_k)
        if key not in self._knn:
            t0 = time.perf_counter()
            n = self.ds.train.n_samples
            k_full = k
            if exact_k:  # both protocols fetch what the holdout subset needs: one search
                k_full = subset_fetch_k(k, 1.0 - self.val_fraction, n)
            result, _ = cached_knn(self.ds, k_full, metric=metric, split="train",
                                   include_self=True, progress=self.progress)
            if self.fit_rows is not None:
                result = subset_knn(result, self.fit_rows, self.X_fit, k if exact_k else None)
            elif result.k > k and exact_k:  # rows are sorted: the first k are the k nearest
                result = result.head(k)
            self._knn[key] = result
            self._tick(f"knn_{metric}", t0)
        return self._knn[key]

    def expect_epsilons(self, metric: str, alpha: float, epsilons) -> None:
        """Announce the epsilon grid that will be asked for at (metric, alpha):
        the half-space search then fits the whole grid in one pass (directions,
        projections and thresholds do not depend on epsilon)."""
        key = (canonical_metric(metric), float(alpha))
        self._eps_plan.setdefault(key, set()).update(float(e) for e in epsilons)

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

    def _check_inputs(self, alpha: float, epsilon: float) -> None:
        """alpha, epsilon, and a selection target a region can reach: the
        families are handed the target, and their own messages would name it
        as if the user had typed it."""
        _check_alpha_eps(alpha, epsilon)
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

    def _figures(self, region: Region) -> dict:
        sets = {"train": self.X_fit, "test": self.X_test}
        if self.protocol == "holdout":
            sets["validation"] = self.X_select
        figures = {name: region.evaluate(X) for name, X in sets.items()}
        if self.lu is not None:  # each region's mean LU where the set has weights
            from .lu import add_region_lu

            add_region_lu(figures, region, sets, self.lu)
        return figures

    def _estimate(self, family, method, metric, alpha, epsilon, params, regions, tuning=None,
                  timings=None, frontier=None) -> Estimate:
        """``frontier``: a ``read_at_alpha`` result (plus the frontier's own
        description) whose reading joins the test figures."""
        t0 = time.perf_counter()
        per_repeat = [self._figures(r) for r in regions]
        self._tick("evaluate", t0)
        figures = {}
        for name in per_repeat[0]:
            rows = [f[name] for f in per_repeat]
            risk = np.array([r["risk"] for r in rows])
            adv = np.array([r["adv_risk"] for r in rows])
            n = rows[0]["n"]
            fig = dict(n=n, risk=float(risk.mean()), adv_risk=float(adv.mean()))
            if "mean_lu" in rows[0]:  # label uncertainty (numbaconc.lu)
                fig["mean_lu"] = float(np.mean([r["mean_lu"] for r in rows]))
            if len(rows) > 1:
                fig.update(risk_std=float(risk.std()), adv_risk_std=float(adv.std()))
            if name == "test":
                fig["risk_ci"] = list(clopper_pearson(int(round(fig["risk"] * n)), n))
                fig["adv_risk_ci"] = list(clopper_pearson(int(round(fig["adv_risk"] * n)), n))
            figures[name] = fig
        repeats = [{name: dict(risk=f[name]["risk"], adv_risk=f[name]["adv_risk"]) for name in f}
                   for f in per_repeat]
        if frontier is not None:
            frontier = dict(frontier)
            figures["test"]["adv_risk_at_alpha"] = frontier.pop("adv_risk_at_alpha")
            figures["test"]["adv_risk_at_alpha_ci"] = frontier.pop("adv_risk_at_alpha_ci")
        return Estimate(family=family, method=method, metric=metric, alpha=alpha, epsilon=epsilon,
                        protocol=self.protocol, params=params, region=regions[0], figures=figures,
                        repeats=repeats, tuning=tuning, timings=dict(timings or {}),
                        frontier=frontier)

    # ------------------------------------------------------------ families
    @property
    def domain(self):
        """The data domain in storage units: pixel levels [0, 255] for uint8
        images; None for float data (e.g. the Gaussian ground-truth sets,
        which live in all of R^d)."""
        return (0.0, 255.0) if self.X_test.dtype == np.uint8 else None

    def boxes(self, *, alpha, epsilon, clusters=None, q=None, box="symmetric", repeats=1,
              t_grid=DEFAULT_T_GRID, density_k=DENSITY_K, max_iter=30, domain=None) -> Estimate:
        """Complement of T boxes (l-inf). Fixed (T, q); or T fixed and q searched;
        or both tuned over ``t_grid`` (selection set decides).

        ``domain``: count E_eps within the data domain (faces whose grown copy
        lies outside the pixel range [0, 255] bind nothing; see
        numbaconc.boxes_coverage). None = the protocol's default: on under
        ``holdout`` for uint8 images, off under ``paper`` (the 2019 count,
        for reproduction) and for float data.
        """
        self._check_inputs(alpha, epsilon)
        if domain and self.domain is None:
            raise NumbaconcError("counting within the data domain needs uint8 images "
                                 f"(this dataset is {self.X_test.dtype}): use --no-domain")
        if domain is None:
            domain = self.protocol == "holdout" and self.domain is not None
        box_domain = self.domain if domain else None
        if q is not None and not 0.0 < q < 1.0 + 1e-12:
            raise NumbaconcError(f"q must be in (0, 1], got {q}")
        if q is not None and clusters is None:
            raise NumbaconcError("--q needs --clusters (or use --tune)")
        eps = self.to_storage(epsilon)
        model = self._boxes_model(box, density_k, max_iter)
        timings = {}
        t0 = time.perf_counter()
        tuning = None
        if clusters is not None and q is not None:
            chosen_t, chosen_q = int(clusters), float(q)
        elif clusters is not None:
            found = search_q(model, self.X_select, n_clusters=int(clusters),
                             alpha=self.selection_alpha(alpha), epsilon=eps, seed=self.seed,
                             domain=box_domain)
            if found["q"] is None:
                raise NumbaconcError(f"no q reached {self.target_text(alpha)} with T={clusters}")
            chosen_t, chosen_q, tuning = int(clusters), found["q"], dict(table=[found])
        else:
            tuning = tune_boxes(model, self.X_select, alpha=self.selection_alpha(alpha),
                                epsilon=eps, seed=self.seed, t_grid=t_grid, domain=box_domain,
                                target_text=self.target_text(alpha))
            chosen_t, chosen_q = tuning["n_clusters"], tuning["q"]
        timings["tune"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        regions = [model.region(chosen_t, chosen_q, self.seed + r, eps, box_domain)
                   for r in range(repeats)]
        timings["fit"] = time.perf_counter() - t0
        params = dict(clusters=chosen_t, q=chosen_q, box=box, repeats=repeats, seed=self.seed,
                      density_k=density_k, kmeans_metric="l1", max_iter=max_iter,
                      tuned=tuning is not None, domain=bool(domain))
        if tuning is not None:
            tuning = dict(selection=self.select_name, risk_target=self.selection_alpha(alpha),
                          table=[{k: v for k, v in row.items() if k != "trace"}
                                 for row in tuning["table"]])
        return self._estimate("boxes", "boxes", "linf", alpha, epsilon, params, regions, tuning,
                              timings)

    def _boxes_model(self, box, density_k, max_iter) -> BoxesModel:
        key = (box, density_k, max_iter)
        if key not in self._boxes:
            if density_k >= len(self.X_fit):
                raise NumbaconcError(f"density k={density_k} needs more than {len(self.X_fit)} points")
            scores = self.neighbours("l1", density_k).distance_column(density_k - 1)
            self._boxes[key] = BoxesModel(self.X_fit, scores, self.scale, shape=box,
                                          max_iter=max_iter)
        return self._boxes[key]

    def balls(self, *, alpha, epsilon, clusters=20, delta=0.0, n_neighbors=None,
              metric="l2") -> Estimate:
        """Union of T balls placed greedily (l2), the paper's Algorithm 2;
        ``metric="linf"``: cubes (l-inf balls, Zhang and Evans 2022). With
        label weights, every ball meets the LU constraint (numbaconc.lu)."""
        from .balls import fit_balls
        from .regions import cube_region

        self._check_inputs(alpha, epsilon)
        if delta < 0:
            raise NumbaconcError(f"delta must be >= 0, got {delta}")
        # the paper used 2*ceil(alpha*n) neighbours; longer lists cost little in the kNN step
        # and leave far fewer candidates for the exact fallback (bench/RESULTS-balls.md).
        # Any length gives the same balls: the holdout subset takes what the
        # whole training set's lists hold for it (the paper protocol's search, shared).
        n = self.ds.train.n_samples
        k = n_neighbors or min(n, max(2 * math.ceil(alpha * n * (1 + delta)), 2000))
        knn = self.neighbours(metric, k, exact_k=False)
        t0 = time.perf_counter()
        # like the half-space thresholds, the coverage aims at the selection
        # target, so that under holdout the balls can pass it on the validation
        # split (``paper``: the target is alpha itself, the 2019 code)
        lu = self.lu["train"] if self.lu is not None else None
        gamma = self.weights.gamma if self.lu is not None else 0.0
        fit = fit_balls(self.X_fit, self.selection_alpha(alpha), self.to_storage(epsilon),
                        int(clusters), delta=delta, neighbors=knn, progress=self.progress,
                        metric=metric, lu=lu, gamma=gamma)
        timings = dict(fit=time.perf_counter() - t0)
        make_region = cube_region if metric == "linf" else ball_region
        region = make_region(fit.centers, fit.radii_sq, epsilon=self.to_storage(epsilon),
                             scale=self.scale, meta=dict(n_balls=int(clusters), delta=delta))
        params = dict(clusters=int(clusters), balls_used=int(len(fit.radii)), delta=delta,
                      n_neighbors=int(knn.k))
        if lu is not None:
            from .lu import greedy_lu_params

            params.update(greedy_lu_params(fit, lu, gamma))
        family = "cubes" if metric == "linf" else "balls"
        frontier = None
        if metric == "l2" and lu is None:  # the prefix frontier is the l2, unconstrained greedy's
            t0 = time.perf_counter()
            frontier = self._ball_frontier(fit, alpha, self.to_storage(epsilon))
            timings["frontier"] = time.perf_counter() - t0
        return self._estimate(family, family, metric, alpha, epsilon, params, [region],
                              timings=timings, frontier=frontier)

    def _ball_frontier(self, fit, alpha, eps) -> dict:
        """The fitted balls' prefixes (the last ball's radius running on past
        its fit), fixed by the fitting split, read at test risk alpha."""
        from .frontier import ball_prefix_frontier, read_at_alpha

        counts = ball_prefix_frontier(self.X_fit, self.X_test, fit.centers, fit.radii_sq, eps, alpha)
        out = read_at_alpha(counts["risk_counts"], counts["adv_counts"], counts["n"], alpha)
        out.update(parameter="coverage (prefix of the greedy balls, last ball's radius)",
                   fixed_by="fitting split (the row's own balls)",
                   fit_risk_range=counts["fit_risk_range"])
        return out

    def halfspace(self, *, alpha, epsilon, metric, method="search", n_components=None) -> Estimate:
        """Half-space: ``pca`` (top principal component, Gilmer et al.) or
        ``search`` (Prescott et al. direction search)."""
        from .halfspace import fit_halfspace_curve

        self._check_inputs(alpha, epsilon)
        base = (metric, float(alpha), method, n_components)
        if base + (float(epsilon),) not in self._halfspace:
            grid = {float(epsilon)}
            if method == "search":  # the pca baseline is one direction: nothing to share
                grid |= self._eps_plan.get((metric, float(alpha)), set())
            grid = sorted(e for e in grid if base + (e,) not in self._halfspace)
            t0 = time.perf_counter()
            select = self.X_select if self.protocol == "holdout" else None
            # thresholds and the validation constraint both aim at the selection
            # target, and under holdout that target is the only margin (no
            # Prescott 0.5/sqrt(n) on top: two stacked margins overshoot alpha);
            # ``paper`` keeps Prescott's margin (None = the search's default)
            fits = fit_halfspace_curve(self.X_fit, self.selection_alpha(alpha),
                                       [self.to_storage(e) for e in grid], metric=metric,
                                       method=method, n_components=n_components,
                                       margin=self.halfspace_margin,
                                       X_select=select, progress=self.progress,
                                       lu=self._lu_weights())
            share = (time.perf_counter() - t0) / len(grid)
            for e, f in zip(grid, fits):
                self._halfspace[base + (e,)] = (f, share, len(grid))
        fit, share, n_shared = self._halfspace[base + (float(epsilon),)]
        # one search served n_shared epsilons: each row carries its share of the time
        timings = dict(fit=share)
        region = halfspace_region(fit.w, fit.b, metric=metric, epsilon=self.to_storage(epsilon),
                                  scale=self.scale,
                                  meta=dict(method=method, component=fit.component, power=fit.power))
        params = dict(method=method, component=int(fit.component), power=float(fit.power),
                      n_components=n_components, threshold_alpha=float(fit.alpha_fit),
                      search_shared_by_epsilons=n_shared)
        family = "pca" if method == "pca" else "halfspace"
        frontier = None
        if self.lu is None:  # the frontier's thresholds ignore LU: only without it
            t0 = time.perf_counter()
            frontier = self._threshold_frontier(base, fit, alpha)
            timings["frontier"] = time.perf_counter() - t0
        return self._estimate(family, family, metric, alpha, epsilon, params, [region],
                              timings=timings, frontier=frontier)

    def _lu_weights(self):
        """(int64 weights of the fitting rows, integer threshold) or None."""
        if self.lu is None:
            return None
        from .lu import lu_threshold, lu_weights

        return (lu_weights(self.lu["train"], len(self.X_fit)), lu_threshold(self.weights.gamma))

    def _threshold_frontier(self, base, fit, alpha) -> dict:
        """The fitted direction's thresholds at fitting-set ranks from a risk
        below to above alpha (fixed without the test set), read at test risk
        alpha (numbaconc.frontier)."""
        from .frontier import member_ranks, read_at_alpha, threshold_frontier
        from .halfspace import project_rows

        key = base + (fit.component, fit.power, fit.side)
        if key not in self._projections:  # one direction serves every epsilon of a grid
            self._projections[key] = (project_rows(self.X_fit, fit.w),
                                      project_rows(self.X_test, fit.w))
        p_fit, p_test = self._projections[key]
        ranks = member_ranks(alpha, len(p_fit), len(p_test))
        counts = threshold_frontier(p_fit, p_test, fit.shift, ranks)
        out = read_at_alpha(counts["risk_counts"], counts["adv_counts"], counts["n"], alpha)
        out.update(parameter="threshold", fixed_by="fitting split (direction chosen as the row's)",
                   fit_risk_range=[float(ranks[0] / len(p_fit)), float(ranks[-1] / len(p_fit))])
        return out

    def run(self, method: str, *, metric: str, alpha: float, epsilon: float, **options):
        """One method by name; ``best`` returns (winner, all estimates).
        Each method sees only its own options, and results are memoised, so
        ``best`` after a family (or a rerun) is free."""
        metric = canonical_metric(metric)
        if method not in METHODS:
            raise NumbaconcError(f"unknown method {method!r} (choose from {', '.join(METHODS)})")
        if method in FAMILY_METRIC and metric != FAMILY_METRIC[method]:
            raise NumbaconcError(f"{method} are the {FAMILY_LABEL[method]} family: "
                                 f"use --metric {FAMILY_METRIC[method]}")
        if self.lu is not None and method == "boxes":
            raise NumbaconcError("the LU constraint applies to balls, cubes and half-spaces, "
                                 "not to boxes: use --method cubes for l-inf")
        if method != "best":
            options = _pick(options, METHOD_OPTIONS[method])
        key = (method, metric, alpha, epsilon, tuple(sorted(
            (k, v) for k, v in options.items() if v is not None)))
        if key not in self._runs:
            if method == "boxes":
                result = self.boxes(alpha=alpha, epsilon=epsilon, **options)
            elif method in ("balls", "cubes"):
                result = self.balls(alpha=alpha, epsilon=epsilon, metric=metric, **options)
            elif method in ("halfspace", "pca"):
                result = self.halfspace(alpha=alpha, epsilon=epsilon, metric=metric,
                                        method="pca" if method == "pca" else "search", **options)
            else:
                result = self.best(metric=metric, alpha=alpha, epsilon=epsilon, **options)
            self._runs[key] = result
        return self._runs[key]

    def best(self, *, metric, alpha, epsilon, **options):
        """Every family that applies to the metric; the winner has the lowest
        selection-set adversarial risk among those whose selection risk reaches
        the selection target (see ``selection_alpha``)."""
        families = FAMILIES[metric]
        if self.lu is not None:  # the families that take the LU constraint
            from .lu import LU_FAMILIES

            families = LU_FAMILIES[metric]
        estimates = []
        for family in families:
            try:
                estimates.append(self.run(family, metric=metric, alpha=alpha, epsilon=epsilon,
                                          **options))
            except NumbaconcError as exc:
                if self.lu is None or family == families[-1] and not estimates:
                    raise
                # under the LU constraint a family may have no region at all
                self.lu_failures[family] = str(exc)
        sel, target = self.select_name, self.selection_alpha(alpha)
        feasible = [e for e in estimates if e.figures[sel]["risk"] >= target] or estimates
        winner = min(feasible, key=lambda e: e.figures[sel]["adv_risk"])
        return winner, estimates


def canonical_metric(metric: str) -> str:
    try:
        return METRIC_NAMES[metric.lower()]
    except KeyError:
        raise NumbaconcError(f"unknown metric {metric!r} (linf or l2)") from None


def _pick(options: dict, names) -> dict:
    return {k: v for k, v in options.items() if k in names and v is not None}


def _check_alpha_eps(alpha, epsilon):
    if not 0.0 < alpha < 1.0:
        raise NumbaconcError(f"alpha must be in (0, 1), got {alpha}")
    if not (math.isfinite(epsilon) and epsilon >= 0):  # NaN compares False to everything
        raise NumbaconcError(f"epsilon must be finite and >= 0, got {epsilon}")


def measure(dataset: Dataset, *, metric: str, alpha: float, epsilon: float, method: str,
            protocol: str = "holdout", val_fraction: float = 0.2, seed: int = 0,
            progress=None, weights=None, **options) -> dict:
    """One measurement, as the CLI's ``measure`` prints and saves it.

    Returns a JSON-ready dict; ``result["_region"]`` holds the winning Region.
    """
    t0 = time.perf_counter()
    conc = Concentration(dataset, protocol=protocol, val_fraction=val_fraction, seed=seed,
                         progress=progress, weights=weights)
    outcome = conc.run(method, metric=metric, alpha=alpha, epsilon=epsilon, **options)
    if method == "best":
        winner, estimates = outcome
    else:
        winner, estimates = outcome, [outcome]
    result = dict(
        inputs=dict(dataset=dataset.name, path=str(dataset.path), checksum=dataset.checksum,
                    metric=canonical_metric(metric), alpha=alpha, epsilon=epsilon, method=method,
                    protocol=protocol, seed=seed,
                    val_fraction=val_fraction if protocol == "holdout" else None,
                    options={k: v for k, v in options.items() if v is not None},
                    gamma=None if weights is None else weights.gamma),
        selection=conc.select_name,
        **winner.to_dict(),
    )
    if method == "best":
        result["winner"] = winner.family
        result["families"] = [e.to_dict() for e in estimates]
        if conc.lu_failures:
            result["families_without_region"] = dict(conc.lu_failures)
    truth = _ground_truth(dataset, alpha, conc.to_storage(epsilon), canonical_metric(metric))
    if truth is not None:
        # a valid estimate can sit above the truth, never clearly below it
        upper = result["test"]["adv_risk_ci"][1]
        truth["estimate_respects_truth"] = bool(upper >= truth["concentration"])
        at_ci = result["test"].get("adv_risk_at_alpha_ci")
        if at_ci is not None:  # the reading at alpha: its interval should hold an exact truth
            truth["at_alpha_respects_truth"] = bool(at_ci[1] >= truth["concentration"])
            truth["at_alpha_covers_truth"] = bool(at_ci[0] <= truth["concentration"] <= at_ci[1])
        result["ground_truth"] = truth
    stages = {f"{e.family}_{k}": v for e in estimates for k, v in e.timings.items()}
    result["timings"] = dict(conc.timings, **stages, total=time.perf_counter() - t0)
    result["versions"] = versions()
    result["_region"] = winner.region
    return result


def _ground_truth(dataset, alpha, eps_storage, metric):
    try:
        from .synth import ground_truth
    except ImportError:
        return None
    return ground_truth(dataset, alpha, eps_storage, metric)
