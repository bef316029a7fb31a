"""The label-aware lower bound beside the concentration figures of reproduce reports."""

import json

from numbaconc import datasets
from numbaconc.optimal_loss import DEFINITIONS, dataset_lower_bound
from numbaconc.report import write_report
from numbaconc.reproduction import RowSpec, Runner, _opts, report_bounds


def _rows(name):
    common = dict(dataset=name, alpha=0.05, protocol="holdout", group="table")
    return [RowSpec(metric="l2", epsilon=1.5, epsilon_text="1.5", family="halfspace", **common),
            RowSpec(metric="linf", epsilon=0.01, epsilon_text="0.01", family="halfspace", **common),
            RowSpec(metric="linf", epsilon=0.01, epsilon_text="0.01", family="halfspace",
                    dataset=name, alpha=0.06, protocol="holdout", group="defence",
                    paper=_opts(defence="Someone", defence_risk=5.0, defence_adv_risk=40.0,
                                risk=5.0, adv_risk=9.0))]


def test_bounds_beside_estimates_and_defences(tiny_h5, tmp_path):
    out = tmp_path / "rep"
    logs = []
    runner = Runner(out, log=logs.append)
    with datasets.open_dataset(tiny_h5) as ds:
        rows = runner.run_all(_rows("tiny"), ds, "tiny.h5")
        assert all("error" not in r for r in rows)
        bounds = report_bounds(runner, "tiny", ds)
        direct = dataset_lower_bound(ds, metric="l2", epsilons=[1.5], split="test").rows[0]
        zero = dataset_lower_bound(ds, metric="linf", epsilons=[0.01], split="test").rows[0]
    assert bounds[("l2", 1.5)]["lower_bound"] == direct.lower_bound > 0
    assert zero.edges == 0 and bounds[("linf", 0.01)]["edges"] == 0
    report = write_report(runner.report_rows(), out / "report.md", command="test", versions={},
                          wall_seconds=0.0, data_notes={}, pictures={},
                          bounds={"tiny": bounds}).read_text()
    assert "label-aware lower bound, test split (corrupted-input loss)" in report
    l2_line = next(line for line in report.splitlines() if line.startswith("| 1.5 |"))
    assert l2_line.endswith(f"| {100 * direct.lower_bound:.2f} % ({direct.edges:,} conflict pairs) |")
    assert "0 exactly (no conflict pairs): label overlap explains none of the 40.00 % attack" in report
    assert DEFINITIONS in report
    # kept by the data's digest: a second call runs no range search
    saved = json.loads((out / "bounds.json").read_text())
    assert len(saved["tiny"]["rows"]) == 2
    logs.clear()
    with datasets.open_dataset(tiny_h5) as ds:
        again = report_bounds(Runner(out, log=logs.append), "tiny", ds, compute=False)
    assert again == bounds and not any("lower bound" in m for m in logs)
