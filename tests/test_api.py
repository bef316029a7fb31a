"""The Python API: the README's examples run, and ``nc.measure`` on arrays
gives the CLI's figures on the imported file."""

import doctest
import inspect
import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

import numbaconc as nc
from numbaconc import datasets
from numbaconc_cli.main import app

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_api_examples_run():
    failures, tried = doctest.testfile(str(README), module_relative=False,
                                       optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert tried > 10 and failures == 0


def test_measure_on_arrays_equals_the_cli_on_the_file(tiny_h5, tmp_path):
    out = tmp_path / "m.json"
    result = CliRunner().invoke(app, ["measure", str(tiny_h5), "--metric", "linf", "--epsilon", "0.1",
                                      "--alpha", "0.05", "--method", "best", "--json", str(out)])
    assert result.exit_code == 0, result.output
    cli = json.loads(out.read_text())
    with datasets.open_dataset(tiny_h5) as ds:
        ours = json.loads(nc.measure(np.asarray(ds.train.x), np.asarray(ds.test.x), metric="linf",
                                     epsilon=0.1, alpha=0.05).to_json())
    assert ours["winner"] == cli["winner"]
    for got, want in zip(ours["families"], cli["families"]):
        assert got["family"] == want["family"] and got["params"] == want["params"]
        for split in ("train", "validation", "test"):
            assert got[split] == want[split]
    assert ours["inputs"]["options"] == cli["inputs"]["options"]


def test_top_level_names_are_the_api_functions_and_no_module_hides_behind_them():
    import numbaconc.neighbours as knn_module
    from numbaconc import api

    for name in ("knn", "measure", "curve", "reproduce", "bound"):
        assert getattr(nc, name) is getattr(api, name)
        assert inspect.isfunction(getattr(nc, name)), name
    assert nc.knn(np.zeros((3, 2), np.uint8), 1, metric="l1").__class__ is knn_module.KnnResult
    for name in nc.__all__:
        assert getattr(nc, name) is not None


def test_stages_record_seconds_and_peaks_and_the_measure_json_keeps_them(tiny_h5):
    from numbaconc import budget
    from numbaconc.stages import recording, stage

    with recording() as records:
        with stage("outer", n=3):
            with stage("inner"):
                block = np.ones(20_000_000)  # 160 MB, every page touched
                block[::4096] = 2.0
            del block
    inner, outer = records
    assert (inner["stage"], outer["stage"], outer["n"]) == ("inner", "outer", 3)
    assert outer["peak_bytes"] >= inner["peak_bytes"] >= 150e6
    assert outer["seconds"] >= inner["seconds"] > 0
    result = nc.measure(str(tiny_h5), metric="linf", alpha=0.05, epsilon=0.1, method="boxes",
                        clusters=3, q=0.5).to_dict()
    assert result["budget"]["bytes"] == budget.get_budget()
    assert [r["stage"] for r in result["stages"]][-2:] == ["evaluate", "boxes"]
    assert all(r["seconds"] >= 0 and r["peak_bytes"] > 0 for r in result["stages"])
