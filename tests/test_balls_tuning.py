"""The balls' T and coverage tuned on the validation split (issue 15, item 4):
the choice reads the fitting and validation splits only; the paper rows and
every untuned call stay the 2019 rule."""

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

import numbaconc as nc
from conftest import make_tiny_images
from numbaconc import datasets
from numbaconc.balls import fit_balls
from numbaconc.concentration import Concentration
from numbaconc.errors import NumbaconcError
from numbaconc.families import (COVERAGE_SEARCH_SD, COVERAGE_TOL_SD, check_t_grid,
                                search_coverage)
from numbaconc.reproduction import L2_T_GRIDS, plan
from numbaconc_cli.main import app

ALPHA, EPS, GRID = 0.05, 0.5, (2, 3, 5)


@pytest.fixture(scope="module")
def tiny_arrays():
    x, _ = make_tiny_images(1200, seed=1)  # one distribution: the test points like the training ones
    return x[:600], x[600:900], x[900:]


def _tuned(x_train, x_test, seed=0, protocol="holdout"):
    ds = datasets.dataset_from_arrays(x_train, x_test, name="tiny")
    conc = Concentration(ds, protocol=protocol, seed=seed)
    return conc, conc.balls(alpha=ALPHA, epsilon=EPS, t_grid=GRID)


def _choice(est):
    return (est.params["clusters"], est.params["n_target_fit"], est.tuning["table"],
            est.region.arrays["centers"].tolist(), est.region.arrays["radii_sq"].tolist(),
            est.figures["train"], est.figures["validation"])


