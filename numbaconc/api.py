"""The Python API: what ``import numbaconc as nc`` offers, and what the CLI calls.

Every function takes NumPy arrays, memmaps, h5py datasets or an imported
dataset (a path, a bundled name such as ``"mnist"``, or an opened
``Dataset``). Epsilon is always in [0, 1] units (pixel levels / 255 for
uint8 images); storage units exist only below this layer. The defaults here
are the only defaults: the CLI passes its options through unchanged.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from . import datasets
from .boxes import DEFAULT_T_GRID
from .datasets import Dataset
from .density import parse_density_sample
from .errors import NumbaconcError, OptionError
from .families import DEFAULT_BALLS_T_GRID, GREEDY_T
from .regions import Region

Progress = Callable[[int, int], None]
DataLike = Any  # a path, a bundled name, an opened Dataset, or an (n, d) matrix
#: clusters (T) of the balls when none is given (the 2019 code's T for MNIST l2)
DEFAULT_BALLS = GREEDY_T
#: clusters (T) of the cubes (l-inf balls, numbaconc.lu) when none is given
DEFAULT_CUBES = 10
#: the label-uncertainty threshold when ``lu`` is given without one (Zhang and Evans 2022)
DEFAULT_GAMMA = 0.17
#: the T grid ``curve`` tunes boxes over
CURVE_T_GRID = (5, 10, 15, 20)


def _lu_gamma(lu, gamma: float | None) -> float | None:
    """The LU threshold of a run: ``DEFAULT_GAMMA`` when ``lu`` comes without
    one; a ``gamma`` without ``lu`` would be silently unused, so it is an error."""
    if lu is None:
        if gamma is not None:
            raise OptionError("{gamma} needs {lu}: gamma is the threshold of the label-uncertainty "
                              "constraint, and without an LU vector there is none",
                              gamma="gamma", lu="lu")
        return None
    return DEFAULT_GAMMA if gamma is None else gamma


@contextmanager
def _opened(data, X_test=None, **array_options) -> Iterator[Dataset]:
    """A ``Dataset`` for ``data``: opened from a path or name (and closed
    after), used as it is, or built over ``(data, X_test)`` arrays."""
    if isinstance(data, Dataset):
        yield data
    elif isinstance(data, (str, Path)):
        if X_test is not None:
            raise NumbaconcError("X_test is given with a dataset path: the file holds both splits")
        with datasets.open_dataset(data) as ds:
            yield ds
    else:
        if X_test is None:
            raise NumbaconcError("X_test is needed with an X_train matrix (or pass a dataset path)")
        yield datasets.dataset_from_arrays(data, X_test, **array_options)


# -------------------------------------------------------------------- knn


def knn(X, k: int, *, metric: str, queries=None, include_self: bool = True,
        progress: Progress | None = None):
    """Exact k nearest neighbours, ties broken by index.

    Parameters
    ----------
    X : (n, d) uint8 or float32 matrix
        NumPy array, memmap or h5py dataset, in storage units.
    k : int
        Neighbours per query (at most n, or n - 1 without ``include_self``).
    metric : str
        ``l1``, ``l2`` or ``linf``, or an alias (``cityblock``, ``euclidean``,
        ``chebyshev`` ...).
    queries : (m, d) matrix, optional
        Rows to find neighbours for; all pairs within ``X`` when None.
    include_self : bool
        All pairs: whether a row counts as its own first neighbour.
    progress : callable, optional
        ``progress(done, total)`` between query blocks.

    Returns
    -------
    numbaconc.neighbours.KnnResult
        ``indices`` (m, k) and ``distances`` (float64, storage units), each
        row sorted by (distance, index).

    Examples
    --------
    >>> import numpy as np, numbaconc as nc
    >>> X = np.array([[0, 0], [3, 4], [0, 1]], dtype=np.uint8)
    >>> nn = nc.knn(X, 2, metric="l2")
    >>> nn.indices.tolist(), nn.distances[:, 1].tolist()
    ([[0, 2], [1, 2], [2, 0]], [1.0, 4.242640687119285, 1.0])
    """
    from .neighbours import knn as search

    return search(X, k, metric=metric, queries=queries, include_self=include_self,
                  progress=progress)


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class SplitFigures:
    """Risk and adversarial risk of a region on one split (fractions).

    ``risk_ci`` / ``adv_risk_ci``: 95 % Clopper-Pearson intervals (test
    split). ``adv_risk_at_alpha`` (and its interval): the region's frontier
    read at test risk alpha, for the families that have one (balls,
    half-spaces); None otherwise. ``*_std``: spread over k-means restarts.
    """

    n: int
    risk: float
    adv_risk: float
    risk_ci: tuple | None = None
    adv_risk_ci: tuple | None = None
    risk_std: float | None = None
    adv_risk_std: float | None = None
    adv_risk_at_alpha: float | None = None
    adv_risk_at_alpha_ci: tuple | None = None

    @classmethod
    def from_dict(cls, figures: dict) -> "SplitFigures":
        known = {f.name for f in fields(cls)}
        values = {key: (tuple(value) if isinstance(value, list) else value)
                  for key, value in figures.items() if key in known}
        return cls(**values)


@dataclass
class FamilyResult:
    """One family's estimate, as ``to_dict`` (the JSON) holds it, with
    attribute access to the figures of each split."""

    data: dict

    @property
    def family(self) -> str:
        return self.data["family"]

    @property
    def params(self) -> dict:
        return self.data["params"]

    @property
    def valid(self) -> bool:
        """Whether the test risk reaches alpha (the headline counts only then)."""
        return bool(self.data["valid"])

    @property
    def train(self) -> SplitFigures:
        return SplitFigures.from_dict(self.data["train"])

    @property
    def test(self) -> SplitFigures:
        return SplitFigures.from_dict(self.data["test"])

    @property
    def validation(self) -> SplitFigures | None:
        """The selection split's figures under ``holdout`` (None under ``paper``)."""
        figures = self.data.get("validation")
        return None if figures is None else SplitFigures.from_dict(figures)

    def to_dict(self) -> dict:
        return self.data


