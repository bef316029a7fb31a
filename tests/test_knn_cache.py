"""Neighbour-list cache: compact arrays, content-keyed, verified on load
(issue 11 group 2), memory-mapped when they do not fit the budget share."""

import h5py
import numpy as np
import pytest

import numbaconc.neighbours as api
from numbaconc import budget, datasets
from numbaconc.balls import fit_balls
from numbaconc.neighbours import cached_knn, knn, list_dtypes, subset_knn
from reference_knn import brute_knn


def _write(path, train_x, checksum="same-label"):
    rng = np.random.default_rng(5)
    return datasets.write_dataset(
        path, name="small", checksum=checksum, source="test", train_x=train_x,
        test_x=rng.integers(0, 256, size=(10, train_x.shape[1]), dtype=np.uint8))


@pytest.fixture
def train_x():
    rng = np.random.default_rng(12)
    return rng.integers(0, 256, size=(90, 16), dtype=np.uint8)


@pytest.fixture
def notices():
    seen = []
    return seen, seen.append


def _refuse(*args, **kwargs):
    raise AssertionError("recomputed instead of loading the cache")


def test_compact_types():
    assert list_dtypes("l2", np.uint8, 100, 784) == (np.int32, np.int32, True)
    assert list_dtypes("l2", np.uint8, 100, 40000) == (np.int32, np.int64, True)
    assert list_dtypes("l1", np.uint8, 100, 784) == (np.int32, np.int32, False)
    assert list_dtypes("linf", np.uint8, 100, 784) == (np.int32, np.uint8, False)
    assert list_dtypes("l2", np.float32, 100, 784) == (np.int32, np.float64, False)
    X = np.random.default_rng(0).integers(0, 256, size=(50, 9), dtype=np.uint8)
    res = knn(X, 7, metric="l2")
    assert res.stored.dtype == np.int32 and res.squared
    ref_idx, ref_dist = brute_knn(X, 7, "l2")
    np.testing.assert_array_equal(res.indices, ref_idx)
    np.testing.assert_array_equal(res.distances, ref_dist)
    np.testing.assert_array_equal(res.distance_column(6), ref_dist[:, 6])
    np.testing.assert_array_equal(res.distance_block(slice(3, 9), slice(1, 4)), ref_dist[3:9, 1:4])


def test_cache_file_layout_and_digest(tmp_path, train_x):
    with datasets.open_dataset(_write(tmp_path / "a.h5", train_x)) as ds:
        res, path = cached_knn(ds, 8, metric="l2")
        with h5py.File(path, "r") as f:
            for name in ("indices", "distances"):
                assert f[name].chunks is None and f[name].compression is None
            assert f["indices"].dtype == np.int32 and f["distances"].dtype == np.int32
            assert bool(f.attrs["squared"]) and f.attrs["content_digest"] == ds.content_digest
            assert f.attrs["array_digest"] == api.array_digest(f["indices"], f["distances"])
        assert path.name.startswith(ds.content_digest[:24])


def test_damaged_in_place_is_recomputed_with_a_notice(tmp_path, train_x, notices, monkeypatch):
    seen, notice = notices
    with datasets.open_dataset(_write(tmp_path / "a.h5", train_x)) as ds:
        good, path = cached_knn(ds, 8, metric="l2")
        size = path.stat().st_size
        with h5py.File(path, "r") as f:
            offset = f["indices"].id.get_offset()
        with open(path, "r+b") as fh:  # same size, bytes overwritten inside `indices`
            fh.seek(offset + 40)
            fh.write(b"\xff" * 64)
        assert path.stat().st_size == size
        again, path2 = cached_knn(ds, 8, metric="l2", notice=notice)
        assert len(seen) == 1 and "damaged" in seen[0] and path.name in seen[0]
        ref_idx, ref_dist = brute_knn(train_x, 8, "l2")
        np.testing.assert_array_equal(again.indices, ref_idx)
        np.testing.assert_array_equal(again.distances, ref_dist)
        # the recomputed file replaced the damaged one and now loads silently
        monkeypatch.setattr(api, "knn", _refuse)
        third, _ = cached_knn(ds, 8, metric="l2", notice=notice)
        assert len(seen) == 1
        np.testing.assert_array_equal(third.indices, ref_idx)


