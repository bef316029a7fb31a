"""Issue 11: never lose work, never serve stale or damaged data.

One section per group of the issue, each case driven as a user would (the
CLI through CliRunner), asserting one ``error:`` line naming the path, exit
1, nothing half-written and no work lost.

1. Output places: read-only (a read-only tmpfs mounted by the test: as root
   permission bits do not bind; skipped with the reason where mounting is
   not allowed), a folder where a file goes, a file where a folder goes,
   an existing output, and a disk that fills at write time (a small full
   tmpfs).
2. Caches: a dataset edited in place is not served old neighbour lists; a
   remembered content digest follows the file; damaged cached imports,
   regions and reproduce rows are recomputed, each saying so.
3. Hostile inputs and wording (the property-based part is test_hostile.py).
"""

import gzip
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from numbaconc import datasets
from numbaconc.errors import NumbaconcError
from numbaconc_cli.main import app
from reference_knn import brute_knn

runner = CliRunner()

CLI = Path(sys.executable).with_name("numbaconc")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def error_lines(result):
    return [line for line in result.output.splitlines() if line.startswith("error:")]


def assert_one_line_error(result, *fragments):
    """Exit 1, exactly one ``error:`` line, which names every fragment."""
    assert result.exit_code == 1, result.output
    lines = error_lines(result)
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert str(fragment) in lines[0], (fragment, lines[0])
    return lines[0]


def no_temporaries(folder: Path):
    return not [p for p in folder.rglob(".*") if p.name.endswith(".tmp")]


# ----------------------------------------------------------------- mounts


def _mount_tmpfs(where: Path, options: str):
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}): the "
                    "read-only / full-disk cases need one (as root, permission bits do not bind)")


def _umount(where: Path):
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder on a read-only file system (binds root too)."""
    where = tmp_path / "ro"
    _mount_tmpfs(where, "ro,size=1m")
    try:
        yield where
    finally:
        _umount(where)


@pytest.fixture
def full_dir(tmp_path):
    """A folder on a tmpfs filled to the last byte: any write beyond a few bytes fails."""
    where = tmp_path / "full"
    _mount_tmpfs(where, "size=64k")
    try:
        fd = os.open(where / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 1024):
                pass
        except OSError:  # ENOSPC: full
            pass
        finally:
            os.close(fd)
        yield where
    finally:
        _umount(where)


# --------------------------------------------- group 1: output places

@pytest.fixture(scope="module")
def small_npz(tmp_path_factory):
    from conftest import make_tiny_images

    folder = tmp_path_factory.mktemp("npz")
    x, y = make_tiny_images(200, seed=5)
    np.savez(folder / "s.npz", x_train=x[:150], y_train=y[:150], x_test=x[150:], y_test=y[150:])
    return folder / "s.npz"


def _commands(tiny_h5, small_npz, region_file, tiny_idx_folder):
    """(name, argv with OUT for the output place, kind of place, what it must not reach)."""
    measure = ["measure", tiny_h5, "--method", "boxes", "--clusters", "4", "--q", "0.5",
               "--alpha", "0.05", "--epsilon", "0.1"]
    return [
        ("data import -o", ["data", "import", "npz", small_npz, "-o", "OUT"], "file",
         "numbaconc.datasets.import_dataset"),
        ("data synth -o", ["data", "synth", "gaussian", "-o", "OUT", "--n", "50", "--n-test", "20"],
         "file", "numbaconc.synth.make_gaussian"),
        ("knn --out", ["knn", tiny_h5, "--k", "3", "--out", "OUT"], "file",
         "numbaconc_cli.knn.cached_knn"),
        ("measure --json", measure + ["--json", "OUT"], "file", "numbaconc_cli.measure.run_measure"),
        ("measure --region", measure + ["--region", "OUT"], "file", "numbaconc_cli.measure.run_measure"),
        ("evaluate --json", ["evaluate", region_file, tiny_h5, "--json", "OUT"], "file",
         "numbaconc.evaluate.evaluate_region"),
        ("curve --out", ["curve", tiny_h5, "--epsilon", "0.1", "--clusters", "4", "--q", "0.5",
                         "--out", "OUT"], "folder", "numbaconc.reproduction.Runner.run_all"),
        ("reproduce --out", ["reproduce", "mnist", "--data-dir", tiny_idx_folder, "--quick",
                             "--out", "OUT"], "folder", "numbaconc.reproduction.Runner.run_all"),
    ]


@pytest.fixture(scope="module")
def region_file(tiny_h5, tmp_path_factory):
    out = tmp_path_factory.mktemp("region") / "r.h5"
    result = invoke("measure", tiny_h5, "--method", "boxes", "--clusters", "4", "--q", "0.5",
                    "--alpha", "0.05", "--epsilon", "0.1", "--region", out)
    assert result.exit_code == 0, result.output
    return out


COMMANDS = ["data import -o", "data synth -o", "knn --out", "measure --json", "measure --region",
            "evaluate --json", "curve --out", "reproduce --out"]


def _command(name, *fixtures):
    return next(c for c in _commands(*fixtures) if c[0] == name)


def _poison(monkeypatch, target: str):
    """Make the command's computation fail the test if it is ever reached."""
    module, _, attr = target.rpartition(".")
    owner_name, _, cls = module.rpartition(".")
    import importlib

    try:
        owner = importlib.import_module(module)
    except ModuleNotFoundError:  # Class.method
        owner = getattr(importlib.import_module(owner_name), cls)

    def reached(*args, **kwargs):
        raise AssertionError(f"{target} was reached before the output place was checked")

    monkeypatch.setattr(owner, attr, reached)


