"""The memory budget and the array digest: the shared policies of streaming and caching."""

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from numbaconc import budget
from numbaconc.errors import NumbaconcError
from numbaconc.integrity import array_digest


@pytest.mark.parametrize("text, expected", [
    ("512M", 512 << 20), ("2G", 2 << 30), ("1.5GiB", 3 << 29), ("2g", 2 << 30),
    ("100000000", 100000000), (" 3 GB ", 3 << 30), ("1T", 1 << 40),
])
def test_parse_size(text, expected):
    assert budget.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "-1G", "2X", "1e9", "G"])
def test_parse_size_rejects_garbage(text):
    with pytest.raises(NumbaconcError, match="cannot read"):
        budget.parse_size(text)


def test_parse_size_rejects_tiny():
    with pytest.raises(NumbaconcError, match="below the minimum"):
        budget.parse_size("1M")


def test_budget_precedence(monkeypatch):
    monkeypatch.delenv(budget.ENV, raising=False)
    assert budget.get_budget() == budget.parse_size(budget.DEFAULT)
    monkeypatch.setenv(budget.ENV, "768M")
    assert budget.get_budget() == 768 << 20
    with budget.budget("1G") as size:
        assert size == 1 << 30 and budget.get_budget() == 1 << 30
    assert budget.get_budget() == 768 << 20
    monkeypatch.setenv(budget.ENV, "nonsense")
    with pytest.raises(NumbaconcError, match=r"\$NUMBACONC_MEMORY"):
        budget.get_budget()


def test_rows_for_follows_the_budget():
    with budget.budget("1G"):
        assert budget.rows_for(1024, share=0.25) == (1 << 28) // 1024
        assert budget.rows_for(1 << 40) == 1            # never zero rows
        assert budget.rows_for(1, maximum=10) == 10
        assert budget.rows_for(1 << 30, minimum=5) == 5
    with budget.budget("2G"):
        assert budget.rows_for(1024, share=0.25) == (1 << 29) // 1024


def test_cli_memory_option(monkeypatch):
    from numbaconc_cli.main import app

    monkeypatch.delenv(budget.ENV, raising=False)
    result = CliRunner().invoke(app, ["--memory", "lots", "data", "info", "mnist"])
    assert result.exit_code == 1
    assert "memory size" in result.output and "Traceback" not in result.output
    monkeypatch.setenv(budget.ENV, "bad")
    result = CliRunner().invoke(app, ["data", "info", "mnist"])
    assert result.exit_code == 1 and "NUMBACONC_MEMORY" in result.output
    budget.set_budget(None)


def test_array_digest_sees_every_byte_and_the_shape(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (1000, 37), dtype=np.uint8)
    base = array_digest(x)
    y = x.copy()
    y[999, 36] ^= 1
    assert array_digest(y) != base
    assert array_digest(x.reshape(37, 1000)) != base
    assert array_digest(x.astype(np.int16)) != base
    assert array_digest(x, x) != base
    # blocks, memmaps and h5py datasets give the digest of the same bytes
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=x, chunks=(64, 37))
    with h5py.File(path, "r") as f:
        assert array_digest(f["x"]) == base
    np.save(tmp_path / "x.npy", x)
    assert array_digest(np.load(tmp_path / "x.npy", mmap_mode="r")) == base
    assert array_digest(np.zeros((0, 3))) != array_digest(np.zeros((0, 4)))
