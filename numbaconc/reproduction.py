"""The paper's tables and concentration curves in one run, resumable.

A run is a list of rows (dataset, metric, alpha, epsilon, family, protocol,
options). Each finished row is written to ``results.json`` at once (atomic
rewrite), so Ctrl-C or a crash loses nothing already computed and a rerun
skips finished rows unless ``force``. Run from the CLI, every row
carries the one ``numbaconc measure`` command that regenerates it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from . import datasets
from .errors import NumbaconcError, OptionError
from .concentration import Concentration, versions
from .families import GREEDY_T
from .outputs import jsonable, os_reason, write_json  # noqa: F401 (re-exported)
from .regions import Region

RESULTS_FORMAT = 1
DATASETS = ("mnist", "fashion-mnist", "cifar10")
SOURCES = {  # where each dataset lives in a ../shared/data-style folder
    "mnist": ("mnist", "mnist"),
    "fashion-mnist": ("fashion-mnist", "fashion-mnist"),
    "cifar10": ("cifar10", "cifar-10/cifar10.npz"),
}
T_GRIDS = {"mnist": (5, 10, 15, 20), "fashion-mnist": (5, 10, 15, 20), "cifar10": (10, 20, 40, 75)}
# the balls' T grids under holdout (each holds the paper's T: MNIST 20, CIFAR-10 5)
L2_T_GRIDS = {"mnist": (10, 20, 40), "fashion-mnist": (10, 20, 40), "cifar10": (5, 10, 20)}


def reference_figures() -> dict:
    return json.loads(resources.files("numbaconc").joinpath("reference_figures.json").read_text())


# Part of every row's key: bump it when the figures a row's options produce
# change, so a finished row saved by an older version is recomputed.
# 2: holdout boxes count E_eps within the pixel range by default.
# 3: the holdout selection target covers the test sample's noise too; balls aim at it.
# 4: one margin under holdout (half-spaces: no Prescott margin; balls: delta 0);
#    every row reads its frontier at alpha (test.adv_risk_at_alpha).
ROW_VERSION = 4
# Under holdout the selection target alone sets the coverage: the balls add no
# delta (the paper rows keep the 2019 code's 0.25 on MNIST, 0 on CIFAR-10).
HOLDOUT_DELTA = 0.0


@dataclass(frozen=True)
class RowSpec:
    dataset: str
    metric: str
    alpha: float
    epsilon: float
    epsilon_text: str
    family: str                 # boxes | balls | halfspace | pca | best
    protocol: str               # paper | holdout
    options: tuple = ()         # sorted (name, value) pairs passed to Concentration.run
    group: str = "table"        # table | defence | curve
    paper: tuple = ()           # reference figures (name, value) for the report

    @property
    def opts(self) -> dict:
        return dict(self.options)

    @property
    def paper_dict(self) -> dict:
        return dict(self.paper)

    @property
    def key(self) -> str:
        text = json.dumps([self.dataset, self.metric, self.alpha, round(self.epsilon, 10),
                           self.family, self.protocol, list(self.options), ROW_VERSION])
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def _opts(**kwargs) -> tuple:
    return tuple(sorted((k, v) for k, v in kwargs.items() if v is not None))


def plan(dataset: str, *, quick: bool = False) -> list[RowSpec]:
    """The 2019 paper's settings for one dataset, both protocols, every family."""
    ref = reference_figures()
    rows: list[RowSpec] = []
    grid = T_GRIDS[dataset][:2] if quick else T_GRIDS[dataset]
    # quick: the balls at the paper's T alone (their coverage still tuned)
    grids = dict(linf=grid, l2=() if quick else L2_T_GRIDS[dataset])
    repeats = 3 if quick else 10
    if dataset in ("mnist", "cifar10"):
        linf = [r for r in ref["table1_linf_boxes"] if r["dataset"] == dataset]
        l2 = [r for r in ref["table3_l2_balls"] if r["dataset"] == dataset]
        if quick:
            # every family at one epsilon per metric; the half-space search serves every
            # epsilon at once, so the other epsilons add half-space rows (real curves)
            for r, metric in [(r, "linf") for r in linf[:2] + linf[3:]] + [(r, "l2") for r in l2[1:]]:
                paper = _opts(risk=r["risk"], adv_risk=r["adv_risk"], adv_risk_std=r.get("adv_risk_std"),
                              pca_adv_risk=r.get("pca_adv_risk"))
                rows.append(RowSpec(dataset=dataset, metric=metric, alpha=r["alpha"],
                                    epsilon=r["epsilon"], epsilon_text=r["epsilon_text"],
                                    family="halfspace", protocol="holdout", paper=paper))
            linf, l2 = linf[2:3], l2[:1]
        for r in linf:
            common = dict(dataset=dataset, metric="linf", alpha=r["alpha"], epsilon=r["epsilon"],
                          epsilon_text=r["epsilon_text"])
            paper = _opts(risk=r["risk"], adv_risk=r["adv_risk"], adv_risk_std=r["adv_risk_std"])
            paper_opts = _opts(clusters=r["clusters"], q=r["q"], box="symmetric", repeats=repeats)
            rows.append(RowSpec(**common, family="boxes", protocol="paper", paper=paper,
                                options=paper_opts))
            if r.get("epsilon_2019") is not None:  # the same row at the 2019 code's decimal
                rows.append(RowSpec(
                    dataset=dataset, metric="linf", alpha=r["alpha"], epsilon=r["epsilon_2019"],
                    epsilon_text=f"{r['epsilon_2019']:g}", family="boxes", protocol="paper",
                    options=paper_opts, group="as_2019",
                    paper=paper + _opts(stated_epsilon_text=r["epsilon_text"])))
            rows.extend(_holdout_rows(common, "linf", grids, paper))
        for r in ref["defences"]:
            if r["dataset"] != dataset or quick:
                continue
            common = dict(dataset=dataset, metric=r["metric"], alpha=r["alpha"],
                          epsilon=r["epsilon"], epsilon_text=r["epsilon_text"], group="defence")
            paper = _opts(risk=r["paper_risk"], adv_risk=r["paper_adv_risk"],
                          defence=r["defence"], defence_risk=r["defence_risk"],
                          defence_adv_risk=r["defence_adv_risk"])
            rows.append(RowSpec(**common, family="best", protocol="holdout", paper=paper,
                                options=_family_options(r["metric"], grids, r.get("clusters"))))
        for r in l2:
            common = dict(dataset=dataset, metric="l2", alpha=r["alpha"], epsilon=r["epsilon"],
                          epsilon_text=r["epsilon_text"])
            paper = _opts(risk=r["risk"], adv_risk=r["adv_risk"], pca_adv_risk=r["pca_adv_risk"])
            if not quick:  # quick mode keeps one l2 neighbour step (the holdout one)
                rows.append(RowSpec(**common, family="balls", protocol="paper", paper=paper,
                                    options=_opts(clusters=r["clusters"], delta=r["delta"])))
            rows.append(RowSpec(**common, family="pca", protocol="paper", paper=paper))
            rows.extend(_holdout_rows(common, "l2", grids, paper, clusters=r["clusters"]))
    else:  # fashion-mnist: no paper figures; the same families at alpha = 0.05
        settings = ref["fashion_mnist_settings"]
        for metric in ("linf", "l2"):
            eps_list = settings[metric]["epsilons"][:1] if quick else settings[metric]["epsilons"]
            for eps in settings[metric]["epsilons"][len(eps_list):]:  # quick: half-space curves
                rows.append(RowSpec(dataset=dataset, metric=metric, alpha=settings[metric]["alpha"],
                                    epsilon=eps, epsilon_text=f"{eps:g}", family="halfspace",
                                    protocol="holdout"))
            for eps in eps_list:
                common = dict(dataset=dataset, metric=metric, alpha=settings[metric]["alpha"],
                              epsilon=eps, epsilon_text=f"{eps:g}")
                rows.extend(_holdout_rows(common, metric, grids, (), clusters=GREEDY_T))
    return rows


