"""Where the balls fit's time goes, in process and on a dask cluster (issue 14).

    python bench/profile_balls_dask.py [--rows 20000] [--scheduler local:2] [--threads 2]
                                       [--skip-local]

Fits the l2 balls (alpha = 0.01, eps = 4.74, T = 20, delta = 0.25: the
bench_dask.py stage) on the first ``--rows`` MNIST training rows, once in this
process and once on the cluster, with phase timers around the client's parts
(the list pass, the exact evaluation rounds, the penalties, mark_ball) and the
CPU seconds of the client and of each worker process (user + sys from
/proc). On the cluster it also prints the workers' thread settings and, per
exact round, the client's wait against the longest task's compute time (the
difference: scheduling, transfer, latency). The lists are computed once (and
cached), not timed. Wall times mean something only on an idle machine; CPU
seconds and shares are the scaling measure on a shared one.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from numbaconc import balls, cluster, datasets
from numbaconc.kernels import ball_geometry, balls as kballs
from numbaconc.neighbours import cached_knn

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> np.ndarray:
    """(user, sys) CPU seconds of a process (its threads included)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return np.array([int(fields[11]), int(fields[12])]) / _TICK


class Phases:
    """Wall seconds per named phase (patched around the fit's calls)."""

    def __init__(self):
        self.wall = defaultdict(float)
        self.calls = defaultdict(int)
        self._undo = []

    def wrap(self, owner, name, label):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.wall[label] += time.perf_counter() - start
                self.calls[label] += 1

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def undo(self):
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


def instrument(phases: Phases):
    phases.wrap(kballs, "list_pass", "list pass (client)")
    phases.wrap(ball_geometry, "mark_ball", "mark_ball (client)")
    for owner in (balls._ExactEvaluator, cluster.BallEvaluator):
        phases.wrap(owner, "__call__", "exact rounds")
        phases.wrap(owner, "add_penalties", "penalties")
    for name in getattr(cluster, "PROFILED", ()):
        phases.wrap(cluster, name, name)


def subset(rows: int, folder: Path) -> Path:
    out = folder / f"mnist-{rows}.h5"
    if not out.exists():
        with datasets.open_dataset(datasets.ensure_bundled("mnist")) as ds:
            datasets.write_dataset(out, name=f"mnist-{rows}", checksum=f"profile-{rows}",
                                   source="profile", train_x=np.asarray(ds.train.x[:rows]),
                                   test_x=np.asarray(ds.test.x[:max(1, rows // 6)]))
    return out


def run(ds, lists, label, worker_pids=()):
    phases = Phases()
    instrument(phases)
    before = {pid: cpu_seconds(pid) for pid in (os.getpid(), *worker_pids)}
    start = time.perf_counter()
    try:
        fit = balls.fit_balls(ds.train.x, 0.01, 4.74 / ds.scale, 20, delta=0.25, neighbors=lists)
    finally:
        phases.undo()
    wall = time.perf_counter() - start
    cpu = {pid: cpu_seconds(pid) - t for pid, t in before.items()}

    def fmt(pid):
        return f"{cpu[pid][0]:.2f} user + {cpu[pid][1]:.2f} sys"

    print(f"\n== {label}: wall {wall:.2f} s (shared machine), client CPU {fmt(os.getpid())} s, "
          f"workers CPU {'; '.join(fmt(p) for p in worker_pids) or '-'} s")
    for name in sorted(phases.wall, key=phases.wall.get, reverse=True):
        print(f"  {name:28s} {phases.wall[name]:8.2f} s  {phases.calls[name]:5d} calls "
              f"({100 * phases.wall[name] / wall:.0f} %)")
    exact = sum(h["candidates_exact"] for h in fit.history)
    print(f"  balls {len(fit.history)}, candidates evaluated exactly {exact}, "
          f"adv risk {fit.adv_risk:.5f}")
    return fit, wall, cpu


def worker_settings(client):
    def settings():
        from threadpoolctl import threadpool_info

        import numba as nb

        env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                               "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                                               "OMP_WAIT_POLICY")}
        pools = [(i["user_api"], i["internal_api"], i["num_threads"]) for i in threadpool_info()]
        layer = nb.config.THREADING_LAYER
        try:
            layer = nb.threading_layer()
        except ValueError:
            pass
        return dict(env=env, pools=pools, numba_threads=nb.get_num_threads(),
                    numba_max=nb.config.NUMBA_NUM_THREADS, layer=layer,
                    os_threads=len(os.listdir(f"/proc/{os.getpid()}/task")))

    for address, info in client.run(settings).items():
        print(f"  worker {address}: {info}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--scheduler", default="local:2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-local", action="store_true")
    args = parser.parse_args()
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    folder = Path(os.environ.get("NUMBACONC_CACHE", tempfile.gettempdir())) / "profile"
    folder.mkdir(parents=True, exist_ok=True)
    path = subset(args.rows, folder) if args.rows < 60000 else datasets.ensure_bundled("mnist")
    small = subset(1500, folder)
    with datasets.open_dataset(path) as ds, datasets.open_dataset(small) as tiny, \
            threadpool_limits(args.threads, user_api="blas"):
        n = ds.train.n_samples
        lists = cached_knn(ds, min(n, 2 * math.ceil(0.01 * n)), metric="l2")[0]
        tiny_lists = cached_knn(tiny, 30, metric="l2")[0]
        print(f"{n} rows, lists K = {lists.k} ({type(lists.indices).__name__})")
        balls.fit_balls(tiny.train.x, 0.01, 4.74 / tiny.scale, 20, delta=0.25, neighbors=tiny_lists)
        ref = None
        if not args.skip_local:
            ref, t_local, cpu_local = run(ds, lists, f"in process, {args.threads} threads")
        with cluster.use(args.scheduler) as client:
            pids = client.run(os.getpid)
            balls.fit_balls(tiny.train.x, 0.01, 4.74 / tiny.scale, 20, delta=0.25,
                            neighbors=tiny_lists)  # the workers compile
            worker_settings(client)
            import distributed

            with distributed.get_task_stream(client) as stream:
                got, t_dask, cpu_dask = run(ds, lists, f"cluster {args.scheduler}", list(pids.values()))
            computes = []
            for record in stream.data:
                for part in record.get("startstops", ()):
                    if part.get("action") == "compute":
                        computes.append(part["stop"] - part["start"])
            transfers = sum(part["stop"] - part["start"] for record in stream.data
                            for part in record.get("startstops", ()) if part.get("action") == "transfer")
            print(f"  tasks {len(computes)}, compute {sum(computes):.2f} s in tasks "
                  f"(median {np.median(computes) * 1e3:.1f} ms), transfers {transfers:.2f} s")
        if ref is not None:
            same = ref.history == got.history and np.array_equal(ref.radii_sq, got.radii_sq) \
                and np.array_equal(ref.center_index, got.center_index)
            print(f"\nidentical: {same}; cluster / in process wall {t_dask / t_local:.3f}; "
                  f"CPU (user + sys) in process {sum(cpu_local.values()).sum():.2f} s, cluster "
                  f"{sum(cpu_dask.values()).sum():.2f} s")


if __name__ == "__main__":
    main()
