"""Exact kNN: kernels and API against a scipy brute force sorted by (distance, index)."""

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numbaconc import datasets
from numbaconc.errors import NumbaconcError
from numbaconc.neighbours import KnnResult, METRICS, cached_knn, canonical_metric, knn, save_knn
from reference_knn import assert_knn_equal_tie_aware, brute_knn

ALL = ("l1", "l2", "linf")


def check_exact(base, k, metric, queries=None, include_self=True, **kw):
    res = knn(base, k, metric=metric, queries=queries, include_self=include_self, **kw)
    ref_idx, ref_dist = brute_knn(base, k, metric, queries=queries, include_self=include_self)
    # compact lists: int32 indices; distances read back as float64 storage units
    assert res.indices.dtype == np.int32 and res.distances.dtype == np.float64
    np.testing.assert_array_equal(res.indices, ref_idx)
    np.testing.assert_array_equal(res.distances, ref_dist)
    return res


# ------------------------------------------------------------------ metrics


def test_metric_aliases():
    assert canonical_metric("cityblock") == "l1" == canonical_metric("Manhattan")
    assert canonical_metric("euclidean") == "l2"
    assert canonical_metric("chebyshev") == "linf" == canonical_metric("inf")
    assert set(METRICS.values()) == set(ALL)
    with pytest.raises(NumbaconcError, match="metric"):
        canonical_metric("cosine")


# ------------------------------------------------------------- uint8 exact


@pytest.mark.parametrize("metric", ALL)
@pytest.mark.parametrize("include_self", [True, False])
def test_uint8_ties_two_levels(metric, include_self):
    rng = np.random.default_rng(1)
    X = (rng.random((90, 37)) < 0.3).astype(np.uint8) * 255  # only 0 / 255: ties everywhere
    check_exact(X, 9, metric, include_self=include_self, block_rows=16)


@pytest.mark.parametrize("metric", ALL)
@pytest.mark.parametrize("d", [1, 70, 130, 300])
def test_uint8_few_levels_widths(metric, d):
    # d covers every stage-1 width (64, 128, 256) and the later 64/128/256 spans
    rng = np.random.default_rng(d)
    X = rng.choice(np.array([0, 1, 128, 254, 255], dtype=np.uint8), size=(75, d))
    check_exact(X, 6, metric, block_rows=11)


@pytest.mark.parametrize("metric", ALL)
def test_uint8_extremes_duplicates_zero_rows(metric):
    rng = np.random.default_rng(2)
    X = rng.integers(0, 256, size=(40, 50), dtype=np.uint8)
    X[0] = 255
    X[1] = 0
    X[2] = 0          # duplicate all-zero rows
    X[10:15] = X[20]  # a group of duplicates
    X[30] = X[0]
    for include_self in (True, False):
        res = check_exact(X, 7, metric, include_self=include_self)
    # the duplicates of row 20 are at distance 0 and ordered by index; without
    # self only index 20 itself is dropped
    assert res.indices[20, :5].tolist() == [10, 11, 12, 13, 14]
    assert res.distances[20, :5].tolist() == [0.0] * 5


def test_include_self_first_neighbour_and_k_limits():
    X = np.random.default_rng(3).integers(0, 256, size=(12, 20), dtype=np.uint8)
    res = check_exact(X, 12, "l1", include_self=True)   # k = n with self
    assert (res.indices[:, 0] == np.arange(12)).all() and (res.distances[:, 0] == 0).all()
    check_exact(X, 11, "linf", include_self=False)      # k = n - 1 without self
    with pytest.raises(NumbaconcError, match="k=13"):
        knn(X, 13, metric="l1")
    with pytest.raises(NumbaconcError, match="k=12"):
        knn(X, 12, metric="l1", include_self=False)
    with pytest.raises(NumbaconcError, match="k must be"):
        knn(X, 0, metric="l1")


