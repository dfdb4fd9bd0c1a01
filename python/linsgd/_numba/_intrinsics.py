"""Exact-float intrinsics of the numba backend: one rounding per operation, as in math.hpp.

``_fma`` is the only fused multiply-add the kernels can emit: numba's default
``fastmath=False`` keeps LLVM from contracting ``a*b + c`` or reassociating sums anywhere
else. ``_dot`` and ``_vacc`` hold their lanes in one LLVM vector: element-wise IEEE
operations, the same bits as the scalar loops they replace, generated inline so that a call
costs no reference counting.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload


@intrinsic
def _fma(typingctx, a, b, c):
    """Correctly rounded ``a*b + c`` (one rounding) via the ``llvm.fma`` intrinsic."""
    if isinstance(a, types.Float) and a == b and a == c:

        def codegen(context, builder, signature, args):
            ty = context.get_value_type(signature.return_type)
            fnty = ir.FunctionType(ty, [ty, ty, ty])
            fn = builder.module.declare_intrinsic("llvm.fma", [ty], fnty=fnty)
            return builder.call(fn, args)

        return a(a, b, c), codegen
    return None


def _cast(value, like):  # pragma: no cover - replaced by the overload inside jitted code
    raise NotImplementedError


@overload(_cast)
def _cast_overload(value, like):
    """Round ``value`` once to the dtype of the array ``like``."""
    if isinstance(like, types.Array) and like.dtype == types.float32:
        return lambda value, like: np.float32(value)
    if isinstance(like, types.Array) and like.dtype == types.float64:
        return lambda value, like: np.float64(value)
    return None


def _float_array(a) -> bool:
    return isinstance(a, types.Array) and a.dtype in (types.float32, types.float64)


def _block_width(dtype) -> int:
    """Elements in 128 bytes: the blocked dot's lanes (``DotLanes`` in math.hpp), and the
    ``4 rows x 32-byte AVX2 vector`` group of ATen's vectorised cascade sum."""
    return 128 // (dtype.bitwidth // 8)


def _block(like):  # pragma: no cover - replaced by the overload inside jitted code
    raise NotImplementedError


@overload(_block)
def _block_overload(like):
    """``_block_width`` of the array ``like``'s dtype, a compile-time constant."""
    if _float_array(like):
        width = _block_width(like.dtype)
        return lambda like: width
    return None


def _vector_ops(context, builder, dtype):
    """(vector type, element alignment, loader of ``width`` elements at ``ptr + offset``)."""
    elem = context.get_value_type(dtype)
    width = _block_width(dtype)
    vec = ir.VectorType(elem, width)
    align = dtype.bitwidth // 8

    def load(ptr, offset):
        p = builder.bitcast(builder.gep(ptr, [offset]), vec.as_pointer())
        return builder.load(p, align=align)

    return vec, width, load


@intrinsic
def _dot(typingctx, x, xo, w, wo, n):
    """``x[xo:xo+n] . w[wo:wo+n]`` without fused multiply-adds, in the order of ``dot`` in
    math.hpp (``x``, ``w``: C-contiguous, of any rank; ``xo``, ``wo``: offsets into their flat
    data).

    Below one block of L lanes (128 bytes' worth) the sum is sequential, torch's order on small
    problems. From there on lane ``l`` is ``x[l]*w[l]``, then ``+ x[l+kL]*w[l+kL]`` for each
    further whole block in order; the lanes are combined by the halving tree (lane l takes lane
    l + half, half = L/2, ..., 1), then the tail is added to lane 0 sequentially. The L lanes
    are one LLVM vector: element-wise IEEE multiplies and adds, never fused or reassociated.
    """
    if not (
        _float_array(x)
        and _float_array(w)
        and x.dtype == w.dtype
        and x.layout == "C"
        and w.layout == "C"
        and all(isinstance(t, types.Integer) for t in (xo, wo, n))
    ):
        return None
    sig = x.dtype(x, xo, w, wo, n)

    def codegen(context, builder, signature, args):
        vec, width, load = _vector_ops(context, builder, x.dtype)
        elem = context.get_value_type(x.dtype)
        intp = context.get_value_type(types.intp)
        xa = context.make_array(x)(context, builder, args[0])
        wa = context.make_array(w)(context, builder, args[2])
        xo_, wo_, n_ = (
            context.cast(builder, args[k], signature.args[k], types.intp) for k in (1, 3, 4)
        )
        xp = builder.gep(xa.data, [xo_])
        wp = builder.gep(wa.data, [wo_])
        one = ir.Constant(intp, 1)
        lanes = ir.Constant(intp, width)

        def product(j):
            x_j = builder.load(builder.gep(xp, [j]))
            return builder.fmul(x_j, builder.load(builder.gep(wp, [j])))

        total = cgutils.alloca_once(builder, elem)

        def add_products(start):  # total += x[j]*w[j] for j = start .. n-1, in order
            with cgutils.for_range(builder, n_, start=start) as loop:
                builder.store(builder.fadd(builder.load(total), product(loop.index)), total)

        with builder.if_else(builder.icmp_signed("<", n_, lanes)) as (short, blocked):
            with short:
                builder.store(ir.Constant(elem, 0.0), total)
                with builder.if_then(builder.icmp_signed(">", n_, ir.Constant(intp, 0))):
                    builder.store(product(ir.Constant(intp, 0)), total)
                    add_products(one)
            with blocked:
                acc = cgutils.alloca_once(builder, vec)
                zero = ir.Constant(intp, 0)
                builder.store(builder.fmul(load(xp, zero), load(wp, zero)), acc)
                nb = builder.sdiv(n_, lanes)
                with cgutils.for_range(builder, nb, start=one) as loop:
                    off = builder.mul(loop.index, lanes)
                    block = builder.fmul(load(xp, off), load(wp, off))
                    builder.store(builder.fadd(builder.load(acc), block), acc)
                v = builder.load(acc)
                half = width // 2
                i32 = ir.IntType(32)
                while half >= 1:
                    mask_ty = ir.VectorType(i32, half)
                    lo = ir.Constant(mask_ty, list(range(half)))
                    hi = ir.Constant(mask_ty, list(range(half, 2 * half)))
                    lo = builder.shuffle_vector(v, v, lo)
                    hi = builder.shuffle_vector(v, v, hi)
                    v = builder.fadd(lo, hi)
                    half //= 2
                builder.store(builder.extract_element(v, ir.Constant(i32, 0)), total)
                add_products(builder.mul(nb, lanes))
        return builder.load(total)

    return sig, codegen


