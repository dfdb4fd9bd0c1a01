"""The jitted kernels of the numba backend: sgd.cpp's loops, bit for bit.

The same arithmetic as the compiled backend (see ``torch-sgd-semantics.md``): every operation
in the parameter dtype ``T``, rounded once; non-FMA dots for the forward pass (sequential below
one block of lanes, blocked from there on, as ``dot`` in math.hpp) and sequential sums for
``grad_W``; ATen's cascade sum (AVX2 lane model) for the bias gradient and the loss; fused
multiply-adds in the SGD update exactly where ``torch.optim.SGD`` uses them. The structure
follows the C++ kernel for speed, never changing a bit: four (training) or eight (loss) rows'
dots as interleaved chains, the weight gradient over four rows at a time (the same rounding
sequence as one row at a time), no allocation inside the epoch loop. Every array reaching
these kernels is C-contiguous.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._intrinsics import _block, _cast, _dot, _fma, _release, _scratch, _vacc

# error_model="numpy": IEEE division (x/0 -> inf/nan) instead of raising ZeroDivisionError, so an
# empty set's loss is NaN as in torch. _nrt=False everywhere, the entry points included: no
# array costs reference counting, and no entry wraps each array argument in a new
# reference-counted handle (~0.45 us of a seed-size call). Scratch comes from _scratch.
_KERNEL = dict(cache=True, nogil=True, error_model="numpy", _nrt=False)
# The absent row order. numba freezes a global array into the code as a read-only constant; the
# entry layer passes this same array, read-only, so that both share one specialisation.
_NO_ORDER = np.empty((1, 0), dtype=np.int64)
_NO_ORDER.flags.writeable = False
# Constants reach jitted callees as np.intp(...) / np.bool_(...): a literal argument would make
# numba compile the callee once more, specialised for it.


# --------------------------------------------------------------------------------------------
# ATen cascade_sum model (reference Appendix A1)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Forward / backward / update kernels
# --------------------------------------------------------------------------------------------


@numba.njit(**_KERNEL)
def _loss_kernel(X, Y, W, b, has_b, SQ, CS, SW, has_sw):
    """The MSE of (W, b) on (X, Y), the squared errors written to ``SQ`` first: sgd.cpp's
    ``loss_into`` (eight rows at a time, as interleaved chains below one block of lanes)."""
    M = X.shape[0]
    U, N = W.shape
    if M == 0 or U == 0:
        return _cast(np.nan, W)
    wsum = np.float64(M)
    if has_sw:
        wsum = 0.0
        for r in range(M):
            wsum += np.float64(SW[r])
    chains = 0 < N < _block(W)
    r = 0
    while r + 8 <= M:
        for u in range(U):
            if chains:
                w0 = W[u, 0]
                p0 = X[r, 0] * w0
                p1 = X[r + 1, 0] * w0
                p2 = X[r + 2, 0] * w0
                p3 = X[r + 3, 0] * w0
                p4 = X[r + 4, 0] * w0
                p5 = X[r + 5, 0] * w0
                p6 = X[r + 6, 0] * w0
                p7 = X[r + 7, 0] * w0
                for j in range(1, N):
                    wj = W[u, j]
                    p0 = p0 + X[r, j] * wj
                    p1 = p1 + X[r + 1, j] * wj
                    p2 = p2 + X[r + 2, j] * wj
                    p3 = p3 + X[r + 3, j] * wj
                    p4 = p4 + X[r + 4, j] * wj
                    p5 = p5 + X[r + 5, j] * wj
                    p6 = p6 + X[r + 6, j] * wj
                    p7 = p7 + X[r + 7, j] * wj
            else:
                # Long rows: one blocked dot each (one call site keeps the code small; CS, the
                # cascade's scratch, holds the eight results until the sum needs it).
                for k in range(8):
                    CS[k] = _dot(X, (r + k) * N, W, u * N, N)
                p0 = CS[0]
                p1 = CS[1]
                p2 = CS[2]
                p3 = CS[3]
                p4 = CS[4]
                p5 = CS[5]
                p6 = CS[6]
                p7 = CS[7]
            if has_b:
                bu = b[u]
                p0 = p0 + bu
                p1 = p1 + bu
                p2 = p2 + bu
                p3 = p3 + bu
                p4 = p4 + bu
                p5 = p5 + bu
                p6 = p6 + bu
                p7 = p7 + bu
            e0 = p0 - Y[r, u]
            e1 = p1 - Y[r + 1, u]
            e2 = p2 - Y[r + 2, u]
            e3 = p3 - Y[r + 3, u]
            e4 = p4 - Y[r + 4, u]
            e5 = p5 - Y[r + 5, u]
            e6 = p6 - Y[r + 6, u]
            e7 = p7 - Y[r + 7, u]
            k = r * U + u
            if has_sw:
                SQ[k] = (e0 * e0) * SW[r]
                SQ[k + U] = (e1 * e1) * SW[r + 1]
                SQ[k + 2 * U] = (e2 * e2) * SW[r + 2]
                SQ[k + 3 * U] = (e3 * e3) * SW[r + 3]
                SQ[k + 4 * U] = (e4 * e4) * SW[r + 4]
                SQ[k + 5 * U] = (e5 * e5) * SW[r + 5]
                SQ[k + 6 * U] = (e6 * e6) * SW[r + 6]
                SQ[k + 7 * U] = (e7 * e7) * SW[r + 7]
            else:
                SQ[k] = e0 * e0
                SQ[k + U] = e1 * e1
                SQ[k + 2 * U] = e2 * e2
                SQ[k + 3 * U] = e3 * e3
                SQ[k + 4 * U] = e4 * e4
                SQ[k + 5 * U] = e5 * e5
                SQ[k + 6 * U] = e6 * e6
                SQ[k + 7 * U] = e7 * e7
        r += 8
    while r < M:
        for u in range(U):
            p = _dot(X, r * N, W, u * N, N)
            if has_b:
                p = p + b[u]
            e = p - Y[r, u]
            SQ[r * U + u] = (e * e) * SW[r] if has_sw else e * e
        r += 1
    total = _sum_contiguous(SQ, np.intp(0), M * U, CS)
    if has_sw and wsum == 0.0:
        return _cast(0.0, W)
    return total / _cast(U * wsum, W)


@numba.njit(**_KERNEL)
def _batch_grad(
    X, Y, W, b, has_b, order, use_order, epoch, start, B, gW, gb, G, SQ, CS, SW, has_sw
):
    """Forward + backward for rows ``start .. start+B-1`` (through ``order[epoch]`` if used):
    sgd.cpp's ``batch_gradient``. Writes gW, gb (when has_b) and returns the batch loss in T."""
    total, wsum = _batch_grad_sums(
        X, Y, W, b, has_b, order, use_order, epoch, start, B, gW, gb, G, SQ, CS, SW, has_sw, -1.0
    )
    if wsum == 0.0:
        return _cast(0.0, W)
    return total / _cast(W.shape[0] * wsum, W)


