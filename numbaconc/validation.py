"""Input checks and the metric registry: the one place for the rules the API
applies at its boundary.

Every public function checks its input with these helpers once, then calls
code that checks nothing (scikit-learn's ``check_array`` / ``check_scalar``,
pynndescent's ``named_distances``). Messages name the Python parameter; the
CLI words them in terms of its flags (``numbaconc_cli.common``).
"""

from __future__ import annotations

import math
import numbers
from typing import Iterable, Sequence

import numpy as np

from .errors import NumbaconcError

#: canonical metric name -> accepted aliases (one table for the package and the CLI)
METRIC_ALIASES: dict[str, tuple[str, ...]] = {
    "l1": ("cityblock", "manhattan"),
    "l2": ("euclidean",),
    "linf": ("chebyshev", "inf", "l-inf"),
}
#: every accepted name (canonical or alias, lower case) -> canonical name
METRICS: dict[str, str] = {name: canonical for canonical, aliases in METRIC_ALIASES.items()
                           for name in (canonical, *aliases)}
#: the metrics an error-region family can be measured under (l1 only scores density)
REGION_METRICS = ("linf", "l2")
#: storage dtypes: uint8 pixel levels, or float32 in [0, 1] units
STORAGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))
#: rows per finiteness scan of float input
FINITE_CHECK_ROWS = 8192
#: rows per chunk of the chunk-local (thread-count independent) kernel sums
CHUNK_ROWS = 4096


def metric_names(allowed: Iterable[str] = tuple(METRIC_ALIASES)) -> list[str]:
    """Canonical names then aliases of the ``allowed`` metrics (the CLI's choices)."""
    allowed = tuple(allowed)
    return list(allowed) + [alias for m in allowed for alias in METRIC_ALIASES[m]]


def canonical_metric(name: str, allowed: Iterable[str] = tuple(METRIC_ALIASES)) -> str:
    """The canonical name (``l1``, ``l2``, ``linf``) of a metric or alias.

    Parameters
    ----------
    name : str
        A metric name or alias, any case (``cityblock``, ``euclidean``, ``chebyshev`` ...).
    allowed : iterable of str
        Canonical names the caller supports.

    Raises
    ------
    NumbaconcError
        For an unknown name, or a metric outside ``allowed``.
    """
    allowed = tuple(allowed)
    canonical = METRICS.get(str(name).lower())
    if canonical is None or canonical not in allowed:
        raise NumbaconcError(f"unknown metric {name!r} (choose from {', '.join(metric_names(allowed))})")
    return canonical


def check_metric(metric: str, allowed: Sequence[str] = REGION_METRICS) -> str:
    """A canonical metric name in ``allowed`` (no aliases: for code below the API)."""
    if metric not in allowed:
        raise NumbaconcError(f"metric must be one of {', '.join(allowed)}, got {metric!r}")
    return metric


def check_matrix(X, dtypes: Iterable = STORAGE_DTYPES, name: str = "X") -> tuple[int, int, np.dtype]:
    """(n_samples, n_features, dtype) of a non-empty 2-D matrix, read nothing.

    Parameters
    ----------
    X : array-like with ``shape`` and ``dtype``
        NumPy array, memmap, h5py dataset or ``RowView``.
    dtypes : iterable of dtypes
        The storage types the caller accepts.
    name : str
        How the message names the argument.
    """
    shape = getattr(X, "shape", None)
    dtype = getattr(X, "dtype", None)
    if shape is None or dtype is None:
        raise NumbaconcError(f"{name}: expected an array (n, d), got {type(X).__name__}")
    if len(shape) != 2:
        raise NumbaconcError(f"{name}: expected a 2-D array (n_samples, n_features), "
                             f"got shape {tuple(shape)}")
    dtype = np.dtype(dtype)
    allowed = [np.dtype(t) for t in dtypes]
    if dtype not in allowed:
        raise NumbaconcError(f"{name}: dtype {dtype} not supported "
                             f"({' or '.join(t.name for t in allowed)})")
    if shape[0] < 1 or shape[1] < 1:
        raise NumbaconcError(f"{name}: empty array of shape {tuple(shape)}")
    return int(shape[0]), int(shape[1]), dtype


