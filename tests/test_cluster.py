"""The heavy stages on a dask.distributed LocalCluster (2 worker processes,
1 thread each): results bit-identical to the in-process run (issue 14).

One cluster per module (starting one costs a few seconds); the fault test,
which kills a worker, runs last and waits for the nanny's replacement.
"""

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_tiny_images
from numbaconc import budget, cluster, datasets
from numbaconc.errors import NumbaconcError
from numbaconc.halfspace import fit_halfspace_curve, principal_components
from numbaconc.neighbours import cached_knn, knn
from numbaconc.regions import ball_region, box_region, halfspace_region

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with cluster.dask_settings(), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=":0", env=cluster.worker_env()) as local, \
            distributed.Client(local) as c:
        c.wait_for_workers(2)
        yield c


def _same_lists(a, b):
    assert a.indices.dtype == b.indices.dtype and a.stored.dtype == b.stored.dtype
    assert np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.stored, b.stored)
    assert (a.k, a.metric, a.include_self, a.squared) == (b.k, b.metric, b.include_self, b.squared)


def _images(n, d, seed, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, d), dtype=np.uint8)
    x[:: 7] = x[0]           # duplicates: ties everywhere
    x[1, :] = 0
    x[2, :] = 255
    return x if dtype == np.uint8 else (x / np.float32(255)).astype(np.float32)


def _h5(path, train_x, test_x, *, chunked=False):
    if not chunked:
        return datasets.write_dataset(path, name="c", checksum="cluster-test", source="test",
                                      train_x=train_x, test_x=test_x)
    with h5py.File(path, "w") as f:
        for split, x in (("train", train_x), ("test", test_x)):
            f.create_dataset(f"{split}/x", data=x, chunks=(37, x.shape[1]), compression="gzip")
        f.attrs.update(name="c", checksum="cluster-test-chunked")
    return path


# ---------------------------------------------------------------- the setting