@dataclass
class MeasureResult(FamilyResult):
    """What ``measure`` returns: the winning family's figures and region.

    Attributes
    ----------
    region : Region
        The winning region (``region.evaluate(X)`` re-applies it).
    families : list of FamilyResult
        Every family that was fitted (one, unless ``method="best"``).
    """

    region: Region | None = None
    families: list = field(default_factory=list)

    @property
    def winner(self) -> str:
        return self.data.get("winner", self.data["family"])

    def to_dict(self) -> dict:
        """The JSON-ready dict ``numbaconc measure --json`` writes."""
        return self.data

    def to_json(self, path=None, indent: int = 2) -> str:
        """The JSON text; written atomically to ``path`` when given."""
        from .outputs import jsonable, write_json

        if path is not None:
            write_json(Path(path), self.data, indent=indent)
        return json.dumps(self.data, indent=indent, default=jsonable)

    def __repr__(self) -> str:
        test = self.test
        return (f"MeasureResult({self.winner}: test risk {test.risk:.4f}, "
                f"test adv risk {test.adv_risk:.4f}, valid={self.valid})")


# ---------------------------------------------------------------- measure


def measure_options(metric: str, *, clusters=None, q=None, tune=False, t_grid=None,
                    box="symmetric", domain=None, delta=0.0, repeats=1, method: str = "best",
                    lu: bool = False, ball_candidates: int | None = None,
                    density_sample=None) -> dict:
    """The options each family of ``metric`` sees (what ``inputs.options`` records).
    ``lu``: a label-uncertainty vector is given, so ``best`` under l-inf runs
    cubes (not boxes): the greedy's options. ``tune`` under l2: the balls' T
    over ``t_grid`` (default ``DEFAULT_BALLS_T_GRID``; with ``clusters``, that
    one T) and their coverage are tuned on the selection split."""
    from .concentration import canonical_metric

    metric = canonical_metric(metric)
    if metric == "l2" or method == "cubes" or (lu and method == "best"):
        default = DEFAULT_BALLS if metric == "l2" else DEFAULT_CUBES
        if tune and metric == "l2":
            if clusters is not None and t_grid is not None:
                raise OptionError("{tune}: give {clusters} (one T) or {t_grid}, not both",
                                  tune="tune=True", clusters="clusters", t_grid="t_grid")
            grid = (clusters,) if clusters is not None else (
                DEFAULT_BALLS_T_GRID if t_grid is None else t_grid)
            return dict(t_grid=tuple(int(t) for t in grid), repeats=repeats, delta=delta,
                        candidates=ball_candidates)
        return dict(clusters=default if clusters is None else clusters, repeats=repeats,
                    delta=delta, candidates=ball_candidates)
    grid = DEFAULT_T_GRID if t_grid is None else t_grid
    return dict(clusters=clusters, q=q, box=box, repeats=repeats, domain=domain,
                t_grid=tuple(int(t) for t in grid) if tune or clusters is None else None,
                density_sample=parse_density_sample(density_sample))