@numba.njit(**_KERNEL)
def _batch_grad_sums(
    X, Y, W, b, has_b, order, use_order, epoch, start, B, gW, gb, G, SQ, CS, SW, has_sw, wtotal
):
    """:func:`_batch_grad`'s gradient normalised by ``wtotal`` (the row count or weight sum of a
    batch these rows are part of; < 0: these rows'); returns (sum of squared errors in T, the
    weight sum used)."""
    U, N = W.shape
    zero = _cast(0.0, W)
    # Sample weights: a weighted mean, sum(w e^2) / (U sum(w)), the weight sum taken in double
    # (exact for integer weights, so unit weights give torch's 2/numel bit for bit).
    wsum = np.float64(B)
    if wtotal >= 0.0:
        wsum = wtotal
    elif has_sw:
        wsum = 0.0
        for i in range(B):
            wsum += np.float64(SW[order[epoch, start + i] if use_order else start + i])
    c = _cast(2.0 / (U * wsum), W) if wsum != 0.0 else zero  # torch: 2/numel in double, then T
    for u in range(U):
        for j in range(N):
            gW[u, j] = zero
    chains = 0 < N < _block(W)
    # Four rows at a time: each weight-gradient element takes the four rows' terms in row
    # order, the same rounding sequence as one row at a time.
    i = 0
    while i + 4 <= B:
        if use_order:
            r0 = order[epoch, start + i]
            r1 = order[epoch, start + i + 1]
            r2 = order[epoch, start + i + 2]
            r3 = order[epoch, start + i + 3]
        else:
            r0 = start + i
            r1 = r0 + 1
            r2 = r0 + 2
            r3 = r0 + 3
        for u in range(U):
            if chains:
                w0 = W[u, 0]
                p0 = X[r0, 0] * w0
                p1 = X[r1, 0] * w0
                p2 = X[r2, 0] * w0
                p3 = X[r3, 0] * w0
                for j in range(1, N):
                    wj = W[u, j]
                    p0 = p0 + X[r0, j] * wj
                    p1 = p1 + X[r1, j] * wj
                    p2 = p2 + X[r2, j] * wj
                    p3 = p3 + X[r3, j] * wj
            else:
                # Long rows: one blocked dot each (one call site keeps the code small; CS, the
                # cascade's scratch, holds the four results until the sums need it).
                for k in range(4):
                    r = order[epoch, start + i + k] if use_order else start + i + k
                    CS[k] = _dot(X, r * N, W, u * N, N)
                p0 = CS[0]
                p1 = CS[1]
                p2 = CS[2]
                p3 = CS[3]
            if has_b:
                bu = b[u]
                p0 = p0 + bu
                p1 = p1 + bu
                p2 = p2 + bu
                p3 = p3 + bu
            e0 = p0 - Y[r0, u]
            e1 = p1 - Y[r1, u]
            e2 = p2 - Y[r2, u]
            e3 = p3 - Y[r3, u]
            k = i * U + u
            if has_sw:
                g0 = (e0 * c) * SW[r0]
                g1 = (e1 * c) * SW[r1]
                g2 = (e2 * c) * SW[r2]
                g3 = (e3 * c) * SW[r3]
                SQ[k] = (e0 * e0) * SW[r0]
                SQ[k + U] = (e1 * e1) * SW[r1]
                SQ[k + 2 * U] = (e2 * e2) * SW[r2]
                SQ[k + 3 * U] = (e3 * e3) * SW[r3]
            else:
                g0 = e0 * c
                g1 = e1 * c
                g2 = e2 * c
                g3 = e3 * c
                SQ[k] = e0 * e0
                SQ[k + U] = e1 * e1
                SQ[k + 2 * U] = e2 * e2
                SQ[k + 3 * U] = e3 * e3
            G[k] = g0
            G[k + U] = g1
            G[k + 2 * U] = g2
            G[k + 3 * U] = g3
            for j in range(N):
                gW[u, j] = (((gW[u, j] + g0 * X[r0, j]) + g1 * X[r1, j]) + g2 * X[r2, j]) + (
                    g3 * X[r3, j]
                )
        i += 4
    while i < B:
        r = order[epoch, start + i] if use_order else start + i
        for u in range(U):
            p = _dot(X, r * N, W, u * N, N)
            if has_b:
                p = p + b[u]
            e = p - Y[r, u]
            if has_sw:
                SQ[i * U + u] = (e * e) * SW[r]
                g = (e * c) * SW[r]
            else:
                SQ[i * U + u] = e * e
                g = e * c
            G[i * U + u] = g
            for j in range(N):
                gW[u, j] = gW[u, j] + g * X[r, j]
        i += 1
    if has_b:
        _column_sums(G, B, U, gb, CS)
    return _sum_contiguous(SQ, np.intp(0), B * U, CS), wsum


