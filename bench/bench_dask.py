"""The heavy stages on a dask cluster against the same work in one process (issue 14).

    python bench/bench_dask.py [--scheduler local:2] [--threads 2] [--repeats 1]
                               [--halfspace-data PATH] [--kmeans-data PATH] [--quick] [--rows N]
                               [--only knn,halfspace,balls,kmeans]
                               [--out bench/RESULTS-dask.md]

Same work both ways, on the bundled MNIST (or its first 6000 rows with --quick, its
first N with --rows N):

1. all-pairs l1 kNN, k = 50 (self included);
2. the half-space search (l-inf, alpha = 0.01, eps = 0.1: covariance, every
   component x DEFAULT_POWERS, float64 re-fit) on MNIST train, or on
   ``--halfspace-data`` (e.g. an MNIST-1M made with ``numbaconc data synth augment``);
3. evaluate: the fitted half-space's counts on train and test;
4. the balls fit (l2, alpha = 0.01, eps = 4.74, T = 20, the paper's delta = 0.25)
   on its neighbour lists (computed once beforehand in this process, not timed);
5. one k-means fit as the boxes run it (l1 assignment, T = 40, random init,
   30 iterations at most) on the training rows, or on those of ``--kmeans-data``.

``--only``: a comma-separated subset of the groups knn (1), halfspace (2 and 3),
balls (4), kmeans (5); default all.

In-process: numba and BLAS pinned to ``--threads``. Cluster: ``--scheduler``
(default local:2 = a LocalCluster of 2 worker processes x 1 thread). Kernels are
compiled (and the workers warmed up on a small file) before any timing; every
cluster result is checked identical to the in-process one before its time is
kept. Overhead = cluster time / in-process time - 1.

Then the scaling model: per-task compute times recorded by the dask task stream,
scaled to ImageNet-32-sized data (1.28 M x 3,072 uint8) on 1, 8 and 64 workers
(see ``scaling_model`` for the formula and its assumptions).

The machine must be otherwise idle for the figures to mean anything.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from _load import load_line  # bench/ is on sys.path

from numbaconc import __version__, cluster, datasets
from numbaconc.balls import fit_balls
from numbaconc.halfspace import fit_halfspace_curve
from numbaconc.kmeans import kmeans
from numbaconc.neighbours import cached_knn, knn
from numbaconc.regions import halfspace_region

BIG_N, BIG_D = 1_281_167, 3072          # ImageNet-32 train
LINK = 1.0e9                              # bytes/s assumed per worker link (10 GbE, ~80 %)
DISK = 1.0e9                              # bytes/s a worker reads the shared file at (cold)
TASK_OVERHEAD = 0.005                     # s per task (scheduler + client round trip), assumed


def machine() -> list[str]:
    model = "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                     if line.startswith("Model name"))
    except Exception:  # noqa: BLE001 - informational only
        pass
    import dask
    import distributed

    blas = [f"{i['internal_api']} {i.get('version')} ({i.get('architecture')})" for i in threadpool_info() if i["user_api"] == "blas"]
    return [f"- CPU: {model}, {os.cpu_count()} cores; Python {platform.python_version()}",
            f"- numbaconc {__version__}, numba {numba.__version__}, numpy {np.__version__}, "
            f"dask {dask.__version__}, distributed {distributed.__version__}; BLAS {'; '.join(blas)}",
            f"- load before: {load_line()}"]


def subset_file(src: Path, rows: int, folder: Path) -> Path:
    with datasets.open_dataset(src) as ds:
        out = folder / f"{ds.name}-{rows}.h5"
        datasets.write_dataset(out, name=f"{ds.name}-{rows}", checksum=f"bench-{rows}", source="bench",
                               train_x=np.asarray(ds.train.x[:rows]),
                               test_x=np.asarray(ds.test.x[:max(1, rows // 6)]))
    return out


GROUPS = ("knn", "halfspace", "balls", "kmeans")


class Stage:
    """One piece of work run both ways: ``run()`` returns a comparable result;
    ``group``: its name for ``--only``."""

    def __init__(self, name, run, same, group):
        self.name, self.run, self.same, self.group = name, run, same, group


def timed(fn, repeats):
    """(median s, min s, max s, the last result) of ``repeats`` calls."""
    runs = [_one_run(fn) for _ in range(repeats)]
    times = [seconds for seconds, _ in runs]
    return statistics.median(times), min(times), max(times), runs[-1][1]


def _one_run(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def task_times(stream) -> list[float]:
    """Compute seconds of every task recorded by a dask task stream."""
    out = []
    for record in stream:
        for part in record.get("startstops", ()):
            if part.get("action") == "compute":
                out.append(part["stop"] - part["start"])
    return out


def stages(path: Path, hs_path: Path, quick: bool, only=GROUPS, km_path=None):
    ds = datasets.open_dataset(path)
    hs = ds if hs_path == path else datasets.open_dataset(hs_path)
    km = ds if km_path in (None, path) else datasets.open_dataset(km_path)
    n_comp = 50 if quick else None
    eps_linf = 0.1 / ds.scale
    fit_box = {}

    def knn_l1():
        return knn(ds.train.x, 50, metric="l1")

    def search():
        fit = fit_halfspace_curve(hs.train.x, 0.01, [eps_linf], metric="linf", n_components=n_comp)[0]
        fit_box["fit"] = fit
        return fit

    def evaluate():
        fit = fit_box["fit"]
        region = halfspace_region(fit.w, fit.b, metric="linf", epsilon=eps_linf, scale=ds.scale)
        return [region.evaluate(part.x) for part in (hs.train, hs.test)]

    n = ds.train.n_samples
    # untimed input, cached across runs (the lists the balls of `measure` use)
    l2_lists = cached_knn(ds, min(n, 2 * math.ceil(0.01 * n)), metric="l2")[0] \
        if "balls" in only else None

    def balls():
        return fit_balls(ds.train.x, 0.01, 4.74 / ds.scale, 20, delta=0.25, neighbors=l2_lists)

    def one_kmeans():
        return kmeans(km.train.x, 40, metric="l1", init="random", max_iter=30, random_state=0)

    def same_kmeans(a, b):
        return (np.array_equal(a.labels, b.labels) and np.array_equal(a.centers, b.centers)
                and (a.n_iter, a.inertia) == (b.n_iter, b.inertia))

    def same_lists(a, b):
        return np.array_equal(a.indices, b.indices) and np.array_equal(a.stored, b.stored)

    def same_fit(a, b):
        return a.search == b.search and np.array_equal(a.w, b.w) and a.b == b.b

    def same_balls(a, b):
        return a.history == b.history and np.array_equal(a.radii_sq, b.radii_sq)

    work = [Stage("l1 kNN k=50 (all pairs)", knn_l1, same_lists, "knn"),
            Stage(f"half-space search l-inf ({hs.train.n_samples} x {hs.train.n_features})", search,
                  same_fit, "halfspace"),
            Stage("evaluate (half-space, train + test)", evaluate, lambda a, b: a == b, "halfspace"),
            Stage("balls fit l2 eps=4.74 T=20", balls, same_balls, "balls"),
            Stage(f"k-means l1 T=40 (one fit, {km.train.n_samples} x {km.train.n_features})", one_kmeans,
                  same_kmeans, "kmeans")]
    return [stage for stage in work if stage.group in only]


def warm_up(folder: Path, client_spec, only=GROUPS):
    """Compile every kernel here and on the workers (on a small file, same array types)."""
    small = subset_file(datasets.ensure_bundled("mnist"), 1500, folder)
    for spec in (None, client_spec):
        with cluster.use(spec):
            for stage in stages(small, small, True, only):
                stage.run()


def scaling_model(records: dict, n: int, d: int, hs_n: int, hs_d: int, workers=(1, 8, 64)) -> list[str]:
    """Wall time on W workers for ImageNet-32-sized data, from measured per-task times.

    kNN: every query meets every base row, so a task of r queries costs
    t_task * (N / n) * (D / d) at the same r (pruning assumed as effective as on
    MNIST: an assumption; it weakens as d grows). Tasks = N / r. Each worker
    reads the base once (N * D bytes from the shared file at DISK; preparing its
    copy is not counted beyond that read).
    Results: N * k * 8 bytes to the client over its link (LINK).
    Half-space search: a task projects all N rows on one batch of directions:
    t_task * (N / n) * (D / d) at the same batch size; directions = 5 D, so
    tasks = 5 D / batch; every task streams the whole file (N * D bytes), from
    the page cache after the first pass when it fits the worker's memory
    (assumed: each task re-reads at DISK, the pessimistic case).
    Covariance: ceil(N / 8192) tasks of 8192 rows, each returning D^2 float64
    to the client (the fixed-order sum), D^2 * 8 bytes each over LINK.
    Wall(W) = ceil(tasks / W) * t_task' + tasks * TASK_OVERHEAD / W + transfers.
    """
    lines = ["## Scaling model: ImageNet-32-sized data (1.28 M x 3,072 uint8)", "",
             f"Assumptions: worker link {LINK / 1e9:g} GB/s, shared-file read {DISK / 1e9:g} GB/s per "
             f"worker, {TASK_OVERHEAD * 1e3:g} ms per task of scheduling; per-task compute scaled "
             "linearly in rows and features from the measured MNIST tasks (one worker thread each). "
             "The kNN scaling assumes MNIST's pruning rate (an assumption: it weakens in higher d). "
             "Not counted: the client's own serial part (merging results, the half-space winner's "
             "float64 re-fit: one pass over the file) and the workers' plan preparation.", "",
             "| stage | tasks | per-task compute (s, measured -> scaled) | " +
             " | ".join(f"wall on {w} worker{'s' if w > 1 else ''}" for w in workers) + " |",
             "|---|---|---|" + "---|" * len(workers)]
    N, D = BIG_N, BIG_D

    def fmt(seconds):
        return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.0f} s"

    knn_rec = records.get("knn")
    if knn_rec:
        times, rows_per_task = knn_rec
        per = statistics.median(times) * (N / n) * (D / d)
        tasks = math.ceil(N / rows_per_task)
        read = N * D / DISK
        results = N * 50 * 8 / LINK
        walls = [read + math.ceil(tasks / w) * per + tasks * TASK_OVERHEAD / w + results for w in workers]
        lines.append(f"| l1 kNN k=50 | {tasks} | {statistics.median(times):.2f} -> {per:.0f} | "
                     + " | ".join(fmt(t) for t in walls) + " |")
    hs_rec = records.get("search")
    if hs_rec:
        times, batch = hs_rec
        per = statistics.median(times) * (N / hs_n) * (D / hs_d)
        tasks = math.ceil(5 * D / batch)
        read = N * D / DISK
        cov_tasks = math.ceil(N / 8192)
        cov = cov_tasks * D * D * 8 / LINK  # client link: the partial sums arrive one by one
        cov_compute = 2.0 * N * D * D / 20e9  # dsyrk at an assumed 20 GFLOP/s per worker thread
        walls = [cov + cov_compute / w + math.ceil(tasks / w) * (per + read)
                 + (tasks + cov_tasks) * TASK_OVERHEAD / w for w in workers]
        lines.append(f"| half-space search (batch {batch}) | {tasks} + {cov_tasks} covariance | "
                     f"{statistics.median(times):.2f} -> {per + read:.0f} (incl. {read:.0f} s read) | "
                     + " | ".join(fmt(t) for t in walls) + " |")
    lines.append("")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scheduler", default="local:2")
    parser.add_argument("--threads", type=int, default=2, help="in-process numba / BLAS threads")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--halfspace-data", type=Path, default=None)
    parser.add_argument("--kmeans-data", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="6000 MNIST rows, 50 components: a check")
    parser.add_argument("--rows", type=int, default=None, help="the first ROWS MNIST training rows")
    parser.add_argument("--only", default=",".join(GROUPS),
                        help=f"comma-separated stage groups to run: {', '.join(GROUPS)}")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    only = tuple(g.strip() for g in args.only.split(",") if g.strip())
    if not only or any(g not in GROUPS for g in only):
        parser.error(f"--only: expected a comma-separated subset of {', '.join(GROUPS)}")

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    folder = Path(tempfile.mkdtemp(prefix="bench-dask-"))
    path = datasets.ensure_bundled("mnist")
    rows = 6000 if args.quick else args.rows
    if rows:
        path = subset_file(path, rows, folder)
    hs_path = args.halfspace_data or path
    lines = ["# numbaconc on a dask cluster against one process", "",
             f"- Command: `{' '.join([Path(sys.executable).name] + sys.argv)}`", *machine(),
             f"- In process: {args.threads} numba / BLAS threads. Cluster: `{args.scheduler}`.", ""]
    import distributed

    with datasets.open_dataset(path) as ds, datasets.open_dataset(hs_path) as hs:
        n, d = ds.train.n_samples, ds.train.n_features
        hs_n, hs_d = hs.train.n_samples, hs.train.n_features
    n_dir = 5 * (50 if args.quick else hs_d)
    records = {}
    with cluster.use(args.scheduler) as client, threadpool_limits(args.threads, user_api="blas"):
        lines.insert(5, f"- Cluster: {len(client.scheduler_info()['workers'])} workers, "
                        f"dashboard {client.dashboard_link}")
        warm_up(folder, client, only)
        with cluster.use(None):
            work = stages(path, hs_path, args.quick, only, args.kmeans_data)
        lines += ["| stage | in process (s) | cluster (s) | cluster / in process | tasks | identical |",
                  "|---|---|---|---|---|---|"]
        for stage in work:
            with cluster.use(None):
                t_local, lo_l, hi_l, ref = timed(stage.run, args.repeats)
            with distributed.get_task_stream(client) as stream:
                t_dask, lo_d, hi_d, got = timed(stage.run, args.repeats)
            same = stage.same(ref, got)
            if not same:
                raise SystemExit(f"{stage.name}: the cluster result differs from the in-process one")
            per_task = task_times(stream.data)
            n_tasks = len(per_task) // max(1, args.repeats)
            if stage.group == "knn":
                records["knn"] = (per_task, math.ceil(n / max(1, n_tasks)))
            if stage.name.startswith("half-space search"):
                from numbaconc.halfspace import search_batch

                batch = min(256, n_dir, search_batch(hs_n))
                n_batches = math.ceil(n_dir / batch) * args.repeats
                records["search"] = (sorted(per_task)[-n_batches:], batch)  # the longest: batches
            spread = "" if args.repeats == 1 else f" ({lo_l:.1f}-{hi_l:.1f} / {lo_d:.1f}-{hi_d:.1f})"
            lines.append(f"| {stage.name} | {t_local:.2f} | {t_dask:.2f} | {t_dask / t_local:.3f}"
                         f"{spread} | {n_tasks} | {same} |")
            print(lines[-1], flush=True)
    lines.append("")
    lines += ["Cluster times include the client's share (planning, scattering, the in-order "
              "merge) and exclude the LocalCluster start and the workers' first compile "
              "(warm-up). A local:N cluster here shares the 2 cores with the client.", ""]
    if records:  # the model needs the kNN or half-space task times
        lines += scaling_model(records, n, d, hs_n, hs_d)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
