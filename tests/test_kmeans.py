"""numbaconc.kmeans against a plain numpy Lloyd loop (tests/reference_kmeans.py)."""

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from numbaconc.errors import NumbaconcError
from numbaconc.kmeans import KMeansResult, kmeans
from reference_kmeans import lloyd


def check_same(res, X, C0, metric, max_iter=30, empty="keep", exact_centers=True):
    C, labels, n_iter, converged, history = lloyd(X, C0, metric, max_iter, empty)
    assert isinstance(res, KMeansResult)
    np.testing.assert_array_equal(res.labels, labels)
    assert res.n_iter == n_iter
    assert res.converged == converged
    if exact_centers:
        np.testing.assert_array_equal(res.centers, C)
    else:
        np.testing.assert_allclose(res.centers, C, rtol=1e-12, atol=1e-12)
    assert len(res.history) == len(history)
    for got, want in zip(res.history, history):
        assert got["iteration"] == want["iteration"]
        assert got["n_changed"] == want["n_changed"]
        assert got["n_empty"] == want["n_empty"]
        assert got["inertia"] == pytest.approx(want["inertia"], rel=1e-9, abs=1e-6)
    assert res.inertia == pytest.approx(history[-1]["inertia"], rel=1e-9, abs=1e-6)


def blobs_uint8(rng, n=300, d=6, k=4, spread=40):
    centers = rng.integers(0, 256, (k, d))
    X = centers[rng.integers(0, k, n)] + rng.integers(-spread, spread + 1, (n, d))
    return np.clip(X, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("metric", ["l2", "l1"])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_matches_reference(metric, dtype):
    rng = np.random.default_rng(1)
    X = blobs_uint8(rng)
    if dtype == "float32":
        X = (X / 4.0).astype(np.float32)  # quarter steps: sums stay exact
    C0 = X[rng.choice(len(X), 5, replace=False)].astype(np.float64)
    res = kmeans(X, 5, metric=metric, init=C0, chunk_rows=37)
    check_same(res, X, C0, metric)


@pytest.mark.parametrize("metric", ["l2", "l1"])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_many_clusters_matches_reference(metric, dtype):
    # T >= 8 exercises the bound-pruned path that defers rows to the blocked kernel
    rng = np.random.default_rng(9)
    X = blobs_uint8(rng, n=700, d=8, k=14, spread=25)
    if dtype == "float32":
        X = (X / 4.0).astype(np.float32)
    C0 = X[rng.choice(len(X), 13, replace=False)].astype(np.float64)
    res = kmeans(X, 13, metric=metric, init=C0, chunk_rows=16)
    check_same(res, X, C0, metric)
    assert res.n_iter > 3


@pytest.mark.parametrize("metric", ["l2", "l1"])
@pytest.mark.parametrize("n_clusters", [6, 7, 10, 11])
def test_centre_counts_off_the_four_block_match_reference(metric, n_clusters):
    # T % 4 = 2 or 3 (and dense blocks of rows % 4 != 0): the scorers' short
    # groups, which repeat their first centre to fill a four-centre pass
    rng = np.random.default_rng(n_clusters)
    X = blobs_uint8(rng, n=603, d=10, k=n_clusters + 2, spread=35)
    C0 = X[rng.choice(len(X), n_clusters, replace=False)].astype(np.float64)
    res = kmeans(X, n_clusters, metric=metric, init=C0, chunk_rows=50)
    check_same(res, X, C0, metric)
    assert res.n_iter > 2


@pytest.mark.parametrize("metric", ["l2", "l1"])
def test_rows_scored_against_a_few_centres_match_reference(metric):
    # T = 40 with overlapping blobs: rows left with 4-9 undecided centres are
    # scored four centres per pass (and the rest one at a time), not deferred
    rng = np.random.default_rng(11)
    X = blobs_uint8(rng, n=1600, d=24, k=40, spread=40)
    C0 = X[rng.choice(len(X), 40, replace=False)].astype(np.float64)
    res = kmeans(X, 40, metric=metric, init=C0, chunk_rows=64)
    check_same(res, X, C0, metric)
    assert res.n_iter > 3
    sparse = [h["n_scores"] for h in res.history[1:]]
    assert min(sparse) < 0.25 * 40 * len(X)  # bounds decided most pairs after the first pass


@pytest.mark.parametrize("metric", ["l2", "l1"])
def test_random_float_data_matches_reference(metric):
    rng = np.random.default_rng(2)
    X = rng.random((400, 9)).astype(np.float32)
    C0 = X[:6].astype(np.float64)
    res = kmeans(X, 6, metric=metric, init=C0, max_iter=15, chunk_rows=7)  # > 16 chunks: several kernel batches
    check_same(res, X, C0, metric, max_iter=15, exact_centers=False)


@pytest.mark.parametrize("metric", ["l2", "l1"])
def test_ties_go_to_lowest_cluster(metric):
    # rows 2 and 6 are exactly between two centres
    X = np.array([[0, 0], [1, 1], [2, 2], [3, 3], [4, 4], [5, 5], [6, 6]], np.uint8)
    C0 = np.array([[4, 4], [0, 0], [8, 8]], np.float64)
    res = kmeans(X, 3, metric=metric, init=C0, max_iter=1)
    np.testing.assert_array_equal(res.labels, [1, 1, 0, 0, 0, 0, 0])
    check_same(res, X, C0, metric, max_iter=1)
    check_same(kmeans(X, 3, metric=metric, init=C0), X, C0, metric)


@pytest.mark.parametrize("metric", ["l2", "l1"])
@pytest.mark.parametrize("empty", ["keep", "farthest"])
def test_empty_cluster(metric, empty):
    rng = np.random.default_rng(3)
    X = blobs_uint8(rng, n=120, d=4, k=3)
    # duplicate initial centre (always loses the tie) and a far-away centre
    C0 = np.vstack([X[0], X[0], X[50], np.full(4, 1000.0)]).astype(np.float64)
    res = kmeans(X, 4, metric=metric, init=C0, empty=empty, chunk_rows=16)
    assert res.history[0]["n_empty"] >= 1
    check_same(res, X, C0, metric, empty=empty)
    if empty == "keep":
        np.testing.assert_array_equal(res.centers[3], C0[3])


def test_uint8_extremes_and_duplicates():
    X = np.array([[0, 255, 0]] * 5 + [[255, 0, 255]] * 5 + [[0, 0, 0], [255, 255, 255]], np.uint8)
    C0 = X[[0, 5, 10]].astype(np.float64)
    for metric in ("l2", "l1"):
        check_same(kmeans(X, 3, metric=metric, init=C0), X, C0, metric)


@pytest.mark.parametrize("metric", ["l2", "l1"])
def test_threads_identical(metric, threads):
    rng = np.random.default_rng(4)
    X = (rng.random((3000, 12)) ** 2 * 255).astype(np.uint8)
    Xf = rng.random((3000, 12)).astype(np.float32)
    for data in (X, Xf):
        out = []
        for n_threads in (1, 2):
            threads(n_threads)
            out.append(kmeans(data, 9, metric=metric, random_state=0, chunk_rows=100))
        a, b = out
        np.testing.assert_array_equal(a.labels, b.labels)
        assert a.centers.tobytes() == b.centers.tobytes()
        assert [h["inertia"] for h in a.history] == [h["inertia"] for h in b.history]


def test_readonly_memmap(tmp_path):
    rng = np.random.default_rng(5)
    X = blobs_uint8(rng, n=200)
    path = tmp_path / "x.u8"
    X.tofile(path)
    M = np.memmap(path, dtype=np.uint8, mode="r", shape=X.shape)
    assert not M.flags.writeable
    for metric in ("l2", "l1"):
        a = kmeans(M, 4, metric=metric, random_state=1)
        b = kmeans(X, 4, metric=metric, random_state=1)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.centers, b.centers)