def check_finite(X, name: str = "X", block_rows: int = FINITE_CHECK_ROWS) -> None:
    """Raise unless every value of a float matrix is finite (uint8: nothing to
    check); read in row blocks, so no full-size temporary."""
    if np.dtype(X.dtype) == np.uint8:
        return
    for start in range(0, X.shape[0], block_rows):
        stop = min(X.shape[0], start + block_rows)
        if not np.isfinite(np.asarray(X[start:stop])).all():
            raise NumbaconcError(f"{name}: contains NaN or inf (rows {start}..{stop - 1})")


def check_int(value, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int (booleans refused) within [low, high]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise NumbaconcError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            raise NumbaconcError(f"{name} must be an integer >= {low}, got {value}")
        if low is None:
            raise NumbaconcError(f"{name} must be an integer <= {high}, got {value}")
        raise NumbaconcError(f"{name} must be an integer in [{low}, {high}], got {value}")
    return value


def check_float(value, name: str, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float within the given (closed or open) bounds."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise NumbaconcError(f"{name} must be a number, got {value!r}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise NumbaconcError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise NumbaconcError(f"{name} must be finite, got {value}")
    below = low is not None and (value < low or (low_open and value == low))
    above = high is not None and (value > high or (high_open and value == high))
    if below or above:
        if high is None:
            raise NumbaconcError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value:g}")
        if low is None:
            raise NumbaconcError(f"{name} must be {'<' if high_open else '<='} {high:g}, got {value:g}")
        raise NumbaconcError(f"{name} must be in {'(' if low_open else '['}{low:g}, {high:g}"
                             f"{')' if high_open else ']'}, got {value:g}")
    return value


def check_alpha(alpha) -> float:
    """A risk level in (0, 1)."""
    try:
        return check_float(alpha, "alpha", low=0.0, high=1.0, low_open=True, high_open=True)
    except NumbaconcError:
        raise NumbaconcError(f"alpha must be in (0, 1), got {alpha}") from None


def check_epsilon(epsilon, name: str = "epsilon") -> float:
    """A budget: finite and >= 0."""
    try:
        return check_float(epsilon, name, low=0.0)
    except NumbaconcError:
        raise NumbaconcError(f"{name} must be finite and >= 0, got {epsilon}") from None


def check_choice(value, choices: Sequence[str], name: str) -> str:
    """One of ``choices``."""
    if value not in choices:
        raise NumbaconcError(f"unknown {name} {value!r} (choose from {', '.join(choices)})")
    return value


def readonly(X: np.ndarray) -> np.ndarray:
    """A read-only view (no copy). Kernels only read rows, and a read-only
    array is its own Numba type: passing every array as read-only means one
    compiled signature per dtype instead of two (writable and memmap)."""
    if X.flags.writeable:
        X = X.view()
        X.flags.writeable = False
    return X


def as_matrix(X, dtypes: Iterable = STORAGE_DTYPES, name: str = "X"):
    """The matrix behind ``X`` (an array, memmap, h5py dataset or ``RowView``
    as it is; a ``datasets.Split``'s ``x``; anything else through
    ``np.asarray``), checked by ``check_matrix``."""
    inner = getattr(X, "x", None)
    if inner is not None and hasattr(inner, "shape") and not hasattr(X, "shape"):
        X = inner  # datasets.Split
    if not hasattr(X, "shape") or not hasattr(X, "dtype"):
        X = np.asarray(X)
    check_matrix(X, dtypes, name)
    return X


def checked_blocks(X, block_rows: int, name: str = "X", *, finite: bool = True):
    """Yield (start, stop, C-contiguous block) over the rows of X; float
    blocks are checked finite on the way (``finite=False``: not checked, for
    a second pass over data already checked)."""
    n = X.shape[0]
    for start in range(0, n, block_rows):
        stop = min(n, start + block_rows)
        yield start, stop, read_block(X, start, stop, name, finite=finite)


def read_block(X, start: int, stop: int, name: str = "X", *, finite: bool = True) -> np.ndarray:
    """Rows [start, stop) of X as a C-contiguous block, float blocks checked
    finite (one block of ``checked_blocks``; a cluster task reads with it)."""
    block = np.ascontiguousarray(X[start:stop])
    if finite and block.dtype != np.uint8 and not np.isfinite(block).all():
        raise NumbaconcError(f"{name}: contains NaN or inf (rows {start}..{stop - 1})")
    return block
