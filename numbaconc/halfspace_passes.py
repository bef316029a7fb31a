"""The half-space search in a fixed number of passes over the data.

The batched search (``halfspace._search_candidates``) holds one float32
projection per row for a batch of directions, so at a fixed budget its
passes over the data grow as n (MNIST-10M at 2 GB: 151 passes of 7.9 GB).
This search projects every row block onto all directions at once (in the
caller's direction batches, with the batched search's single-threaded
``_products`` calls, so each float32 value is the batched search's at that
batch; the caller keeps the requested batch at any budget, so the GEMMs do
not shrink as n grows) and reads the data a fixed number of times:

1. a histogram of every direction's projections (up to 2,048 bins over the
   first block's range, values outside in the edge bins);
2. per direction and side, the members of the bin holding the k-th largest
   (high side) or k-th smallest (low side) value are collected and sorted:
   the threshold is exact. A bin with more members than the buffer holds is
   split into key sub-bins instead (each with its smallest and largest key,
   so a tie group is resolved at once) and collected in a further pass:
   float32 keys span 2**32, so a few passes at most, whatever n (each one
   divides a key interval by up to 2,048);
3. the counts of each side and epsilon on X (``count_sides``), then on
   X_select.

Memory is one (n_directions, block rows) float32 block, the histograms and
the collection buffers, all sized from the budget, never from n. Thresholds
and counts are those of the batched search with the same batches, bit for bit
(tests/test_halfspace_passes.py).
"""

from __future__ import annotations

import numpy as np

from . import budget
from .kernels import halfspace as _kh
from .kernels import halfspace_passes as _k
from .stages import stage
from .validation import checked_blocks

N_BINS = 2048  # first-pass histogram bins per direction (fewer under a small budget)
N_SUB = 2048  # key sub-bins per refinement of a crowded bin (likewise)
_BIN_MARGIN = 0.01  # a bin's value bounds are widened by this fraction of its width
_SIGN_BIT = 0x80000000


def _keys(q: np.ndarray) -> np.ndarray:
    """Order-preserving int64 keys of float32 values (-0 as +0), as the kernels'."""
    bits = np.ascontiguousarray(q, dtype=np.float32).view(np.uint32).astype(np.int64)
    bits[bits == _SIGN_BIT] = 0
    return np.where(bits >= _SIGN_BIT, 0xFFFFFFFF - bits, bits + _SIGN_BIT)


def _values(keys) -> np.ndarray:
    """float32 values of keys (inverse of ``_keys``)."""
    keys = np.asarray(keys, dtype=np.int64)
    bits = np.where(keys >= _SIGN_BIT, keys - _SIGN_BIT, 0xFFFFFFFF - keys)
    return bits.astype(np.uint32).view(np.float32)


def _float32_down(x: np.ndarray) -> np.ndarray:
    f = x.astype(np.float32)
    return np.where(f.astype(np.float64) > x, np.nextafter(f, np.float32(-np.inf)), f)


def _float32_up(x: np.ndarray) -> np.ndarray:
    f = x.astype(np.float32)
    return np.where(f.astype(np.float64) < x, np.nextafter(f, np.float32(np.inf)), f)


class BlockProjections:
    """Every direction batch projected per row block: (n_directions, rows) float32.

    ``batches``: [(first, stop, Wt (stop - first, d) float32)] covering the
    directions in order. Blocks are multiples of ``_PIECE_ROWS`` rows, so the
    BLAS calls of ``_products`` are the batched search's, value for value."""

    def __init__(self, X, batches, name: str):
        from .halfspace import _PIECE_ROWS

        self.X, self.batches, self.name = X, batches, name
        n, d = X.shape
        self.n_dir = batches[-1][1]
        per_row = 4.0 * self.n_dir + (4.0 + np.dtype(X.dtype).itemsize) * d
        rows = budget.rows_for(per_row, 0.125, minimum=_PIECE_ROWS)
        self.rows = n if rows >= n else rows // _PIECE_ROWS * _PIECE_ROWS
        self.flat = np.empty(self.n_dir * self.rows, dtype=np.float32)
        self.buf = np.empty((self.rows, d), dtype=np.float32)
        self._checked = False

    def batches_of(self, directions) -> list[int]:
        """Indices of the batches that hold any of ``directions``."""
        firsts = np.array([a for a, _, _ in self.batches])
        return sorted(set((np.searchsorted(firsts, np.asarray(directions), side="right") - 1).tolist()))

    def blocks(self, needed=None):
        """Yield (start, stop, P): P (n_directions, stop - start) C-contiguous,
        the rows of the ``needed`` batches (default all) computed."""
        from .halfspace import _products_of_batches

        needed = range(len(self.batches)) if needed is None else needed
        for start, stop, block in checked_blocks(self.X, self.rows, self.name,
                                                 finite=not self._checked):
            size = stop - start
            P = self.flat[:self.n_dir * size].reshape(self.n_dir, size)
            if block.dtype == np.float32:
                src = block
            else:
                src = self.buf[:size]
                np.copyto(src, block, casting="unsafe")
            _products_of_batches([(Wt, P[a:b]) for a, b, Wt in
                                  (self.batches[i] for i in needed)], src)
            yield start, stop, P
        self._checked = True


