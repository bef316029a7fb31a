"""What every command shares: one-line errors, progress bars, the console."""

from __future__ import annotations

import functools
import math
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from numbaconc import datasets
from numbaconc.errors import NumbaconcError, OptionError
from numbaconc.outputs import OutputExists, check_output_file, check_output_folder

console = Console()
if not console.is_terminal:  # piped or captured: do not squeeze tables into 80 columns
    console = Console(width=160)
err_console = Console(stderr=True)


def handles_errors(func):
    """Known errors -> ``error: message`` on stderr and exit 1; Ctrl-C -> exit 130."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except NumbaconcError as exc:
            message = exc.reworded(as_flag) if isinstance(exc, OptionError) else str(exc)
            err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("interrupted (finished results and caches are kept)")
            raise typer.Exit(130) from None

    return wrapper


def as_flag(option: str) -> str:
    """An option as the API words it (``q``, ``domain=False``, ``metric='l2'``)
    in terms of this CLI's flags (``--q``, ``--no-domain``, ``--metric l2``)."""
    name, _, value = option.partition("=")
    flag = "--" + name.replace("_", "-")
    if value in ("", "True"):
        return flag
    if value == "False":
        return "--no-" + flag[2:]
    return f"{flag} {value.strip(chr(39))}"


FORCE_HELP = "Overwrite output files that already exist (without it, an existing one is an error)."


def check_outputs(*, files=(), folders=(), force: bool = False, cache: bool = False):
    """Every place a command writes, checked before it computes anything.

    ``files``: (flag, path) pairs (path None = not asked for); an existing
    file is refused unless ``force``. ``folders``: run folders (paths),
    resumed when they exist. ``cache``: the command uses the cache folder.
    """
    seen = {}
    for flag, path in files:
        if path is None:
            continue
        key = Path(path).resolve()
        if key in seen:
            raise NumbaconcError(f"{seen[key]} and {flag} name the same file {path}")
        seen[key] = flag
        try:
            check_output_file(path, overwrite=force)
        except OutputExists:
            raise NumbaconcError(f"{path}: already exists (pass --force to overwrite it)") from None
    for path in folders:
        check_output_folder(path)
    if cache:
        datasets.cache_dir()


@contextmanager
def progress_callback(description: str):
    """Yield a ``progress(done, total)`` callable drawing a rich bar (stderr)."""
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=err_console,
                  transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task(description, total=None)

        def update(done, total):
            bar.update(task, completed=done, total=total)

        yield update


def pct(value, std=None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{100 * value:.2f} %"
    if std is not None:
        text = f"{100 * value:.2f} ± {100 * std:.2f} %"
    return text


def parse_floats(text: str, what: str) -> list[float]:
    """'0.1,0.2' or '2/255,4/255' -> floats."""
    values = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "/" in part:
                num, den = part.split("/", 1)
                values.append(float(num) / float(den))
            else:
                values.append(float(part))
        except (ValueError, ZeroDivisionError):
            raise NumbaconcError(f"{what}: cannot read {part!r} as a number") from None
        if not math.isfinite(values[-1]):
            raise NumbaconcError(f"{what}: {part!r} is not a finite number")
    if not values:
        raise NumbaconcError(f"{what}: no values given")
    return values
