import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from numbaconc.errors import NumbaconcError
from numbaconc.stats import clopper_pearson, gaussian_concentration


@settings(deadline=None, max_examples=80)
@given(n=st.integers(1, 5000), data=st.data(), level=st.sampled_from([0.5, 0.9, 0.95, 0.99]))
def test_clopper_pearson_matches_scipy_binomtest(n, data, level):
    k = data.draw(st.integers(0, n))
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    low, high = clopper_pearson(k, n, level)
    assert math.isclose(low, ref.low, rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(high, ref.high, rel_tol=1e-9, abs_tol=1e-12)
    assert 0.0 <= low <= k / n <= high <= 1.0


def test_clopper_pearson_edges():
    assert clopper_pearson(0, 10)[0] == 0.0
    assert clopper_pearson(10, 10)[1] == 1.0
    # the textbook value: 0 successes in n, upper bound 1 - (0.025)^(1/n)
    assert math.isclose(clopper_pearson(0, 20)[1], 1 - 0.025 ** (1 / 20), rel_tol=1e-10)
    assert clopper_pearson(np.int64(3), np.int64(7)) == clopper_pearson(3, 7)


@pytest.mark.parametrize("args, match", [
    ((-1, 10), "k must"), ((11, 10), "k must"), ((0, 0), "n must"), ((1.5, 10), "k must"),
    ((1, 10.0), "n must"), ((True, 10), "k must"), ((1, 10, 1.0), "confidence"),
    ((1, 10, 0.0), "confidence"),
])
def test_clopper_pearson_bad_input(args, match):
    with pytest.raises(NumbaconcError, match=match):
        clopper_pearson(*args)


def test_gaussian_concentration_values():
    assert math.isclose(gaussian_concentration(0.3, 0.0, 2.0), 0.3, rel_tol=1e-12)
    assert math.isclose(gaussian_concentration(0.5, 1.0, 1.0), stats.norm.cdf(1.0), rel_tol=1e-12)
    assert math.isclose(gaussian_concentration(0.01, 3.0, 2.0),
                        stats.norm.cdf(stats.norm.ppf(0.01) + 1.5), rel_tol=1e-12)
    values = [gaussian_concentration(0.05, e, 1.5) for e in np.linspace(0, 5, 11)]
    assert all(a < b for a, b in zip(values, values[1:]))


def test_gaussian_concentration_monte_carlo():
    # the half-space {x_1 >= sigma * Phi^-1(1 - alpha)} of N(0, diag(sigma^2, 1)):
    # its eps-expansion has measure Phi(Phi^-1(alpha) + eps / sigma)
    rng = np.random.default_rng(0)
    sigma, alpha, eps = 3.0, 0.05, 2.0
    x = rng.standard_normal(400_000) * sigma
    b = sigma * stats.norm.ppf(1 - alpha)
    assert abs((x >= b - eps).mean() - gaussian_concentration(alpha, eps, sigma)) < 3e-3


@pytest.mark.parametrize("args, match", [
    ((0.0, 1.0, 1.0), "alpha"), ((1.0, 1.0, 1.0), "alpha"), ((0.1, -1.0, 1.0), "epsilon"),
    ((0.1, 1.0, 0.0), "sigma_max"), ((0.1, float("inf"), 1.0), "epsilon"),
    ((0.1, 1.0, float("nan")), "sigma_max"),
])
def test_gaussian_concentration_bad_input(args, match):
    with pytest.raises(NumbaconcError, match=match):
        gaussian_concentration(*args)
