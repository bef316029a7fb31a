"""The boxes' density score from a reference sample (numbaconc.density)
against brute force (scipy cdist), and the variant a measurement records."""

import json

import h5py
import numpy as np
import pytest
from scipy.spatial.distance import cdist

from numbaconc import density
from numbaconc.datasets import RowView, open_dataset
from numbaconc.density import (density_variant, parse_density_sample, sample_k, sample_rows,
                               sampled_density_scores)
from numbaconc.errors import NumbaconcError
from numbaconc.neighbours import knn


def brute_force(X, k, m, seed):
    """Each row's l1 distance to its k'-th nearest sample row other than itself."""
    n = len(X)
    sample = sample_rows(n, m, seed)
    k_s = sample_k(k, m, n)
    D = cdist(np.asarray(X, np.float64), np.asarray(X[sample], np.float64), "cityblock")
    D[sample, np.arange(m)] = np.inf  # a row does not count itself (by index)
    return np.sort(D, axis=1)[:, k_s - 1], k_s


def data_with_ties(n=500, d=9, seed=0):
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 256, (5, d))
    X = np.clip(protos[rng.integers(0, 5, n)] + rng.integers(-20, 21, (n, d)), 0, 255)
    X = X.astype(np.uint8)
    X[20:80] = X[19]   # 61 copies: many in the sample, more than k' of them
    X[81], X[82] = 0, 255
    X[83:86] = 0
    return X


@pytest.mark.parametrize("m, k", [(60, 20), (137, 50), (2, 1), (499, 3)])
def test_sample_scores_match_brute_force(m, k):
    X = data_with_ties()
    want, k_s = brute_force(X, k, m, seed=4)
    got = sampled_density_scores(X, k, m, seed=4)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.float64 and k_s == sample_k(k, m, len(X))


def test_sample_scores_float32_match_brute_force():
    rng = np.random.default_rng(1)
    X = rng.random((400, 5)).astype(np.float32)
    X[10:30] = X[9]
    want, _ = brute_force(X, 25, 90, seed=2)
    np.testing.assert_allclose(sampled_density_scores(X, 25, 90, seed=2), want, rtol=1e-12)


def test_whole_set_as_sample_is_the_next_exact_neighbour():
    # m = n: k' = k and each row drops only itself, so the score is column k
    # of the all-pairs lists that count the row itself (exact, ties included)
    X = data_with_ties(n=300)
    lists = knn(X, 11, metric="l1", include_self=True)
    np.testing.assert_array_equal(sampled_density_scores(X, 10, 300, seed=0),
                                  lists.distance_column(10))


def test_sources_and_query_blocks_give_the_same_scores(tmp_path, monkeypatch):
    X = data_with_ties(n=700)
    want = sampled_density_scores(X, 30, 150, seed=9)
    rows = np.sort(np.random.default_rng(0).choice(700, 600, replace=False))
    want_sub = sampled_density_scores(X[rows], 30, 150, seed=9)
    path = tmp_path / "x.u8"
    X.tofile(path)
    M = np.memmap(path, dtype=np.uint8, mode="r", shape=X.shape)
    monkeypatch.setattr(density, "_MAX_QUERY_BLOCK", 97)  # 8 query blocks
    with h5py.File(tmp_path / "c.h5", "w") as f:
        H = f.create_dataset("x", data=X, chunks=(40, 9), compression="gzip")
        for src in (X, M, H, RowView(H)):
            np.testing.assert_array_equal(sampled_density_scores(src, 30, 150, seed=9), want)
        for src in (RowView(M, rows), RowView(H, rows)):
            np.testing.assert_array_equal(sampled_density_scores(src, 30, 150, seed=9), want_sub)
    assert not np.array_equal(sampled_density_scores(X, 30, 150, seed=10), want)


