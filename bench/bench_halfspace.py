"""Half-space estimators on the bundled MNIST, side by side with plain numpy / scikit-learn.

    python bench/bench_halfspace.py [--components 784] [--repeats 3] [--out bench/RESULTS-halfspace.md]

1. Figures: the Prescott et al. search (all components x DEFAULT_POWERS) and the
   top-PC half-space under l-inf (eps 0.1..0.4) and l2 (eps 1.58, 3.16, 4.74),
   alpha = 0.01, with train/test risk and adversarial risk (95 % Clopper-Pearson
   interval on test), next to the 2019 paper's figures.
2. Steps against the alternatives a user would write, correctness checked first,
   warm-up excluded, median of repeats:
   - covariance + eigh (numbaconc, uint8 row blocks) vs scikit-learn PCA;
   - projection of X onto a batch of directions (numbaconc: per-block float32
     cast + matmul into a (batch, n) buffer) vs numpy X.astype(float32) @ W;
   - quantiles + counts per direction (numba histogram select + count) vs numpy
     np.partition + comparisons;
   - the whole search vs a plain numpy search over the same directions.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numba
import numpy as np
import scipy
import sklearn
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_info, threadpool_limits

from _load import load_line  # bench/ is on sys.path

from numbaconc.datasets import open_dataset
from numbaconc.halfspace import (
    DEFAULT_POWERS, _directions, _Projector, _quantile_rank, fit_halfspace, fit_halfspace_curve,
    halfspace_risks, principal_components,
)
from numbaconc.kernels import halfspace as K
from numbaconc.stats import clopper_pearson

ALPHA = 0.01
LINF = [(0.1, 3.64), (0.2, 5.89), (0.3, 7.24), (0.4, 9.92)]  # 2019 boxes, test adv risk %
L2 = [(1.58, 3.92, 2.19), (3.16, 9.73, 4.15), (4.74, 23.40, 10.09)]  # top-PC half-space %, balls %


def load() -> str:
    return open("/proc/loadavg").read().split()[:3].__str__()


def machine() -> list[str]:
    model = "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except Exception:  # noqa: BLE001 - informational only
        pass
    blas = [f"{i['internal_api']} {i.get('version')} ({i.get('architecture')}, {i['num_threads']} threads)"
            for i in threadpool_info()]
    return [
        f"- CPU: {model}, {os.cpu_count()} cores; Python {platform.python_version()}",
        f"- numba {numba.__version__} ({numba.get_num_threads()} threads), numpy {np.__version__}, "
        f"scipy {scipy.__version__}, scikit-learn {sklearn.__version__}",
        f"- BLAS: {'; '.join(blas)}",
    ]


def timed(fn, repeats: int):
    """(median seconds, min, max, last result) after one warm-up call."""
    result = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times), max(times), result


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def figures(ds, n_components: int, lines: list[str]):
    X, Xt = ds.train.x, ds.test.x
    lines += ["## Figures (alpha = 0.01; % of points; test interval: 95 % Clopper-Pearson)", "",
              f"Search: {n_components} components x powers {DEFAULT_POWERS} x 2 sides; "
              "b at alpha' = alpha + 0.5/sqrt(n). Top PC: b at alpha, better side. "
              "Time = one `fit_halfspace_curve` call for all epsilons of the metric (covariance + eigh + "
              "search + float64 re-fits), kernels compiled beforehand. "
              "A test adversarial risk is a valid estimate only where the test risk is >= alpha.", "",
              "| metric | eps | method | curve time s | comp | power | train risk | train adv | test risk | "
              "test adv [95 % CI] | paper |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for metric, table in (("linf", LINF), ("l2", L2)):
        eps_list = [row[0] for row in table]
        for method in ("search", "pca"):
            t = time.perf_counter()
            fits = fit_halfspace_curve(X, ALPHA, [e / ds.scale for e in eps_list], metric=metric,
                                       method=method,
                                       n_components=n_components if method == "search" else None)
            dt = time.perf_counter() - t
            for row, fit in zip(table, fits):
                n_in, n_eps, m = halfspace_risks(Xt, fit)
                lo, hi = clopper_pearson(n_eps, m)
                paper = f"boxes {row[1]:.2f}" if metric == "linf" else f"top-PC {row[1]:.2f}; balls {row[2]:.2f}"
                lines.append(
                    f"| {metric} | {row[0]} | {method} | {dt:.1f} | {fit.component} | {fit.power:g} | "
                    f"{pct(fit.train_risk)} | {pct(fit.train_adv_risk)} | {pct(n_in / m)} | "
                    f"{pct(n_eps / m)} [{pct(lo)}, {pct(hi)}] | {paper} |")
                print(lines[-1], "load", load(), flush=True)
    lines.append("")


def validation(ds, n_components: int, lines: list[str]):
    """The leak-free protocol: fit thresholds on train[:50000], pick on train[50000:]."""
    X, Xv, Xt = ds.train.x[:50000], ds.train.x[50000:], ds.test.x
    lines += ["## Validation protocol (l-inf search; thresholds from train[:50000], winner picked on "
              "train[50000:] among candidates with validation risk >= alpha; test touched only to report)", "",
              "| eps | curve time s | comp | power | train risk | train adv | val risk | val adv | test risk | "
              "test adv [95 % CI] |", "|---|---|---|---|---|---|---|---|---|---|"]
    eps_list = [row[0] for row in LINF]
    t = time.perf_counter()
    fits = fit_halfspace_curve(X, ALPHA, [e / ds.scale for e in eps_list], metric="linf",
                               n_components=n_components, X_select=Xv)
    dt = time.perf_counter() - t
    for eps, fit in zip(eps_list, fits):
        n_in, n_eps, m = halfspace_risks(Xt, fit)
        lo, hi = clopper_pearson(n_eps, m)
        lines.append(f"| {eps} | {dt:.1f} | {fit.component} | {fit.power:g} | {pct(fit.train_risk)} | "
                     f"{pct(fit.train_adv_risk)} | {pct(fit.select_risk)} | {pct(fit.select_adv_risk)} | "
                     f"{pct(n_in / m)} | {pct(n_eps / m)} [{pct(lo)}, {pct(hi)}] |")
        print(lines[-1], "load", load(), flush=True)
    lines.append("")


def numpy_search(Xf, W, dual, eps, k, batch):
    """The plain numpy search a user would write: float32 copy, matmul, partition, count."""
    n = Xf.shape[0]
    best = (2.0, -1, 0)
    for start in range(0, W.shape[1], batch):
        Wb = W[:, start:start + batch].astype(np.float32)
        P = Xf @ Wb
        part = np.partition(P, [k - 1, n - k], axis=0)
        b_lo, b_hi = part[k - 1], part[n - k]
        sh = (eps * dual[start:start + batch]).astype(np.float64)
        adv_hi = (P >= (b_hi - sh)).sum(0)
        adv_lo = (P <= (b_lo + sh)).sum(0)
        for r in range(P.shape[1]):
            for side, adv in ((1, adv_hi[r]), (-1, adv_lo[r])):
                if adv / n < best[0]:
                    best = (adv / n, start + r, side)
    return best


def steps(ds, n_components: int, repeats: int, lines: list[str]):
    X = ds.train.x
    n, d = X.shape
    eps = 0.3 / ds.scale
    k = _quantile_rank(ALPHA + 0.5 / math.sqrt(n), n)
    lines += ["## Steps against the alternatives (MNIST train 60000 x 784 uint8; "
              f"median of {repeats} after a warm-up; [min, max])", "",
              "| step | numbaconc s | alternative | alternative s | speed-up | check |",
              "|---|---|---|---|---|---|"]

    # covariance + eigh vs scikit-learn PCA (covariance_eigh solver = same algorithm in sklearn)
    t_ours = timed(lambda: principal_components(X), repeats)
    values, V = t_ours[3]
    solver = "covariance_eigh" if tuple(int(p) for p in sklearn.__version__.split(".")[:2]) >= (1, 5) else "full"
    t_sk = timed(lambda: PCA(n_components=10, svd_solver=solver).fit(X), repeats)
    agree = abs(abs(float(t_sk[3].components_[0] @ V[:, 0])) - 1)
    lines.append(f"| covariance + eigh (top PCs) | {t_ours[0]:.2f} [{t_ours[1]:.2f}, {t_ours[2]:.2f}] | "
                 f"sklearn PCA(svd_solver={solver!r}) | {t_sk[0]:.2f} [{t_sk[1]:.2f}, {t_sk[2]:.2f}] | "
                 f"{t_sk[0] / t_ours[0]:.2f}x | top PC |cos|-1 = {agree:.1e} |")
    print(lines[-1], "load", load(), flush=True)

    W, dual, labels = _directions(V, n_components, DEFAULT_POWERS, "linf")
    for batch in (64, 256):
        batch = min(batch, W.shape[1])
        Wb = W[:, :batch]
        Wt = np.ascontiguousarray(Wb.T, dtype=np.float32)
        proj = _Projector(X, batch, "X")
        t_ours = timed(lambda: proj(Wt), repeats)
        P = t_ours[3].copy()

        def numpy_proj():
            return np.asarray(X).astype(np.float32) @ Wb.astype(np.float32)

        t_np = timed(numpy_proj, repeats)
        err = float(np.abs(t_np[3].T - P).max())
        lines.append(f"| projection, {batch} directions | {t_ours[0]:.3f} [{t_ours[1]:.3f}, {t_ours[2]:.3f}] | "
                     f"numpy X.astype(float32) @ W | {t_np[0]:.3f} [{t_np[1]:.3f}, {t_np[2]:.3f}] | "
                     f"{t_np[0] / t_ours[0]:.2f}x | max abs diff {err:.1e} |")
        print(lines[-1], "load", load(), flush=True)

        sh = np.ascontiguousarray(eps * dual[:batch])
        b_hi, b_lo = np.empty(batch, np.float32), np.empty(batch, np.float32)
        counts = np.empty((batch, 1, 4), np.int64)

        def ours_select():
            K.select_thresholds(P, k, b_hi, b_lo)
            K.count_sides(P, b_hi, b_lo, sh[:, None], counts)

        t_ours = timed(ours_select, repeats)
        PT = np.ascontiguousarray(P.T)  # numpy's natural (n, batch) layout

        def numpy_select():
            part = np.partition(PT, [k - 1, n - k], axis=0)
            lo, hi = part[k - 1], part[n - k]
            return hi, lo, np.stack([(PT >= hi).sum(0), (PT >= hi - sh).sum(0),
                                     (PT <= lo).sum(0), (PT <= lo + sh).sum(0)], axis=1)

        t_np = timed(numpy_select, repeats)
        same = (np.array_equal(t_np[3][0], b_hi) and np.array_equal(t_np[3][1], b_lo)
                and np.array_equal(t_np[3][2], counts[:, 0]))
        lines.append(f"| quantiles + counts, {batch} directions | {t_ours[0]:.3f} [{t_ours[1]:.3f}, "
                     f"{t_ours[2]:.3f}] | numpy partition + compare | {t_np[0]:.3f} [{t_np[1]:.3f}, "
                     f"{t_np[2]:.3f}] | {t_np[0] / t_ours[0]:.2f}x | identical: {same} |")
        print(lines[-1], "load", load(), flush=True)

    # whole search under linf eps = 0.3, numbaconc vs plain numpy (one run each: tens of seconds).
    # Both include the same covariance + eigh (numbaconc's, timed above) so the totals compare.
    n_dir = W.shape[1]
    t = time.perf_counter()
    fit = fit_halfspace(X, ALPHA, eps, metric="linf", n_components=n_components)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    _, V_np = principal_components(X)
    W_np, dual_np, labels_np = _directions(V_np, n_components, DEFAULT_POWERS, "linf")
    Xf = np.asarray(X).astype(np.float32)
    adv, j, side = numpy_search(Xf, W_np, dual_np, eps, k, 256)
    del Xf
    t_np = time.perf_counter() - t
    c, e = labels_np[j]
    lines.append(f"| whole search, {n_dir} directions x 2 sides (linf eps 0.3), one run each, "
                 f"both incl. covariance + eigh | {t_ours:.1f} | plain numpy (float32 copy of X, matmul, "
                 f"partition, compare; batch 256) | {t_np:.1f} | {t_np / t_ours:.2f}x | same winner: "
                 f"{(c, e, side) == (fit.component, fit.power, fit.side)} (numpy float32 adv {pct(adv)} %, "
                 f"numbaconc float64 re-fit {pct(fit.train_adv_risk)} %) |")
    print(lines[-1], "load", load(), flush=True)
    lines.append("")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--components", type=int, default=784)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-figures", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS-halfspace.md")))
    args = parser.parse_args()
    ds = open_dataset("mnist")
    # compile every kernel and signature (read-only memmap included) before timing
    fit_halfspace(ds.train.x[:2000], ALPHA, 25.0, metric="linf", n_components=4, batch=8)
    halfspace_risks(ds.test.x[:100], fit_halfspace(ds.train.x[:500], 0.1, 1.0, metric="l2", method="pca"))
    with threadpool_limits(numba.get_num_threads()):
        lines = ["# Half-space estimators: benchmark (bench/bench_halfspace.py)", "",
                 f"Command: `{' '.join([os.path.basename(sys.executable)] + sys.argv)}` "
                 f"(run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", ""]
        lines += machine()
        lines += [f"- BLAS and numba both at {numba.get_num_threads()} threads; load at start: {load_line()}", ""]
        if not args.skip_figures:
            figures(ds, args.components, lines)
            validation(ds, args.components, lines)
        steps(ds, args.components, args.repeats, lines)
        lines += [f"Load at end: {load()}", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
