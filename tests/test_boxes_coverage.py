"""Box construction and coverage against brute force (tests/reference_kmeans.py)."""

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from numbaconc.boxes_coverage import box_coverage, boxes_from_clusters, face_slack
from numbaconc.errors import NumbaconcError
from reference_kmeans import boxes as ref_boxes
from reference_kmeans import coverage as ref_coverage
from reference_kmeans import coverage_in_domain as ref_coverage_in_domain


def clustered_uint8(rng, n=400, d=6, k=5):
    centers = rng.integers(0, 256, (k, d))
    labels = rng.integers(0, k, n)
    X = np.clip(centers[labels] + rng.integers(-30, 31, (n, d)), 0, 255).astype(np.uint8)
    return X, labels


@pytest.mark.parametrize("shape", ["symmetric", "tight"])
def test_boxes_and_coverage_match_brute_force(shape):
    rng = np.random.default_rng(0)
    X, labels = clustered_uint8(rng)
    c, w = boxes_from_clusters(X, labels, 6, shape=shape, block_rows=150)
    rc, rw = ref_boxes(X, labels, 6, shape=shape)
    np.testing.assert_array_equal(w, rw)
    np.testing.assert_allclose(c, rc, rtol=1e-13)
    assert (w[5] == -1).all()
    Y = rng.integers(0, 256, (3000, 6)).astype(np.uint8)
    for margin in (0.0, 25.5, 51.0):
        got = box_coverage(Y, c, w, margin, block_rows=700)
        want = ref_coverage(Y, c, w, margin)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert got[1].sum() > got[0].sum() or margin == 0


@pytest.mark.parametrize("shape", ["symmetric", "tight"])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_members_inside_own_box_random_float_centres(shape, dtype):
    rng = np.random.default_rng(1)
    X, labels = clustered_uint8(rng, n=500, d=9)
    if dtype == "float32":
        X = (X / 255.0).astype(np.float32) + rng.random(X.shape).astype(np.float32) * 1e-3
    centers = rng.random((5, 9)) * (255 if dtype == "uint8" else 1)  # awkward float centres
    c, w = boxes_from_clusters(X, labels, 5, centers=centers, shape=shape)
    inside, grown = box_coverage(X, c, w, 0.0)
    assert inside.all() and grown.all()
    for j in range(5):  # each member is inside its own box, not just some box
        own = box_coverage(X[labels == j], c[j:j + 1], w[j:j + 1], 0.0)[0]
        assert own.all()


