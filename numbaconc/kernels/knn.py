"""Exact k-nearest-neighbour kernels (l1, l2, linf) for uint8 and float32 rows.

Every ``knn_block_*`` kernel merges one block of base rows ``B`` into a running
top-k of each query row of ``Q``:

- ``topd[i]`` / ``topi[i]`` hold the current best ``k`` (distance, index) pairs of
  query ``i``, sorted by (distance, index). Unfilled slots hold a sentinel
  (``BIG`` distance, ``BIG`` index) that every real candidate beats. uint8
  kernels keep exact integer distances (l2 squared) in int64; float32 kernels
  keep float64.
- ``qidx`` / ``bidx`` are the global row indices (the API reorders rows); ties
  are broken by global index, so the result does not depend on the order in
  which blocks or rows are visited.
- ``exclude_self``: skip the pair whose global indices are equal.
- ``qkey`` / ``bkey``: per-row keys giving a lower bound on the distance
  (l1: pixel sum, since |sum x - sum y| <= |x - y|_1 for non-negative data;
  l2: Euclidean norm, by the reverse triangle inequality).
- A pair is dropped as soon as its partial distance (the columns come in
  decreasing-variance order) passes the k-th best (distance, index).

For l1 and linf the API uses ``knn_block_*_u8_sketch`` instead: a vertical
prefilter (see the section below) followed by the same exact span-by-span
check (``_finish_*``).

Parallelism is over query rows (tiles of 4); each query owns its top-k row, so
results are identical for any thread count.

uint8 kernels need ``Q.shape[1] == B.shape[1]`` to be a multiple of 64 (the
API pads with zero columns, which add nothing to any of the three metrics).
They load 64..256 bytes at a time with LLVM intrinsics so that the backend
emits ``psadbw`` (l1), ``pmaddwd`` / ``vpdpwssd`` (l2) and byte ``pmaxub`` /
``pminub`` (linf) instead of widening every byte.
"""

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

from ._jit import jit, jit_parallel

CHUNK = 64  # dimensions per early-exit check; uint8 rows are padded to a multiple
BIG = np.int64(1) << np.int64(62)  # sentinel index / uint8 distance


# ------------------------------------------------------- byte-span intrinsics
# Each loads ``width`` bytes of two uint8 arrays at flat offsets and reduces
# them once: LLVM turns the l1 pattern into psadbw, l2 into pmaddwd / vpdpwssd,
# linf into pmaxub / pminub / psubb (on AVX-512: 64 bytes per instruction).


def _load_bytes(context, builder, aryty, ary, offset, width):
    data = cgutils.create_struct_proxy(aryty)(context, builder, value=ary).data
    vty = ir.VectorType(ir.IntType(8), width)
    ptr = builder.bitcast(builder.gep(data, [offset]), vty.as_pointer())
    return builder.load(ptr, align=1)


def _abs_diff_bytes(builder, a, b, width):
    # |a - b| without widening: max(a, b) - min(a, b) on unsigned bytes
    fnty = ir.FunctionType(a.type, [a.type, a.type])
    umax = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.umax.v{width}i8")
    umin = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.umin.v{width}i8")
    return builder.sub(builder.call(umax, [a, b]), builder.call(umin, [a, b]))


def _reduce(builder, op, vec, width, bits):
    fnty = ir.FunctionType(ir.IntType(bits), [vec.type])
    fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.vector.reduce.{op}.v{width}i{bits}")
    return builder.zext(builder.call(fn, [vec]), ir.IntType(64))


def _span_intrinsic(kind, width):
    """Intrinsic (A, a_off, B, b_off) -> int64 over ``width`` bytes of uint8 arrays:
    sum |a-b| (l1), sum (a-b)^2 (l2) or max |a-b| (linf)."""

    def typer(typingctx, A, a_off, B, b_off):
        if not all(isinstance(t, types.Array) and t.dtype == types.uint8 for t in (A, B)):
            return None
        sig = types.int64(A, types.intp, B, types.intp)

        def codegen(context, builder, signature, args):
            a = _load_bytes(context, builder, signature.args[0], args[0], args[1], width)
            b = _load_bytes(context, builder, signature.args[2], args[2], args[3], width)
            i32 = ir.VectorType(ir.IntType(32), width)
            if kind == "linf":
                return _reduce(builder, "umax", _abs_diff_bytes(builder, a, b, width), width, 8)
            if kind == "l1":
                terms = builder.zext(_abs_diff_bytes(builder, a, b, width), i32)
            else:
                i16 = ir.VectorType(ir.IntType(16), width)
                diff = builder.sext(builder.sub(builder.zext(a, i16), builder.zext(b, i16)), i32)
                terms = builder.mul(diff, diff)
            return _reduce(builder, "add", terms, width, 32)

        return sig, codegen

    typer.__name__ = f"_{kind}_{width}"
    return intrinsic(typer)


