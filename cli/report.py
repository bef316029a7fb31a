"""``numbaconc reproduce`` and ``numbaconc curve``."""

from __future__ import annotations

import os
import shlex
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from numbaconc import datasets
from numbaconc.errors import NumbaconcError
from numbaconc.measure import FAMILIES, METHODS, versions
from numbaconc.plots import plot_centers, plot_curve, plot_examples
from numbaconc.regions import Region
from numbaconc.report import write_report
from numbaconc.reproduce import (DATASETS, ResultsUnreadable, Runner, curve_rows, locate, plan,
                                 report_bounds, write_json)

from .common import check_outputs, console, err_console, handles_errors, parse_floats, progress_callback


class Which(str, Enum):
    mnist = "mnist"
    fashion_mnist = "fashion-mnist"
    cifar10 = "cifar10"
    all = "all"
    cifar10_lu = "cifar10-lu"


def register(app: typer.Typer):
    app.command("reproduce")(reproduce)
    app.command("curve")(curve)


def _command_line() -> str:
    return "numbaconc " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _log(message: str):
    err_console.print(message, highlight=False)


@handles_errors
def reproduce(
    which: Annotated[Which, typer.Argument(help="Dataset(s) to run the 2019 paper's settings on.")] = Which.mnist,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.md, results.json, plots.")] = Path("runs/reproduce"),
    data_dir: Annotated[Optional[Path], typer.Option(help="A ../shared/data-style folder (fashion-mnist/, cifar-10/). MNIST is bundled.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="One epsilon per metric, short T grid, 3 restarts, no paper-protocol balls row: every family in a few minutes.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Recompute rows already in results.json.")] = False,
    report_only: Annotated[bool, typer.Option("--report-only", help="Compute nothing: render report.md and plots from the finished rows in results.json.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the validation split and k-means.")] = 0,
):
    """Run the paper's tables (both protocols, every family) and write a report."""
    if report_only and force:
        raise NumbaconcError("--report-only and --force exclude each other")
    check_outputs(folders=[out], cache=True)
    started = time.perf_counter()
    if which == Which.cifar10_lu:
        return reproduce_lu(out, data_dir, quick, force, report_only, started)
    names = DATASETS if which == Which.all else (which.value,)
    runner = _runner(out, force=force, seed=seed)
    notes, pictures, bounds = {}, {}, {}
    for name in names:
        ds, data_ref, reason = locate(name, data_dir)
        if ds is None:
            _log(f"[yellow]skipped[/yellow] {reason}")
            continue
        with ds, progress_callback(name) as progress:
            runner.progress = progress
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
                _log(f"[yellow]no pictures[/yellow]: {exc}")
    done = runner.report_rows()
    if not done:
        raise NumbaconcError("no dataset could be run (see the messages above)")
    info = dict(versions(), cores=os.cpu_count())
    report = write_report(done, out / "report.md", command=_command_line(), versions=info,
                          wall_seconds=time.perf_counter() - started, data_notes=notes,
                          pictures=pictures, bounds=bounds)
    console.print(f"report: {report}\nresults: {runner.results_path}")


def reproduce_lu(out: Path, data_dir: Optional[Path], quick: bool, force: bool, report_only: bool,
                 started: float):
    """``reproduce cifar10-lu`` (numbaconc.lu_reproduce)."""
    from numbaconc import lu_reproduce

    if data_dir is None:
        raise NumbaconcError("cifar10-lu needs --data-dir (a folder with cifar-10/cifar10.npz and "
                             "cifar-10h/)")
    runner = _runner(out, force=force, seed=0)
    with progress_callback("cifar10-lu") as progress:
        info = lu_reproduce.run(runner, data_dir, quick=quick, report_only=report_only,
                                progress_for=progress)
    done = runner.report_rows()
    if not done:
        raise NumbaconcError("no row could be run (see the messages above)")
    report = lu_reproduce.write_lu_report(done, out, command=_command_line(), versions=versions(),
                                          wall_seconds=time.perf_counter() - started, info=info)
    console.print(f"report: {report}\nresults: {runner.results_path}")


def _runner(out: Path, *, force: bool, seed: int) -> Runner:
    try:
        return Runner(out, force=force, seed=seed, log=_log)
    except ResultsUnreadable as exc:
        raise NumbaconcError(f"{exc}; move it away, or pass --force to recompute every row") from None


def _pictures(runner: Runner, name: str, ds, out: Path) -> list:
    """Curves per metric, region centres, and example points (MNIST-like data)."""
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


@handles_errors
def curve(
    data: Annotated[str, typer.Argument(help="HDF5 dataset or bundled name (mnist).")],
    metric: Annotated[str, typer.Option(help="linf or l2.")] = "linf",
    alpha: Annotated[str, typer.Option(help="Risk level, or a comma list (e.g. 0.005,0.01,0.02): "
                                            "with several, the plot is adversarial risk against alpha.")] = "0.01",
    epsilon: Annotated[str, typer.Option(help="Comma list in [0,1] units, e.g. 0.1,0.2,0.3 or 2/255,4/255.")] = "0.1,0.2,0.3,0.4",
    method: Annotated[str, typer.Option(help="One of boxes, balls, halfspace, pca, best (best = every family).")] = "best",
    protocol: Annotated[str, typer.Option(help="holdout or paper.")] = "holdout",
    clusters: Annotated[Optional[int], typer.Option("--clusters", "-T", min=1, help="Boxes/balls T (boxes: q is then searched).")] = None,
    q: Annotated[Optional[float], typer.Option(help="Boxes: fixed q (with --clusters).")] = None,
    t_grid: Annotated[str, typer.Option(help="Boxes: T grid when tuning.")] = "5,10,15,20",
    box: Annotated[str, typer.Option(help="Boxes: symmetric or tight.")] = "tight",
    domain: Annotated[Optional[bool], typer.Option(
        "--domain/--no-domain",
        help="Boxes: count E_eps within the pixel range (default: on for holdout, off for paper).")] = None,
    delta: Annotated[float, typer.Option(min=0.0, help="Balls: extra coverage delta.")] = 0.0,
    repeats: Annotated[int, typer.Option(min=1, help="Boxes: k-means restarts.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for curve.json and curve.png.")] = Path("runs/curve"),
    force: Annotated[bool, typer.Option("--force", help="Recompute finished rows.")] = False,
    lu: Annotated[Optional[Path], typer.Option(
        "--lu", help="Label uncertainty .npy (see `measure --lu`): balls, cubes and half-spaces "
                     "keep mean LU >= --gamma.")] = None,
    gamma: Annotated[float, typer.Option(min=0.0, max=2.0, help="With --lu: the LU threshold.")] = 0.17,
):
    """Concentration across an epsilon grid (or an alpha grid): one run, every neighbour list
    and clustering reused."""
    from numbaconc.measure import canonical_metric

    metric = canonical_metric(metric)
    alphas = parse_floats(alpha, "--alpha")
    if not alphas or not all(0.0 < a < 1.0 for a in alphas):
        raise NumbaconcError(f"--alpha: every level must be in (0, 1), got {alpha!r}")
    if method not in METHODS:
        raise NumbaconcError(f"unknown method {method!r} (choose from {', '.join(METHODS)})")
    texts = [t.strip() for t in epsilon.split(",") if t.strip()]
    eps = parse_floats(epsilon, "--epsilon")
    families = FAMILIES[metric]
    if lu is not None:
        from numbaconc.lu import LU_FAMILIES

        families = LU_FAMILIES[metric]
    methods = list(families) + ["best"] if method == "best" else [method]
    if metric == "linf" and method != "cubes":
        options = dict(box=box, repeats=repeats, clusters=clusters, q=q, domain=domain,
                       t_grid=None if clusters is not None
                       else tuple(int(t) for t in parse_floats(t_grid, "--t-grid")))
    else:
        options = dict(clusters=clusters or (20 if metric == "l2" else 10), delta=delta)
    check_outputs(folders=[out], cache=True)
    runner = _runner(out, force=force, seed=seed)
    with datasets.open_dataset(data) as ds, progress_callback("curve") as progress:
        runner.progress = progress
        if lu is not None:  # rows with gamma carry the vector's digest in their key
            from numbaconc.lu import LabelWeights

            runner.weights = LabelWeights.from_file(ds, lu, gamma)
            options.update(gamma=gamma, lu=datasets.file_sha256([lu])[:16])
        specs = curve_rows(data, metric=metric, alpha=alphas, epsilons=eps, eps_texts=texts,
                           methods=methods, protocol=protocol, options=options)
        rows = runner.run_all(specs, ds, data)
    good = [r for r in rows if "error" not in r]
    from rich.table import Table

    from .common import pct

    table = Table(title=f"{data} {metric} alpha={','.join(f'{a:g}' for a in alphas)} ({protocol})")
    for col in ("alpha", "epsilon", "family", "test risk", "test adv risk", "95 % CI", "adv risk at alpha [95 %]",
                "train adv risk"):
        table.add_column(col)
    for row in rows:
        a_text = f"{row['spec']['alpha']:g}"
        if "error" in row:
            table.add_row(a_text, row["spec"]["epsilon_text"], row["spec"]["family"], "failed", row["error"],
                          "", "", "")
            continue
        family = row["family"] + (" (best)" if row["spec"]["family"] == "best" else "")
        t = row["test"]
        at = t.get("adv_risk_at_alpha")
        at_text = "–" if at is None else (f"{pct(at)} [{100 * t['adv_risk_at_alpha_ci'][0]:.2f}, "
                                          f"{100 * t['adv_risk_at_alpha_ci'][1]:.2f}]")
        table.add_row(a_text, row["spec"]["epsilon_text"], family, pct(t["risk"]),
                      pct(t["adv_risk"], t.get("adv_risk_std")),
                      f"[{100 * t['adv_risk_ci'][0]:.2f}, {100 * t['adv_risk_ci'][1]:.2f}] %", at_text,
                      pct(row["train"]["adv_risk"]))
    console.print(table)  # first: a write failure below (disk full) still shows the figures
    write_json(out / "curve.json", dict(command=_command_line(), versions=versions(), rows=rows))
    if good:
        if len(alphas) > 1:
            plot_curve(good, out / "curve.png", x="alpha",
                       title=f"{Path(data).stem}, {metric}: adversarial risk against alpha")
        else:
            plot_curve(good, out / "curve.png", alpha=alphas[0],
                       title=f"{Path(data).stem}, {metric}, alpha={alphas[0]:g}")
    console.print(f"json: {out / 'curve.json'}" + (f"\nplot: {out / 'curve.png'}" if good else ""))
