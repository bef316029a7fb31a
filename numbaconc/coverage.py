"""Which rows lie in a region and in its epsilon-expansion: the geometry
every region type answers with (numbaconc.regions), below the estimators
that fit the regions (boxes, balls, half-spaces import it; it imports none
of them).

Everything is in storage units (pixel levels for uint8 data); ``X`` may be
a numpy array, a read-only memmap, an ``h5py.Dataset`` or a ``RowView``,
read in row blocks.

Boxes (METHOD.md section 3): E is the complement of the union of the boxes
grown by epsilon, so a row is outside E_eps iff it is inside some box and
outside E iff it is inside some grown box. The data domain: images live in
[0, 1]^d (pixel levels [0, 255]), and so do E and the adversary's perturbed
points. A face of a grown box that lies outside the domain has no point of E
beyond it, so it cannot put anything in E_eps: with ``domain=(lo, hi)`` such
faces are not tested when counting E_eps. That is still an upper bound on
E_eps (a point is counted safe only when its whole eps-ball, cut to the
domain, lies in one grown box), tighter than the 2019 count, which treats E
as extending outside the domain (``domain=None``).

Balls: d**2 <= r**2, and d <= r + eps as ``d**2 <= max(r**2, (r + eps)**2)``.
Half-spaces: w.x >= b and w.x >= b - shift, projections by one fixed-order
float64 kernel (identical for any block size).
"""

from __future__ import annotations

import numpy as np

from . import budget
from .errors import NumbaconcError
from .kernels import ball_geometry as _balls
from .kernels import boxes as _b
from .kernels import halfspace as _hs
from .validation import CHUNK_ROWS as _CHUNK_ROWS
from .validation import (REGION_METRICS, as_matrix, check_float, check_int, check_matrix,
                         check_metric, checked_blocks, readonly)

_DTYPES = (np.uint8, np.float32, np.float64)


# -------------------------------------------------------------------- boxes


def _n_rows_cols(X, name="X"):
    n, d, _ = check_matrix(X, name=name)
    return n, d


def _blocks(X, block_rows):
    """Yield (start, C-contiguous read-only block) over the rows of X, NaN/inf
    checked (read-only: one compiled signature per dtype)."""
    for a, _, block in checked_blocks(X, block_rows):
        yield a, readonly(block)


def _block_rows(X, block_rows):
    """Rows per block: as given, or one eighth of the memory budget's worth."""
    if block_rows is None:
        from .budget import rows_for

        # whole chunks: the chunk layout (and so any float sum) is that of any other block size
        rows = rows_for(X.shape[1] * (np.dtype(X.dtype).itemsize + 8), 0.125, minimum=_CHUNK_ROWS)
        return rows // _CHUNK_ROWS * _CHUNK_ROWS
    return check_int(block_rows, "block_rows", low=1)


def _check_float_matrix(A, shape, name):
    A = np.asarray(A)
    if A.shape != shape:
        raise NumbaconcError(f"{name} must have shape {shape}, got {A.shape}")
    if not np.issubdtype(A.dtype, np.number):
        raise NumbaconcError(f"{name} must be numeric, got {A.dtype}")
    A = np.array(A, dtype=np.float64, order="C")
    if np.isnan(A).any():
        raise NumbaconcError(f"{name} contains NaN")
    return A


def face_slack(box_centers, half_widths, margin: float, domain=None):
    """(below, above), (T, d) float64: the half-widths the E_eps test uses on
    each side of each box, +inf where the grown face lies outside ``domain``.

    With ``domain=(lo, hi)``: the lower face of box j in coordinate t binds
    nothing when c - w - margin < lo (every domain point is above the grown
    face there), likewise the upper face when c + w + margin > hi. The test
    is strict with a relative slack of 1e-9, so float rounding can only keep
    a face, never free one it should not (never optimistic).
    """
    w = np.asarray(half_widths, dtype=np.float64)
    below = w.copy()
    above = w.copy()
    if domain is not None:
        lo, hi = (float(v) for v in domain)
        c = np.asarray(box_centers, dtype=np.float64)
        slack = 1e-9 * (1.0 + np.abs(c) + np.abs(w) + margin)
        live = w >= 0  # empty boxes stay empty
        below[live & (c - w - margin < lo - slack)] = np.inf
        above[live & (c + w + margin > hi + slack)] = np.inf
    return below, above