@pytest.mark.parametrize("metric", ALL)
def test_queries_against_base(metric):
    rng = np.random.default_rng(4)
    base = rng.integers(0, 4, size=(60, 33), dtype=np.uint8) * 85
    queries = rng.integers(0, 4, size=(23, 33), dtype=np.uint8) * 85
    queries[0] = base[5]
    res = check_exact(base, 60, metric, queries=queries, block_rows=8)  # k = n allowed
    assert res.indices[0, 0] == 5
    with pytest.raises(NumbaconcError, match="k=61"):
        knn(base, 61, metric=metric, queries=queries)


@pytest.fixture
def force_gemm(monkeypatch):
    import numbaconc.neighbours as api

    monkeypatch.setattr(api, "_GEMM_MIN_K", 1)
    return api


@pytest.mark.parametrize("include_self", [True, False])
def test_l2_gemm_path_exact(force_gemm, include_self):
    rng = np.random.default_rng(14)
    X = (rng.random((90, 37)) < 0.3).astype(np.uint8) * 255  # ties everywhere
    X[5:9] = X[40]
    check_exact(X, 9, "l2", include_self=include_self, block_rows=16)
    check_exact(X, 90 if include_self else 89, "l2", include_self=include_self, block_rows=32)
    check_exact(X, 7, "l2", queries=X[::3] // 3, block_rows=16)


def test_l2_gemm_overflow_falls_back_to_direct(force_gemm, monkeypatch):
    monkeypatch.setattr(force_gemm, "_GEMM_EXTRA", -4)  # list of k entries: every query overflows
    rng = np.random.default_rng(12)
    X = rng.integers(0, 3, size=(50, 20), dtype=np.uint8) * 100
    check_exact(X, 4, "l2", include_self=False, block_rows=16)
    check_exact(X, 4, "l2", queries=X[:9] // 2, block_rows=16)


@pytest.mark.parametrize("include_self", [True, False])
def test_l2_large_k_real_scale_values(force_gemm, include_self):
    # large k relative to n, and norms like MNIST's: the certificate must hold
    rng = np.random.default_rng(13)
    X = (rng.random((260, 784)) < 0.2).astype(np.uint8) * rng.integers(200, 256, size=(260, 784),
                                                                        dtype=np.uint8)
    check_exact(X, 200, "l2", include_self=include_self)


# -------------------------------------------- vertical prefilter (l1, linf)


def test_l1_groups_patches_and_runs():
    import numbaconc.neighbours as api

    g = api._l1_groups(64)  # 8 x 8 image: four 4 x 4 patches
    assert g.reshape(8, 8)[:4, :4].tolist() == [[0] * 4] * 4
    assert g.reshape(8, 8)[4:, 4:].tolist() == [[3] * 4] * 4
    for d in (1, 3, 50, 784, 3072):  # square or not: <= 16 columns per group (uint16 sums)
        g = api._l1_groups(d)
        assert len(g) == d and np.bincount(g).max() <= 16 and np.bincount(g).min() >= 1


@pytest.mark.parametrize("metric", ["l1", "linf"])
@pytest.mark.parametrize("d", [50, 64])
def test_prefilter_kernels_exact(metric, d):
    rng = np.random.default_rng(d)
    X = rng.choice(np.array([0, 2, 250, 253, 255], dtype=np.uint8), size=(150, d),
                   p=[0.6, 0.05, 0.1, 0.05, 0.2])
    X[7:12] = X[100]  # duplicates
    Y = rng.integers(0, 256, size=(23, d), dtype=np.uint8)
    for block in (None, 37, 100):  # blocks not aligned to the 32 / 64 lanes
        check_exact(X, 8, metric, include_self=False, block_rows=block)
        check_exact(X, 5, metric, queries=Y, block_rows=block)
    check_exact(X, 150, metric, include_self=True)


@pytest.mark.parametrize("metric", ["l1", "linf"])
def test_prefilter_saturation_and_extremes(metric):
    # l1 distances around 100000 > 65535: the uint16 lane sums saturate and
    # thresholds are clipped, both must stay safe; linf: everything at 255
    rng = np.random.default_rng(21)
    X = (rng.random((70, 784)) < 0.5).astype(np.uint8) * 255
    X[3] = X[4]
    check_exact(X, 6, metric, include_self=False)
    check_exact(X, 6, metric, queries=255 - X[:9])


# ------------------------------------------------------------------- float


@pytest.mark.parametrize("metric", ALL)
@pytest.mark.parametrize("include_self", [True, False])
def test_float32_tie_aware(metric, include_self):
    rng = np.random.default_rng(5)
    X = rng.random((70, 45), dtype=np.float32)
    X[3] = X[4]
    res = knn(X, 8, metric=metric, include_self=include_self, block_rows=13)
    ref_idx, ref_dist = brute_knn(X, 8, metric, include_self=include_self)
    assert_knn_equal_tie_aware(res.indices, res.distances, X, metric, ref_idx, ref_dist)


def test_float32_queries():
    rng = np.random.default_rng(6)
    base = rng.random((50, 9), dtype=np.float32)
    queries = rng.random((7, 9), dtype=np.float32)
    for metric in ALL:
        res = knn(base, 5, metric=metric, queries=queries)
        ref_idx, ref_dist = brute_knn(base, 5, metric, queries=queries)
        assert_knn_equal_tie_aware(res.indices, res.distances, base, metric, ref_idx, ref_dist,
                                   queries=queries)


# ------------------------------------------------------------ input kinds


def test_readonly_memmap(tmp_path):
    X = np.random.default_rng(7).integers(0, 256, size=(50, 70), dtype=np.uint8)
    np.save(tmp_path / "x.npy", X)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert not mm.flags.writeable
    for metric in ALL:
        check_exact(mm, 5, metric)
    Xf = X.astype(np.float32) / 255
    np.save(tmp_path / "f.npy", Xf)
    res = knn(np.load(tmp_path / "f.npy", mmap_mode="r"), 5, metric="l2")
    ref_idx, ref_dist = brute_knn(Xf, 5, "l2")
    assert_knn_equal_tie_aware(res.indices, res.distances, Xf, "l2", ref_idx, ref_dist)


def test_h5py_chunked_compressed(tmp_path):
    X = np.random.default_rng(8).integers(0, 3, size=(64, 30), dtype=np.uint8) * 127
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("x", data=X, chunks=(7, 30), compression="gzip")
    with h5py.File(tmp_path / "x.h5", "r") as f:
        res = knn(f["x"], 6, metric="l1", include_self=False)
    ref_idx, ref_dist = brute_knn(X, 6, "l1", include_self=False)
    np.testing.assert_array_equal(res.indices, ref_idx)
    np.testing.assert_array_equal(res.distances, ref_dist)


def test_progress_called_between_blocks():
    X = np.random.default_rng(9).integers(0, 256, size=(30, 10), dtype=np.uint8)
    calls = []
    knn(X, 3, metric="l2", block_rows=8, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(8, 30), (16, 30), (24, 30), (30, 30)]


# ------------------------------------------------------------------ errors


def test_bad_input_raises():
    X = np.zeros((10, 4), dtype=np.uint8)
    F = np.zeros((10, 4), dtype=np.float32)
    bad = F.copy()
    bad[3, 1] = np.nan
    with pytest.raises(NumbaconcError, match="NaN"):
        knn(bad, 2, metric="l1")
    bad[3, 1] = np.inf
    with pytest.raises(NumbaconcError, match="NaN or inf"):
        knn(F, 2, metric="l1", queries=bad)
    with pytest.raises(NumbaconcError, match="dtype"):
        knn(X.astype(np.float64), 2, metric="l1")
    with pytest.raises(NumbaconcError, match="dtype"):
        knn(X, 2, metric="l1", queries=F)
    with pytest.raises(NumbaconcError, match="features"):
        knn(X, 2, metric="l1", queries=np.zeros((3, 5), dtype=np.uint8))
    with pytest.raises(NumbaconcError, match="2-D"):
        knn(np.zeros(10, dtype=np.uint8), 2, metric="l1")
    with pytest.raises(NumbaconcError, match="metric"):
        knn(X, 2, metric="hamming")
    with pytest.raises(NumbaconcError, match="block_rows"):
        knn(X, 2, metric="l1", block_rows=0)


# ----------------------------------------------------------------- threads


@pytest.mark.parametrize("metric", ALL)
def test_one_and_two_threads_identical(threads, metric):
    rng = np.random.default_rng(10)
    X = rng.integers(0, 3, size=(300, 100), dtype=np.uint8) * 120
    F = rng.random((120, 20), dtype=np.float32)
    out = []
    for n_threads in (1, 2):
        threads(n_threads)
        out.append((knn(X, 10, metric=metric, block_rows=64), knn(F, 4, metric=metric)))
    for a, b in zip(*out):
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.distances, b.distances)


# ------------------------------------------------------------------- cache


@pytest.fixture
def small_dataset(tmp_path):
    rng = np.random.default_rng(11)
    path = datasets.write_dataset(
        tmp_path / "small.h5", name="small", checksum="small-test-checksum", source="test",
        train_x=rng.integers(0, 256, size=(80, 16), dtype=np.uint8),
        test_x=rng.integers(0, 256, size=(20, 16), dtype=np.uint8))
    with datasets.open_dataset(path) as ds:
        yield ds


def test_cached_knn_reuse_and_slice(small_dataset, monkeypatch):
    import numbaconc.neighbours as api

    res, path = cached_knn(small_dataset, 9, metric="cityblock")
    assert path.parent == datasets.cache_dir() / "knn" and path.is_file()
    ref_idx, ref_dist = brute_knn(small_dataset.train.array(), 9, "l1")
    np.testing.assert_array_equal(res.indices, ref_idx)
    with h5py.File(path, "r") as f:
        assert f.attrs["metric"] == "l1" and f.attrs["k"] == 9 and bool(f.attrs["include_self"])
        assert f.attrs["checksum"] == "small-test-checksum" and f.attrs["split"] == "train"
        assert f.attrs["unit"] == "pixel levels"

    def fail(*args, **kwargs):
        raise AssertionError("recomputed instead of loading the cache")

    monkeypatch.setattr(api, "knn", fail)
    again, path2 = cached_knn(small_dataset, 9, metric="l1")   # same key: loads
    assert path2 == path
    np.testing.assert_array_equal(again.indices, res.indices)
    smaller, path3 = cached_knn(small_dataset, 4, metric="l1")  # larger k serves smaller
    assert path3 == path and smaller.k == 4
    np.testing.assert_array_equal(smaller.indices, res.indices[:, :4])
    np.testing.assert_array_equal(smaller.distances, res.distances[:, :4])
    monkeypatch.undo()

    other, path4 = cached_knn(small_dataset, 4, metric="l1", include_self=False)  # other key
    assert path4 != path
    np.testing.assert_array_equal(other.indices, brute_knn(small_dataset.train.array(), 4, "l1",
                                                           include_self=False)[0])
    test, _ = cached_knn(small_dataset, 3, metric="linf", split="test")
    assert test.indices.shape == (20, 3)
    assert not list((datasets.cache_dir() / "knn").glob(".*.tmp"))


def test_save_knn(tmp_path):
    res = KnnResult(indices=np.arange(6).reshape(3, 2), distances=np.ones((3, 2)), metric="l2",
                    k=2, include_self=True)
    path = save_knn(res, tmp_path / "out.h5", unit="pixel levels", checksum="abc")
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["indices"][...], res.indices)
        assert f.attrs["metric"] == "l2" and f.attrs["unit"] == "pixel levels"


