"""Streaming under a memory budget: the row view, blocked stages that give the
figures of the whole-array run, and stages run under a real cgroup cap
(../shared/tools/memcap) below the dataset's own size."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from numbaconc import budget, datasets
from numbaconc.datasets import RowView, open_dataset, write_dataset, write_dataset_blocks
from numbaconc.errors import NumbaconcError
from numbaconc.evaluate import evaluate_region
from numbaconc.halfspace import fit_halfspace
from numbaconc.concentration import Concentration, measure
from numbaconc.regions import Region, ball_region, box_region, halfspace_region

REPO = Path(__file__).resolve().parents[1]
MEMCAP = REPO.parent / "shared" / "tools" / "memcap"


# ------------------------------------------------------------------ RowView


@pytest.fixture(scope="module")
def matrices(tmp_path_factory):
    """The same (500, 7) uint8 matrix contiguous (memmap) and chunked + compressed."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (500, 7)).astype(np.uint8)
    x[3] = 0
    x[4] = 255
    path = tmp_path_factory.mktemp("rv") / "m.h5"
    write_dataset(path, name="m", train_x=x, test_x=x[:5], checksum="m", source="tests")
    chunked = path.with_name("c.h5")
    with h5py.File(chunked, "w") as f:
        f.create_dataset("x", data=x, chunks=(32, 7), compression="gzip")
    return x, path, chunked


def _sources(matrices):
    x, path, chunked = matrices
    ds = open_dataset(path)
    f = h5py.File(chunked, "r")
    return x, [ds.train.x, f["x"], x], (ds, f)


@pytest.mark.parametrize("rows", [None, "sorted", "unsorted", "mask"])
def test_row_view_reads_what_indexing_would(matrices, rows):
    x, sources, handles = _sources(matrices)
    rng = np.random.default_rng(1)
    index = {None: None, "sorted": np.sort(rng.choice(500, 300, replace=False)),
             "unsorted": rng.choice(500, 200, replace=True),
             "mask": rng.random(500) < 0.4}[rows]
    want = x if index is None else x[index]
    try:
        for src in sources:
            view = RowView(src, index)
            assert view.shape == want.shape and len(view) == len(want) and view.dtype == np.uint8
            assert view.ndim == 2 and view.nbytes == want.nbytes
            np.testing.assert_array_equal(np.asarray(view), want)
            np.testing.assert_array_equal(view[...], want)
            np.testing.assert_array_equal(view[10:57], want[10:57])
            np.testing.assert_array_equal(view[::3], want[::3])
            np.testing.assert_array_equal(view[-1], want[-1])
            np.testing.assert_array_equal(view[[5, 2, 2, 0]], want[[5, 2, 2, 0]])
            np.testing.assert_array_equal(view[4:9, 2:5], want[4:9, 2:5])
            np.testing.assert_array_equal(view[6, 1:3], want[6, 1:3])
            assert view[10:57].flags.c_contiguous
            np.testing.assert_array_equal(view.astype(np.float64), want.astype(np.float64))
            # blocks: in order, every row once, the given size or the budget's
            got = [(a, b, blk) for a, b, blk in view.blocks(37)]
            assert [a for a, _, _ in got] == list(range(0, len(want), 37))
            np.testing.assert_array_equal(np.concatenate([blk for _, _, blk in got]), want)
            # a view of a view composes
            inner = RowView(view, np.arange(0, len(want), 2))
            np.testing.assert_array_equal(np.asarray(inner), want[::2])
    finally:
        handles[0].close()
        handles[1].close()


def test_row_view_h5_reads_in_small_slabs(matrices, monkeypatch):
    x, _, chunked = matrices
    monkeypatch.setattr(datasets, "_H5_PIECE_BYTES", 7 * 40)  # one chunk (32 rows) per read
    rows = np.array([499, 0, 31, 32, 33, 250, 64, 64])
    with h5py.File(chunked, "r") as f:
        np.testing.assert_array_equal(RowView(f["x"], rows)[0:8], x[rows])