def test_without_a_scheduler_dask_is_never_imported():
    code = ("import sys, numpy as np, numbaconc\n"
            "from numbaconc.neighbours import knn\n"
            "from numbaconc.halfspace import fit_halfspace\n"
            "x = np.random.default_rng(0).integers(0, 256, (200, 16), dtype=np.uint8)\n"
            "knn(x, 5, metric='l1'); fit_halfspace(x, 0.1, 4.0, metric='linf')\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600)


@pytest.mark.parametrize("spec", ["local:0", "local:x", "local", "", "tcp://a b", 42])
def test_bad_scheduler_spec_is_one_clear_error(spec):
    with pytest.raises(NumbaconcError, match="scheduler"):
        cluster.set_scheduler(spec)
    assert cluster.current() is None


def test_clusters_started_here_keep_every_copy_of_scattered_inputs(client):
    """The active memory manager would drop the copies that every worker keeps
    of a scattered input, so that killing one worker could lose the only copy."""
    assert not client.amm.running()
    with cluster.use("local:1") as started:
        assert not started.amm.running()


def test_use_restores_the_previous_setting(client):
    assert cluster.current() is None
    with cluster.use(client) as c:
        assert c is client and cluster.current() is client
        with cluster.use(None):
            assert cluster.current() is None
        assert cluster.current() is client
    assert cluster.current() is None
    assert client.status == "running"  # a Client given by the user is not closed


# ---------------------------------------------------------------- kNN


@pytest.mark.parametrize("metric", ["l1", "l2", "linf"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("include_self", [True, False])
def test_knn_all_pairs_in_memory_identical(client, metric, dtype, include_self):
    x = _images(700, 40, 1, dtype)
    ref = knn(x, 9, metric=metric, include_self=include_self)
    with cluster.use(client):
        got = knn(x, 9, metric=metric, include_self=include_self, block_rows=60)  # 6 tasks
    _same_lists(ref, got)


def test_knn_l2_gemm_path_identical(client):
    x = _images(900, 24, 2)
    ref = knn(x, 520, metric="l2")
    with cluster.use(client):
        got = knn(x, 520, metric="l2")
    _same_lists(ref, got)


@pytest.mark.parametrize("chunked", [False, True])
def test_knn_from_a_file_with_queries_in_memory(client, tmp_path, chunked):
    x = _images(640, 36, 3)
    queries = _images(130, 36, 4)
    path = _h5(tmp_path / "d.h5", x, queries, chunked=chunked)
    with datasets.open_dataset(path) as ds:
        base = ds.train.x
        assert isinstance(base, h5py.Dataset) == chunked
        ref = knn(base, 11, metric="l1", queries=queries)
        with cluster.use(client):
            got = knn(base, 11, metric="l1", queries=queries)
            # a memmap view that starts inside the file (its offset is the parent's)
            view = base[100:600] if not chunked else np.asarray(base[100:600])
            part = knn(view, 6, metric="linf")
    _same_lists(ref, got)
    _same_lists(knn(np.asarray(x[100:600]), 6, metric="linf"), part)


def test_a_file_replaced_at_the_same_path_is_read_anew(client, tmp_path):
    path = tmp_path / "d.h5"
    results = []
    for seed in (21, 22):  # workers keep files open: the second file must not be served from the first
        _h5(path.with_suffix(".new"), _images(300, 16, seed), _images(20, 16, seed)).replace(path)
        with datasets.open_dataset(path) as ds, cluster.use(client):
            results.append((knn(ds.train.x, 5, metric="l1"), np.asarray(ds.train.x)))
    for got, x in results:
        _same_lists(knn(x, 5, metric="l1"), got)


def test_cached_knn_writes_the_same_cache(client, tmp_path, monkeypatch):
    x = _images(600, 30, 5)
    path = _h5(tmp_path / "d.h5", x, _images(50, 30, 6))
    files = {}
    for name, spec in (("local", None), ("dask", client)):
        monkeypatch.setenv("NUMBACONC_CACHE", str(tmp_path / name))
        with datasets.open_dataset(path) as ds, cluster.use(spec):
            result, files[name] = cached_knn(ds, 8, metric="l1")
        assert files[name].name == files["local"].name
    with h5py.File(files["local"]) as a, h5py.File(files["dask"]) as b:
        assert dict(a.attrs) == dict(b.attrs)  # array_digest included
        for key in ("indices", "distances"):
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key][...], b[key][...])


def test_knn_lists_written_into_out_arrays(client):
    x = _images(500, 20, 7)
    ref = knn(x, 5, metric="l2")
    out = (np.zeros((500, 5), np.int32), np.zeros((500, 5), ref.stored.dtype))
    with cluster.use(client):
        got = knn(x, 5, metric="l2", out=out)
    assert got.indices is out[0]
    _same_lists(ref, got)


def test_progress_advances_with_completed_tasks(client):
    x = _images(600, 16, 8)
    seen = []
    with cluster.use(client):
        knn(x, 4, metric="l1", block_rows=50, progress=lambda done, total: seen.append((done, total)))
    assert len(seen) == 6 and seen[-1] == (600, 600)  # 8 tasks asked, whole 50-row blocks: 6 of 100
    assert all(b[0] > a[0] for a, b in zip(seen, seen[1:]))


def test_a_worker_error_reaches_the_client(client):
    x = _images(300, 16, 9, np.float32)
    x[17, 3] = np.nan
    with cluster.use(client), pytest.raises(NumbaconcError, match="NaN"):
        knn(x, 4, metric="l2")


# ---------------------------------------------------------------- half-spaces


def test_principal_components_identical(client):
    x = _images(2100, 50, 10)
    ref = principal_components(x, block_rows=256)  # 9 blocks, 9 tasks per pass
    with cluster.use(client):
        got = principal_components(x, block_rows=256)
    assert np.array_equal(ref[0], got[0]) and np.array_equal(ref[1], got[1])


@pytest.mark.parametrize("metric,gamma", [("linf", None), ("l2", None), ("linf", 0.3)])
def test_halfspace_search_identical(client, tmp_path, metric, gamma):
    from numbaconc.lu import lu_threshold, lu_weights

    x = _images(1500, 30, 11)
    path = _h5(tmp_path / "d.h5", x, _images(400, 30, 12))
    with datasets.open_dataset(path) as ds:
        X = ds.train.view(np.flatnonzero(np.arange(1500) % 5 != 0))
        X_select = ds.train.view(np.flatnonzero(np.arange(1500) % 5 == 0))
        # gamma: the label-uncertainty thresholds (numbaconc.lu) through the cluster units
        lu = None if gamma is None else (
            lu_weights(np.random.default_rng(5).random(len(X)) * 0.6, len(X)), lu_threshold(gamma))
        args = dict(metric=metric, n_components=12, X_select=X_select, batch=16, lu=lu)
        ref = fit_halfspace_curve(X, 0.05, [2.0, 8.0], **args)
        with cluster.use(client):
            got = fit_halfspace_curve(X, 0.05, [2.0, 8.0], **args)
    for a, b in zip(ref, got):
        assert a.search == b.search
        assert np.array_equal(a.w, b.w) and a.b == b.b
        assert (a.train_risk, a.train_adv_risk, a.select_risk, a.select_adv_risk) == \
               (b.train_risk, b.train_adv_risk, b.select_risk, b.select_adv_risk)


def test_halfspace_search_is_the_same_for_1_and_2_threads(threads):
    x = _images(1200, 40, 13, np.float32)
    threads(1)
    one = fit_halfspace_curve(x, 0.05, [0.05], metric="linf", n_components=8)[0]
    threads(2)
    two = fit_halfspace_curve(x, 0.05, [0.05], metric="linf", n_components=8)[0]
    assert one.search == two.search and one.b == two.b


# ---------------------------------------------------------------- balls


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_balls_fit_identical(client, dtype, monkeypatch):
    from numbaconc import balls

    x, _ = make_tiny_images(800, seed=21)
    if dtype == np.float32:
        x = (x / np.float32(255)).astype(np.float32)
    eps = 30.0 if dtype == np.uint8 else 30.0 / 255
    monkeypatch.setattr(balls, "_FIRST_BATCH", 8)  # several batches per ball
    ref = balls.fit_balls(x, 0.08, eps, 6, n_neighbors=12)
    with cluster.use(client):
        got = balls.fit_balls(x, 0.08, eps, 6, n_neighbors=12)
    assert ref.history == got.history
    # many candidates evaluated exactly, over several balls (so penalties too)
    assert [h["candidates_exact"] > 8 for h in ref.history[:5]] == [True] * 5
    for key in ("center_index", "centers", "radii_sq", "covered", "expanded"):
        assert np.array_equal(getattr(ref, key), getattr(got, key))


@pytest.mark.parametrize("metric,gamma", [("linf", None), ("l2", 0.3), ("linf", 0.3)])
def test_cubes_and_lu_balls_fit_identical(client, metric, gamma, monkeypatch):
    """The cluster evaluator passes the cubes' l-inf keys and the LU weights
    and threshold (numbaconc.lu) to the same gains kernel."""
    from numbaconc import balls

    x, _ = make_tiny_images(800, seed=21)
    lu = None if gamma is None else np.random.default_rng(4).random(len(x)) * 0.6
    monkeypatch.setattr(balls, "_FIRST_BATCH", 8)  # several batches per ball
    args = dict(n_neighbors=12, metric=metric, lu=lu, gamma=gamma or 0.0)
    ref = balls.fit_balls(x, 0.08, 30.0, 6, **args)
    with cluster.use(client):
        got = balls.fit_balls(x, 0.08, 30.0, 6, **args)
    assert ref.history == got.history and ref.stopped == got.stopped
    assert any(h["candidates_exact"] > 0 for h in ref.history)
    for key in ("center_index", "centers", "radii_sq", "covered", "expanded"):
        assert np.array_equal(getattr(ref, key), getattr(got, key))


def _same_balls(ref, got):
    assert ref.history == got.history and ref.stopped == got.stopped
    for key in ("center_index", "centers", "radii", "radii_sq", "covered", "expanded"):
        assert np.array_equal(getattr(ref, key), getattr(got, key))


@pytest.mark.parametrize("sampled", [False, True])
def test_balls_fit_identical_on_ties_extremes_and_sampled_candidates(client, sampled, monkeypatch):
    """Duplicated rows, all-0 and all-255 rows (ties everywhere), with every
    row or a seeded sample of rows as candidates, several exact rounds a ball."""
    from numbaconc import balls

    x = _images(900, 24, 22)
    rows = balls.sample_candidates(len(x), 300, seed=5) if sampled else None
    monkeypatch.setattr(balls, "_FIRST_BATCH", 4)
    args = dict(delta=0.25, n_neighbors=10, candidates=rows)
    ref = balls.fit_balls(x, 0.06, 600.0, 7, **args)
    with cluster.use(client):
        got = balls.fit_balls(x, 0.06, 600.0, 7, **args)
    assert sum(h["candidates_exact"] for h in ref.history) > 20
    _same_balls(ref, got)


# ---------------------------------------------------------------- k-means


def _same_kmeans(ref, got):
    assert np.array_equal(ref.labels, got.labels) and np.array_equal(ref.centers, got.centers)
    assert (ref.n_iter, ref.converged, ref.inertia) == (got.n_iter, got.converged, got.inertia)
    plain = [[{k: v for k, v in h.items() if k != "seconds"} for h in r.history] for r in (ref, got)]
    assert plain[0] == plain[1]


def _kmeans_rows(tmp_path, source, dtype):
    """Duplicates, all-0 / all-255 rows and two far blobs, as an array, a
    RowView over a read-only memmap or over a chunked, compressed HDF5 dataset."""
    x = _images(2600, 20, 31)
    x[100:400] = x[99]
    if dtype == np.float32:
        x = (x / np.float32(255)).astype(np.float32)
    rows = np.sort(np.random.default_rng(2).choice(len(x), 2300, replace=False))
    if source == "array":
        return x[rows]
    if source == "file":
        path = tmp_path / "rows.bin"
        x[rows].tofile(path)
        return np.memmap(path, dtype=x.dtype, mode="r", shape=(len(rows), x.shape[1]))
    if source == "memmap":
        path = tmp_path / "x.bin"
        x.tofile(path)
        return datasets.RowView(np.memmap(path, dtype=x.dtype, mode="r", shape=x.shape), rows)
    f = h5py.File(tmp_path / "x.h5", "w")
    f.create_dataset("x", data=x, chunks=(37, x.shape[1]), compression="gzip")
    f.close()
    return datasets.RowView(h5py.File(tmp_path / "x.h5", "r")["x"], rows)


@pytest.mark.parametrize("metric", ["l1", "l2"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("source", ["array", "file", "memmap", "h5"])
def test_kmeans_fit_identical(client, tmp_path, monkeypatch, metric, dtype, source):
    """One fit's assignment passes as tasks, the bounds kept on the workers:
    labels, centres, inertia and every iteration's counts are the in-process
    ones. A read-only memmap goes to the workers as its file, never as a copy."""
    from numbaconc.kmeans import kmeans

    X = _kmeans_rows(tmp_path, source, dtype)
    if source == "file":
        def no_copies(array, *args):
            raise AssertionError(f"a {array.shape} array was scattered")

        monkeypatch.setattr(cluster, "_scatter", no_copies)
    for init in ("random", "k-means++"):
        ref = kmeans(X, 17, metric=metric, init=init, random_state=5, chunk_rows=128)
        assert ref.n_iter > 3
        with cluster.use(client):
            got = kmeans(X, 17, metric=metric, init=init, random_state=5, chunk_rows=128)
        _same_kmeans(ref, got)


@pytest.mark.parametrize("metric", ["l1", "l2"])
@pytest.mark.parametrize("empty", ["keep", "farthest"])
def test_kmeans_empty_clusters_identical(client, metric, empty):
    from numbaconc.kmeans import kmeans

    X = _images(1500, 6, 32)
    C0 = np.vstack([X[0], X[0], X[50], np.full(6, 1000.0), np.full(6, -900.0)]).astype(np.float64)
    ref = kmeans(X, 5, metric=metric, init=C0, empty=empty, chunk_rows=64)
    assert ref.history[0]["n_empty"] >= 2
    with cluster.use(client):
        got = kmeans(X, 5, metric=metric, init=C0, empty=empty, chunk_rows=64)
    _same_kmeans(ref, got)


def _stream_kmeans_on_this_worker(on: bool):
    """Past every budget share: range bounds in scratch memmaps, rows read a
    chunk per block; counts the scratch arrays made (run on each worker)."""
    import numbaconc.kmeans as km
    from numbaconc.neighbours import scratch_array

    if not on:
        km.BOUNDS_SHARE, km._STREAM_SHARE, km.scratch_array = km._saved
        return km._scratch_made
    km._saved, km._scratch_made = (km.BOUNDS_SHARE, km._STREAM_SHARE, km.scratch_array), 0

    def counted(*args, **kwargs):
        km._scratch_made += 1
        return scratch_array(*args, **kwargs)

    km.BOUNDS_SHARE, km._STREAM_SHARE, km.scratch_array = 0.0, 1e-12, counted
    return 0


def test_kmeans_with_the_workers_bounds_in_scratch_memmaps_identical(client, tmp_path):
    from numbaconc.kmeans import kmeans

    X = _kmeans_rows(tmp_path, "h5", np.uint8)
    ref = kmeans(X, 17, metric="l2", random_state=5, chunk_rows=128)
    client.run(_stream_kmeans_on_this_worker, True)
    try:
        with cluster.use(client):
            got = kmeans(X, 17, metric="l2", random_state=5, chunk_rows=128)
    finally:
        made = client.run(_stream_kmeans_on_this_worker, False)
    assert all(count >= 6 for count in made.values()), made  # each worker's range state
    _same_kmeans(ref, got)


@pytest.mark.parametrize("metric", ["l1", "l2"])
def test_kmeans_ranges_whose_worker_lost_their_state_give_the_same_fit(client, monkeypatch, metric):
    """A worker without a range's bounds (a replacement worker, a retried
    task) is sent the range's labels and scores every centre: same fit."""
    from numbaconc.kmeans import kmeans

    X = _images(2500, 16, 33)
    ref = kmeans(X, 12, metric=metric, random_state=1, chunk_rows=256)
    assign, with_labels = cluster.KMeansPasses.assign, []
    map_ordered = cluster.map_ordered

    def dropping_assign(self, step, *args):
        if step.it in (3, 5):  # every worker forgets, twice
            self.client.run(cluster.drop_worker_state, ("kmeans", self.token))
        return assign(self, step, *args)

    def spying_map(unit, arg_list, **kw):
        arg_list = list(arg_list)
        with_labels.extend(args[-1] is not None for args in arg_list if unit is cluster._kmeans_unit)
        return map_ordered(unit, arg_list, **kw)

    monkeypatch.setattr(cluster.KMeansPasses, "assign", dropping_assign)
    monkeypatch.setattr(cluster, "map_ordered", spying_map)
    with cluster.use(client):
        got = kmeans(X, 12, metric=metric, random_state=1, chunk_rows=256)
    assert ref.n_iter > 5 and sum(with_labels) == 4  # two ranges resent, twice
    assert np.array_equal(ref.labels, got.labels) and np.array_equal(ref.centers, got.centers)
    assert (ref.n_iter, ref.inertia) == (got.n_iter, got.inertia)
    assert [h["n_changed"] for h in ref.history] == [h["n_changed"] for h in got.history]


def _kmeans_labels_in_a_task(X):
    from numbaconc.kmeans import kmeans

    return kmeans(X, 6, metric="l1", random_state=0).labels


def test_a_stage_inside_a_task_of_a_threaded_cluster_runs_in_that_task():
    """On an in-process (threaded) cluster the workers share this module's
    setting: a k-means inside a task must not wait on tasks of its own (one
    worker thread: it would never finish)."""
    X = _images(600, 8, 35)
    ref = _kmeans_labels_in_a_task(X)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as local, distributed.Client(local) as c:
        with cluster.use(c):  # a task as map_ordered runs it; a deadlock fails after 120 s
            task = c.submit(cluster._on_worker, _kmeans_labels_in_a_task, budget.get_budget(), (X,),
                            pure=False)
            got = task.result(timeout=120)
    assert np.array_equal(ref, got)


# ---------------------------------------------------------------- evaluate


def test_region_counts_identical(client, tmp_path, monkeypatch):
    rng = np.random.default_rng(14)
    x = _images(900, 16, 15)
    path = _h5(tmp_path / "d.h5", x, _images(300, 16, 16))
    centres = x[[3, 50, 400]].astype(np.float64)
    regions = [
        box_region(centres, np.full((3, 16), 60.0), epsilon=8.0, scale=1 / 255, shape="symmetric",
                   domain=(0.0, 255.0)),
        ball_region(centres, np.array([9e5, 1.1e6, 1.3e6]), epsilon=30.0, scale=1 / 255),
        halfspace_region(rng.standard_normal(16), 40.0, metric="linf", epsilon=4.0, scale=1 / 255),
    ]
    monkeypatch.setattr(datasets.RowView, "block_rows", lambda self, *args, **kwargs: 128)  # blocks
    with datasets.open_dataset(path) as ds:
        view = ds.train.view(np.arange(0, 900, 2))
        for region in regions:
            ref = [region.evaluate(ds.test.x), region.evaluate(view)]
            with cluster.use(client):
                got = [region.evaluate(ds.test.x), region.evaluate(view)]
            assert ref == got


# ---------------------------------------------------------------- whole measurements


def _plain(result):
    """Every figure of a measurement, without timings, stage peaks and versions."""
    if isinstance(result, dict):
        return {k: _plain(v) for k, v in result.items()
                if k not in ("timings", "versions", "_region", "seconds", "cpu_seconds",
                             "peak_bytes")}
    if isinstance(result, list):
        return [_plain(v) for v in result]
    return result


@pytest.mark.parametrize("metric,method,epsilon,options", [
    ("linf", "boxes", 0.1, dict(repeats=2, t_grid=(3, 5, 8))),
    ("linf", "halfspace", 0.05, {}),
    ("l2", "best", 0.5, dict(clusters=4)),
    ("l2", "balls", 1.0, dict(clusters=6)),
])
def test_measure_identical(client, tiny_h5, tmp_path, monkeypatch, metric, method, epsilon, options):
    from numbaconc.concentration import measure

    results = {}
    for name, spec in (("local", None), ("dask", client)):
        monkeypatch.setenv("NUMBACONC_CACHE", str(tmp_path / name))  # the kNN runs each time
        with datasets.open_dataset(tiny_h5) as ds, cluster.use(spec):
            results[name] = measure(ds, metric=metric, alpha=0.05, epsilon=epsilon, method=method,
                                    **options)
    assert _plain(results["local"]) == _plain(results["dask"])
    a, b = results["local"]["_region"], results["dask"]["_region"]
    assert a.arrays.keys() == b.arrays.keys()
    assert all(np.array_equal(a.arrays[key], b.arrays[key]) for key in a.arrays)


# ---------------------------------------------------------------- CLI


def test_cli_scheduler_option_gives_the_same_cache(client, tmp_path, monkeypatch):
    from numbaconc_cli.main import app

    path = _h5(tmp_path / "d.h5", _images(500, 25, 17), _images(40, 25, 18))
    runner = CliRunner()
    caches = {}
    for name, option in (("local", []), ("dask", ["--scheduler", client.scheduler.address])):
        monkeypatch.setenv("NUMBACONC_CACHE", str(tmp_path / name))
        try:
            result = runner.invoke(app, option + ["knn", str(path), "--k", "6", "--metric", "linf"])
        finally:
            cluster.set_scheduler(None)
        assert result.exit_code == 0, result.output
        caches[name] = sorted((tmp_path / name / "knn").glob("*.h5"))
    (a,), (b,) = caches["local"], caches["dask"]
    with h5py.File(a) as fa, h5py.File(b) as fb:
        assert dict(fa.attrs) == dict(fb.attrs)


def test_cli_bad_scheduler_is_one_line():
    from numbaconc_cli.main import app

    result = CliRunner().invoke(app, ["--scheduler", "local:0", "knn", "mnist"])
    assert result.exit_code == 1
    assert "error: scheduler 'local:0'" in result.output


# ---------------------------------------------------------------- faults (last)


def test_a_worker_killed_mid_run_is_retried_with_the_same_result(client, monkeypatch):
    x = _images(3000, 64, 19)
    ref = knn(x, 10, metric="l1")
    monkeypatch.setattr(cluster, "TASKS_PER_WORKER", 12)
    pids = client.run(os.getpid)
    killed = []

    def kill_one_worker(done, total):
        if killed:
            return
        busy = [addr for addr, keys in client.processing().items() if keys and addr in pids]
        assert busy, "every task finished before the kill: the test would prove nothing"
        os.kill(pids[busy[0]], signal.SIGKILL)
        killed.append((busy[0], done, total))

    with cluster.use(client):
        got = knn(x, 10, metric="l1", block_rows=64, progress=kill_one_worker)
    assert killed and killed[0][1] < killed[0][2]
    _same_lists(ref, got)
    deadline = time.time() + 60  # leave the module cluster whole: the nanny restarts the worker
    while len(client.scheduler_info()["workers"]) < 2 and time.time() < deadline:
        time.sleep(0.2)
    assert killed[0][0] not in client.scheduler_info()["workers"]


def _wait_for_two_workers(client):
    deadline = time.time() + 60  # a killed worker's replacement, started by its nanny
    while len(client.scheduler_info()["workers"]) < 2 and time.time() < deadline:
        time.sleep(0.2)


def _fit_while_killing_a_busy_worker(client, fit, delay=0.0):
    """``fit()`` on the cluster while a thread SIGKILLs the first worker seen
    running a task (after ``delay`` s); returns (result, [killed address])."""
    import threading

    pids = client.run(os.getpid)
    killed, stop = [], threading.Event()

    def kill_a_busy_worker():
        time.sleep(delay)
        while not stop.is_set():
            busy = [addr for addr, keys in client.processing().items() if keys and addr in pids]
            if busy:
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(busy[0])
                return
            time.sleep(0.002)

    killer = threading.Thread(target=kill_a_busy_worker)
    with cluster.use(client):
        killer.start()
        try:
            got = fit()
        finally:
            stop.set()
            killer.join()
    assert killed, "no task was running while the fit ran: the test would prove nothing"
    return got, killed


def test_a_worker_killed_mid_balls_fit_gives_the_same_fit(client, monkeypatch):
    """The balls fit's tasks are pure too: a worker killed while one of them
    runs (the fit's per-worker state is rebuilt on the replacement)."""
    from numbaconc import balls

    _wait_for_two_workers(client)  # the previous test's replacement worker
    x, _ = make_tiny_images(2500, seed=23)
    monkeypatch.setattr(balls, "_FIRST_BATCH", 4)
    ref = balls.fit_balls(x, 0.05, 30.0, 8, n_neighbors=20)
    got, _ = _fit_while_killing_a_busy_worker(
        client, lambda: balls.fit_balls(x, 0.05, 30.0, 8, n_neighbors=20))
    _same_balls(ref, got)
    _wait_for_two_workers(client)


def test_a_worker_killed_mid_kmeans_fit_gives_the_same_fit(client):
    """A range's worker killed while it assigns: its task runs again on the
    other worker, which starts the range from the client's labels."""
    from numbaconc.kmeans import kmeans

    _wait_for_two_workers(client)
    X = _images(40000, 48, 34)
    ref = kmeans(X, 40, metric="l1", random_state=2, max_iter=12)
    got, _ = _fit_while_killing_a_busy_worker(
        client, lambda: kmeans(X, 40, metric="l1", random_state=2, max_iter=12), delay=0.5)
    assert np.array_equal(ref.labels, got.labels) and np.array_equal(ref.centers, got.centers)
    assert (ref.n_iter, ref.inertia) == (got.n_iter, got.inertia)
    _wait_for_two_workers(client)