# -------------------------------------------------------------- real data


def test_real_mnist_subset_l1(shared_data):
    X = datasets.read_idx(shared_data / "mnist" / "train-images-idx3-ubyte.gz", 2051)
    X = X.reshape(len(X), -1)[:2000]
    res = knn(X, 50, metric="l1")  # 2000 rows: more than one cluster and block
    # every 7th row as a query against all 2000 (self included, as in knn)
    ref_idx, ref_dist = brute_knn(X, 50, "l1", queries=X[::7])
    np.testing.assert_array_equal(res.indices[::7], ref_idx)
    np.testing.assert_array_equal(res.distances[::7], ref_dist)


# ---------------------------------------------------------------- property


@settings(deadline=None, max_examples=40)
@given(
    n=st.integers(2, 14), d=st.integers(1, 9), levels=st.sampled_from([2, 3, 256]),
    metric=st.sampled_from(ALL), include_self=st.booleans(), k_frac=st.floats(0, 1),
    block=st.sampled_from([None, 1, 3, 5]), seed=st.integers(0, 2**16),
)
def test_property_matches_brute_force(n, d, levels, metric, include_self, k_frac, block, seed):
    rng = np.random.default_rng(seed)
    step = 255 // (levels - 1)
    X = (rng.integers(0, levels, size=(n, d)) * step).astype(np.uint8)
    available = n if include_self else n - 1
    k = 1 + int(k_frac * (available - 1))
    check_exact(X, k, metric, include_self=include_self, block_rows=block)