def test_sample_k_rounds_halves_up_within_the_sample():
    assert sample_k(50, 10_000, 48_000) == 10      # 10.42
    assert sample_k(50, 20_000, 800_000) == 1      # 1.25
    assert sample_k(50, 16_000, 800_000) == 1      # exactly 1.0
    assert sample_k(5, 100, 200) == 3              # exactly 2.5: up
    assert sample_k(3, 10, 1000) == 1              # 0.03: at least 1
    assert sample_k(99, 10, 100) == 9              # 9.9 -> 10, but only 9 other rows


def test_variant_auto_exact_and_sized(monkeypatch):
    assert density_variant(48_000, 50) == dict(variant="exact", k=50, requested="auto")
    assert density_variant(48_000, 50, "exact")["variant"] == "exact"
    assert density_variant(10**6, 50, "exact")["variant"] == "exact"
    big = density_variant(800_000, 50, None, seed=3)
    assert big == dict(variant="sample", k=50, requested="auto", sample_rows=density.SAMPLE_ROWS,
                       k_sample=1, seed=3)
    assert density_variant(48_000, 50, 10_000) == dict(
        variant="sample", k=50, requested=10_000, sample_rows=10_000, k_sample=10, seed=0)
    monkeypatch.setattr(density, "EXACT_MAX_ROWS", 1000)
    assert density_variant(1001, 50)["variant"] == "sample"
    assert density_variant(1000, 50)["variant"] == "exact"


@pytest.mark.parametrize("value, match", [
    (5000, "only 4000"), (1, ">= 2"), ("many", "auto, exact or a number"), (2.5, "integer"),
    (True, "integer"),
])
def test_variant_bad_values(value, match):
    with pytest.raises(NumbaconcError, match=match):
        density_variant(4000, 50, value)


def test_parse_density_sample():
    assert parse_density_sample("auto") is None and parse_density_sample(None) is None
    assert parse_density_sample("exact") == "exact"
    assert parse_density_sample("20,000") == 20_000 == parse_density_sample("20_000")
    with pytest.raises(NumbaconcError, match="density k=600"):
        density_variant(600, 600)


# -------------------------------------------------------- in a measurement


def test_measure_records_the_variant_and_uses_its_scores(tiny_h5):
    from numbaconc.concentration import Concentration

    with open_dataset(tiny_h5) as ds:
        conc = Concentration(ds, protocol="holdout", seed=2)
        auto = conc.boxes(alpha=0.05, epsilon=0.1, clusters=3, q=0.5)
        exact = conc.boxes(alpha=0.05, epsilon=0.1, clusters=3, q=0.5, density_sample="exact")
        assert auto.params["density"] == dict(variant="exact", k=50, requested="auto")
        assert exact.figures == auto.figures
        sampled = conc.boxes(alpha=0.05, epsilon=0.1, clusters=3, q=0.5, density_sample=200)
        assert sampled.params["density"] == dict(variant="sample", k=50, requested=200,
                                                 sample_rows=200, k_sample=21, seed=2)
        family = conc.families["boxes"]
        model = family._models[("symmetric", 30, 50, "sample", 200)]
        want = sampled_density_scores(conc.X_fit, 50, 200, seed=2)
        np.testing.assert_array_equal(model.scores, want)
        assert "knn_l1_sample" in conc.timings


def test_cli_density_sample(tiny_h5, tmp_path):
    from typer.testing import CliRunner

    from numbaconc_cli.main import app

    out = tmp_path / "m.json"
    args = ["measure", str(tiny_h5), "--method", "boxes", "--clusters", "3", "--q", "0.5",
            "--alpha", "0.05", "--epsilon", "0.1", "--json", str(out)]
    result = CliRunner().invoke(app, args + ["--density-sample", "150"])
    assert result.exit_code == 0, result.output
    params = json.loads(out.read_text())["params"]
    assert params["density"]["variant"] == "sample" and params["density"]["sample_rows"] == 150
    bad = CliRunner().invoke(app, args + ["--density-sample", "lots", "--force"])
    assert bad.exit_code == 1 and "error:" in bad.output and "auto, exact" in bad.output