def measure(X_train, X_test=None, *, metric: str, alpha: float, epsilon: float,
            method: str = "best", protocol: str = "holdout", clusters: int | None = None,
            q: float | None = None, tune: bool = False, t_grid: Sequence[int] | None = None,
            box: str = "symmetric", domain: bool | None = None, delta: float = 0.0,
            repeats: int = 1, seed: int = 0, val_fraction: float = 0.2, labels: bool = False,
            y_train=None, y_test=None, scale: float | None = None, lu=None,
            gamma: float | None = None, ball_candidates: int | None = None, density_sample=None,
            progress: Progress | None = None) -> MeasureResult:
    """Estimate the concentration at (alpha, epsilon) with one region family, or the best of all.

    Parameters
    ----------
    X_train : (n, d) matrix, or a dataset
        uint8 pixel levels or float32 in [0, 1] units (array, memmap, h5py
        dataset); or a path / bundled name / ``Dataset`` holding both splits.
    X_test : (m, d) matrix, optional
        The test split (with a matrix ``X_train``).
    metric : {"linf", "l2"}
        The perturbation metric (aliases accepted).
    alpha : float
        Risk level in (0, 1): the region has measure >= alpha.
    epsilon : float
        The budget in [0, 1] units (e.g. 0.3, or 8 / 255).
    method : {"best", "boxes", "balls", "cubes", "halfspace", "pca"}
        The region family; ``best`` fits every family of the metric and
        keeps the one with the lowest selection-set adversarial risk
        (``cubes``: l-inf balls placed greedily, Zhang and Evans 2022).
    protocol : {"holdout", "paper"}
        ``holdout``: every choice on a validation split carved from the
        training set; ``paper``: the 2019 protocol (chooses on the test set).
    clusters : int, optional
        T of the boxes (then q is searched) or of the balls (default 20).
    q : float, optional
        Boxes: fraction of the densest points covered (with ``clusters``).
    tune : bool
        Boxes: tune T over ``t_grid`` and q by bisection. Balls (l2): tune T
        over ``t_grid`` (or the one T of ``clusters``) and the coverage on the
        selection split: per T the greedy at the selection target, its
        coverage raised by bisection where the selection risk misses the
        target; then the T with the lowest selection adversarial risk among
        those that reach it (``tuning`` in the result records every fit).
    t_grid : sequence of int, optional
        The T grid when tuning (default: boxes (5, 10, 15, 20, 40, 75),
        balls ``DEFAULT_BALLS_T_GRID`` = (10, 20, 40)).
    box : {"symmetric", "tight"}
        Boxes: the paper's mean +- max deviation, or per-coordinate min/max.
    domain : bool, optional
        Boxes: count E_eps within the pixel range (default: on under
        ``holdout`` for uint8 data, off under ``paper``).
    delta : float
        Balls: extra coverage.
    repeats : int
        Boxes: k-means restarts (seeds seed .. seed + repeats - 1).
    seed : int
        Seed of the validation split and of k-means.
    val_fraction : float
        ``holdout``: the fraction of the training set held out.
    labels : bool
        Also compute the label-aware lower bound on the test split
        (``bound``) at the same epsilon (needs test labels).
    y_train, y_test : integer labels, optional
        With matrices: the labels (for ``labels=True``).
    scale : float, optional
        With matrices: [0, 1] units per storage unit (default 1/255 for uint8).
    lu : path or (n,) array, optional
        Label uncertainty (numbaconc.lu): a .npy with one value in [0, 2] per
        point of the train split (or of the source split of a ``data import
        cifar10h --view`` file), or that vector. Every ball / cube /
        half-space region then keeps mean LU >= ``gamma`` (boxes do not
        apply; ``best`` runs the families that do).
    gamma : float, optional
        With ``lu``: the LU threshold (default ``DEFAULT_GAMMA`` = 0.17, Zhang
        and Evans 2022); given without ``lu`` it is an error.
    ball_candidates : int, optional
        Balls / cubes: draw the greedy's candidate centres as a seeded
        (``seed``) uniform sample of this many fitting rows, each still
        evaluated exactly against every fitting point (for large n; the
        default, every row a candidate, is the paper's exact greedy).
        ``params["candidates"]`` records which variant ran.
    density_sample : {None, "auto", "exact"} or int
        Boxes: the density score (numbaconc.density). ``auto`` (None): the
        exact all-pairs l1 kNN up to 200,000 fitting rows, else the k'-th
        neighbour within a seeded sample of 20,000 fitting rows; ``exact``;
        or a sample of that many rows. ``params["density"]`` says which ran.
    progress : callable, optional
        ``progress(done, total)`` during the long stages.

    Returns
    -------
    MeasureResult
        ``.test.adv_risk``, ``.test.adv_risk_ci``, ``.test.adv_risk_at_alpha``,
        ``.region``, ``.families``, ``.to_dict()``, ``.to_json()``.
    """
    from .concentration import measure as run

    gamma = _lu_gamma(lu, gamma)
    options = measure_options(metric, clusters=clusters, q=q, tune=tune, t_grid=t_grid, box=box,
                              domain=domain, delta=delta, repeats=repeats, method=method,
                              lu=lu is not None, ball_candidates=ball_candidates,
                              density_sample=density_sample)
    with _opened(X_train, X_test, y_train=y_train, y_test=y_test, scale=scale) as ds:
        if labels and ds.test.y is None:
            raise OptionError(f"{{labels}}: {ds.path or ds.name} has no test labels (/test/y)",
                              labels="labels=True")
        weights = None
        if lu is not None:
            from .lu import label_weights

            weights = label_weights(ds, lu, gamma)
        result = run(ds, metric=metric, alpha=alpha, epsilon=epsilon, method=method,
                     protocol=protocol, val_fraction=val_fraction, seed=seed, progress=progress,
                     weights=weights, **options)
        if labels:
            from .optimal_loss import dataset_lower_bound

            found = dataset_lower_bound(ds, metric=result["metric"], epsilons=[epsilon],
                                        split="test")
            result["lower_bound"] = dict(found.rows[0].__dict__, split="test",
                                         range_search_seconds=found.range_search_seconds)
    region = result.pop("_region")
    families = [FamilyResult(d) for d in result.get("families", [])] or [FamilyResult(result)]
    return MeasureResult(result, region=region, families=families)