def check_domain(domain):
    """``None`` or a (lo, hi) pair of finite floats with lo < hi."""
    if domain is None:
        return None
    try:
        lo, hi = (float(v) for v in domain)
    except (TypeError, ValueError):
        raise NumbaconcError(f"domain must be a (low, high) pair, got {domain!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise NumbaconcError(f"domain must be finite with low < high, got ({lo}, {hi})")
    return lo, hi


def box_coverage(X, box_centers, half_widths, margin: float, *, domain=None,
                 block_rows: int | None = None):
    """Which rows are in the union of the boxes, and of the boxes grown by ``margin``.

    Returns (inside, inside_grown), (n,) bool each, from one pass over X:
    ``inside[i]`` iff some box j has ``|float64(x[i,t]) - c[j,t]| <= w[j,t]``
    for every t (inclusive: a point on a face is inside), ``inside_grown[i]``
    the same with ``w[j,t] + margin`` (the float64 sum). A box with any
    negative half-width is empty and stays empty when grown.

    ``margin`` is in storage units: epsilon / dataset.scale, e.g. 0.1 * 255 =
    25.5 pixel levels. It is never rounded: the test is made in float64 as
    written. On integer pixels with a tight box (c and w integers or
    half-integers, c + w an integer) |x - c| - w is an integer, so
    |x - c| <= w + 25.5 holds exactly when |x - c| <= w + 25: a non-integer
    margin acts as its floor. For symmetric boxes (c a k-means mean) the
    comparison is simply the float64 one.

    ``domain=(lo, hi)`` (storage units): ``inside`` ignores the faces whose
    grown copy lies outside the domain (``face_slack``); every row of X must
    then lie in the domain. ``inside_grown`` does not depend on it.
    """
    n, d = _n_rows_cols(X)
    domain = check_domain(domain)
    box_centers = np.asarray(box_centers)
    if box_centers.ndim != 2 or box_centers.shape[1] != d:
        raise NumbaconcError(f"box_centers must have shape (T, {d}), got {box_centers.shape}")
    T = box_centers.shape[0]
    box_centers = _check_float_matrix(box_centers, (T, d), "box_centers")
    half_widths = _check_float_matrix(half_widths, (T, d), "half_widths")
    margin = check_float(margin, "margin", low=0.0)
    block_rows = _block_rows(X, block_rows)
    empty_box = (half_widths < 0).any(axis=1)
    below, above = face_slack(box_centers, half_widths, margin, domain)
    # uint8 rows cannot leave a domain that holds [0, 255]: no pass to check them
    check_rows = domain is not None and not (
        np.dtype(X.dtype) == np.uint8 and domain[0] <= 0 and domain[1] >= 255)
    inside = np.empty(n, np.bool_)
    inside_grown = np.empty(n, np.bool_)
    for a, block in _blocks(X, block_rows):
        b = a + block.shape[0]
        if check_rows and (block.min() < domain[0] or block.max() > domain[1]):
            raise NumbaconcError(
                f"rows {a}..{b - 1} have values outside the domain [{domain[0]:g}, {domain[1]:g}]: "
                "the domain-aware count does not apply (count without the domain)")
        _b.box_coverage(block, box_centers, half_widths, below, above, empty_box, margin,
                        inside[a:b], inside_grown[a:b])
    return inside, inside_grown


# -------------------------------------------------------------------- balls


def _as_data(X, name="X") -> np.ndarray:
    """uint8 / float32 / float64 (n, d) C-contiguous array (h5py datasets are read)."""
    X = as_matrix(X, _DTYPES, name)
    X = np.ascontiguousarray(X[...] if not isinstance(X, np.ndarray) else X)
    if X.dtype != np.uint8 and not np.isfinite(X).all():
        raise NumbaconcError(f"{name} contains NaN or inf")
    return X


def ball_coverage(X, centers, radii_sq, margin: float, *, block_rows: int | None = None,
                  metric: str = "l2"):
    """(inside, inside_grown), (n,) bool each: rows of X with d**2 <= r**2 for
    some ball, and with d <= r + margin (``d**2 <= max(r**2, (r + margin)**2)``).

    ``X`` (n, d) uint8/float32 (memmap or h5py dataset, read in row blocks);
    ``centers`` (T, d) and ``radii_sq`` (T,) in the same storage units.
    ``metric="linf"``: cubes, ``radii_sq`` the l-inf radii themselves.
    """
    linf = check_metric(metric, REGION_METRICS) == "linf"
    n, d, dtype = check_matrix(X, _DTYPES, "X")
    centers = np.asarray(centers, dtype=np.float64)
    radii_sq = np.ascontiguousarray(radii_sq, dtype=np.float64)
    if centers.ndim != 2 or centers.shape[1] != d or radii_sq.shape != (centers.shape[0],):
        raise NumbaconcError(f"centers must be (T, {d}) and radii_sq (T,), got "
                             f"{centers.shape} and {radii_sq.shape}")
    if not (np.isfinite(centers).all() and np.isfinite(radii_sq).all()) or (radii_sq < 0).any():
        raise NumbaconcError("centers and radii_sq must be finite, radii_sq >= 0")
    margin = check_float(margin, "margin", low=0.0)
    if block_rows is None:
        block_rows = budget.rows_for(d * (dtype.itemsize + 8), 0.125, minimum=64)
    block_rows = check_int(block_rows, "block_rows", low=1)
    integer = bool(dtype == np.uint8 and np.all(centers == np.rint(centers))
                   and centers.min(initial=0) >= 0 and centers.max(initial=0) <= 255)
    C = np.ascontiguousarray(centers.astype(np.uint8) if integer else centers)
    inside = np.zeros(n, dtype=np.bool_)
    grown = np.zeros(n, dtype=np.bool_)
    if C.shape[0] == 0:
        return inside, grown
    for start in range(0, n, block_rows):
        stop = min(n, start + block_rows)
        block = _as_data(X[start:stop])
        _balls.coverage(block, C, radii_sq, float(margin), integer, linf, inside[start:stop],
                        grown[start:stop])
    return inside, grown


# --------------------------------------------------------------- half-spaces


def _project64(X, w: np.ndarray, name: str, block_rows: int | None = None) -> np.ndarray:
    """X @ w in float64 by the fixed-order kernel (identical for any block size;
    ``block_rows`` at most, default what the memory budget allows)."""
    w = np.ascontiguousarray(w, dtype=np.float64)
    out = np.empty(X.shape[0], dtype=np.float64)
    fits = budget.rows_for(X.shape[1] * np.dtype(X.dtype).itemsize, 0.125, minimum=64)
    block_rows = fits if block_rows is None else min(block_rows, fits)
    for start, stop, block in checked_blocks(X, block_rows, name):
        _hs.project_rows(block, w, out[start:stop])
    return out


def _coverage_from_projection(p: np.ndarray, b: float, shift: float):
    inside = np.empty(p.shape[0], dtype=np.bool_)
    inside_eps = np.empty(p.shape[0], dtype=np.bool_)
    _hs.count_coverage(p, float(b), float(shift), inside, inside_eps)
    return inside, inside_eps


def halfspace_coverage(X, w, b, shift: float, *, block_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(inside E: w.x >= b, inside E_eps: w.x >= b - shift) as boolean arrays.

    ``shift`` = epsilon * ||w||_* in storage units (``fit.shift``). Projections
    use the same float64 kernel as ``fit_halfspace``, so
    ``halfspace_coverage(X_train, fit.w, fit.b, fit.shift)[0].mean() == fit.train_risk``.
    """
    X = as_matrix(X, _DTYPES, "X")
    w = np.asarray(w, dtype=np.float64)
    if w.shape != (X.shape[1],):
        raise NumbaconcError(f"w must have shape ({X.shape[1]},), got {w.shape}")
    if not np.isfinite(w).all():
        raise NumbaconcError("w contains NaN or inf")
    b = check_float(b, "b")
    shift = check_float(shift, "shift", low=0.0)
    if block_rows is not None:
        block_rows = check_int(block_rows, "block_rows", low=1)
    p = _project64(X, w, "X", block_rows)
    return _coverage_from_projection(p, b, shift)


def project_rows(X, w, *, block_rows: int | None = None) -> np.ndarray:
    """w.x for every row of X, float64, by the kernel every half-space count
    uses (so thresholds compared with these agree with ``halfspace_coverage``)."""
    X = as_matrix(X, _DTYPES, "X")
    w = np.asarray(w, dtype=np.float64)
    if w.shape != (X.shape[1],) or not np.isfinite(w).all():
        raise NumbaconcError(f"w must be a finite vector of shape ({X.shape[1]},)")
    return _project64(X, w, "X", block_rows)
