"""``numbaconc knn``: exact k nearest neighbours, cached."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from numbaconc import datasets
from numbaconc.neighbours import cached_knn, save_knn
from numbaconc.validation import metric_names


from .common import FORCE_HELP, check_outputs, console, handles_errors, progress_callback


def register(app: typer.Typer):
    app.command("knn")(knn)


@handles_errors
def knn(
    data: Annotated[str, typer.Argument(help="HDF5 dataset or bundled name (mnist).")],
    metric: Annotated[str, typer.Option(help=" | ".join(metric_names()) + ".")] = "l1",
    k: Annotated[int, typer.Option("--k", min=1, help="Neighbours per point.")] = 50,
    split: Annotated[str, typer.Option(help="train or test (all pairs within the split).")] = "train",
    exclude_self: Annotated[bool, typer.Option("--exclude-self", help="Do not count a point as its own neighbour.")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Also write indices/distances to this HDF5 file.")] = None,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
):
    """All-pairs exact kNN within a split; computed once, then served from the cache."""
    check_outputs(files=[("--out", out)], force=force, cache=True)
    with datasets.open_dataset(data) as ds:
        with progress_callback(f"knn {metric} k={k}") as progress:
            result, path = cached_knn(ds, k, metric=metric, split=split,
                                      include_self=not exclude_self, progress=progress)
        console.print(f"cache: {path}")
        kth = result.distance_column(-1)
        console.print(f"k-th neighbour distance ({ds.unit}): min {kth.min():g}, median {float(np.median(kth)):g}, max {kth.max():g}")
        if out is not None:  # last: a write failure (disk full) loses neither the figures nor the cache
            save_knn(result, out, checksum=ds.checksum, split=split, unit=ds.unit, scale=ds.scale)
            kind = "squared distances" if result.squared else "distances"
            console.print(f"wrote {out}  (indices {result.indices.dtype}, {kind} {result.stored.dtype}, "
                          f"{result.indices.shape}; unit: {ds.unit})")

