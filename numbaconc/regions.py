"""Error regions: what an estimator returns, saves, and re-applies to any data.

Every region answers, for a block of points X (storage units), two masks:
``in_error`` (x in E) and ``in_expanded`` (x in E_eps, or in the upper bound
of E_eps the family counts). Risk = mean of the first, adversarial risk = mean
of the second.

| family    | E                                      | counted E_eps              | exact?      |
|-----------|----------------------------------------|----------------------------|-------------|
| boxes     | outside every box grown by eps (l-inf) | outside every box (faces   | upper bound |
|           |                                        | beyond the domain ignored) |             |
| balls     | inside some ball (l2)                  | inside some ball grown eps | exact       |
| cubes     | inside some l-inf ball (cube)          | inside some cube grown eps | exact       |
| halfspace | w.x >= b                               | w.x >= b - eps*||w||_*     | exact       |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import h5py
import numpy as np

from .coverage import ball_coverage, box_coverage, halfspace_coverage
from .datasets import RowView, atomic_path
from .errors import NumbaconcError
from .integrity import array_digest

REGION_FORMAT = 1


@dataclass
class Region:
    """What every region type shares: ``masks``, ``evaluate``, ``save`` /
    ``load``, ``summary``.

    ``epsilon`` is in [0, 1] units; ``epsilon_storage`` is the same budget in
    the storage units of data with ``scale`` (pixel levels for uint8), as
    the masks use it, and the arrays are in storage units too. Subclasses
    name their ``kind`` and the ``ARRAYS`` that ``masks`` needs.
    """

    kind: ClassVar[str] = ""
    ARRAYS: ClassVar[tuple] = ()
    exact: ClassVar[bool] = True       # E_eps counted exactly (else an upper bound)

    metric: str
    epsilon_storage: float
    scale: float
    n_features: int
    arrays: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def epsilon(self) -> float:
        """The budget in [0, 1] units."""
        return self.epsilon_storage * self.scale

    # -- membership ------------------------------------------------------
    def masks(self, X) -> tuple[np.ndarray, np.ndarray]:
        """(in_error, in_expanded) for every row of X (storage units)."""
        return self._masks(_as_2d(X, self.n_features))

    def _masks(self, X) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def evaluate(self, X) -> dict:
        """Counts and fractions of E and (counted) E_eps on X.

        X (array, memmap, h5py dataset or RowView) is read in row blocks sized
        by the memory budget and the counts are summed per block, so no
        n-long mask is built (masks are row by row: the counts equal those
        of ``masks(X)``).
        """
        from . import cluster

        X = _as_2d(X, self.n_features)
        n = k_err = k_adv = 0
        # on a cluster: one task per block (integer counts, added in block order)
        for rows, err, adv in cluster.map_blocks(_block_counts, X, RowView(X).block_rows(), (self,)):
            n, k_err, k_adv = n + rows, k_err + err, k_adv + adv
        return dict(n=n, n_risk=k_err, n_adv=k_adv,
                    risk=k_err / n if n else float("nan"),
                    adv_risk=k_adv / n if n else float("nan"))

    # -- persistence -----------------------------------------------------
    def save(self, path) -> Path:
        """Write atomically, with a digest of the arrays that ``load`` checks."""
        path = Path(path)
        arrays = {key: np.asarray(value) for key, value in self.arrays.items()}
        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w") as f:
                f.attrs.update(kind=self.kind, metric=self.metric, epsilon=self.epsilon_storage,
                               scale=self.scale, n_features=self.n_features,
                               format_version=REGION_FORMAT, arrays_digest=_arrays_digest(arrays))
                for key, value in arrays.items():
                    f.create_dataset(key, data=value)
                meta = f.create_group("meta")
                for key, value in self.meta.items():
                    if value is not None:
                        meta.attrs[key] = value
        return path

    @classmethod
    def load(cls, path) -> "Region":
        """Read a region file (as its own type), checking that it is whole: every array its kind
        needs, with the right shapes, finite, and matching the stored digest
        (files written before the digest existed are checked without it)."""
        path = Path(path)
        if not path.is_file():
            raise NumbaconcError(f"{path}: no such region file")
        try:
            with h5py.File(path, "r") as f:
                attrs = dict(f.attrs)
                missing = [a for a in ("kind", "metric", "epsilon", "scale", "n_features")
                           if a not in attrs]
                if missing:
                    raise NumbaconcError(f"{path}: not a numbaconc region file "
                                         f"(no {', '.join(missing)} attribute)")
                kind = _plain(attrs["kind"])
                if kind not in REGION_TYPES:
                    raise NumbaconcError(f"{path}: unknown region kind {kind!r}")
                region_type = REGION_TYPES[kind]
                absent = [key for key in region_type.ARRAYS
                          if not isinstance(f.get(key), h5py.Dataset)]
                if absent:
                    raise NumbaconcError(f"{path}: damaged {kind} region file: no "
                                         f"{', '.join(absent)} dataset")
                arrays = {key: np.asarray(f[key][()]) for key in f
                          if key != "meta" and isinstance(f[key], h5py.Dataset)}
                meta = dict(f["meta"].attrs) if isinstance(f.get("meta"), h5py.Group) else {}
                region = region_type(metric=str(_plain(attrs["metric"])),
                                     epsilon_storage=float(attrs["epsilon"]),
                                     scale=float(attrs["scale"]),
                                     n_features=int(attrs["n_features"]), arrays=arrays,
                                     meta={k: _plain(v) for k, v in meta.items()})
                stored = attrs.get("arrays_digest")
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise NumbaconcError(f"{path}: not a readable region file ({exc})") from None
        if stored is not None and _plain(stored) != _arrays_digest(arrays):
            raise NumbaconcError(f"{path}: damaged region file: its arrays do not match their "
                                 "stored digest")
        region._check_shapes(path)
        return region

    def _check_shapes(self, path) -> None:
        a, d = self.arrays, self.n_features
        expected = {"centers": (None, d), "half_widths": (None, d), "radii_sq": (None,),
                    "radii": (None,),
                    "w": (d,), "b": ()}
        parts = len(a["centers"]) if "centers" in a and a["centers"].ndim == 2 else None
        for key in self.ARRAYS:
            want = tuple(parts if s is None else s for s in expected[key])
            value = a[key]
            if value.shape != want or not np.issubdtype(value.dtype, np.number):
                raise NumbaconcError(f"{path}: damaged {self.kind} region file: {key} has shape "
                                     f"{value.shape}, expected {want}")
            if not np.all(np.isfinite(value)):
                raise NumbaconcError(f"{path}: damaged {self.kind} region file: {key} is not finite")
        if not (np.isfinite(self.epsilon_storage) and self.epsilon_storage >= 0 and np.isfinite(self.scale)
                and self.scale > 0 and d > 0):
            raise NumbaconcError(f"{path}: damaged region file: epsilon, scale or n_features invalid")

    def summary(self) -> dict:
        """kind, metric, epsilon ([0, 1] units), whether E_eps is exact."""
        return dict(kind=self.kind, metric=self.metric, epsilon=self.epsilon,
                    exact_expansion=self.exact)


@dataclass
class BoxesRegion(Region):
    """E = outside every box grown by eps (l-inf); E_eps counted as outside
    every box, faces beyond the data domain ignored when ``meta["domain"]``."""

    kind: ClassVar[str] = "boxes"
    ARRAYS: ClassVar[tuple] = ("centers", "half_widths")
    exact: ClassVar[bool] = False

    @property
    def domain(self):
        """(lo, hi) data domain in storage units when E_eps is counted within
        it, None for the 2019 count (see numbaconc.coverage)."""
        value = self.meta.get("domain")
        return None if value is None else (float(value[0]), float(value[1]))

    def _masks(self, X):
        inside, inside_grown = box_coverage(X, self.arrays["centers"], self.arrays["half_widths"],
                                            self.epsilon_storage, domain=self.domain)
        return ~inside_grown, ~inside

    def summary(self) -> dict:
        return dict(super().summary(), n_parts=int(len(self.arrays["centers"])),
                    expansion_count="within the data domain" if self.domain else "unbounded (2019)")


@dataclass
class BallsRegion(Region):
    """E = inside some ball (l2); E_eps = inside some ball grown by eps (exact)."""

    kind: ClassVar[str] = "balls"
    ARRAYS: ClassVar[tuple] = ("centers", "radii_sq")

    def _masks(self, X):
        # ARRAYS[1]: the squared radii (l2), or the cubes' l-inf radii themselves
        return ball_coverage(X, self.arrays["centers"], self.arrays[self.ARRAYS[1]],
                             self.epsilon_storage, metric=self.metric)

    def summary(self) -> dict:
        return dict(super().summary(), n_parts=int(len(self.arrays["centers"])))


@dataclass
class CubesRegion(BallsRegion):
    """E = inside some l-inf ball (cube); E_eps = inside some cube grown by eps
    (exact): the balls' membership under the l-inf metric, radii not squared."""

    kind: ClassVar[str] = "cubes"
    ARRAYS: ClassVar[tuple] = ("centers", "radii")


