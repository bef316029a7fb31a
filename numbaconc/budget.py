"""The memory budget: the one place that turns a size into block sizes.

Every stage asks ``rows_for(bytes_per_row)`` how many rows it may hold at
once, so its working set is set by the budget, not by n. The budget comes
from ``set_budget`` (the CLI's ``--memory``), else ``$NUMBACONC_MEMORY``,
else ``DEFAULT``.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager

from .errors import NumbaconcError

DEFAULT = "2G"
ENV = "NUMBACONC_MEMORY"
MINIMUM = 64 << 20          # below this the interpreter and numba alone do not fit

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_budget: int | None = None


def parse_size(text) -> int:
    """``'512M'``, ``'2G'``, ``'1.5GiB'``, ``'3000000'`` -> bytes (powers of 1024)."""
    if isinstance(text, bool):
        raise NumbaconcError(f"memory size: cannot read {text!r} (e.g. 512M, 2G)")
    if isinstance(text, (int, float)):
        value, unit = float(text), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?B)?\s*", str(text), re.IGNORECASE)
        if match is None:
            raise NumbaconcError(f"memory size: cannot read {text!r} (e.g. 512M, 2G)")
        value, unit = float(match.group(1)), match.group(2).upper()
    size = int(value * _UNITS[unit])
    if size < MINIMUM:
        raise NumbaconcError(f"memory size {text!r} is below the minimum of {MINIMUM >> 20} MiB")
    return size


def set_budget(size) -> None:
    """Set the budget for this process (``None``: back to the environment / default)."""
    global _budget
    _budget = None if size is None else parse_size(size)


def get_budget() -> int:
    """The budget in bytes: ``set_budget``, else ``$NUMBACONC_MEMORY``, else ``DEFAULT``."""
    if _budget is not None:
        return _budget
    env = os.environ.get(ENV)
    if env:
        try:
            return parse_size(env)
        except NumbaconcError as exc:
            raise NumbaconcError(f"${ENV}: {exc}") from None
    return parse_size(DEFAULT)


@contextmanager
def budget(size):
    """Run a block under another budget, restoring the previous one."""
    global _budget
    before = _budget
    set_budget(size)
    try:
        yield get_budget()
    finally:
        _budget = before


def rows_for(bytes_per_row: float, share: float = 0.25, *, minimum: int = 1,
             maximum: int | None = None) -> int:
    """How many rows of ``bytes_per_row`` fit in ``share`` of the budget
    (at least ``minimum``, at most ``maximum``)."""
    rows = int(share * get_budget() // max(1.0, float(bytes_per_row)))
    rows = max(int(minimum), rows)
    if maximum is not None:
        rows = min(rows, int(maximum))
    return max(1, rows)


def fits(nbytes: float, share: float = 0.5) -> bool:
    """Whether an array of ``nbytes`` may be held in memory whole."""
    return nbytes <= share * get_budget()