def _with_out(argv, out):
    return [out if a == "OUT" else a for a in argv]


@pytest.mark.parametrize("command", COMMANDS)
def test_unusable_output_place_is_one_line_before_any_work(command, tiny_h5, small_npz, region_file,
                                                           tiny_idx_folder, tmp_path, monkeypatch):
    _, argv, kind, target = _command(command, tiny_h5, small_npz, region_file, tiny_idx_folder)
    _poison(monkeypatch, target)
    # a folder where a file goes / a file where a folder goes
    wrong = tmp_path / "wrong-kind"
    if kind == "file":
        wrong.mkdir()
        assert_one_line_error(invoke(*_with_out(argv, wrong)), wrong, "is a folder, not a file")
        assert not any(wrong.iterdir())
    else:
        wrong.write_text("keep me")
        assert_one_line_error(invoke(*_with_out(argv, wrong)), wrong, "is a file, not a folder")
        assert wrong.read_text() == "keep me"
    # a folder below an existing file (cannot be created)
    below = tmp_path / "a-file"
    below.write_text("x")
    assert_one_line_error(invoke(*_with_out(argv, below / "sub" / "out")), below, "is a file, not a folder")
    assert no_temporaries(tmp_path)


@pytest.mark.parametrize("command", COMMANDS)
def test_read_only_output_place_is_one_line_before_any_work(command, tiny_h5, small_npz, region_file,
                                                            tiny_idx_folder, read_only_dir,
                                                            monkeypatch):
    _, argv, kind, target = _command(command, tiny_h5, small_npz, region_file, tiny_idx_folder)
    _poison(monkeypatch, target)
    out = read_only_dir / ("out.h5" if kind == "file" else "run")
    line = assert_one_line_error(invoke(*_with_out(argv, out)), out)
    assert "Read-only file system" in line
    out_nested = read_only_dir / "new" / "deeper" / "out"
    assert_one_line_error(invoke(*_with_out(argv, out_nested)), out_nested, "Read-only")
    assert not any(read_only_dir.iterdir())


