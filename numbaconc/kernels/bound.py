"""Kernels of the label-aware lower bound: epsilon-range search between points
of different classes, the conflict graph in CSR, Hopcroft-Karp matching,
König's vertex cover and triangle listing.

Range search. Every kernel of ``RANGE_KERNELS`` (one per kind: l2 uint8 via
GEMM, linf uint8, l2 / linf float32) takes one block of query rows ``Q`` and
one block of base rows ``B`` (global row order: the base block never precedes
the query block; ``diagonal`` when they are the same block, then only pairs
j > i count) and, for each query row i, lists in ``out_j[i, :count[i]]`` the
base rows j of another class (``q_lab[i] != b_lab[j]``) within the largest
threshold, with ``out_k[i, t]`` the *bucket*: the smallest k such that the
pair's distance is <= ``thr[k]`` (``thr`` sorted ascending, inclusive). Each
query row owns its output row, so the lists are identical for any thread count.

Thresholds are in storage units: uint8 l2 compares squared integer distances,
uint8 linf the max abs difference in pixel levels, float32 data the float64
distance (l2 squared) computed from the float32 values.

The l2 uint8 kernel works on a float32 BLAS product ``G = Q @ B.T`` with the
certified error bound of ``numbaconc.knn`` (the same ``slack``): the squared
distance lies in [approx - err, approx + err]; when no threshold falls in that
interval the bucket is certain, otherwise the pair is recomputed exactly in
integers. uint8 rows are zero-padded to a multiple of 64 columns (the byte-span
intrinsics of ``kernels.knn``).
"""

import numpy as np
from numba import prange

from ._jit import jit, jit_parallel
from .knn_intrinsics import L2, LINF, span
from .knn_topk import CHUNK


@jit
def _bucket(thr, s):
    """Smallest k with s <= thr[k], or -1 when s > thr[-1]."""
    if s > thr[thr.shape[0] - 1]:
        return -1
    k = 0
    while thr[k] < s:
        k += 1
    return k


@jit
def _bucket_gemm_l2_u8(G, Q, i, B, j, q_sq, q_norm, b_sq, b_norm, slack, thr):
    """Bucket of a uint8 pair from the float32 GEMM entry: certain unless a
    threshold lies in [approx - err, approx + err], then exact in integers."""
    approx = q_sq[i] + b_sq[j] - 2.0 * np.float64(G[i, j])
    err = slack * q_norm[i] * b_norm[j]
    lo = approx - err
    if lo > thr[thr.shape[0] - 1]:
        return -1
    k = 0
    while thr[k] < lo:
        k += 1
    if thr[k] >= approx + err:
        return k
    dp = Q.shape[1]
    s = np.int64(0)
    for col in range(0, dp, CHUNK):
        s = span(L2, 64, s, Q, i * dp + col, B, j * dp + col)
    return _bucket(thr, s)


@jit
def _bucket_linf_u8(Q, i, B, j, thr):
    """Max abs difference span by span (columns in decreasing-variance order,
    so most pairs leave after the first 64 bytes)."""
    dp = Q.shape[1]
    t_max = thr[thr.shape[0] - 1]
    s = np.int64(0)
    col = 0
    while col < dp and s <= t_max:
        s = span(LINF, 64, s, Q, i * dp + col, B, j * dp + col)
        col += CHUNK
    return _bucket(thr, s)


@jit
def _bucket_f32(Q, i, B, j, thr, linf):
    """float64 distance of float32 rows (l2: squared), leaving early."""
    d = Q.shape[1]
    t_max = thr[thr.shape[0] - 1]
    s = 0.0
    for c0 in range(0, d, CHUNK):
        for t in range(c0, min(c0 + CHUNK, d)):
            v = np.float64(Q[i, t]) - np.float64(B[j, t])
            if linf:
                s = max(s, abs(v))
            else:
                s += v * v
        if s > t_max:
            return -1
    return _bucket(thr, s)


GEMM_L2_U8, LINF_U8, L2_F32, LINF_F32 = 0, 1, 2, 3


