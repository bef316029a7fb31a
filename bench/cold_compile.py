"""Cold compile time of the l1 kNN and l1 k-means paths (issue 13).

Runs each path on a tiny input in a fresh process with an empty
NUMBA_CACHE_DIR, so the time is almost all Numba compilation, then once more
with the cache filled (the cached load). Rough figures on a shared machine:

    python bench/cold_compile.py            # this checkout
    PYTHONPATH=/other/checkout python /other/checkout/bench/cold_compile.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PATHS = {
    "knn-l1-u8": "from numbaconc.neighbours import knn\n"
                 "X = np.random.default_rng(0).integers(0, 256, (300, 64), dtype=np.uint8)\n"
                 "knn(X, 5, metric='l1', include_self=False)",
    "kmeans-l1-u8": "from numbaconc.kmeans import kmeans\n"
                    "X = np.random.default_rng(0).integers(0, 256, (300, 64), dtype=np.uint8)\n"
                    "kmeans(X, 8, metric='l1', init='k-means++', random_state=0, max_iter=5)",
}


def run(code: str, cache: str) -> float:
    prog = ("import time, numpy as np\n"
            + code.replace("\n", "\nt0 = time.perf_counter()\n", 1)
            + "\nprint(time.perf_counter() - t0)\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", prog], env=env, check=True,
                         capture_output=True, text=True, cwd=ROOT).stdout
    return float(out.split()[-1])


def main():
    import numbaconc
    print(f"checkout {ROOT} (numbaconc from {Path(numbaconc.__file__).parent})")
    for name, code in PATHS.items():
        with tempfile.TemporaryDirectory() as cache:
            cold = run(code, cache)
            warm = run(code, cache)
        print(f"{name}: cold {cold:.1f} s, cached {warm:.2f} s")


if __name__ == "__main__":
    main()
