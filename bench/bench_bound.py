"""Benchmark: the label-aware lower bound (``numbaconc bound``) at full scale.

- MNIST, all 60,000 training points, 10 classes, l2, eps = 2.0, 2.5, 3.0, 3.5,
  4.0 in one run: range-search time (one pass for the whole grid) against the
  l2 kNN time of ``numbaconc.neighbours.knn`` on the same data (k = ``--knn-k``; the
  k that would cover every conflict pair, max degree + 1, is printed per eps),
  and per eps the edges, the bound and the matching time (Numba Hopcroft-Karp
  warm-started from the previous eps, and cold).
- CIFAR-10, all 50,000 training points: l2 eps 0.5 .. 4 and linf 2/255 ..
  16/255; rows with no edge have a bound of exactly 0.

Before timing, the range search is checked against scipy's cdist on a subset
(the first ``--check`` points), and the warm-started matching against the cold
one. JIT compile time is excluded (warm-up on a small input). Writes markdown.

    python bench/bench_bound.py --out bench/RESULTS-bound-run.md
    python bench/bench_bound.py --n 5000 --out /tmp/bound-check.md   # a quick subset check
"""

from __future__ import annotations

import os
import resource

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")     # see bench_knn.py
CORETYPE = os.environ.get("OPENBLAS_CORETYPE")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
from scipy.spatial.distance import cdist  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_knn import cpu_model, uptime  # noqa: E402

from numbaconc import datasets  # noqa: E402
from numbaconc.optimal_loss import conflict_edges, solve_degree2  # noqa: E402
from numbaconc.budget import get_budget  # noqa: E402
from numbaconc.neighbours import knn  # noqa: E402
from numbaconc.concentration import versions  # noqa: E402

MNIST_L2 = [2.0, 2.5, 3.0, 3.5, 4.0]
CIFAR_L2 = [0.5, 1.0, 2.0, 3.0, 4.0]
CIFAR_LINF = [2 / 255, 4 / 255, 8 / 255, 16 / 255]


def check_edges(X, y, metric, eps, scale, m):
    """The range search on the first m points equals cdist thresholding."""
    Xs, ys = np.ascontiguousarray(X[:m]), y[:m]
    edges = conflict_edges(Xs, ys, metric=metric, epsilons=eps, scale=scale)
    W = Xs.astype(np.float64)
    D = cdist(W, W, "sqeuclidean" if metric == "l2" else "chebyshev")
    diff = ys[:, None] != ys[None, :]
    for k, t in enumerate(edges.thresholds):
        ref = np.argwhere(np.triu((D <= t) & diff, 1))
        if not np.array_equal(edges.pairs(k), ref):
            raise SystemExit(f"check failed: {metric} eps {eps[k]:g} on {m} points")
    return edges.count(len(eps) - 1)