# ------------------------------------------------------------------ bound


def bound(X, y=None, *, metric: str, epsilon, split: str = "train", degree: int = 2,
          classes: Sequence[int] | None = None, scale: float | None = None,
          progress: Progress | None = None):
    """The smallest adversarial 0-1 loss any classifier can reach on labelled points.

    Parameters
    ----------
    X : (n, d) matrix, or a dataset
        A matrix (with labels ``y``) in storage units, or a path / bundled
        name / ``Dataset`` (its ``split``).
    y : (n,) integer labels, optional
        With a matrix ``X``.
    metric : {"l2", "linf"}
        The attacker's metric.
    epsilon : float or sequence of float
        Budgets in [0, 1] units (one range search serves the whole grid).
    split : {"train", "test"}
        With a dataset: whose points.
    degree : {2, 3}
        2: the conflict graph's matching LP; 3: with jointly attackable triangles.
    classes : sequence of int, optional
        Only the points of these labels.
    scale : float, optional
        With a matrix: [0, 1] units per storage unit (default 1/255 for uint8).
    progress : callable, optional

    Returns
    -------
    numbaconc.optimal_loss.BoundResult
        ``rows`` (one per epsilon: ``lower_bound``, ``edges``, ...), ``to_dict()``.
    """
    from .optimal_loss import dataset_lower_bound, lower_bound
    from .validation import canonical_metric, check_matrix

    epsilons = [epsilon] if np.ndim(epsilon) == 0 else list(epsilon)
    if isinstance(X, (str, Path, Dataset)):
        with _opened(X) as ds:
            return dataset_lower_bound(ds, metric=metric, epsilons=epsilons, split=split,
                                       degree=degree, classes=classes, progress=progress)
    _, _, dtype = check_matrix(X)
    scale = (1.0 / 255.0 if dtype == np.uint8 else 1.0) if scale is None else float(scale)
    return lower_bound(X, y, metric=canonical_metric(metric), epsilons=epsilons, scale=scale,
                       degree=degree, classes=classes, progress=progress)