# ------------------------------------------------------------------ subsets


@pytest.mark.parametrize("metric", ALL)
@pytest.mark.parametrize("k_full", [6, 12, 40])
def test_subset_lists_equal_a_direct_search(metric, k_full):
    """Lists of a subset read off whole-set lists equal a search within the
    subset, ties included; short rows (k_full small) are recomputed."""
    from numbaconc.neighbours import subset_knn

    rng = np.random.default_rng(k_full)
    X = rng.integers(0, 3, size=(120, 5)).astype(np.uint8)  # many ties and duplicates
    X[10] = X[11] = X[50]
    rows = np.sort(rng.choice(120, 90, replace=False))
    full = knn(X, k_full, metric=metric)
    sub = np.ascontiguousarray(X[rows])
    got = subset_knn(full, rows, sub, 5)
    direct = knn(sub, 5, metric=metric)
    np.testing.assert_array_equal(got.indices, direct.indices)
    np.testing.assert_array_equal(got.distances, direct.distances)
    # k=None: one common length, each row a prefix of the exact subset lists
    loose = subset_knn(full, rows, sub)
    assert 1 <= loose.k <= k_full
    longer = knn(sub, loose.k, metric=metric)
    np.testing.assert_array_equal(loose.indices, longer.indices)


def test_subset_fetch_k_leaves_few_short_rows():
    from numbaconc.neighbours import subset_fetch_k

    assert subset_fetch_k(50, 1.0, 1000) == 50
    k = subset_fetch_k(50, 0.8, 60000)
    assert 50 < k < 120
    assert subset_fetch_k(50, 0.8, 70) == 70
    # the lists of the whole set, filtered to a random 80 % subset: a row is
    # short when fewer than k of its fetched neighbours are in the subset
    rng = np.random.default_rng(30)
    n, k, fraction = 3000, 20, 0.8
    X = rng.integers(0, 256, size=(n, 6), dtype=np.uint8)
    rows = np.sort(rng.choice(n, size=int(fraction * n), replace=False))
    member = np.zeros(n, dtype=bool)
    member[rows] = True
    k_full = subset_fetch_k(k, fraction, n)
    lists = knn(X, k_full, metric="l1").indices[rows]

    def short_share(length):
        return float((member[lists[:, :length]].sum(axis=1) < k).mean())

    assert short_share(k_full) <= 0.002  # 5 std above the mean: about 3e-7 expected
    assert short_share(int(np.ceil(k / fraction))) > 0.2  # the mean alone leaves many


def test_subset_rows_must_be_sorted():
    from numbaconc.neighbours import subset_knn

    X = np.arange(40, dtype=np.uint8).reshape(20, 2)
    full = knn(X, 5, metric="l1")
    with pytest.raises(NumbaconcError, match="sorted"):
        subset_knn(full, np.array([3, 1]), X[[3, 1]], 2)