def solve_grid(edges):
    """Per eps: (edges, bound, max degree, warm seconds, cold seconds)."""
    n = edges.n
    warm = (np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64))
    rows = []
    for k, eps in enumerate(edges.epsilons):
        indptr, indices = edges.csr(k, sort_rows=False)
        t = time.perf_counter()
        hot = solve_degree2(indptr, indices, n, warm)
        t_warm = time.perf_counter() - t
        t = time.perf_counter()
        cold = solve_degree2(indptr, indices, n)
        t_cold = time.perf_counter() - t
        if cold.double_cover_matching != hot.double_cover_matching:
            raise SystemExit(f"warm and cold matchings differ at eps {eps:g}")
        deg = int(np.diff(indptr).max()) if n else 0
        rows.append((float(eps), len(indices) // 2, hot.loss, deg, t_warm, t_cold))
        del indptr, indices
    return rows


def run(name, X, y, metric, eps, scale, args, report, knn_time=None):
    m = min(args.check, len(X))
    checked = check_edges(X, y, metric, eps, scale, m)
    report.append(f"\n### {name}, {metric}, n = {len(X)}\n")
    report.append(f"- check: range search on the first {m} points equals scipy cdist "
                  f"thresholding at every eps ({checked} edges at the largest)")
    t = time.perf_counter()
    edges = conflict_edges(X, y, metric=metric, epsilons=eps, scale=scale)
    t_range = time.perf_counter() - t
    report.append(f"- range search, whole grid in one pass: {t_range:.1f} s "
                  f"({len(edges.u):,} edges at the largest eps, {9 * len(edges.u) / 2**20:.0f} MiB "
                  f"as an edge list)")
    if knn_time is not None:
        report.append(f"- l2 kNN of the same points (numbaconc.neighbours.knn, k = {args.knn_k}): "
                      f"{knn_time:.1f} s; range search / kNN = {t_range / knn_time:.2f}")
    report.append("")
    report.append("| eps | edges | lower bound | max degree (a kNN covering the pairs needs k = this + 1) "
                  "| matching, warm-started (s) | matching, cold (s) |")
    report.append("|---|---|---|---|---|---|")
    for e, n_edges, loss, deg, tw, tc in solve_grid(edges):
        label = f"{e * 255:.0f}/255" if metric == "linf" else f"{e:g}"
        bound = "0 (no edge: exactly 0)" if n_edges == 0 else f"{100 * loss:.2f} %"
        report.append(f"| {label} | {n_edges:,} | {bound} | {deg} | {tw:.2f} | {tc:.2f} |")
    report.append(f"\npeak resident memory so far: "
                  f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    print("\n".join(report[-12:]), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--n", type=int, default=None, help="first n points only (a check run)")
    parser.add_argument("--check", type=int, default=2000, help="points checked against cdist")
    parser.add_argument("--knn-k", type=int, default=50)
    parser.add_argument("--no-knn", action="store_true", help="skip the kNN timing")
    parser.add_argument("--no-cifar", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    report = ["# numbaconc bound benchmark", "",
              f"- Machine: {cpu_model()}",
              f"- Versions: {versions()}",
              f"- Threads: {args.threads} (numba.set_num_threads, threadpoolctl for BLAS); "
              f"OPENBLAS_CORETYPE={CORETYPE}, "
              f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; memory budget "
              f"{get_budget() / 2**30:.1f} GiB",
              f"- Load before: `{uptime()}`",
              f"- Command: `{' '.join(sys.argv)}`"]
    with threadpool_limits(limits=args.threads):
        ds = datasets.open_dataset("mnist")  # the bundled copy of the same IDX files
        X, y = ds.train.x, ds.train.y
        if args.n:
            X, y = np.ascontiguousarray(X[:args.n]), y[:args.n]
        # warm-up: compile every kernel outside the timings
        conflict_edges(np.ascontiguousarray(X[:300]), y[:300], metric="l2", epsilons=MNIST_L2,
                       scale=ds.scale)
        conflict_edges(np.ascontiguousarray(X[:300]), y[:300], metric="linf", epsilons=CIFAR_LINF,
                       scale=ds.scale)
        solve_grid(conflict_edges(np.ascontiguousarray(X[:300]), y[:300], metric="l2",
                                  epsilons=[4.0], scale=ds.scale))
        knn_time = None
        if not args.no_knn:
            knn(np.ascontiguousarray(X[:300]), args.knn_k, metric="l2")
            t = time.perf_counter()
            knn(X, args.knn_k, metric="l2")
            knn_time = time.perf_counter() - t
        run("MNIST train", X, y, "l2", MNIST_L2, ds.scale, args, report, knn_time)
        if not args.no_cifar:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "cifar10.h5"
                datasets.import_dataset("cifar10", args.data_dir / "cifar-10" / "cifar10.npz", path)
                with datasets.open_dataset(path) as cds:
                    Xc, yc = cds.train.x, cds.train.y
                    if args.n:
                        Xc, yc = np.ascontiguousarray(Xc[:args.n]), yc[:args.n]
                    run("CIFAR-10 train", Xc, yc, "l2", CIFAR_L2, cds.scale, args, report)
                    run("CIFAR-10 train", Xc, yc, "linf", CIFAR_LINF, cds.scale, args, report)
    report.append(f"\n- Load after: `{uptime()}`")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(report) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