@pytest.mark.parametrize("place", ["file", "read-only"])
def test_unusable_cache_folder_is_one_line_before_any_work(place, tiny_h5, tmp_path, monkeypatch,
                                                           request):
    if place == "file":
        cache = tmp_path / "cache-is-a-file"
        cache.write_text("x")
    else:
        cache = request.getfixturevalue("read_only_dir") / "cache"
    monkeypatch.setenv("NUMBACONC_CACHE", str(cache))
    _poison(monkeypatch, "numbaconc_cli.knn.cached_knn")
    assert_one_line_error(invoke("knn", tiny_h5, "--k", "3"), cache, "$NUMBACONC_CACHE")
    _poison(monkeypatch, "numbaconc_cli.measure.run_measure")
    assert_one_line_error(invoke("measure", tiny_h5, "--epsilon", "0.1"), cache, "$NUMBACONC_CACHE")
    _poison(monkeypatch, "numbaconc.reproduction.Runner.run_all")
    assert_one_line_error(invoke("curve", tiny_h5, "--out", tmp_path / "c"), cache)


def test_existing_output_file_is_refused_without_force(tiny_h5, small_npz, tmp_path):
    out = tmp_path / "existing.h5"
    out.write_bytes(b"precious")
    line = assert_one_line_error(invoke("data", "import", "npz", small_npz, "-o", out), out,
                                 "already exists")
    assert "--force" in line
    assert out.read_bytes() == b"precious"
    forced = invoke("data", "import", "npz", small_npz, "-o", out, "--force")
    assert forced.exit_code == 0, forced.output
    with h5py.File(out) as f:
        assert f["train/x"].shape == (150, 64)
    js = tmp_path / "m.json"
    js.write_text("{}")
    args = ["measure", tiny_h5, "--method", "boxes", "--clusters", "4", "--q", "0.5",
            "--alpha", "0.05", "--epsilon", "0.1", "--json", js]
    assert_one_line_error(invoke(*args), js, "already exists")
    assert js.read_text() == "{}"
    assert invoke(*args, "--force").exit_code == 0
    assert "inputs" in json.loads(js.read_text())
    same = invoke(*args[:-1], tmp_path / "same", "--region", tmp_path / "same")
    assert_one_line_error(same, "--json and --region name the same file")