@numba.njit(**_KERNEL)
def _sgd_update(p, g, buf, wd_on, wd, mom_on, mu, damp1, initialized, nesterov, maximize, neg_lr):
    """torch.optim.SGD single-tensor step on flat ``p``, using ``g`` as scratch.

    Returns whether every new value of ``p`` is finite. One flag-free loop per stage keeps the
    compiled code small and vectorisable; each element still sees exactly torch's sequence of
    roundings.
    """
    n = p.shape[0]
    if maximize:
        for k in range(n):
            g[k] = -g[k]
    # torch's add(x, alpha=a) runs as vec::fmadd(x, a, self) on AVX2/AVX512: fused.
    if wd_on:
        for k in range(n):
            g[k] = _fma(p[k], wd, g[k])
    d = g
    if mom_on:
        if initialized:
            for k in range(n):
                buf[k] = _fma(g[k], damp1, buf[k] * mu)
        else:
            for k in range(n):
                buf[k] = g[k]  # first step: the buffer is a plain copy, no dampening
        if nesterov:
            for k in range(n):
                g[k] = _fma(buf[k], mu, g[k])
        else:
            d = buf
    # q - q is 0 for a finite q and NaN otherwise: an integer count (which LLVM vectorises)
    # tells the same as the kernel's floating-point sum of them.
    bad = 0
    for k in range(n):
        q = _fma(d[k], neg_lr, p[k])
        p[k] = q
        bad += (q - q) != 0
    return bad == 0


