"""LLVM intrinsics of the uint8 kNN kernels: byte spans and vertical bounds.

The metric is a literal integer argument (``L1``, ``L2``, ``LINF``), as is the
span width: every call site compiles to the one reduction it names. Kernels
generated per metric capture that literal (never a dispatcher, which would
miss Numba's cache on every run).

- ``span(kind, width, acc, A, a_off, B, b_off)``: ``width`` bytes of two
  uint8 arrays at flat offsets, reduced once and added to ``acc`` (linf: the
  max of the two): LLVM turns l1 into ``psadbw``, l2
  into ``pmaddwd`` / ``vpdpwssd``, linf into ``pmaxub`` / ``pminub``
  (on AVX-512: 64 bytes per instruction).
- ``tile(kind, width, Q, o0, o1, o2, o3, B, b_off)``: the same for one base
  row against four query rows, the base bytes loaded once.
- ``vertical_l1`` / ``vertical_linf``: one SIMD lane per base row of a
  transposed base (see ``knn_prefilter``).
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

L1, L2, LINF = 0, 1, 2
METRIC_CODES = {"l1": L1, "l2": L2, "linf": LINF}


def _data_ptr(context, builder, aryty, ary):
    return cgutils.create_struct_proxy(aryty)(context, builder, value=ary).data


def _load_bytes(context, builder, aryty, ary, offset, width):
    vty = ir.VectorType(ir.IntType(8), width)
    ptr = builder.bitcast(builder.gep(_data_ptr(context, builder, aryty, ary), [offset]),
                          vty.as_pointer())
    return builder.load(ptr, align=1)


def _umax_umin(builder, vty, lanes, bits):
    fnty = ir.FunctionType(vty, [vty, vty])
    return tuple(cgutils.get_or_insert_function(builder.module, fnty, f"llvm.{op}.v{lanes}i{bits}")
                 for op in ("umax", "umin"))


def _abs_diff(builder, a, b, lanes, bits):
    # |a - b| without widening: max(a, b) - min(a, b) on unsigned lanes
    umax, umin = _umax_umin(builder, a.type, lanes, bits)
    return builder.sub(builder.call(umax, [a, b]), builder.call(umin, [a, b]))


def _reduce(builder, op, vec, width, bits):
    fnty = ir.FunctionType(ir.IntType(bits), [vec.type])
    fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.vector.reduce.{op}.v{width}i{bits}")
    return builder.zext(builder.call(fn, [vec]), ir.IntType(64))


def _reduce_pair(builder, kind, a, b, width):
    """sum |a-b| (l1), sum (a-b)^2 (l2) or max |a-b| (linf) of two byte vectors, int64."""
    if kind == LINF:
        return _reduce(builder, "umax", _abs_diff(builder, a, b, width, 8), width, 8)
    i32 = ir.VectorType(ir.IntType(32), width)
    if kind == L1:
        terms = builder.zext(_abs_diff(builder, a, b, width, 8), i32)
    else:
        i16 = ir.VectorType(ir.IntType(16), width)
        diff = builder.sext(builder.sub(builder.zext(a, i16), builder.zext(b, i16)), i32)
        terms = builder.mul(diff, diff)
    return _reduce(builder, "add", terms, width, 32)


def _literal_kind_width(kind, width, *arrays):
    """(kind, width) when both are integer literals and the arrays uint8, else None."""
    if not all(isinstance(t, types.IntegerLiteral) for t in (kind, width)):
        return None
    if not all(isinstance(t, types.Array) and t.dtype == types.uint8 for t in arrays):
        return None
    return kind.literal_value, width.literal_value


@intrinsic
def span(typingctx, kind, width, acc, A, a_off, B, b_off):
    """acc + the reduction (by ``kind``) over ``width`` bytes of A at a_off and B
    at b_off (linf: max(acc, reduction)), int64."""
    kw = _literal_kind_width(kind, width, A, B)
    if kw is None:
        return None
    k, w = kw
    sig = types.int64(kind, width, types.int64, A, types.intp, B, types.intp)

    def codegen(context, builder, signature, args):
        a = _load_bytes(context, builder, signature.args[3], args[3], args[4], w)
        b = _load_bytes(context, builder, signature.args[5], args[5], args[6], w)
        r = _reduce_pair(builder, k, a, b, w)
        if k == LINF:
            return builder.select(builder.icmp_signed(">", args[2], r), args[2], r)
        return builder.add(args[2], r)

    return sig, codegen


@intrinsic
def tile(typingctx, kind, width, Q, o0, o1, o2, o3, B, b_off):
    """4-tuple of int64: the span reduction of B at b_off against Q at o0 .. o3."""
    kw = _literal_kind_width(kind, width, Q, B)
    if kw is None:
        return None
    k, w = kw
    ret = types.UniTuple(types.int64, 4)
    sig = ret(kind, width, Q, types.intp, types.intp, types.intp, types.intp, B, types.intp)

    def codegen(context, builder, signature, args):
        b = _load_bytes(context, builder, signature.args[7], args[7], args[8], w)
        out = [_reduce_pair(builder, k, _load_bytes(context, builder, signature.args[2], args[2],
                                                    args[3 + t], w), b, w)
               for t in range(4)]
        return context.make_tuple(builder, ret, out)

    return sig, codegen


# ------------------------------------------------------- vertical bounds


def _splat(builder, value, vty):
    undef = ir.Constant(vty, ir.Undefined)
    first = builder.insert_element(undef, value, ir.Constant(ir.IntType(32), 0))
    zeros = ir.Constant(ir.VectorType(ir.IntType(32), vty.count), None)
    return builder.shuffle_vector(first, undef, zeros)


def _vertical_intrinsic(kind):
    """Intrinsic -> int64 bit mask; bit t set when the bound of base row
    ``col_off + t`` is <= ``thr``.

    l1:   (ST uint16 2-D, col_off, QS uint16 2-D, q_off, n_groups, thr): 32 rows,
          lanes sum_g |ST[g, col_off + t] - QS.flat[q_off + g]| (saturating).
    linf: (BT uint8 2-D, col_off, Q uint8 2-D, q_off, cols int32 2-D, c_off,
          n_cols, thr): 64 rows, lanes max_c |BT[col, col_off + t] - Q.flat[q_off + col]|
          over col = cols.flat[c_off + c], c < n_cols.
    """
    lanes, bits = (32, 16) if kind == L1 else (64, 8)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        elt = ir.IntType(bits)
        vty = ir.VectorType(elt, lanes)
        if kind == L1:
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
        comb = cgutils.get_or_insert_function(
            builder.module, fnty, f"llvm.uadd.sat.v{lanes}i{bits}" if kind == L1
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
        if kind == L1:
            row = g
        else:
            row = builder.sext(builder.load(builder.gep(cl_data, [builder.add(c_off, g)])), i64)
        ptr = builder.gep(st_data, [builder.add(builder.mul(row, stride), col_off)])
        v = builder.load(builder.bitcast(ptr, vty.as_pointer()), align=1)
        qv = _splat(builder, builder.load(builder.gep(qs_data, [builder.add(q_off, row)])), vty)
        acc_next = builder.call(comb, [acc, _abs_diff(builder, v, qv, lanes, bits)])
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

    if kind == L1:
        def typer(typingctx, ST, col_off, QS, q_off, count, thr):
            sig = types.int64(ST, types.intp, QS, types.intp, types.intp, types.int64)
            return sig, codegen
    else:
        def typer(typingctx, BT, col_off, Q, q_off, cols, c_off, count, thr):
            sig = types.int64(BT, types.intp, Q, types.intp, cols, types.intp, types.intp,
                              types.int64)
            return sig, codegen
    typer.__name__ = f"vertical_{'l1' if kind == L1 else 'linf'}"
    return intrinsic(typer)


vertical_l1 = _vertical_intrinsic(L1)
vertical_linf = _vertical_intrinsic(LINF)