@intrinsic
def _vacc(typingctx, acc, data, off, count):
    """``acc[l] = acc[l] + data[off + i*L + l]`` for i = 0 .. count-1 in order, l < L (128
    bytes' worth): L sequential sums advanced in lockstep, held in one LLVM vector."""
    if not (
        _float_array(acc)
        and _float_array(data)
        and acc.dtype == data.dtype
        and acc.layout == "C"
        and data.layout == "C"
        and acc.ndim == 1
        and data.ndim == 1
        and isinstance(off, types.Integer)
        and isinstance(count, types.Integer)
    ):
        return None
    sig = types.none(acc, data, off, count)

    def codegen(context, builder, signature, args):
        vec, width, load = _vector_ops(context, builder, data.dtype)
        intp = context.get_value_type(types.intp)
        aa = context.make_array(acc)(context, builder, args[0])
        da = context.make_array(data)(context, builder, args[1])
        off_, count_ = (
            context.cast(builder, args[k], signature.args[k], types.intp) for k in (2, 3)
        )
        dp = builder.gep(da.data, [off_])
        zero = ir.Constant(intp, 0)
        slot = cgutils.alloca_once(builder, vec)
        builder.store(load(aa.data, zero), slot)
        with cgutils.for_range(builder, count_) as loop:
            o = builder.mul(loop.index, ir.Constant(intp, width))
            builder.store(builder.fadd(builder.load(slot), load(dp, o)), slot)
        ap = builder.bitcast(aa.data, vec.as_pointer())
        builder.store(builder.load(slot), ap, align=data.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _scratch(typingctx, n, like):
    """``n`` uninitialised elements of ``like``'s dtype from ``malloc``, as an array that no
    reference count tracks, so that the kernels can run without numba's runtime (whose entry
    would wrap every array argument in a new reference-counted handle, on every call). Zero
    elements when ``malloc`` fails; :func:`_release` frees it."""
    if not (_float_array(like) and isinstance(n, types.Integer)):
        return None
    arrty = types.Array(like.dtype, 1, "C")

    def codegen(context, builder, signature, args):
        intp = context.get_value_type(types.intp)
        n_ = context.cast(builder, args[0], signature.args[0], types.intp)
        itemsize = ir.Constant(intp, like.dtype.bitwidth // 8)
        malloc = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(cgutils.voidptr_t, [intp]), "malloc"
        )
        # a size that does not fit asks for SIZE_MAX bytes, which malloc refuses
        fits = builder.icmp_unsigned(
            "<=", n_, ir.Constant(intp, (2**63 - 1) // (like.dtype.bitwidth // 8))
        )
        nbytes = builder.select(fits, builder.mul(n_, itemsize), ir.Constant(intp, -1))
        ptr = builder.call(malloc, [nbytes])
        size = builder.select(cgutils.is_not_null(builder, ptr), n_, ir.Constant(intp, 0))
        ary = context.make_array(arrty)(context, builder)
        context.populate_array(
            ary,
            data=builder.bitcast(ptr, ary.data.type),
            shape=[size],
            strides=[itemsize],
            itemsize=itemsize,
            meminfo=None,
        )
        return ary._getvalue()

    return arrty(n, like), codegen


@intrinsic
def _release(typingctx, a):
    """``free`` the memory of an array made by :func:`_scratch`."""
    if not (_float_array(a) and a.ndim == 1):
        return None

    def codegen(context, builder, signature, args):
        free = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [cgutils.voidptr_t]), "free"
        )
        data = context.make_array(a)(context, builder, args[0]).data
        builder.call(free, [builder.bitcast(data, cgutils.voidptr_t)])
        return context.get_dummy_value()

    return types.none(a), codegen
