"""Statistics for reported figures: binomial intervals and the Gaussian ground truth."""

from __future__ import annotations

import math
import numbers

from scipy import stats as _st

from .errors import NumbaconcError


def _check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise NumbaconcError(f"confidence level must be in (0, 1), got {level}")
    return level


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval for a binomial proportion k / n.

    Test-set risks are proportions of n held-out points; this is the interval
    reported next to each (METHOD.md section 6).
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise NumbaconcError(f"k must be an integer count, got {k!r}")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise NumbaconcError(f"n must be an integer count, got {n!r}")
    k, n = int(k), int(n)
    if n <= 0:
        raise NumbaconcError(f"n must be positive, got {n}")
    if not 0 <= k <= n:
        raise NumbaconcError(f"k must be in [0, n={n}], got {k}")
    tail = (1.0 - _check_level(level)) / 2.0
    low = 0.0 if k == 0 else float(_st.beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(_st.beta.ppf(1.0 - tail, k + 1, n - k))
    return low, high


def gaussian_concentration(alpha: float, epsilon: float, sigma_max: float) -> float:
    """Phi(Phi^-1(alpha) + epsilon / sigma_max).

    The exact l2 concentration h(mu, alpha, epsilon) of mu = N(0, Sigma) with
    sigma_max^2 the largest eigenvalue of Sigma (Gaussian isoperimetry: a
    half-space orthogonal to the top eigenvector is optimal). Under l-inf it is
    a lower bound (the l-inf ball contains the l2 ball), reached when the top
    eigenvector is a coordinate axis (e.g. Sigma = I).
    """
    alpha, epsilon, sigma_max = float(alpha), float(epsilon), float(sigma_max)
    if not 0.0 < alpha < 1.0:
        raise NumbaconcError(f"alpha must be in (0, 1), got {alpha}")
    if not (epsilon >= 0.0 and math.isfinite(epsilon)):
        raise NumbaconcError(f"epsilon must be finite and >= 0, got {epsilon}")
    if not (sigma_max > 0.0 and math.isfinite(sigma_max)):
        raise NumbaconcError(f"sigma_max must be finite and > 0, got {sigma_max}")
    return float(_st.norm.cdf(_st.norm.ppf(alpha) + epsilon / sigma_max))


def clopper_pearson_many(k, n: int, level: float = 0.95):
    """``clopper_pearson`` for an array of counts out of the same n: (low, high) arrays."""
    import numpy as np

    k = np.asarray(k, dtype=np.int64)
    n = int(n)
    if n <= 0 or k.size and (k.min() < 0 or k.max() > n):
        raise NumbaconcError(f"counts must be in [0, n={n}]")
    tail = (1.0 - _check_level(level)) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(k == 0, 0.0, _st.beta.ppf(tail, np.maximum(k, 1), n - k + 1))
        high = np.where(k == n, 1.0, _st.beta.ppf(1.0 - tail, k + 1, np.maximum(n - k, 1)))
    return low.astype(np.float64), high.astype(np.float64)