def test_tight_boxes_are_half_integers_for_uint8():
    rng = np.random.default_rng(2)
    X, labels = clustered_uint8(rng)
    c, w = boxes_from_clusters(X, labels, 5, shape="tight")
    np.testing.assert_array_equal(c * 2, np.round(c * 2))
    np.testing.assert_array_equal(c - w, [X[labels == j].min(0) for j in range(5)])
    np.testing.assert_array_equal(c + w, [X[labels == j].max(0) for j in range(5)])


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_points_on_face_and_on_face_plus_margin(dtype):
    c = np.array([[10.0, 20.0]])
    w = np.array([[5.0, 2.0]])
    margin = 3.0
    pts = np.array([
        [15, 22],  # on the corner: inside
        [5, 18],   # opposite corner: inside
        [16, 20],  # just outside, inside grown
        [18, 20],  # exactly on face + margin: grown
        [19, 20],  # beyond: neither
        [10, 25],  # on face + margin in the second coordinate
        [10, 26],
    ], dtype=dtype)
    inside, grown = box_coverage(pts, c, w, margin)
    np.testing.assert_array_equal(inside, [1, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(grown, [1, 1, 1, 1, 0, 1, 0])
    ri, rg = ref_coverage(pts, c, w, margin)
    np.testing.assert_array_equal(inside, ri)
    np.testing.assert_array_equal(grown, rg)


def test_non_integer_margin_on_integer_pixels():
    # tight box [10, 20]: c=15, w=5; margin 25.5 acts like 25 on integer pixels
    X = np.array([[10], [20]], np.uint8)
    c, w = boxes_from_clusters(X, np.array([0, 0]), 1, shape="tight")
    Y = np.arange(256, dtype=np.uint8)[:, None]
    g255 = box_coverage(Y, c, w, 25.5)[1]
    g25 = box_coverage(Y, c, w, 25.0)[1]
    np.testing.assert_array_equal(g255, g25)
    assert np.flatnonzero(g255).min() == 0 and np.flatnonzero(g255).max() == 45


def test_uint8_extremes_and_duplicates():
    X = np.array([[0, 255]] * 4 + [[255, 0]] * 4 + [[0, 0]], np.uint8)
    labels = np.array([0] * 4 + [1] * 4 + [2])
    for shape in ("symmetric", "tight"):
        c, w = boxes_from_clusters(X, labels, 3, shape=shape)
        assert (w[:2] == 0).all()
        inside, grown = box_coverage(X, c, w, 0.0)
        assert inside.all()
        full = box_coverage(np.array([[128, 128]], np.uint8), c, w, 127.5)
        np.testing.assert_array_equal(full, ref_coverage(np.array([[128, 128]]), c, w, 127.5))
    c = np.array([[127.5, 127.5]])
    w = np.array([[127.5, 127.5]])
    Y = np.array([[0, 0], [255, 255], [0, 255]], np.uint8)
    assert box_coverage(Y, c, w, 0.0)[0].all()


def test_empty_box_contains_nothing_even_grown():
    X = np.zeros((5, 3), np.uint8)
    c = np.zeros((2, 3))
    w = np.array([[-1.0] * 3, [-1.0] * 3])
    inside, grown = box_coverage(X, c, w, 100.0)
    assert not inside.any() and not grown.any()


def test_readonly_memmap_and_hdf5(tmp_path):
    rng = np.random.default_rng(3)
    X, labels = clustered_uint8(rng, n=600)
    path = tmp_path / "x.u8"
    X.tofile(path)
    M = np.memmap(path, dtype=np.uint8, mode="r", shape=X.shape)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("x", data=X, chunks=(64, 6), compression="gzip")
    want_c, want_w = boxes_from_clusters(X, labels, 5)
    want = box_coverage(X, want_c, want_w, 25.5)
    with h5py.File(tmp_path / "x.h5", "r") as f:
        for data in (M, f["x"]):
            c, w = boxes_from_clusters(data, labels, 5, block_rows=100)
            np.testing.assert_array_equal(c, want_c)
            np.testing.assert_array_equal(w, want_w)
            got = box_coverage(data, c, w, 25.5, block_rows=128)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])


def test_threads_identical(threads):
    rng = np.random.default_rng(4)
    X, labels = clustered_uint8(rng, n=20000)
    out = []
    for n in (1, 2):
        threads(n)
        c, w = boxes_from_clusters(X, labels, 5, block_rows=9000)
        out.append((c, w, *box_coverage(X[::-1].copy(), c, w, 10.0)))
    for a, b in zip(*out):
        assert a.tobytes() == b.tobytes()


