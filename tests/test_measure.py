"""The estimators end to end on small data, against brute-force definitions."""

import json
import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from numbaconc import datasets
from numbaconc.boxes import BoxesModel, dense_order, search_q
from numbaconc.errors import NumbaconcError
from numbaconc.concentration import SELECTION_Z, Concentration, measure
from numbaconc.regions import Region


def brute_box_masks(X, centers, half_widths, eps):
    """E = outside every box grown by eps; counted E_eps = outside every box."""
    X = X.astype(np.float64)[:, None, :]
    diff = np.abs(X - centers[None])
    inside = np.all(diff <= half_widths[None], axis=2).any(axis=1)
    inside_grown = np.all(diff <= half_widths[None] + eps, axis=2).any(axis=1)
    return ~inside_grown, ~inside


def test_density_score_is_l1_kth_neighbour_with_self(tiny_h5):
    with datasets.open_dataset(tiny_h5) as ds:
        conc = Concentration(ds, protocol="paper")
        knn = conc.neighbours("l1", 50)
        X = ds.train.array().astype(np.int64)
        D = cdist(X, X, "cityblock")
        expected = np.sort(D, axis=1)[:, 49]  # the point itself is its first neighbour
        np.testing.assert_array_equal(knn.distances[:, 49], expected)


def test_dense_order_ties_by_index():
    scores = np.array([3.0, 1.0, 3.0, 1.0, 0.0])
    assert dense_order(scores).tolist() == [4, 1, 3, 0, 2]


def test_boxes_region_matches_brute_force_definition(tiny_h5):
    with datasets.open_dataset(tiny_h5) as ds:
        conc = Concentration(ds, protocol="paper")
        est = conc.boxes(alpha=0.05, epsilon=0.1, clusters=4, q=0.6, box="symmetric")
        region = est.region
        eps = 0.1 * 255
        for X, name in ((conc.X_fit, "train"), (conc.X_test, "test")):
            e, e_eps = brute_box_masks(X, region.arrays["centers"], region.arrays["half_widths"], eps)
            assert est.figures[name]["risk"] == pytest.approx(e.mean())
            assert est.figures[name]["adv_risk"] == pytest.approx(e_eps.mean())
        # every dense point lies in its own box
        order = dense_order(conc.neighbours("l1", 50).distances[:, 49])
        dense = conc.X_fit[np.sort(order[: math.floor(0.6 * len(conc.X_fit))])]
        _, outside = brute_box_masks(dense, region.arrays["centers"], region.arrays["half_widths"], eps)
        assert not outside.any()


def test_tight_boxes_never_larger_than_symmetric(tiny_h5):
    with datasets.open_dataset(tiny_h5) as ds:
        conc = Concentration(ds, protocol="paper")
        sym = conc.boxes(alpha=0.05, epsilon=0.05, clusters=4, q=0.6, box="symmetric")
        tight = conc.boxes(alpha=0.05, epsilon=0.05, clusters=4, q=0.6, box="tight")
        # same clusters, smaller boxes: adversarial risk (outside the boxes) can only grow
        # on points, but the boxes themselves are contained in the symmetric ones
        lo_s = sym.region.arrays["centers"] - sym.region.arrays["half_widths"]
        hi_s = sym.region.arrays["centers"] + sym.region.arrays["half_widths"]
        lo_t = tight.region.arrays["centers"] - tight.region.arrays["half_widths"]
        hi_t = tight.region.arrays["centers"] + tight.region.arrays["half_widths"]
        assert np.all(lo_t >= lo_s - 1e-9) and np.all(hi_t <= hi_s + 1e-9)