@numba.njit(**_KERNEL)
def _scratch_size(W, has_b, R, batch_size, Xv, has_valid):
    """Elements of _train_kernel's scratch: the scaled and the squared errors of a batch, the
    validation set's squared errors, the gradients, the cascade levels."""
    U, N = W.shape
    nvu = Xv.shape[0] * U if has_valid else 0
    return 2 * min(batch_size, R) * U + nvu + U * N + (U if has_b else 0) + 4 * _block(W)


@numba.njit(**_KERNEL)
def _train_kernel(X, Y, W, b, has_b, order, use_order, R, batch_size, lr, wd_w, wd_b, momentum,
                  dampening, nesterov, maximize, buf_W, buf_b, initialized, losses, Xv, Yv,
                  vlosses, has_valid, target_loss, SW, has_sw, g0, g1, scratch):  # fmt: skip
    """sgd.cpp's ``train`` over steps ``g0 .. g1-1`` of ``lr.shape[0]`` epochs of S steps, in
    place; (steps applied, status)."""
    U, N = W.shape
    S = (R + batch_size - 1) // batch_size
    nbu = min(batch_size, R) * U
    nvu = Xv.shape[0] * U if has_valid else 0
    ngb = U if has_b else 0
    o = 2 * nbu + nvu
    G = scratch[:nbu]
    SQ = scratch[nbu : 2 * nbu]
    SQv = scratch[2 * nbu : o]
    gWf = scratch[o : o + U * N]
    gW = gWf.reshape(U, N)
    gb = scratch[o + U * N : o + U * N + ngb]
    CS = scratch[o + U * N + ngb :]
    Wf = W.reshape(U * N)
    bufWf = buf_W.reshape(buf_W.size)
    wdw_on = wd_w != 0.0
    wdb_on = wd_b != 0.0
    mom_on = momentum != 0.0
    wdw_t = _cast(wd_w, W)
    wdb_t = _cast(wd_b, W)
    mu_t = _cast(momentum, W)
    damp1_t = _cast(1.0 - dampening, W)  # 1 - dampening formed in double, then rounded
    steps = 0
    # Global steps g0 .. g1-1 of the call (g = e*S + s); any earlier ones were applied by a
    # previous call, so the momentum buffers hold state from g0 > 0 on.
    initialized = initialized or (mom_on and g0 > 0)
    g1 = min(g1, lr.shape[0] * S)
    e = g0 // S
    s0 = g0 - e * S
    g = g0
    while g < g1:
        neg_lr = _cast(-lr[e], W)
        s1 = min(S, s0 + (g1 - g))
        for s in range(s0, s1):
            start = s * batch_size
            B = min(batch_size, R - start)
            bl = _batch_grad(
                X, Y, W, b, has_b, order, use_order, e, start, B, gW, gb, G, SQ, CS, SW, has_sw
            )
            blf = np.float64(bl)
            losses[e * S + s] = blf
            if not math.isfinite(blf):
                return steps, 2
            ok = _sgd_update(Wf, gWf, bufWf, wdw_on, wdw_t, mom_on, mu_t, damp1_t, initialized,
                             nesterov, maximize, neg_lr)  # fmt: skip
            if has_b:
                ok_b = _sgd_update(b, gb, buf_b, wdb_on, wdb_t, mom_on, mu_t, damp1_t,
                                   initialized, nesterov, maximize, neg_lr)  # fmt: skip
                ok = ok and ok_b
            if mom_on:
                initialized = True
            steps += 1
            if not ok:
                return steps, 2
            if blf < target_loss:
                return steps, 1
        g += s1 - s0
        if has_valid and s1 == S:
            vlosses[e] = np.float64(_loss_kernel(Xv, Yv, W, b, has_b, SQv, CS, SW, np.bool_(False)))
        e += 1
        s0 = 0
    return steps, 0