def _family_options(metric, grids, clusters=None) -> tuple:
    """Options of a holdout row's own family (and of its ``best``): tight
    boxes over the l-inf T grid; the balls' T (a grid holding the paper's T,
    ``clusters``) and coverage tuned on the validation split."""
    if metric == "linf":
        return _opts(box="tight", t_grid=tuple(grids["linf"]))
    t_grid = tuple(sorted({*grids["l2"], clusters or GREEDY_T}))
    return _opts(t_grid=t_grid, delta=HOLDOUT_DELTA)


def _holdout_rows(common, metric, grids, paper, clusters=None) -> list[RowSpec]:
    main = "boxes" if metric == "linf" else "balls"
    family_opts = _family_options(metric, grids, clusters)
    return [
        RowSpec(**common, family=main, protocol="holdout", paper=paper, options=family_opts),
        RowSpec(**common, family="halfspace", protocol="holdout", paper=paper),
        RowSpec(**common, family="best", protocol="holdout", paper=paper, options=family_opts),
    ]


# ----------------------------------------------------------------- running


class Runner:
    """Runs rows against opened datasets, keeping results in ``results.json``."""

    def __init__(self, out_dir: Path, *, force: bool = False, seed: int = 0, log=print,
                 progress=None, row_command=None):
        """``row_command(spec, data_ref)``: the one-line command each row records
        (the CLI's ``numbaconc measure ...``); None records none."""
        self.out_dir = Path(out_dir)  # made by the first write: a run that computes nothing leaves nothing
        self.results_path = self.out_dir / "results.json"
        self.force = force
        self.seed = seed
        self.log = log
        self.progress = progress
        self.row_command = row_command
        self.rows: dict = {}
        self.weights = None  # numbaconc.lu.LabelWeights of the dataset at hand (rows with gamma)
        self.verified: set = set()  # keys of rows computed or checked against their data
        if self.results_path.exists() and not force:
            self.rows = read_rows(self.results_path)
        self._contexts: dict = {}

    def why_not_served(self, row: dict, ds) -> str | None:
        """None when a saved row provably belongs to ``ds``'s exact bytes and is
        whole: its own digest matches its content (so its parameters are the
        ones its key was made from), it was computed on data with ``ds``'s
        content digest, and its region file loads and matches its digest.
        Otherwise the reason, for the one-line log."""
        if row.get("row_digest") != row_digest(row):
            return ("saved without a digest (an older numbaconc)" if "row_digest" not in row
                    else "the row was changed after it was written")
        if row.get("data_digest") != ds.content_digest:
            return "computed on different data (content digest differs)"
        if "error" not in row:
            region_file = row.get("region_file")
            if not isinstance(region_file, str):
                return "no region file"
            try:
                Region.load(self.out_dir / region_file)
            except NumbaconcError as exc:
                return str(exc)
        return None

    def verify_rows(self, dataset: str, ds) -> None:
        """Check every saved row of ``dataset`` against ``ds`` (for the report)."""
        left_out = 0
        for key, row in self.rows.items():
            if key in self.verified or row["spec"].get("dataset") != dataset:
                continue
            if self.why_not_served(row, ds) is None:
                self.verified.add(key)
            else:
                left_out += 1
        if left_out:
            self.log(f"{dataset}: {left_out} saved row(s) in {self.results_path} do not match the "
                     "data or are damaged; left out of the report (rerun without --report-only "
                     "to recompute them)")

    def report_rows(self) -> list[dict]:
        """The rows a report may show: computed now, or verified against their data."""
        return [row for key, row in self.rows.items() if key in self.verified]

    def context(self, ds, protocol, gamma=None) -> Concentration:
        key = (str(ds.path), protocol, gamma)
        # one dataset at a time: drop the other datasets' contexts (their
        # neighbour lists are GBs; `reproduce all` held three datasets' at once)
        for other in [k for k in self._contexts if k[0] != key[0]]:
            del self._contexts[other]
        if key not in self._contexts:
            weights = None
            if gamma is not None:
                if self.weights is None:
                    raise NumbaconcError("a row with gamma needs label weights (--lu)")
                weights = dataclasses.replace(self.weights, gamma=gamma)
            self._contexts[key] = Concentration(ds, protocol=protocol, seed=self.seed,
                                                progress=self.progress, weights=weights)
        return self._contexts[key]

    def run_all(self, specs, ds, data_ref: str) -> list[dict]:
        """Run rows in order, first telling each protocol's context which
        epsilons are coming, so that epsilon-independent work is done once."""
        grids: dict = {}
        for s in specs:
            if s.family in ("halfspace", "best") and (
                    self.force or s.key not in self.rows or "error" in self.rows[s.key]):
                grids.setdefault((s.protocol, s.metric, s.alpha, s.opts.get("gamma")),
                                 []).append(s.epsilon)
        for (protocol, metric, alpha, gamma), epsilons in grids.items():
            self.context(ds, protocol, gamma).expect_epsilons(metric, alpha, epsilons)
        return [self.run(spec, ds, data_ref) for spec in specs]

    def run(self, spec: RowSpec, ds, data_ref: str) -> dict:
        name = f"{spec.dataset} {spec.metric} eps={spec.epsilon_text} {spec.family} {spec.protocol}"
        saved = self.rows.get(spec.key)
        if saved is not None and "error" not in saved:
            why = self.why_not_served(saved, ds)
            if why is None:
                self.log(f"skip (done): {name}")
                self.verified.add(spec.key)
                return saved
            self.log(f"recompute ({why}): {name}")
        self.log(f"run: {name}")
        t0 = time.perf_counter()
        row = dict(key=spec.key, spec=_spec_dict(spec))
        if self.row_command is not None:
            row["command"] = self.row_command(spec, data_ref)
        row["data_digest"] = ds.content_digest
        try:
            conc = self.context(ds, spec.protocol, spec.opts.get("gamma"))
            outcome = conc.run(spec.family, metric=spec.metric, alpha=spec.alpha,
                               epsilon=spec.epsilon, **spec.opts)
            if spec.family == "best":
                winner, estimates = outcome
                row.update(winner.to_dict(), winner=winner.family,
                           families=[e.to_dict() for e in estimates])
            else:
                winner = outcome
                row.update(winner.to_dict())
            region_path = self.out_dir / "regions" / f"{spec.key}.h5"
            winner.region.save(region_path)
            row["region_file"] = str(region_path.relative_to(self.out_dir))
        except NumbaconcError as exc:
            row["error"] = str(exc)
            self.log(f"  failed: {exc}")
        row["wall_seconds"] = time.perf_counter() - t0
        row = _normalised(row)
        row["row_digest"] = row_digest(row)
        self.rows[spec.key] = row
        self.verified.add(spec.key)
        self.save()
        return row

    def save(self):
        payload = dict(format_version=RESULTS_FORMAT, versions=versions(),
                       rows=list(self.rows.values()))
        write_json(self.results_path, payload, indent=1)


