"""The fixed-pass half-space search (numbaconc.halfspace_passes) against the
batched search: the same thresholds, counts, chosen region and figures, bit
for bit, on ties, uint8 0 / 255, crowded bins, several row blocks, memmapped,
chunked HDF5 and row-view inputs, and 1 or 2 threads."""

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numbaconc import budget, stages
from numbaconc.errors import NumbaconcError
from numbaconc.halfspace import fit_halfspace_curve
from numbaconc.halfspace_passes import _keys, _values, search_in_passes
from numbaconc.kernels import halfspace_passes as K


def _pixels(n, d, seed=0):
    """uint8 rows with 0 / 255 extremes, duplicate rows and a coarse feature (ties)."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(n, d), dtype=np.uint8)
    X[rng.random((n, d)) < 0.4] = 0
    X[rng.random((n, d)) < 0.1] = 255
    X[: n // 10] = X[n // 10: 2 * (n // 10)]
    X[:, 0] = (X[:, 0] // 64) * 64
    return X


@pytest.fixture
def small_budget(monkeypatch):
    """A budget below budget.MINIMUM (rows_for and fits read it): small row
    blocks and buffers on small data."""
    def set_budget(nbytes):
        monkeypatch.setattr(budget, "_budget", int(nbytes))
    return set_budget


def _fits(X, strategy, **kw):
    args = dict(metric="linf", n_components=6, batch=7)
    args.update(kw)
    eps = args.pop("epsilons", [4.0, 40.0])
    alpha = args.pop("alpha", 0.05)
    with stages.recording() as records:
        fits = fit_halfspace_curve(X, alpha, eps, strategy=strategy, **args)
    ran = [r["strategy"] for r in records if r["stage"] == "halfspace_search"]
    assert ran == [strategy]
    return fits, records


def _assert_same(a_fits, b_fits):
    for a, b in zip(a_fits, b_fits):
        assert a.search == b.search  # every candidate's threshold and counts
        assert np.array_equal(a.w, b.w) and a.b == b.b and a.shift == b.shift
        assert (a.component, a.power, a.side, a.selection) == (b.component, b.power, b.side,
                                                               b.selection)
        assert (a.train_risk, a.train_adv_risk, a.select_risk, a.select_adv_risk) == \
               (b.train_risk, b.train_adv_risk, b.select_risk, b.select_adv_risk)


# ------------------------------------------------------------------ keys


def test_keys_order_float32_values_and_invert():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.standard_normal(500).astype(np.float32) * 1e3,
                        np.array([0.0, -0.0, 1e-45, -1e-45, 3.4e38, -3.4e38, np.inf, -np.inf],
                                 dtype=np.float32)])
    keys = _keys(v)
    order = np.argsort(keys, kind="stable")
    assert np.all(np.diff(v[order].astype(np.float64)) >= 0)
    assert _keys(np.float32([-0.0]))[0] == _keys(np.float32([0.0]))[0]
    nonzero = v != 0
    assert np.array_equal(_values(keys)[nonzero].view(np.uint32), v[nonzero].view(np.uint32))
    bits = v.view(np.uint32)
    for sign in (1.0, -1.0):
        want = _keys((np.float32(sign) * v).astype(np.float32))
        got = [K._key(np.uint32(b), np.float32(sign)) for b in bits]
        assert np.array_equal(np.array(got), want)


# -------------------------------------------- thresholds and counts directly


def _direct(values, k, shifts):
    """search_in_passes on p = the values themselves (X one column, w = +1, -1, 2: exact)."""
    X = np.asarray(values, dtype=np.float32)[:, None]
    Wt = np.array([[1.0], [-1.0], [2.0]], dtype=np.float32)
    sh = np.repeat(np.asarray(shifts, dtype=np.float64)[None, :], 3, axis=0)
    return search_in_passes(X, None, [(0, 2, Wt[:2]), (2, 3, Wt[2:])], sh, k)


def _reference(values, k, shifts):
    p = np.asarray(values, dtype=np.float32)
    rows = [p, -p, np.float32(2) * p]
    out = []
    for row in rows:
        s = np.sort(row.astype(np.float64))
        hi, lo = s[-k], s[k - 1]
        cnt = [(int((s >= hi).sum()), int((s >= hi - e).sum()), int((s <= lo).sum()),
                int((s <= lo + e).sum())) for e in shifts]
        out.append((hi, lo, cnt))
    return out


@settings(deadline=None, max_examples=60)
@given(n=st.integers(1, 150), data=st.data(), ties=st.booleans())
def test_thresholds_and_counts_match_a_sort(n, data, ties):
    k = data.draw(st.integers(1, n))
    vals = st.integers(-3, 3).map(float) if ties else st.floats(-2.0 ** 99, 2.0 ** 99, allow_nan=False,
                                                                 width=32)
    values = data.draw(st.lists(vals, min_size=n, max_size=n))
    shifts = [0.0, 1.0, 1e29]
    b_hi, b_lo, counts, sel = _direct(values, k, shifts)
    assert sel is None
    for r, (hi, lo, cnt) in enumerate(_reference(values, k, shifts)):
        assert (float(b_hi[r]), float(b_lo[r])) == (hi, lo)
        assert counts[r].tolist() == [list(c) for c in cnt]


@pytest.mark.parametrize("case", ["outlier", "ties", "spread"])
def test_crowded_bins_and_several_blocks(case, small_budget):
    """A tiny budget: 1,024-row blocks and 64-entry buffers, so threshold bins
    overflow and are split into key sub-bins (an outlier in the first block
    squeezes the rest into one bin; a tie group larger than the buffer)."""
    rng = np.random.default_rng(3)
    n = 6000
    if case == "outlier":
        values = rng.standard_normal(n)
        values[5] = 1e6  # the first block's range: nearly all values in bin 0
    elif case == "ties":
        values = rng.integers(0, 4, n).astype(np.float64)
    else:
        values = rng.standard_normal(n) * 10
    small_budget(4000)  # 1,024-row blocks, 64-entry buffers, 64 bins, 16 sub-bins
    for k in (1, 60, 3000, n):
        shifts = [0.5, 7.0]
        with stages.recording() as records:
            got = _direct(values, k, shifts)
        passes = [r for r in records if r["stage"] == "halfspace_pass"]
        if case != "spread":  # the refinement ran
            assert sum(r.get("crowded", 0) for r in passes) > 0
        assert len(passes) <= 12
        for r, (hi, lo, cnt) in enumerate(_reference(values, k, shifts)):
            assert (float(got[0][r]), float(got[1][r])) == (hi, lo), (case, k, r)
            assert got[2][r].tolist() == [list(c) for c in cnt]


def test_histogram_kernel_edges():
    """Values outside the first block's range land in the edge bins."""
    P = np.array([[0.0, 1.0, -5.0, 9.0, 0.5]], dtype=np.float32)
    hist = np.zeros((1, 4), dtype=np.int64)
    vmin, vmax = np.full(1, np.inf, np.float32), np.full(1, -np.inf, np.float32)
    K.histogram_block(P, np.array([0.0]), np.array([4.0]), hist, vmin, vmax)
    assert hist.tolist() == [[2, 0, 1, 2]] and (vmin[0], vmax[0]) == (-5.0, 9.0)


