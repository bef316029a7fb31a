"""Dataset import to HDF5, opening as memmap, block reads, and bad input."""

import gzip
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest

from numbaconc import datasets
from numbaconc.errors import NumbaconcError


def write_idx(path: Path, array: np.ndarray, magic: int, *, truncate: int = 0, extra: bytes = b""):
    header = struct.pack(">i", magic) + struct.pack(">" + "i" * array.ndim, *array.shape)
    payload = array.astype(np.uint8).tobytes()
    if truncate:
        payload = payload[:-truncate]
    with gzip.open(path, "wb") as f:
        f.write(header + payload + extra)


def make_idx_folder(folder: Path, n_train=30, n_test=10, shape=(4, 5), seed=0, **broken):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = dict(
        train_x=rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        train_y=rng.integers(0, 10, n_train, dtype=np.uint8),
        test_x=rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        test_y=rng.integers(0, 10, n_test, dtype=np.uint8),
    )
    for key, fname in datasets._IDX_FILES.items():
        magic = 2051 if key.endswith("_x") else 2049
        kwargs = broken.get(key, {})
        write_idx(folder / fname, arrays[key], kwargs.pop("magic", magic), **kwargs)
    return arrays


def test_idx_roundtrip_is_memmapped_and_read_only(tmp_path):
    arrays = make_idx_folder(tmp_path / "src")
    out = datasets.import_dataset("mnist", tmp_path / "src", tmp_path / "d.h5")
    with datasets.open_dataset(out) as ds:
        assert isinstance(ds.train.x, np.memmap)
        assert not ds.train.x.flags.writeable
        np.testing.assert_array_equal(ds.train.array(), arrays["train_x"].reshape(30, -1))
        np.testing.assert_array_equal(ds.test.y, arrays["test_y"])
        assert ds.image_shape == (4, 5)
        assert ds.scale == pytest.approx(1 / 255)
        assert len(ds.checksum) == 64
    assert not list(tmp_path.glob(".*.tmp"))
    assert out.stat().st_mode & 0o044  # readable by others as usual, not mkstemp's 0600


@pytest.mark.parametrize("broken, message", [
    (dict(train_x=dict(magic=2049)), "wrong IDX magic"),
    (dict(test_x=dict(truncate=7)), "truncated"),
    (dict(train_y=dict(extra=b"xx")), "trailing bytes"),
])
def test_bad_idx_is_one_line_error_and_leaves_no_file(tmp_path, broken, message):
    make_idx_folder(tmp_path / "src", **broken)
    out = tmp_path / "d.h5"
    with pytest.raises(NumbaconcError, match=message) as info:
        datasets.import_dataset("mnist", tmp_path / "src", out)
    assert "\n" not in str(info.value)
    assert not out.exists()
    assert not list(tmp_path.glob(".d.h5*"))


def test_label_count_mismatch(tmp_path):
    folder = tmp_path / "src"
    make_idx_folder(folder)
    write_idx(folder / datasets._IDX_FILES["train_y"], np.zeros(29, np.uint8), 2049)
    with pytest.raises(NumbaconcError, match="30 images but 29 labels"):
        datasets.import_dataset("mnist", folder, tmp_path / "d.h5")