# ------------------------------------------------------- curve, reproduce


@dataclass
class CurveResult:
    """The rows of ``curve`` (one per alpha, epsilon and family) and where they go."""

    rows: list
    out: Path
    metric: str
    alphas: list
    name: str
    command: str | None = None

    def save(self) -> Path:
        """Write ``curve.json`` and ``curve.png`` (when any row succeeded) in ``out``."""
        from .concentration import versions
        from .plots import plot_curve
        from .outputs import write_json

        write_json(self.out / "curve.json", dict(command=self.command, versions=versions(),
                                                 rows=self.rows))
        good = [r for r in self.rows if "error" not in r]
        if good:
            if len(self.alphas) > 1:
                plot_curve(good, self.out / "curve.png", x="alpha",
                           title=f"{self.name}, {self.metric}: adversarial risk against alpha")
            else:
                plot_curve(good, self.out / "curve.png", alpha=self.alphas[0],
                           title=f"{self.name}, {self.metric}, alpha={self.alphas[0]:g}")
        return self.out / "curve.json"


def curve(data: DataLike, *, metric: str, alpha, epsilon, out, method: str = "best",
          protocol: str = "holdout", clusters: int | None = None, q: float | None = None,
          t_grid: Sequence[int] = CURVE_T_GRID, box: str = "tight", domain: bool | None = None,
          delta: float = 0.0, repeats: int = 1, seed: int = 0, force: bool = False,
          epsilon_texts: Sequence[str] | None = None, save: bool = True,
          command: str | None = None, row_command: Callable | None = None,
          log: Callable[[str], None] | None = None,
          progress: Progress | None = None, lu=None, gamma: float | None = None,
          density_sample=None) -> CurveResult:
    """Concentration across a grid of epsilons (or of alphas), every neighbour
    list and clustering reused; a resumable run folder.

    Parameters
    ----------
    data : path, bundled name or Dataset
        The imported dataset (``out`` keeps its rows keyed by its content).
    metric : {"linf", "l2"}
    alpha : float or sequence of float
        Risk level(s); with several the plot is adversarial risk against alpha.
    epsilon : float or sequence of float
        Budgets in [0, 1] units.
    out : path
        Run folder: ``results.json`` (finished rows, resumed), ``regions/``,
        ``curve.json`` and ``curve.png``.
    method : {"best", "boxes", "balls", "cubes", "halfspace", "pca"}
        ``best``: every family of the metric, and the best of them.
    protocol : {"holdout", "paper"}
    clusters, q, t_grid, box, domain, delta, repeats, seed
        As in ``measure`` (boxes: ``tight`` over the T grid (5, 10, 15, 20)
        by default; balls: T = 20).
    force : bool
        Recompute rows already in ``out``.
    epsilon_texts : sequence of str, optional
        How each epsilon was written (``2/255``), for the rows.
    save : bool
        Write ``curve.json`` and the plot at the end (else call ``.save()``).
    command, row_command : optional
        The command line recorded in ``curve.json``; ``row_command(spec,
        data_ref)`` gives each row's one-line command (the CLI's).
    log : callable, optional
        One line per row run or skipped (default: silent).
    progress : callable, optional
    lu, gamma
        As in ``measure``: balls, cubes and half-spaces keep mean LU >=
        ``gamma`` (rows with gamma carry the vector's digest in their key);
        ``gamma`` without ``lu`` is an error.
    density_sample
        As in ``measure`` (boxes); a row's key includes it when given.
    """
    from .concentration import FAMILIES, METHODS, canonical_metric
    from .reproduction import Runner, curve_rows
    from .validation import check_choice, check_epsilon

    metric = canonical_metric(metric)
    gamma = _lu_gamma(lu, gamma)
    alphas = [float(a) for a in np.atleast_1d(alpha)]
    if not alphas or not all(0.0 < a < 1.0 for a in alphas):
        raise OptionError(f"{{alpha}}: every level must be in (0, 1), got "
                          f"{','.join(f'{a:g}' for a in alphas)}", alpha="alpha")
    epsilons = [check_epsilon(e) for e in np.atleast_1d(epsilon).tolist()]
    texts = list(epsilon_texts) if epsilon_texts is not None else [f"{e:g}" for e in epsilons]
    check_choice(method, METHODS, "method")
    families = FAMILIES[metric]
    if lu is not None:  # the families that take the LU constraint
        from .lu import LU_FAMILIES

        families = LU_FAMILIES[metric]
    methods = list(families) + ["best"] if method == "best" else [method]
    if metric == "linf" and method != "cubes":
        options = dict(box=box, repeats=repeats, clusters=clusters, q=q, domain=domain,
                       t_grid=None if clusters is not None else tuple(int(t) for t in t_grid),
                       density_sample=parse_density_sample(density_sample))
    else:
        options = dict(clusters=clusters or (DEFAULT_BALLS if metric == "l2" else DEFAULT_CUBES),
                       delta=delta)
    out = Path(out)
    runner = Runner(out, force=force, seed=seed, log=log or (lambda message: None),
                    progress=progress, row_command=row_command)
    data_ref = str(data.path) if isinstance(data, Dataset) else str(data)
    with _opened(data) as ds:
        if lu is not None:  # rows with gamma carry the vector's digest in their key
            from .lu import label_weights, lu_digest

            runner.weights = label_weights(ds, lu, gamma)
            options.update(gamma=gamma, lu=lu_digest(lu))
        specs = curve_rows(data_ref, metric=metric, alpha=alphas, epsilons=epsilons,
                           eps_texts=texts, methods=methods, protocol=protocol, options=options)
        rows = runner.run_all(specs, ds, data_ref)
    result = CurveResult(rows=rows, out=out, metric=metric, alphas=alphas,
                         name=Path(data_ref).stem, command=command)
    if save:
        result.save()
    return result


