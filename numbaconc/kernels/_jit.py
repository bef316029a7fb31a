"""One place for the Numba decorator defaults shared by every kernel.

Kernels import ``jit`` / ``jit_parallel`` from here instead of hand-typing
``@njit(...)`` options, so caching, GIL release and the fastmath set stay the
same everywhere. ``fastmath=True`` is never used wholesale: it would allow
``nnan``/``ninf`` and silently change NaN/inf semantics. We allow only the
flags that reorder or fuse arithmetic.
"""

import numba

FASTMATH = frozenset({"nsz", "arcp", "contract", "reassoc"})

_DEFAULTS = dict(cache=True, nogil=True, fastmath=set(FASTMATH), error_model="numpy")


def jit(*args, **kwargs):
    """Serial kernel: ``@jit`` or ``@jit(...)`` with the project defaults."""
    options = {**_DEFAULTS, **kwargs}
    if args and callable(args[0]):
        return numba.njit(**options)(args[0])
    return numba.njit(*args, **options)


def jit_parallel(*args, **kwargs):
    """Parallel kernel (uses ``numba.prange``) with the project defaults."""
    options = {**_DEFAULTS, "parallel": True, **kwargs}
    if args and callable(args[0]):
        return numba.njit(**options)(args[0])
    return numba.njit(*args, **options)
