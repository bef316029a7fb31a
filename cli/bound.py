"""``numbaconc bound``: the optimal adversarial 0-1 loss of the labelled sample."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from numbaconc import api
from numbaconc.optimal_loss import save_certificate
from numbaconc.errors import NumbaconcError
from numbaconc.outputs import write_json

from .common import console, handles_errors, parse_floats, pct, progress_callback
from .measure import Metric


class Split(str, Enum):
    train = "train"
    test = "test"


def register(app: typer.Typer):
    app.command("bound")(bound)


def check_writable(path: Optional[Path], option: str):
    """Fail before any work when an output cannot be written where asked."""
    if path is None:
        return
    if path.is_dir():
        raise NumbaconcError(f"{option} {path}: is a folder, not a file")
    parent = path.parent
    while not parent.exists():  # atomic_path creates missing folders
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise NumbaconcError(f"{option} {path}: cannot write in {parent}")


@handles_errors
def bound(
    data: Annotated[str, typer.Argument(help="HDF5 dataset (with labels) or bundled name (mnist).")],
    metric: Annotated[Metric, typer.Option(case_sensitive=False, help="Attacker's metric.")] = Metric.l2,
    epsilon: Annotated[str, typer.Option(help="Budgets in [0,1] units, comma-separated (8/255 style accepted).")] = "1.0",
    classes: Annotated[Optional[str], typer.Option(help="Only these labels, e.g. 3,7 (default: every class).")] = None,
    degree: Annotated[int, typer.Option(min=2, max=3, help="2: edges (matching); 3: edges and jointly attackable triangles (HiGHS LP).")] = 2,
    split: Annotated[Split, typer.Option(help="Which split's points.")] = Split.train,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the rows (one per epsilon) as JSON.")] = None,
    certificate: Annotated[Optional[Path], typer.Option("--certificate", help="Write the matching / LP primal and dual (HDF5).")] = None,
):
    """Lower bound on the adversarial 0-1 loss of ANY classifier on the labelled split.

    The conflict graph joins points of different classes within 2 epsilon; the
    bound is its LP (degree 2: maximum matching) as a fraction of the points.
    It uses the corrupted-input definition of adversarial risk (any change of
    the output away from the label counts), not the error-region definition
    of the concentration estimates.
    """
    check_writable(json_out, "--json")
    check_writable(certificate, "--certificate")
    eps = parse_floats(epsilon, "--epsilon")
    chosen = None
    if classes is not None:
        try:
            chosen = [int(c) for c in classes.split(",") if c.strip()]
        except ValueError:
            raise NumbaconcError(f"--classes: cannot read {classes!r} (e.g. 3,7)") from None
    with progress_callback("range search") as progress:
        result = api.bound(data, metric=metric.value, epsilon=eps, split=split.value, degree=degree,
                           classes=chosen, progress=progress)
    name = result.inputs["dataset"]
    if json_out is not None:
        write_json(json_out, result.to_dict())
    if certificate is not None:
        save_certificate(result, certificate)
    print_bound(result, name)
    if json_out is not None:
        console.print(f"json: {json_out}")
    if certificate is not None:
        console.print(f"certificate: {certificate}")


def print_bound(result, name: str):
    title = (f"{name} {result.inputs.get('split', '')}  {result.metric}  n={result.n}  "
             f"classes={','.join(str(c) for c in result.classes)}  degree {result.degree}")
    table = Table(title=title)
    for col in ("epsilon", "lower bound", "edges", "points in a conflict", "triangles", "solve (s)"):
        table.add_column(col, justify="right")
    for row in result.rows:
        table.add_row(f"{row.epsilon:g}", pct(row.lower_bound) + (" (exactly 0)" if row.edges == 0 else ""),
                      f"{row.edges:,}", f"{row.conflicting_points:,}",
                      "–" if row.triangles is None else f"{row.triangles:,}", f"{row.solve_seconds:.2f}")
    console.print(table)
    console.print(f"range search: {result.range_search_seconds:.1f} s.  The bound is the smallest "
                  "adversarial 0-1 loss any classifier can reach on these points (corrupted-input "
                  "definition); it is not the concentration estimate (error-region definition).")