def test_q_search_keeps_largest_feasible_q(tiny_h5):
    with datasets.open_dataset(tiny_h5) as ds:
        conc = Concentration(ds, protocol="holdout")
        scores = conc.neighbours("l1", 50).distances[:, 49]
        model = BoxesModel(conc.X_fit, scores, ds.scale, shape="tight")
        found = search_q(model, conc.X_select, n_clusters=4, alpha=0.05, epsilon=10.0, seed=0)
        assert found["risk"] >= 0.05
        # bisection: every probed q above the answer was infeasible, the answer is within tol
        assert found["trace"]
        assert all(t["risk"] < 0.05 for t in found["trace"] if t["q"] > found["q"])
        above = [t["q"] for t in found["trace"] if t["q"] > found["q"]]
        assert not above or min(above) - found["q"] <= 0.005 + 1e-12 or found["q"] >= 0.99


def test_holdout_never_uses_test_for_selection(tiny_h5):
    with datasets.open_dataset(tiny_h5) as ds:
        a = Concentration(ds, protocol="holdout", seed=3)
        assert len(a.X_fit) + len(a.X_select) == ds.train.n_samples
        assert set(a.fit_rows).isdisjoint(a.val_rows)
        est = a.boxes(alpha=0.05, epsilon=0.1, clusters=4)
        assert est.tuning["selection"] == "validation"
        assert est.figures["validation"]["risk"] >= 0.05
        p = Concentration(ds, protocol="paper")
        assert p.X_select is p.X_test and p.select_name == "test"


def test_repeats_report_mean_and_std(tiny_h5):
    with datasets.open_dataset(tiny_h5) as ds:
        conc = Concentration(ds, protocol="paper")
        est = conc.boxes(alpha=0.05, epsilon=0.1, clusters=4, q=0.6, repeats=3)
        advs = [r["test"]["adv_risk"] for r in est.repeats]
        assert len(advs) == 3
        assert est.figures["test"]["adv_risk"] == pytest.approx(np.mean(advs))
        assert est.figures["test"]["adv_risk_std"] == pytest.approx(np.std(advs))
        lo, hi = est.figures["test"]["adv_risk_ci"]
        assert lo <= est.figures["test"]["adv_risk"] <= hi


def test_region_save_load_evaluate_roundtrip(tiny_h5, tmp_path):
    with datasets.open_dataset(tiny_h5) as ds:
        result = measure(ds, metric="linf", alpha=0.05, epsilon=0.1, method="boxes", clusters=4, q=0.5,
                         protocol="paper")
        region = result.pop("_region")
        region.save(tmp_path / "r.h5")
        again = Region.load(tmp_path / "r.h5")
        figures = again.evaluate(ds.test.x)
        assert figures["adv_risk"] == pytest.approx(result["test"]["adv_risk"])
        json.dumps(result)  # JSON-ready


@pytest.mark.parametrize("method", ["halfspace", "pca"])
def test_halfspace_estimates_run_both_metrics(tiny_h5, method):
    with datasets.open_dataset(tiny_h5) as ds:
        for metric in ("linf", "l2"):
            r = measure(ds, metric=metric, alpha=0.05, epsilon=0.05, method=method)
            assert r["train"]["risk"] >= 0.05
            assert r["test"]["adv_risk"] >= r["test"]["risk"]


def test_balls_estimate_is_exact_on_test(tiny_h5):
    with datasets.open_dataset(tiny_h5) as ds:
        r = measure(ds, metric="l2", alpha=0.05, epsilon=0.5, method="balls", clusters=3, protocol="paper")
        region = r["_region"]
        X = ds.test.array().astype(np.float64)
        D = cdist(X, region.arrays["centers"])
        eps = 0.5 * 255
        inside = (D ** 2 <= region.arrays["radii_sq"][None] + 1e-6).any(axis=1)
        grown = (D <= region.arrays["radii"][None] + eps).any(axis=1)
        assert r["test"]["risk"] == pytest.approx(inside.mean())
        assert r["test"]["adv_risk"] == pytest.approx(grown.mean())