def test_damaged_file_without_callback_logs_one_warning(tmp_path, train_x, caplog):
    with datasets.open_dataset(_write(tmp_path / "a.h5", train_x)) as ds:
        _, path = cached_knn(ds, 5, metric="l1")
        with h5py.File(path, "r") as f:
            offset = f["distances"].id.get_offset()
        with open(path, "r+b") as fh:
            fh.seek(offset)
            fh.write(b"\x07" * 16)
        with caplog.at_level("WARNING", logger="numbaconc"):
            res, _ = cached_knn(ds, 5, metric="l1")
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert "damaged" in caplog.records[0].getMessage()
        np.testing.assert_array_equal(res.distances, brute_knn(train_x, 5, "l1")[1])


def test_truncated_file_is_recomputed(tmp_path, train_x, notices):
    seen, notice = notices
    with datasets.open_dataset(_write(tmp_path / "a.h5", train_x)) as ds:
        _, path = cached_knn(ds, 6, metric="linf")
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        res, path2 = cached_knn(ds, 6, metric="linf", notice=notice)
        assert path2 == path and len(seen) == 1 and "recomputing" in seen[0]
        np.testing.assert_array_equal(res.indices, brute_knn(train_x, 6, "linf")[0])
        assert path.stat().st_size == len(data)


def test_stale_cache_of_other_content_is_not_served(tmp_path, train_x, notices):
    """Same checksum attribute, rows reversed in place: the old lists are never served."""
    seen, notice = notices
    with datasets.open_dataset(_write(tmp_path / "a.h5", train_x)) as ds:
        _, old_path = cached_knn(ds, 8, metric="l2")
    edited = np.ascontiguousarray(train_x[::-1])
    with datasets.open_dataset(_write(tmp_path / "b.h5", edited)) as ds:
        assert ds.checksum == "same-label"
        # even a file of the old content renamed to the new key is refused
        stem = api._cache_stem(ds, "train", "l2", True)
        (old_path.parent / f"{stem}-k8.h5").write_bytes(old_path.read_bytes())
        res, path = cached_knn(ds, 8, metric="l2", notice=notice)
        ref_idx, ref_dist = brute_knn(edited, 8, "l2")
        np.testing.assert_array_equal(res.indices, ref_idx)
        np.testing.assert_array_equal(res.distances, ref_dist)
        with h5py.File(path, "r") as f:
            assert f.attrs["content_digest"] == ds.content_digest


def test_lists_over_the_budget_are_memory_mapped(tmp_path, train_x, monkeypatch):
    """Nothing fits: the search writes into the cache file, which is served as
    read-only memmaps; shorter k is a column slice; subset lists and balls agree."""
    with datasets.open_dataset(_write(tmp_path / "a.h5", train_x)) as ds:
        in_memory = knn(train_x, 30, metric="l2")
        monkeypatch.setattr(budget, "fits", lambda nbytes, share=0.5: False)
        res, path = cached_knn(ds, 30, metric="l2")
        assert isinstance(res.indices, np.memmap) and not res.indices.flags.writeable
        np.testing.assert_array_equal(res.indices, in_memory.indices)
        np.testing.assert_array_equal(res.stored, in_memory.stored)
        monkeypatch.setattr(api, "knn", _refuse)
        short, _ = cached_knn(ds, 12, metric="l2")
        assert isinstance(short.indices, np.memmap) and short.indices.shape == (90, 12)
        np.testing.assert_array_equal(short.distances, in_memory.distances[:, :12])
        monkeypatch.undo()
        rows = np.arange(0, 90, 3)
        monkeypatch.setattr(budget, "fits", lambda nbytes, share=0.5: False)
        sub = subset_knn(res, rows, train_x[rows])
        ref = subset_knn(in_memory, rows, train_x[rows])
        assert isinstance(sub.indices, np.memmap)
        np.testing.assert_array_equal(sub.indices, ref.indices)
        np.testing.assert_array_equal(sub.stored, ref.stored)
        a = fit_balls(train_x, 0.1, 40.0, 3, neighbors=res)
        monkeypatch.undo()
        b = fit_balls(train_x, 0.1, 40.0, 3, neighbors=in_memory)
        np.testing.assert_array_equal(a.center_index, b.center_index)
        np.testing.assert_array_equal(a.radii_sq, b.radii_sq)
        np.testing.assert_array_equal(a.expanded, b.expanded)


