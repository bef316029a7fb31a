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

import h5py
import numpy as np

from .datasets import atomic_path
from .errors import NumbaconcError

REGION_FORMAT = 1
REGION_ARRAYS = {"boxes": ("centers", "half_widths"), "balls": ("centers", "radii_sq"),
                 "cubes": ("centers", "radii"), "halfspace": ("w", "b")}   # what each kind needs to answer masks()


@dataclass
class Region:
    """Base: ``epsilon`` and arrays are in storage units of data with ``scale``."""

    kind: str
    metric: str
    epsilon: float
    scale: float
    n_features: int
    arrays: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    # -- membership ------------------------------------------------------
    def masks(self, X) -> tuple[np.ndarray, np.ndarray]:
        """(in_error, in_expanded) for every row of X."""
        X = _as_2d(X, self.n_features)
        if self.kind == "boxes":
            from .boxes_coverage import box_coverage

            inside, inside_grown = box_coverage(
                X, self.arrays["centers"], self.arrays["half_widths"], self.epsilon,
                domain=self.domain,
            )
            return ~inside_grown, ~inside
        if self.kind == "balls":
            from .balls import ball_coverage

            inside, inside_grown = ball_coverage(
                X, self.arrays["centers"], self.arrays["radii_sq"], self.epsilon
            )
            return inside, inside_grown
        if self.kind == "cubes":
            from .balls import ball_coverage

            return ball_coverage(X, self.arrays["centers"], self.arrays["radii"], self.epsilon,
                                 metric="linf")
        if self.kind == "halfspace":
            from .halfspace import halfspace_coverage

            w = self.arrays["w"]
            return halfspace_coverage(X, w, float(self.arrays["b"]), self.shift)
        raise NumbaconcError(f"unknown region kind {self.kind!r}")

    @property
    def domain(self):
        """Box regions: (lo, hi) data domain in storage units when E_eps is
        counted within it, None for the 2019 count (see boxes_coverage)."""
        value = self.meta.get("domain")
        return None if value is None else (float(value[0]), float(value[1]))

    @property
    def shift(self) -> float:
        """Half-space threshold shift eps * ||w||_* (dual norm of the metric)."""
        w = self.arrays["w"]
        dual = np.abs(w).sum() if self.metric == "linf" else np.sqrt(np.dot(w, w))
        return float(self.epsilon * dual)

    @property
    def exact(self) -> bool:
        return self.kind != "boxes"

    def evaluate(self, X) -> dict:
        """Counts and fractions of E and (counted) E_eps on X.

        X (array, memmap, h5py dataset or RowView) is read in row blocks sized
        by the memory budget and the counts are summed per block, so no
        n-long mask is built (masks are row by row: the counts equal those
        of ``masks(X)``).
        """
        from .datasets import RowView

        X = _as_2d(X, self.n_features)
        n = k_err = k_adv = 0
        for _, _, block in RowView(X).blocks():
            in_error, in_expanded = self.masks(block)
            n += len(in_error)
            k_err += int(in_error.sum())
            k_adv += int(in_expanded.sum())
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
                f.attrs.update(kind=self.kind, metric=self.metric, epsilon=self.epsilon,
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
        """Read a region file, checking that it is whole: every array its kind
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
                if kind not in REGION_ARRAYS:
                    raise NumbaconcError(f"{path}: unknown region kind {kind!r}")
                absent = [key for key in REGION_ARRAYS[kind]
                          if not isinstance(f.get(key), h5py.Dataset)]
                if absent:
                    raise NumbaconcError(f"{path}: damaged {kind} region file: no "
                                         f"{', '.join(absent)} dataset")
                arrays = {key: np.asarray(f[key][()]) for key in f
                          if key != "meta" and isinstance(f[key], h5py.Dataset)}
                meta = dict(f["meta"].attrs) if isinstance(f.get("meta"), h5py.Group) else {}
                region = cls(kind=kind, metric=str(_plain(attrs["metric"])),
                             epsilon=float(attrs["epsilon"]), scale=float(attrs["scale"]),
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
        for key in REGION_ARRAYS[self.kind]:
            want = tuple(parts if s is None else s for s in expected[key])
            value = a[key]
            if value.shape != want or not np.issubdtype(value.dtype, np.number):
                raise NumbaconcError(f"{path}: damaged {self.kind} region file: {key} has shape "
                                     f"{value.shape}, expected {want}")
            if not np.all(np.isfinite(value)):
                raise NumbaconcError(f"{path}: damaged {self.kind} region file: {key} is not finite")
        if not (np.isfinite(self.epsilon) and self.epsilon >= 0 and np.isfinite(self.scale)
                and self.scale > 0 and d > 0):
            raise NumbaconcError(f"{path}: damaged region file: epsilon, scale or n_features invalid")

    def summary(self) -> dict:
        out = dict(kind=self.kind, metric=self.metric, epsilon=self.epsilon * self.scale,
                   exact_expansion=self.exact)
        if self.kind in ("boxes", "balls", "cubes"):
            out["n_parts"] = int(len(self.arrays["centers"]))
        if self.kind == "boxes":
            out["expansion_count"] = "within the data domain" if self.domain else "unbounded (2019)"
        return out


def _arrays_digest(arrays: dict) -> str:
    from .integrity import array_digest

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


def box_region(centers, half_widths, *, epsilon, scale, shape, domain=None, meta=None) -> Region:
    """``domain``: (lo, hi) in storage units to count E_eps within the data
    domain, None for the 2019 count."""
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    meta = dict(meta or {}, box=shape)
    if domain is not None:
        meta["domain"] = [float(domain[0]), float(domain[1])]
    return Region("boxes", "linf", float(epsilon), float(scale), centers.shape[1],
                  dict(centers=centers, half_widths=np.ascontiguousarray(half_widths, np.float64)),
                  meta)


def ball_region(centers, radii_sq, *, epsilon, scale, meta=None) -> Region:
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    radii_sq = np.ascontiguousarray(radii_sq, dtype=np.float64)
    return Region("balls", "l2", float(epsilon), float(scale), centers.shape[1],
                  dict(centers=centers, radii_sq=radii_sq, radii=np.sqrt(radii_sq)), dict(meta or {}))


def cube_region(centers, radii, *, epsilon, scale, meta=None) -> Region:
    """Union of l-inf balls B(c_j, r_j) (storage units); E_eps: radii r_j + eps."""
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    return Region("cubes", "linf", float(epsilon), float(scale), centers.shape[1],
                  dict(centers=centers, radii=np.ascontiguousarray(radii, dtype=np.float64)),
                  dict(meta or {}))


def halfspace_region(w, b, *, metric, epsilon, scale, meta=None) -> Region:
    w = np.ascontiguousarray(w, dtype=np.float64)
    return Region("halfspace", metric, float(epsilon), float(scale), len(w),
                  dict(w=w, b=np.float64(b)), dict(meta or {}))