def reproduce(which: str = "mnist", *, out, data_dir=None, quick: bool = False,
              force: bool = False, report_only: bool = False, seed: int = 0,
              command: str | None = None, row_command: Callable | None = None,
              log: Callable[[str], None] | None = None, progress: Progress | None = None) -> Path:
    """Run the 2019 paper's tables (both protocols, every family) and write a report.

    Parameters
    ----------
    which : {"mnist", "fashion-mnist", "cifar10", "all", "cifar10-lu"}
        ``cifar10-lu``: the label-uncertainty runs of Zhang and Evans 2022
        (numbaconc.lu_reproduce; needs ``data_dir`` with cifar-10/ and cifar-10h/).
    out : path
        Run folder: ``report.md``, ``results.json`` (finished rows, resumed),
        plots and ``regions/``.
    data_dir : path, optional
        A ``../shared/data``-style folder (MNIST is bundled).
    quick : bool
        One epsilon per metric, a short T grid, 3 restarts.
    force : bool
        Recompute finished rows.
    report_only : bool
        Compute nothing: render the report from the verified finished rows.
    seed : int
    command, row_command, log, progress
        As in ``curve``.

    Returns
    -------
    Path
        The report (``out / "report.md"``).
    """
    from .reproduction import run_reproduction

    return run_reproduction(which, out=Path(out), data_dir=data_dir, quick=quick, force=force,
                            report_only=report_only, seed=seed, command=command,
                            row_command=row_command, log=log or (lambda message: None),
                            progress=progress)
