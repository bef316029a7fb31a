"""``numbaconc reproduce`` and ``numbaconc curve``."""

from __future__ import annotations

import shlex
import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from numbaconc import api
from numbaconc.boxes import BOX_SHAPES
from numbaconc.errors import NumbaconcError
from numbaconc.concentration import METHODS, PROTOCOLS
from numbaconc.reproduction import ResultsUnreadable
from numbaconc.validation import REGION_METRICS, metric_names

from .common import check_outputs, console, err_console, handles_errors, parse_floats, pct, progress_callback


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


def measure_command(spec, data_ref: str) -> str:
    """The one ``numbaconc measure`` command that regenerates a row (``reproduce.RowSpec``)."""
    opts = spec.opts
    parts = ["numbaconc measure", data_ref, f"--metric {spec.metric}",
             f"--epsilon {spec.epsilon_text}", f"--alpha {spec.alpha:g}",
             f"--method {spec.family}", f"--protocol {spec.protocol}"]
    if opts.get("clusters") is not None:
        parts.append(f"--clusters {opts['clusters']}")
    if opts.get("q") is not None:
        parts.append(f"--q {opts['q']:g}")
    if opts.get("t_grid"):
        parts.append("--tune --t-grid " + ",".join(map(str, opts["t_grid"])))
    if spec.family in ("boxes", "best") and spec.metric == "linf":
        if opts.get("box"):
            parts.append(f"--box {opts['box']}")
        if opts.get("domain") is not None:
            parts.append("--domain" if opts["domain"] else "--no-domain")
        if opts.get("density_sample") is not None:
            parts.append(f"--density-sample {opts['density_sample']}")
    if opts.get("repeats", 1) > 1:
        parts.append(f"--repeats {opts['repeats']}")
    if opts.get("delta") and (spec.metric == "l2" or spec.family == "cubes"):
        parts.append(f"--delta {opts['delta']:g}")
    if opts.get("gamma") is not None:  # label uncertainty (numbaconc.lu)
        parts.append(f"--lu <LU .npy> --gamma {opts['gamma']:g}")
    return " ".join(parts)


@contextmanager
def _run_folder():
    """A results.json that cannot be read: say how to start afresh."""
    try:
        yield
    except ResultsUnreadable as exc:
        raise NumbaconcError(f"{exc}; move it away, or pass --force to recompute every row") from None


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
    check_outputs(folders=[out], cache=True)
    with _run_folder(), progress_callback(which.value) as progress:
        report = api.reproduce(which.value, out=out, data_dir=data_dir, quick=quick, force=force,
                               report_only=report_only, seed=seed, command=_command_line(),
                               row_command=measure_command, log=_log, progress=progress)
    console.print(f"report: {report}\nresults: {out / 'results.json'}")


@handles_errors
def curve(
    data: Annotated[str, typer.Argument(help="HDF5 dataset or bundled name (mnist).")],
    metric: Annotated[str, typer.Option(help=" | ".join(metric_names(REGION_METRICS)) + ".")] = "linf",
    alpha: Annotated[str, typer.Option(help="Risk level, or a comma list (e.g. 0.005,0.01,0.02): "
                                            "with several, the plot is adversarial risk against alpha.")] = "0.01",
    epsilon: Annotated[str, typer.Option(help="Comma list in [0,1] units, e.g. 0.1,0.2,0.3 or 2/255,4/255.")] = "0.1,0.2,0.3,0.4",
    method: Annotated[str, typer.Option(help=" | ".join(METHODS) + " (best = every family, and the best of them).")] = "best",
    protocol: Annotated[str, typer.Option(help=" | ".join(PROTOCOLS) + ".")] = "holdout",
    clusters: Annotated[Optional[int], typer.Option("--clusters", "-T", min=1, help="Boxes/balls T (boxes: q is then searched; balls: default 20).")] = None,
    q: Annotated[Optional[float], typer.Option(help="Boxes: fixed q (with --clusters).")] = None,
    t_grid: Annotated[str, typer.Option(help="Boxes: T grid when tuning.")] = ",".join(map(str, api.CURVE_T_GRID)),
    box: Annotated[str, typer.Option(help="Boxes: " + " | ".join(BOX_SHAPES) + ".")] = "tight",
    domain: Annotated[Optional[bool], typer.Option(
        "--domain/--no-domain",
        help="Boxes: count E_eps within the pixel range (default: on for holdout, off for paper).")] = None,
    delta: Annotated[float, typer.Option(min=0.0, help="Balls: extra coverage delta.")] = 0.0,
    repeats: Annotated[int, typer.Option(min=1, help="Boxes: k-means restarts.")] = 1,
    density_sample: Annotated[str, typer.Option(
        "--density-sample", metavar="auto|exact|M",
        help="Boxes: the density score. auto (exact all-pairs l1 kNN up to 200,000 fitting rows, else a seeded sample of 20,000), exact, or a sample of M fitting rows (k scaled to k m / n).")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for curve.json and curve.png.")] = Path("runs/curve"),
    force: Annotated[bool, typer.Option("--force", help="Recompute finished rows.")] = False,
    lu: Annotated[Optional[Path], typer.Option(
        "--lu", help="Label uncertainty .npy (see `measure --lu`): balls, cubes and half-spaces "
                     "keep mean LU >= --gamma.")] = None,
    gamma: Annotated[Optional[float], typer.Option(
        min=0.0, max=2.0, help="With --lu: the LU threshold (default 0.17); an error without --lu.")] = None,
):
    """Concentration across an epsilon grid (or an alpha grid): one run, every neighbour list
    and clustering reused."""
    alphas = parse_floats(alpha, "--alpha")
    texts = [t.strip() for t in epsilon.split(",") if t.strip()]
    eps = parse_floats(epsilon, "--epsilon")
    check_outputs(folders=[out], cache=True)
    with _run_folder(), progress_callback("curve") as progress:
        result = api.curve(data, metric=metric, alpha=alphas, epsilon=eps, epsilon_texts=texts,
                           out=out, method=method, protocol=protocol, clusters=clusters,
                           q=q, t_grid=[int(t) for t in parse_floats(t_grid, "--t-grid")],
                           box=box, domain=domain, delta=delta, repeats=repeats, seed=seed,
                           force=force, save=False, command=_command_line(),
                           row_command=measure_command, log=_log, progress=progress,
                           lu=lu, gamma=gamma, density_sample=density_sample)
    rows = result.rows
    table = Table(title=f"{data} {result.metric} alpha={','.join(f'{a:g}' for a in alphas)} ({protocol})")
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
    result.save()
    good = any("error" not in r for r in rows)
    console.print(f"json: {out / 'curve.json'}" + (f"\nplot: {out / 'curve.png'}" if good else ""))