def test_npz_float_and_validation(tmp_path):
    rng = np.random.default_rng(1)
    x_train = rng.random((20, 3, 2)).astype(np.float32)
    x_test = rng.random((5, 3, 2)).astype(np.float32)
    np.savez(tmp_path / "a.npz", x_train=x_train, x_test=x_test)
    out = datasets.import_dataset("npz", tmp_path / "a.npz", tmp_path / "a.h5")
    with datasets.open_dataset(out) as ds:
        assert ds.train.dtype == np.float32 and ds.scale == 1.0
        assert ds.train.y is None
        np.testing.assert_array_equal(ds.test.array(), x_test.reshape(5, -1))
    bad = x_train.copy()
    bad[0, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", x_train=bad, x_test=x_test)
    with pytest.raises(NumbaconcError, match="NaN"):
        datasets.import_dataset("npz", tmp_path / "nan.npz", tmp_path / "nan.h5")
    np.savez(tmp_path / "big.npz", x_train=x_train * 2, x_test=x_test)
    with pytest.raises(NumbaconcError, match="out of"):
        datasets.import_dataset("npz", tmp_path / "big.npz", tmp_path / "big.h5")
    np.savez(tmp_path / "nokey.npz", x_train=x_train)
    with pytest.raises(NumbaconcError, match="missing array"):
        datasets.import_dataset("npz", tmp_path / "nokey.npz", tmp_path / "k.h5")
    assert sorted(p.name for p in tmp_path.glob("*.h5")) == ["a.h5"]


def test_npy_seeded_split(tmp_path):
    x = np.arange(100 * 6, dtype=np.uint8).reshape(100, 6)
    np.save(tmp_path / "x.npy", x)
    a = datasets.import_dataset("npy", tmp_path / "x.npy", tmp_path / "a.h5", test_fraction=0.25, seed=3)
    b = datasets.import_dataset("npy", tmp_path / "x.npy", tmp_path / "b.h5", test_fraction=0.25, seed=3)
    with datasets.open_dataset(a) as da, datasets.open_dataset(b) as db:
        assert da.train.n_samples == 75 and da.test.n_samples == 25
        np.testing.assert_array_equal(da.test.array(), db.test.array())
        both = np.concatenate([da.train.array(), da.test.array()])
        assert sorted(map(bytes, both)) == sorted(map(bytes, x))


def test_unknown_kind_and_missing_source(tmp_path):
    with pytest.raises(NumbaconcError, match="unknown dataset kind"):
        datasets.import_dataset("svhn", tmp_path, tmp_path / "o.h5")
    with pytest.raises(NumbaconcError, match="not found"):
        datasets.import_dataset("mnist", tmp_path / "nope", tmp_path / "o.h5")


def test_chunked_compressed_file_reads_in_blocks(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (50, 12), dtype=np.uint8)
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("train/x", data=x, chunks=(7, 12), compression="gzip")
        f.create_dataset("test/x", data=x[:9], chunks=(3, 12), compression="gzip")
    with datasets.open_dataset(path) as ds:
        assert isinstance(ds.train.x, h5py.Dataset)
        np.testing.assert_array_equal(ds.train.rows(5, 20), x[5:20])
        np.testing.assert_array_equal(ds.train.view().take([9, 2, 2, 40]), x[[9, 2, 2, 40]])
        np.testing.assert_array_equal(ds.train.array(), x)
        assert ds.scale == pytest.approx(1 / 255)
        assert len(ds.checksum) == 64  # content hash when no attribute


def test_missing_hdf5_dataset(tmp_path):
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("train/x", data=np.zeros((3, 2), np.uint8))
    with pytest.raises(NumbaconcError, match="missing HDF5 dataset /test/x"):
        datasets.open_dataset(path)
    with pytest.raises(NumbaconcError, match="no such dataset"):
        datasets.open_dataset(tmp_path / "absent.h5")


def test_bundled_mnist_opens_by_name():
    with datasets.open_dataset("mnist") as ds:
        assert ds.train.x.shape == (60000, 784) and ds.test.x.shape == (10000, 784)
        assert ds.train.dtype == np.uint8
        assert np.bincount(ds.test.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_bundled_name_not_hidden_by_a_folder_of_that_name(tmp_path, monkeypatch):
    # e.g. an output folder `--out mnist` left in the working directory
    (tmp_path / "mnist").mkdir()
    monkeypatch.chdir(tmp_path)
    with datasets.open_dataset("mnist") as ds:
        assert ds.train.x.shape == (60000, 784)


def test_real_shared_datasets_import(shared_data, tmp_path):
    out = datasets.import_dataset("fashion-mnist", shared_data / "fashion-mnist", tmp_path / "f.h5")
    with datasets.open_dataset(out) as ds:
        assert ds.train.x.shape == (60000, 784)
        assert np.bincount(ds.train.y).tolist() == [6000] * 10
