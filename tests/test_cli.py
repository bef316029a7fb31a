"""The typer app, driven with CliRunner: happy paths, one-line errors, resumable runs."""

import json

import h5py
import pytest
from typer.testing import CliRunner

from numbaconc_cli.main import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_version_and_help():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.startswith("numbaconc ")
    assert invoke("--help").exit_code == 0


def test_data_info_bundled_mnist():
    result = invoke("data", "info", "mnist")
    assert result.exit_code == 0, result.output
    assert "60000 x 784" in result.output and "checksum" in result.output


def test_import_errors_are_one_line_and_exit_1(tmp_path):
    result = invoke("data", "import", "mnist", tmp_path / "nowhere", "-o", tmp_path / "x.h5")
    assert result.exit_code == 1
    assert result.output.strip().startswith("error:")
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.h5").exists()
    bad = invoke("data", "import", "svhn", tmp_path, "-o", tmp_path / "x.h5")
    assert bad.exit_code == 2  # typer rejects the unknown choice itself


def test_import_real_mnist_from_shared(shared_data, tmp_path):
    out = tmp_path / "m.h5"
    result = invoke("data", "import", "mnist", shared_data / "mnist", "-o", out)
    assert result.exit_code == 0, result.output
    with h5py.File(out) as f:
        assert f["train/x"].shape == (60000, 784) and f["train/x"].chunks is None
        assert len(f.attrs["checksum"]) == 64


def test_knn_command_writes_out_file(tiny_h5, tmp_path):
    out = tmp_path / "nn.h5"
    result = invoke("knn", tiny_h5, "--metric", "linf", "--k", "5", "--out", out)
    assert result.exit_code == 0, result.output
    with h5py.File(out) as f:
        assert f["indices"].shape == (600, 5) and f["distances"].shape == (600, 5)
        assert "pixel" in str(f.attrs["unit"])
    again = invoke("knn", tiny_h5, "--metric", "chebyshev", "--k", "3")
    assert again.exit_code == 0 and "cache:" in again.output
    bad = invoke("knn", tiny_h5, "--metric", "cosine", "--k", "3")
    assert bad.exit_code == 1 and "error:" in bad.output


def test_measure_json_schema_and_evaluate(tiny_h5, tmp_path):
    js, reg = tmp_path / "m.json", tmp_path / "r.h5"
    result = invoke("measure", tiny_h5, "--metric", "linf", "--epsilon", "8/255", "--alpha", "0.05",
                    "--method", "boxes", "--clusters", "4", "--q", "0.5", "--repeats", "2",
                    "--json", js, "--region", reg)
    assert result.exit_code == 0, result.output
    data = json.loads(js.read_text())
    for key in ("inputs", "params", "train", "test", "protocol", "timings", "versions"):
        assert key in data
    for key in ("risk", "adv_risk", "risk_std", "adv_risk_std", "adv_risk_ci"):
        assert key in data["test"]
    assert data["protocol"] == "holdout" and "validation" in data
    assert data["epsilon"] == pytest.approx(8 / 255)
    ev = invoke("evaluate", reg, tiny_h5, "--json", tmp_path / "e.json")
    assert ev.exit_code == 0, ev.output
    figures = json.loads((tmp_path / "e.json").read_text())["splits"]["test"]
    assert figures["adv_risk"] == pytest.approx(data["repeats"][0]["test"]["adv_risk"])


def test_measure_bad_input_exits_1(tiny_h5, tmp_path):
    result = invoke("measure", tmp_path / "absent.h5")
    assert result.exit_code == 1 and "no such dataset" in result.output
    result = invoke("measure", tiny_h5, "--epsilon", "abc")
    assert result.exit_code == 1 and "--epsilon" in result.output
    result = invoke("measure", tiny_h5, "--method", "boxes", "--metric", "l2")
    assert result.exit_code == 1 and "l-inf family" in result.output


@pytest.mark.parametrize("protocol, flag, expected", [
    ("holdout", None, True), ("holdout", "--no-domain", False),
    ("paper", None, False), ("paper", "--domain", True)])
def test_measure_domain_flag(tiny_h5, tmp_path, protocol, flag, expected):
    js = tmp_path / "m.json"
    args = ["measure", tiny_h5, "--epsilon", "0.3", "--alpha", "0.05", "--method", "boxes",
            "--clusters", "4", "--q", "0.5", "--box", "tight", "--protocol", protocol, "--json", js]
    result = invoke(*args, *([flag] if flag else []))
    assert result.exit_code == 0, result.output
    data = json.loads(js.read_text())
    assert data["params"]["domain"] is expected
    assert data["region"]["expansion_count"] == ("within the data domain" if expected else "unbounded (2019)")


def test_synth_gaussian_reports_ground_truth(tmp_path):
    out = tmp_path / "g.h5"
    result = invoke("data", "synth", "gaussian", "-o", out, "--n", "4000", "--n-test", "4000", "--d", "5",
                    "--spectrum", "spike:4")
    assert result.exit_code == 0, result.output
    js = tmp_path / "g.json"
    result = invoke("measure", out, "--metric", "l2", "--epsilon", "0.5", "--alpha", "0.05",
                    "--method", "halfspace", "--json", js)
    assert result.exit_code == 0, result.output
    truth = json.loads(js.read_text())["ground_truth"]
    assert truth["relation"] == "exact" and truth["estimate_respects_truth"]


def test_curve_writes_json_and_png(tiny_h5, tmp_path):
    out = tmp_path / "curve"
    result = invoke("curve", tiny_h5, "--metric", "linf", "--alpha", "0.05", "--epsilon", "0.05,0.1",
                    "--clusters", "4", "--q", "0.5", "--out", out)
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "curve.json").read_text())["rows"]
    assert {(r["spec"]["epsilon_text"], r["spec"]["family"]) for r in rows} == {
        (e, f) for e in ("0.05", "0.1") for f in ("boxes", "halfspace", "best")}
    assert (out / "curve.png").stat().st_size > 1000


def test_reproduce_tiny_report_and_resume(tiny_idx_folder, tmp_path, monkeypatch):
    out = tmp_path / "rep"
    args = ("reproduce", "mnist", "--data-dir", tiny_idx_folder, "--quick", "--out", out)
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    report = (out / "report.md").read_text()
    assert "paper 2019" in report and "holdout" in report and "numbaconc measure" in report
    saved = json.loads((out / "results.json").read_text())["rows"]
    assert saved and all("command" in r for r in saved)
    assert any(p.suffix == ".png" for p in out.iterdir())

    # interrupt a second run after its first new row: finished rows must survive and be skipped
    import numbaconc.reproduction as rep

    done_keys = {r["key"] for r in saved}
    (out / "results.json").write_text(json.dumps({"format_version": 1, "rows": saved[:2]}))
    calls = {"n": 0}
    original = rep.Runner.save

    def save_then_interrupt(self):
        original(self)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(rep.Runner, "save", save_then_interrupt)
    interrupted = invoke(*args)
    assert interrupted.exit_code == 130
    kept = json.loads((out / "results.json").read_text())["rows"]
    assert len(kept) == 3  # the two kept rows plus the one finished before Ctrl-C
    monkeypatch.setattr(rep.Runner, "save", original)
    resumed = invoke(*args)
    assert resumed.exit_code == 0
    assert resumed.output.count("skip (done)") >= 3
    final = {r["key"] for r in json.loads((out / "results.json").read_text())["rows"]}
    assert final == done_keys

    (out / "report.md").unlink()
    only = invoke(*args, "--report-only")
    assert only.exit_code == 0 and "run:" not in only.output
    assert (out / "report.md").exists()
