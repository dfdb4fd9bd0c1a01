"""ATen's cascade sum (reference Appendix A1, AVX2 lane model) in jitted code: ``torch.sum``
of a contiguous run (the loss, the batch loss) and the column sums of a batch's scaled errors
(the bias gradient), as math.hpp has them."""

from __future__ import annotations

import numba
import numpy as np

from ._intrinsics import _block, _cast, _vacc
from ._jit import _KERNEL


@numba.njit(**_KERNEL)
def _ceil_log2(x: int) -> int:
    if x <= 2:
        return 1
    v = x - 1
    n = 0
    while v > 0:
        v >>= 1
        n += 1
    return n


@numba.njit(**_KERNEL)
def _multi_row_sum(data, off, stride, size):
    """ATen ``multi_row_sum`` of ``data[off + i*stride]``, i < size: four cascade levels."""
    zero = _cast(0.0, data)
    acc0 = zero
    acc1 = zero
    acc2 = zero
    acc3 = zero
    lp = max(4, _ceil_log2(size) // 4)
    step = 1 << lp
    mask = step - 1
    i = 0
    while i + step <= size:
        for _ in range(step):
            acc0 = acc0 + data[off + i * stride]
            i += 1
        acc1 = acc1 + acc0
        acc0 = zero
        if (i & (mask << lp)) == 0:
            acc2 = acc2 + acc1
            acc1 = zero
            if (i & (mask << (2 * lp))) == 0:
                acc3 = acc3 + acc2
                acc2 = zero
    while i < size:
        acc0 = acc0 + data[off + i * stride]
        i += 1
    acc0 = acc0 + acc1
    acc0 = acc0 + acc2
    acc0 = acc0 + acc3
    return acc0


@numba.njit(**_KERNEL)
def _row_sum(data, off, stride, size):
    """ATen ``row_sum`` (ilp 4): four interleaved multi_row_sums, then the tail, then combine."""
    n4 = size // 4
    p0 = _multi_row_sum(data, off, 4 * stride, n4)
    p1 = _multi_row_sum(data, off + stride, 4 * stride, n4)
    p2 = _multi_row_sum(data, off + 2 * stride, 4 * stride, n4)
    p3 = _multi_row_sum(data, off + 3 * stride, 4 * stride, n4)
    for i in range(4 * n4, size):
        p0 = p0 + data[off + i * stride]
    p0 = p0 + p1
    p0 = p0 + p2
    p0 = p0 + p3
    return p0


@numba.njit(**_KERNEL)
def _cascade_blocks(data, off, size, cs):
    """ATen ``multi_row_sum`` over ``size`` consecutive blocks of K (= 128 bytes' worth)
    elements from ``data[off]``: K sums sharing one control flow, in lockstep. The four levels
    live in ``cs[0:K]``, ``cs[K:2K]``, ``cs[2K:3K]``, ``cs[3K:4K]``; the K results end in
    ``cs[0:K]``. math.hpp's ``cascade_multi_row_sum`` with NROWS x LANES = K."""
    K = _block(data)
    zero = _cast(0.0, data)
    for m in range(K):
        cs[m] = zero
    lp = max(4, _ceil_log2(size) // 4)
    step = 1 << lp
    if size < step:
        # Nothing is flushed upward: levels 1-3 stay +0, and adding +0 to level 0 at the end
        # changes no bit (level 0 starts at +0, so it is never -0; x + 0 is x for any other x,
        # a NaN keeping its payload as the first operand).
        _vacc(cs, data, off, size)
        return
    for m in range(K, 4 * K):
        cs[m] = zero
    mask = step - 1
    i = 0
    while i + step <= size:
        _vacc(cs, data, off + i * K, step)
        i += step
        for m in range(K):
            cs[K + m] = cs[K + m] + cs[m]
            cs[m] = zero
        if (i & (mask << lp)) == 0:
            for m in range(K):
                cs[2 * K + m] = cs[2 * K + m] + cs[K + m]
                cs[K + m] = zero
            if (i & (mask << (2 * lp))) == 0:
                for m in range(K):
                    cs[3 * K + m] = cs[3 * K + m] + cs[2 * K + m]
                    cs[2 * K + m] = zero
    if i < size:
        _vacc(cs, data, off + i * K, size - i)
    for m in range(K):
        cs[m] = cs[m] + cs[K + m]
    for m in range(K):
        cs[m] = cs[m] + cs[2 * K + m]
    for m in range(K):
        cs[m] = cs[m] + cs[3 * K + m]


@numba.njit(**_KERNEL)
def _sum_contiguous(data, off, n, cs):
    """``torch.sum`` of the contiguous ``data[off:off+n]``: math.hpp's ``cascade_sum_contiguous``
    (inner reduction, AVX2 lanes V = K/4; ``cs`` is scratch of 4K elements)."""
    K = _block(data)
    V = K // 4
    if n < V:
        return _row_sum(data, off, np.intp(1), n)
    nv = n // V
    # row_sum<V lanes>: multi_row_sum over 4 x V lanes (one K block a step), the leftover
    # vectors added to the first row's lanes, then rows 1..3 added to it in order.
    n4 = nv // 4
    _cascade_blocks(data, off, n4, cs)
    for i in range(4 * n4, nv):
        for lane in range(V):
            cs[lane] = cs[lane] + data[off + i * V + lane]
    for k in range(1, 4):
        for lane in range(V):
            cs[lane] = cs[lane] + cs[k * V + lane]
    # The scalar tail is added before the lanes, in lane order (ATen's vectorised reduce).
    total = _cast(0.0, data)
    for k in range(nv * V, n):
        total = total + data[off + k]
    for lane in range(V):
        total = total + cs[lane]
    return total


@numba.njit(**_KERNEL)
def _column_sums(data, B, U, out, cs):
    """``out[u] = torch.sum(G, 0)[u]`` for ``G = data[:B*U].reshape(B, U)``; ``cs``: scratch of
    4 blocks."""
    if U == 1:
        out[0] = _sum_contiguous(data, np.intp(0), B, cs)
        return
    vec = _block(data) // 4
    if U >= vec:
        nplain = 4 * vec * (U // (4 * vec))
    else:
        nplain = 4 * (U // 4)
    for u in range(U):
        if u < nplain:
            out[u] = _multi_row_sum(data, u, U, B)
        else:
            out[u] = _row_sum(data, u, U, B)