def test_disk_full_at_write_time_prints_the_figures_and_keeps_the_cache(tiny_h5, full_dir, tmp_path,
                                                                        monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("NUMBACONC_CACHE", str(cache))
    out = full_dir / "m.json"
    result = invoke("measure", tiny_h5, "--method", "boxes", "--clusters", "4", "--q", "0.5",
                    "--alpha", "0.05", "--epsilon", "0.1", "--json", out)
    line = assert_one_line_error(result, out, "No space left on device")
    assert "test adv risk" in result.output  # the table came first: the figures are not lost
    assert result.output.index("test adv risk") < result.output.index("error:")
    assert not out.exists() and no_temporaries(full_dir)
    assert list((cache / "knn").glob("*.h5"))  # the neighbour lists computed on the way are kept
    assert "\n" not in line


# ------------------------------------------------------ group 2: caches


def _copy(tiny_h5, tmp_path, name="copy.h5") -> Path:
    dst = tmp_path / name
    shutil.copyfile(tiny_h5, dst)
    return dst


def test_dataset_edited_in_place_is_not_served_old_neighbour_lists(tiny_h5, tmp_path):
    """train/x rows reversed in place, attributes (checksum) kept."""
    from numbaconc.neighbours import cached_knn

    path = _copy(tiny_h5, tmp_path)
    with datasets.open_dataset(path) as ds:
        before_digest = ds.content_digest
        first, _ = cached_knn(ds, 5, metric="linf", split="train")
    with h5py.File(path, "r+") as f:
        x = f["train/x"][...]
        f["train/x"][...] = x[::-1]
        checksum = f.attrs["checksum"]
    with h5py.File(path, "r") as f:
        assert f.attrs["checksum"] == checksum  # the old cache key would not see the edit
    with datasets.open_dataset(path) as ds:
        assert ds.content_digest != before_digest
        second, _ = cached_knn(ds, 5, metric="linf", split="train")
        X = ds.train.array()
    _, ref_dist = brute_knn(X, 5, "linf")
    np.testing.assert_array_equal(second.distances, ref_dist)
    # every served row is a true neighbour list (ties may order indices differently)
    true = np.max(np.abs(X[:, None, :].astype(int) - X[second.indices].astype(int)), axis=2)
    np.testing.assert_array_equal(true, ref_dist)
    assert not np.array_equal(first.indices, second.indices)


def test_content_digest_is_remembered_per_file_identity(tiny_h5, tmp_path, monkeypatch):
    import numbaconc.integrity as integrity

    path = _copy(tiny_h5, tmp_path, "remember.h5")
    with datasets.open_dataset(path) as ds:
        digest = ds.content_digest
    calls = {"n": 0}
    real = integrity.array_digest

    def counting(*arrays):
        calls["n"] += 1
        return real(*arrays)

    monkeypatch.setattr(integrity, "array_digest", counting)
    with datasets.open_dataset(path) as ds:
        assert ds.content_digest == digest
    assert calls["n"] == 0  # a second process reads the remembered digest
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # "touched": identity changed
    with datasets.open_dataset(path) as ds:
        assert ds.content_digest == digest
    assert calls["n"] == 1
    for record in (Path(os.environ["NUMBACONC_CACHE"]) / "digests").glob("*.json"):
        record.write_text("{not json")  # a damaged record is recomputed, never trusted
    with datasets.open_dataset(path) as ds:
        assert ds.content_digest == digest
    assert calls["n"] == 2


def test_cached_import_damaged_in_place_is_imported_again(tiny_idx_folder, caplog):
    from numbaconc.reproduction import locate

    ds, _, _ = locate("mnist", tiny_idx_folder)
    with ds:
        cached, original = ds.path, ds.train.array().copy()
    with h5py.File(cached, "r+") as f:  # same size, bytes overwritten inside train/x
        f["train/x"][:10] = 0
    ds, _, _ = locate("mnist", tiny_idx_folder)
    with ds:
        np.testing.assert_array_equal(ds.train.array(), original)
    assert "importing it again" in caplog.text


def _spec(alpha=0.05):
    from numbaconc.reproduction import curve_rows

    return curve_rows("tiny", metric="linf", alpha=alpha, epsilons=[0.1], eps_texts=["0.1"],
                      methods=["boxes"], protocol="holdout",
                      options=dict(clusters=4, q=0.5, box="tight"))[0]


def test_reproduce_rows_served_only_for_the_same_data_and_whole(tiny_h5, tmp_path):
    from numbaconc.reproduction import Runner

    out, logs = tmp_path / "run", []
    spec = _spec()
    with datasets.open_dataset(tiny_h5) as ds:
        Runner(out, log=logs.append).run(spec, ds, "tiny.h5")
        Runner(out, log=logs.append).run(spec, ds, "tiny.h5")
    assert logs[-1].startswith("skip (done)")
    # the same name, other bytes: recomputed, saying why
    edited = _copy(tiny_h5, tmp_path, "edited.h5")
    with h5py.File(edited, "r+") as f:
        f["train/x"][...] = f["train/x"][...][::-1]
    with datasets.open_dataset(edited) as ds:
        logs.clear()
        row = Runner(out, log=logs.append).run(spec, ds, "tiny.h5")
    assert logs[0].startswith("recompute (computed on different data")
    # a row changed by hand is not served
    saved = json.loads((out / "results.json").read_text())
    saved["rows"][0]["test"]["adv_risk"] = 0.0
    (out / "results.json").write_text(json.dumps(saved))
    with datasets.open_dataset(edited) as ds:
        logs.clear()
        Runner(out, log=logs.append).run(spec, ds, "tiny.h5")
        assert logs[0].startswith("recompute (the row was changed after it was written")
        # its region file damaged in place: recomputed too
        region = out / row["region_file"]
        with h5py.File(region, "r+") as f:
            f["centers"][0, 0] += 1.0
        logs.clear()
        Runner(out, log=logs.append).run(spec, ds, "tiny.h5")
        assert logs[0].startswith("recompute (") and "digest" in logs[0]


def test_region_file_missing_or_damaged_array_is_one_line(region_file, tiny_h5, tmp_path):
    from numbaconc.regions import Region

    missing = _copy(region_file, tmp_path, "missing.h5")
    with h5py.File(missing, "r+") as f:
        del f["centers"]
    assert_one_line_error(invoke("evaluate", missing, tiny_h5), missing, "no centers dataset")
    damaged = _copy(region_file, tmp_path, "damaged.h5")
    with h5py.File(damaged, "r+") as f:
        f["half_widths"][0, 0] = 99.0
    with pytest.raises(NumbaconcError, match="do not match their stored digest"):
        Region.load(damaged)
    shaped = _copy(region_file, tmp_path, "shaped.h5")
    with h5py.File(shaped, "r+") as f:
        del f["half_widths"]
        f["half_widths"] = np.zeros(3)
        del f.attrs["arrays_digest"]  # as an older file: checked without the digest
    assert_one_line_error(invoke("evaluate", shaped, tiny_h5), shaped, "half_widths has shape")


@pytest.mark.parametrize("content", [
    "[1, 2, 3]", '{"rows": {"a": 1}}', '{"rows": [{"key": "x"}]}', '{"rows": [7]}', "{broken",
])
def test_results_json_of_the_wrong_structure_is_one_line(content, tiny_idx_folder, tmp_path):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "results.json").write_text(content)
    result = invoke("reproduce", "mnist", "--data-dir", tiny_idx_folder, "--report-only", "--out", out)
    line = assert_one_line_error(result, out / "results.json")
    assert "--force" in line
    assert (out / "results.json").read_text() == content