# ------------------------------------------- the whole search, both strategies


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("metric", ["linf", "l2"])
def test_passes_equal_batches(dtype, metric, small_budget):
    X = _pixels(2600, 24, seed=1)
    X = X if dtype == np.uint8 else (X.astype(dtype) / 255 + np.linspace(0, 1e-3, 24)).astype(dtype)
    eps = [4.0, 40.0] if dtype == np.uint8 else [0.02, 0.2]
    a, _ = _fits(X, "batches", metric=metric, epsilons=eps)  # batches of 7
    small_budget(120_000)  # several row blocks, small buffers; the batches would be 5
    b, records = _fits(X, "passes", metric=metric, epsilons=eps)
    _assert_same(a, b)
    kinds = [r["kind"] for r in records if r["stage"] == "halfspace_pass"]
    assert kinds[0] == "histogram" and kinds[-1] == "count" and "select" in kinds
    # the passes keep the requested batch at any budget (their GEMM shapes do not
    # shrink with n); the batched search must shrink it to hold its projections
    assert [r["batch"] for r in records if r["stage"] == "halfspace_search"] == [7]
    _, records = _fits(X, "batches", metric=metric, epsilons=eps)
    assert [r["batch"] for r in records if r["stage"] == "halfspace_search"] == [5]


def test_passes_equal_batches_with_a_select_split_and_inputs(tmp_path, small_budget):
    """Memmapped read-only, chunked HDF5 and row views give the batches' result."""
    X = _pixels(3000, 20, seed=2)
    fit_rows, sel_rows = np.flatnonzero(np.arange(3000) % 4 != 0), np.flatnonzero(np.arange(3000) % 4 == 0)
    ref, _ = _fits(X[fit_rows], "batches", X_select=X[sel_rows], alpha=0.02)
    path = tmp_path / "x.bin"
    X[fit_rows].tofile(path)
    mm = np.memmap(path, dtype=np.uint8, mode="r", shape=(len(fit_rows), 20))
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.create_dataset("fit", data=X[fit_rows], chunks=(100, 20), compression="gzip")
        f.create_dataset("sel", data=X[sel_rows], chunks=(64, 20))
    from numbaconc.datasets import RowView

    small_budget(200_000)
    with h5py.File(tmp_path / "c.h5", "r") as f:
        for fit_x, sel_x in ((mm, X[sel_rows]), (f["fit"], f["sel"]),
                             (RowView(f["fit"]), RowView(f["sel"]))):
            got, _ = _fits(fit_x, "passes", X_select=sel_x, alpha=0.02)
            _assert_same(ref, got)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_passes_identical_for_1_and_2_threads(threads, n_threads, small_budget):
    X = _pixels(2200, 16, seed=4)
    threads(1)
    ref, _ = _fits(X, "batches")
    small_budget(100_000)
    threads(n_threads)
    got, _ = _fits(X, "passes")
    _assert_same(ref, got)