@pytest.mark.parametrize("metric", ["l1", "l2", "linf"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_search_with_scratch_memmaps_is_exact(metric, dtype, monkeypatch):
    """Nothing fits the budget: the prepared base and queries (and the linf
    transposed copy) live in scratch memmaps; results are unchanged."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 4, size=(70, 13)).astype(dtype) * (60 if dtype == np.uint8 else 0.25)
    base = base.astype(dtype)
    queries = base[::3].copy()
    queries[0] = 255 if dtype == np.uint8 else 1.0
    monkeypatch.setattr(budget, "fits", lambda nbytes, share=0.5: False)
    res = knn(base, 9, metric=metric, queries=queries, block_rows=16)
    ref_idx, ref_dist = brute_knn(base, 9, metric, queries=queries)
    np.testing.assert_array_equal(res.indices, ref_idx)
    np.testing.assert_array_equal(res.distances, ref_dist)
    assert not list((datasets.cache_dir() / "tmp").glob("*"))  # scratch files are unlinked


def test_l2_gemm_path_over_the_budget_is_exact(monkeypatch):
    """k >= 500: the GEMM path without a float32 copy of the base (blocks
    converted as used) and with small query blocks gives the exact lists."""
    rng = np.random.default_rng(4)
    X = rng.integers(0, 3, size=(700, 20)).astype(np.uint8) * 127  # ties everywhere
    want = knn(X, 520, metric="l2")
    monkeypatch.setattr(budget, "fits", lambda nbytes, share=0.5: False)
    with budget.budget("64M"):
        got = knn(X, 520, metric="l2")
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.stored, want.stored)
    ref_idx, ref_dist = brute_knn(X, 520, "l2")
    np.testing.assert_array_equal(got.indices, ref_idx)
    np.testing.assert_array_equal(got.distances, ref_dist)


def test_release_pages_keeps_the_values(tmp_path):
    """Released rows of a file memmap (or of a column view of it) read back
    unchanged; arrays in memory are left alone."""
    values = np.random.default_rng(2).integers(0, 2**31 - 1, size=(3000, 7), dtype=np.int32)
    np.save(tmp_path / "a.npy", values)  # a header before the data: a non-zero offset
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert isinstance(mapped, np.memmap) and mapped.offset > 0
    assert mapped.sum() == values.sum()  # every page touched
    api.release_pages(mapped, 100, 2500)
    api.release_pages(mapped[:, :3])
    api.release_pages(mapped, 2999, 10**9)
    np.testing.assert_array_equal(mapped, values)
    inside = values.copy()
    api.release_pages(inside)
    np.testing.assert_array_equal(inside, values)


@pytest.mark.parametrize("k", [None, 6])
def test_subset_in_small_blocks_equals_one_pass(tmp_path, train_x, monkeypatch, k):
    """The subset pass goes over the whole set's lists in row blocks (releasing
    a memmap's pages behind it): any block size gives the same lists."""
    with datasets.open_dataset(_write(tmp_path / "a.h5", train_x)) as ds:
        monkeypatch.setattr(budget, "fits", lambda nbytes, share=0.5: False)
        res, _ = cached_knn(ds, 30, metric="l2")
        monkeypatch.undo()
        rows = np.flatnonzero(np.random.default_rng(4).random(90) < 0.7)
        whole = subset_knn(res, rows, train_x[rows], k)
        monkeypatch.setattr(api, "_SUBSET_BLOCK_BYTES", 7 * 30 * 8)  # 7 rows a block
        blocks = subset_knn(res, rows, train_x[rows], k)
        np.testing.assert_array_equal(blocks.indices, whole.indices)
        np.testing.assert_array_equal(blocks.stored, whole.stored)
        ref = subset_knn(knn(train_x, 30, metric="l2"), rows, train_x[rows], k)
        np.testing.assert_array_equal(blocks.indices, ref.indices)