def test_row_view_block_size_follows_budget(matrices):
    x, path, _ = matrices
    with open_dataset(path) as ds:
        view = ds.train.view()
        with budget.budget("64M"):
            small = view.block_rows()
            assert small == budget.rows_for(7 * (1 + 8), 0.125, minimum=64)
        with budget.budget("1G"):
            assert view.block_rows() > small
        # memmap blocks over all rows are read-only views of the file
        _, _, block = next(view.blocks(50))
        assert not block.flags.writeable


def test_row_view_rejects_bad_rows(matrices):
    x = matrices[0]
    with pytest.raises(NumbaconcError, match="out of range"):
        RowView(x, [0, 500])
    with pytest.raises(NumbaconcError, match="integer"):
        RowView(x, [0.5])
    with pytest.raises(NumbaconcError, match="mask"):
        RowView(x, np.ones(3, bool))


# ------------------------------------------------- blocked = whole, in-process


def _regions(d, rng):
    centers = rng.integers(0, 256, (3, d)).astype(np.float64)
    return [
        halfspace_region(rng.normal(size=d), 500.0, metric="linf", epsilon=10.0, scale=1 / 255),
        box_region(centers, np.full((3, d), 90.0), epsilon=20.0, scale=1 / 255, shape="symmetric",
                   domain=(0.0, 255.0)),
        ball_region(centers, np.full(3, 300.0 ** 2), epsilon=30.0, scale=1 / 255),
    ]


def test_region_counts_per_block_equal_whole_masks(tiny_h5, monkeypatch):
    rng = np.random.default_rng(2)
    with open_dataset(tiny_h5) as ds:
        X = ds.train.array()
        regions = _regions(X.shape[1], rng)
        whole = []
        for region in regions:
            e, e_eps = region.masks(X)
            whole.append((int(e.sum()), int(e_eps.sum())))
        monkeypatch.setattr(RowView, "block_rows", lambda self, *a, **k: 37)
        for region, (k_err, k_adv) in zip(regions, whole):
            for src in (X, ds.train.x, ds.train.view(np.arange(0, 600, 3))):
                fig = region.evaluate(src)
                if src is ds.train.x or src is X:
                    assert (fig["n"], fig["n_risk"], fig["n_adv"]) == (600, k_err, k_adv)
                else:
                    e, e_eps = region.masks(X[::3])
                    assert (fig["n_risk"], fig["n_adv"]) == (int(e.sum()), int(e_eps.sum()))


def test_concentration_holds_views_with_the_copies_figures(tiny_h5):
    with open_dataset(tiny_h5) as ds:
        conc = Concentration(ds, protocol="holdout", seed=1)
        assert isinstance(conc.X_fit, RowView) and isinstance(conc.X_select, RowView)
        assert isinstance(conc.X_test, RowView)
        train = ds.train.array()
        np.testing.assert_array_equal(np.asarray(conc.X_fit), train[conc.fit_rows])
        np.testing.assert_array_equal(np.asarray(conc.X_select), train[conc.val_rows])
        est = conc.halfspace(alpha=0.05, epsilon=0.05, metric="linf", n_components=6)
        dense = fit_halfspace(train[conc.fit_rows], conc.selection_alpha(0.05), 0.05 * 255,
                              metric="linf", n_components=6, X_select=train[conc.val_rows],
                              margin=conc.halfspace_margin)
        np.testing.assert_array_equal(est.region.arrays["w"], dense.w)
        assert float(est.region.arrays["b"]) == dense.b
        assert est.figures["train"]["risk"] == dense.train_risk
        assert est.figures["validation"]["adv_risk"] == dense.select_adv_risk


def test_search_batch_from_budget_keeps_the_fit(tiny_h5, monkeypatch):
    import numbaconc.halfspace as hs

    with open_dataset(tiny_h5) as ds:
        X, Xt = ds.train.view(np.arange(0, 600, 2)), ds.train.view(np.arange(1, 600, 2))
        a = fit_halfspace(X, 0.05, 15.0, metric="l2", n_components=8, X_select=Xt)
        monkeypatch.setattr(hs, "search_batch", lambda n, s=0, share=0.5: 3)
        b = fit_halfspace(X, 0.05, 15.0, metric="l2", n_components=8, X_select=Xt)
    np.testing.assert_array_equal(a.w, b.w)
    assert (a.b, a.train_adv_risk, a.select_adv_risk) == (b.b, b.train_adv_risk, b.select_adv_risk)
    # the search's float32 projections come from BLAS, whose rounding depends on
    # the batch shape: candidate thresholds agree to float32 rounding, counts exactly
    assert len(a.search) == len(b.search)
    for ra, rb in zip(a.search, b.search):
        assert ra["b"] == pytest.approx(rb["b"], rel=1e-5, abs=1e-3)
        assert (ra["risk"], ra["adv_risk"], ra["select_adv_risk"]) == \
            (rb["risk"], rb["adv_risk"], rb["select_adv_risk"])


