"""One margin under holdout (issue 15, item 1): the selection target alone sets
how much a region covers; the paper protocol keeps the 2019 / 2021 rules."""

import math

import pytest

from numbaconc import datasets
from numbaconc.concentration import Concentration
from numbaconc.reproduction import ROW_VERSION, plan


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
    from numbaconc_cli.report import measure_command

    assert ROW_VERSION >= 4
    for name, paper_delta in (("mnist", 0.25), ("cifar10", 0.0)):
        rows = [r for r in plan(name) if r.metric == "l2"]
        paper = [r for r in rows if r.protocol == "paper" and r.family == "balls"]
        holdout = [r for r in rows if r.protocol == "holdout" and r.family in ("balls", "best")]
        assert paper and holdout
        assert all(r.opts["delta"] == paper_delta for r in paper)
        assert all(r.opts.get("delta", 0.0) == 0.0 for r in holdout)
        assert all("--delta" not in measure_command(r, name) for r in holdout)
    fashion = [r for r in plan("fashion-mnist") if r.metric == "l2" and r.family in ("balls", "best")]
    assert fashion and all(r.opts.get("delta", 0.0) == 0.0 for r in fashion)



def _fake_row(epsilon, text, group, family="boxes", protocol="paper", at=None, paper=None):
    test = dict(risk=0.056, adv_risk=0.079, adv_risk_ci=[0.074, 0.084], adv_risk_std=0.003)
    if at is not None:
        test.update(adv_risk_at_alpha=at, adv_risk_at_alpha_ci=[at - 0.01, at + 0.01])
    spec = dict(dataset="cifar10", metric="linf", alpha=0.05, epsilon=epsilon, epsilon_text=text,
                family=family, protocol=protocol, group=group, options={},
                paper=paper or dict(risk=5.72, adv_risk=8.13, adv_risk_std=0.26))
    return dict(spec=spec, test=test, alpha=0.05, family=family, protocol=protocol,
                params=dict(clusters=10, q=0.68, component=3, power=16.0),
                command=f"numbaconc measure cifar10.h5 --epsilon {text}", wall_seconds=1.0,
                train=dict(risk=0.05, adv_risk=0.07))


def test_report_shows_2019_decimal_rows_and_reading_at_alpha(tmp_path):
    from numbaconc.report import write_report

    plan_rows = [r for r in plan("cifar10") if r.group == "as_2019"]
    assert sorted(r.epsilon for r in plan_rows) == [0.007843, 0.03137]
    stated = {r.epsilon_text: r for r in plan("cifar10") if r.group == "table"
              and r.family == "boxes" and r.protocol == "paper"}
    for r in plan_rows:
        assert r.opts == stated[r.paper_dict["stated_epsilon_text"]].opts
    rows = [_fake_row(2 / 255, "2/255", "table"),
            _fake_row(0.007843, "0.007843", "as_2019",
                      paper=dict(risk=5.72, adv_risk=8.13, adv_risk_std=0.26, stated_epsilon_text="2/255")),
            _fake_row(2 / 255, "2/255", "table", family="halfspace", protocol="holdout", at=0.0612)]
    out = write_report(rows, tmp_path / "report.md", command="test", versions={}, wall_seconds=1.0,
                       data_notes={}, pictures={})
    text = out.read_text()
    assert "as the 2019 code ran them" in text
    assert "| 2/255 | 0.007843 (1.99996) |" in text
    assert "**6.12** at α [5.12, 7.12]" in text


def test_quick_plan_has_halfspace_curves_and_report_leads_with_valid_rows(tmp_path):
    from numbaconc.report import write_report

    quick = plan("mnist", quick=True)
    for metric, n_eps in (("linf", 4), ("l2", 3)):
        eps = {r.epsilon for r in quick if r.metric == metric and r.family == "halfspace"
               and r.protocol == "holdout" and r.group == "table"}
        assert len(eps) == n_eps
    fashion = plan("fashion-mnist", quick=True)
    assert len({r.epsilon for r in fashion if r.family == "halfspace"}) == 6
    invalid = _fake_row(0.3, "0.3", "table", family="boxes", protocol="holdout")
    invalid["test"]["risk"] = 0.04  # below alpha = 0.05, no reading at alpha
    valid = _fake_row(0.3, "0.3", "table", family="halfspace", protocol="holdout", at=0.0712)
    out = write_report([invalid, valid, _fake_row(0.3, "0.3", "table")], tmp_path / "r.md",
                       command="t", versions={}, wall_seconds=1.0, data_notes={}, pictures={})
    text = out.read_text()
    first = text.index("### ")
    assert text[first:].startswith("### Estimates (holdout")
    table = text[first:text.index("### ", first + 4)]
    assert "**7.12** at α" in table and "†" not in table
