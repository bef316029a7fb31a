"""Stages: each long step's start, size, seconds and peak resident memory.

``with stage("knn", n=60000, k=50):`` logs the start and the end (logger
``numbaconc.stages``, shown by ``--verbose``) and, inside ``recording()``,
appends a record ``dict(stage, seconds, cpu_seconds, peak_bytes, **size)``
that the JSON outputs keep (``cpu_seconds``: the process's user + system
CPU time over the stage, every thread).

Peak memory: on Linux the resident high-water mark (VmHWM in
/proc/self/status) is reset at each stage start by writing "5" to
/proc/self/clear_refs, so a stage's peak is its own (a nested stage's peak
counts towards its parents too). Where that reset is not possible the
process peak since start (``ru_maxrss``) is recorded instead, which bounds
every stage's own peak from above; ``PEAK_SOURCE`` says which one a run holds.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Iterator

_log = logging.getLogger("numbaconc.stages")
_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


def _read_hwm() -> int | None:
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _maxrss() -> int:
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss) if sys.platform == "darwin" else int(rss) * 1024  # Linux: KiB


_RESETTABLE = _read_hwm() is not None and _reset_hwm()
#: what ``peak_bytes`` measures in this process
PEAK_SOURCE = ("VmHWM, reset at each stage start (the stage's own peak resident memory)"
               if _RESETTABLE else "ru_maxrss (the process's peak resident memory since start)")

_open: list[dict] = []        # stages entered and not yet left, outermost first
_recorders: list[list] = []   # active recording() lists


def _fold_peak() -> None:
    """Carry the high-water mark since the last reset into every open stage."""
    if _RESETTABLE:
        now = _read_hwm() or 0
        for record in _open:
            record["peak_bytes"] = max(record["peak_bytes"], now)


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.0f} MiB"


@contextmanager
def stage(name: str, **size) -> Iterator[dict]:
    """Time one stage and record its peak memory; ``size``: what it works on
    (rows, features, k ...), logged and recorded as given."""
    _fold_peak()
    record = dict(stage=name, **size, seconds=0.0, cpu_seconds=0.0, peak_bytes=0)
    _open.append(record)
    if _RESETTABLE:
        _reset_hwm()
    described = ", ".join(f"{key}={value}" for key, value in size.items())
    _log.info("start %s%s", name, f" ({described})" if described else "")
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        yield record
    finally:
        record["seconds"] = time.perf_counter() - start
        record["cpu_seconds"] = time.process_time() - cpu_start
        _fold_peak()
        if not _RESETTABLE:
            record["peak_bytes"] = _maxrss()
        _open.remove(record)
        _log.info("done  %s: %.2f s (CPU %.2f s), peak %s", name, record["seconds"],
                  record["cpu_seconds"], _mib(record["peak_bytes"]))
        for recorder in _recorders:
            recorder.append(dict(record))


@contextmanager
def recording() -> Iterator[list]:
    """Collect the records of every stage that ends inside the block (in end order)."""
    records: list = []
    _recorders.append(records)
    try:
        yield records
    finally:
        _recorders.remove(records)
