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

import platform
import time
from dataclasses import dataclass, field

import numpy as np

from . import __version__, budget
from .datasets import Dataset
from .errors import NumbaconcError, OptionError
from .families import PROTOCOLS, SELECTION_Z, BallsFamily, BoxesFamily, FamilyFit  # noqa: F401
from .families import CubesFamily, HalfSpaceFamily, NeighbourLists, Splits
from .regions import Region
from .stages import PEAK_SOURCE, recording, stage
from .stats import clopper_pearson
from .validation import REGION_METRICS, check_choice
from .validation import canonical_metric as _canonical_metric

METHODS = ("boxes", "balls", "cubes", "halfspace", "pca", "best")
FAMILIES = {"linf": ("boxes", "halfspace"), "l2": ("balls", "halfspace")}
FAMILY_METRIC = {"boxes": "linf", "balls": "l2", "cubes": "linf"}
FAMILY_LABEL = {"boxes": "l-inf", "balls": "l2", "cubes": "l-inf"}
METHOD_OPTIONS = {
    "boxes": ("clusters", "q", "box", "repeats", "t_grid", "density_k", "domain",
              "density_sample"),
    "balls": ("clusters", "delta", "n_neighbors", "t_grid", "candidates"),
    "cubes": ("clusters", "delta", "n_neighbors", "candidates"),
    "halfspace": ("n_components",),
    "pca": (),
}


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
    """One dataset under one protocol, answering many (family, alpha, epsilon)
    queries that share the expensive steps.

    Made of one piece per concern (numbaconc.families): ``splits`` (the
    protocol: the row views and the selection target), ``lists`` (the
    neighbour-list cache) and ``families`` (one strategy per region family,
    each with its own caches). This class runs a family by name, evaluates
    its regions on every split (``Estimate``) and picks the best family.

    ``X_fit``, ``X_select`` and ``X_test`` are row views of the file, never
    copies. Half-spaces, every evaluation and the box coverage read them in
    blocks sized by the memory budget. Where a stage needs a dense array it
    materialises only its own subset, and only when it fits the budget share:
    the boxes' k-means and box fit the dense set D (floor(q * n) rows, an index
    array over the fitting rows, else read in blocks); the balls the fitting
    set (in ``fit_balls``).
    """

    def __init__(self, dataset: Dataset, *, protocol: str = "holdout",
                 val_fraction: float = 0.2, seed: int = 0, progress=None,
                 selection_z: float = SELECTION_Z, weights=None):
        self.splits = splits = Splits(dataset, protocol=protocol, val_fraction=val_fraction,
                                      seed=seed, progress=progress, selection_z=selection_z,
                                      weights=weights)
        self.timings: dict = {}
        self.lists = NeighbourLists(splits, self._tick)
        self.families = {"boxes": BoxesFamily(splits, self.lists),
                         "balls": BallsFamily(splits, self.lists),
                         "cubes": CubesFamily(splits, self.lists),
                         "halfspace": HalfSpaceFamily(splits)}
        self.lu_failures: dict = {}  # family -> why it has no region under the LU constraint
        self._runs: dict = {}
        # the protocol's fixed facts, as attributes
        self.ds, self.protocol, self.seed, self.scale = dataset, protocol, seed, splits.scale
        self.val_fraction, self.selection_z = splits.val_fraction, selection_z
        self.X_fit, self.X_select, self.X_test = splits.X_fit, splits.X_select, splits.X_test
        self.fit_rows, self.val_rows, self.select_name = (splits.fit_rows, splits.val_rows,
                                                          splits.select_name)
        # label uncertainty (numbaconc.lu.LabelWeights) and the per-set LU vectors
        self.weights, self.lu = splits.weights, splits.lu

    @property
    def progress(self):
        return self.splits.progress

    @progress.setter
    def progress(self, value):
        self.splits.progress = value

    def _tick(self, stage: str, start: float):
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start

    def neighbours(self, metric: str, k: int, *, exact_k: bool = True):
        """All-pairs neighbour lists of the fitting set (``NeighbourLists.get``)."""
        return self.lists.get(metric, k, exact_k=exact_k)

    def expect_epsilons(self, metric: str, alpha: float, epsilons) -> None:
        """Announce the epsilon grid that will be asked for at (metric, alpha):
        the half-space search then fits the whole grid in one pass."""
        self.families["halfspace"].expect(canonical_metric(metric), alpha, epsilons)

    def selection_alpha(self, alpha: float) -> float:
        """The risk every choice must reach on the selection set (``Splits.selection_alpha``)."""
        return self.splits.selection_alpha(alpha)

    def target_text(self, alpha: float) -> str:
        return self.splits.target_text(alpha)

    @property
    def halfspace_margin(self):
        return self.splits.halfspace_margin

    @property
    def domain(self):
        return self.splits.domain

    def to_storage(self, epsilon: float) -> float:
        return self.splits.to_storage(epsilon)

    def _estimate(self, fit: FamilyFit, alpha, epsilon) -> Estimate:
        """Evaluate a family's regions on every split: figures per split (mean
        over restarts, test intervals); the fit's frontier reading (if any)
        joins the test figures."""
        family, regions, frontier = fit.family, fit.regions, fit.frontier
        t0 = time.perf_counter()
        with stage("evaluate", family=family, regions=len(regions)):
            per_repeat = [self.splits.figures(r) for r in regions]
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
        return Estimate(family=family, method=fit.method, metric=fit.metric, alpha=alpha,
                        epsilon=epsilon, protocol=self.protocol, params=fit.params,
                        region=regions[0], figures=figures, repeats=repeats, tuning=fit.tuning,
                        timings=dict(fit.timings or {}), frontier=frontier)

    # ------------------------------------------------------------ families
    def boxes(self, *, alpha, epsilon, **options) -> Estimate:
        """Complement of T boxes (l-inf): ``BoxesFamily.fit``'s options."""
        return self._estimate(self.families["boxes"].fit(alpha=alpha, epsilon=epsilon, **options),
                              alpha, epsilon)

    def balls(self, *, alpha, epsilon, **options) -> Estimate:
        """Union of T balls placed greedily (l2): ``BallsFamily.fit``'s options."""
        return self._estimate(self.families["balls"].fit(alpha=alpha, epsilon=epsilon, **options),
                              alpha, epsilon)

    def cubes(self, *, alpha, epsilon, **options) -> Estimate:
        """Union of T l-inf balls (cubes, Zhang and Evans 2022) placed greedily:
        ``CubesFamily.fit``'s options."""
        return self._estimate(self.families["cubes"].fit(alpha=alpha, epsilon=epsilon, **options),
                              alpha, epsilon)

    def halfspace(self, *, alpha, epsilon, metric, method="search", n_components=None) -> Estimate:
        """Half-space: ``pca`` (top principal component, Gilmer et al.) or
        ``search`` (Prescott et al. direction search)."""
        fit = self.families["halfspace"].fit(alpha=alpha, epsilon=epsilon, metric=metric,
                                             method=method, n_components=n_components)
        return self._estimate(fit, alpha, epsilon)

    def run(self, method: str, *, metric: str, alpha: float, epsilon: float, **options):
        """One method by name; ``best`` returns (winner, all estimates).
        Each method sees only its own options, and results are memoised, so
        ``best`` after a family (or a rerun) is free."""
        metric = canonical_metric(metric)
        check_choice(method, METHODS, "method")
        if method in FAMILY_METRIC and metric != FAMILY_METRIC[method]:
            raise OptionError(f"{method} are the {FAMILY_LABEL[method]} family: use {{metric}}",
                              metric=f"metric={FAMILY_METRIC[method]!r}")
        if self.lu is not None and method == "boxes":
            raise OptionError("the LU constraint applies to balls, cubes and half-spaces, "
                              "not to boxes: use {cubes} for l-inf", cubes="method='cubes'")
        if method != "best":
            options = _pick(options, METHOD_OPTIONS[method])
        key = (method, metric, alpha, epsilon, tuple(sorted(
            (k, v) for k, v in options.items() if v is not None)))
        if key not in self._runs and method != "best":
            with stage(method, n_fit=len(self.X_fit), d=self.X_fit.shape[1], metric=metric,
                       alpha=alpha, epsilon=epsilon):
                self._runs[key] = self._run_family(method, metric, alpha, epsilon, options)
        elif key not in self._runs:
            self._runs[key] = self.best(metric=metric, alpha=alpha, epsilon=epsilon, **options)
        return self._runs[key]

    def _run_family(self, method, metric, alpha, epsilon, options) -> Estimate:
        """One family's fit (the per-family options, e.g. an LU weight, enter here)."""
        if method == "boxes":
            return self.boxes(alpha=alpha, epsilon=epsilon, **options)
        if method == "balls":
            return self.balls(alpha=alpha, epsilon=epsilon, **options)
        if method == "cubes":
            return self.cubes(alpha=alpha, epsilon=epsilon, **options)
        return self.halfspace(alpha=alpha, epsilon=epsilon, metric=metric,
                              method="pca" if method == "pca" else "search", **options)

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
    """A region metric (``linf`` or ``l2``) from its name or an alias."""
    return _canonical_metric(metric, REGION_METRICS)