def test_report_only_leaves_out_rows_of_other_data(tiny_h5, tmp_path):
    from numbaconc.reproduction import Runner

    out = tmp_path / "run"
    with datasets.open_dataset(tiny_h5) as ds:
        runner = Runner(out, log=lambda m: None)
        runner.run(_spec(), ds, "tiny.h5")
    edited = _copy(tiny_h5, tmp_path, "other.h5")
    with h5py.File(edited, "r+") as f:
        f["test/x"][...] = f["test/x"][...][::-1]
    logs = []
    with datasets.open_dataset(edited) as ds:
        runner = Runner(out, log=logs.append)
        runner.verify_rows("tiny", ds)
    assert runner.report_rows() == [] and "left out of the report" in logs[0]
    with datasets.open_dataset(tiny_h5) as ds:
        runner = Runner(out, log=logs.append)
        runner.verify_rows("tiny", ds)
    assert len(runner.report_rows()) == 1


# ------------------------------------------- group 3: hostile inputs, wording


def _idx_folder(folder: Path, images_header: bytes, payload: bytes):
    folder.mkdir(parents=True, exist_ok=True)
    good_x = struct.pack(">IIII", 2051, 3, 2, 2) + bytes(12)
    good_y = struct.pack(">II", 2049, 3) + bytes(3)
    for name, data in (("train-images-idx3-ubyte.gz", images_header + payload),
                       ("train-labels-idx1-ubyte.gz", good_y),
                       ("t10k-images-idx3-ubyte.gz", good_x), ("t10k-labels-idx1-ubyte.gz", good_y)):
        with gzip.open(folder / name, "wb") as f:
            f.write(data)
    return folder


@pytest.mark.parametrize("dims, fragment", [
    ((0xFFFFFFFF, 28, 28), "truncated"),            # was "can only specify one unknown dimension"
    ((0xFFFFFFFF, 65535, 65535), "truncated"),      # was "4294844065 unexpected trailing bytes"
])
def test_idx_header_claiming_too_much_is_truncated(dims, fragment, tmp_path):
    src = _idx_folder(tmp_path / "src", struct.pack(">IIII", 2051, *dims), bytes(100))
    out = tmp_path / "d.h5"
    line = assert_one_line_error(invoke("data", "import", "mnist", src, "-o", out), fragment,
                                 " x ".join(map(str, dims)))
    assert "trailing" not in line
    assert not out.exists() and no_temporaries(tmp_path)