def _tile_intrinsic(kind, width):
    """Intrinsic (Q, o0, o1, o2, o3, B, b_off) -> 4-tuple of int64: the span
    reduction of one base row against four query rows. The base bytes are
    loaded once for the four queries (less L2 traffic per pair)."""

    def typer(typingctx, Q, o0, o1, o2, o3, B, b_off):
        if not all(isinstance(t, types.Array) and t.dtype == types.uint8 for t in (Q, B)):
            return None
        ret = types.UniTuple(types.int64, 4)
        sig = ret(Q, types.intp, types.intp, types.intp, types.intp, B, types.intp)

        def codegen(context, builder, signature, args):
            b = _load_bytes(context, builder, signature.args[5], args[5], args[6], width)
            i32 = ir.VectorType(ir.IntType(32), width)
            i16 = ir.VectorType(ir.IntType(16), width)
            if kind == "l2":
                bw = builder.zext(b, i16)
            out = []
            for t in range(4):
                a = _load_bytes(context, builder, signature.args[0], args[0], args[1 + t], width)
                if kind == "linf":
                    out.append(_reduce(builder, "umax", _abs_diff_bytes(builder, a, b, width), width, 8))
                    continue
                if kind == "l1":
                    terms = builder.zext(_abs_diff_bytes(builder, a, b, width), i32)
                else:
                    diff = builder.sext(builder.sub(builder.zext(a, i16), bw), i32)
                    terms = builder.mul(diff, diff)
                out.append(_reduce(builder, "add", terms, width, 32))
            return context.make_tuple(builder, ret, out)

        return sig, codegen

    typer.__name__ = f"_{kind}_tile_{width}"
    return intrinsic(typer)


_l1_64, _l1_128, _l1_256 = (_span_intrinsic("l1", w) for w in (64, 128, 256))
_l2_64, _l2_128, _l2_256 = (_span_intrinsic("l2", w) for w in (64, 128, 256))
_linf_64, _linf_128, _linf_256 = (_span_intrinsic("linf", w) for w in (64, 128, 256))
_l1_t64, _l1_t128, _l1_t256 = (_tile_intrinsic("l1", w) for w in (64, 128, 256))
_l2_t64, _l2_t128, _l2_t256 = (_tile_intrinsic("l2", w) for w in (64, 128, 256))
_linf_t64, _linf_t128 = (_tile_intrinsic("linf", w) for w in (64, 128))


# ----------------------------------------------------------------- top-k


@jit
def _insert(topd, topi, i, dist, idx):
    """Insert (dist, idx) into the sorted row i (caller checked it beats the last)."""
    p = topd.shape[1] - 1
    while p > 0 and (topd[i, p - 1] > dist or (topd[i, p - 1] == dist and topi[i, p - 1] > idx)):
        topd[i, p] = topd[i, p - 1]
        topi[i, p] = topi[i, p - 1]
        p -= 1
    topd[i, p] = dist
    topi[i, p] = idx


# ------------------------------------------------------------ uint8 kernels
# Per tile of 4 queries and one base block, two stages, so that most pairs cost
# no unpredictable branch:
# 1. branch-free: the first ``width`` columns (the highest-variance ones) of
#    every pair, one reduction each; a pair stays a candidate when that partial
#    distance and the key bound do not already lose against the k-th best at
#    the start of the block (a stale, hence safe, threshold);
# 2. the same, span after span, for the surviving candidates only (compacted
#    in place), then insertion of the survivors (now exact distances).
# ``cand`` and ``part`` (int32), both at least (nq, nb), are scratch.


@jit
def _stage1_width(dp, cap):
    w = 64
    while w * 2 <= dp and w * 2 <= cap:
        w *= 2
    return w


@jit
def _insert_survivors(i, bidx, cand, part, cnt, topd, topi):
    """Insert query i's surviving candidates, whose ``part`` is now their
    exact distance, into its running top-k (ties by index)."""
    k = topd.shape[1]
    thr = topd[i, k - 1]
    worst = topi[i, k - 1]
    for t in range(cnt):
        s = np.int64(part[i, t])
        jg = bidx[cand[i, t]]
        if s < thr or (s == thr and jg < worst):
            _insert(topd, topi, i, s, jg)
            thr = topd[i, k - 1]
            worst = topi[i, k - 1]


@jit
def _finish_l1(Q, i, B, bidx, cand, part, cnt, c0, topd, topi):
    """Later stages for query i: the next span (<= 256 columns) of every
    surviving candidate, branch-free, compacting the survivors; then insert the
    survivors, whose ``part`` is now their exact distance."""
    dp = Q.shape[1]
    k = topd.shape[1]
    qo = i * dp
    c = c0
    while c < dp and cnt > 0:
        thr = topd[i, k - 1]
        worst = topi[i, k - 1]
        w = _stage1_width(dp - c, 256)
        kept = 0
        for t in range(cnt):
            j = cand[i, t]
            if w == 256:
                s = np.int64(part[i, t]) + (_l1_256(Q, qo + c, B, j * dp + c))
            elif w == 128:
                s = np.int64(part[i, t]) + (_l1_128(Q, qo + c, B, j * dp + c))
            else:
                s = np.int64(part[i, t]) + (_l1_64(Q, qo + c, B, j * dp + c))
            cand[i, kept] = j
            part[i, kept] = s
            kept += np.int64((s < thr) | ((s == thr) & (bidx[j] < worst)))
        cnt = kept
        c += w
    _insert_survivors(i, bidx, cand, part, cnt, topd, topi)