class _Targets:
    """Per direction and side: where the k-th largest of sign * p lies.

    Targets 0..n_dir-1 are the high sides (sign +1), n_dir..2 n_dir-1 the low
    sides (sign -1, the k-th largest of -p = minus the k-th smallest of p)."""

    def __init__(self, hist, k, mn, inv, vmin, vmax):
        n_dir, nb = hist.shape
        ar = np.arange(n_dir)
        self.row = np.concatenate([ar, ar]).astype(np.int64)
        self.sign = np.concatenate([np.ones(n_dir), -np.ones(n_dir)]).astype(np.float32)
        top = np.cumsum(hist[:, ::-1], axis=1)
        j_top = np.argmax(top >= k, axis=1)
        j_hi = nb - 1 - j_top
        above_hi = top[ar, j_top] - hist[ar, j_hi]
        del top
        bottom = np.cumsum(hist, axis=1)
        j_lo = np.argmax(bottom >= k, axis=1)
        above_lo = bottom[ar, j_lo] - hist[ar, j_lo]
        del bottom
        self.jbin = np.concatenate([j_hi, j_lo]).astype(np.int64)
        self.above = np.concatenate([above_hi, above_lo]).astype(np.int64)
        self.rank = k - self.above  # 1-based rank from the top inside the bin
        self.count = hist[self.row, self.jbin].astype(np.int64)
        # value bounds of each bin (v space), widened, within the data's min / max
        j = self.jbin.astype(np.float64)
        a, w = mn[self.row], inv[self.row]
        lo_v = np.where(j == 0, -np.inf, a + (j - _BIN_MARGIN) / w)
        hi_v = np.where(j == nb - 1, np.inf, a + (j + 1 + _BIN_MARGIN) / w)
        lo_v = np.maximum(lo_v, vmin[self.row].astype(np.float64))
        hi_v = np.minimum(hi_v, vmax[self.row].astype(np.float64))
        high = self.sign > 0
        qlo = np.where(high, lo_v, -hi_v)
        qhi = np.where(high, hi_v, -lo_v)
        self.klo = _keys(_float32_down(qlo))
        self.kspan = _keys(_float32_up(qhi)) - self.klo + 1
        self.done = np.zeros(2 * n_dir, dtype=bool)
        self.b = np.zeros(2 * n_dir, dtype=np.float32)  # threshold of sign * p
        self.n_in = np.zeros(2 * n_dir, dtype=np.int64)  # #(sign * p >= b)

    def collected(self, t, values) -> None:
        """The members of target t, all of them: the exact k-th largest."""
        if values.shape[0] != self.count[t]:
            raise RuntimeError(f"half-space passes: target {t} collected {values.shape[0]} "
                               f"members, its bin holds {self.count[t]}")
        values = np.sort(values)[::-1]
        b = values[self.rank[t] - 1]
        self.b[t] = b
        self.n_in[t] = self.above[t] + np.count_nonzero(values >= b)
        self.done[t] = True

    def refined(self, t, hist, kmin, kmax) -> None:
        """Sub-bin counts of target t's key interval: narrow to the one holding
        the k-th largest (done when it holds a single key)."""
        if hist.sum() != self.count[t]:
            raise RuntimeError(f"half-space passes: target {t} counted {hist.sum()} members, "
                               f"its bin holds {self.count[t]}")
        top = np.cumsum(hist[::-1])
        u = int(np.argmax(top >= self.rank[t]))
        sb = hist.shape[0] - 1 - u
        beyond = int(top[u] - hist[sb])
        self.above[t] += beyond
        self.rank[t] -= beyond
        self.count[t] = hist[sb]
        self.klo[t] += kmin[sb]
        self.kspan[t] = kmax[sb] - kmin[sb] + 1
        if self.kspan[t] == 1:  # one value: a tie group
            self.b[t] = _values(self.klo[t])
            self.n_in[t] = self.above[t] + self.count[t]
            self.done[t] = True


