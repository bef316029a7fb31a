"""``numbaconc measure`` and ``numbaconc evaluate``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from numbaconc import api, datasets
from numbaconc.boxes import BOX_SHAPES, DEFAULT_T_GRID
from numbaconc.api import measure as run_measure
from numbaconc.errors import NumbaconcError
from numbaconc.concentration import METHODS, PROTOCOLS
from numbaconc.outputs import write_json
from numbaconc.regions import Region
from numbaconc.validation import REGION_METRICS, metric_names

from .common import (FORCE_HELP, check_outputs, console, handles_errors, parse_floats, pct,
                     progress_callback)


def _choices(name: str, values) -> type[Enum]:
    """A typer choice type whose values are the package's own list."""
    return Enum(name, {value: value for value in values}, type=str)


Method = _choices("Method", METHODS)
Metric = _choices("Metric", metric_names(REGION_METRICS))
Protocol = _choices("Protocol", PROTOCOLS)
Box = _choices("Box", BOX_SHAPES)


def register(app: typer.Typer):
    app.command("measure")(measure)
    app.command("evaluate")(evaluate)


@handles_errors
def measure(
    data: Annotated[str, typer.Argument(help="HDF5 dataset or bundled name (mnist).")],
    metric: Annotated[Metric, typer.Option(case_sensitive=False, help="Perturbation metric.")] = Metric.linf,
    epsilon: Annotated[str, typer.Option(help="Budget in [0,1] units (e.g. 0.3 or 8/255).")] = "0.3",
    alpha: Annotated[float, typer.Option(help="Risk level: the error region has measure >= alpha.")] = 0.01,
    method: Annotated[Method, typer.Option(help="Region family (best = every family for the metric).")] = Method.best,
    clusters: Annotated[Optional[int], typer.Option("--clusters", "-T", min=1, help=f"Boxes or balls T (balls: default {api.DEFAULT_BALLS}).")] = None,
    q: Annotated[Optional[float], typer.Option(help="Boxes: fraction of densest points to cover.")] = None,
    tune: Annotated[bool, typer.Option("--tune", help="Boxes: tune T over the grid and q by bisection. Balls (l2): tune T over the grid (or the one --clusters) and the coverage on the selection split.")] = False,
    t_grid: Annotated[Optional[str], typer.Option(help=f"T grid for --tune (boxes: {','.join(map(str, DEFAULT_T_GRID))}; balls: {','.join(map(str, api.DEFAULT_BALLS_T_GRID))}).")] = None,
    box: Annotated[Box, typer.Option(help="Boxes: symmetric (paper) or tight (per-coordinate min/max).")] = Box.symmetric,
    domain: Annotated[Optional[bool], typer.Option(
        "--domain/--no-domain",
        help="Boxes: count E_eps within the pixel range [0, 255] (faces whose grown copy leaves it "
             "bind nothing). Default: on for holdout, off for paper (the 2019 count).")] = None,
    delta: Annotated[float, typer.Option(min=0.0, help="Balls: extra coverage delta.")] = 0.0,
    ball_candidates: Annotated[Optional[int], typer.Option(
        "--ball-candidates", min=1,
        help="Balls / cubes: candidate centres are a seeded uniform sample of this many fitting "
             "rows, each evaluated exactly against every point (for large n). Default: every "
             "row (the exact greedy).")] = None,
    protocol: Annotated[Protocol, typer.Option(help="holdout (tune on a validation split) or paper (2019: looks at test).")] = Protocol.holdout,
    repeats: Annotated[int, typer.Option(min=1, help="Boxes: k-means restarts with seeds seed..seed+R-1.")] = 1,
    density_sample: Annotated[str, typer.Option(
        "--density-sample", metavar="auto|exact|M",
        help="Boxes: the density score. auto (exact all-pairs l1 kNN up to 200,000 fitting rows, else a seeded sample of 20,000), exact, or a sample of M fitting rows (k scaled to k m / n).")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the validation split and k-means.")] = 0,
    val_fraction: Annotated[float, typer.Option(help="holdout: fraction of train held out for selection.")] = 0.2,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the full result as JSON.")] = None,
    region_out: Annotated[Optional[Path], typer.Option("--region", help="Save the region (HDF5) for `evaluate`.")] = None,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    labels: Annotated[bool, typer.Option(
        "--labels", help="Also print the label-aware lower bound (`numbaconc bound`) on the test "
                         "split at the same epsilon.")] = False,
    lu: Annotated[Optional[Path], typer.Option(
        "--lu", help="Label uncertainty (.npy, one value in [0, 2] per point of the train split, or "
                     "of the source split of a `data import cifar10h --view` file): every ball / "
                     "cube / half-space region keeps mean LU >= --gamma.")] = None,
    gamma: Annotated[Optional[float], typer.Option(
        min=0.0, max=2.0, help="With --lu: the LU threshold (default 0.17, Zhang and Evans 2022); "
                               "an error without --lu.")] = None,
):
    """Estimate the concentration of DATA at (alpha, epsilon) with one region family."""
    eps = parse_floats(epsilon, "--epsilon")
    if len(eps) != 1:
        raise NumbaconcError("--epsilon takes one value here (use `numbaconc curve` for a grid)")
    check_outputs(files=[("--json", json_out), ("--region", region_out)], force=force, cache=True)
    with progress_callback("measure") as progress:
        result = run_measure(data, metric=metric.value, alpha=alpha, epsilon=eps[0], method=method.value,
                             protocol=protocol.value, clusters=clusters, q=q, tune=tune,
                             t_grid=None if t_grid is None else [int(t) for t in parse_floats(t_grid, "--t-grid")],
                             box=box.value,
                             domain=domain, delta=delta, repeats=repeats, seed=seed,
                             val_fraction=val_fraction, labels=labels, lu=lu, gamma=gamma,
                             ball_candidates=ball_candidates, density_sample=density_sample,
                             progress=progress)
    out = result.to_dict()
    print_result(out)  # first: a write failure below (disk full) still shows the figures
    if labels:
        print_lower_bound(out["lower_bound"])
    if region_out is not None:
        result.region.save(region_out)
        console.print(f"region: {region_out}")
    if json_out is not None:
        write_json(json_out, out)
        console.print(f"json: {json_out}")


def print_result(result: dict):
    rows = result.get("families") or [result]
    title = (f"{result['inputs']['dataset']}  {result['metric']}  alpha={result['alpha']:g}  "
             f"eps={result['epsilon']:g}  protocol={result['protocol']} (selection on {result['selection']})")
    table = Table(title=title)
    for col in ("family", "params", "train risk", "train adv", "test risk", "test adv risk", "95 % CI",
                "adv risk at α [95 %]", "valid", "expansion"):
        table.add_column(col)
    for row in rows:
        test, train = row["test"], row["train"]
        params = ", ".join(f"{k}={_short(v)}" for k, v in row["params"].items()
                           if k in ("clusters", "t_grid", "q", "box", "domain", "delta", "component", "power",
                                    "repeats")
                           or (k == "candidates" and v != "all"))
        density = row["params"].get("density") or {}
        if density.get("variant") == "sample":
            params += f", density: sample of {density['sample_rows']:,} (k'={density['k_sample']})"
        winner = " *" if row.get("family") == result.get("winner") and "families" in result else ""
        table.add_row(row["family"] + winner, params, pct(train["risk"]), pct(train["adv_risk"]),
                      pct(test["risk"], test.get("risk_std")), pct(test["adv_risk"], test.get("adv_risk_std")),
                      f"[{100 * test['adv_risk_ci'][0]:.2f}, {100 * test['adv_risk_ci'][1]:.2f}] %",
                      _at_alpha(test),
                      "yes" if row["valid"] else "no (test risk < alpha)",
                      "exact" if row["exact_expansion"] else "upper bound")
    console.print(table)
    if result["inputs"].get("gamma") is not None:
        from numbaconc.lu import print_lu_lines

        print_lu_lines(console, rows, result["inputs"]["gamma"], result.get("families_without_region"))
    truth = result.get("ground_truth")
    if truth:
        console.print(f"ground truth ({truth['relation']}): {pct(truth['concentration'])}; "
                      f"estimate respects it: {truth['estimate_respects_truth']}"
                      + (f"; interval at alpha covers it: {truth['at_alpha_covers_truth']}"
                         if "at_alpha_covers_truth" in truth else ""))
    console.print(f"time: {result['timings']['total']:.1f} s")


def print_lower_bound(row: dict):
    from numbaconc.optimal_loss import DEFINITIONS, ZERO_BOUND

    console.print(f"label-aware lower bound ({row['split']} split, n={row['n']}, eps={row['epsilon']:g}): "
                  f"[bold]{pct(row['lower_bound'])}[/bold] of the points, for any classifier "
                  f"({row['edges']:,} conflict pairs within 2 eps)")
    console.print(DEFINITIONS + (" " + ZERO_BOUND if row["edges"] == 0 else ""))


def _at_alpha(test: dict) -> str:
    """The frontier read at test risk alpha (numbaconc.frontier), where the family has one."""
    if test.get("adv_risk_at_alpha") is None:
        return "–" if "adv_risk_at_alpha_ci" not in test else "not reached"
    lo, hi = test["adv_risk_at_alpha_ci"]
    return f"{pct(test['adv_risk_at_alpha'])} [{100 * lo:.2f}, {100 * hi:.2f}]"


def _short(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@handles_errors
def evaluate(
    region_file: Annotated[Path, typer.Argument(help="Region saved by `measure --region`.")],
    data: Annotated[str, typer.Argument(help="HDF5 dataset or bundled name (mnist).")],
    split: Annotated[str, typer.Option(help="train, test or all.")] = "all",
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the figures as JSON.")] = None,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
):
    """Apply a saved region to a dataset: risk and adversarial risk per split."""
    from numbaconc.evaluate import evaluate_region

    check_outputs(files=[("--json", json_out)], force=force)
    region = Region.load(region_file)
    with datasets.open_dataset(data) as ds:
        result = evaluate_region(region, ds, split)
    table = Table(title=f"{region.kind} region (eps={result['epsilon']:g}, {result['expansion']}) on {ds.name}")
    for col in ("split", "n", "risk", "adv risk", "adv risk 95 % CI"):
        table.add_column(col)
    for name, fig in result["splits"].items():
        table.add_row(name, str(fig["n"]), pct(fig["risk"]), pct(fig["adv_risk"]),
                      f"[{100 * fig['adv_risk_ci'][0]:.2f}, {100 * fig['adv_risk_ci'][1]:.2f}] %")
    console.print(table)
    if json_out is not None:
        write_json(json_out, result)
        console.print(f"json: {json_out}")