@numba.njit(**_KERNEL)
def _train_entry(X, Y, W, b, has_b, order, use_order, R, batch_size, lr, wd_w, wd_b, momentum,
                 dampening, nesterov, maximize, buf_W, buf_b, initialized, losses, Xv, Yv,
                 vlosses, has_valid, target_loss, SW, has_sw, g0, g1):  # fmt: skip
    """_train_kernel with its scratch; status -1 when there is no memory for it."""
    n = _scratch_size(W, has_b, R, batch_size, Xv, has_valid)
    scratch = _scratch(n, W)
    if scratch.shape[0] != n:
        return 0, -1
    res = _train_kernel(X, Y, W, b, has_b, order, use_order, R, batch_size, lr, wd_w, wd_b,
                        momentum, dampening, nesterov, maximize, buf_W, buf_b, initialized,
                        losses, Xv, Yv, vlosses, has_valid, target_loss, SW, has_sw, g0, g1,
                        scratch)  # fmt: skip
    _release(scratch)
    return res


@numba.njit(**_KERNEL)
def _train_plain(X, Y, W, b, batch_size, lr, wd_w, wd_b, maximize, losses, target_loss):
    """``_train_entry`` without order, momentum, validation or sample weights: the common call,
    with few arguments for the dispatcher to type."""
    no = np.bool_(False)
    # an empty b is no bias (with U == 0 nothing depends on it)
    has_b = b.shape[0] != 0
    e1 = b[:0]
    e2 = W[:0]
    return _train_entry(X, Y, W, b, has_b, _NO_ORDER, no, X.shape[0], batch_size, lr, wd_w,
                        wd_b, 0.0, 0.0, no, maximize, e2, e1, no, losses, e2, e2, losses[:0], no,
                        target_loss, e1, no, np.intp(0), losses.shape[0])  # fmt: skip


@numba.njit(**_KERNEL)
def _train_momentum(X, Y, W, b, batch_size, lr, wd_w, wd_b, momentum, dampening, nesterov,
                    maximize, buf_W, buf_b, initialized, losses, target_loss):  # fmt: skip
    """``_train_plain`` with momentum (and its buffers)."""
    no = np.bool_(False)
    has_b = b.shape[0] != 0
    e1 = b[:0]
    e2 = W[:0]
    return _train_entry(X, Y, W, b, has_b, _NO_ORDER, no, X.shape[0], batch_size, lr, wd_w,
                        wd_b, momentum, dampening, nesterov, maximize, buf_W, buf_b, initialized,
                        losses, e2, e2, losses[:0], no, target_loss, e1, no, np.intp(0),
                        losses.shape[0])  # fmt: skip


