"""Sampled ball candidates (issue 12, item 4): the greedy's centres restricted
to a seeded sample of rows, each candidate still evaluated exactly against
all n points. Compared with the brute-force greedy over the same candidates
(reference_balls), and with the exact greedy when the sample is every row."""

import numpy as np
import pytest

from numbaconc.balls import (candidate_list_length, candidate_lists, fit_balls,
                             sample_candidates)
from numbaconc.budget import budget
from numbaconc.errors import NumbaconcError
from numbaconc.neighbours import knn
from reference_balls import fit_balls_ref, fit_greedy_lu_ref
from test_balls import _data, _fit_dict


class _Lists:
    """Stand-in KnnResult: rows ``rows`` of brute-force lists of X (self included)."""

    def __init__(self, X, rows, k, metric="l2"):
        from reference_balls import brute_knn_metric

        idx, dist = brute_knn_metric(X, k, metric)
        self.indices, self.distances = idx[rows], dist[rows]
        self.metric, self.k, self.include_self = metric, k, True


def _assert_same_as_reference(X, alpha, eps, T, delta, rows, fit):
    centers, radii_sq, gains, cov, exp = fit_balls_ref(X, alpha, eps, T, delta, candidates=rows)
    np.testing.assert_array_equal(fit.center_index, centers)
    np.testing.assert_array_equal(fit.radii_sq, radii_sq)
    assert [h["gain"] for h in fit.history] == gains
    np.testing.assert_array_equal(fit.covered, cov)
    np.testing.assert_array_equal(fit.expanded, exp)
    assert set(fit.center_index.tolist()) <= set(rows.tolist())


@pytest.mark.parametrize("kind", ["levels", "extremes", "clusters", "float"])
@pytest.mark.parametrize("k", [3, 20, 60])
def test_sampled_candidates_match_the_reference(kind, k):
    n, d = 60, 6
    X = _data(kind, n, d, seed=11 + k)
    scale = {"levels": 1.0, "extremes": 255.0, "clusters": 30.0, "float": 0.5}[kind]
    rows = sample_candidates(n, 17, seed=k)
    for alpha, eps, T, delta in [(0.1, 1.0, 3, 0.0), (0.25, 2.5, 4, 0.25), (0.05, 0.0, 1, 0.0)]:
        fit = fit_balls(X, alpha, eps * scale, T, delta=delta, neighbors=_Lists(X, rows, k),
                        candidates=rows)
        _assert_same_as_reference(X, alpha, eps * scale, T, delta, rows, fit)
        # the lists computed by fit_balls itself (m queries against all n) give the same
        own = fit_balls(X, alpha, eps * scale, T, delta=delta, n_neighbors=k, candidates=rows)
        assert _fit_dict(own) == _fit_dict(fit)


def test_short_lists_send_candidates_to_the_exact_evaluation():
    X = _data("clusters", 300, 8, seed=5)
    rows = sample_candidates(300, 40, seed=1)
    fit = fit_balls(X, 0.1, 40.0, 4, delta=0.25, n_neighbors=4, candidates=rows)
    _assert_same_as_reference(X, 0.1, 40.0, 4, 0.25, rows, fit)
    assert sum(h["candidates_exact"] for h in fit.history) > 0


def test_every_row_as_candidate_is_the_exact_greedy():
    X = _data("clusters", 120, 8, seed=6)
    exact = fit_balls(X, 0.1, 30.0, 3, n_neighbors=15)
    every = fit_balls(X, 0.1, 30.0, 3, n_neighbors=15, candidates=np.arange(120))
    assert _fit_dict(every) == _fit_dict(exact)