def test_auto_picks_passes_only_for_data_beyond_the_budget(small_budget):
    X = _pixels(4000, 16, seed=5)
    with stages.recording() as records:
        fit_halfspace_curve(X, 0.05, [4.0], metric="linf", n_components=6, batch=7)
    assert [r["strategy"] for r in records if r["stage"] == "halfspace_search"] == ["batches"]
    small_budget(200_000)  # batches of 6: 5 passes over 64 KB, a quarter of the budget is 50 KB
    with stages.recording() as records:
        fit_halfspace_curve(X, 0.05, [4.0], metric="linf", n_components=6, batch=7)
    assert [r["strategy"] for r in records if r["stage"] == "halfspace_search"] == ["passes"]


def test_passes_refuse_lu_weights_and_bad_strategy(small_budget):
    X = _pixels(300, 8)
    lu = (np.ones(300, dtype=np.int64), 1)
    with pytest.raises(NumbaconcError, match="label-uncertainty"):
        fit_halfspace_curve(X, 0.05, [4.0], metric="linf", n_components=2, lu=lu,
                            strategy="passes")
    with pytest.raises(NumbaconcError, match="strategy"):
        fit_halfspace_curve(X, 0.05, [4.0], metric="linf", n_components=2, strategy="fast")
    # "auto" with LU weights runs the batches (their thresholds are lu_thresholds')
    small_budget(8_000)
    with stages.recording() as records:
        fit_halfspace_curve(X, 0.05, [4.0], metric="linf", n_components=2, lu=lu, batch=1)
    assert [r["strategy"] for r in records if r["stage"] == "halfspace_search"] == ["batches"]


def test_measure_and_frontier_unchanged(tiny_h5, monkeypatch, small_budget):
    """measure's figures, region and frontier members with the passes forced."""
    import numbaconc.halfspace as hs
    from numbaconc.concentration import measure
    from numbaconc.datasets import open_dataset

    with open_dataset(tiny_h5) as ds:
        monkeypatch.setattr(hs, "_use_passes", lambda *a: False)
        ref = measure(ds, metric="linf", alpha=0.05, epsilon=0.1, method="halfspace", n_components=6)
        small_budget(100_000)
        monkeypatch.setattr(hs, "_use_passes", lambda *a: True)
        got = measure(ds, metric="linf", alpha=0.05, epsilon=0.1, method="halfspace",
                      n_components=6)
    untimed = set(ref) - {"timings", "stages", "budget", "_region"}
    assert set(got) - {"timings", "stages", "budget", "_region"} == untimed
    assert "frontier" in untimed
    for name in untimed:
        assert got[name] == ref[name], name
    assert np.array_equal(got["_region"].arrays["w"], ref["_region"].arrays["w"])
    assert float(got["_region"].arrays["b"]) == float(ref["_region"].arrays["b"])