def _normalised(row: dict) -> dict:
    """The row as it reads back from JSON (tuples as lists, numpy as Python)."""
    return json.loads(json.dumps(row, default=jsonable))


def row_digest(row: dict) -> str:
    """SHA-256 of a row's content (all but the digest itself), in canonical JSON."""
    body = {k: v for k, v in row.items() if k != "row_digest"}
    text = json.dumps(_normalised(body), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class ResultsUnreadable(NumbaconcError):
    """results.json cannot be used; the CLI adds how to start afresh."""


def read_rows(path: Path) -> dict:
    """Rows of a results.json by key, after checking its structure (a
    damaged or foreign file is one line, never a TypeError later). Whether
    each row may be served is decided per row (``Runner.why_not_served``)."""
    try:
        saved = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ResultsUnreadable(f"{path}: unreadable ({os_reason(exc)})") from None
    rows = saved.get("rows") if isinstance(saved, dict) else None
    if not isinstance(rows, list):
        raise ResultsUnreadable(f"{path}: not a numbaconc results file (no list of rows)")
    by_key = {}
    for number, row in enumerate(rows, 1):
        if not (isinstance(row, dict) and isinstance(row.get("key"), str)
                and isinstance(row.get("spec"), dict)):
            raise ResultsUnreadable(f"{path}: row {number} is not a numbaconc result row "
                                    "(needs a key and a spec)")
        by_key[row["key"]] = row
    return by_key


def _spec_dict(spec: RowSpec) -> dict:
    out = asdict(spec)
    out["options"] = dict(spec.options)
    out["paper"] = dict(spec.paper)
    return out


# ----------------------------------------------------------------- datasets


def locate(name: str, data_dir: Path | None):
    """Open dataset ``name``: bundled MNIST, else imported from ``data_dir``
    (a ../shared/data-style folder) into the cache. None (with a reason) if absent."""
    kind, rel = SOURCES[name]
    src = Path(data_dir) / rel if data_dir is not None else None
    if src is None or not src.exists():
        if name == "mnist":  # bundled: the same bytes as ../shared/data/mnist
            return datasets.open_dataset("mnist"), "mnist", None
        if src is None:
            return None, None, f"{name}: no --data-dir given (only MNIST is bundled)"
        return None, None, f"{name}: {src} not found"
    files = sorted(src.glob("*.gz")) if src.is_dir() else [src]
    checksum = datasets.file_sha256(files)
    out = datasets.cache_dir() / f"{name}-{checksum[:16]}.h5"
    datasets.cached_import(out, lambda path: datasets.import_dataset(kind, src, path, name=name))
    return datasets.open_dataset(out), f"{name}.h5", None


def curve_rows(dataset_name: str, *, metric: str, alpha, epsilons, eps_texts,
               methods, protocol: str, options: dict) -> list[RowSpec]:
    """One row per (alpha, epsilon, method), for ``numbaconc curve``;
    ``alpha``: one level or a sequence of them."""
    opts = _opts(**options)
    alphas = [float(a) for a in (alpha if isinstance(alpha, (list, tuple)) else [alpha])]
    return [RowSpec(dataset=dataset_name, metric=metric, alpha=a, epsilon=eps,
                    epsilon_text=text, family=method, protocol=protocol, options=opts,
                    group="curve")
            for a in alphas for eps, text in zip(epsilons, eps_texts) for method in methods]


# ------------------------------------------------------------ lower bounds


def report_bounds(runner: Runner, dataset: str, ds, *, compute: bool = True) -> dict:
    """The label-aware lower bound (numbaconc.optimal_loss) on the test split at
    every epsilon of ``dataset``'s rows: {(metric, epsilon): BoundRow dict}.

    Kept in ``<out>/bounds.json`` by the data's content digest, so a rerun
    (and ``--report-only``) reads them instead of running the range search
    again; ``compute=False`` returns only what is kept."""
    path = runner.out_dir / "bounds.json"
    kept = {}
    if path.exists():
        try:
            kept = json.loads(path.read_text())
        except (OSError, ValueError):
            kept = {}
    entry = kept.get(dataset)
    if entry is None or entry.get("data_digest") != ds.content_digest:
        entry = dict(data_digest=ds.content_digest, rows=[])
    have = {(r["metric"], round(r["epsilon"], 10)) for r in entry["rows"]}
    wanted = defaultdict(set)
    for row in runner.rows.values():
        spec = row["spec"]
        if spec.get("dataset") == dataset and (spec["metric"], round(spec["epsilon"], 10)) not in have:
            wanted[spec["metric"]].add(round(spec["epsilon"], 10))
    if compute and wanted and ds.test.y is not None:
        from .optimal_loss import dataset_lower_bound

        for metric, epsilons in wanted.items():
            runner.log(f"lower bound: {dataset} {metric} eps={','.join(f'{e:g}' for e in sorted(epsilons))}")
            found = dataset_lower_bound(ds, metric=metric, epsilons=sorted(epsilons), split="test")
            entry["rows"] += [dict(asdict(r), metric=metric) for r in found.rows]
        kept[dataset] = entry
        write_json(path, kept)
    return {(r["metric"], round(r["epsilon"], 10)): r for r in entry["rows"]}


# ---------------------------------------------------------- reproduction


def run_reproduction(which: str, *, out: Path, data_dir=None, quick: bool = False,
                     force: bool = False, report_only: bool = False, seed: int = 0,
                     command: str | None = None, row_command=None, log=print,
                     progress=None) -> Path:
    """``numbaconc.reproduction``: every dataset of ``which``, then the report."""
    import os

    from .outputs import check_output_folder
    from .report import write_report

    if which not in DATASETS + ("all", "cifar10-lu"):
        raise NumbaconcError(f"unknown dataset {which!r} (choose from {', '.join(DATASETS)}, all, "
                             "cifar10-lu)")
    if report_only and force:
        raise OptionError("{report_only} and {force} exclude each other",
                          report_only="report_only=True", force="force=True")
    check_output_folder(out)
    datasets.cache_dir()
    started = time.perf_counter()
    if which == "cifar10-lu":
        runner = Runner(out, force=force, seed=0, log=log, progress=progress,
                        row_command=row_command)
        return _reproduce_lu(runner, out, data_dir, quick=quick, report_only=report_only,
                             command=command or f"numbaconc.reproduction({which!r})", started=started,
                             progress=progress)
    names = DATASETS if which == "all" else (which,)
    runner = Runner(out, force=force, seed=seed, log=log, progress=progress,
                    row_command=row_command)
    notes, pictures, bounds = {}, {}, {}
    for name in names:
        ds, data_ref, reason = locate(name, data_dir)
        if ds is None:
            log(f"[yellow]skipped[/yellow] {reason}")
            continue
        with ds:
            if not report_only:
                runner.run_all(plan(name, quick=quick), ds, data_ref)
            runner.verify_rows(name, ds)  # saved rows join the report only if they match ds
            bounds[name] = report_bounds(runner, name, ds, compute=not report_only)
            if data_ref != "mnist":
                src = datasets.describe(ds)
                notes[name] = (f"Data: `numbaconc data import {name} <{name} source> -o {data_ref}` "
                               f"(checksum {src['checksum'][:16]}…).")
            else:
                notes[name] = "Data: the bundled MNIST (`mnist`)."
            try:
                pictures[name] = _pictures(runner, name, ds, out)
            except NumbaconcError as exc:  # e.g. matplotlib not installed: the tables still stand
                log(f"[yellow]no pictures[/yellow]: {exc}")
    done = runner.report_rows()
    if not done:
        raise NumbaconcError("no dataset could be run (see the messages above)")
    info = dict(versions(), cores=os.cpu_count())
    return write_report(done, out / "report.md", command=command or f"numbaconc.reproduction({which!r})",
                        versions=info, wall_seconds=time.perf_counter() - started,
                        data_notes=notes, pictures=pictures, bounds=bounds)


def _reproduce_lu(runner: Runner, out: Path, data_dir, *, quick: bool, report_only: bool,
                  command: str, started: float, progress=None) -> Path:
    """``reproduce cifar10-lu`` (numbaconc.lu_reproduce): the label-uncertainty rows, then
    their report."""
    from . import lu_reproduce

    if data_dir is None:
        raise OptionError("cifar10-lu needs {data_dir} (a folder with cifar-10/cifar10.npz and "
                          "cifar-10h/)", data_dir="data_dir")
    info = lu_reproduce.run(runner, Path(data_dir), quick=quick, report_only=report_only,
                            log=runner.log, progress_for=progress)
    done = runner.report_rows()
    if not done:
        raise NumbaconcError("no row could be run (see the messages above)")
    return lu_reproduce.write_lu_report(done, out, command=command, versions=versions(),
                                        wall_seconds=time.perf_counter() - started, info=info)


def _pictures(runner: Runner, name: str, ds, out: Path) -> list:
    """Curves per metric, region centres, and example points (MNIST-like data)."""
    from .plots import plot_centers, plot_curve, plot_examples

    pics = []
    rows = [r for r in runner.report_rows() if r["spec"]["dataset"] == name and "error" not in r
            and r["spec"]["group"] == "table"]
    for metric in ("linf", "l2"):
        part = [r for r in rows if r["spec"]["metric"] == metric and r["spec"]["family"] != "pca"]
        if len({r["spec"]["epsilon"] for r in part}) >= 1 and part:
            path = plot_curve(part, out / f"{name}-{metric}-curve.png", alpha=part[0]["alpha"],
                              title=f"{name}, {metric}: adversarial risk against epsilon")
            pics.append((f"{metric}: adversarial risk against ε", path.name))
    # prefer the paper-protocol boxes: symmetric boxes are centred on the k-means means,
    # which read as images; tight boxes are centred on the middle of each pixel range
    for family, protocols in (("boxes", ("paper", "holdout")), ("balls", ("holdout", "paper"))):
        chosen = sorted((r for r in rows if r["spec"]["family"] == family
                         and r["spec"]["protocol"] in protocols),
                        key=lambda r: protocols.index(r["spec"]["protocol"]))
        if not chosen:
            continue
        row = chosen[0]
        region = Region.load(out / row["region_file"])
        caption = f"{family} centres (ε = {row['spec']['epsilon_text']}, {row['spec']['protocol']})"
        path = plot_centers(region, out / f"{name}-{family}-centres.png", image_shape=ds.image_shape,
                            title=caption)
        pics.append((caption, path.name))
        if family == "boxes" and len(ds.image_shape) == 2:
            caption = f"test points against the boxes region (ε = {row['spec']['epsilon_text']})"
            path = plot_examples(region, ds.test.array(), out / f"{name}-examples.png",
                                 image_shape=ds.image_shape, title=caption)
            pics.append((caption, path.name))
    return pics
