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


# ------------------------------------------------- the reading at alpha under LU


@pytest.mark.parametrize("metric", ["l2", "linf"])
def test_lu_frontier_members_are_the_constrained_prefixes(metric):
    """Under LU the greedy's frontier keeps only prefixes whose partial last
    ball's newly covered fitting points meet gamma: the literal reference's
    members, each with fitting-set mean LU >= gamma; the constraint binds."""
    from numbaconc.frontier import ball_prefix_frontier, frontier_levels
    from reference_balls import keys, prefix_frontier_ref

    rng = np.random.default_rng(7)
    X = rng.integers(0, 6, size=(240, 4)).astype(np.uint8)  # many ties
    Xt = rng.integers(0, 6, size=(200, 4)).astype(np.uint8)
    lu = rng.integers(0, 9, 240) / 4.0 * (rng.random(240) < 0.5)
    gamma, eps, alpha = 0.5, 1.0, 0.1
    fit = fit_balls(X, alpha, eps, 3, neighbors=KnnMetric(X, 60, metric), metric=metric, lu=lu,
                    gamma=gamma)
    assert len(fit.radii_sq) >= 1
    pair = (lu_weights(lu, 240), lu_threshold(gamma))
    c = ball_prefix_frontier(X, Xt, fit.centers, fit.radii_sq, eps, alpha, max_members=10**6,
                             metric=metric, lu=pair)
    ref = prefix_frontier_ref(X, Xt, fit.centers, fit.radii_sq, eps, metric,
                              *frontier_levels(alpha, 240, 200), lu=lu, gamma=gamma)
    assert len(ref) > 0 and c["lu_dropped"] > 0
    np.testing.assert_array_equal(c["member_ball"], [m[0] for m in ref])
    np.testing.assert_array_equal(c["member_radius"], [m[1] for m in ref])
    np.testing.assert_array_equal(c["risk_counts"], [m[2] for m in ref])
    np.testing.assert_array_equal(c["adv_counts"], [m[3] for m in ref])
    D = keys(X, fit.centers, metric)
    for t, r in zip(c["member_ball"], c["member_radius"]):
        inside = (D[:, :t] <= fit.radii_sq[None, :t]).any(1) | (D[:, t] <= r)
        assert lu[inside].mean() >= gamma
    free = ball_prefix_frontier(X, Xt, fit.centers, fit.radii_sq, eps, alpha, max_members=10**6,
                                metric=metric)
    assert len(free["risk_counts"]) > len(c["risk_counts"])


def test_lu_threshold_frontier_keeps_the_thresholds_meeting_gamma():
    from numbaconc.frontier import member_ranks, threshold_frontier

    rng = np.random.default_rng(8)
    p_fit = rng.integers(0, 30, 500).astype(np.float64)  # ties: a region keeps them whole
    p_test = rng.integers(0, 30, 300).astype(np.float64)
    lu = rng.random(500) * (p_fit >= 27)  # uncertain at the top: larger regions dilute it
    gamma = 0.3
    ranks = member_ranks(0.1, 500, 300)
    full = threshold_frontier(p_fit, p_test, 2.0, ranks)
    got = threshold_frontier(p_fit, p_test, 2.0, ranks, lu=(lu_weights(lu, 500), lu_threshold(gamma)))
    q = lu_weights(lu, 500)
    meets = [int(q[p_fit >= b].sum()) >= lu_threshold(gamma) * int((p_fit >= b).sum())
             for b in full["thresholds"]]
    assert 0 < sum(meets) < len(ranks)
    np.testing.assert_array_equal(got["ranks"], ranks[meets])
    np.testing.assert_array_equal(got["risk_counts"], full["risk_counts"][meets])
    np.testing.assert_array_equal(got["adv_counts"], full["adv_counts"][meets])
    assert got["lu_dropped"] == len(ranks) - sum(meets)
    none = threshold_frontier(p_fit, p_test, 2.0, ranks, lu=(lu_weights(lu, 500), lu_threshold(1.5)))
    assert len(none["ranks"]) == 0 and "LU" in none["reason"]


@pytest.mark.parametrize("method,metric", [("cubes", "linf"), ("balls", "l2"),
                                           ("halfspace", "linf")])
def test_measure_with_lu_reads_the_constrained_frontier(tiny_h5, method, metric):
    """The JSON says how LU entered the frontier; a reading lies in its interval."""
    from numbaconc import datasets
    from numbaconc.concentration import measure
    from numbaconc.lu import LabelWeights

    lu = np.random.default_rng(0).random(600) * 0.5
    with datasets.open_dataset(tiny_h5) as ds:
        r = measure(ds, metric=metric, alpha=0.05, epsilon=8 / 255, method=method,
                    weights=LabelWeights(train=lu, gamma=0.3),
                    **({} if method == "halfspace" else dict(clusters=3)))
    front, t = r["frontier"], r["test"]
    assert "LU" in front["fixed_by"] and "gamma = 0.3" in front["fixed_by"]
    assert front["lu"]["gamma"] == 0.3
    if t["adv_risk_at_alpha"] is None:
        assert front["reading"]["note"]
    else:
        assert t["adv_risk_at_alpha_ci"][0] <= t["adv_risk_at_alpha"] <= t["adv_risk_at_alpha_ci"][1]


