"""Benchmark: numbaconc k-means (l2) and box coverage on MNIST, against peers.

    python bench/bench_kmeans.py [--repeats 5] [--out bench/RESULTS-kmeans.md]

k-means: all 60000 x 784 MNIST training rows, T = 10 and 40, the same initial
centres (rows drawn with default_rng(0)), 30 Lloyd iterations, 2 threads each:
  * numbaconc.kmeans (uint8 rows as stored; max_iter=30)
  * scikit-learn KMeans(init=C0, n_init=1, max_iter=30, tol=0, algorithm="lloyd")
    on a float32 copy (made once, outside the timing; threadpoolctl limits
    its OpenMP/BLAS to 2 threads)
  * faiss.Kmeans(niter=30, no subsampling) on the same float32 copy,
    train(init_centroids=C0), faiss.omp_set_num_threads(2)
Correctness is checked first (centres and label agreement with sklearn).
Every timed run follows a warm-up run; the methods run interleaved, once per
repeat, so background load hits them alike; we report median, min and max.

box coverage: 10 boxes from a numbaconc k-means (l1, as the 2019 code) on the
dense 66 % of MNIST train, membership of all 60000 train rows at margin 0 and
25.5 (eps = 0.1), numbaconc.box_coverage vs a blockwise numpy broadcast.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

from _blas import set_coretype  # noqa: E402 (bench/ is on sys.path)
from _load import load_line  # noqa: E402

set_coretype()  # before numpy / faiss load OpenBLAS

import numpy as np  # noqa: E402

N_THREADS = 2


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPUs"


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def summary(ts):
    return statistics.median(ts), min(ts), max(ts)


def numpy_coverage(X, C, W, margin, block=2000):
    """The obvious numpy version: broadcast |x - c| <= w per block of rows."""
    inside = np.empty(len(X), bool)
    grown = np.empty(len(X), bool)
    for a in range(0, len(X), block):
        dev = np.abs(X[a:a + block, None, :].astype(np.float64) - C[None])
        inside[a:a + block] = (dev <= W).all(axis=2).any(axis=1)
        grown[a:a + block] = (dev <= W + margin).all(axis=2).any(axis=1)
    return inside, grown


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--clusters", type=int, nargs="+", default=[10, 40])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import faiss
    import numba
    import sklearn
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    import numbaconc
    from numbaconc.boxes_coverage import box_coverage, boxes_from_clusters
    from numbaconc.datasets import open_dataset
    from numbaconc.kmeans import kmeans

    numba.set_num_threads(N_THREADS)
    faiss.omp_set_num_threads(N_THREADS)
    X = open_dataset("mnist").train.array()  # read-only memmap, uint8
    n, d = X.shape
    Xf = X.astype(np.float32)  # the peers' input format; not timed
    lines = []
    log = lines.append
    load_before = load_line()

    log(f"## k-means l2, MNIST train {n} x {d}, 30 iterations, {N_THREADS} threads\n")
    log("| T | method | median s | min s | max s | s / iteration | speed-up vs numbaconc |")
    log("|---|---|---|---|---|---|---|")
    kmeans_rows = []
    for T in args.clusters:
        C0 = X[np.random.default_rng(0).choice(n, T, replace=False)].astype(np.float64)

        def run_ours():
            return kmeans(X, T, init=C0, max_iter=30)

        def run_sklearn():
            with threadpool_limits(N_THREADS):
                return KMeans(T, init=C0.astype(np.float32), n_init=1, max_iter=30, tol=0,
                              algorithm="lloyd").fit(Xf)

        def run_faiss():
            km = faiss.Kmeans(d, T, niter=30, verbose=False, seed=0,
                              max_points_per_centroid=n, min_points_per_centroid=1)
            km.train(Xf, init_centroids=C0.astype(np.float32))
            return km

        # warm-up (compiles the kernels) and correctness
        ours, sk, fk = run_ours(), run_sklearn(), run_faiss()
        assert ours.n_iter == 30, ours.n_iter
        scale = np.abs(ours.centers).max()
        diff_sk = np.abs(ours.centers - sk.cluster_centers_).max() / scale
        diff_fk = np.abs(ours.centers - fk.centroids).max() / scale
        agree = float((ours.labels == sk.labels_).mean())
        print(f"T={T}: max |centre diff| / max |centre|: sklearn {diff_sk:.2e}, faiss {diff_fk:.2e}; "
              f"label agreement with sklearn {agree:.5f}", flush=True)
        assert diff_sk < 1e-2 and diff_fk < 1e-2 and agree > 0.99

        times = {"numbaconc": [], "scikit-learn": [], "faiss": []}
        for _ in range(args.repeats):
            times["numbaconc"].append(timed(run_ours)[0])
            times["scikit-learn"].append(timed(run_sklearn)[0])
            times["faiss"].append(timed(run_faiss)[0])
        ours_med = statistics.median(times["numbaconc"])
        for name, ts in times.items():
            med, lo, hi = summary(ts)
            log(f"| {T} | {name} | {med:.3f} | {lo:.3f} | {hi:.3f} | {med / 30 * 1000:.1f} ms | "
                f"{med / ours_med:.2f}x |")
        kmeans_rows.append((T, diff_sk, diff_fk, agree, ours))
        print("\n".join(lines[-3:]), flush=True)

    log("\nCorrectness before timing (numbaconc vs peers after 30 iterations):\n")
    for T, diff_sk, diff_fk, agree, ours in kmeans_rows:
        scores = sum(h["n_scores"] for h in ours.history)
        log(f"- T={T}: max |centre difference| / max |centre| = {diff_sk:.1e} (sklearn), "
            f"{diff_fk:.1e} (faiss); labels equal to sklearn's on {agree * 100:.3f} % of rows; "
            f"numbaconc scored {scores / (30 * n * T) * 100:.1f} % of the row-centre pairs "
            f"(the rest were decided by distance bounds)")

    # ---------------------------------------------------------- box coverage
    rng = np.random.default_rng(0)
    dense = np.sort(rng.choice(n, int(0.66 * n), replace=False))  # stand-in for the dense set
    Xd = np.ascontiguousarray(X[dense])
    km = kmeans(Xd, 10, metric="l1", random_state=0)
    C, W = boxes_from_clusters(Xd, km.labels, 10, centers=km.centers)
    margin = 0.1 * 255
    ours_cov = box_coverage(X, C, W, margin)
    ref_cov = numpy_coverage(X, C, W, margin)
    assert (ours_cov[0] == ref_cov[0]).all() and (ours_cov[1] == ref_cov[1]).all()
    tb = {"numbaconc": [], "numpy": []}
    for _ in range(args.repeats):
        tb["numbaconc"].append(timed(lambda: box_coverage(X, C, W, margin))[0])
        tb["numpy"].append(timed(lambda: numpy_coverage(X, C, W, margin))[0])
    log(f"\n## box coverage, MNIST train {n} rows, T=10 symmetric boxes, margins 0 and 25.5 in one pass\n")
    log(f"Inside a box: {ours_cov[0].mean() * 100:.2f} % of rows, inside a grown box: "
        f"{ours_cov[1].mean() * 100:.2f} % (identical to numpy's answer).\n")
    log("| method | median s | min s | max s | rows / s | speed-up vs numbaconc |")
    log("|---|---|---|---|---|---|")
    ours_med = statistics.median(tb["numbaconc"])
    for name, ts in tb.items():
        med, lo, hi = summary(ts)
        log(f"| {name} | {med:.4f} | {lo:.4f} | {hi:.4f} | {n / med:,.0f} | {med / ours_med:.1f}x |")

    load_after = load_line()
    header = [
        "# numbaconc k-means and box coverage benchmark",
        "",
        f"- machine: {cpu_model()}, {platform.platform()}",
        f"- python {platform.python_version()}, numbaconc {numbaconc.__version__}, numba {numba.__version__}, "
        f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, faiss-cpu {faiss.__version__}",
        f"- threads: {N_THREADS} for every method (numba.set_num_threads, threadpoolctl, "
        f"faiss.omp_set_num_threads); OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}",
        f"- command: `{' '.join([os.path.basename(sys.executable)] + sys.argv)}`",
        f"- repeats: {args.repeats} (after one warm-up each), methods interleaved",
        f"- load before: `{load_before}`",
        f"- load after: `{load_after}`",
        "",
    ]
    text = "\n".join(header + lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
