"""``numbaconc data``: import, info, synth."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from numbaconc import datasets

from .common import FORCE_HELP, check_outputs, console, handles_errors

app = typer.Typer(no_args_is_help=True)


class Kind(str, Enum):
    mnist = "mnist"
    fashion_mnist = "fashion-mnist"
    cifar10 = "cifar10"
    npz = "npz"
    npy = "npy"


@app.command("import")
@handles_errors
def import_(
    kind: Annotated[Kind, typer.Argument(help="Source format.")],
    src: Annotated[Path, typer.Argument(help="IDX folder (mnist, fashion-mnist), .npz (cifar10, npz) or .npy file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HDF5 file to write.")],
    test_fraction: Annotated[float, typer.Option(help="npy only: fraction held out as the test split.")] = 0.2,
    seed: Annotated[int, typer.Option(help="npy only: seed of the split.")] = 0,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
):
    """Import a dataset into numbaconc's HDF5 layout (contiguous, memory-mappable)."""
    check_outputs(files=[("--out", out)], force=force)
    path = datasets.import_dataset(kind.value, src, out, test_fraction=test_fraction, seed=seed)
    with datasets.open_dataset(path) as ds:
        _print_info(datasets.describe(ds))


@app.command("info")
@handles_errors
def info(file: Annotated[str, typer.Argument(help="HDF5 file or bundled name (mnist).")]):
    """Print shapes, dtype, scale and checksum of a dataset."""
    with datasets.open_dataset(file) as ds:
        _print_info(datasets.describe(ds))


@app.command("synth")
@handles_errors
def synth(
    kind: Annotated[str, typer.Argument(help="Distribution: gaussian, or augment SOURCE.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HDF5 file to write.")],
    source: Annotated[Optional[str], typer.Argument(
        help="augment only: mnist, or an imported .h5 file (fashion-mnist, cifar10, ...).")] = None,
    n: Annotated[int, typer.Option("--n", min=2, help="Training samples.")] = 20000,
    n_test: Annotated[Optional[int], typer.Option(
        "--n-test", min=1, help="Test samples (gaussian: 10000; augment: the source's test size).")] = None,
    d: Annotated[int, typer.Option("--d", min=1, help="Dimension.")] = 20,
    spectrum: Annotated[str, typer.Option(help="isotropic | power:P | spike:S | comma list of variances.")] = "isotropic",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    rotate: Annotated[bool, typer.Option("--rotate/--no-rotate", help="Randomly rotate Sigma's eigenvectors "
                                         "(--no-rotate: axis-aligned, so the closed form is exact under l-inf too).")] = True,
):
    """Write a Gaussian sample N(0, Sigma) whose concentration is known in closed form,
    or (augment SOURCE) seeded deformations of a dataset's images, written block by block."""
    from numbaconc.errors import NumbaconcError
    from numbaconc.synth import make_gaussian

    if kind == "augment":
        return synth_augment(source, out, n, n_test, seed, force)
    if kind != "gaussian":
        raise NumbaconcError(f"unknown synthetic distribution {kind!r} (gaussian or augment)")
    if source is not None:
        raise NumbaconcError(f"gaussian takes no SOURCE (got {source!r})")
    n_test = 10000 if n_test is None else n_test
    check_outputs(files=[("--out", out)], force=force)
    path = make_gaussian(out, n_train=n, n_test=n_test, d=d, spectrum=spectrum, random_state=seed,
                         rotate=rotate)
    with datasets.open_dataset(path) as ds:
        _print_info(datasets.describe(ds))


def synth_augment(source: Optional[str], out: Path, n: int, n_test: Optional[int], seed: int,
                  force: bool = False):
    """``data synth augment SOURCE``: an infiMNIST-style generator (numbaconc.augment)."""
    from numbaconc.augment import make_augmented
    from numbaconc.errors import NumbaconcError

    from .common import progress_callback

    if source is None:
        raise NumbaconcError("augment needs a SOURCE: mnist, or an imported .h5 file")
    check_outputs(files=[("--out", out)], force=force, cache=True)
    with progress_callback("augment") as progress:
        path = make_augmented(source, out, n=n, n_test=n_test, seed=seed, progress=progress)
    with datasets.open_dataset(path) as ds:
        _print_info(datasets.describe(ds))


def _print_info(info: dict):
    table = Table(title=f"{info['name']}  ({info['path']})", show_header=True)
    table.add_column("split")
    table.add_column("shape")
    table.add_column("dtype")
    table.add_column("labels")
    table.add_column("memmapped")
    for split in ("train", "test"):
        s = info[split]
        table.add_row(split, " x ".join(map(str, s["shape"])), s["dtype"], str(s["labels"]), str(s["memmapped"]))
    console.print(table)
    console.print(f"image shape {tuple(info['image_shape'])}, scale {info['scale']:.8g}, unit {info['unit']}")
    console.print(f"checksum {info['checksum']}")