def search_in_passes(X, X_select, batches, shifts, k: int, progress=None):
    """Thresholds and counts of every direction of ``batches`` (see
    ``BlockProjections``): (b_hi, b_lo, counts, select_counts) with b_hi /
    b_lo (n_dir,) float32, counts (n_dir, n_eps, 4) int64 as ``count_sides``
    and select_counts the same on X_select (None without it): what the
    batched search's ``_batch_counts`` gives for each batch, bit for bit."""
    shifts = np.ascontiguousarray(shifts, dtype=np.float64)
    n_dir, n_eps = shifts.shape
    proj = BlockProjections(X, batches, "X")
    n_passes = 3 + (X_select is not None)
    tick = _Ticker(progress, n_dir, n_passes)
    n = X.shape[0]

    n_bins = min(N_BINS, budget.rows_for(8.0 * n_dir, 0.0625, minimum=64))
    hist = np.zeros((n_dir, n_bins), dtype=np.int64)
    vmin = np.full(n_dir, np.inf, dtype=np.float32)
    vmax = np.full(n_dir, -np.inf, dtype=np.float32)
    mn = inv = None
    with stage("halfspace_pass", kind="histogram", n=n, directions=n_dir):
        for _, _, P in proj.blocks():
            if mn is None:
                mn, inv = _bin_ranges(P, n_bins)
            _k.histogram_block(P, mn, inv, hist, vmin, vmax)
    tick()
    targets = _Targets(hist, k, mn, inv, vmin, vmax)
    del hist

    cap = budget.rows_for(4.0 * 2 * n_dir, 0.125, minimum=64)
    while not targets.done.all():
        active = np.flatnonzero(~targets.done)
        crowded = targets.count[active] > cap
        _select_pass(proj, targets, active[~crowded], active[crowded], mn, inv, n_bins, n)
    tick()

    b_hi = targets.b[:n_dir].copy()
    b_lo = -targets.b[n_dir:]
    counts = _count_pass(proj, b_hi, b_lo, shifts, "count", n)
    del proj  # its block buffer, before the select split's
    tick()
    select_counts = None
    if X_select is not None:
        sel = BlockProjections(X_select, batches, "X_select")
        select_counts = _count_pass(sel, b_hi, b_lo, shifts, "count_select", X_select.shape[0])
        tick()
    # the count pass recounts #(p >= b): it must agree with the selection's own count
    if not (np.array_equal(counts[:, 0, 0], targets.n_in[:n_dir])
            and np.array_equal(counts[:, 0, 2], targets.n_in[n_dir:])):
        raise RuntimeError("half-space passes: threshold counts disagree between passes")
    return b_hi, b_lo, counts, select_counts


def _bin_ranges(P: np.ndarray, n_bins: int):
    """Histogram range per direction from the first block: (mn, bins per unit)."""
    lo = P.min(axis=1).astype(np.float64)
    width = P.max(axis=1).astype(np.float64) - lo
    width = np.where(width > 0, width, np.maximum(np.abs(lo), 1.0) * 2.0 ** -20)
    return lo, n_bins / width


def _select_pass(proj, targets, collect, crowded, mn, inv, n_bins, n):
    """One pass: collect the members of ``collect`` targets, split the bins of
    ``crowded`` ones into key sub-bins (fewer under a small budget: more passes)."""
    t = targets
    needed = proj.batches_of(t.row[np.concatenate([collect, crowded])])
    width = int(t.count[collect].max()) if len(collect) else 1
    buf = np.empty((len(collect), max(1, width)), dtype=np.float32)
    fill_c = np.zeros(len(collect), dtype=np.int64)
    n_sub = min(N_SUB, budget.rows_for(24.0 * max(1, len(crowded)), 0.125, minimum=16))
    hist = np.zeros((len(crowded), n_sub), dtype=np.int64)
    kmin = np.full((len(crowded), n_sub), np.iinfo(np.int64).max, dtype=np.int64)
    kmax = np.full((len(crowded), n_sub), -1, dtype=np.int64)
    fill_s = np.zeros(len(crowded), dtype=np.int64)
    no_hist = np.zeros((1, 1), dtype=np.int64)
    no_buf = np.zeros((1, 1), dtype=np.float32)
    parts = [(collect, True, no_hist, no_hist, no_hist, buf, fill_c),
             (crowded, False, hist, kmin, kmax, no_buf, fill_s)]
    parts = [(np.ascontiguousarray(ids), *rest) for ids, *rest in parts if len(ids)]
    with stage("halfspace_pass", kind="select", n=n, batches=len(needed),
               collect=len(collect), crowded=len(crowded)):
        for _, _, P in proj.blocks(needed):
            bits = P.view(np.uint32)
            for ids, flag, h, lo, hi, b, fill in parts:
                _k.target_block(P, bits, t.row[ids], t.sign[ids], t.jbin[ids], mn, inv, n_bins,
                                t.klo[ids], t.kspan[ids], flag, h, lo, hi, b, fill)
    for i, tid in enumerate(collect):
        t.collected(tid, buf[i, :fill_c[i]])
    for i, tid in enumerate(crowded):
        t.refined(tid, hist[i], kmin[i], kmax[i])


def _count_pass(proj, b_hi, b_lo, shifts, kind: str, n: int) -> np.ndarray:
    """count_sides of every direction summed over the row blocks of proj."""
    n_dir, n_eps = shifts.shape
    counts = np.zeros((n_dir, n_eps, 4), dtype=np.int64)
    part = np.empty_like(counts)
    with stage("halfspace_pass", kind=kind, n=n, directions=n_dir):
        for _, _, P in proj.blocks():
            _kh.count_sides(P, b_hi, b_lo, shifts, part)
            counts += part
    return counts


class _Ticker:
    """progress(done, total) in direction units, spread over the passes."""

    def __init__(self, progress, n_dir: int, n_passes: int):
        self.progress, self.n_dir, self.n_passes, self.done = progress, n_dir, n_passes, 0

    def __call__(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(min(self.n_dir, self.n_dir * self.done // self.n_passes), self.n_dir)