def test_balls_cover_the_selection_target_under_holdout(tiny_h5):
    # the greedy balls cover ceil(target * n_fit) fitting points: alpha itself
    # under paper (the 2019 code), the selection target under holdout
    with datasets.open_dataset(tiny_h5) as ds:
        for protocol in ("paper", "holdout"):
            conc = Concentration(ds, protocol=protocol)
            est = conc.balls(alpha=0.05, epsilon=0.5, clusters=3)
            n_fit = len(conc.X_fit)
            need = math.ceil(conc.selection_alpha(0.05) * n_fit)
            covered = round(est.figures["train"]["risk"] * n_fit)
            assert covered >= need
            if protocol == "holdout":
                assert need > math.ceil(0.05 * n_fit)


def test_best_picks_lowest_selection_adv_risk(tiny_h5):
    with datasets.open_dataset(tiny_h5) as ds:
        r = measure(ds, metric="linf", alpha=0.05, epsilon=0.1, method="best", clusters=4, q=0.5,
                    box="tight")
        fams = {f["family"]: f for f in r["families"]}
        assert set(fams) == {"boxes", "halfspace"}
        target = 0.05 + SELECTION_Z * math.sqrt(0.05 * 0.95 * (1 / r["validation"]["n"]
                                                            + 1 / r["test"]["n"]))
        feasible = [f for f in fams.values() if f["validation"]["risk"] >= target] or list(fams.values())
        best = min(feasible, key=lambda f: f["validation"]["adv_risk"])
        assert r["winner"] == best["family"]


def test_bad_parameters_are_clear_errors(tiny_h5):
    with datasets.open_dataset(tiny_h5) as ds:
        with pytest.raises(NumbaconcError, match="alpha"):
            measure(ds, metric="linf", alpha=1.5, epsilon=0.1, method="boxes", clusters=3, q=0.5)
        with pytest.raises(NumbaconcError, match="l2 family"):
            measure(ds, metric="linf", alpha=0.05, epsilon=0.1, method="balls")
        with pytest.raises(NumbaconcError, match="protocol"):
            measure(ds, metric="linf", alpha=0.05, epsilon=0.1, method="boxes", protocol="peek")
        with pytest.raises(NumbaconcError, match="fewer than"):
            measure(ds, metric="linf", alpha=0.05, epsilon=0.1, method="boxes", clusters=50, q=0.01)


def test_holdout_selection_clears_alpha_by_a_margin(tiny_h5):
    with datasets.open_dataset(tiny_h5) as ds:
        conc = Concentration(ds, protocol="holdout")
        n_val, n_test = len(conc.X_select), len(conc.X_test)
        assert conc.selection_alpha(0.05) == pytest.approx(
            0.05 + 1.645 * math.sqrt(0.05 * 0.95 * (1 / n_val + 1 / n_test)))
        est = conc.boxes(alpha=0.05, epsilon=0.1, clusters=4)
        assert est.figures["validation"]["risk"] >= conc.selection_alpha(0.05)
        assert Concentration(ds, protocol="paper").selection_alpha(0.05) == 0.05


@pytest.mark.parametrize("metric, grid", [("linf", (0.05, 0.1, 0.2)), ("l2", (0.5, 1.0))])
def test_announced_epsilon_grid_gives_the_same_halfspaces(tiny_h5, metric, grid):
    """One search over an announced epsilon grid equals one search per epsilon."""
    with datasets.open_dataset(tiny_h5) as ds:
        shared = Concentration(ds, protocol="holdout")
        shared.expect_epsilons(metric, 0.05, grid)
        for eps in grid:
            alone = Concentration(ds, protocol="holdout").run(
                "halfspace", metric=metric, alpha=0.05, epsilon=eps)
            got = shared.run("halfspace", metric=metric, alpha=0.05, epsilon=eps)
            assert got.params["search_shared_by_epsilons"] == len(grid)
            assert alone.params["search_shared_by_epsilons"] == 1
            np.testing.assert_array_equal(got.region.arrays["w"], alone.region.arrays["w"])
            assert got.figures == alone.figures


