"""The label-aware lower bound against slow references (cdist, networkx, HiGHS)."""

import json

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from numbaconc.optimal_loss import (conflict_edges, jointly_attackable, lower_bound, solve_degree2,
                             storage_thresholds)
from numbaconc.errors import NumbaconcError

from reference_bound import (conflict_pairs, double_cover_matching, enclosing_radius, lp_value,
                              matching_size, triangles)

SCALE = 1.0 / 255.0


def _edge_set(edges, k):
    return edges.pairs(k)


def _tie_data(seed=0, n=160, d=24, n_classes=3):
    """uint8 rows with duplicates of different labels, rows at 0 and 255, and
    pairs at exactly the grid's 2 eps (l2: 3-4-5 steps; linf: a single step)."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (n, d)).astype(np.uint8)
    y = rng.integers(0, n_classes, n)
    X[1] = X[0]
    y[1] = (y[0] + 1) % n_classes          # duplicate, other label: an edge at eps 0
    X[2] = 0
    X[3] = 255
    y[2], y[3] = 0, 1
    base = rng.integers(60, 150, d).astype(np.int64)  # + 14 + 80 stays <= 255
    for t, (a, b) in enumerate([(3, 4), (30, 40), (60, 80)]):
        i, j = 4 + 2 * t, 5 + 2 * t
        X[i] = base + 7 * t
        X[j] = X[i]
        X[j, 0] += a
        X[j, 1] += b                        # l2 distance 5, 50, 100 levels exactly
        y[i], y[j] = 0, 2
    return X, y


# integer levels m = 2 eps / scale, so the exact reference is distance <= m
LEVELS = np.array([0, 5, 40, 50, 100, 255, 900, 1500])


@pytest.mark.parametrize("metric", ["l2", "linf"])
@pytest.mark.parametrize("block", [None, 37])
def test_range_search_equals_cdist_uint8(metric, block):
    X, y = _tie_data()
    eps = LEVELS * SCALE / 2.0
    edges = conflict_edges(X, y, metric=metric, epsilons=eps, scale=SCALE, block=block)
    for k, m in enumerate(np.unique(LEVELS)):
        limit = float(m) ** 2 if metric == "l2" else float(m)
        ref = conflict_pairs(X.astype(np.int64), y, metric, limit)
        np.testing.assert_array_equal(_edge_set(edges, k), ref)
    assert edges.count(0) >= 1  # the duplicate pair of different labels
    # the 3-4-5 pairs sit exactly on a threshold and are included at it
    k50 = int(np.flatnonzero(np.unique(LEVELS) == 50)[0])
    pairs = {tuple(p) for p in _edge_set(edges, k50)}
    if metric == "l2":
        assert (6, 7) in pairs and (4, 5) in pairs


def test_thresholds_reach_decimal_levels():
    # 2 x 0.3 x 255 is 152.99999999999997 in float64: still 153 levels
    assert storage_thresholds([0.3], metric="linf", scale=SCALE, dtype=np.uint8)[0] == 153
    assert storage_thresholds([2.0], metric="l2", scale=SCALE, dtype=np.uint8)[0] == 1020 ** 2
    assert storage_thresholds([8 / 255], metric="linf", scale=SCALE, dtype=np.uint8)[0] == 16
    assert storage_thresholds([0.5], metric="l2", scale=1.0, dtype=np.float32)[0] == 1.0


@pytest.mark.parametrize("metric", ["l2", "linf"])
def test_range_search_equals_cdist_float32(metric):
    rng = np.random.default_rng(3)
    X = rng.random((200, 70)).astype(np.float32)
    y = rng.integers(0, 4, 200)
    X[1] = X[0]
    y[1] = (y[0] + 1) % 4
    eps = [0.0, 0.8, 1.3] if metric == "l2" else [0.0, 0.4, 0.45]
    edges = conflict_edges(X, y, metric=metric, epsilons=eps, scale=1.0, block=64)
    for k, e in enumerate(eps):
        limit = (2 * e) ** 2 if metric == "l2" else 2 * e
        np.testing.assert_array_equal(_edge_set(edges, k), conflict_pairs(X, y, metric, limit))


def test_range_search_memmap_and_chunked_hdf5(tmp_path):
    X, y = _tie_data(seed=5)
    path = tmp_path / "x.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    h5 = tmp_path / "x.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("x", data=X, chunks=(16, X.shape[1]), compression="gzip")
    eps = LEVELS * SCALE / 2.0
    ref = conflict_edges(X, y, metric="linf", epsilons=eps, scale=SCALE)
    got = conflict_edges(mm, y, metric="linf", epsilons=eps, scale=SCALE)
    with h5py.File(h5, "r") as f:
        chunked = conflict_edges(f["x"], y, metric="linf", epsilons=eps, scale=SCALE, block=50)
    for k in range(len(np.unique(LEVELS))):
        np.testing.assert_array_equal(got.pairs(k), ref.pairs(k))
        np.testing.assert_array_equal(chunked.pairs(k), ref.pairs(k))


@pytest.mark.parametrize("metric", ["l2", "linf"])
def test_one_and_two_threads_identical(metric, threads):
    rng = np.random.default_rng(7)
    X = rng.integers(0, 256, (700, 50)).astype(np.uint8)
    y = rng.integers(0, 5, 700)
    eps = [0.5, 0.8, 1.0] if metric == "l2" else [0.45, 0.48, 0.5]
    out = []
    for t in (1, 2):
        threads(t)
        e = conflict_edges(X, y, metric=metric, epsilons=eps, scale=SCALE, block=128)
        out.append((e.u.copy(), e.v.copy(), e.bucket.copy()))
    assert len(out[0][0]) > 0
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


def _random_graph_data(seed, n=60, n_classes=3):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (n, 12)).astype(np.uint8)
    y = rng.integers(0, n_classes, n)
    return X, y


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_classes", [2, 4])
def test_degree2_equals_matchings_and_lp(seed, n_classes):
    X, y = _random_graph_data(seed, n_classes=n_classes)
    eps = [0.4, 0.6, 0.7, 0.8]
    result = lower_bound(X, y, metric="l2", epsilons=eps, scale=SCALE)
    edges = conflict_edges(X, y, metric="l2", epsilons=eps, scale=SCALE)
    n = len(y)
    for k, row in enumerate(result.rows):
        pairs = edges.pairs(k)
        assert row.edges == len(pairs)
        dc = double_cover_matching(n, pairs)
        assert row.double_cover_matching == dc
        assert row.lower_bound == pytest.approx(dc / (2 * n))
        # the degree-2 LP by HiGHS: sum q = n - matching_double_cover / 2
        assert lp_value(n, pairs) == pytest.approx(n - dc / 2)
        if n_classes == 2:
            assert row.matching == matching_size(n, pairs)
            assert row.lower_bound == pytest.approx(row.matching / n)
            # the certificate is then a maximum matching of the graph itself
            cert = result.certificates[k]
            assert np.all(cert["weights"] == 1.0) and len(cert["pairs"]) == row.matching
            assert len(np.unique(cert["pairs"])) == 2 * row.matching
        _check_degree2_certificate(result.certificates[k], pairs, n)


def _check_degree2_certificate(cert, pairs, n):
    edge_set = {tuple(p) for p in pairs.tolist()}
    load = np.zeros(n)
    for (u, v), w in zip(cert["pairs"].tolist(), cert["weights"]):
        assert (min(u, v), max(u, v)) in edge_set
        load[u] += w
        load[v] += w
    assert np.all(load <= 1.0 + 1e-12)
    q = cert["q"]
    assert np.all((q >= 0) & (q <= 1))
    if len(pairs):
        assert np.all(q[pairs[:, 0]] + q[pairs[:, 1]] <= 1.0 + 1e-12)
    assert q.sum() == pytest.approx(n - cert["weights"].sum())
    assert cert["lower_bound"] == pytest.approx(cert["weights"].sum() / n)


def test_degree2_no_edges_is_zero():
    X = np.array([[0, 0], [255, 255], [0, 255]], dtype=np.uint8)
    res = lower_bound(X, np.array([0, 1, 2]), metric="linf", epsilons=[0.1], scale=SCALE)
    assert res.rows[0].edges == 0 and res.rows[0].lower_bound == 0.0


@pytest.mark.parametrize("metric", ["l2", "linf"])
@pytest.mark.parametrize("seed", range(3))
def test_degree3_lp(metric, seed):
    X, y = _random_graph_data(seed, n=45, n_classes=4)
    eps = [0.6, 0.75] if metric == "l2" else [0.42, 0.46]
    r2 = lower_bound(X, y, metric=metric, epsilons=eps, scale=SCALE, degree=2)
    r3 = lower_bound(X, y, metric=metric, epsilons=eps, scale=SCALE, degree=3)
    edges = conflict_edges(X, y, metric=metric, epsilons=eps, scale=SCALE)
    n = len(y)
    for k, (a, b) in enumerate(zip(r2.rows, r3.rows)):
        pairs = edges.pairs(k)
        tri = triangles(n, pairs)
        if metric == "l2":
            keep = [enclosing_radius(*X[t].astype(np.float64)) <= eps[k] / SCALE * (1 + 1e-9)
                    for t in tri]
            tri = tri[np.array(keep, dtype=bool)] if len(tri) else tri
        got = r3.certificates[k]["triangles"]
        np.testing.assert_array_equal(got, tri)
        assert b.triangles == len(tri)
        assert b.lower_bound >= a.lower_bound - 1e-9
        value = lp_value(n, [tuple(p) for p in pairs] + [tuple(t) for t in tri])
        assert b.lower_bound == pytest.approx(1 - value / n, abs=1e-7)
        # the dual certificate: feasible and of the primal's value
        cert = r3.certificates[k]
        cover = cert["upper_dual"].copy()
        np.add.at(cover, cert["pairs"].ravel(), np.repeat(cert["edge_dual"], 2))
        np.add.at(cover, cert["triangles"].ravel(), np.repeat(cert["triangle_dual"], 3))
        assert np.all(cover >= 1 - 1e-7)
        dual_value = cert["edge_dual"].sum() + cert["triangle_dual"].sum() + cert["upper_dual"].sum()
        assert dual_value == pytest.approx(cert["q"].sum(), abs=1e-6)


def test_jointly_attackable_l2():
    # equilateral triangle of side s: R = s / sqrt(3); obtuse: the longest side
    s2 = 3.0
    assert jointly_attackable(np.array([[s2, s2, s2]]), metric="l2", r2=4.0)[0]       # R = 1
    assert not jointly_attackable(np.array([[s2, s2, s2]]), metric="l2", r2=3.99)[0]
    assert jointly_attackable(np.array([[1.0, 1.0, 4.0]]), metric="l2", r2=4.0)[0]    # degenerate
    assert jointly_attackable(np.array([[s2, s2, s2]]), metric="linf", r2=0.0)[0]


def test_mnist_two_classes_real(shared_data):
    from numbaconc.datasets import read_idx

    images = read_idx(shared_data / "mnist" / "train-images-idx3-ubyte.gz", 2051)
    labels = read_idx(shared_data / "mnist" / "train-labels-idx1-ubyte.gz", 2049).astype(np.int64)
    first = np.flatnonzero(np.isin(labels, [3, 7]))[:300]
    X = images[first].reshape(len(first), -1)
    y = labels[first]
    eps = [2.0, 2.5, 3.0, 3.5]
    for metric, grid in (("l2", eps), ("linf", [0.3, 0.45, 0.5])):
        res = lower_bound(X, y, metric=metric, epsilons=grid, scale=SCALE)
        edges = conflict_edges(X, y, metric=metric, epsilons=grid, scale=SCALE)
        for k, (e, row) in enumerate(zip(grid, res.rows)):
            m = round(2 * e * 255)
            limit = float(m) ** 2 if metric == "l2" else float(m)
            ref = conflict_pairs(X.astype(np.int64), y, metric, limit)
            np.testing.assert_array_equal(edges.pairs(k), ref)
            assert row.matching == matching_size(len(y), ref)
            assert row.lower_bound == pytest.approx(row.matching / len(y))
    assert res.rows[-1].edges > 0


def test_classes_subset_and_errors():
    X, y = _random_graph_data(0, n=80, n_classes=4)
    full = lower_bound(X, y, metric="l2", epsilons=[0.7], scale=SCALE, classes=[1, 3])
    keep = np.isin(y, [1, 3])
    sub = lower_bound(X[keep], y[keep], metric="l2", epsilons=[0.7], scale=SCALE)
    assert full.rows[0].lower_bound == sub.rows[0].lower_bound
    assert full.n == int(keep.sum())
    assert np.all(np.isin(y[full.certificates[0]["pairs"].ravel()], [1, 3]))
    with pytest.raises(NumbaconcError, match="labels are required"):
        lower_bound(X, None, metric="l2", epsilons=[0.1], scale=SCALE)
    with pytest.raises(NumbaconcError, match="no points"):
        lower_bound(X, y, metric="l2", epsilons=[0.1], scale=SCALE, classes=[1, 9])
    with pytest.raises(NumbaconcError, match="l2 and linf"):
        lower_bound(X, y, metric="l1", epsilons=[0.1], scale=SCALE)
    with pytest.raises(NumbaconcError, match="epsilon"):
        lower_bound(X, y, metric="l2", epsilons=[-0.1], scale=SCALE)


def test_solve_degree2_cover_is_minimum():
    # a 5-cycle: fractional matching 5/2 (double cover matching 5), q = 1/2 everywhere
    pairs = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [0, 4]])
    indptr = np.zeros(6, dtype=np.int64)
    nbrs = [sorted(set(pairs[pairs[:, 0] == i, 1]) | set(pairs[pairs[:, 1] == i, 0])) for i in range(5)]
    indptr[1:] = np.cumsum([len(a) for a in nbrs])
    indices = np.concatenate(nbrs).astype(np.int32)
    sol = solve_degree2(indptr, indices, 5)
    assert sol.double_cover_matching == 5
    np.testing.assert_allclose(sol.q, 0.5)
    assert sol.loss == pytest.approx(0.5)


# ---------------------------------------------------------------------- CLI


def test_cli_bound_json_and_certificate(tiny_h5, tmp_path):
    from numbaconc_cli.main import app as installed

    out = tmp_path / "sub" / "bound.json"
    cert = tmp_path / "cert.h5"
    runner = CliRunner()
    res = runner.invoke(installed, ["bound", str(tiny_h5), "--metric", "l2", "--epsilon",
                                    "0.5,1/255,1.0", "--json", str(out), "--certificate", str(cert)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())["rows"]
    assert [r["epsilon"] for r in rows] == sorted([0.5, 1 / 255, 1.0])
    for r in rows:
        assert {"epsilon", "lower_bound", "n", "edges", "degree"} <= set(r)
        assert r["n"] == 600 and r["degree"] == 2 and 0.0 <= r["lower_bound"] <= 0.5
    with h5py.File(cert, "r") as f:
        assert f.attrs["n"] == 600
        w = f["eps2/weights"][...]
        assert w.sum() / 600 == pytest.approx(rows[2]["lower_bound"])
    res = runner.invoke(installed, ["bound", str(tiny_h5), "--metric", "linf", "--epsilon", "0.2",
                                    "--classes", "0,1", "--degree", "3", "--split", "test"])
    assert res.exit_code == 0, res.output
    assert "lower bound" in res.output


def test_cli_bound_errors(tmp_path):
    from numbaconc.datasets import write_dataset
    from numbaconc_cli.main import app

    x = np.zeros((10, 4), dtype=np.uint8)
    path = tmp_path / "nolabels.h5"
    write_dataset(path, name="nolabels", train_x=x, test_x=x, checksum="nl", source="tests")
    runner = CliRunner()
    res = runner.invoke(app, ["bound", str(path), "--epsilon", "0.1"])
    assert res.exit_code == 1
    assert "no labels" in res.output and "Traceback" not in res.output
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = runner.invoke(app, ["bound", str(path), "--epsilon", "0.1", "--json", str(blocker / "a.json")])
    assert res.exit_code == 1 and "cannot write" in res.output


@pytest.mark.parametrize("seed", range(3))
def test_hopcroft_karp_equals_scipy_and_warm_start(seed):
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    X, y = _random_graph_data(seed, n=120, n_classes=5)
    eps = [0.55, 0.65, 0.75]
    edges = conflict_edges(X, y, metric="l2", epsilons=eps, scale=SCALE)
    warm = (np.full(120, -1, dtype=np.int64), np.full(120, -1, dtype=np.int64))
    for k in range(len(eps)):
        indptr, indices = edges.csr(k)
        graph = csr_matrix((np.ones(len(indices)), indices, indptr), shape=(120, 120))
        ref = int(np.count_nonzero(maximum_bipartite_matching(graph, perm_type="column") >= 0))
        cold = solve_degree2(indptr, indices, 120)
        hot = solve_degree2(indptr, indices, 120, warm)
        assert cold.double_cover_matching == hot.double_cover_matching == ref
        rows, cols = warm
        matched = np.flatnonzero(rows >= 0)
        assert np.all(cols[rows[matched]] == matched)  # a valid matching, kept for the next eps


def test_cli_measure_labels_prints_the_bound(tiny_h5, tmp_path):
    from numbaconc.datasets import open_dataset
    from numbaconc_cli.main import app

    js = tmp_path / "m.json"
    res = CliRunner().invoke(app, ["measure", str(tiny_h5), "--metric", "l2", "--epsilon", "1.0",
                                   "--alpha", "0.05", "--method", "pca", "--labels", "--json", str(js)])
    assert res.exit_code == 0, res.output
    row = json.loads(js.read_text())["lower_bound"]
    with open_dataset(tiny_h5) as ds:
        ref = lower_bound(ds.test.x, ds.test.y, metric="l2", epsilons=[1.0], scale=ds.scale)
    assert row["lower_bound"] == ref.rows[0].lower_bound and row["split"] == "test"
    assert "label-aware lower bound" in res.output and "error-region definition" in res.output


def test_csr_equals_scipy_adjacency():
    from scipy.sparse import coo_matrix

    X, y = _random_graph_data(2, n=90, n_classes=3)
    edges = conflict_edges(X, y, metric="linf", epsilons=[0.4, 0.45], scale=SCALE)
    for k in range(2):
        p = edges.pairs(k)
        A = coo_matrix((np.ones(2 * len(p)), (np.r_[p[:, 0], p[:, 1]], np.r_[p[:, 1], p[:, 0]])),
                       shape=(90, 90)).tocsr()
        A.sort_indices()
        indptr, indices = edges.csr(k)
        np.testing.assert_array_equal(indptr, A.indptr)
        np.testing.assert_array_equal(indices, A.indices)
        ip2, ix2 = edges.csr(k, sort_rows=False)
        np.testing.assert_array_equal(ip2, indptr)
        for r in range(90):
            assert sorted(ix2[ip2[r]:ip2[r + 1]]) == list(indices[indptr[r]:indptr[r + 1]])


@settings(deadline=None, max_examples=25)
@given(n=st.integers(2, 40), d=st.integers(1, 70), n_classes=st.integers(2, 4),
       levels=st.lists(st.integers(0, 600), min_size=1, max_size=4),
       block=st.sampled_from([None, 3, 16]), seed=st.integers(0, 2 ** 16),
       metric=st.sampled_from(["l2", "linf"]))
def test_range_search_property(n, d, n_classes, levels, block, seed, metric):
    rng = np.random.default_rng(seed)
    # few distinct values: many exact ties and duplicates
    X = rng.choice(np.array([0, 1, 127, 128, 254, 255], dtype=np.uint8), size=(n, d))
    y = rng.integers(0, n_classes, n)
    eps = np.array(levels) * SCALE / 2.0
    edges = conflict_edges(X, y, metric=metric, epsilons=eps, scale=SCALE, block=block)
    for k, m in enumerate(np.unique(levels)):
        limit = float(m) ** 2 if metric == "l2" else float(m)
        np.testing.assert_array_equal(edges.pairs(k), conflict_pairs(X.astype(np.int64), y, metric, limit))


@pytest.mark.parametrize("metric,eps", [("linf", [0.35, 0.42]), ("l2", [1.0, 1.7])])
@pytest.mark.parametrize("degree", [2, 3])
def test_certificate_verifies_against_the_data(tiny_h5, tmp_path, degree, metric, eps):
    from numbaconc.optimal_loss import dataset_lower_bound, save_certificate, verify_certificate
    from numbaconc.datasets import open_dataset

    path = tmp_path / "c.h5"
    with open_dataset(tiny_h5) as ds:
        res = dataset_lower_bound(ds, metric=metric, epsilons=eps, split="test",
                                  degree=degree, classes=[0, 1, 2])
        save_certificate(res, path)
        checks = verify_certificate(path, ds)
        assert [c["epsilon"] for c in checks] == eps
        assert res.rows[0].edges == 0 and res.rows[0].lower_bound == 0.0  # verified as 0 too
        assert res.rows[1].edges > 0 and (degree == 2 or res.rows[1].triangles > 0)
        for c, row in zip(checks, res.rows):
            assert c["verified"] == pytest.approx(row.lower_bound, abs=1e-6)
        # a forged pair (not a conflict) makes the check fail
        with h5py.File(path, "r+") as f:
            g = f["eps1"]
            pairs = g["pairs"][...]
            far = np.flatnonzero(ds.test.y != ds.test.y[pairs[0, 0]])
            diff = ds.test.x[far].astype(int) - ds.test.x[pairs[0, 0]].astype(int)
            gap = np.abs(diff).max(axis=1) if metric == "linf" else (diff * diff).sum(axis=1)
            pairs[0, 1] = far[np.argmax(gap)]
            del g["pairs"]
            g.create_dataset("pairs", data=pairs)
        assert verify_certificate(path, ds)[1]["verified"] is None


def test_blocks_follow_the_memory_budget():
    from numbaconc import budget
    from numbaconc.optimal_loss import block_rows

    rng = np.random.default_rng(11)
    X = rng.integers(100, 156, (3000, 20)).astype(np.uint8)
    y = rng.integers(0, 3, 3000)
    ref = conflict_edges(X, y, metric="l2", epsilons=[0.1, 0.2], scale=SCALE)
    with budget.budget("64M"):
        assert block_rows(3000, 20) < 400
        small = conflict_edges(X, y, metric="l2", epsilons=[0.1, 0.2], scale=SCALE)
    assert ref.count(1) > 0
    for k in range(2):
        np.testing.assert_array_equal(small.pairs(k), ref.pairs(k))