@dataclass
class HalfSpaceRegion(Region):
    """E = {w.x >= b}; E_eps = {w.x >= b - eps ||w||_*} (exact; l2 or l-inf)."""

    kind: ClassVar[str] = "halfspace"
    ARRAYS: ClassVar[tuple] = ("w", "b")

    @property
    def shift(self) -> float:
        """Threshold shift eps * ||w||_* (dual norm of the metric), storage units."""
        w = self.arrays["w"]
        dual = np.abs(w).sum() if self.metric == "linf" else np.sqrt(np.dot(w, w))
        return float(self.epsilon_storage * dual)

    def _masks(self, X):
        return halfspace_coverage(X, self.arrays["w"], float(self.arrays["b"]), self.shift)


REGION_TYPES = {t.kind: t for t in (BoxesRegion, BallsRegion, CubesRegion, HalfSpaceRegion)}


def _block_counts(block: np.ndarray, region: Region) -> tuple[int, int, int]:
    """(rows, rows in E, rows in the counted E_eps) of one block."""
    in_error, in_expanded = region.masks(block)
    return len(in_error), int(in_error.sum()), int(in_expanded.sum())


def _arrays_digest(arrays: dict) -> str:
    return array_digest(*(np.asarray(arrays[key]) for key in sorted(arrays)))


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode()
    return value


