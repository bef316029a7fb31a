"""Benchmark: the l2 union-of-balls greedy (METHOD.md s4) on real MNIST / CIFAR-10.

    python bench/bench_balls.py mnist   [--k 1200] [--threads 2]
    python bench/bench_balls.py cifar10 [--k 5000]
    python bench/bench_balls.py brute   [--n 5000]   # 2019-style all-pairs numpy, per ball

Prints markdown blocks to paste into bench/RESULTS-balls.md. Steps:
1. correctness: fit_balls against the brute-force reference (tests/reference_balls.py)
   on a real subset, before anything is timed;
2. warm-up (JIT compile) on a small subset, excluded from the timings;
3. the neighbour step (numbaconc.neighbours.knn, exact l2 lists) timed once, then
   fit_balls for each epsilon on the same lists, and ball_coverage on the test set.
The "brute" mode times the 2019 approach (every candidate against all n points,
per ball) in plain numpy on a subset, checks it gives the same first ball as
fit_balls, and extrapolates per-ball time as n**2 to the full set (labelled so).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _blas import set_coretype  # noqa: E402 (bench/ is on sys.path)
from _load import load_line  # noqa: E402

set_coretype()  # before numpy / faiss load OpenBLAS
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import numba  # noqa: E402

from numbaconc.balls import ball_coverage, fit_balls  # noqa: E402
from numbaconc.datasets import read_idx  # noqa: E402

DATA = HERE.parent.parent / "shared" / "data"
PAPER = {  # METHOD.md s7, test set: (risk %, adversarial risk %)
    ("mnist", 1.58): (1.07, 2.19), ("mnist", 3.16): (1.02, 4.15), ("mnist", 4.74): (1.07, 10.09),
    ("cifar10", 0.2453): (5.16, 5.53), ("cifar10", 0.4905): (5.14, 5.83),
    ("cifar10", 0.9810): (5.12, 6.56),
}
SETTINGS = {  # alpha, T, delta, eps list ([0,1] units), paper K
    "mnist": (0.01, 20, 0.25, [1.58, 3.16, 4.74]),
    "cifar10": (0.05, 5, 0.0, [0.2453, 0.4905, 0.9810]),
}


def machine() -> str:
    model = "?"
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name"):
            model = line.split(":", 1)[1].strip()
    import scipy
    import sklearn

    return (f"- CPU: {model}, {os.cpu_count()} logical cores; Python {platform.python_version()}, "
            f"numba {numba.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, "
            f"scikit-learn {sklearn.__version__}\n"
            f"- numba threads: {numba.get_num_threads()}; "
            f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}\n"
            f"- load before: {load_line()}\n"
            f"- command: `{' '.join([Path(sys.executable).name] + sys.argv)}`")


def load(name):
    if name == "mnist":
        src = DATA / "mnist"
        tr = read_idx(src / "train-images-idx3-ubyte.gz", 2051)
        te = read_idx(src / "t10k-images-idx3-ubyte.gz", 2051)
        return (np.ascontiguousarray(tr.reshape(len(tr), -1)),
                np.ascontiguousarray(te.reshape(len(te), -1)))
    with np.load(DATA / "cifar-10" / "cifar10.npz") as z:
        tr, te = z["x_train"], z["x_test"]
    return (np.ascontiguousarray(tr.reshape(len(tr), -1).astype(np.uint8)),
            np.ascontiguousarray(te.reshape(len(te), -1).astype(np.uint8)))


def check_subset(X, alpha, eps_storage, T, delta, n_sub=1500, k=None):
    """fit_balls == brute-force definition on the first n_sub rows (real data)."""
    from reference_balls import Knn, fit_balls_ref

    Xs = np.ascontiguousarray(X[:n_sub])
    k = k or 2 * math.ceil(alpha * n_sub)
    ref = fit_balls_ref(Xs, alpha, eps_storage, T, delta)
    fit = fit_balls(Xs, alpha, eps_storage, T, delta=delta, neighbors=Knn(Xs, k))
    assert np.array_equal(fit.center_index, ref[0]) and np.array_equal(fit.radii_sq, ref[1])
    assert np.array_equal(fit.covered, ref[3]) and np.array_equal(fit.expanded, ref[4])
    return f"- correctness: fit_balls == brute-force reference on the first {n_sub} rows " \
           f"(alpha={alpha}, eps={eps_storage:g} storage units, T={T}, delta={delta}, K={k}): OK"


def run_dataset(name, k, eps_list=None):
    from numbaconc.neighbours import knn

    alpha, T, delta, eps_all = SETTINGS[name]
    eps_list = eps_list or eps_all
    X, Xt = load(name)
    n = len(X)
    print(f"## {name}: n={n}, d={X.shape[1]}, alpha={alpha}, T={T}, delta={delta}, K={k}\n")
    print(machine())
    print(check_subset(X, alpha, eps_list[0] * 255, min(T, 5), delta))
    # warm-up: compile every kernel for this dtype (excluded from timings)
    w = np.ascontiguousarray(X[:300])
    knn(w, 10, metric="l2")
    fit_balls(w, alpha * 10, eps_list[0] * 255, 2, delta=delta, n_neighbors=10)
    ball_coverage(w, w[:2].astype(np.float64), np.ones(2), 1.0)

    t0 = time.perf_counter()
    nb = knn(X, k, metric="l2")
    t_knn = time.perf_counter() - t0
    print(f"- neighbour step `knn(X, {k}, metric='l2')`: {t_knn:.1f} s "
          f"(load after: {os.getloadavg()[0]:.2f})\n")
    print("| eps ([0,1]) | eps (pixel levels) | fit time (s) | knn + fit (s) | balls | "
          "exact candidates (sum over balls) | train risk | train adv risk | test risk | "
          "test adv risk | paper test risk / adv risk | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for eps in eps_list:
        e = eps * 255.0
        t0 = time.perf_counter()
        fit = fit_balls(X, alpha, e, T, delta=delta, neighbors=nb)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        inside, grown = ball_coverage(Xt, fit.centers, fit.radii_sq, e)
        t_cov = time.perf_counter() - t0
        ex = sum(h["candidates_exact"] for h in fit.history)
        pr = PAPER.get((name, eps), ("?", "?"))
        row = dict(eps=eps, t_fit=t_fit, t_knn=t_knn, t_cov=t_cov, balls=len(fit.radii),
                   exact=ex, train_risk=100 * fit.risk, train_adv=100 * fit.adv_risk,
                   test_risk=100 * inside.mean(), test_adv=100 * grown.mean(),
                   history=fit.history)
        rows.append(row)
        print(f"| {eps} | {e:.2f} | {t_fit:.1f} | {t_knn + t_fit:.1f} | {len(fit.radii)} | {ex} | "
              f"{row['train_risk']:.2f} % | {row['train_adv']:.2f} % | {row['test_risk']:.2f} % | "
              f"{row['test_adv']:.2f} % | {pr[0]} % / {pr[1]} % | {os.getloadavg()[0]:.2f} |",
              flush=True)
    out = Path(tempfile.gettempdir()) / f"bench_balls_{name}.json"
    out.write_text(json.dumps(rows, default=float, indent=1))
    print(f"\n(per-ball history written to {out})")


def brute_first_ball(X, alpha, eps, T, delta, block=256):
    """The 2019 approach for one ball, plain numpy: every candidate against all n
    points (exact float64 GEMM for integer data), every m in [n_lo, n_hi]."""
    n = len(X)
    N = math.ceil(alpha * n * (1 + delta) - 1e-9)
    n_lo, n_hi = math.ceil(N / T), N
    Xf = X.astype(np.float64)
    sq = (Xf * Xf).sum(1)
    best = None
    ms = np.arange(n_lo, n_hi + 1)
    for a in range(0, n, block):
        D2 = sq[a:a + block, None] + sq[None, :] - 2.0 * (Xf[a:a + block] @ Xf.T)
        D2.sort(axis=1)  # nothing covered or expanded yet for ball 0
        for r, row in enumerate(D2):
            r2 = row[ms - 1]
            C = np.searchsorted(row, r2, side="right")
            E = np.searchsorted(row, np.maximum(r2, (np.sqrt(r2) + eps) ** 2), side="right")
            g = E - C
            j = int(np.argmin(g))
            key = (int(g[j]), a + r, float(r2[j]))
            if best is None or key < best:
                best = key
    return best


def run_brute(n_sub):
    alpha, T, delta, eps_all = SETTINGS["mnist"]
    X, _ = load("mnist")
    Xs = np.ascontiguousarray(X[:n_sub])
    print(f"## 2019-style brute force (plain numpy), MNIST first {n_sub} rows, first ball\n")
    print(machine())
    for eps in eps_all[:1]:
        e = eps * 255
        t0 = time.perf_counter()
        g, i, r2 = brute_first_ball(Xs, alpha, e, T, delta)
        t_b = time.perf_counter() - t0
        from numbaconc.neighbours import knn

        nb = knn(Xs, 2 * math.ceil(alpha * n_sub), metric="l2")
        fit_balls(Xs, alpha, e, 1, delta=delta, neighbors=nb)  # warm
        t0 = time.perf_counter()
        fit = fit_balls(Xs, alpha, e, T, delta=delta, neighbors=nb)
        t_f = time.perf_counter() - t0
        h = fit.history[0]
        assert (h["gain"], h["center_index"], h["radius_sq"]) == (g, i, r2), (h, g, i, r2)
        scale = (60000 / n_sub) ** 2
        print(f"- eps={eps}: brute first ball {t_b:.1f} s at n={n_sub} (same ball as fit_balls: "
              f"gain {g}, centre {i}, r^2 {r2:g}); extrapolated as n^2 to n=60000: "
              f"{t_b * scale / 60:.1f} min per ball, {20 * t_b * scale / 3600:.1f} h for T=20 "
              f"(estimate, not measured); "
              f"fit_balls all {len(fit.radii)} balls at n={n_sub}: {t_f:.2f} s "
              f"(load {os.getloadavg()[0]:.2f})")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["mnist", "cifar10", "brute"])
    p.add_argument("--k", type=int, default=None)
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eps", type=float, nargs="*", default=None)
    a = p.parse_args()
    numba.set_num_threads(a.threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(a.threads)
    except ImportError:
        pass
    if a.mode == "brute":
        run_brute(a.n)
    else:
        alpha, n = SETTINGS[a.mode][0], {"mnist": 60000, "cifar10": 50000}[a.mode]
        run_dataset(a.mode, a.k or 2 * math.ceil(alpha * n), a.eps)


if __name__ == "__main__":
    main()
