"""The loss, gradient and update kernels of the numba backend: sgd.cpp's ``loss_into``
(:func:`_loss_kernel`), ``batch_gradient`` (:func:`_batch_grad`, :func:`_batch_grad_sums`) and
torch.optim.SGD's step (:func:`_sgd_update`, :func:`_update_params`)."""

from __future__ import annotations

import numba
import numpy as np

from ._intrinsics import _block, _cast, _dot, _fma
from ._jit import _INLINE, _KERNEL
from ._sums import _column_sums, _sum_contiguous


@numba.njit(**_INLINE)
def _mean_loss(total, wsum, W):
    """The (weighted) MSE from its sum of squared errors ``total`` (in T) and the weight sum
    ``wsum`` (in double; the row count without weights): 0 when the weights sum to 0."""
    if wsum == 0.0:
        return _cast(0.0, W)
    return total / _cast(W.shape[0] * wsum, W)


@numba.njit(**_INLINE)
def _batch_weights(W, order, use_order, epoch, start, B, SW, has_sw, wtotal):
    """A batch's weight sum in double (``wtotal`` when >= 0, else its rows' weights or count)
    and its gradient's scale ``2 / (U wsum)`` in T (0 for a zero weight sum)."""
    # Sample weights: a weighted mean, sum(w e^2) / (U sum(w)), the weight sum taken in double
    # (exact for integer weights, so unit weights give torch's 2/numel bit for bit).
    wsum = np.float64(B)
    if wtotal >= 0.0:
        wsum = wtotal
    elif has_sw:
        wsum = 0.0
        for i in range(B):
            wsum += np.float64(SW[order[epoch, start + i] if use_order else start + i])
    c = _cast(2.0 / (W.shape[0] * wsum), W) if wsum != 0.0 else _cast(0.0, W)  # 2/numel in double
    return wsum, c


@numba.njit(**_INLINE)
def _row_error(p, r, u, k, b, has_b, Y, c, SW, has_sw, SQ, G):
    """Output ``u`` of row ``r`` from its dot ``p``, in a batch's gradient: writes its squared
    error (weighted) to ``SQ[k]`` and its error scaled by ``c`` (weighted) to ``G[k]``, and
    returns the latter."""
    if has_b:
        p = p + b[u]
    e = p - Y[r, u]
    if has_sw:
        SQ[k] = (e * e) * SW[r]
        g = (e * c) * SW[r]
    else:
        SQ[k] = e * e
        g = e * c
    G[k] = g
    return g


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
    return _mean_loss(total, wsum, W)


@numba.njit(**_KERNEL)
def _batch_grad(
    X, Y, W, b, has_b, order, use_order, epoch, start, B, gW, gb, G, SQ, CS, SW, has_sw
):
    """Forward + backward for rows ``start .. start+B-1`` (through ``order[epoch]`` if used):
    sgd.cpp's ``batch_gradient``. Writes gW, gb (when has_b) and returns the batch loss in T."""
    total, wsum = _batch_grad_sums(
        X, Y, W, b, has_b, order, use_order, epoch, start, B, gW, gb, G, SQ, CS, SW, has_sw, -1.0
    )
    return _mean_loss(total, wsum, W)


@numba.njit(**_KERNEL)
def _batch_grad_sums(
    X, Y, W, b, has_b, order, use_order, epoch, start, B, gW, gb, G, SQ, CS, SW, has_sw, wtotal
):
    """:func:`_batch_grad`'s gradient normalised by ``wtotal`` (the row count or weight sum of a
    batch these rows are part of; < 0: these rows'); returns (sum of squared errors in T, the
    weight sum used)."""
    U, N = W.shape
    zero = _cast(0.0, W)
    wsum, c = _batch_weights(W, order, use_order, epoch, start, B, SW, has_sw, wtotal)
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
            g = _row_error(p, r, u, i * U + u, b, has_b, Y, c, SW, has_sw, SQ, G)
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


@numba.njit(**_INLINE)
def _update_params(Wf, gWf, bufWf, b, gb, buf_b, has_b, wdw_on, wdw_t, wdb_on, wdb_t, mom_on,
                   mu_t, damp1_t, initialized, nesterov, maximize, neg_lr):  # fmt: skip
    """One training step's update: :func:`_sgd_update` of the flat weights, then (when has_b)
    of the bias, each by its gradient (used as scratch); whether every new value is finite."""
    ok = _sgd_update(Wf, gWf, bufWf, wdw_on, wdw_t, mom_on, mu_t, damp1_t, initialized,
                     nesterov, maximize, neg_lr)  # fmt: skip
    if has_b:
        ok_b = _sgd_update(b, gb, buf_b, wdb_on, wdb_t, mom_on, mu_t, damp1_t, initialized,
                           nesterov, maximize, neg_lr)  # fmt: skip
        ok = ok and ok_b
    return ok


@numba.njit(**_INLINE)
def _step_constants(W, wd_w, wd_b, momentum, dampening):
    """The training loop's update constants in the parameter dtype: (wd_w on, wd_b on,
    momentum on, wd_w, wd_b, momentum, 1 - dampening)."""
    # 1 - dampening formed in double, then rounded
    return (wd_w != 0.0, wd_b != 0.0, momentum != 0.0, _cast(wd_w, W), _cast(wd_b, W),
            _cast(momentum, W), _cast(1.0 - dampening, W))  # fmt: skip
