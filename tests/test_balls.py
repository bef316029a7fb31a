"""fit_balls / ball_coverage against the brute-force definition (reference_balls)."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from numbaconc.balls import ball_coverage, fit_balls
from numbaconc.errors import NumbaconcError
from reference_balls import Knn, coverage_ref, fit_balls_ref


def _data(kind, n, d, seed):
    rng = np.random.default_rng(seed)
    if kind == "levels":  # uint8 with many ties
        return rng.integers(0, 4, size=(n, d)).astype(np.uint8)
    if kind == "extremes":  # uint8 0/255 only, plus duplicate rows
        X = (rng.random((n, d)) < 0.5).astype(np.uint8) * 255
        X[n // 2:n // 2 + 5] = X[0]
        return X
    if kind == "clusters":
        centres = rng.integers(0, 256, size=(3, d))
        X = centres[rng.integers(0, 3, n)] + rng.integers(-20, 21, size=(n, d))
        return np.clip(X, 0, 255).astype(np.uint8)
    if kind == "float":
        X = rng.random((n, d)).astype(np.float32)
        X[7] = X[3]  # a duplicate
        return X
    raise ValueError(kind)


def _assert_same(X, alpha, eps, T, delta, K):
    centers, radii_sq, gains, cov, exp = fit_balls_ref(X, alpha, eps, T, delta)
    fit = fit_balls(X, alpha, eps, T, delta=delta, neighbors=Knn(X, K))
    np.testing.assert_array_equal(fit.center_index, centers)
    np.testing.assert_array_equal(fit.radii_sq, radii_sq)
    assert [h["gain"] for h in fit.history] == gains
    np.testing.assert_array_equal(fit.covered, cov)
    np.testing.assert_array_equal(fit.expanded, exp)
    np.testing.assert_array_equal(fit.radii, np.sqrt(radii_sq))
    np.testing.assert_array_equal(fit.centers, X[centers].astype(np.float64))
    return fit


CASES = [  # alpha, eps (storage units), T, delta
    (0.1, 1.0, 3, 0.0),
    (0.2, 2.5, 4, 0.25),
    (0.05, 0.0, 1, 0.0),
    (0.3, 1.5, 2, 0.5),
]


@pytest.mark.parametrize("kind", ["levels", "extremes", "clusters", "float"])
@pytest.mark.parametrize("K", ["all", "mid", "short"])
def test_fit_matches_reference(kind, K):
    n, d = 50, 6
    X = _data(kind, n, d, seed=len(kind) + len(K))
    k = {"all": n, "mid": 25, "short": 3}[K]
    scale = {"levels": 1.0, "extremes": 255.0, "clusters": 30.0, "float": 0.5}[kind]
    for alpha, eps, T, delta in CASES:
        fit = _assert_same(X, alpha, eps * scale, T, delta, k)
        h = fit.history
        assert h[-1]["n_covered"] >= int(np.ceil(alpha * n * (1 + delta) - 1e-9))
        assert fit.covered.sum() == h[-1]["n_covered"] and fit.expanded.sum() == h[-1]["n_expanded"]
        assert not (fit.covered & ~fit.expanded).any()
        assert sum(x["gain"] for x in h) == h[-1]["n_expanded"] - h[-1]["n_covered"]
        for x in h:
            assert x["n_lo"] <= x["m"] <= x["n_hi"]
        if K == "short":
            assert sum(x["candidates_exact"] for x in h) > 0


@settings(deadline=None, max_examples=25)
@given(n=st.integers(2, 14), d=st.integers(1, 4), levels=st.integers(1, 5),
       alpha=st.floats(0.05, 0.7), eps=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
       T=st.integers(1, 4), delta=st.sampled_from([0.0, 0.25]), k=st.integers(1, 14),
       seed=st.integers(0, 2**16))
def test_fit_property(n, d, levels, alpha, eps, T, delta, k, seed):
    assume(np.ceil(alpha * n * (1 + delta) - 1e-9) <= n)
    X = np.random.default_rng(seed).integers(0, levels + 1, size=(n, d)).astype(np.uint8)
    _assert_same(X, alpha, eps, T, delta, min(k, n))


def test_coverage_on_sphere_uint8():
    rng = np.random.default_rng(1)
    X = rng.integers(0, 8, size=(400, 3)).astype(np.uint8)
    centers = np.array([[0, 0, 0], [4, 4, 4], [7, 0, 3]], dtype=np.float64)
    radii_sq = np.array([9.0, 4.0, 0.0])  # r = 3, 2, 0: (r + 1)**2 integer too
    inside, grown = ball_coverage(X, centers, radii_sq, 1.0, block_rows=37)
    ref_in, ref_gr = coverage_ref(X, centers, radii_sq, 1.0)
    np.testing.assert_array_equal(inside, ref_in)
    np.testing.assert_array_equal(grown, ref_gr)
    D2 = ((X[:, None, :].astype(int) - centers[None].astype(int)) ** 2).sum(-1)
    on_sphere = (D2 == radii_sq[None]).any(1)
    on_grown = (D2 == ((np.sqrt(radii_sq) + 1) ** 2)[None]).any(1)
    assert on_sphere.sum() > 5 and on_grown.sum() > 5
    assert inside[on_sphere].all() and grown[on_grown].all()
    # margin 0: grown == inside
    a, b = ball_coverage(X, centers, radii_sq, 0.0)
    np.testing.assert_array_equal(a, b)


def test_coverage_float_and_noninteger_centres():
    rng = np.random.default_rng(2)
    X = rng.random((300, 5)).astype(np.float32)
    centers = X[[3, 10]].astype(np.float64)
    radii_sq = np.array([0.3, 0.2])
    for C, Xs in ((centers, X), (centers + 0.5, (X * 255).astype(np.uint8))):
        inside, grown = ball_coverage(Xs, C, radii_sq, 0.1)
        ref_in, ref_gr = coverage_ref(Xs, C, radii_sq, 0.1)
        np.testing.assert_array_equal(inside, ref_in)
        np.testing.assert_array_equal(grown, ref_gr)


@pytest.mark.parametrize("kind", ["clusters", "float"])
def test_fit_equals_coverage_of_its_balls(kind):
    X = _data(kind, 200, 8, seed=3)
    eps = 40.0 if kind == "clusters" else 0.3
    fit = fit_balls(X, 0.1, eps, 4, delta=0.25, neighbors=Knn(X, 30))
    inside, grown = ball_coverage(X, fit.centers, fit.radii_sq, eps)
    np.testing.assert_array_equal(inside, fit.covered)
    np.testing.assert_array_equal(grown, fit.expanded)


def _fit_dict(fit):
    return (fit.center_index.tolist(), fit.radii_sq.tolist(), fit.covered.tolist(),
            fit.expanded.tolist(), fit.history)


def test_threads_identical(threads):
    X = _data("clusters", 400, 10, seed=4)
    nb = Knn(X, 12)  # short lists: the exact fallback runs in parallel too
    threads(1)
    a = fit_balls(X, 0.05, 20.0, 5, delta=0.25, neighbors=nb)
    _assert_same(X, 0.05, 20.0, 5, 0.25, 12)  # the carried bounds keep it exact
    threads(2)
    b = fit_balls(X, 0.05, 20.0, 5, delta=0.25, neighbors=nb)
    assert _fit_dict(a) == _fit_dict(b)
    assert sum(h["candidates_exact"] for h in a.history) > 0
    # bounds carried from earlier exact evaluations spare most later candidates
    assert min(h["candidates_exact"] for h in a.history[1:]) < len(X)
    threads(1)
    ca = ball_coverage(X, a.centers, a.radii_sq, 50.0)
    threads(2)
    cb = ball_coverage(X, a.centers, a.radii_sq, 50.0)
    np.testing.assert_array_equal(ca[0], cb[0])
    np.testing.assert_array_equal(ca[1], cb[1])


@pytest.mark.parametrize("kind", ["levels"])
def test_readonly_memmap(tmp_path, kind):
    X = _data(kind, 60, 5, seed=5)
    np.save(tmp_path / "x.npy", X)
    Xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert not Xm.flags.writeable
    eps = 1.0 if kind == "levels" else 0.3
    fit = _assert_same(Xm, 0.1, eps, 3, 0.25, 20)
    inside, grown = ball_coverage(Xm, fit.centers, fit.radii_sq, eps)
    np.testing.assert_array_equal(inside, fit.covered)
    np.testing.assert_array_equal(grown, fit.expanded)


def test_neighbors_computed_when_missing():
    X = _data("clusters", 80, 6, seed=6)
    a = fit_balls(X, 0.1, 30.0, 3)
    b = fit_balls(X, 0.1, 30.0, 3, neighbors=Knn(X, 16))
    assert _fit_dict(a)[:4] == _fit_dict(b)[:4]
    c = fit_balls(X, 0.1, 30.0, 3, n_neighbors=5)
    assert _fit_dict(c)[:4] == _fit_dict(b)[:4]


def test_wrong_list_distances_are_not_trusted():
    X = _data("clusters", 120, 8, seed=8)
    good = Knn(X, 20)
    bad = Knn(X, 20)
    bad.distances = np.sqrt(bad.distances ** 2 + 0.75)  # not exact: must be recomputed
    a = fit_balls(X, 0.1, 30.0, 3, neighbors=good)
    b = fit_balls(X, 0.1, 30.0, 3, neighbors=bad)
    assert _fit_dict(a) == _fit_dict(b)
    del bad.distances
    c = fit_balls(X, 0.1, 30.0, 3, neighbors=bad)
    assert _fit_dict(a) == _fit_dict(c)


def test_mnist_subset(shared_data):
    from numbaconc.datasets import read_idx

    X = read_idx(shared_data / "mnist" / "train-images-idx3-ubyte.gz", 2051)
    X = np.ascontiguousarray(X[:400].reshape(400, -1))
    fit = _assert_same(X, 0.05, 1.58 * 255, 3, 0.25, 10)  # short lists: GEMM fallback
    assert sum(h["candidates_exact"] for h in fit.history) > 0


def test_bad_input():
    X = _data("levels", 30, 4, seed=7)
    nb = Knn(X, 10)
    bad = [
        (dict(alpha=0.0), "alpha"), (dict(alpha=1.0), "alpha"), (dict(alpha=float("nan")), "alpha"),
        (dict(epsilon=-1.0), "epsilon"), (dict(n_balls=0), "n_balls"), (dict(n_balls=2.5), "n_balls"),
        (dict(delta=-0.1), "delta"), (dict(alpha=0.9, delta=0.5), "covered points"),
        (dict(neighbors=Knn(X, 10, metric="linf")), "l2 neighbour lists"),
        (dict(neighbors=Knn(X[:20], 10)), "shape"),
        (dict(n_neighbors=0), "n_neighbors"), (dict(n_neighbors=31), "n_neighbors"),
    ]
    for kw, match in bad:
        args = dict(alpha=0.1, epsilon=1.0, n_balls=2, neighbors=nb)
        if "n_neighbors" in kw:
            args["neighbors"] = None
        args.update(kw)
        with pytest.raises(NumbaconcError, match=match):
            fit_balls(X, args.pop("alpha"), args.pop("epsilon"), args.pop("n_balls"), **args)
    Xn = X.astype(np.float32)
    Xn[0, 0] = np.nan
    with pytest.raises(NumbaconcError, match="NaN"):
        fit_balls(Xn, 0.1, 1.0, 2, neighbors=nb)
    with pytest.raises(NumbaconcError, match="int16"):
        fit_balls(X.astype(np.int16), 0.1, 1.0, 2, neighbors=nb)
    with pytest.raises(NumbaconcError, match="centers"):
        ball_coverage(X, np.zeros((2, 3)), np.ones(2), 1.0)
    with pytest.raises(NumbaconcError, match="radii_sq"):
        ball_coverage(X, np.zeros((2, 4)), np.ones(3), 1.0)
    with pytest.raises(NumbaconcError, match="margin"):
        ball_coverage(X, np.zeros((2, 4)), np.ones(2), -1.0)
    with pytest.raises(NumbaconcError, match="finite"):
        ball_coverage(X, np.zeros((2, 4)), np.array([1.0, np.nan]), 1.0)


@pytest.mark.parametrize("seed", range(6))
def test_exact_gain_kernel_against_sorting(seed):
    """The counting kernel (quickselect + threshold bins) equals a plain
    sort-and-count of the definition, with and without the list's top hint."""
    from numbaconc.kernels import balls as kb

    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 400))
    drow = rng.integers(0, [5, 50, 5000][seed % 3], n).astype(np.float64)
    covered = rng.random(n) < 0.2
    expanded = covered | (rng.random(n) < 0.2)
    eps = float(rng.choice([0.0, 1.5, 30.0]))
    n_hi = int(rng.integers(1, int((~covered).sum()) + 1))
    n_lo = int(rng.integers(1, n_hi + 1))
    # definition: for each m in [n_lo, n_hi], r_m = m-th smallest uncovered d2
    unc = np.sort(drow[~covered])
    best = None
    for m in range(n_lo, n_hi + 1):
        r2 = unc[m - 1]
        g = max(r2, (np.sqrt(r2) + eps) ** 2)
        gain = int(((drow <= g) & ~expanded).sum()) - int(((drow <= r2) & ~covered).sum())
        if best is None or (gain, r2) < best:
            best = (gain, r2)
    for hint in (-1.0, unc[n_hi - 1]):
        prof = np.empty(40, dtype=np.int64)
        g, r2, top = kb._gains_from_row(drow, covered, expanded, n_lo, n_hi, eps, hint,
                                        np.empty(n), prof, False, np.zeros(n, np.int64), 0)
        assert (g, r2) == best
        assert top == unc[n_hi - 1]


def test_select_matches_sort():
    from numbaconc.kernels.balls import _select

    rng = np.random.default_rng(3)
    for _ in range(500):
        n = int(rng.integers(1, 200))
        a = rng.integers(0, int(rng.integers(1, 30)), n).astype(np.float64)
        k = int(rng.integers(0, n))
        assert _select(a.copy(), k) == np.sort(a)[k]
