"""Time fit_balls on MNIST ball by ball, split into the exact path's GEMM and gains.

    python bench/profile_balls_fit.py 4.74            # eps in [0, 1] units * 255 pixel levels
    python bench/profile_balls_fit.py 1.58 --k 2000

Uses (or first computes and caches) the l2 neighbour lists of the bundled MNIST
training set; set NUMBACONC_CACHE to reuse an existing cache.
"""

import argparse
import time

from numbaconc import balls, datasets
from numbaconc.neighbours import cached_knn


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eps", type=float, help="l2 budget in [0, 1] pixel units (MNIST: 1.58, 3.16, 4.74)")
    parser.add_argument("--k", type=int, default=2000, help="neighbour list length")
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--balls", type=int, default=20)
    parser.add_argument("--delta", type=float, default=0.25)
    args = parser.parse_args()

    ds = datasets.open_dataset("mnist")
    X = ds.train.array()
    t0 = time.perf_counter()
    lists, _ = cached_knn(ds, args.k, metric="l2", split="train", include_self=True)
    print(f"neighbour lists (K={args.k}): {time.perf_counter() - t0:.1f} s")

    # wrap the exact path to split its time into the GEMM (fill) and the gains
    stats = dict(gemm=0.0, gains=0.0, rows=0)
    fill, gains = balls._ExactEvaluator.fill, balls._k.gains_from_rows

    def timed_fill(self, rows):
        t = time.perf_counter()
        out = fill(self, rows)
        stats["gemm"] += time.perf_counter() - t
        return out

    def timed_gains(*a):
        t = time.perf_counter()
        out = gains(*a)
        stats["gains"] += time.perf_counter() - t
        stats["rows"] += a[1]
        return out

    balls._ExactEvaluator.fill, balls._k.gains_from_rows = timed_fill, timed_gains
    last = [time.perf_counter()]

    def progress(done, total):
        now = time.perf_counter()
        print(f"ball {done}/{total}: {now - last[0]:.1f} s  (exact GEMM {stats['gemm']:.1f} s, "
              f"gains {stats['gains']:.1f} s, rows evaluated {stats['rows']})", flush=True)
        last[0] = now

    t0 = time.perf_counter()
    fit = balls.fit_balls(X, args.alpha, args.eps * 255, args.balls, delta=args.delta,
                          neighbors=lists, progress=progress)
    print(f"fit: {time.perf_counter() - t0:.1f} s, train risk {fit.risk:.4f}, "
          f"train adv risk {fit.adv_risk:.4f}")


if __name__ == "__main__":
    main()