@jit
def _finish_l2(Q, i, B, bidx, cand, part, cnt, c0, topd, topi):
    """Later stages for query i: the next span (<= 256 columns) of every
    surviving candidate, branch-free, compacting the survivors; then insert the
    survivors, whose ``part`` is now their exact distance."""
    dp = Q.shape[1]
    k = topd.shape[1]
    qo = i * dp
    c = c0
    while c < dp and cnt > 0:
        thr = topd[i, k - 1]
        worst = topi[i, k - 1]
        w = _stage1_width(dp - c, 256)
        kept = 0
        for t in range(cnt):
            j = cand[i, t]
            if w == 256:
                s = np.int64(part[i, t]) + (_l2_256(Q, qo + c, B, j * dp + c))
            elif w == 128:
                s = np.int64(part[i, t]) + (_l2_128(Q, qo + c, B, j * dp + c))
            else:
                s = np.int64(part[i, t]) + (_l2_64(Q, qo + c, B, j * dp + c))
            cand[i, kept] = j
            part[i, kept] = s
            kept += np.int64((s < thr) | ((s == thr) & (bidx[j] < worst)))
        cnt = kept
        c += w
    _insert_survivors(i, bidx, cand, part, cnt, topd, topi)


@jit
def _finish_linf(Q, i, B, bidx, cand, part, cnt, c0, topd, topi):
    """Later stages for query i: the next span (<= 256 columns) of every
    surviving candidate, branch-free, compacting the survivors; then insert the
    survivors, whose ``part`` is now their exact distance."""
    dp = Q.shape[1]
    k = topd.shape[1]
    qo = i * dp
    c = c0
    while c < dp and cnt > 0:
        thr = topd[i, k - 1]
        worst = topi[i, k - 1]
        w = _stage1_width(dp - c, 256)
        kept = 0
        for t in range(cnt):
            j = cand[i, t]
            if w == 256:
                s = max(np.int64(part[i, t]), _linf_256(Q, qo + c, B, j * dp + c))
            elif w == 128:
                s = max(np.int64(part[i, t]), _linf_128(Q, qo + c, B, j * dp + c))
            else:
                s = max(np.int64(part[i, t]), _linf_64(Q, qo + c, B, j * dp + c))
            cand[i, kept] = j
            part[i, kept] = s
            kept += np.int64((s < thr) | ((s == thr) & (bidx[j] < worst)))
        cnt = kept
        c += w
    _insert_survivors(i, bidx, cand, part, cnt, topd, topi)


@jit
def _stage1_l1(Q, qidx, qkey, B, bidx, bkey, exclude_self, topd, topi, i0, ni, width,
                 cand, part, cnt):
    """Stage 1 for queries i0 .. i0+ni-1 (ni is 4, or 1 for a short last tile)."""
    dp = Q.shape[1]
    k = topd.shape[1]
    r1 = i0 + 1 if ni == 4 else i0
    r2 = i0 + 2 if ni == 4 else i0
    r3 = i0 + 3 if ni == 4 else i0
    t0 = topd[i0, k - 1]
    t1 = topd[r1, k - 1]
    t2 = topd[r2, k - 1]
    t3 = topd[r3, k - 1]
    # (t, w): the k-th best (distance, index) at block start; a pair loses
    # for good once its partial distance passes it (ties go to the lower index)
    w0 = topi[i0, k - 1]
    w1 = topi[r1, k - 1]
    w2 = topi[r2, k - 1]
    w3 = topi[r3, k - 1]
    q0, q1, q2, q3 = qkey[i0], qkey[r1], qkey[r2], qkey[r3]
    c0 = c1 = c2 = c3 = 0
    for j in range(B.shape[0]):
        bo = j * dp
        if width == 256:
            s0, s1, s2, s3 = _l1_t256(Q, i0 * dp, r1 * dp, r2 * dp, r3 * dp, B, bo)
        elif width == 128:
            s0, s1, s2, s3 = _l1_t128(Q, i0 * dp, r1 * dp, r2 * dp, r3 * dp, B, bo)
        else:
            s0, s1, s2, s3 = _l1_t64(Q, i0 * dp, r1 * dp, r2 * dp, r3 * dp, B, bo)
        jg = bidx[j]
        kb = bkey[j]
        cand[i0, c0] = j
        part[i0, c0] = s0
        c0 += np.int64(((s0 < t0) | ((s0 == t0) & (jg < w0))) & (abs(q0 - kb) <= t0)
                        & ~(exclude_self & (jg == qidx[i0])))
        if ni == 4:
            cand[r1, c1] = j
            part[r1, c1] = s1
            c1 += np.int64(((s1 < t1) | ((s1 == t1) & (jg < w1))) & (abs(q1 - kb) <= t1)
                            & ~(exclude_self & (jg == qidx[r1])))
            cand[r2, c2] = j
            part[r2, c2] = s2
            c2 += np.int64(((s2 < t2) | ((s2 == t2) & (jg < w2))) & (abs(q2 - kb) <= t2)
                            & ~(exclude_self & (jg == qidx[r2])))
            cand[r3, c3] = j
            part[r3, c3] = s3
            c3 += np.int64(((s3 < t3) | ((s3 == t3) & (jg < w3))) & (abs(q3 - kb) <= t3)
                            & ~(exclude_self & (jg == qidx[r3])))
    cnt[0] = c0
    cnt[1] = c1
    cnt[2] = c2
    cnt[3] = c3


