"""``numbaconc``: the typer app. Each command is a thin wrapper over one API call."""

from __future__ import annotations

import logging
from typing import Annotated, Optional

import typer

from numbaconc import __version__, budget, cluster

from . import bound as bound_commands
from . import data as data_commands
from . import knn as knn_commands
from . import measure as measure_commands
from . import report as report_commands
from .common import handles_errors

app = typer.Typer(
    name="numbaconc",
    help="Empirical concentration of measure: how robust can any classifier on this data be?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_commands.app, name="data", help="Import datasets to HDF5, inspect them, make synthetic ones.")
knn_commands.register(app)
measure_commands.register(app)
bound_commands.register(app)
report_commands.register(app)


def _version(value: bool):
    if value:
        typer.echo(f"numbaconc {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each stage.")] = False,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="Numba threads (default: all cores).")] = None,
    memory: Annotated[Optional[str], typer.Option(
        "--memory", help="Memory budget, e.g. 2G or 512M (default: $NUMBACONC_MEMORY, else 2G); "
                         "block sizes follow it.")] = None,
    scheduler: Annotated[Optional[str], typer.Option(
        "--scheduler", help="Run the heavy stages on a dask cluster: a scheduler address "
                            "(tcp://host:8786) or local:N (N worker processes on this machine, "
                            "for this run). Results are identical to a run without it.")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
):
    """numbaconc: find an error region of measure >= alpha whose eps-expansion is smallest."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    _set_memory(memory)
    _set_scheduler(scheduler)
    if threads is not None:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


@handles_errors
def _set_memory(memory):
    budget.set_budget(memory)
    budget.get_budget()  # a bad $NUMBACONC_MEMORY is reported here, before any work


@handles_errors
def _set_scheduler(scheduler):
    cluster.set_scheduler(scheduler)  # connects (or starts local:N) when a stage first needs it


def main():
    app()


if __name__ == "__main__":
    main()