def test_matches_sklearn_well_separated():
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(6)
    centers = rng.random((5, 8)) * 10
    X = (centers[rng.integers(0, 5, 500)] + 0.2 * rng.standard_normal((500, 8))).astype(np.float32)
    C0 = X[rng.choice(500, 5, replace=False)].astype(np.float64)
    res = kmeans(X, 5, init=C0, max_iter=30)
    sk = KMeans(5, init=C0, n_init=1, max_iter=30, tol=0, algorithm="lloyd").fit(X)
    np.testing.assert_array_equal(res.labels, sk.labels_)
    np.testing.assert_allclose(res.centers, sk.cluster_centers_, rtol=1e-4, atol=1e-4)


def test_init_options():
    rng = np.random.default_rng(7)
    X = blobs_uint8(rng, n=100)
    for init in ("random", "k-means++"):
        a = kmeans(X, 4, init=init, random_state=3, max_iter=1)
        b = kmeans(X, 4, init=init, random_state=3, max_iter=1)
        np.testing.assert_array_equal(a.centers, b.centers)
    # random init = distinct rows drawn by default_rng(random_state)
    idx = np.random.default_rng(3).choice(100, 4, replace=False)
    C0 = X[idx].astype(np.float64)
    check_same(kmeans(X, 4, init="random", random_state=3), X, C0, "l2")


