import math

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_halfspace import (
    ref_coverage, ref_dual_norm, ref_rank, ref_search, ref_select_count, ref_top_pc,
)

from numbaconc.errors import NumbaconcError
from numbaconc.halfspace import (
    DEFAULT_POWERS, HalfSpaceFit, fit_halfspace, fit_halfspace_curve, halfspace_coverage,
    halfspace_risks,
    principal_components,
)
from numbaconc.kernels import halfspace as K


def _readonly_memmap(tmp_path, X):
    path = tmp_path / "x.bin"
    X.tofile(path)
    return np.memmap(path, dtype=X.dtype, mode="r", shape=X.shape)


def _uint8_data(n, d, seed=0):
    """Pixel-like data with 0/255 extremes and duplicate rows."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(n, d), dtype=np.uint8)
    X[rng.random((n, d)) < 0.3] = 0
    X[rng.random((n, d)) < 0.1] = 255
    X[: n // 10] = X[n // 10: 2 * (n // 10)]  # duplicates
    X[:, 0] = (X[:, 0] // 64) * 64  # a coarse feature: ties in projections
    return X


def _close_or_on_boundary(got, p, thr, tol):
    """got == (p >= thr) wherever p is not within tol of the threshold."""
    far = np.abs(p - thr) > tol
    return np.array_equal(got[far], (p >= thr)[far])


def _assert_risks_match_reference(X, fit):
    """halfspace_risks(X, fit) against numpy counts of {w.x >= b} and
    {w.x >= b - shift}, up to rows within rounding of a threshold."""
    n_in, n_eps, m = halfspace_risks(X, fit)
    p = np.asarray(X, dtype=np.float64) @ fit.w
    tol = 1e-9 * (1.0 + np.abs(p).max())
    for got, thr in ((n_in, fit.b), (n_eps, fit.b - fit.shift)):
        want = int((p >= thr).sum())
        assert abs(got - want) <= int((np.abs(p - thr) <= tol).sum()), (got, want)
    assert m == len(p) and n_in <= n_eps
    return n_in, n_eps


# ------------------------------------------------------------------ kernels


def _select_count(P, k, shifts):
    n_rows = P.shape[0]
    b_hi, b_lo = np.empty(n_rows, np.float32), np.empty(n_rows, np.float32)
    counts = np.empty((n_rows, shifts.shape[1], 4), np.int64)
    K.select_thresholds(P, k, b_hi, b_lo)
    K.count_sides(P, b_hi, b_lo, shifts, counts)
    return b_hi, b_lo, counts


@settings(deadline=None, max_examples=60)
@given(
    n_rows=st.integers(1, 3), n=st.integers(1, 120), n_eps=st.integers(1, 3), data=st.data(),
    ties=st.booleans(),
)
def test_select_count_matches_sort(n_rows, n, n_eps, data, ties):
    k = data.draw(st.integers(1, n))
    if ties:
        vals = st.integers(-3, 3).map(float)
    else:
        vals = st.floats(-1e4, 1e4, allow_nan=False, width=32)
    P = np.array(data.draw(st.lists(vals, min_size=n * n_rows, max_size=n * n_rows)),
                 dtype=np.float32).reshape(n_rows, n)
    shifts = np.array(data.draw(st.lists(st.floats(0, 5), min_size=n_rows * n_eps,
                                         max_size=n_rows * n_eps))).reshape(n_rows, n_eps)
    got = _select_count(P, k, shifts)
    ref = ref_select_count(P, k, shifts)
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)


def test_select_count_crowded_bin_falls_back_to_heap():
    # one huge outlier puts almost every value in the lowest histogram bin
    rng = np.random.default_rng(1)
    P = rng.standard_normal((2, 12000)).astype(np.float32)
    P[:, 0] = 1e30
    P[1, 1:] = np.round(P[1, 1:])  # and heavy ties
    shifts = np.array([[0.25, 3.0], [1.0, 0.0]])
    for k in (1, 7, 300, 6000, 12000):
        got = _select_count(P, k, shifts)
        ref = ref_select_count(P, k, shifts)
        for a, b in zip(got, ref):
            np.testing.assert_array_equal(a, b)
    # the whole float32 range (max - min overflows float32)
    P = rng.standard_normal((2, 500)).astype(np.float32)
    P[0, :3] = [3e38, -3e38, 0.0]
    P[1, :2] = [np.finfo(np.float32).max, np.finfo(np.float32).min]
    for k in (1, 2, 3, 250, 500):
        got = _select_count(P, k, shifts)
        ref = ref_select_count(P, k, shifts)
        for a, b in zip(got, ref):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_project_rows_matches_numpy(tmp_path, dtype):
    rng = np.random.default_rng(2)
    X = _uint8_data(50, 13).astype(dtype)
    w = rng.standard_normal(13)
    for data in (X, _readonly_memmap(tmp_path, X)):
        out = np.empty(50)
        K.project_rows(data, w, out)
        np.testing.assert_allclose(out, X.astype(np.float64) @ w, rtol=1e-12, atol=1e-9)


# ----------------------------------------------------------------- coverage


@pytest.mark.parametrize("metric", ["l2", "linf"])
def test_coverage_exact_on_boundary(tmp_path, metric):
    # dyadic w and integer data: projections are exact, so boundary points
    # (distance exactly 0 or exactly eps) must be inside (inclusive membership)
    X = _uint8_data(400, 6, seed=3)
    w = np.array([0.5, -0.25, 1.0, 0.0, 0.75, -1.0])
    dual = ref_dual_norm(w, metric)
    p = np.sort(X.astype(np.float64) @ w)
    b = float(p[len(p) // 2])  # a data point lies exactly on the boundary
    shift = b - float(p[len(p) // 3])  # and one exactly at distance eps
    eps = shift / dual
    in_ref, eps_ref, _ = ref_coverage(X, w, b, eps, metric)
    for data in (X, _readonly_memmap(tmp_path, X)):
        inside, inside_eps = halfspace_coverage(data, w, b, shift, block_rows=37)
        np.testing.assert_array_equal(inside, in_ref)
        np.testing.assert_array_equal(inside_eps, eps_ref)
    assert (p == b).any() and (p == b - shift).any()


def test_coverage_blocks_and_h5py_identical(tmp_path):
    rng = np.random.default_rng(4)
    X = _uint8_data(1000, 20, seed=4)
    w = rng.standard_normal(20)
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=X, chunks=(64, 20), compression="gzip")
    base = halfspace_coverage(X, w, 10.0, 50.0)
    got = halfspace_coverage(X, w, 10.0, 50.0, block_rows=333)
    assert all(np.array_equal(a, b) for a, b in zip(base, got))
    got = halfspace_coverage(X[:40], w, 10.0, 50.0, block_rows=1)
    assert all(np.array_equal(a[:40], b) for a, b in zip(base, got))
    with h5py.File(path, "r") as f:
        got = halfspace_coverage(f["x"], w, 10.0, 50.0, block_rows=100)
    assert all(np.array_equal(a, b) for a, b in zip(base, got))


# ---------------------------------------------------------------------- pca


def test_principal_components_match_svd():
    rng = np.random.default_rng(5)
    X = (rng.standard_normal((300, 7)) * np.array([5, 3, 2, 1, 1, 0.5, 0.1])).astype(np.float32)
    _, V = principal_components(X, block_rows=64)
    ref = ref_top_pc(X)
    assert abs(abs(float(V[:, 0] @ ref)) - 1.0) < 1e-9
    fit = fit_halfspace(X, 0.05, 0.5, metric="l2", method="pca")
    assert abs(abs(float(fit.w @ ref)) - 1.0) < 1e-9
    assert fit.component == 0 and fit.power == 1.0 and math.isclose(np.linalg.norm(fit.w), 1.0)


@pytest.mark.parametrize("metric", ["l2", "linf"])
@pytest.mark.parametrize("alpha", [0.01, 0.1, 0.37])
def test_pca_fit_matches_brute_force(tmp_path, metric, alpha):
    X = _uint8_data(500, 10, seed=6)
    eps = 40.0
    fit = fit_halfspace(_readonly_memmap(tmp_path, X), alpha, eps, metric=metric, method="pca")
    n = len(X)
    k = ref_rank(alpha, n)
    assert fit.train_risk >= alpha and fit.alpha_fit == alpha
    in_ref, eps_ref, p = ref_coverage(X, fit.w, fit.b, eps, metric)
    tol = 1e-9 * (1 + np.abs(p).max())
    # b is the k-th largest projection (up to float rounding of the reference)
    assert abs(np.sort(p)[::-1][k - 1] - fit.b) <= tol
    inside, inside_eps = halfspace_coverage(X, fit.w, fit.b, fit.shift)
    assert inside.mean() == fit.train_risk and inside_eps.mean() == fit.train_adv_risk
    assert _close_or_on_boundary(inside, p, fit.b, tol)
    assert _close_or_on_boundary(inside_eps, p, fit.b - eps * ref_dual_norm(fit.w, metric), tol)
    assert math.isclose(fit.shift, eps * ref_dual_norm(fit.w, metric), rel_tol=1e-12)
    # the kept side has the lower adversarial risk of the two
    assert len(fit.search) == 2
    assert fit.train_adv_risk == min(r["adv_risk"] for r in fit.search)


# ------------------------------------------------------------------- search


@pytest.mark.parametrize("metric", ["l2", "linf"])
def test_search_picks_the_best_candidate(metric):
    X = _uint8_data(600, 8, seed=7)
    alpha, eps, powers = 0.05, 30.0, (1, 2, 4)
    fit = fit_halfspace(X, alpha, eps, metric=metric, method="search", powers=powers)
    n = len(X)
    alpha_fit = alpha + 0.5 / math.sqrt(n)
    assert math.isclose(fit.alpha_fit, alpha_fit)
    assert fit.train_risk >= alpha_fit
    ref = ref_search(X, alpha_fit, eps, metric, 8, powers)
    assert len(fit.search) == len(ref) == 2 * 8 * len(powers)
    for got in fit.search:
        assert got["risk"] >= alpha_fit
    best = min(r["adv_risk"] for r in ref)
    # float32 search, float64 refit: equal up to points on a threshold
    assert fit.train_adv_risk <= best + 3 / n
    # the reported figures are exact for the reported half-space
    in_ref, eps_ref, p = ref_coverage(X, fit.w, fit.b, eps, metric)
    tol = 1e-9 * (1 + np.abs(p).max())
    inside, inside_eps = halfspace_coverage(X, fit.w, fit.b, fit.shift)
    assert inside.mean() == fit.train_risk and inside_eps.mean() == fit.train_adv_risk
    assert _close_or_on_boundary(inside_eps, p, fit.b - fit.shift, tol)
    # every recorded candidate agrees with the brute force (tie slack 2 points);
    # a component's sign is arbitrary, so compare the two sides as a pair
    def pairs(records):
        out = {}
        for r in records:
            out.setdefault((r["component"], r["power"]), []).append((r["risk"], r["adv_risk"]))
        return {key: sorted(v, key=lambda t: t[1]) for key, v in out.items()}

    got_pairs, ref_pairs = pairs(fit.search), pairs(ref)
    assert got_pairs.keys() == ref_pairs.keys()
    for key, got in got_pairs.items():
        np.testing.assert_allclose(np.array(got), np.array(ref_pairs[key]), atol=2 / n + 1e-12)


def test_search_margin_and_components():
    X = _uint8_data(300, 6, seed=8)
    fit = fit_halfspace(X, 0.1, 20.0, metric="linf", margin=0, n_components=2, powers=(1, 3))
    assert fit.alpha_fit == 0.1 and fit.train_risk >= 0.1
    assert {r["component"] for r in fit.search} == {0, 1}
    assert {r["power"] for r in fit.search} == {1.0, 3.0}
    assert fit.component in (0, 1) and fit.power in (1.0, 3.0)


def test_search_eps_zero_equals_risk():
    X = _uint8_data(300, 6, seed=9)
    fit = fit_halfspace(X, 0.2, 0.0, metric="l2", n_components=3)
    assert fit.train_adv_risk == fit.train_risk


def test_x_select_picks_on_validation():
    X = _uint8_data(600, 8, seed=10)
    Xv = _uint8_data(300, 8, seed=11)
    alpha = 0.05
    fit = fit_halfspace(X, alpha, 30.0, metric="linf", n_components=4, powers=(1, 2), X_select=Xv)
    assert fit.selection == "select"
    ok = [r for r in fit.search if r["select_risk"] >= alpha]
    best = min(r["select_adv_risk"] for r in ok)
    assert fit.select_risk >= alpha - 2 / 300
    assert fit.select_adv_risk <= best + 2 / 300
    inside, inside_eps = halfspace_coverage(Xv, fit.w, fit.b, fit.shift)
    assert inside.mean() == fit.select_risk and inside_eps.mean() == fit.select_adv_risk
    # thresholds still come from X
    assert fit.train_risk >= fit.alpha_fit


def test_x_select_unreachable_falls_back_to_train():
    X = _uint8_data(400, 5, seed=12)
    # one validation point at the data mean lies in no direction's 5 % tail
    Xv = np.round(X.mean(axis=0)).astype(np.uint8)[None, :]
    fit = fit_halfspace(X, 0.05, 10.0, metric="l2", n_components=3, powers=(1,), X_select=Xv)
    assert fit.selection == "train (no candidate reached alpha on X_select)"
    assert fit.select_risk == 0.0
    plain = fit_halfspace(X, 0.05, 10.0, metric="l2", n_components=3, powers=(1,))
    assert np.array_equal(fit.w, plain.w) and fit.b == plain.b


def test_threads_identical(threads):
    X = _uint8_data(800, 12, seed=13)
    fits = []
    for t in (1, 2):
        threads(t)
        fits.append(fit_halfspace(X, 0.03, 25.0, metric="linf", n_components=6, batch=5))
    a, b = fits
    assert np.array_equal(a.w, b.w) and a.b == b.b
    assert (a.train_risk, a.train_adv_risk) == (b.train_risk, b.train_adv_risk)
    assert a.search == b.search


def test_batch_size_does_not_change_result():
    X = _uint8_data(500, 9, seed=14)
    a = fit_halfspace(X, 0.05, 20.0, metric="l2", n_components=9, powers=(1, 2), batch=1)
    b = fit_halfspace(X, 0.05, 20.0, metric="l2", n_components=9, powers=(1, 2), batch=256)
    assert np.array_equal(a.w, b.w) and a.b == b.b and a.train_adv_risk == b.train_adv_risk


def test_progress_and_float_input():
    rng = np.random.default_rng(15)
    X = rng.random((200, 5)).astype(np.float32)
    calls = []
    fit = fit_halfspace(X, 0.1, 0.05, metric="l2", n_components=5, powers=(1, 2), batch=3,
                        progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (10, 10) and [c[0] for c in calls] == sorted(c[0] for c in calls)
    assert isinstance(fit, HalfSpaceFit) and fit.w.dtype == np.float64
    n_in, n_eps = _assert_risks_match_reference(X, fit)  # float input, on the fitting set:
    assert (n_in / 200, n_eps / 200) == (fit.train_risk, fit.train_adv_risk)  # the fit's risks


@pytest.mark.parametrize("method", ["search", "pca"])
def test_curve_equals_separate_fits(method):
    X = _uint8_data(400, 7, seed=16)
    Xv = _uint8_data(200, 7, seed=17)
    eps = [0.0, 15.0, 40.0]
    for select in (None, Xv):
        curve = fit_halfspace_curve(X, 0.05, eps, metric="linf", method=method, n_components=4,
                                    powers=(1, 2), X_select=select)
        assert [f.epsilon for f in curve] == eps
        for e, got in zip(eps, curve):
            one = fit_halfspace(X, 0.05, e, metric="linf", method=method, n_components=4, powers=(1, 2),
                                X_select=select)
            assert np.array_equal(got.w, one.w) and got.b == one.b and got.shift == one.shift
            assert (got.train_risk, got.train_adv_risk) == (one.train_risk, one.train_adv_risk)
            assert (got.select_risk, got.select_adv_risk) == (one.select_risk, one.select_adv_risk)
            assert got.search == one.search
    assert curve[0].train_adv_risk == curve[0].train_risk
    assert curve[0].train_adv_risk <= curve[1].train_adv_risk <= curve[2].train_adv_risk


@pytest.mark.parametrize("eps", [[], [1.0, -1.0], [float("nan")], ["a"], [[1.0, None]]])
def test_curve_bad_epsilons(eps):
    with pytest.raises(NumbaconcError, match="epsilon"):
        fit_halfspace_curve(_uint8_data(50, 4), 0.1, eps, metric="l2")


def test_default_powers_documented():
    import inspect
    import re

    import numbaconc.halfspace as hs

    # the grid the module docstring documents is the one the fits use by default
    documented = re.search(r"DEFAULT_POWERS = \(([^)]*)\)", hs.__doc__).group(1)
    assert tuple(float(e) for e in documented.split(",")) == DEFAULT_POWERS
    for fn in (fit_halfspace, fit_halfspace_curve):
        assert inspect.signature(fn).parameters["powers"].default == DEFAULT_POWERS
    X = _uint8_data(120, 5, seed=18)
    fit = fit_halfspace(X, 0.05, 10.0, metric="linf", n_components=2)
    assert sorted({c["power"] for c in fit.search}) == list(DEFAULT_POWERS)


def test_real_mnist_subset():
    from numbaconc.datasets import open_dataset

    with open_dataset("mnist") as ds:
        X = ds.train.x[:3000]  # read-only memmap slice
        eps = 0.3 / ds.scale
        fit = fit_halfspace(X, 0.01, eps, metric="linf", n_components=20, powers=(1, 4))
        assert fit.train_risk >= fit.alpha_fit
        _assert_risks_match_reference(ds.test.x[:2000], fit)
        n_in, n_eps = _assert_risks_match_reference(X, fit)
        assert (n_in / len(X), n_eps / len(X)) == (fit.train_risk, fit.train_adv_risk)
        assert fit.train_adv_risk < 1.0


# --------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, match", [
    (dict(alpha=0.0), "alpha"),
    (dict(alpha=1.0), "alpha"),
    (dict(alpha=float("nan")), "alpha"),
    (dict(epsilon=-1.0), "epsilon"),
    (dict(metric="l1"), "metric"),
    (dict(metric="chebyshev"), "metric"),
    (dict(method="boxes"), "method"),
    (dict(n_components=0), "n_components"),
    (dict(n_components=99), "n_components"),
    (dict(powers=()), "powers"),
    (dict(powers=(1, -2)), "powers"),
    (dict(powers="abc"), "powers"),
    (dict(margin=-0.1), "margin"),
    (dict(alpha=0.9, margin=0.2), "margin"),
    (dict(batch=0), "batch"),
    (dict(X_select=np.zeros((5, 3), np.uint8)), "X_select"),
])
def test_bad_input(kwargs, match):
    X = _uint8_data(50, 4)
    args = dict(alpha=0.1, epsilon=1.0, metric="l2")
    args.update(kwargs)
    with pytest.raises(NumbaconcError, match=match):
        fit_halfspace(X, args.pop("alpha"), args.pop("epsilon"), **args)


def test_bad_matrix_and_coverage_input():
    with pytest.raises(NumbaconcError, match="2-D"):
        fit_halfspace(np.zeros(10, np.uint8), 0.1, 1.0, metric="l2")
    with pytest.raises(NumbaconcError, match="dtype"):
        fit_halfspace(np.zeros((10, 3), np.int32), 0.1, 1.0, metric="l2")
    with pytest.raises(NumbaconcError, match="at least 2"):
        fit_halfspace(np.zeros((1, 3), np.uint8), 0.1, 1.0, metric="l2")
    bad = np.zeros((10, 3), np.float32)
    bad[4, 1] = np.nan
    with pytest.raises(NumbaconcError, match="NaN"):
        fit_halfspace(bad, 0.1, 1.0, metric="l2")
    X = np.zeros((10, 3), np.uint8)
    with pytest.raises(NumbaconcError, match="shape"):
        halfspace_coverage(X, np.ones(2), 0.0, 0.0)
    with pytest.raises(NumbaconcError, match="shift"):
        halfspace_coverage(X, np.ones(3), 0.0, -1.0)
    with pytest.raises(NumbaconcError, match="NaN"):
        halfspace_coverage(X, np.array([1.0, np.nan, 0.0]), 0.0, 0.0)
    with pytest.raises(NumbaconcError, match="block_rows"):
        halfspace_coverage(X, np.ones(3), 0.0, 0.0, block_rows=0)