def _npz(path: Path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("n_train, n_test, fragment", [(0, 5, "training set is empty"),
                                                       (5, 0, "test set is empty")])
def test_npz_with_an_empty_split_is_one_line(n_train, n_test, fragment, tmp_path):
    src = _npz(tmp_path / "e.npz", x_train=np.zeros((n_train, 4, 4), np.uint8),
               x_test=np.zeros((n_test, 4, 4), np.uint8))
    assert_one_line_error(invoke("data", "import", "npz", src, "-o", tmp_path / "e.h5"), fragment)
    assert not (tmp_path / "e.h5").exists()


def test_npz_header_claiming_10e12_rows_is_checked_before_allocating(tmp_path):
    src = tmp_path / "huge.npz"
    with zipfile.ZipFile(src, "w") as archive:
        with archive.open("x_train.npy", "w") as handle:
            np.lib.format.write_array_header_1_0(
                handle, {"descr": "|u1", "fortran_order": False, "shape": (10 ** 12, 28, 28)})
            handle.write(bytes(784 * 3))
        with archive.open("x_test.npy", "w") as handle:
            np.lib.format.write_array(handle, np.zeros((2, 28, 28), np.uint8))
    result = invoke("data", "import", "npz", src, "-o", tmp_path / "h.h5")
    assert_one_line_error(result, "x_train", "header claims shape (1000000000000, 28, 28)", "holds 2352")


def test_cifar10_kind_checks_the_image_shape(tmp_path):
    rng = np.random.default_rng(0)
    src = _npz(tmp_path / "grey.npz", x_train=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
               y_train=np.zeros(20, np.int64), x_test=rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
               y_test=np.zeros(5, np.int64))
    assert_one_line_error(invoke("data", "import", "cifar10", src, "-o", tmp_path / "c.h5"),
                          "32 x 32 x 3", "28 x 28")
    assert invoke("data", "import", "npz", src, "-o", tmp_path / "c.h5").exit_code == 0


def test_epsilon_nan_names_the_option(tiny_h5, tmp_path):
    assert_one_line_error(invoke("measure", tiny_h5, "--epsilon", "nan"), "--epsilon", "'nan'")
    assert_one_line_error(invoke("curve", tiny_h5, "--epsilon", "0.1,nan", "--out", tmp_path / "c"),
                          "--epsilon")
    assert not (tmp_path / "c").exists()


def test_selection_failure_names_the_target_and_the_users_alpha(tiny_h5):
    # a target no q reaches: the message gives it and the alpha the user typed
    result = invoke("measure", tiny_h5, "--method", "boxes", "--clusters", "4", "--alpha", "0.9",
                    "--epsilon", "0.4")
    line = assert_one_line_error(result, "alpha = 0.9", "selection target", "validation set", "T=4")
    assert "risk >= 0.9" in line  # the target itself (alpha plus the holdout margin)
    # a target above 1 (alpha close to 1): said before any family runs
    for method in ("boxes", "halfspace"):
        result = invoke("measure", tiny_h5, "--method", method, "--alpha", "0.995", "--epsilon", "0.1")
        assert_one_line_error(result, "alpha = 0.995", "selection target", "1.00")


_INTERRUPT_DURING_IMPORT = """
import builtins, sys
real_import = builtins.__import__
def interrupted_import(name, *args, **kwargs):
    if name == "numba" or name.startswith("numba."):
        raise KeyboardInterrupt
    return real_import(name, *args, **kwargs)
builtins.__import__ = interrupted_import
sys.argv = ["numbaconc", "data", "info", "mnist"]
import numbaconc_cli
numbaconc_cli.main()
"""


def test_ctrl_c_during_imports_is_one_line():
    done = subprocess.run([sys.executable, "-c", _INTERRUPT_DURING_IMPORT], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 130
    assert "Traceback" not in done.stderr and done.stderr.strip() == "interrupted"


@pytest.mark.skipif(not CLI.exists(), reason="the numbaconc command is not installed beside python")
def test_ctrl_c_in_the_first_seconds_of_the_installed_command():
    """A real SIGINT while the command is still importing (or just after)."""
    for delay in (0.5, 1.0):  # after interpreter start-up, while numba and h5py import
        proc = subprocess.Popen([str(CLI), "data", "info", "mnist"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        if proc.returncode == 0:  # finished before the signal: nothing to check
            continue
        assert proc.returncode == 130, err
        assert "Traceback" not in err and "interrupted" in err
