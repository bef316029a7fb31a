"""The label-uncertainty constraint (numbaconc.lu) against slow references:
the greedy balls / cubes (reference_balls.fit_greedy_lu_ref), the half-space
thresholds against brute force over every threshold, the CIFAR-10H import on
the real files, and the CLI."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from numbaconc.balls import ball_coverage, fit_balls
from numbaconc.errors import NumbaconcError
from numbaconc.halfspace import _threshold, fit_halfspace_curve, halfspace_coverage
from numbaconc.lu import label_uncertainty, lu_threshold, lu_weights
from reference_balls import KnnMetric, fit_greedy_lu_ref

runner = CliRunner()


def _case(seed, n=40, d=5, kind="uint8"):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 4, size=(n, d)).astype(np.uint8)  # many ties
    if kind == "float":
        X = (X * 0.25 + rng.integers(0, 2, size=(n, d)) * 0.125).astype(np.float32)
    X[5] = X[0]  # a duplicate
    lu = rng.integers(0, 9, n) / 4.0 * (rng.random(n) < 0.6)  # exact multiples of 1/4
    return X, lu


@pytest.mark.parametrize("metric", ["l2", "linf"])
@pytest.mark.parametrize("seed,kind", [(0, "uint8"), (1, "uint8"), (2, "uint8"), (3, "float")])
def test_greedy_matches_reference(metric, seed, kind):
    X, lu = _case(seed, kind=kind)
    for gamma in (0.0, 0.25, 0.5, 0.875):
        for K in (3, 20, 40):
            for alpha, eps, T in ((0.2, 1.0, 3), (0.3, 0.0, 2)):
                c, r, gains, cov, exp, stopped = fit_greedy_lu_ref(X, alpha, eps, T, 0.0, metric,
                                                                   lu, gamma)
                fit = fit_balls(X, alpha, eps, T, neighbors=KnnMetric(X, K, metric),
                                metric=metric, lu=lu, gamma=gamma)
                np.testing.assert_array_equal(fit.center_index, c)
                np.testing.assert_array_equal(fit.radii_sq, r)
                assert [h["gain"] for h in fit.history] == gains
                np.testing.assert_array_equal(fit.covered, cov)
                np.testing.assert_array_equal(fit.expanded, exp)
                assert (fit.stopped is not None) == stopped
                if fit.covered.any():  # the union meets gamma because every ball does
                    assert lu[fit.covered].mean() >= gamma
                    assert all(h["mean_lu"] >= gamma for h in fit.history)
                inside, grown = ball_coverage(X, fit.centers, fit.radii_sq, eps, metric=metric)
                np.testing.assert_array_equal(inside, fit.covered)
                np.testing.assert_array_equal(grown, fit.expanded)


@pytest.mark.parametrize("metric", ["l2", "linf"])
def test_gamma_zero_is_the_unconstrained_greedy(metric):
    rng = np.random.default_rng(7)
    X = rng.integers(0, 256, size=(120, 6)).astype(np.uint8)
    lu = rng.random(120) * 2
    nn = KnnMetric(X, 30, metric)
    plain = fit_balls(X, 0.15, 20.0, 4, neighbors=nn, metric=metric)
    zero = fit_balls(X, 0.15, 20.0, 4, neighbors=nn, metric=metric, lu=lu, gamma=0.0)
    np.testing.assert_array_equal(plain.center_index, zero.center_index)
    np.testing.assert_array_equal(plain.radii_sq, zero.radii_sq)
    np.testing.assert_array_equal(plain.expanded, zero.expanded)


def test_gamma_above_every_point_gives_an_empty_region():
    X, lu = _case(3)
    lu = np.minimum(lu, 1.5)
    fit = fit_balls(X, 0.2, 1.0, 3, neighbors=KnnMetric(X, 40, "l2"), lu=lu, gamma=1.75)
    assert len(fit.center_index) == 0 and not fit.covered.any()
    assert "mean LU >= gamma = 1.75" in fit.stopped


def test_lu_input_checks():
    X, lu = _case(0)
    with pytest.raises(NumbaconcError, match="must align with the split"):
        fit_balls(X, 0.2, 1.0, 3, lu=lu[:-1], gamma=0.1)
    with pytest.raises(NumbaconcError, match=r"in \[0, 2\]"):
        fit_balls(X, 0.2, 1.0, 3, lu=lu + 3, gamma=0.1)
    with pytest.raises(NumbaconcError, match="gamma"):
        fit_balls(X, 0.2, 1.0, 3, lu=lu, gamma=2.5)


def _brute_threshold(p, k, lu, gamma):
    """Largest b among the values of p with #{p >= b} >= k and mean LU >= gamma
    (the integer rule of numbaconc.lu), +inf if none."""
    q = lu_weights(lu, len(p))
    G = lu_threshold(gamma)
    for b in np.unique(p)[::-1]:
        inside = p >= b
        if inside.sum() >= k and int(q[inside].sum()) >= G * int(inside.sum()):
            return float(b)
    return np.inf


@pytest.mark.parametrize("seed", range(20))
def test_halfspace_threshold_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    p = rng.integers(0, int(rng.integers(2, 30)), n).astype(np.float64)  # ties
    lu = rng.integers(0, 9, n) / 4.0
    k = int(rng.integers(1, n + 1))
    for gamma in (0.0, 0.5, 1.0, 1.9):
        lw, G = lu_weights(lu, n), lu_threshold(gamma)
        assert _threshold(p, k, (lw, G)) == _brute_threshold(p, k, lu, gamma)
        # the low side is the high side of -p
        from numbaconc.kernels.halfspace import lu_thresholds

        b_hi, b_lo = np.empty(1), np.empty(1)
        lu_thresholds(p[None, :], k, lw, G, b_hi, b_lo)
        assert -b_lo[0] == _brute_threshold(-p, k, lu, gamma)
    assert _threshold(p, k, (lu_weights(lu, n), 0)) == _threshold(p, k, None)


def test_halfspace_search_keeps_mean_lu():
    rng = np.random.default_rng(1)
    X = rng.integers(100, 140, size=(400, 8)).astype(np.uint8)
    X[:, 0] = rng.integers(0, 256, 400)  # pixel 0 carries the top principal component
    lu = np.where(X[:, 0] > 200, 1.0, 0.0) * (rng.random(400) < 0.8)  # uncertain on one side
    for method in ("search", "pca"):
        fit = fit_halfspace_curve(X, 0.05, [8.0], metric="linf", method=method, margin=0.0,
                                  lu=(lu_weights(lu, 400), lu_threshold(0.6)))[0]
        inside, _ = halfspace_coverage(X, fit.w, fit.b, fit.shift)
        assert inside.sum() >= 20 and lu[inside].mean() >= 0.6


def test_label_uncertainty_formula():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(label_uncertainty(probs, np.array([0, 0, 0])),
                               [0.2, 1.3, 2.0])


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_cifar10h_import_on_the_real_files(shared_data, tmp_path):
    out, view = tmp_path / "lu.npy", tmp_path / "view.h5"
    res = _invoke("data", "import", "cifar10h", shared_data / "cifar-10h", "--cifar10",
                  shared_data / "cifar-10" / "cifar10.npz", "-o", out, "--view", view, "--seed", "3")
    assert res.exit_code == 0, res.output
    assert "99.21 %" in res.output
    lu = np.load(out)
    probs = np.load(shared_data / "cifar-10h" / "cifar10h-probs.npy")
    y = np.load(shared_data / "cifar-10" / "cifar10.npz")["y_test"].reshape(-1)
    assert lu.shape == (10000,) and lu.min() >= 0 and lu.max() <= 2
    others = probs.copy()
    others[np.arange(10000), y] = -1
    np.testing.assert_allclose(lu, 1 - (probs[np.arange(10000), y] - others.max(1)), atol=1e-12)
    from numbaconc.datasets import open_dataset
    from numbaconc.lu import LabelWeights

    with open_dataset(view) as ds:
        w = LabelWeights.from_file(ds, out, 0.17)
        assert ds.train.n_samples == ds.test.n_samples == 5000
        x_test = np.load(shared_data / "cifar-10" / "cifar10.npz")["x_test"].reshape(10000, -1)
        # the view's rows are CIFAR-10 test images, and the LU vector follows them
        import h5py

        with h5py.File(view) as f:
            rows = f["train/source_rows"][()]
        np.testing.assert_array_equal(ds.train.view().take(np.arange(3)), x_test[rows[:3]])
        np.testing.assert_array_equal(w.train, lu[rows])
        assert len(w.test) == 5000
        assert np.isclose(np.concatenate([w.train, w.test]).sum(), lu.sum())
    # a second import refuses to overwrite
    res = _invoke("data", "import", "cifar10h", shared_data / "cifar-10h", "--cifar10",
                  shared_data / "cifar-10" / "cifar10.npz", "-o", out)
    assert res.exit_code == 1 and res.output.count("\n") == 1


@pytest.mark.parametrize("method,metric", [("cubes", "linf"), ("balls", "l2"),
                                           ("halfspace", "linf")])
def test_cli_measure_with_lu(tiny_h5, tmp_path, method, metric):
    rng = np.random.default_rng(0)
    lu = rng.random(600) * 0.5
    path = tmp_path / "lu.npy"
    np.save(path, lu)
    out = tmp_path / "m.json"
    res = _invoke("measure", tiny_h5, "--metric", metric, "--epsilon", "8/255", "--alpha", "0.05",
                  "--method", method, "-T", "3", "--lu", path, "--gamma", "0.3", "--json", out)
    assert res.exit_code == 0, res.output
    assert "mean LU of the region (gamma = 0.3)" in res.output
    row = json.loads(out.read_text())
    assert row["inputs"]["gamma"] == 0.3
    assert row["train"]["mean_lu"] >= 0.3
    assert "mean_lu" in row["validation"]
    if method != "halfspace":
        assert all(v >= 0.3 for v in row["params"]["ball_mean_lu"])


def test_cli_lu_errors(tiny_h5, tmp_path):
    path = tmp_path / "short.npy"
    np.save(path, np.zeros(599))
    res = _invoke("measure", tiny_h5, "--metric", "linf", "--epsilon", "0.1", "--method", "cubes",
                  "--lu", path)
    assert res.exit_code == 1
    assert res.output.startswith("error:") and res.output.count("\n") == 1
    assert "599 values but the train split has 600 points" in res.output
    np.save(path, np.zeros(600))
    res = _invoke("measure", tiny_h5, "--metric", "linf", "--epsilon", "0.1", "--method", "boxes",
                  "--lu", path)
    assert res.exit_code == 1 and "not to boxes" in res.output


def test_cli_curve_with_lu_resumes(tiny_h5, tmp_path):
    path = tmp_path / "lu.npy"
    np.save(path, np.random.default_rng(2).random(600) * 0.5)
    out = tmp_path / "run"
    args = ("curve", tiny_h5, "--metric", "linf", "--alpha", "0.05,0.1", "--epsilon", "8/255",
            "--method", "cubes", "-T", "3", "--lu", path, "--gamma", "0.3", "--out", out)
    res = _invoke(*args)
    assert res.exit_code == 0, res.output
    rows = json.loads((out / "curve.json").read_text())["rows"]
    assert len(rows) == 2 and all(r["train"]["mean_lu"] >= 0.3 for r in rows)
    assert all("--gamma 0.3" in r["command"] for r in rows)
    res = _invoke(*args)
    assert res.exit_code == 0 and res.output.count("skip (done)") == 2
    # another vector is another row
    np.save(path, np.random.default_rng(3).random(600) * 0.5)
    res = _invoke(*args)
    assert res.exit_code == 0 and "skip (done)" not in res.output


@pytest.mark.parametrize("metric", ["l2", "linf"])
def test_lu_greedy_threads_identical(metric, threads):
    rng = np.random.default_rng(11)
    X = rng.integers(0, 256, size=(300, 12)).astype(np.uint8)
    lu = rng.random(300) * 0.6
    fits = []
    for t in (1, 2):
        threads(t)
        fits.append(fit_balls(X, 0.1, 30.0, 4, neighbors=KnnMetric(X, 40, metric), metric=metric,
                              lu=lu, gamma=0.3))
    np.testing.assert_array_equal(fits[0].center_index, fits[1].center_index)
    np.testing.assert_array_equal(fits[0].radii_sq, fits[1].radii_sq)
    np.testing.assert_array_equal(fits[0].expanded, fits[1].expanded)


def test_cubes_from_numbaconc_lists_in_place():
    """numbaconc's own l-inf lists (uint8 distances, int32 indices) are used in
    place and give the reference's cubes."""
    from numbaconc.neighbours import knn

    rng = np.random.default_rng(5)
    X = rng.integers(0, 6, size=(60, 7)).astype(np.uint8)
    lu = rng.integers(0, 9, 60) / 4.0
    lists = knn(X, 25, metric="linf", include_self=True)
    assert np.dtype(lists.stored.dtype) == np.uint8
    c, r, gains, cov, exp, stopped = fit_greedy_lu_ref(X, 0.2, 2.0, 3, 0.0, "linf", lu, 0.5)
    fit = fit_balls(X, 0.2, 2.0, 3, neighbors=lists, metric="linf", lu=lu, gamma=0.5)
    np.testing.assert_array_equal(fit.center_index, c)
    np.testing.assert_array_equal(fit.radii_sq, r)
    np.testing.assert_array_equal(fit.expanded, exp)
