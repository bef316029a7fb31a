"""Shared fixtures. Every test run gets its own cache folder, so tests never
read or write the user's ~/.cache/numbaconc."""

import os
import tempfile
from pathlib import Path

import numba
import pytest

_CACHE = tempfile.mkdtemp(prefix="numbaconc-test-cache-")
os.environ["NUMBACONC_CACHE"] = _CACHE

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