@numba.njit(**_KERNEL)
def _loss_entry(X, Y, W, b, has_b, SW, has_sw):
    """(loss, whether there was memory for the scratch)."""
    n = X.shape[0] * W.shape[0]
    scratch = _scratch(n + 4 * _block(W), W)
    if scratch.shape[0] != n + 4 * _block(W):
        return _cast(0.0, W), False
    res = _loss_kernel(X, Y, W, b, has_b, scratch[:n], scratch[n:], SW, has_sw)
    _release(scratch)
    return res, True


@numba.njit(**_KERNEL)
def _gradient_entry(X, Y, W, b, has_b, gW, gb, SW, has_sw):
    """(batch loss, whether there was memory for the scratch); writes gW, gb."""
    M = X.shape[0]
    n = M * W.shape[0]
    scratch = _scratch(2 * n + 4 * _block(W), W)
    if scratch.shape[0] != 2 * n + 4 * _block(W):
        return _cast(0.0, W), False
    nil = np.intp(0)
    res = _batch_grad(X, Y, W, b, has_b, _NO_ORDER, np.bool_(False), nil, nil, M, gW, gb,
                      scratch[:n], scratch[n : 2 * n], scratch[2 * n :], SW, has_sw)  # fmt: skip
    _release(scratch)
    return res, True


@numba.njit(**_KERNEL)
def _partial_gradient_entry(X, Y, W, b, has_b, gW, gb, SW, has_sw, wtotal):
    """(rows' sum of squared errors, whether there was memory for the scratch); writes gW, gb."""
    M = X.shape[0]
    n = M * W.shape[0]
    scratch = _scratch(2 * n + 4 * _block(W), W)
    if scratch.shape[0] != 2 * n + 4 * _block(W):
        return _cast(0.0, W), False
    nil = np.intp(0)
    sse, _ = _batch_grad_sums(X, Y, W, b, has_b, _NO_ORDER, np.bool_(False), nil, nil, M, gW, gb,
                              scratch[:n], scratch[n : 2 * n], scratch[2 * n :], SW, has_sw,
                              wtotal)  # fmt: skip
    _release(scratch)
    return sse, True


@numba.njit(**_KERNEL)
def _update_entry(W, b, has_b, gW, gb, lr, wd_w, wd_b, momentum, dampening, nesterov, maximize,
                  buf_W, buf_b, initialized):  # fmt: skip
    """``_train_kernel``'s update of one step by the gradient (gW, gb), which it leaves as it
    is; (whether every parameter is finite afterwards, whether there was memory for a copy of
    the gradient)."""
    U, N = W.shape
    n = U * N + (U if has_b else 0)
    g = _scratch(n, W)
    if g.shape[0] != n:
        return False, False
    gWf = gW.reshape(U * N)
    for k in range(U * N):
        g[k] = gWf[k]
    mom_on = momentum != 0.0
    mu_t = _cast(momentum, W)
    damp1_t = _cast(1.0 - dampening, W)
    neg_lr = _cast(-lr, W)
    ok = _sgd_update(W.reshape(U * N), g[: U * N], buf_W.reshape(buf_W.size), wd_w != 0.0,
                     _cast(wd_w, W), mom_on, mu_t, damp1_t, initialized, nesterov, maximize,
                     neg_lr)  # fmt: skip
    if has_b:
        gbs = g[U * N :]
        for u in range(U):
            gbs[u] = gb[u]
        ok_b = _sgd_update(b, gbs, buf_b, wd_b != 0.0, _cast(wd_b, W), mom_on, mu_t, damp1_t,
                           initialized, nesterov, maximize, neg_lr)  # fmt: skip
        ok = ok and ok_b
    _release(g)
    return ok, True