def test_cubes_with_sampled_candidates():
    X = _data("levels", 50, 5, seed=8)
    rows = sample_candidates(50, 12, seed=2)
    fit = fit_balls(X, 0.2, 1.0, 3, metric="linf", neighbors=_Lists(X, rows, 10, "linf"),
                    candidates=rows)
    centers, radii, gains, cov, exp, _ = fit_greedy_lu_ref(X, 0.2, 1.0, 3, metric="linf",
                                                           candidates=rows)
    np.testing.assert_array_equal(fit.center_index, centers)
    np.testing.assert_array_equal(fit.radii_sq, radii)
    np.testing.assert_array_equal(fit.covered, cov)
    np.testing.assert_array_equal(fit.expanded, exp)


def test_candidate_lists_are_the_rows_of_the_all_pairs_lists():
    X = _data("clusters", 400, 16, seed=9)
    rows = sample_candidates(400, 50, seed=3)
    full = knn(X, 30, metric="l2")
    part = candidate_lists(X, rows, 30)
    np.testing.assert_array_equal(part.indices, full.indices[rows])
    np.testing.assert_array_equal(part.stored, full.stored[rows])
    with budget("64M"):  # the budget caps the list length (m x K x 8 bytes in a quarter)
        assert candidate_list_length(10**6, 50) == (64 << 20) // 4 // 400
        assert candidate_list_length(30, 50) == 30


def test_sample_is_seeded_sorted_and_all_rows_when_large():
    a = sample_candidates(1000, 100, seed=4)
    assert np.array_equal(a, sample_candidates(1000, 100, seed=4))
    assert not np.array_equal(a, sample_candidates(1000, 100, seed=5))
    assert len(a) == 100 and np.all(np.diff(a) > 0) and a[0] >= 0 and a[-1] < 1000
    assert sample_candidates(1000, 1000) is None and sample_candidates(10, 50) is None
    with pytest.raises(NumbaconcError, match="candidates"):
        sample_candidates(10, 0)


def test_bad_candidates():
    X = _data("levels", 30, 4, seed=7)
    for rows in ([3, 1], [0, 0], [-1, 2], [5, 30], [], [[1, 2]], [0.5]):
        with pytest.raises(NumbaconcError, match="candidates"):
            fit_balls(X, 0.1, 1.0, 2, n_neighbors=5, candidates=np.array(rows))
    rows = np.array([1, 4, 9])
    with pytest.raises(NumbaconcError, match=r"shape \(3, K\)"):  # lists of every row: wrong
        fit_balls(X, 0.1, 1.0, 2, neighbors=_Lists(X, np.arange(30), 5), candidates=rows)


def test_measure_records_the_variant(tiny_h5):
    from numbaconc.api import measure

    tiny_dataset_path = str(tiny_h5)
    exact = measure(tiny_dataset_path, metric="l2", alpha=0.05, epsilon=0.2, method="balls",
                    clusters=3)
    assert exact.data["params"]["candidates"] == "all"
    sampled = measure(tiny_dataset_path, metric="l2", alpha=0.05, epsilon=0.2, method="balls",
                      clusters=3, ball_candidates=40)
    assert sampled.data["params"]["candidates"] == 40
    assert sampled.data["inputs"]["options"]["candidates"] == 40
    assert any(s["stage"] == "knn_l2_candidates" for s in sampled.data["stages"])
    every = measure(tiny_dataset_path, metric="l2", alpha=0.05, epsilon=0.2, method="balls",
                    clusters=3, ball_candidates=10**6)  # at least n: every row, exact
    assert every.data["params"]["candidates"] == "all"
    assert every.data["test"] == exact.data["test"] and every.data["train"] == exact.data["train"]