@jit
def _stage1_l2(Q, qidx, qkey, B, bidx, bkey, exclude_self, topd, topi, i0, ni, width,
                 cand, part, cnt):
    """Stage 1 for queries i0 .. i0+ni-1 (ni is 4, or 1 for a short last tile)."""
    dp = Q.shape[1]
    k = topd.shape[1]
    r1 = i0 + 1 if ni == 4 else i0
    r2 = i0 + 2 if ni == 4 else i0
    r3 = i0 + 3 if ni == 4 else i0
    t0 = topd[i0, k - 1]
    t1 = topd[r1, k - 1]
    t2 = topd[r2, k - 1]
    t3 = topd[r3, k - 1]
    # (t, w): the k-th best (distance, index) at block start; a pair loses
    # for good once its partial distance passes it (ties go to the lower index)
    w0 = topi[i0, k - 1]
    w1 = topi[r1, k - 1]
    w2 = topi[r2, k - 1]
    w3 = topi[r3, k - 1]
    q0, q1, q2, q3 = qkey[i0], qkey[r1], qkey[r2], qkey[r3]
    # (|x| - |y|)^2 <= |x - y|^2 (an integer): prune only beyond a rounding margin
    m0 = float(t0) * (1.0 + 1e-9) + 0.5
    m1 = float(t1) * (1.0 + 1e-9) + 0.5
    m2 = float(t2) * (1.0 + 1e-9) + 0.5
    m3 = float(t3) * (1.0 + 1e-9) + 0.5
    c0 = c1 = c2 = c3 = 0
    for j in range(B.shape[0]):
        bo = j * dp
        if width == 256:
            s0, s1, s2, s3 = _l2_t256(Q, i0 * dp, r1 * dp, r2 * dp, r3 * dp, B, bo)
        elif width == 128:
            s0, s1, s2, s3 = _l2_t128(Q, i0 * dp, r1 * dp, r2 * dp, r3 * dp, B, bo)
        else:
            s0, s1, s2, s3 = _l2_t64(Q, i0 * dp, r1 * dp, r2 * dp, r3 * dp, B, bo)
        jg = bidx[j]
        kb = bkey[j]
        cand[i0, c0] = j
        part[i0, c0] = s0
        c0 += np.int64(((s0 < t0) | ((s0 == t0) & (jg < w0)))
                        & ((q0 - kb) * (q0 - kb) <= m0)
                        & ~(exclude_self & (jg == qidx[i0])))
        if ni == 4:
            cand[r1, c1] = j
            part[r1, c1] = s1
            c1 += np.int64(((s1 < t1) | ((s1 == t1) & (jg < w1)))
                            & ((q1 - kb) * (q1 - kb) <= m1)
                            & ~(exclude_self & (jg == qidx[r1])))
            cand[r2, c2] = j
            part[r2, c2] = s2
            c2 += np.int64(((s2 < t2) | ((s2 == t2) & (jg < w2)))
                            & ((q2 - kb) * (q2 - kb) <= m2)
                            & ~(exclude_self & (jg == qidx[r2])))
            cand[r3, c3] = j
            part[r3, c3] = s3
            c3 += np.int64(((s3 < t3) | ((s3 == t3) & (jg < w3)))
                            & ((q3 - kb) * (q3 - kb) <= m3)
                            & ~(exclude_self & (jg == qidx[r3])))
    cnt[0] = c0
    cnt[1] = c1
    cnt[2] = c2
    cnt[3] = c3


@jit
def _stage1_linf(Q, qidx, qkey, B, bidx, bkey, exclude_self, topd, topi, i0, ni, width,
                 cand, part, cnt):
    """Stage 1 for queries i0 .. i0+ni-1 (ni is 4, or 1 for a short last tile)."""
    dp = Q.shape[1]
    k = topd.shape[1]
    r1 = i0 + 1 if ni == 4 else i0
    r2 = i0 + 2 if ni == 4 else i0
    r3 = i0 + 3 if ni == 4 else i0
    t0 = topd[i0, k - 1]
    t1 = topd[r1, k - 1]
    t2 = topd[r2, k - 1]
    t3 = topd[r3, k - 1]
    # (t, w): the k-th best (distance, index) at block start; a pair loses
    # for good once its partial distance passes it (ties go to the lower index)
    w0 = topi[i0, k - 1]
    w1 = topi[r1, k - 1]
    w2 = topi[r2, k - 1]
    w3 = topi[r3, k - 1]
    c0 = c1 = c2 = c3 = 0
    for j in range(B.shape[0]):
        bo = j * dp
        if width == 128:
            s0, s1, s2, s3 = _linf_t128(Q, i0 * dp, r1 * dp, r2 * dp, r3 * dp, B, bo)
        else:
            s0, s1, s2, s3 = _linf_t64(Q, i0 * dp, r1 * dp, r2 * dp, r3 * dp, B, bo)
        jg = bidx[j]
        cand[i0, c0] = j
        part[i0, c0] = s0
        c0 += np.int64(((s0 < t0) | ((s0 == t0) & (jg < w0))) & ~(exclude_self & (jg == qidx[i0])))
        if ni == 4:
            cand[r1, c1] = j
            part[r1, c1] = s1
            c1 += np.int64(((s1 < t1) | ((s1 == t1) & (jg < w1)))
                            & ~(exclude_self & (jg == qidx[r1])))
            cand[r2, c2] = j
            part[r2, c2] = s2
            c2 += np.int64(((s2 < t2) | ((s2 == t2) & (jg < w2)))
                            & ~(exclude_self & (jg == qidx[r2])))
            cand[r3, c3] = j
            part[r3, c3] = s3
            c3 += np.int64(((s3 < t3) | ((s3 == t3) & (jg < w3)))
                            & ~(exclude_self & (jg == qidx[r3])))
    cnt[0] = c0
    cnt[1] = c1
    cnt[2] = c2
    cnt[3] = c3