def _as_2d(X, n_features: int):
    if X.ndim != 2 or X.shape[1] != n_features:
        raise NumbaconcError(
            f"data has shape {tuple(X.shape)} but the region was fitted on {n_features} features"
        )
    return X


def box_region(centers, half_widths, *, epsilon, scale, shape, domain=None, meta=None) -> BoxesRegion:
    """A ``BoxesRegion`` from storage-unit arrays and ``epsilon`` in storage
    units (how the estimators hold them). ``domain``: (lo, hi) in storage
    units to count E_eps within the data domain, None for the 2019 count."""
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    meta = dict(meta or {}, box=shape)
    if domain is not None:
        meta["domain"] = [float(domain[0]), float(domain[1])]
    return BoxesRegion("linf", float(epsilon), float(scale), centers.shape[1],
                       dict(centers=centers, half_widths=np.ascontiguousarray(half_widths, np.float64)),
                       meta)


def ball_region(centers, radii_sq, *, epsilon, scale, meta=None) -> BallsRegion:
    """A ``BallsRegion`` (storage units, ``epsilon`` too)."""
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    radii_sq = np.ascontiguousarray(radii_sq, dtype=np.float64)
    return BallsRegion("l2", float(epsilon), float(scale), centers.shape[1],
                       dict(centers=centers, radii_sq=radii_sq, radii=np.sqrt(radii_sq)), dict(meta or {}))


def cube_region(centers, radii, *, epsilon, scale, meta=None) -> CubesRegion:
    """A ``CubesRegion``: union of l-inf balls B(c_j, r_j) (storage units,
    ``epsilon`` too); E_eps: radii r_j + eps."""
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    return CubesRegion("linf", float(epsilon), float(scale), centers.shape[1],
                       dict(centers=centers, radii=np.ascontiguousarray(radii, dtype=np.float64)),
                       dict(meta or {}))


def halfspace_region(w, b, *, metric, epsilon, scale, meta=None) -> HalfSpaceRegion:
    """A ``HalfSpaceRegion`` (storage units, ``epsilon`` too)."""
    w = np.ascontiguousarray(w, dtype=np.float64)
    return HalfSpaceRegion(metric, float(epsilon), float(scale), len(w), dict(w=w, b=np.float64(b)),
                           dict(meta or {}))