def test_sampled_lists_are_searched_before_the_rows_are_read(tmp_path, monkeypatch):
    """The candidates' kNN reads the fitting rows as a view of the file (the
    rows are materialised only after its prepared copy is gone); lists over
    their small budget share go to scratch memmaps, flushed and released as
    they are written, and read back unchanged: the fit equals the in-memory
    run's, chunked HDF5 and read-only memmap alike."""
    from conftest import make_tiny_images

    import h5py

    from numbaconc import neighbours
    from numbaconc.datasets import RowView

    x, _ = make_tiny_images(3000, side=8, n_modes=5, seed=12)
    x[:40] = 0
    x[40:60] = 255
    x[60:90] = x[100:130]  # duplicates
    rows = np.sort(np.random.default_rng(1).choice(3000, size=2500, replace=False))
    centres = sample_candidates(2500, 600, seed=2)
    dense = np.ascontiguousarray(x[rows])
    want = fit_balls(dense, 0.05, 120.0, 4, n_neighbors=2000, candidates=centres)
    want_lists = knn(dense, 2000, metric="l2", queries=dense[centres])
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        offset = f.create_dataset("x", data=x).id.get_offset()
        f.create_dataset("chunked", data=x, chunks=(256, 64), compression="gzip")
    seen = []
    real_knn = neighbours.knn

    def spy(base, k, **kw):
        out = kw.get("out")
        seen.append((type(base), out is not None and all(isinstance(a, np.memmap) for a in out)))
        return real_knn(base, k, **kw)

    monkeypatch.setattr(neighbours, "knn", spy)
    monkeypatch.setenv("NUMBACONC_CACHE", str(tmp_path / "cache"))
    with h5py.File(path, "r") as f:
        sources = (np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=x.shape),
                   f["chunked"])
        for source in sources:
            view = RowView(source, rows)
            with budget("64M"):  # the lists, 600 x 2000 x 8 bytes, exceed 4 MB: scratch files
                lists = candidate_lists(view, centres, 2000)
                assert isinstance(lists.indices, np.memmap)
                np.testing.assert_array_equal(lists.indices, want_lists.indices)
                np.testing.assert_array_equal(lists.stored, want_lists.stored)
                seen.clear()
                got = fit_balls(view, 0.05, 120.0, 4, n_neighbors=2000, candidates=centres)
            assert seen == [(RowView, True)]
            assert _fit_dict(got) == _fit_dict(want)


@pytest.mark.parametrize("kind,linf", [("extremes", False), ("float", False), ("levels", True)])
def test_penalties_over_the_reached_rows_only(kind, linf):
    """add_penalties fills only the columns with a reach (the rows evaluated
    exactly) when they are few: the counts equal a brute-force count and the
    full-width fill, for the GEMM (uint8), the direct (float) and l-inf keys."""
    from numbaconc.balls import _ExactEvaluator

    X = _data(kind, n=300, d=12, seed=7)
    X[40] = X[41]  # a duplicate: a zero distance
    integer = X.dtype == np.uint8
    rng = np.random.default_rng(1)
    diff = X[:, None, :].astype(np.float64) - X[None, :, :].astype(np.float64)
    key = np.abs(diff).max(2) if linf else (diff ** 2).sum(2)
    fresh = np.sort(rng.choice(300, 90, replace=False))
    values = np.unique(key)
    i = len(values) // 5
    # integer keys: a key itself (ties at the reach); float keys: between two keys
    level = values[i] if integer else (values[i] + values[i + 1]) / 2
    for n_reached in (0, 1, 25, 149, 150, 300):  # under and over half of the rows
        reach = np.full(300, -1.0)
        reached = rng.choice(300, n_reached, replace=False)
        reach[reached] = level
        reach[41] = 0.0 if n_reached else -1.0  # exactly the duplicate's distance
        want = np.where(reach >= 0, (key[fresh] <= reach[None, :]).sum(0), 0)
        got = np.full(300, 5, dtype=np.int64)
        evaluator = _ExactEvaluator(X, integer, linf)
        evaluator.capacity = 32  # several parts
        evaluator.add_penalties(fresh, reach, got)
        np.testing.assert_array_equal(got - 5, want)
        full = np.zeros(300, dtype=np.int64)
        from numbaconc.kernels import balls as kb
        for a in range(0, len(fresh), 32):
            part = fresh[a:a + 32]
            kb.add_penalties(evaluator.fill(part), len(part), reach, full)
        np.testing.assert_array_equal(got - 5, full)