@jit_parallel
def knn_block_l1_u8(Q, qidx, qkey, B, bidx, bkey, exclude_self, topd, topi, cand, part):
    """l1 on uint8 rows; ``topd`` int64; keys are int64 pixel sums
    (|sum x - sum y| <= |x - y|_1 on non-negative data)."""
    nq, dp = Q.shape
    width = _stage1_width(dp, 256)
    for g in prange((nq + 3) // 4):
        i0 = 4 * g
        cnt = np.zeros(4, dtype=np.int64)
        if i0 + 4 <= nq:
            _stage1_l1(Q, qidx, qkey, B, bidx, bkey, exclude_self, topd, topi,
                       i0, 4, width, cand, part, cnt)
            for t in range(4):
                _finish_l1(Q, i0 + t, B, bidx, cand, part, cnt[t], width, topd, topi)
        else:
            for i in range(i0, nq):
                _stage1_l1(Q, qidx, qkey, B, bidx, bkey, exclude_self, topd, topi,
                           i, 1, width, cand, part, cnt)
                _finish_l1(Q, i, B, bidx, cand, part, cnt[0], width, topd, topi)


@jit_parallel
def knn_block_l2_u8(Q, qidx, qkey, B, bidx, bkey, exclude_self, topd, topi, cand, part):
    """Squared l2 on uint8 rows; ``topd`` int64; keys are float64 row norms."""
    nq, dp = Q.shape
    width = _stage1_width(dp, 256)
    for g in prange((nq + 3) // 4):
        i0 = 4 * g
        cnt = np.zeros(4, dtype=np.int64)
        if i0 + 4 <= nq:
            _stage1_l2(Q, qidx, qkey, B, bidx, bkey, exclude_self, topd, topi,
                       i0, 4, width, cand, part, cnt)
            for t in range(4):
                _finish_l2(Q, i0 + t, B, bidx, cand, part, cnt[t], width, topd, topi)
        else:
            for i in range(i0, nq):
                _stage1_l2(Q, qidx, qkey, B, bidx, bkey, exclude_self, topd, topi,
                           i, 1, width, cand, part, cnt)
                _finish_l2(Q, i, B, bidx, cand, part, cnt[0], width, topd, topi)


@jit_parallel
def knn_block_linf_u8(Q, qidx, qkey, B, bidx, bkey, exclude_self, topd, topi, cand, part):
    """linf on uint8 rows; ``topd`` int64; keys unused (no cheap norm bound)."""
    nq, dp = Q.shape
    width = _stage1_width(dp, 128)
    for g in prange((nq + 3) // 4):
        i0 = 4 * g
        cnt = np.zeros(4, dtype=np.int64)
        if i0 + 4 <= nq:
            _stage1_linf(Q, qidx, qkey, B, bidx, bkey, exclude_self, topd, topi,
                       i0, 4, width, cand, part, cnt)
            for t in range(4):
                _finish_linf(Q, i0 + t, B, bidx, cand, part, cnt[t], width, topd, topi)
        else:
            for i in range(i0, nq):
                _stage1_linf(Q, qidx, qkey, B, bidx, bkey, exclude_self, topd, topi,
                           i, 1, width, cand, part, cnt)
                _finish_linf(Q, i, B, bidx, cand, part, cnt[0], width, topd, topi)


# ---------------------------------------------------------- float32 kernels
# Distances are computed in float64 from the float32 values (exact enough to
# rank; the only rounding is float64 accumulation). Keys and scratch are unused.


@jit_parallel
def knn_block_l1_f32(Q, qidx, qkey, B, bidx, bkey, exclude_self, topd, topi, cand, part):
    """l1 on float32 rows; ``topd`` float64."""
    nq, d = Q.shape
    nb = B.shape[0]
    k = topd.shape[1]
    for i in prange(nq):
        thr = topd[i, k - 1]
        worst = topi[i, k - 1]
        qi = qidx[i]
        for j in range(nb):
            jg = bidx[j]
            if exclude_self and jg == qi:
                continue
            s = 0.0
            for c0 in range(0, d, CHUNK):
                part = 0.0
                for t in range(c0, min(c0 + CHUNK, d)):
                    part += abs(np.float64(Q[i, t]) - np.float64(B[j, t]))
                s += part
                if s > thr:
                    break
            if s < thr or (s == thr and jg < worst):
                _insert(topd, topi, i, s, jg)
                thr = topd[i, k - 1]
                worst = topi[i, k - 1]


@jit_parallel
def knn_block_l2_f32(Q, qidx, qkey, B, bidx, bkey, exclude_self, topd, topi, cand, part):
    """Squared l2 on float32 rows; ``topd`` float64."""
    nq, d = Q.shape
    nb = B.shape[0]
    k = topd.shape[1]
    for i in prange(nq):
        thr = topd[i, k - 1]
        worst = topi[i, k - 1]
        qi = qidx[i]
        for j in range(nb):
            jg = bidx[j]
            if exclude_self and jg == qi:
                continue
            s = 0.0
            for c0 in range(0, d, CHUNK):
                part = 0.0
                for t in range(c0, min(c0 + CHUNK, d)):
                    v = np.float64(Q[i, t]) - np.float64(B[j, t])
                    part += v * v
                s += part
                if s > thr:
                    break
            if s < thr or (s == thr and jg < worst):
                _insert(topd, topi, i, s, jg)
                thr = topd[i, k - 1]
                worst = topi[i, k - 1]


@jit_parallel
def knn_block_linf_f32(Q, qidx, qkey, B, bidx, bkey, exclude_self, topd, topi, cand, part):
    """linf on float32 rows; ``topd`` float64."""
    nq, d = Q.shape
    nb = B.shape[0]
    k = topd.shape[1]
    for i in prange(nq):
        thr = topd[i, k - 1]
        worst = topi[i, k - 1]
        qi = qidx[i]
        for j in range(nb):
            jg = bidx[j]
            if exclude_self and jg == qi:
                continue
            s = 0.0
            for c0 in range(0, d, CHUNK):
                part = 0.0
                for t in range(c0, min(c0 + CHUNK, d)):
                    part = max(part, abs(np.float64(Q[i, t]) - np.float64(B[j, t])))
                s = max(s, part)
                if s > thr:
                    break
            if s < thr or (s == thr and jg < worst):
                _insert(topd, topi, i, s, jg)
                thr = topd[i, k - 1]
                worst = topi[i, k - 1]


KERNELS = {
    ("l1", "uint8"): knn_block_l1_u8,
    ("l2", "uint8"): knn_block_l2_u8,
    ("linf", "uint8"): knn_block_linf_u8,
    ("l1", "float32"): knn_block_l1_f32,
    ("l2", "float32"): knn_block_l2_f32,
    ("linf", "float32"): knn_block_linf_f32,
}


# ------------------------------------------------ l2 via GEMM, with certificate
# The API computes G = Q @ B.T in float32 (BLAS) for a block. For a pair,
# approx = |q|^2 + |b|^2 - 2 G (norms exact) is within err = slack * |q| |b| of
# the true squared distance (float32 dot-product error bound, slack given by
# the API). Per query we keep a max-heap of the k smallest upper bounds
# approx + err (its top T is an upper bound on the true k-th distance) and a
# list of every pair whose lower bound approx - err is <= T at the time it is
# seen. Any pair not listed is provably farther than the true k-th neighbour,
# so re-ranking the listed pairs exactly gives the exact answer. A query whose
# list overflows is flagged and recomputed by the direct kernel.


@jit
def _heap_replace_top(heap, i, value):
    """Replace the max of the max-heap row i by value and sift down."""
    k = heap.shape[1]
    p = 0
    while True:
        c = 2 * p + 1
        if c >= k:
            break
        if c + 1 < k and heap[i, c + 1] > heap[i, c]:
            c += 1
        if heap[i, c] <= value:
            break
        heap[i, p] = heap[i, c]
        p = c
    heap[i, p] = value


@jit_parallel
def l2_gemm_collect(G, q_sq, q_norm, b_sq, b_norm, qidx, bidx, b_start, exclude_self, slack,
                    heap, cand, lower, count, overflow):
    """Merge one GEMM block into each query's upper-bound heap and candidate list.

    ``cand`` holds base row positions ``b_start + j`` (into the API's prepared
    base; the block's rows are ``b_start ...``), ``lower``
    their lower bounds, ``count`` the list lengths, ``overflow`` flags queries
    whose list could not hold every needed candidate.
    """
    nq, nb = G.shape
    cap = cand.shape[1]
    for i in prange(nq):
        if overflow[i]:
            continue
        T = heap[i, 0]
        c = count[i]
        for j in range(nb):
            if exclude_self and bidx[j] == qidx[i]:
                continue
            approx = q_sq[i] + b_sq[j] - 2.0 * np.float64(G[i, j])
            err = slack * q_norm[i] * b_norm[j]
            lo = approx - err
            if lo > T:
                continue
            hi = approx + err
            if hi < T:
                _heap_replace_top(heap, i, hi)
                T = heap[i, 0]
            if c == cap:
                # compact: drop the listed pairs that the tighter T now excludes
                kept = 0
                for t in range(c):
                    if lower[i, t] <= T:
                        cand[i, kept] = cand[i, t]
                        lower[i, kept] = lower[i, t]
                        kept += 1
                c = kept
                if c == cap:
                    overflow[i] = True
                    break
            cand[i, c] = b_start + j
            lower[i, c] = lo
            c += 1
        count[i] = c


@jit_parallel
def l2_rerank_u8(Q, B, bidx, heap, cand, lower, count, overflow, keys, topd, topi):
    """Exact squared distances of the listed candidates whose lower bound is
    <= the final T; the k best by (distance, index) go to topd / topi.
    ``keys`` (int64, like ``cand``) is scratch; padded uint8 rows as in the
    direct kernels."""
    nq, dp = Q.shape
    k = topd.shape[1]
    for i in prange(nq):
        if overflow[i]:
            continue
        T = heap[i, 0]
        n = 0
        for t in range(count[i]):
            if lower[i, t] <= T:
                j = cand[i, t]
                s = np.int64(0)
                for c in range(0, dp, CHUNK):
                    s += _l2_64(Q, i * dp + c, B, j * dp + c)
                # (distance, index) packed in one sortable int64
                keys[i, n] = (s << np.int64(23)) | bidx[j]
                n += 1
        row = keys[i, :n]
        row.sort()
        mask = (np.int64(1) << np.int64(23)) - 1
        for t in range(min(k, n)):
            topd[i, t] = row[t] >> np.int64(23)
            topi[i, t] = row[t] & mask


# ------------------------------------------------- vertical sketch prefilter
# Stage 0 for l1 and linf on uint8: one SIMD lane per base row (the base is
# stored transposed), so a cheap lower bound on the distance is computed for
# 32 / 64 base rows at once with no horizontal reduction; only rows whose bound
# does not already lose go on to the exact span-by-span check (``_finish_*``).
# - l1: ``ST`` (n_groups, n_pad) uint16 holds per-row sums over groups of
#   columns; sum_g |S_g(x) - S_g(y)| <= |x - y|_1 (triangle inequality). The
#   lane sums saturate at 65535, which keeps them lower bounds.
# - linf: ``BT`` (d, n_pad) uint8 is the transposed base; each query checks
#   its own list of columns (those most likely to differ a lot), and the max
#   of |x_c - y_c| over any column subset bounds |x - y|_inf from below.


def _splat(builder, value, vty):
    undef = ir.Constant(vty, ir.Undefined)
    first = builder.insert_element(undef, value, ir.Constant(ir.IntType(32), 0))
    zeros = ir.Constant(ir.VectorType(ir.IntType(32), vty.count), None)
    return builder.shuffle_vector(first, undef, zeros)


def _data_ptr(context, builder, aryty, ary):
    return cgutils.create_struct_proxy(aryty)(context, builder, value=ary).data


def _vertical_intrinsic(kind):
    """Intrinsic -> int64 bit mask; bit t set when the bound of base row
    ``col_off + t`` is <= ``thr``.

    l1:   (ST uint16 2-D, col_off, QS uint16 2-D, q_off, n_groups, thr): 32 rows,
          lanes sum_g |ST[g, col_off + t] - QS.flat[q_off + g]| (saturating).
    linf: (BT uint8 2-D, col_off, Q uint8 2-D, q_off, cols int32 2-D, c_off,
          n_cols, thr): 64 rows, lanes max_c |BT[col, col_off + t] - Q.flat[q_off + col]|
          over col = cols.flat[c_off + c], c < n_cols.
    """
    lanes, bits = (32, 16) if kind == "l1" else (64, 8)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        elt = ir.IntType(bits)
        vty = ir.VectorType(elt, lanes)
        if kind == "l1":
            st_ty, _, qs_ty, _, _, _ = signature.args
            st, col_off, qs, q_off, count, thr = args
        else:
            st_ty, _, qs_ty, _, cl_ty, _, _, _ = signature.args
            st, col_off, qs, q_off, cols, c_off, count, thr = args
            cl_data = _data_ptr(context, builder, cl_ty, cols)
        stride = builder.extract_value(
            cgutils.create_struct_proxy(st_ty)(context, builder, value=st).shape, 1)
        st_data = _data_ptr(context, builder, st_ty, st)
        qs_data = _data_ptr(context, builder, qs_ty, qs)
        fnty = ir.FunctionType(vty, [vty, vty])
        umax = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.umax.v{lanes}i{bits}")
        umin = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.umin.v{lanes}i{bits}")
        comb = cgutils.get_or_insert_function(
            builder.module, fnty, f"llvm.uadd.sat.v{lanes}i{bits}" if kind == "l1"
            else f"llvm.umax.v{lanes}i{bits}")

        entry = builder.block
        loop = builder.append_basic_block("vloop")
        done = builder.append_basic_block("vdone")
        zero_vec = ir.Constant(vty, None)
        builder.cbranch(builder.icmp_signed(">", count, ir.Constant(i64, 0)), loop, done)
        builder.position_at_end(loop)
        g = builder.phi(i64)
        acc = builder.phi(vty)
        g.add_incoming(ir.Constant(i64, 0), entry)
        acc.add_incoming(zero_vec, entry)
        if kind == "l1":
            row = g
        else:
            row = builder.sext(builder.load(builder.gep(cl_data, [builder.add(c_off, g)])), i64)
        ptr = builder.gep(st_data, [builder.add(builder.mul(row, stride), col_off)])
        v = builder.load(builder.bitcast(ptr, vty.as_pointer()), align=1)
        qv = _splat(builder, builder.load(builder.gep(qs_data, [builder.add(q_off, row)])), vty)
        diff = builder.sub(builder.call(umax, [v, qv]), builder.call(umin, [v, qv]))
        acc_next = builder.call(comb, [acc, diff])
        g_next = builder.add(g, ir.Constant(i64, 1))
        g.add_incoming(g_next, builder.block)
        acc.add_incoming(acc_next, builder.block)
        builder.cbranch(builder.icmp_signed("<", g_next, count), loop, done)
        builder.position_at_end(done)
        res = builder.phi(vty)
        res.add_incoming(zero_vec, entry)
        res.add_incoming(acc_next, loop)
        t = _splat(builder, builder.trunc(thr, elt), vty)
        mask = builder.bitcast(builder.icmp_unsigned("<=", res, t), ir.IntType(lanes))
        return builder.zext(mask, i64)

    if kind == "l1":
        def typer(typingctx, ST, col_off, QS, q_off, count, thr):
            sig = types.int64(ST, types.intp, QS, types.intp, types.intp, types.int64)
            return sig, codegen
    else:
        def typer(typingctx, BT, col_off, Q, q_off, cols, c_off, count, thr):
            sig = types.int64(BT, types.intp, Q, types.intp, cols, types.intp, types.intp,
                              types.int64)
            return sig, codegen
    typer.__name__ = f"_vertical_{kind}"
    return intrinsic(typer)


_vertical_l1 = _vertical_intrinsic("l1")
_vertical_linf = _vertical_intrinsic("linf")


@jit
def _prefilter_l1(QS, i, ST, b0, nb, thr, qi, bidx, exclude_self, cand, part):
    """Candidates of query i (bound <= thr) into cand[i, :count]; returns count.
    (A serial helper: the same loop inlined in the prange body ran 3x slower.)"""
    ng = QS.shape[1]
    c = 0
    for j0 in range(0, nb, 32):
        mask = _vertical_l1(ST, b0 + j0, QS, i * ng, ng, thr)
        if j0 + 32 > nb:
            mask &= (np.int64(1) << np.int64(nb - j0)) - 1
        while mask != 0:
            j = j0 + trailing_zeros(mask)
            mask &= mask - 1
            cand[i, c] = j
            part[i, c] = 0
            c += np.int64(not (exclude_self and bidx[j] == qi))
    return c


@jit
def _prefilter_linf(Q, i, cols, BT, b0, nb, thr, qi, bidx, exclude_self, cand, part):
    """Candidates of query i (bound <= thr) into cand[i, :count]; returns count."""
    dp = Q.shape[1]
    nc = cols.shape[1]
    c = 0
    for j0 in range(0, nb, 64):
        mask = _vertical_linf(BT, b0 + j0, Q, i * dp, cols, i * nc, nc, thr)
        if j0 + 64 > nb:
            mask &= (np.int64(1) << np.int64(nb - j0)) - 1
        while mask != 0:
            j = j0 + trailing_zeros(mask)
            mask &= mask - 1
            cand[i, c] = j
            part[i, c] = 0
            c += np.int64(not (exclude_self and bidx[j] == qi))
    return c


@jit_parallel
def knn_block_l1_u8_sketch(Q, qidx, QS, B, bidx, ST, b0, exclude_self, topd, topi, cand, part):
    """l1 on uint8 rows with the group-sum prefilter. ``QS`` (nq, n_groups) and
    ``ST`` (n_groups, n_pad) uint16 (n_pad >= b0 + nb + 32); ``b0`` is the
    column of ``ST`` holding base row 0 of this block."""
    nq = Q.shape[0]
    nb = B.shape[0]
    k = topd.shape[1]
    for i in prange(nq):
        thr = min(topd[i, k - 1], np.int64(65535))
        c = _prefilter_l1(QS, i, ST, b0, nb, thr, qidx[i], bidx, exclude_self, cand, part)
        _finish_l1(Q, i, B, bidx, cand, part, c, 0, topd, topi)


@jit_parallel
def knn_block_linf_u8_sketch(Q, qidx, cols, B, bidx, BT, b0, exclude_self, topd, topi, cand,
                             part):
    """linf on uint8 rows with the per-query column prefilter. ``cols`` (nq, C)
    int32: columns (of the prepared rows) each query checks first; ``BT``
    (dp, n_pad) uint8 is the prepared base transposed (n_pad >= b0 + nb + 64)."""
    nq = Q.shape[0]
    nb = B.shape[0]
    k = topd.shape[1]
    for i in prange(nq):
        thr = min(topd[i, k - 1], np.int64(255))
        c = _prefilter_linf(Q, i, cols, BT, b0, nb, thr, qidx[i], bidx, exclude_self, cand, part)
        _finish_linf(Q, i, B, bidx, cand, part, c, 0, topd, topi)




# ------------------------------------------------------------------ subsets


@jit_parallel
def count_in_subset(indices, rows, position, count):
    """count[s] = entries of row ``rows[s]``'s list that belong to the subset."""
    for s in prange(rows.shape[0]):
        r = rows[s]
        c = 0
        for p in range(indices.shape[1]):
            if position[indices[r, p]] >= 0:
                c += 1
        count[s] = c


@jit_parallel
def filter_to_subset(indices, distances, rows, position, out_idx, out_dist, count):
    """Neighbour lists of a subset, read off the lists of the whole set.

    For subset member s (global row ``rows[s]``), walks that row's list in
    order and keeps the entries whose global index is in the subset
    (``position[g] >= 0``), renumbered to subset positions, up to
    ``out_idx.shape[1]``; ``count[s]`` = how many were kept. Lists sorted by
    (distance, global index) stay sorted by (distance, subset index) because
    ``position`` is increasing in the global index.
    """
    k_out = out_idx.shape[1]
    for s in prange(rows.shape[0]):
        r = rows[s]
        c = 0
        for p in range(indices.shape[1]):
            if c == k_out:
                break
            pos = position[indices[r, p]]
            if pos >= 0:
                out_idx[s, c] = pos
                out_dist[s, c] = distances[r, p]
                c += 1
        count[s] = c
