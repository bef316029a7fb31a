"""One margin under holdout (issue 15, item 1): the selection target alone sets
how much a region covers; the paper protocol keeps the 2019 / 2021 rules."""

import math

import pytest

from numbaconc import datasets
from numbaconc.measure import Concentration
from numbaconc.reproduce import ROW_VERSION, plan


@pytest.mark.parametrize("metric", ["linf", "l2"])
def test_holdout_halfspace_threshold_is_the_selection_target_alone(tiny_h5, metric):
    with datasets.open_dataset(tiny_h5) as ds:
        conc = Concentration(ds, protocol="holdout")
        target = conc.selection_alpha(0.05)
        est = conc.halfspace(alpha=0.05, epsilon=0.05, metric=metric)
        n_fit = len(conc.X_fit)
        n_in = round(est.figures["train"]["risk"] * n_fit)
        assert est.params["threshold_alpha"] == pytest.approx(target)
        # b is the ceil(target * n)-th largest projection: no Prescott margin on top
        assert math.ceil(target * n_fit) <= n_in < math.ceil((target + 0.5 / math.sqrt(n_fit)) * n_fit)


def test_paper_halfspace_keeps_prescotts_margin(tiny_h5):
    with datasets.open_dataset(tiny_h5) as ds:
        conc = Concentration(ds, protocol="paper")
        est = conc.halfspace(alpha=0.05, epsilon=0.05, metric="linf")
        n = len(conc.X_fit)
        assert est.params["threshold_alpha"] == pytest.approx(0.05 + 0.5 / math.sqrt(n))
        assert round(est.figures["train"]["risk"] * n) >= math.ceil((0.05 + 0.5 / math.sqrt(n)) * n)
        pca = conc.halfspace(alpha=0.05, epsilon=0.05, metric="linf", method="pca")
        assert pca.params["threshold_alpha"] == pytest.approx(0.05)


def test_holdout_balls_plan_no_delta_paper_rows_keep_2019_delta():
    assert ROW_VERSION >= 4
    for name, paper_delta in (("mnist", 0.25), ("cifar10", 0.0)):
        rows = [r for r in plan(name) if r.metric == "l2"]
        paper = [r for r in rows if r.protocol == "paper" and r.family == "balls"]
        holdout = [r for r in rows if r.protocol == "holdout" and r.family in ("balls", "best")]
        assert paper and holdout
        assert all(r.opts["delta"] == paper_delta for r in paper)
        assert all(r.opts.get("delta", 0.0) == 0.0 for r in holdout)
        assert all("--delta" not in r.command(name) for r in holdout)
    fashion = [r for r in plan("fashion-mnist") if r.metric == "l2" and r.family in ("balls", "best")]
    assert fashion and all(r.opts.get("delta", 0.0) == 0.0 for r in fashion)

