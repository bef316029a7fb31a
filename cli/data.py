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
    cifar10h = "cifar10h"


@app.command("import")
@handles_errors
def import_(
    kind: Annotated[Kind, typer.Argument(help="Source format.")],
    src: Annotated[Path, typer.Argument(help="IDX folder (mnist, fashion-mnist), .npz (cifar10, npz), "
                                            ".npy file, or the CIFAR-10H folder (cifar10h).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HDF5 file to write (cifar10h: the LU "
                                                          "vector, .npy).")],
    test_fraction: Annotated[float, typer.Option(help="npy only: fraction held out as the test split.")] = 0.2,
    seed: Annotated[int, typer.Option(help="npy: seed of the split; cifar10h: seed of the --view split.")] = 0,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    cifar10: Annotated[Optional[Path], typer.Option(
        help="cifar10h: the CIFAR-10 npz or an imported cifar10 .h5 (its test labels).")] = None,
    view: Annotated[Optional[Path], typer.Option(
        help="cifar10h: also write a dataset (.h5) whose train split is a seeded part of the "
             "CIFAR-10 test images and whose test split is the rest (pass the LU vector to "
             "`measure --lu` with it).")] = None,
    fit_fraction: Annotated[float, typer.Option(help="cifar10h --view: share of the test images "
                                                     "in the view's train split.")] = 0.5,
):
    """Import a dataset into numbaconc's HDF5 layout (contiguous, memory-mappable), or
    (cifar10h) the label uncertainty of the CIFAR-10 test images from CIFAR-10H."""
    if kind == Kind.cifar10h:
        return import_cifar10h(src, out, cifar10, view, seed, fit_fraction, force)
    check_outputs(files=[("--out", out)], force=force)
    path = datasets.import_dataset(kind.value, src, out, test_fraction=test_fraction, seed=seed)
    with datasets.open_dataset(path) as ds:
        _print_info(datasets.describe(ds))


def import_cifar10h(src: Path, out: Path, cifar10: Optional[Path], view: Optional[Path], seed: int,
                    fit_fraction: float, force: bool):
    """``data import cifar10h``: the LU vector (numbaconc.lu), and optionally the view."""
    from numbaconc import lu
    from numbaconc.errors import NumbaconcError

    if cifar10 is None:
        raise NumbaconcError("cifar10h needs --cifar10 (the CIFAR-10 npz or an imported cifar10 .h5) "
                             "for the test labels")
    if out.suffix != ".npy":
        raise NumbaconcError(f"--out {out}: cifar10h writes the LU vector as a .npy file")
    check_outputs(files=[("--out", out), ("--view", view)], force=force)
    loaded = lu.cifar10h_lu(src, cifar10)
    lu.write_lu(out, loaded["lu"])
    values = loaded["lu"]
    console.print(f"LU of {len(values):,} CIFAR-10 test images: {out}  (mean {values.mean():.4f}, "
                  f"{100 * (values >= lu.GAMMA_2022).mean():.2f} % >= {lu.GAMMA_2022}, "
                  f"{100 * (values > 1).mean():.2f} % > 1)")
    console.print(f"alignment: the human majority class equals the CIFAR-10 label on "
                  f"{100 * loaded['agreement']:.2f} % of the images")
    if view is not None:
        lu.write_view(view, loaded, seed=seed, fit_fraction=fit_fraction)
        with datasets.open_dataset(view) as ds:
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
