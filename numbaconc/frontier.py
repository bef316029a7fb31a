"""The concentration at alpha itself: a fixed frontier of regions read at test risk alpha.

A fitted region is aimed at a risk somewhat above alpha (the selection target),
and its adversarial risk rises with its risk, so its test adversarial risk
overstates h(alpha, eps). For a family whose region moves along one parameter
(the half-space threshold on a fixed direction; the coverage of the greedy
balls or cubes), the fitting split fixes a **frontier**: members E_0 ⊂ E_1 ⊂ ... ⊂ E_{m-1}
(nested, so their risks and adversarial risks rise with the index), from a
risk somewhat below to somewhat above alpha. Nothing about the frontier
depends on the test set. The test set then only evaluates it: counts R_j =
#test points in E_j and A_j = #test points in E_j's counted expansion.

Reading at alpha (``read_at_alpha``):

- point estimate: the test frontier (R_j / n, A_j / n) read at risk alpha by
  linear interpolation between the two members that bracket alpha n (lo =
  the last member with R_j < alpha n, hi = the first with R_j >= alpha n).
- 95 % interval, from Clopper-Pearson bounds and the nesting alone (no
  interpolation model). Let p_j, q_j be the population risk and adversarial
  risk of member j, and h_F(alpha) = the adversarial risk of the family's
  region of risk exactly alpha (between two members: q_J <= h_F <= q_{J+1}
  when p_J <= alpha <= p_{J+1}).
  Lower bound: L = the last member whose one-sided upper CP bound of risk is
  below alpha; lower = the one-sided lower CP bound of A_L. Upper bound:
  U = the first member whose lower CP bound of risk is above alpha; upper =
  the upper CP bound of A_U. Because R_j and A_j rise with j, a wrong L
  (p_L > alpha) needs the one fixed member just above alpha to have its risk
  bound fail, and a too-high lower bound needs the one fixed member just
  below alpha to have its A-bound fail: each side fails with probability at
  most beta + beta' (union of two one-sided CP failures), and we take
  beta = beta' = (1 - level) / 4, so the two-sided interval covers h_F with
  probability >= level, for any test size, including the interpolation
  error (the interval spans the whole bracket). When no member is certified
  below (above) alpha the bound is 0 (1): valid, uninformative; widen the
  frontier.

Under the label-uncertainty constraint (numbaconc.lu) the frontier keeps only
members of the constrained family: thresholds whose fitting-set region has
mean LU >= gamma, and greedy prefixes whose partial last ball's newly covered
fitting points do (the full balls meet it by construction). Dropping members
keeps the rest nested, so the reading and its interval stand as they are; when
no member is left near alpha, or the test frontier does not reach it, the
reading is null (``unread``) and ``reading.note`` says why.

h_F(alpha) >= h(alpha, eps) (the family's best region is one candidate), so
the interval is for the estimate, not the truth: on a Gaussian, where the
optimal half-space is found, it covers the closed form (tests/test_frontier.py).
"""

from __future__ import annotations

import math

import numpy as np

from . import budget
from .errors import NumbaconcError
from .stats import clopper_pearson, clopper_pearson_many

MAX_MEMBERS = 2001  # frontier members (evenly spaced ranks when more would fit)
HALF_WIDTH_SD = 6.0  # frontier spans alpha +- this many sd of (fit - test) risk ...
HALF_WIDTH_REL = 0.5  # ... or alpha * (1 +- this), whichever is wider
READING = ("linear interpolation between the two members bracketing alpha on the test set; "
           "95 % interval: Clopper-Pearson bounds of the members certified below / above "
           "alpha (outer envelope of the bracket), each side at (1 - level) / 4 twice")


def frontier_levels(alpha: float, n_fit: int, n_test: int) -> tuple[float, float]:
    """(lowest, highest) risk a frontier spans: alpha +- max(6 sd, alpha / 2),
    sd the std of the difference between a fitting-set and a test-set
    estimate of a risk alpha. Uses the test set's size only."""
    sd = math.sqrt(alpha * (1 - alpha) * (1.0 / n_fit + 1.0 / n_test))
    half = max(HALF_WIDTH_SD * sd, HALF_WIDTH_REL * alpha)
    return max(0.0, alpha - half), min(1.0, alpha + half)


def member_ranks(alpha: float, n_fit: int, n_test: int, max_members: int = MAX_MEMBERS) -> np.ndarray:
    """Increasing ranks k (members cover the k fitting points ranked first)
    spanning ``frontier_levels``; at most ``max_members`` of them."""
    lo, hi = frontier_levels(alpha, n_fit, n_test)
    k_lo = max(1, int(math.floor(lo * n_fit)))
    k_hi = min(n_fit, max(k_lo, int(math.ceil(hi * n_fit))))
    count = min(max_members, k_hi - k_lo + 1)
    return np.unique(np.round(np.linspace(k_lo, k_hi, count)).astype(np.int64))