def _make_range(kind):
    """One range-search kernel per kind (frozen into the compiled code).
    Arguments the kind does not use (``G`` and the norms off the GEMM path)
    may be any array of the right dtype."""

    @jit_parallel
    def range_search(G, Q, B, q_sq, q_norm, b_sq, b_norm, q_lab, b_lab, diagonal, slack, thr,
                     out_j, out_k, count):
        nq = Q.shape[0]
        nb = B.shape[0]
        for i in prange(nq):
            c = 0
            li = q_lab[i]
            for j in range(i + 1 if diagonal else 0, nb):
                if b_lab[j] == li:
                    continue
                if kind == GEMM_L2_U8:
                    k = _bucket_gemm_l2_u8(G, Q, i, B, j, q_sq, q_norm, b_sq, b_norm, slack, thr)
                elif kind == LINF_U8:
                    k = _bucket_linf_u8(Q, i, B, j, thr)
                else:
                    k = _bucket_f32(Q, i, B, j, thr, kind == LINF_F32)
                if k >= 0:
                    out_j[i, c] = j
                    out_k[i, c] = k
                    c += 1
            count[i] = c

    return range_search


RANGE_KERNELS = {kind: _make_range(kind) for kind in (GEMM_L2_U8, LINF_U8, L2_F32, LINF_F32)}


@jit
def collect_edges(q_idx, b_idx, out_j, out_k, count, U, V, K):
    """Append a block's lists as edges (min, max) of global indices, in query
    row order (serial: the edge order does not depend on threads)."""
    pos = 0
    for i in range(count.shape[0]):
        gi = q_idx[i]
        for t in range(count[i]):
            gj = b_idx[out_j[i, t]]
            U[pos] = min(gi, gj)
            V[pos] = max(gi, gj)
            K[pos] = out_k[i, t]
            pos += 1
    return pos


# ------------------------------------------------------------------ graphs


@jit
def symmetric_csr(U, V, K, k_max, n, sort_rows):
    """CSR (indptr int64, indices int32; rows sorted when ``sort_rows``, else
    in edge order) of the undirected graph of the edges with bucket <= k_max."""
    indptr = np.zeros(n + 1, dtype=np.int64)
    for e in range(U.shape[0]):
        if K[e] <= k_max:
            indptr[U[e] + 1] += 1
            indptr[V[e] + 1] += 1
    for r in range(n):
        indptr[r + 1] += indptr[r]
    indices = np.empty(indptr[n], dtype=np.int32)
    fill = indptr[:n].copy()
    for e in range(U.shape[0]):
        if K[e] <= k_max:
            u = U[e]
            v = V[e]
            indices[fill[u]] = v
            fill[u] += 1
            indices[fill[v]] = u
            fill[v] += 1
    if sort_rows:  # triangle listing merges sorted rows; matching needs no order
        for r in range(n):
            indices[indptr[r]:indptr[r + 1]].sort()
    return indptr, indices


@jit
def konig_reachable(indptr, indices, row_match, col_match):
    """Rows / columns reachable by alternating paths from the unmatched rows
    of a bipartite graph (rows -> columns by any edge, columns -> rows by the
    matching). With a maximum matching, (rows not reached) + (columns reached)
    is a minimum vertex cover (König)."""
    n_rows = indptr.shape[0] - 1
    zr = np.zeros(n_rows, dtype=np.bool_)
    zc = np.zeros(col_match.shape[0], dtype=np.bool_)
    queue = np.empty(n_rows, dtype=np.int64)
    tail = 0
    for r in range(n_rows):
        if row_match[r] < 0:
            zr[r] = True
            queue[tail] = r
            tail += 1
    head = 0
    while head < tail:
        r = queue[head]
        head += 1
        for p in range(indptr[r], indptr[r + 1]):
            c = indices[p]
            if not zc[c]:
                zc[c] = True
                r2 = col_match[c]
                if r2 >= 0 and not zr[r2]:
                    zr[r2] = True
                    queue[tail] = r2
                    tail += 1
    return zr, zc


@jit
def _forward_triangles(indptr, indices, out, fill):
    """Triangles u < v < w of a sorted CSR graph; counted, and written to
    ``out`` when ``fill``."""
    n = indptr.shape[0] - 1
    t = 0
    for u in range(n):
        for p in range(indptr[u], indptr[u + 1]):
            v = indices[p]
            if v <= u:
                continue
            # merge the neighbours > v of u and of v
            a = p + 1
            b = indptr[v]
            while b < indptr[v + 1] and indices[b] <= v:
                b += 1
            while a < indptr[u + 1] and b < indptr[v + 1]:
                wa = indices[a]
                wb = indices[b]
                if wa < wb:
                    a += 1
                elif wb < wa:
                    b += 1
                else:
                    if fill:
                        out[t, 0] = u
                        out[t, 1] = v
                        out[t, 2] = wa
                    t += 1
                    a += 1
                    b += 1
    return t


@jit
def count_triangles(indptr, indices):
    return _forward_triangles(indptr, indices, np.empty((0, 3), dtype=np.int64), False)


@jit
def list_triangles(indptr, indices, out):
    return _forward_triangles(indptr, indices, out, True)


