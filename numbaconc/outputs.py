"""Output places checked before any work, and write failures as one line.

Every command checks all the places it will write (files, folders, the
cache folder) before it computes anything, so a place that cannot be
written costs nothing: ``check_output_file`` / ``check_output_folder``
raise a one-line ``NumbaconcError`` naming the path when it is of the
wrong kind (a folder where a file goes, a file where a folder goes), or
cannot be created or written (a read-only file system, no permission).

Writability is probed by creating and removing a temporary file in the
nearest existing folder: permission bits do not bind root, a read-only
mount does, and only trying tells both apart. Nothing is created under the
final name and no folder is made by a check.

The overwrite rule, one for every command: an existing output *file* is
refused (``OutputExists``; the CLI adds which flag overwrites it) unless
``overwrite`` is true. A *folder* output (``reproduce --out``, ``curve
--out``) is a run folder: an existing one is resumed.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import NumbaconcError


class OutputExists(NumbaconcError):
    """An output file already exists and overwriting was not asked for."""

    def __init__(self, path: Path):
        super().__init__(f"{path}: already exists")
        self.path = path


def os_reason(exc: BaseException) -> str:
    """A short, one-line reason for an OS / HDF5 error ('No space left on device')."""
    errno = getattr(exc, "errno", None)
    if errno:
        return os.strerror(errno)
    text = str(exc)
    found = re.search(r"error message = '([^']+)'", text)  # HDF5's wording of errno
    if found:
        return found.group(1)
    return text.splitlines()[0] if text else type(exc).__name__


def _nearest_existing(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _check_writable_folder(folder: Path, target: Path) -> None:
    """``folder`` exists; fail unless a file can be created in it."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".numbaconc-probe-", dir=folder)
    except OSError as exc:
        raise NumbaconcError(f"{target}: cannot write in {folder} ({os_reason(exc)})") from None
    os.close(fd)
    os.unlink(tmp)


def _check_parent(path: Path) -> None:
    """The folders up to ``path`` exist or can be made, and the nearest one is writable."""
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        raise NumbaconcError(f"{path}: {existing} is a file, not a folder")
    _check_writable_folder(existing, path)


def check_output_file(path, *, overwrite: bool = False) -> Path:
    """``path`` can be written as a file (see the module's overwrite rule)."""
    path = Path(path)
    if path.is_dir():
        raise NumbaconcError(f"{path}: is a folder, not a file")
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise OutputExists(path)
    _check_parent(path)
    return path


def check_output_folder(path, *, what: str | None = None) -> Path:
    """``path`` is (or can be made) a folder that files can be written in."""
    path = Path(path)
    name = what or str(path)
    if path.exists():
        if not path.is_dir():
            raise NumbaconcError(f"{name}: is a file, not a folder")
        _check_writable_folder(path, Path(name))
        return path
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise NumbaconcError(f"{name}: {existing} is a file, not a folder")
    _check_writable_folder(existing, Path(name))
    return path


def make_folder(path, *, what: str | None = None) -> Path:
    """Create ``path`` (and parents), one line naming it when that fails."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NumbaconcError(f"{what or path}: cannot create the folder ({os_reason(exc)})") from None
    if not path.is_dir():
        raise NumbaconcError(f"{what or path}: is a file, not a folder")
    return path


@contextmanager
def atomic_path(out: Path | str):
    """Yield a temporary path beside ``out``; rename it to ``out`` on success.

    On any error the temporary file is removed, so a failed or interrupted
    write never leaves a half-written output under the final name. An OS
    error (disk full, read-only, a folder in the way) becomes one line
    naming ``out``.
    """
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:
        raise NumbaconcError(f"{out}: cannot write ({os_reason(exc)})") from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, out)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise NumbaconcError(f"{out}: could not write ({os_reason(exc)}); nothing was written "
                                 "under that name") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def jsonable(value):
    """``json.dumps(default=...)`` for numpy scalars/arrays, paths and tuples."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(path, payload: dict, indent: int = 2) -> Path:
    """Write JSON atomically (temporary name, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=indent, default=jsonable) + "\n")
    return Path(path)