def read_at_alpha(risk_counts, adv_counts, n: int, alpha: float, level: float = 0.95) -> dict:
    """Read a fixed nested frontier's test counts at test risk ``alpha``.

    ``risk_counts[j]`` / ``adv_counts[j]``: test points in member j / in its
    counted expansion, non-decreasing in j (nested members). Returns
    ``adv_risk_at_alpha`` (None when the test frontier does not reach alpha
    on both sides), ``adv_risk_at_alpha_ci`` [lower, upper] and a
    ``reading`` dict saying which members were used.
    """
    R = np.asarray(risk_counts, dtype=np.int64)
    A = np.asarray(adv_counts, dtype=np.int64)
    if R.ndim != 1 or R.shape != A.shape or len(R) < 1:
        raise NumbaconcError("frontier counts must be two 1-D arrays of the same non-zero length")
    if (np.diff(R) < 0).any() or (np.diff(A) < 0).any():
        raise NumbaconcError("frontier members must be nested (counts non-decreasing)")
    if (A < R).any() or R.min() < 0 or A.max() > n:
        raise NumbaconcError("frontier counts must satisfy 0 <= risk <= adversarial <= n")
    if not 0.0 < alpha < 1.0 or not 0.0 < level < 1.0:
        raise NumbaconcError("alpha and level must be in (0, 1)")
    target = alpha * n
    hi_idx = np.flatnonzero(R >= target - 1e-9)
    lo_idx = np.flatnonzero(R < target - 1e-9)
    estimate, bracket = None, None
    if len(hi_idx):
        hi = int(hi_idx[0])
        if R[hi] <= target + 1e-9:  # a member sits exactly at alpha
            estimate, bracket = A[hi] / n, [hi, hi]
        elif len(lo_idx):
            lo = int(lo_idx[-1])
            t = (target - R[lo]) / (R[hi] - R[lo])
            estimate, bracket = (A[lo] + t * (A[hi] - A[lo])) / n, [lo, hi]
    # one-sided bounds at (1 - level) / 4: a two-sided CP at 1 - (1 - level) / 2
    cp_level = 1.0 - (1.0 - level) / 2.0
    risk_low, risk_high = clopper_pearson_many(R, n, cp_level)
    below = np.flatnonzero(risk_high < alpha)
    above = np.flatnonzero(risk_low > alpha)
    L = int(below[-1]) if len(below) else None
    U = int(above[0]) if len(above) else None
    lower = clopper_pearson(int(A[L]), n, cp_level)[0] if L is not None else 0.0
    upper = clopper_pearson(int(A[U]), n, cp_level)[1] if U is not None else 1.0
    reading = dict(members=int(len(R)), bracket=bracket,
                   bracket_test_risk=None if bracket is None else
                   [float(R[bracket[0]] / n), float(R[bracket[1]] / n)],
                   test_risk_range=[float(R[0] / n), float(R[-1] / n)],
                   lower_member=L, upper_member=U, level=level, method=READING)
    if estimate is None:
        reading["note"] = "the test frontier does not reach alpha on both sides"
    return dict(adv_risk_at_alpha=None if estimate is None else float(estimate),
                adv_risk_at_alpha_ci=[float(lower), float(upper)], reading=reading)