@jit_parallel
def triangle_sides_u8(P, tri, sides):
    """Exact squared l2 side lengths (int64) of triangles of padded uint8 rows:
    sides[t] = (|u-v|^2, |u-w|^2, |v-w|^2)."""
    dp = P.shape[1]
    for t in prange(tri.shape[0]):
        for s in range(3):
            a = tri[t, 0] if s < 2 else tri[t, 1]
            b = tri[t, 1] if s == 0 else tri[t, 2]
            acc = np.int64(0)
            for col in range(0, dp, CHUNK):
                acc = span(L2, 64, acc, P, a * dp + col, P, b * dp + col)
            sides[t, s] = acc


@jit_parallel
def triangle_sides_f32(P, tri, sides):
    """Squared l2 side lengths (float64) of triangles of float32 rows."""
    d = P.shape[1]
    for t in prange(tri.shape[0]):
        for s in range(3):
            a = tri[t, 0] if s < 2 else tri[t, 1]
            b = tri[t, 1] if s == 0 else tri[t, 2]
            acc = 0.0
            for c in range(d):
                v = np.float64(P[a, c]) - np.float64(P[b, c])
                acc += v * v
            sides[t, s] = acc


# ---------------------------------------------------------------- matching
# Hopcroft-Karp on a bipartite graph given as CSR rows -> columns, started
# from any valid matching (``row_match`` / ``col_match``, -1 = free): along an
# increasing epsilon grid edges are only added, so the previous matching stays
# valid and only the new augmenting paths are searched.

_INF = np.int64(1) << np.int64(62)


@jit
def _greedy(indptr, indices, row_match, col_match):
    for r in range(indptr.shape[0] - 1):
        if row_match[r] >= 0:
            continue
        for p in range(indptr[r], indptr[r + 1]):
            c = indices[p]
            if col_match[c] < 0:
                row_match[r] = c
                col_match[c] = r
                break


@jit
def _layers(indptr, indices, row_match, col_match, dist, queue):
    """BFS from the free rows; dist[r] = layer of row r (``_INF`` if not
    reached). True when some free column is reachable."""
    n_rows = indptr.shape[0] - 1
    tail = 0
    for r in range(n_rows):
        if row_match[r] < 0:
            dist[r] = 0
            queue[tail] = r
            tail += 1
        else:
            dist[r] = _INF
    head = 0
    limit = _INF
    while head < tail:
        r = queue[head]
        head += 1
        if dist[r] >= limit:
            break
        for p in range(indptr[r], indptr[r + 1]):
            r2 = col_match[indices[p]]
            if r2 < 0:
                limit = dist[r] + 1
            elif dist[r2] == _INF:
                dist[r2] = dist[r] + 1
                queue[tail] = r2
                tail += 1
    return limit < _INF


@jit
def _augment_from(root, indptr, indices, row_match, col_match, dist, edge_ptr, rows, cols):
    """Iterative DFS along the BFS layers from free row ``root``; augments
    and returns True when it reaches a free column."""
    rows[0] = root
    top = 1
    while top > 0:
        r = rows[top - 1]
        if edge_ptr[r] == indptr[r + 1]:
            dist[r] = _INF  # dead end for this phase
            top -= 1
            continue
        c = indices[edge_ptr[r]]
        edge_ptr[r] += 1
        r2 = col_match[c]
        if r2 < 0 or dist[r2] == dist[r] + 1:
            cols[top - 1] = c
            if r2 < 0:
                for t in range(top):
                    row_match[rows[t]] = cols[t]
                    col_match[cols[t]] = rows[t]
                return True
            rows[top] = r2
            top += 1
    return False


@jit
def hopcroft_karp(indptr, indices, row_match, col_match):
    """Maximum matching, in place from the given one; returns its size."""
    n_rows = indptr.shape[0] - 1
    _greedy(indptr, indices, row_match, col_match)
    dist = np.empty(n_rows, dtype=np.int64)
    queue = np.empty(n_rows, dtype=np.int64)
    edge_ptr = np.empty(n_rows, dtype=np.int64)
    rows = np.empty(n_rows + 1, dtype=np.int64)
    cols = np.empty(n_rows + 1, dtype=np.int64)
    while _layers(indptr, indices, row_match, col_match, dist, queue):
        edge_ptr[:] = indptr[:n_rows]
        for r in range(n_rows):
            if row_match[r] < 0:
                _augment_from(r, indptr, indices, row_match, col_match, dist, edge_ptr, rows, cols)
    size = 0
    for r in range(n_rows):
        if row_match[r] >= 0:
            size += 1
    return size