@pytest.mark.parametrize("metric, power", [("l2", 2), ("l1", 1)])
def test_kmeanspp_samples_proportional_to_distance_power(metric, power):
    # rows 0, 1, 4 (1-D): after a uniform first centre, the second is drawn
    # with probability D^2 (l2) or D (l1) to it; a uniform second draw fails
    from scipy.stats import chisquare

    from numbaconc.kmeans import _kmeanspp

    X = np.array([[0], [1], [4]], dtype=np.uint8)
    rng = np.random.default_rng(11)
    draws = 3000
    row_of = {0.0: 0, 1.0: 1, 4.0: 2}
    counts = np.zeros((3, 3))  # [first centre, second centre]
    for _ in range(draws):
        C = _kmeanspp(X, 2, metric, rng)
        counts[row_of[C[0, 0]], row_of[C[1, 0]]] += 1
    D = np.abs(np.array([0.0, 1.0, 4.0])[:, None] - [0.0, 1.0, 4.0]) ** power
    want = D / D.sum(axis=1, keepdims=True) / 3 * draws
    uniform = (1 - np.eye(3)) / 2 / 3 * draws
    off = ~np.eye(3, dtype=bool)
    assert counts[~off].sum() == 0  # never the first centre again
    assert chisquare(counts[off], want[off]).pvalue > 1e-3
    assert chisquare(counts[off], uniform[off]).pvalue < 1e-12


def test_single_cluster_and_n_equals_k():
    rng = np.random.default_rng(8)
    X = blobs_uint8(rng, n=10, d=3)
    res = kmeans(X, 1, random_state=0)
    np.testing.assert_array_equal(res.centers[0], X.astype(np.float64).sum(0) / 10)
    res = kmeans(X, 10, init=X.astype(np.float64))
    check_same(res, X, X.astype(np.float64), "l2")


@settings(deadline=None, max_examples=40)
@given(
    data=arrays(np.uint8, st.tuples(st.integers(2, 40), st.integers(1, 5)), elements=st.integers(0, 3)),
    k=st.integers(1, 5),
    metric=st.sampled_from(["l2", "l1"]),
    seed=st.integers(0, 1000),
)
def test_property_matches_reference(data, k, metric, seed):
    # tiny value range: duplicate rows and exact ties everywhere
    k = min(k, data.shape[0])
    C0 = data[np.random.default_rng(seed).choice(data.shape[0], k, replace=False)].astype(np.float64)
    res = kmeans(data, k, metric=metric, init=C0, max_iter=8, chunk_rows=7)
    check_same(res, data, C0, metric, max_iter=8)


def test_real_mnist_subset(shared_data):
    from numbaconc.datasets import open_dataset

    from reference_kmeans import distance_matrix

    X = np.ascontiguousarray(open_dataset("mnist").train.x[:1500])
    rng = np.random.default_rng(0)
    C0 = X[rng.choice(len(X), 6, replace=False)].astype(np.float64)
    for metric in ("l2", "l1"):
        res = kmeans(X, 6, metric=metric, init=C0, max_iter=6)
        check_same(res, X, C0, metric, max_iter=6)
        # one more assignment from the final centres: the nearest centre of
        # every real row by the reference distances, lowest id on ties
        nxt = kmeans(X, 6, metric=metric, init=res.centers, max_iter=1)
        np.testing.assert_array_equal(nxt.labels,
                                      np.argmin(distance_matrix(X, res.centers, metric), axis=1))


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_clusters=0), "n_clusters"),
    (dict(n_clusters=11), "n_clusters"),
    (dict(n_clusters=2, metric="cosine"), "metric"),
    (dict(n_clusters=2, init=np.zeros((3, 2))), "init"),
    (dict(n_clusters=2, init="nope"), "init"),
    (dict(n_clusters=2, empty="nope"), "empty"),
    (dict(n_clusters=2, max_iter=0), "max_iter"),
])
def test_bad_parameters(kwargs, match):
    X = np.zeros((10, 2), np.uint8)
    k = kwargs.pop("n_clusters")
    with pytest.raises(NumbaconcError, match=match):
        kmeans(X, k, **kwargs)


def test_bad_input():
    X = np.ones((10, 3), np.float32)
    X[4, 1] = np.nan
    with pytest.raises(NumbaconcError, match="NaN"):
        kmeans(X, 2)
    with pytest.raises(NumbaconcError, match="uint8 or float32"):
        kmeans(np.ones((10, 3)), 2)
    with pytest.raises(NumbaconcError, match="2-D"):
        kmeans(np.ones(10, np.uint8), 2)
    with pytest.raises(NumbaconcError, match="NaN or inf"):
        kmeans(np.ones((10, 3), np.float32), 2, init=np.full((2, 3), np.nan))