def test_holdout_lists_are_those_of_the_fitting_subset(tiny_h5):
    """Under holdout the fitting set's lists are read off whole-set lists:
    they must equal a search within the fitting set itself."""
    from numbaconc.neighbours import knn

    with datasets.open_dataset(tiny_h5) as ds:
        conc = Concentration(ds, protocol="holdout")
        got = conc.neighbours("l1", 50)
        direct = knn(conc.X_fit, 50, metric="l1")
        np.testing.assert_array_equal(got.indices, direct.indices)
        np.testing.assert_array_equal(got.distances, direct.distances)
        loose = conc.neighbours("l2", 60, exact_k=False)
        prefix = knn(conc.X_fit, loose.k, metric="l2")
        np.testing.assert_array_equal(loose.indices, prefix.indices)


def test_runner_keeps_one_dataset_in_memory(tiny_h5, tmp_path):
    """`reproduce all` runs datasets one after another: contexts (and their
    neighbour lists) of a finished dataset are dropped when the next begins."""
    import shutil

    from numbaconc.reproduction import Runner

    other = tmp_path / "other.h5"
    shutil.copy(tiny_h5, other)
    runner = Runner(tmp_path / "out", log=lambda m: None)
    with datasets.open_dataset(tiny_h5) as a, datasets.open_dataset(other) as b:
        first = runner.context(a, "paper")
        assert runner.context(a, "paper") is first
        runner.context(a, "holdout")
        runner.context(b, "paper")
        assert [k[0] for k in runner._contexts] == [str(b.path)]


def test_domain_count_defaults_by_protocol_and_survives_save(tiny_h5, tmp_path):
    from reference_kmeans import coverage_in_domain

    with datasets.open_dataset(tiny_h5) as ds:
        paper = Concentration(ds, protocol="paper").boxes(alpha=0.05, epsilon=0.3, clusters=4, q=0.5)
        assert paper.params["domain"] is False and paper.region.domain is None
        conc = Concentration(ds, protocol="holdout")
        est = conc.boxes(alpha=0.05, epsilon=0.3, clusters=4, q=0.5, box="tight")
        assert est.params["domain"] is True and est.region.domain == (0.0, 255.0)
        plain = conc.boxes(alpha=0.05, epsilon=0.3, clusters=4, q=0.5, box="tight", domain=False)
        c, w = est.region.arrays["centers"], est.region.arrays["half_widths"]
        for name, X in (("train", conc.X_fit), ("validation", conc.X_select), ("test", conc.X_test)):
            safe = coverage_in_domain(X, c, w, 0.3 * 255, 0.0, 255.0)
            assert est.figures[name]["adv_risk"] == pytest.approx(1 - safe.mean())
            assert est.figures[name]["risk"] == plain.figures[name]["risk"]
            assert est.figures[name]["adv_risk"] <= plain.figures[name]["adv_risk"]
        est.region.save(tmp_path / "r.h5")
        again = Region.load(tmp_path / "r.h5")
        assert again.domain == (0.0, 255.0)
        assert again.evaluate(conc.X_test)["adv_risk"] == est.figures["test"]["adv_risk"]


def test_domain_count_needs_pixel_data(tmp_path):
    from numbaconc.synth import make_gaussian

    path = make_gaussian(tmp_path / "g.h5", n_train=300, n_test=200, d=3, random_state=0)
    with datasets.open_dataset(path) as ds:
        conc = Concentration(ds, protocol="holdout")
        est = conc.boxes(alpha=0.05, epsilon=0.1, clusters=3, q=0.5)  # float data: no domain
        assert est.params["domain"] is False
        with pytest.raises(NumbaconcError, match="uint8"):
            conc.boxes(alpha=0.05, epsilon=0.1, clusters=3, q=0.5, domain=True)