def _pick(options: dict, names) -> dict:
    return {k: v for k, v in options.items() if k in names and v is not None}


def measure(dataset: Dataset, *, metric: str, alpha: float, epsilon: float, method: str,
            protocol: str = "holdout", val_fraction: float = 0.2, seed: int = 0,
            progress=None, weights=None, **options) -> dict:
    """One measurement, as the CLI's ``measure`` prints and saves it.

    Returns a JSON-ready dict; ``result["_region"]`` holds the winning Region.
    """
    t0 = time.perf_counter()
    conc = Concentration(dataset, protocol=protocol, val_fraction=val_fraction, seed=seed,
                         progress=progress, weights=weights)
    with recording() as stage_records:
        outcome = conc.run(method, metric=metric, alpha=alpha, epsilon=epsilon, **options)
    if method == "best":
        winner, estimates = outcome
    else:
        winner, estimates = outcome, [outcome]
    result = dict(
        inputs=dict(dataset=dataset.name, path=None if dataset.path is None else str(dataset.path),
                    checksum=dataset.checksum,
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
    # issue 12: the budget the run had, and each stage's seconds and peak memory
    result["budget"] = dict(bytes=budget.get_budget(), peak_memory=PEAK_SOURCE)
    result["stages"] = stage_records
    result["versions"] = versions()
    result["_region"] = winner.region
    return result


def _ground_truth(dataset, alpha, eps_storage, metric):
    """The closed form of a generated Gaussian file (None for other data and for arrays)."""
    from .synth import ground_truth

    return None if dataset.path is None else ground_truth(dataset, alpha, eps_storage, metric)
