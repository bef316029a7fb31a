"""Shared fixtures. Every test run gets its own cache folder, so tests never
read or write the user's ~/.cache/numbaconc."""

import os
import shutil
import tempfile
from pathlib import Path

import numba
import pytest

_CACHE = tempfile.mkdtemp(prefix="numbaconc-test-cache-")
os.environ["NUMBACONC_CACHE"] = _CACHE


def pytest_sessionfinish(session, exitstatus):
    # Each run's cache holds neighbour lists of a few hundred MB; leaving them
    # behind filled /tmp with 9 GB over a day of runs.
    shutil.rmtree(_CACHE, ignore_errors=True)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout (present here and in CI)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside the checkout")
    return SHARED_DATA


@pytest.fixture
def threads():
    """Run a block with a given Numba thread count, restoring it afterwards."""
    before = numba.get_num_threads()

    def set_threads(n):
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))

    yield set_threads
    numba.set_num_threads(before)


def make_tiny_images(n, *, side=8, n_modes=4, seed=0):
    """Clustered uint8 'images': a few prototype patterns plus noise, clipped."""
    import numpy as np

    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 256, (n_modes, side * side))
    labels = rng.integers(0, n_modes, n)
    noise = rng.normal(0, 25, (n, side * side))
    x = np.clip(protos[labels] + noise, 0, 255).astype(np.uint8)
    return x, labels


@pytest.fixture(scope="session")
def tiny_h5(tmp_path_factory):
    """A small clustered uint8 dataset in the HDF5 layout (8x8 images)."""
    from numbaconc.datasets import write_dataset

    x_train, y_train = make_tiny_images(600, seed=1)
    x_test, y_test = make_tiny_images(300, seed=2)
    out = tmp_path_factory.mktemp("tiny") / "tiny.h5"
    write_dataset(out, name="tiny", train_x=x_train, train_y=y_train, test_x=x_test, test_y=y_test,
                  image_shape=(8, 8), checksum="tiny-fixture-v1", source="tests")
    return out


@pytest.fixture(scope="session")
def tiny_idx_folder(tmp_path_factory):
    """A ../shared/data-style folder whose mnist/ holds tiny 8x8 IDX files."""
    import gzip
    import struct

    root = tmp_path_factory.mktemp("shared-like")
    folder = root / "mnist"
    folder.mkdir()
    parts = {"train": make_tiny_images(500, seed=3), "t10k": make_tiny_images(250, seed=4)}
    for prefix, (x, y) in parts.items():
        images = struct.pack(">iiii", 2051, len(x), 8, 8) + x.tobytes()
        labels = struct.pack(">ii", 2049, len(y)) + y.astype("uint8").tobytes()
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(images)
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(labels)
    return root