def nested_counts(first_in, first_in_expanded, n_members: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts per member from each test point's first member containing it
    (``n_members`` or more: in none): R_j = #{first_in <= j}."""
    def cum(first):
        first = np.asarray(first, dtype=np.int64)
        hist = np.bincount(np.clip(first, 0, n_members), minlength=n_members + 1)[:n_members]
        return np.cumsum(hist)

    return cum(first_in), cum(first_in_expanded)


def unread(reason: str) -> dict:
    """A frontier that gives no reading at alpha (null figure and interval), with why."""
    return dict(adv_risk_at_alpha=None, adv_risk_at_alpha_ci=None,
                reading=dict(members=0, bracket=None, note=reason))


def read_frontier(counts: dict, alpha: float, level: float = 0.95) -> dict:
    """``read_at_alpha`` of a frontier's test counts, or ``unread`` when the
    frontier kept no member (``counts["reason"]`` says why)."""
    if counts.get("reason"):
        return unread(counts["reason"])
    return read_at_alpha(counts["risk_counts"], counts["adv_counts"], counts["n"], alpha, level)


def _meets_lu(keys, weights, G: int, radii) -> np.ndarray:
    """For each radius r: do the points with key <= r have sum(weights) >=
    G * count (numbaconc.lu's integer form of mean LU >= gamma; no point: yes)?"""
    order = np.argsort(keys, kind="stable")
    cum = np.concatenate([[0], np.cumsum(np.asarray(weights, dtype=np.int64)[order])])
    count = np.searchsorted(np.asarray(keys)[order], radii, side="right")
    return cum[count] >= np.int64(G) * count


def threshold_frontier(p_fit, p_test, shift: float, ranks, lu=None) -> dict:
    """Half-space frontier on one fixed direction: member j is {w.x >= b_j}
    with b_j the ranks[j]-th largest fitting projection (ranks increasing, so
    members are nested); its expansion is {w.x >= b_j - shift}. Returns the
    thresholds, the ranks kept and the test counts (R, A).

    ``lu``: (int64 weights of the fitting rows, integer threshold G) of
    numbaconc.lu: only members whose fitting-set region {p >= b_j} (ties kept
    whole) meets the LU constraint are kept (``lu_dropped`` counts the rest);
    when none is, ``reason`` says so and the counts are empty."""
    ranks = np.asarray(ranks, dtype=np.int64)
    p_fit = np.asarray(p_fit, dtype=np.float64)
    if len(ranks) < 1 or ranks.min() < 1 or ranks.max() > len(p_fit) or (np.diff(ranks) <= 0).any():
        raise NumbaconcError(f"ranks must increase within [1, {len(p_fit)}]")
    b = -np.partition(-p_fit, ranks - 1)[ranks - 1]  # k-th largest for every k
    dropped = 0
    if lu is not None:
        ok = _meets_lu(-p_fit, lu[0], lu[1], -b)  # {p >= b} = {-p <= -b}
        dropped = int((~ok).sum())
        ranks, b = ranks[ok], b[ok]
    s = np.sort(np.asarray(p_test, dtype=np.float64))
    n = len(s)
    R = n - np.searchsorted(s, b, side="left")  # #{p >= b}, inclusive like count_coverage
    A = n - np.searchsorted(s, b - float(shift), side="left")
    out = dict(thresholds=b, ranks=ranks, risk_counts=R, adv_counts=A, n=n, lu_dropped=dropped)
    if not len(ranks):
        out["reason"] = ("under the LU constraint no threshold of the frontier's range keeps "
                         "mean LU >= gamma on the fitting set")
    return out


def _sq_distances(X, centers: np.ndarray, block_rows: int | None = None) -> np.ndarray:
    """(n, T) squared l2 distances in float64, row block by row block (exact
    integers for uint8 rows and integer centres: every sum stays below 2**53,
    so any block size gives the same values). By default a block and its
    square (float64) take 1/32 of the memory budget, at most 8192 rows."""
    n = X.shape[0]
    if block_rows is None:
        block_rows = budget.rows_for(16 * X.shape[1], 1 / 32, minimum=256, maximum=8192)
    c = np.asarray(centers, dtype=np.float64)
    c_sq = (c * c).sum(axis=1)
    out = np.empty((n, len(c)), dtype=np.float64)
    for start in range(0, n, block_rows):
        block = np.asarray(X[start:start + block_rows], dtype=np.float64)
        d2 = (block * block).sum(axis=1)[:, None] - 2.0 * (block @ c.T) + c_sq[None, :]
        out[start:start + len(block)] = np.maximum(d2, 0.0)
    return out


def _linf_distances(X, centers: np.ndarray, block_bytes: int = 32 << 20) -> np.ndarray:
    """(n, T) l-inf distances in float64, row block by row block: the cubes'
    own keys (kernels.ball_geometry.pair_key), exact integers for uint8 rows
    and integer centres, and the same float64 differences otherwise."""
    n, d = X.shape[0], X.shape[1]
    c = np.asarray(centers, dtype=np.float64)
    integer = bool(X.dtype == np.uint8 and np.all(c == np.rint(c)) and c.min(initial=0) >= 0
                   and c.max(initial=0) <= 255)
    work = np.int16 if integer else np.float64
    c = c.astype(work)
    rows = max(64, block_bytes // (np.dtype(work).itemsize * max(d, 1)))
    out = np.empty((n, len(c)), dtype=np.float64)
    for start in range(0, n, rows):
        block = np.asarray(X[start:start + rows]).astype(work)
        for t in range(len(c)):
            out[start:start + len(block), t] = np.abs(block - c[t]).max(axis=1)
    return out


def _first_members(d2: np.ndarray, block_radii_sq: list, offsets: np.ndarray, grow) -> np.ndarray:
    """Index of the first member containing each point; members are ball t
    at the increasing squared radii ``block_radii_sq[t]`` on top of balls < t
    in full. ``grow(r2)`` maps a member's squared radius to the squared
    radius it is tested at (itself for E, (r + eps)^2 for E_eps)."""
    n_total = int(offsets[-1])
    first = np.full(d2.shape[0], n_total, dtype=np.int64)
    for t, r2 in enumerate(block_radii_sq):
        pos = np.searchsorted(grow(r2), d2[:, t], side="left")  # first radius reaching the point
        inside = pos < len(r2)
        np.minimum(first, np.where(inside, offsets[t] + pos, n_total), out=first)
    return first


def ball_prefix_frontier(X_fit, X_test, centers, radii_sq, epsilon: float, alpha: float,
                         max_members: int = MAX_MEMBERS, *, metric: str = "l2", lu=None) -> dict:
    """The greedy balls' frontier, from the fit's own prefix structure: member
    (t, r) = balls 0..t-1 in full plus ball t at radius r, r running over the
    fitting points' distances to centre t up to its fitted radius (the last
    ball's radius also beyond, so the frontier reaches above alpha). Members
    are nested in (t, r); only those whose fitting-set risk lies within
    ``frontier_levels`` are kept (at most ``max_members``, evenly spaced).
    Nothing here reads the test set but the final counts.

    ``metric="linf"``: the greedy cubes (``radii_sq`` holds the l-inf radii,
    E_eps: radii + eps). ``lu``: (int64 weights of the fitting rows, integer
    threshold G) of numbaconc.lu: ball t's partial radii are kept only where
    the fitting points it newly covers (those outside balls 0..t-1) meet the
    LU constraint, so every member's fitting-set mean LU >= gamma (the
    fitted balls meet it by construction). When no member is left near
    alpha, ``reason`` says why and the counts are empty."""
    centers = np.asarray(centers, dtype=np.float64)
    radii_sq = np.asarray(radii_sq, dtype=np.float64)
    T = len(radii_sq)
    if T < 1:
        raise NumbaconcError("a ball frontier needs at least one ball")
    eps = float(epsilon)
    keys = _linf_distances if metric == "linf" else _sq_distances
    d2_fit = keys(X_fit, centers)
    n_fit = X_fit.shape[0]
    outside = np.ones(n_fit, dtype=bool)  # fitting points outside balls 0..t-1
    blocks, dropped = [], 0
    for t in range(T):
        r2 = np.unique(d2_fit[:, t])
        if t < T - 1:
            r2 = r2[r2 <= radii_sq[t]]
            if not len(r2) or r2[-1] < radii_sq[t]:
                r2 = np.append(r2, radii_sq[t])  # the block ends at the full ball
        if lu is not None:
            ok = _meets_lu(d2_fit[outside, t], lu[0][outside], lu[1], r2)
            if t < T - 1:
                ok[-1] = True  # the fitted ball (the greedy checked it; later members hold it whole)
            dropped += int((~ok).sum())
            r2 = r2[ok]
        blocks.append(r2)
        outside &= d2_fit[:, t] > radii_sq[t]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blocks])]).astype(np.int64)
    n_total = int(offsets[-1])
    same = lambda r2: r2  # noqa: E731
    if metric == "linf":
        grown = lambda r: r + eps  # noqa: E731
    else:
        grown = lambda r2: (np.sqrt(r2) + eps) ** 2  # noqa: E731
    fit_risk = np.cumsum(np.bincount(_first_members(d2_fit, blocks, offsets, same),
                                     minlength=n_total + 1)[:n_total])
    lo, hi = frontier_levels(alpha, n_fit, X_test.shape[0])
    keep = np.flatnonzero((fit_risk >= lo * n_fit) & (fit_risk <= hi * n_fit))
    if len(keep) > max_members:
        keep = keep[np.unique(np.round(np.linspace(0, len(keep) - 1, max_members)).astype(np.int64))]
    top = float(fit_risk[-1] / n_fit) if n_total else 0.0
    out = dict(n=X_test.shape[0], lu_dropped=dropped, fit_risk_max=top)
    if not len(keep):
        why = (f"no member of the frontier has a fitting-set risk in [{lo:.4g}, {hi:.4g}] "
               f"(members reach {top:.4g}")
        if lu is not None:
            why += f"; {dropped} partial radii break the LU constraint"
        out.update(reason=why + ")", risk_counts=np.zeros(0, np.int64),
                   adv_counts=np.zeros(0, np.int64), fit_risk_range=None)
        return out
    d2_test = keys(X_test, centers)
    # a point's first kept member is the first kept index at or after its first member
    first_in = np.searchsorted(keep, _first_members(d2_test, blocks, offsets, same), side="left")
    first_exp = np.searchsorted(keep, _first_members(d2_test, blocks, offsets, grown), side="left")
    R, A = nested_counts(first_in, first_exp, len(keep))
    ball = np.searchsorted(offsets, keep, side="right") - 1
    out.update(risk_counts=R, adv_counts=A, member_ball=ball,
               member_radius=np.concatenate(blocks)[keep],
               fit_risk_range=[float(fit_risk[keep[0]] / n_fit), float(fit_risk[keep[-1]] / n_fit)])
    return out