# ------------------------------------------- streamed rows (issue 12): same bits


def _same_result(a, b):
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.centers.tobytes() == b.centers.tobytes()
    assert (a.n_iter, a.converged, a.inertia) == (b.n_iter, b.converged, b.inertia)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in a.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in b.history]


@pytest.fixture
def streamed(monkeypatch):
    """Call it to make k-means read its rows one chunk per block and keep its
    lower bounds in a scratch memmap."""
    import numbaconc.kmeans as km

    def stream():
        monkeypatch.setattr(km, "_STREAM_SHARE", 1e-12)
        monkeypatch.setattr(km, "BOUNDS_SHARE", 0.0)

    return stream


def _sources(X, tmp_path, rows=None):
    """X (or X[rows]) as an array, a RowView over a read-only memmap, over a
    chunked + compressed HDF5 dataset and over an array."""
    from numbaconc.datasets import RowView

    path = tmp_path / "x.u8"
    X.tofile(path)
    M = np.memmap(path, dtype=X.dtype, mode="r", shape=X.shape)
    f = h5py.File(tmp_path / "c.h5", "w")
    H = f.create_dataset("x", data=X, chunks=(13, X.shape[1]), compression="gzip")
    want = X if rows is None else X[rows]
    return want, [RowView(M, rows), RowView(H, rows), RowView(X, rows)], f


@pytest.mark.parametrize("metric", ["l2", "l1"])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_streamed_rows_give_the_in_memory_result(streamed, tmp_path, metric, dtype):
    rng = np.random.default_rng(11)
    X = blobs_uint8(rng, n=900, d=7, k=12, spread=30)
    X[5:40] = X[4]  # duplicates
    X[41], X[42] = 0, 255
    if dtype == "float32":
        X = (X / 4.0).astype(np.float32)
    rows = np.sort(rng.choice(900, 700, replace=False))
    want, sources, f = _sources(X, tmp_path, rows)
    try:
        refs = {init: kmeans(want, 10, metric=metric, init=init, random_state=3, chunk_rows=32)
                for init in ("random", "k-means++")}
        streamed()
        for init, ref in refs.items():
            assert ref.n_iter > 2
            for src in sources + [want]:
                got = kmeans(src, 10, metric=metric, init=init, random_state=3, chunk_rows=32)
                _same_result(got, ref)
    finally:
        f.close()
    import numbaconc.kmeans as km
    assert km._stream_rows(sources[0], 32) == 32  # one chunk per block: many blocks


@pytest.mark.parametrize("metric", ["l2", "l1"])
@pytest.mark.parametrize("empty", ["keep", "farthest"])
def test_streamed_empty_cluster(streamed, tmp_path, metric, empty):
    rng = np.random.default_rng(3)
    X = blobs_uint8(rng, n=120, d=4, k=3)
    C0 = np.vstack([X[0], X[0], X[50], np.full(4, 1000.0)]).astype(np.float64)
    want, sources, f = _sources(X, tmp_path)
    try:
        ref = kmeans(want, 4, metric=metric, init=C0, empty=empty, chunk_rows=16)
        assert ref.history[0]["n_empty"] >= 1
        check_same(ref, X, C0, metric, empty=empty)
        streamed()
        for src in sources:
            _same_result(kmeans(src, 4, metric=metric, init=C0, empty=empty, chunk_rows=16), ref)
    finally:
        f.close()


def test_rows_in_memory_follows_the_budget(tmp_path):
    from numbaconc import budget
    from numbaconc.datasets import RowView
    from numbaconc.kmeans import rows_in_memory

    X = np.zeros((4000, 1000), np.uint8)  # 4 MB
    view = RowView(X, np.arange(0, 4000, 2))
    assert rows_in_memory(X) is X
    with budget.budget("64M"):
        held = rows_in_memory(view)
        assert isinstance(held, np.ndarray) and held.shape == (2000, 1000)
        big = RowView(np.zeros((70_000, 1000), np.uint8))  # 70 MB > a quarter of 64M
        assert rows_in_memory(big) is big


def test_streamed_bad_input():
    from numbaconc.datasets import RowView

    X = np.ones((50, 3), np.float32)
    X[44, 2] = np.inf
    with pytest.raises(NumbaconcError, match="NaN or inf"):
        kmeans(RowView(X, np.arange(50)), 2)
    with pytest.raises(NumbaconcError, match="numpy array"):
        kmeans([[0, 1], [2, 3]], 1)
