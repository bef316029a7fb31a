"""Under a real memory cap (../shared/tools/memcap, a cgroup): the l2 kNN and
the balls fit (and the holdout balls row, exact and with sampled candidates)
run in a subprocess with a cap below what the code before the compact lists
needed, and give exactly the figures of the uncapped run.

Sizes (n = 8000, d = 64, K = 4000): the lists alone were 8000 x 4000 x 16 B =
512 MB as int64 + float64, held twice at the end of the search (top-k state
and output), plus the balls' copies: over 1.1 GB. Now, under a 64M budget,
the search writes int32 lists (256 MB) into the cache file and everything
reads them through a memmap; the cap is 600M, page cache included.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

MEMCAP = Path(__file__).resolve().parents[1].parent / "shared" / "tools" / "memcap"
CAP = "600M"
BUDGET = "64M"
N, SIDE, K = 8000, 8, 4000


def _memcap_problem():
    if not MEMCAP.is_file():
        return f"{MEMCAP} not found"
    if os.geteuid() != 0:
        return "memcap needs root (cgroups)"
    try:
        done = subprocess.run([str(MEMCAP), "100M", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"memcap does not run here: {exc}"
    if done.returncode != 0:
        return f"cgroups unavailable: {done.stderr.decode(errors='replace').strip()}"
    return None


def workload(data_path: str) -> dict:
    """All-pairs l2 kNN (K) and a 5-ball fit, computed and then served from the
    cache; the figures as digests and plain numbers. At alpha = 0.7 the last
    balls need more than K neighbours: thousands of candidates go through the
    exact (streamed GEMM) evaluation, whose batch size follows the budget."""
    from numbaconc import datasets
    from numbaconc.balls import fit_balls
    from numbaconc.integrity import array_digest
    from numbaconc.neighbours import cached_knn

    out = {}
    with datasets.open_dataset(data_path) as ds:
        for attempt in ("computed", "cached"):
            lists, _ = cached_knn(ds, K, metric="l2")
            fit = fit_balls(ds.train.x, 0.7, 30.0, 5, neighbors=lists)
            out[attempt] = dict(
                lists=array_digest(lists.indices, lists.stored),
                memmap=isinstance(lists.indices, np.memmap),
                centers=fit.center_index.tolist(), radii_sq=fit.radii_sq.tolist(),
                covered=array_digest(fit.covered), expanded=array_digest(fit.expanded),
                risk=fit.risk, adv_risk=fit.adv_risk,
                exact=sum(h["candidates_exact"] for h in fit.history) > 0)
    return out


@pytest.fixture(scope="module")
def capped_data(tmp_path_factory):
    problem = _memcap_problem()
    if problem:
        pytest.skip(problem)
    from conftest import make_tiny_images
    from numbaconc.datasets import write_dataset

    x_train, _ = make_tiny_images(N, side=SIDE, n_modes=6, seed=3)
    x_test, _ = make_tiny_images(500, side=SIDE, n_modes=6, seed=4)
    path = tmp_path_factory.mktemp("capped") / "capped.h5"
    write_dataset(path, name="capped", train_x=x_train, test_x=x_test, image_shape=(SIDE, SIDE),
                  checksum="capped-v1", source="tests")
    return path


def _run_capped(workload_name: str, data_path, tmp_path) -> dict:
    """``workload_name(data_path)`` in a subprocess under memcap CAP at the
    BUDGET, with a cache folder of its own; its JSON result (the memcap line
    is printed: shown with -s)."""
    env = dict(os.environ, NUMBACONC_CACHE=str(tmp_path / "cache"), NUMBACONC_MEMORY=BUDGET,
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parent)]
                                          + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    # the Numba cache is inherited (NUMBA_CACHE_DIR if set, else beside the
    # sources): the in-process run before already compiled most kernels
    code = (f"import json, sys; from test_memory_caps import {workload_name}; "
            f"print(json.dumps({workload_name}(sys.argv[1])))")
    done = subprocess.run([str(MEMCAP), CAP, sys.executable, "-c", code, str(data_path)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, f"capped run failed ({done.returncode}): {done.stderr[-2000:]}"
    peak = [line for line in done.stderr.splitlines() if line.startswith("memcap:")]
    assert peak, done.stderr[-2000:]
    print(peak[-1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_knn_and_balls_under_a_cap_equal_the_uncapped_run(capped_data, tmp_path):
    uncapped = workload(str(capped_data))  # in process, default budget: lists in memory
    assert not uncapped["computed"]["memmap"]
    capped = _run_capped("workload", capped_data, tmp_path)
    assert capped["computed"]["memmap"] and capped["cached"]["memmap"]
    assert uncapped["computed"]["exact"] and len(uncapped["computed"]["centers"]) == 5
    for attempt in ("computed", "cached"):
        got = {k: v for k, v in capped[attempt].items() if k != "memmap"}
        want = {k: v for k, v in uncapped["computed"].items() if k != "memmap"}
        assert got == want, attempt


def holdout_workload(data_path: str) -> dict:
    """The holdout balls row as ``measure`` runs it (whole-set lists from the
    cache, read off for the fitting subset), exact and with sampled candidates:
    every figure, the params and the region's centres and radii."""
    from numbaconc import datasets
    from numbaconc.concentration import measure

    out = {}
    with datasets.open_dataset(data_path) as ds:
        for name, extra in (("exact", {}), ("sampled", dict(candidates=600))):
            for attempt in ("computed", "cached"):
                result = measure(ds, metric="l2", alpha=0.2, epsilon=30 / 255, method="balls",
                                 protocol="holdout", clusters=4, **extra)
                region = result.pop("_region")
                out[f"{name}-{attempt}"] = dict(
                    figures={k: result[k] for k in ("train", "validation", "test")},
                    params=result["params"], centres=region.arrays["centers"].tolist(),
                    radii_sq=region.arrays["radii_sq"].tolist())
    return out


def test_holdout_balls_under_a_cap_equal_the_uncapped_run(capped_data, tmp_path):
    """Under the cap and a 64M budget the whole-set lists are a memmap of the
    cache file (released behind the subset pass) and the subset's lists go to
    scratch memmaps; exact and sampled candidates give the uncapped figures."""
    uncapped = holdout_workload(str(capped_data))
    assert uncapped["exact-computed"]["params"]["candidates"] == "all"
    assert uncapped["sampled-computed"]["params"]["candidates"] == 600
    capped = _run_capped("holdout_workload", capped_data, tmp_path)
    assert capped == json.loads(json.dumps(uncapped))
