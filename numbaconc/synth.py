"""Ground truth: Gaussian datasets whose concentration is known in closed form.

For mu = N(0, Sigma) the l2 concentration is h = Phi(Phi^-1(alpha) + eps /
sigma_max) (sigma_max^2 = the largest eigenvalue of Sigma), reached by a
half-space orthogonal to the top eigenvector. Under l-inf the same value is a
lower bound, and it is reached (so exact) when the top eigenvector is a
coordinate axis: Sigma = sigma^2 I, or an unrotated diagonal Sigma.
Estimates on held-out samples must not fall below it beyond their interval.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from pathlib import Path

import h5py
import numpy as np

from .datasets import write_dataset_blocks
from .errors import NumbaconcError
from .stats import gaussian_concentration

SAMPLE_BLOCK_VALUES = 1 << 20  # numbers per generated block (fixed: the file never depends on the budget)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise NumbaconcError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def parse_spectrum(spec: str, d: int) -> np.ndarray:
    """Variances (d,) float64 from a spectrum spec.

    "isotropic" (all 1), "power:P" (sigma_i^2 = i^-P, i = 1..d), "spike:S"
    (first variance S, the rest 1), or a comma list of d positive variances.
    """
    d = _positive_int(d, "d")
    if not isinstance(spec, str) or not spec.strip():
        raise NumbaconcError(f"spectrum must be a non-empty string, got {spec!r}")
    text = spec.strip().lower()

    def number(s: str, what: str) -> float:
        try:
            value = float(s)
        except ValueError:
            raise NumbaconcError(f"spectrum {spec!r}: {what} {s!r} is not a number") from None
        if not math.isfinite(value):
            raise NumbaconcError(f"spectrum {spec!r}: {what} must be finite")
        return value

    if text == "isotropic":
        return np.ones(d)
    if text.startswith("power:"):
        p = number(text[6:], "power")
        if p < 0:
            raise NumbaconcError(f"spectrum {spec!r}: power must be >= 0")
        return np.arange(1, d + 1, dtype=np.float64) ** -p
    if text.startswith("spike:"):
        s = number(text[6:], "spike")
        if s <= 0:
            raise NumbaconcError(f"spectrum {spec!r}: spike variance must be > 0")
        variances = np.ones(d)
        variances[0] = s
        return variances
    parts = [p for p in text.split(",")]
    if len(parts) == 1 and ":" in text:
        raise NumbaconcError(f"spectrum {spec!r}: unknown kind (isotropic, power:P, spike:S or a comma list)")
    values = np.array([number(p.strip(), "variance") for p in parts])
    if len(values) != d:
        raise NumbaconcError(f"spectrum {spec!r}: {len(values)} variances for d = {d}")
    if (values <= 0).any():
        raise NumbaconcError(f"spectrum {spec!r}: variances must be > 0")
    return values


def make_gaussian(out, *, n_train: int, n_test: int, d: int, spectrum: str = "isotropic",
                  random_state: int = 0, rotate: bool = True) -> Path:
    """Write N(0, Sigma) samples (float32) as a numbaconc dataset at ``out``.

    Sigma = Q diag(variances) Q^T with Q a seeded random orthogonal matrix
    (Haar, via QR of a Gaussian matrix) when ``rotate``, else the identity, so
    with rotation the top eigenvector is not a coordinate axis.

    Rows are drawn and written in blocks of ``SAMPLE_BLOCK_VALUES`` numbers
    (8 MB in float64), so any n fits in memory; for n * d up to that size the
    file is the one a single draw gives.
    """
    n_train = _positive_int(n_train, "n_train")
    n_test = _positive_int(n_test, "n_test")
    variances = parse_spectrum(spectrum, d)
    d = len(variances)
    if isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral) or random_state < 0:
        raise NumbaconcError(f"random_state must be a non-negative integer, got {random_state!r}")
    rng = np.random.default_rng(int(random_state))
    if rotate:
        q, r = np.linalg.qr(rng.standard_normal((d, d)))
        basis = q * np.sign(np.diag(r))  # sign fix makes Q Haar-distributed
    else:
        basis = np.eye(d)
    scale = np.sqrt(variances)
    digest = hashlib.sha256()
    rows = max(1, SAMPLE_BLOCK_VALUES // d)

    def blocks(n):
        # fixed-size blocks drawn in order from one generator: the same stream
        # as one draw of n rows, and a file that does not depend on the budget
        for start in range(0, n, rows):
            x = ((rng.standard_normal((min(rows, n - start), d)) * scale) @ basis.T).astype(np.float32)
            digest.update(x.tobytes())
            yield x, None

    top = int(np.argmax(variances))
    source = (f"synth:gaussian:spectrum={spectrum}:d={d}:n_train={n_train}:n_test={n_test}"
              f":random_state={random_state}:rotate={bool(rotate)}")
    return write_dataset_blocks(
        out, name=f"gaussian-{spectrum}-d{d}", n_features=d, dtype=np.float32,
        splits={"train": (n_train, blocks(n_train), False), "test": (n_test, blocks(n_test), False)},
        image_shape=(d,), checksum=lambda: digest.hexdigest(), source=source,
        extra_attrs=dict(kind="gaussian", sigma_max=float(np.sqrt(variances.max())),
                         variances=variances, random_state=int(random_state), rotate=bool(rotate),
                         spectrum=str(spectrum), top_direction=basis[:, top]),
    )


def ground_truth(dataset, alpha: float, epsilon_storage: float, metric: str) -> dict | None:
    """The closed-form concentration of a ``make_gaussian`` file, or None.

    ``dataset``: a ``Dataset`` from ``open_dataset`` or a path. Returns
    ``dict(concentration, relation, metric, alpha, epsilon, sigma_max)`` with
    relation "exact" (l2; l-inf when the top eigenvector is an axis) or
    "lower bound" (l-inf otherwise). None for data that is not a numbaconc
    Gaussian.
    """
    if metric not in ("l2", "linf"):
        raise NumbaconcError(f"metric must be l2 or linf, got {metric!r}")
    path = Path(getattr(dataset, "path", dataset))
    try:
        with h5py.File(path, "r") as f:
            attrs = {key: f.attrs[key] for key in ("kind", "sigma_max", "variances", "rotate") if key in f.attrs}
    except OSError as exc:
        raise NumbaconcError(f"{path}: not a readable HDF5 file ({exc})") from None
    kind = attrs.get("kind")
    if isinstance(kind, bytes):
        kind = kind.decode()
    if kind != "gaussian" or "sigma_max" not in attrs:
        return None
    sigma_max = float(attrs["sigma_max"])
    value = gaussian_concentration(alpha, epsilon_storage, sigma_max)
    variances = np.asarray(attrs.get("variances", [sigma_max ** 2]), dtype=np.float64)
    isotropic = bool(np.all(variances == variances[0]))
    axis_aligned = isotropic or not bool(attrs.get("rotate", True))
    relation = "exact" if metric == "l2" or axis_aligned else "lower bound"
    return dict(concentration=value, relation=relation, metric=metric, alpha=float(alpha),
                epsilon=float(epsilon_storage), sigma_max=sigma_max)