def test_no_constrained_member_gives_a_null_reading_with_its_reason(tiny_h5, tmp_path):
    """gamma above every point: the greedy places no cube, so the reading at
    alpha is null and says why (the CLI prints `not reached`)."""
    path = tmp_path / "lu.npy"
    np.save(path, np.random.default_rng(0).random(600) * 0.5)
    out = tmp_path / "m.json"
    res = _invoke("measure", tiny_h5, "--metric", "linf", "--epsilon", "8/255", "--alpha", "0.05",
                  "--method", "cubes", "-T", "3", "--lu", path, "--gamma", "1.9", "--json", out)
    assert res.exit_code == 0, res.output
    assert "not reached" in res.output
    row = json.loads(out.read_text())
    assert row["test"]["adv_risk_at_alpha"] is None and row["test"]["adv_risk_at_alpha_ci"] is None
    assert "placed no cube" in row["frontier"]["reading"]["note"]


def test_gamma_without_lu_is_a_one_line_error(tiny_h5, tmp_path):
    import numbaconc as nc
    from numbaconc.errors import OptionError

    res = _invoke("measure", tiny_h5, "--metric", "linf", "--epsilon", "0.1", "--method", "cubes",
                  "--gamma", "0.3")
    assert res.exit_code == 1 and res.output.count("\n") == 1
    assert res.output.startswith("error: --gamma needs --lu")
    res = _invoke("curve", tiny_h5, "--metric", "linf", "--epsilon", "0.1", "--method", "cubes",
                  "--gamma", "0.3", "--out", tmp_path / "c")
    assert res.exit_code == 1 and "--gamma needs --lu" in res.output
    with pytest.raises(OptionError, match="gamma needs lu"):
        nc.measure(tiny_h5, metric="linf", alpha=0.05, epsilon=0.1, method="cubes", gamma=0.3)
    with pytest.raises(OptionError, match="gamma needs lu"):
        nc.curve(tiny_h5, metric="linf", alpha=0.05, epsilon=0.1, method="cubes", gamma=0.3,
                 out=tmp_path / "c")


def _lu_row(seed, alpha, gamma, at, note=None, family="cubes", group="sweep"):
    """A results.json row as Runner writes it, with only what the LU report reads."""
    test = dict(risk=alpha + 0.001, adv_risk=2 * alpha, adv_risk_ci=[1.8 * alpha, 2.2 * alpha],
                adv_risk_at_alpha=at, adv_risk_at_alpha_ci=None if at is None else [at - 0.01, at + 0.01],
                mean_lu=None if gamma is None else 0.12)
    return dict(spec=dict(dataset=f"cifar10-lu-seed{seed}", family=family,
                          metric="linf" if family == "cubes" else "l2", alpha=alpha, group=group,
                          options={} if gamma is None else dict(gamma=gamma)),
                test=test, train=dict(risk=alpha, mean_lu=None if gamma is None else 0.18),
                params=dict(balls_used=10, stopped=None), valid=True,
                frontier=dict(reading=dict(note=note)), command=f"numbaconc measure seed {seed}")


def test_lu_report_leads_with_the_reading_at_alpha(tmp_path):
    from numbaconc.lu_reproduce import write_lu_report

    rows = []
    for seed in (0, 1, 2):
        rows += [_lu_row(seed, 0.05, None, 0.08, group="setting"),
                 _lu_row(seed, 0.05, 0.17, 0.09 + 0.01 * seed, group="setting"),
                 _lu_row(seed, 0.1, None, 0.15),
                 _lu_row(seed, 0.1, 0.17, None, note="the test frontier does not reach alpha")]
    info = dict(lu_mean=0.08, lu_share=0.12, agreement=0.99, seeds=[0, 1, 2])
    path = write_lu_report(rows, tmp_path, command="numbaconc reproduce cifar10-lu", versions={},
                           wall_seconds=1.0, info=info)
    text = path.read_text()
    assert "| l-inf cubes, ε = 8/255, T = 10 | none | **8.00 ± 0.00** [7.00, 9.00] | 5.10 ± 0.00 / 10.00" in text
    assert "| γ = 0.17 | **10.00 ± 0.82** [8.00, 12.00] |" in text
    assert "| 0.1 | **15.00 ± 0.00** [14.00, 16.00] |" in text and "| no reading |" in text
    assert "\n- α = 0.1, γ = 0.17: the test frontier does not reach alpha" in text  # once, not per seed
    assert (tmp_path / "cifar10-lu-alpha.png").stat().st_size > 1000