@settings(deadline=None, max_examples=40)
@given(
    X=arrays(np.uint8, st.tuples(st.integers(1, 30), st.integers(1, 4)), elements=st.integers(0, 255)),
    k=st.integers(1, 4),
    shape=st.sampled_from(["symmetric", "tight"]),
    margin=st.sampled_from([0.0, 0.5, 1.0, 25.5, 300.0]),
    seed=st.integers(0, 100),
)
def test_property_matches_brute_force(X, k, shape, margin, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(-1, k, X.shape[0])
    c, w = boxes_from_clusters(X, labels, k, shape=shape)
    rc, rw = ref_boxes(X, labels, k, shape=shape)
    np.testing.assert_array_equal(w, rw)
    np.testing.assert_allclose(c, rc, rtol=1e-13)
    Y = rng.integers(0, 256, (50, X.shape[1])).astype(np.uint8)
    Y = np.vstack([Y, X])
    got = box_coverage(Y, c, w, margin)
    want = ref_coverage(Y, c, w, margin)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert got[0][len(Y) - len(X):][labels >= 0].all()


def test_real_mnist_subset(shared_data):
    from numbaconc.datasets import open_dataset
    from numbaconc.kmeans import kmeans

    split = open_dataset("mnist").train
    X = np.ascontiguousarray(split.x[:2000])
    res = kmeans(X, 5, metric="l1", random_state=0, max_iter=5)
    c, w = boxes_from_clusters(X, res.labels, 5, centers=res.centers)
    Y = np.ascontiguousarray(open_dataset("mnist").test.x[:300])
    got = box_coverage(Y, c, w, 0.1 * 255)
    want = ref_coverage(Y, c, w, 0.1 * 255)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert box_coverage(X, c, w, 0.0)[0].all()


@pytest.mark.parametrize("call, match", [
    (lambda X: box_coverage(X, np.zeros((2, 3)), np.zeros((3, 3)), 1.0), "half_widths"),
    (lambda X: box_coverage(X, np.zeros((2, 4)), np.zeros((2, 3)), 1.0), "shape"),
    (lambda X: box_coverage(X, np.zeros((2, 3)), np.zeros((2, 3)), -1.0), "margin"),
    (lambda X: box_coverage(X, np.full((2, 3), np.nan), np.zeros((2, 3)), 1.0), "NaN"),
    (lambda X: box_coverage(X, np.zeros((2, 3)), np.zeros((2, 3)), np.nan), "margin"),
    (lambda X: boxes_from_clusters(X, np.zeros(9, int), 2), "labels"),
    (lambda X: boxes_from_clusters(X, np.full(10, 2), 2), "labels"),
    (lambda X: boxes_from_clusters(X, np.zeros(10, int), 2, shape="round"), "shape"),
    (lambda X: boxes_from_clusters(X, np.zeros(10, int), 2, centers=np.zeros((2, 2))), "centers"),
    (lambda X: box_coverage(np.full((10, 3), np.nan, np.float32), np.zeros((2, 3)), np.zeros((2, 3)), 1.0), "NaN"),
])
def test_bad_input(call, match):
    with pytest.raises(NumbaconcError, match=match):
        call(np.zeros((10, 3), np.uint8))


@pytest.mark.parametrize("shape", ["symmetric", "tight"])
@pytest.mark.parametrize("margin", [0.0, 8.5, 25.5, 76.5])
def test_domain_count_matches_its_definition(shape, margin):
    # boxes near the pixel range's ends, so many grown faces leave [0, 255];
    # half-integer margins keep every face off the integer pixels (no ties
    # between the strict kernel test and the definition)
    rng = np.random.default_rng(5)
    X, labels = clustered_uint8(rng, n=600, d=7, k=6)
    X[: 200] = np.clip(X[:200].astype(int) // 8, 0, 255).astype(np.uint8)
    X[200: 400] = 255 - X[200:400] // 8
    c, w = boxes_from_clusters(X, labels, 6, shape=shape)
    Y = np.concatenate([rng.integers(0, 256, (1500, 7)), rng.integers(0, 40, (1500, 7)),
                        rng.integers(215, 256, (1500, 7))]).astype(np.uint8)
    inside, grown = box_coverage(Y, c, w, margin, domain=(0, 255), block_rows=1000)
    plain_inside, plain_grown = box_coverage(Y, c, w, margin)
    np.testing.assert_array_equal(grown, plain_grown)  # E does not depend on the domain
    np.testing.assert_array_equal(inside, ref_coverage_in_domain(Y, c, w, margin, 0.0, 255.0))
    assert (inside >= plain_inside).all()  # never counts more of E_eps than the 2019 count
    if margin > 0:
        assert inside.sum() > plain_inside.sum()


def test_domain_face_exactly_on_the_edge_is_kept():
    # grown lower face exactly at 0: freeing it would be valid but we never
    # decide an exact tie in the optimistic direction
    c = np.array([[20.0, 100.0]])
    w = np.array([[12.0, 10.0]])
    below, above = face_slack(c, w, 8.0, (0.0, 255.0))
    assert below[0, 0] == 12.0 and above[0, 0] == 12.0
    below, above = face_slack(c, w, 8.5, (0.0, 255.0))
    assert below[0, 0] == np.inf and above[0, 0] == 12.0 and (below[0, 1], above[0, 1]) == (10.0, 10.0)
    Y = np.array([[0, 100], [7, 100], [8, 100], [33, 100]], np.uint8)
    inside, _ = box_coverage(Y, c, w, 8.5, domain=(0, 255))
    np.testing.assert_array_equal(inside, [True, True, True, False])
    inside, _ = box_coverage(Y, c, w, 8.0, domain=(0, 255))
    np.testing.assert_array_equal(inside, [False, False, True, False])


def test_domain_rejects_rows_outside_it():
    c, w = np.zeros((1, 2)), np.ones((1, 2))
    X = np.array([[0.5, 0.2], [1.5, 0.0]], np.float32)
    with pytest.raises(NumbaconcError, match="outside the domain"):
        box_coverage(X, c, w, 0.1, domain=(0.0, 1.0))
    with pytest.raises(NumbaconcError, match="domain"):
        box_coverage(X, c, w, 0.1, domain=(1.0, 0.0))


# ------------------------------- the boxes over a streamed dense set (issue 12)


def _boxes_as_before(X, scores, n_clusters, q, seed, shape):
    """The path before issue 12: the dense set copied, then k-means and boxes on the copy."""
    import math

    from numbaconc.boxes import dense_order
    from numbaconc.kmeans import kmeans

    dense = np.sort(dense_order(scores)[: int(math.floor(q * len(X)))])
    D = np.ascontiguousarray(X[dense])
    km = kmeans(D, n_clusters, metric="l1", init="random", max_iter=30, random_state=seed)
    c, w = boxes_from_clusters(D, km.labels, n_clusters, centers=km.centers, shape=shape)
    return c, w, km


@pytest.mark.parametrize("shape", ["symmetric", "tight"])
@pytest.mark.parametrize("distinct", [None, 6])
def test_boxes_model_over_a_streamed_dense_set(tmp_path, monkeypatch, shape, distinct):
    import numbaconc.kmeans as km
    from numbaconc.boxes import BoxesModel
    from numbaconc.datasets import RowView
    from numbaconc.regions import box_region

    rng = np.random.default_rng(8)
    X, _ = clustered_uint8(rng, n=1500, d=6, k=7)
    X[10:60] = X[9]          # duplicates
    X[61], X[62] = 0, 255
    if distinct:             # few distinct rows: duplicate initial centres, empty clusters
        X = X[rng.integers(0, distinct, len(X))]
    scores = rng.integers(0, 40, len(X)).astype(np.float64)  # ties in the density order
    rows = np.sort(rng.choice(len(X), 1200, replace=False))  # a holdout-like fitting subset
    Xfit = X[rows]
    path = tmp_path / "x.u8"
    X.tofile(path)
    M = np.memmap(path, dtype=np.uint8, mode="r", shape=X.shape)
    Y = rng.integers(0, 256, (2000, 6)).astype(np.uint8)
    Y[:500] = X[rng.integers(0, len(X), 500)]
    keys = [(8, 0.55, 0), (8, 0.55, 1), (3, 0.9, 2)]
    want = {key: _boxes_as_before(Xfit, scores[: len(Xfit)], *key, shape) for key in keys}
    if distinct:  # an empty cluster along the way
        assert any(h["n_empty"] for _, _, ref in want.values() for h in ref.history)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        H = f.create_dataset("x", data=X, chunks=(50, 6), compression="gzip")
        for stream in (False, True):
            if stream:  # D read in blocks of one chunk, bounds in a scratch memmap
                monkeypatch.setattr(km, "ROWS_SHARE", 0.0)
                monkeypatch.setattr(km, "BOUNDS_SHARE", 0.0)
                monkeypatch.setattr(km, "_STREAM_SHARE", 1e-12)
            for src in (Xfit, RowView(M, rows), RowView(H, rows)):
                model = BoxesModel(src, scores[: len(Xfit)], 1 / 255, shape=shape)
                for key, (c, w, ref) in want.items():
                    got_c, got_w, got = model.boxes(*key)
                    assert got_c.tobytes() == c.tobytes() and got_w.tobytes() == w.tobytes()
                    assert got.labels is None  # the model keeps no per-row labels
                    assert got.centers.tobytes() == ref.centers.tobytes()
                    assert (got.n_iter, got.inertia) == (ref.n_iter, ref.inertia)
                    region = model.region(*key, epsilon=25.0, domain=(0.0, 255.0))
                    before = box_region(c, w, epsilon=25.0, scale=1 / 255, shape=shape,
                                        domain=(0.0, 255.0))
                    assert region.evaluate(Y) == before.evaluate(Y)