def test_search_batch_shrinks_with_the_budget():
    from numbaconc.halfspace import search_batch

    with budget.budget("1500M"):
        assert search_batch(8_000_000, 2_000_000) == int(0.5 * 1500 * 2**20 // (4 * 10_000_000))
    with budget.budget("64M"):
        assert search_batch(10**9) == 1


# ---------------------------------------------------------- under real caps


def _memcap_usable():
    if not MEMCAP.is_file():
        return "../shared/tools/memcap is not beside the checkout"
    if os.geteuid() != 0:
        return "memcap needs root (cgroups)"
    if not (Path("/sys/fs/cgroup/cgroup.controllers").is_file() or Path("/sys/fs/cgroup/memory").is_dir()):
        return "no cgroup memory controller"
    return None


needs_memcap = pytest.mark.skipif(_memcap_usable() is not None, reason=str(_memcap_usable()))


def _numba_cache_env():
    """Subprocesses share one numba cache folder, so compiled kernels are reused."""
    env = dict(os.environ)
    env.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "numbaconc-test-numba-cache"))
    return env


def _run_capped(cap, args, env, cwd):
    """Run ``python args`` under ``memcap cap``; return (stdout, peak line)."""
    proc = subprocess.run([str(MEMCAP), cap, sys.executable, *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    return proc.stdout, [line for line in proc.stderr.splitlines() if line.startswith("memcap:")]


def _peak_bytes(memcap_lines) -> float:
    """The peak memcap printed (numfmt --to=iec: 812K, 250M, 1.2G)."""
    text = memcap_lines[-1].split("peak ")[1].split(",")[0]
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


_BIG_N, _BIG_D = 3_000_000, 128  # 384 MB of uint8 training rows: above every cap below
_CAP = "300M"

_MEASURE = """
import json, sys
from numbaconc import budget
from numbaconc.datasets import open_dataset
from numbaconc.concentration import measure
budget.set_budget(sys.argv[2])
with open_dataset(sys.argv[1]) as ds:
    r = measure(ds, metric="linf", alpha=0.01, epsilon=0.1, method="halfspace", n_components=2)
r.pop("_region").save(sys.argv[3])
print(json.dumps({k: r[k] for k in ("train", "validation", "test", "params")}))
"""


@pytest.fixture(scope="module")
def big_h5(tmp_path_factory):
    """A uint8 dataset larger than the caps, written block by block."""
    path = tmp_path_factory.mktemp("big") / "big.h5"
    protos = np.random.default_rng(0).integers(0, 256, (8, _BIG_D))

    def blocks(n, seed):
        for start in range(0, n, 250_000):
            rng = np.random.default_rng([seed, start])
            m = min(n, start + 250_000) - start
            noise = rng.integers(-40, 41, (m, _BIG_D))
            yield np.clip(protos[rng.integers(0, 8, m)] + noise, 0, 255).astype(np.uint8), None

    write_dataset_blocks(path, name="big", n_features=_BIG_D, dtype=np.uint8,
                         splits={"train": (_BIG_N, blocks(_BIG_N, 0), False),
                                 "test": (50_000, blocks(50_000, 1), False)},
                         image_shape=(_BIG_D,), source="tests", checksum="big-v1")
    return path


@needs_memcap
def test_halfspace_measure_and_evaluate_under_a_cap_below_the_data(big_h5, tiny_h5, tmp_path):
    env = _numba_cache_env()
    script = tmp_path / "measure.py"
    script.write_text(_MEASURE)
    # compile the kernels into the shared cache first, uncapped, on small data
    warm = subprocess.run([sys.executable, str(script), str(tiny_h5), "64M", str(tmp_path / "w.h5")],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert warm.returncode == 0, warm.stderr[-2000:]
    assert big_h5.stat().st_size > budget.parse_size(_CAP)

    out, lines = _run_capped(_CAP, [str(script), str(big_h5), "64M", str(tmp_path / "r.h5")], env, REPO)
    capped = json.loads(out.strip().splitlines()[-1])
    assert _peak_bytes(lines) <= budget.parse_size(_CAP)

    with open_dataset(big_h5) as ds:
        ref = measure(ds, metric="linf", alpha=0.01, epsilon=0.1, method="halfspace", n_components=2)
        region = ref.pop("_region")
        for name in ("train", "validation", "test"):
            assert capped[name] == json.loads(json.dumps(ref[name])), name
        saved = Region.load(tmp_path / "r.h5")
        np.testing.assert_array_equal(saved.arrays["w"], region.arrays["w"])
        want = evaluate_region(region, ds)

    _run_capped(_CAP, ["-m", "numbaconc_cli.main", "--memory", "64M", "evaluate", str(tmp_path / "r.h5"), str(big_h5),
                       "--json", str(tmp_path / "e.json")], env, REPO)
    got = json.loads((tmp_path / "e.json").read_text())
    for name in ("train", "test"):
        for key in ("n", "n_risk", "n_adv", "risk", "adv_risk"):
            assert got["splits"][name][key] == want["splits"][name][key], (name, key)


_BOXES = """
import json, sys
from numbaconc import budget
from numbaconc.datasets import open_dataset
from numbaconc.concentration import measure
budget.set_budget(sys.argv[2])
with open_dataset(sys.argv[1]) as ds:
    r = measure(ds, metric="linf", alpha=0.01, epsilon=0.1, method="boxes", clusters=3, q=0.3,
                density_sample=1000)
r.pop("_region").save(sys.argv[3])
print(json.dumps({k: r[k] for k in ("train", "validation", "test", "params")}))
"""


@needs_memcap
def test_boxes_measure_under_a_cap_below_the_data(big_h5, tiny_h5, tmp_path):
    # the sampled density score, k-means over the dense set read in blocks
    # (0.3 x 2,400,000 fitting rows: 92 MB, over a quarter of the budget) with
    # its bounds in scratch memmaps, the boxes from one streamed pass
    env = _numba_cache_env()
    script = tmp_path / "boxes.py"
    script.write_text(_BOXES.replace("density_sample=1000", "density_sample=100"))
    warm = subprocess.run([sys.executable, str(script), str(tiny_h5), "64M", str(tmp_path / "w.h5")],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert warm.returncode == 0, warm.stderr[-2000:]
    script.write_text(_BOXES)
    out, lines = _run_capped(_CAP, [str(script), str(big_h5), "64M", str(tmp_path / "r.h5")], env, REPO)
    capped = json.loads(out.strip().splitlines()[-1])
    assert _peak_bytes(lines) <= budget.parse_size(_CAP)
    assert capped["params"]["density"]["variant"] == "sample"
    with budget.budget("64M"), open_dataset(big_h5) as ds:
        ref = measure(ds, metric="linf", alpha=0.01, epsilon=0.1, method="boxes", clusters=3,
                      q=0.3, density_sample=1000)
    region = ref.pop("_region")
    for name in ("train", "validation", "test", "params"):
        assert capped[name] == json.loads(json.dumps(ref[name])), name
    saved = Region.load(tmp_path / "r.h5")
    for key, value in region.arrays.items():
        np.testing.assert_array_equal(np.asarray(saved.arrays[key]), np.asarray(value))


_AUGMENT = """
import sys
from numbaconc import budget
from numbaconc.augment import make_augmented
budget.set_budget("64M")
make_augmented(sys.argv[1], sys.argv[2], n=int(sys.argv[3]), seed=7)
"""


@needs_memcap
def test_augment_under_a_cap_below_its_output(tmp_path):
    from numbaconc.augment import make_augmented
    from numbaconc.integrity import array_digest

    rng = np.random.default_rng(0)
    src = tmp_path / "src.h5"
    write_dataset(src, name="src", train_x=rng.integers(0, 256, (50, 64)).astype(np.uint8),
                  train_y=np.arange(50) % 3, test_x=rng.integers(0, 256, (20, 64)).astype(np.uint8),
                  image_shape=(8, 8), checksum="src", source="tests")
    n, cap = 3_000_000, "150M"  # 192 MB of output
    env = _numba_cache_env()
    script = tmp_path / "augment.py"
    script.write_text(_AUGMENT)
    warm = subprocess.run([sys.executable, str(script), str(src), str(tmp_path / "w.h5"), "300"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert warm.returncode == 0, warm.stderr[-2000:]
    _, lines = _run_capped(cap, [str(script), str(src), str(tmp_path / "big.h5"), str(n)], env, REPO)
    assert (tmp_path / "big.h5").stat().st_size > budget.parse_size(cap)
    assert _peak_bytes(lines) <= budget.parse_size(cap)
    # the same file as an uncapped in-process run with another block size
    make_augmented(src, tmp_path / "ref.h5", n=n, seed=7, block_rows=100_000)
    with open_dataset(tmp_path / "big.h5") as a, open_dataset(tmp_path / "ref.h5") as b:
        assert a.train.n_samples == n and a.test.n_samples == 20
        assert array_digest(a.train.x, a.test.x, a.train.y) == array_digest(b.train.x, b.test.x, b.train.y)


def test_gaussian_written_in_blocks_is_the_one_draw_sample(tmp_path, monkeypatch):
    import numbaconc.synth as synth

    def one_draw(n_train, n_test, d, seed):  # the generator before it wrote in blocks
        rng = np.random.default_rng(seed)
        q, r = np.linalg.qr(rng.standard_normal((d, d)))
        basis = q * np.sign(np.diag(r))
        scale = np.sqrt(synth.parse_spectrum("spike:4", d))
        return [((rng.standard_normal((n, d)) * scale) @ basis.T).astype(np.float32)
                for n in (n_train, n_test)]

    train, test = one_draw(3000, 700, 6, 5)
    whole = synth.make_gaussian(tmp_path / "a.h5", n_train=3000, n_test=700, d=6, spectrum="spike:4",
                                random_state=5)
    monkeypatch.setattr(synth, "SAMPLE_BLOCK_VALUES", 6 * 250)  # 12 + 3 blocks
    blocked = synth.make_gaussian(tmp_path / "b.h5", n_train=3000, n_test=700, d=6, spectrum="spike:4",
                                  random_state=5)
    with open_dataset(whole) as a, open_dataset(blocked) as b:
        assert isinstance(b.train.x, np.memmap)
        np.testing.assert_array_equal(a.train.array(), train)  # one block: bit for bit as before
        np.testing.assert_array_equal(a.test.array(), test)
        np.testing.assert_allclose(b.train.array(), train, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(b.test.array(), test, rtol=1e-6, atol=1e-6)
        assert len(a.checksum) == 64 and a.train.y is None


def _figures(est):
    return dict(figures=est.figures, params=est.params,
                tuning=None if est.tuning is None else est.tuning["table"])


@pytest.mark.parametrize("density_sample", [None, 150])
def test_boxes_measure_with_a_streamed_dense_set_has_the_same_figures(tiny_h5, monkeypatch,
                                                                      density_sample):
    import numbaconc.kmeans as km

    def run():
        with open_dataset(tiny_h5) as ds:
            conc = Concentration(ds, protocol="holdout", seed=1)
            est = conc.boxes(alpha=0.05, epsilon=0.1, t_grid=(3, 6), box="tight", repeats=2,
                             density_sample=density_sample)
            return _figures(est), est.region.arrays

    want, want_arrays = run()
    monkeypatch.setattr(km, "ROWS_SHARE", 0.0)
    monkeypatch.setattr(km, "BOUNDS_SHARE", 0.0)
    monkeypatch.setattr(km, "_STREAM_SHARE", 1e-12)
    got, got_arrays = run()
    assert got == want
    assert want["params"]["density"]["variant"] == ("exact" if density_sample is None else "sample")
    for key, value in want_arrays.items():
        np.testing.assert_array_equal(np.asarray(got_arrays[key]), np.asarray(value))
