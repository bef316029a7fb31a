"""The boxes' density score (METHOD.md section 3, step 1), exact or from a
reference sample.

Exact (the 2019 code): rho_i = the l1 distance from x_i to its k-th nearest
neighbour among all n fitting rows, the row itself counted as its first
neighbour. That is an all-pairs kNN, O(n^2): minutes at 60,000 rows, many
hours at 10^6.

Sampled (issue 12): a seeded uniform sample of m fitting rows is the base,
every fitting row a query, and rho_i = the l1 distance from x_i to its k'-th
nearest *other* sample row, k' = max(1, round(k m / n)) (halves rounded up),
at most m - 1. A row that is itself in the sample does not count itself: its
own entry is dropped by index (duplicates of it still count, at distance 0),
so members and non-members of the sample are scored against the same kind of
base (k' other rows among about m). The kNN is the exact one
(numbaconc.neighbours), of n queries against m base rows, in query blocks
sized by the memory budget.

``density_variant`` is the one place that decides which variant runs:
``auto`` (the default) is exact up to ``EXACT_MAX_ROWS`` fitting rows and a
sample of ``SAMPLE_ROWS`` above; ``exact`` always exact; an integer m a
sample of m rows.
"""

from __future__ import annotations

import numpy as np

from . import budget
from .datasets import RowView
from .errors import NumbaconcError
from .validation import check_int

# auto: the exact all-pairs score up to this many fitting rows (MNIST-60k's
# 48,000 stay exact), a reference sample above
EXACT_MAX_ROWS = 200_000
SAMPLE_ROWS = 20_000
CHOICES = ("auto", "exact")
# the sample's random stream: its own, apart from the holdout split's (same seed)
_STREAM = 0x64656E73
_MAX_QUERY_BLOCK = 1 << 17


def parse_density_sample(value):
    """``auto`` (None), ``exact`` or a sample size (an integer, also as text)."""
    if value is None or value == "auto":
        return None
    if value == "exact":
        return "exact"
    if isinstance(value, str):
        text = value.strip().replace("_", "").replace(",", "")
        if not text.isdigit():
            raise NumbaconcError(f"density sample: expected auto, exact or a number of rows, "
                                 f"got {value!r}")
        value = int(text)
    return check_int(value, "density sample", low=2)


def sample_k(k: int, m: int, n: int) -> int:
    """k' = max(1, round(k m / n)), halves rounded up (exact integers), at most m - 1."""
    return int(min(m - 1, max(1, (2 * k * m + n) // (2 * n))))


def density_variant(n: int, k: int, density_sample=None, seed: int = 0) -> dict:
    """Which density score runs for ``n`` fitting rows and density ``k``: what
    the family's params record. ``dict(variant="exact", k=k)``, or
    ``dict(variant="sample", k=k, sample_rows=m, k_sample=k', seed=seed)``;
    ``requested`` says what was asked for (auto, exact or m)."""
    requested = parse_density_sample(density_sample)
    k = check_int(k, "density k", low=1)
    if k >= n:
        raise NumbaconcError(f"density k={k} needs more than {n} points")
    if requested is None:
        m = SAMPLE_ROWS if n > EXACT_MAX_ROWS else None
    elif requested == "exact":
        m = None
    else:
        m = requested
        if m > n:
            raise NumbaconcError(f"density sample of {m} rows: the fitting set has only {n}")
    label = "auto" if requested is None else requested
    if m is None:
        return dict(variant="exact", k=k, requested=label)
    return dict(variant="sample", k=k, requested=label, sample_rows=int(m),
                k_sample=sample_k(k, m, n), seed=int(seed))


def sample_rows(n: int, m: int, seed: int) -> np.ndarray:
    """The sample: m distinct positions of [0, n), sorted, seeded."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _STREAM]))
    return np.sort(rng.choice(n, size=m, replace=False)).astype(np.int64)


def sampled_density_scores(X, k: int, m: int, *, seed: int = 0, progress=None) -> np.ndarray:
    """float64 (n,): each row's l1 distance to its k'-th nearest other row of
    a seeded sample of m rows of X (see the module docstring). ``X``: the
    fitting rows (array, memmap, h5py dataset or RowView), read in blocks."""
    from .neighbours import knn

    view = X if isinstance(X, RowView) else RowView(X)
    n, d = int(view.shape[0]), int(view.shape[1])
    m = check_int(m, "density sample", low=2, high=n)
    k_s = sample_k(k, m, n)
    sample = sample_rows(n, m, seed)
    base = view.take(sample)
    # per query row: its prepared copy, the prefilter's sketch and visit-order
    # state (a few hundred bytes), the lists of k' + 1
    per_row = d * view.dtype.itemsize + 512 + 16 * (k_s + 1)
    rows = budget.rows_for(per_row, 0.25, minimum=1024, maximum=_MAX_QUERY_BLOCK)
    scores = np.empty(n)
    for a, b, block in view.blocks(rows):
        found = knn(base, k_s + 1, metric="l1", queries=block)
        position = np.arange(a, b)
        at = np.minimum(np.searchsorted(sample, position), m - 1)
        own = np.where(sample[at] == position, at, -1)  # the row's own sample index, or -1
        # its own entry among the first k': the k'-th other row is one further on
        ahead = (np.asarray(found.indices[:, :k_s]) == own[:, None]).any(axis=1)
        column = np.where(ahead, k_s, k_s - 1)
        scores[a:b] = found.distance_block()[np.arange(b - a), column]
        if progress is not None:
            progress(b, n)
    return scores