def test_the_t_grid_choice_does_not_read_the_test_split(tiny_arrays):
    x_train, x_test, x_other = tiny_arrays
    _, a = _tuned(x_train, x_test)
    _, b = _tuned(x_train, x_other)  # another test sample, and a test set unlike the data:
    _, c = _tuned(x_train, 255 - x_other)  # the selection target reads the test size only
    assert _choice(a) == _choice(b) == _choice(c)
    assert a.figures["test"] != b.figures["test"] != c.figures["test"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_choice_is_the_lowest_validation_adv_risk_among_those_at_the_target(tiny_arrays, seed):
    conc, est = _tuned(*tiny_arrays[:2], seed=seed)
    target = conc.selection_alpha(ALPHA)
    table = est.tuning["table"]
    assert [row["n_clusters"] for row in table] == list(GRID) == est.params["t_grid"]
    assert est.tuning["selection"] == "validation" and est.tuning["risk_target"] == target
    feasible = [row for row in table if row["n_target_fit"] is not None]
    assert feasible and all(row["risk"] >= target for row in feasible)
    chosen = min(feasible, key=lambda row: (row["adv_risk"], row["n_clusters"]))
    assert est.params["clusters"] == chosen["n_clusters"]
    assert est.params["n_target_fit"] == chosen["n_target_fit"]
    assert est.figures["validation"]["risk"] == pytest.approx(chosen["risk"])
    assert est.figures["validation"]["adv_risk"] == pytest.approx(chosen["adv_risk"])
    # every fit of the trace is the plain greedy at that coverage, evaluated on validation
    for row in table:
        for step in row["trace"]:
            fit = fit_balls(conc.X_fit, step["n_target_fit"] / len(conc.X_fit),
                            EPS * 255, row["n_clusters"],
                            neighbors=conc.neighbours("l2", conc.ds.train.n_samples, exact_k=False))
            assert int(fit.covered.sum()) == step["covered_fit"] >= step["n_target_fit"]
    assert est.frontier is not None and "adv_risk_at_alpha" in est.figures["test"]


def test_the_coverage_is_raised_only_where_validation_misses_the_target(tiny_arrays):
    raised = 0
    for seed in range(6):
        conc, est = _tuned(*tiny_arrays[:2], seed=seed)
        target = conc.selection_alpha(ALPHA)
        first = math.ceil(target * len(conc.X_fit) - 1e-9)
        for row in est.tuning["table"]:
            trace = row["trace"]
            assert trace[0]["n_target_fit"] == first == est.tuning["n_target_first"]
            if trace[0]["risk"] >= target:
                assert len(trace) == 1 and row["n_target_fit"] == first
            else:
                raised += 1
                assert all(step["n_target_fit"] > first for step in trace[1:])
                hits = [s["n_target_fit"] for s in trace if s["risk"] >= target]
                assert row["n_target_fit"] == (min(hits) if hits else None)
    assert raised  # the search ran somewhere (validation misses the target half the time)


def _step_evaluate(threshold, n_fit, calls):
    """A selection risk that rises with the coverage and reaches the target at ``threshold``."""
    def evaluate(n):
        calls.append(n)
        return dict(covered_fit=n, balls_used=3, risk=0.01 + 0.001 * (n >= threshold),
                    adv_risk=n / n_fit)
    return evaluate


@pytest.mark.parametrize("threshold", [1201, 1250, 1333, 1480])
def test_search_coverage_finds_the_fewest_points_within_its_tolerance(threshold):
    n_fit, n_select, target = 100_000, 20_000, 0.0105
    calls = []
    found = search_coverage(_step_evaluate(threshold, n_fit, calls), 1200, target=target,
                            n_fit=n_fit, n_select=n_select)
    tol = max(1, math.ceil(COVERAGE_TOL_SD * math.sqrt(target * (1 - target) / n_select) * n_fit))
    assert threshold <= found["n_target_fit"] <= threshold + tol
    assert found["risk"] >= target and [s["n_target_fit"] for s in found["trace"]] == calls
    assert len(calls) <= 12


def test_search_coverage_keeps_a_first_fit_at_the_target_and_stops_at_its_cap():
    calls = []
    found = search_coverage(_step_evaluate(0, 1000, calls), 50, target=0.0105, n_fit=1000,
                            n_select=200)
    assert found["n_target_fit"] == 50 and calls == [50]
    calls = []
    n_fit, n_select, target = 100_000, 20_000, 0.0105
    never = search_coverage(_step_evaluate(10**9, n_fit, calls), 1200, target=target,
                            n_fit=n_fit, n_select=n_select)
    cap = math.ceil((target + COVERAGE_SEARCH_SD * math.sqrt(target * (1 - target) / n_select)) * n_fit)
    assert never["n_target_fit"] is None and max(calls) == cap


def test_untuned_balls_are_the_2019_greedy_at_the_selection_target(tiny_h5):
    # the paper rows and every call without t_grid: one fit, unchanged
    with datasets.open_dataset(tiny_h5) as ds:
        for protocol, delta in (("paper", 0.25), ("holdout", 0.0)):
            conc = Concentration(ds, protocol=protocol)
            est = conc.balls(alpha=ALPHA, epsilon=EPS, clusters=3, delta=delta)
            fit = fit_balls(conc.X_fit, conc.selection_alpha(ALPHA), EPS * 255, 3, delta=delta,
                            neighbors=conc.neighbours("l2", conc.ds.train.n_samples, exact_k=False))
            assert np.array_equal(est.region.arrays["centers"], fit.centers)
            assert np.array_equal(est.region.arrays["radii_sq"], fit.radii_sq)
            assert est.tuning is None and "t_grid" not in est.params
            assert set(est.params) == {"clusters", "balls_used", "delta", "n_neighbors", "candidates"}
            assert est.params["candidates"] == "all"


def test_plan_tunes_the_holdout_balls_over_a_grid_with_the_paper_t_and_leaves_paper_rows():
    from numbaconc_cli.report import measure_command

    for name, paper_t in (("mnist", 20), ("cifar10", 5)):
        rows = [r for r in plan(name) if r.metric == "l2"]
        paper = [r for r in rows if r.protocol == "paper" and r.family == "balls"]
        assert paper and all(set(r.opts) == {"clusters", "delta"} and r.opts["clusters"] == paper_t
                             for r in paper)
        holdout = [r for r in rows if r.protocol == "holdout" and r.family in ("balls", "best")]
        assert holdout and all(r.opts["t_grid"] == L2_T_GRIDS[name] and paper_t in r.opts["t_grid"]
                               and "clusters" not in r.opts for r in holdout)
        command = measure_command(holdout[0], name)
        assert "--tune --t-grid " + ",".join(map(str, L2_T_GRIDS[name])) in command
        assert "--clusters" not in command
    quick = [r for r in plan("mnist", quick=True) if r.metric == "l2" and r.family == "balls"]
    assert quick and all(r.opts["t_grid"] == (20,) for r in quick)


def test_cli_and_api_tune_the_balls_and_the_json_records_the_grid(tiny_h5, tmp_path):
    out = tmp_path / "balls.json"
    args = ["measure", str(tiny_h5), "--metric", "l2", "--epsilon", "0.5", "--alpha", "0.05",
            "--method", "balls", "--tune", "--t-grid", "2,3", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    cli = json.loads(out.read_text())
    assert cli["inputs"]["options"]["t_grid"] == [2, 3]
    assert cli["params"]["t_grid"] == [2, 3] and cli["params"]["clusters"] in (2, 3)
    assert cli["params"]["tuned"] is True
    assert [row["n_clusters"] for row in cli["tuning"]["table"]] == [2, 3]
    assert cli["tuning"]["n_clusters"] == cli["params"]["clusters"]
    with datasets.open_dataset(tiny_h5) as ds:
        api = json.loads(nc.measure(np.asarray(ds.train.x), np.asarray(ds.test.x), metric="l2",
                                    alpha=0.05, epsilon=0.5, method="balls", tune=True,
                                    t_grid=(2, 3)).to_json())
    assert api["params"] == cli["params"] and api["tuning"] == cli["tuning"]
    for split in ("train", "validation", "test"):
        assert api[split] == cli[split]
    both = CliRunner().invoke(app, args[:-2] + ["--clusters", "3"])
    assert both.exit_code == 1 and "not both" in both.output
    one = nc.measure(tiny_h5, metric="l2", alpha=0.05, epsilon=0.5, method="balls", tune=True,
                     clusters=3)
    assert one.params["t_grid"] == [3] and one.params["clusters"] == 3


@pytest.mark.parametrize("grid", [(), (0, 3), ("a",), 3])
def test_bad_t_grids_are_one_line_errors(grid):
    with pytest.raises(NumbaconcError):
        check_t_grid(grid)


def test_clusters_and_t_grid_together_are_refused(tiny_h5):
    with datasets.open_dataset(tiny_h5) as ds:
        with pytest.raises(NumbaconcError, match="not both"):
            Concentration(ds).balls(alpha=ALPHA, epsilon=EPS, clusters=3, t_grid=(2, 3))
