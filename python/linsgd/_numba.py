"""Numba backend: the low-level ``loss`` / ``gradient`` / ``train`` entry points, JIT-compiled.

It implements the interface documented in :mod:`linsgd._backends` with the same arithmetic as
the compiled backend (see ``torch-sgd-semantics.md``): every operation in the parameter dtype
``T``, rounded once; sequential non-FMA dots for the forward pass and for ``grad_W``; ATen's
cascade sum (AVX2 lane model) for the bias gradient and the loss; and true fused multiply-adds in
the SGD update, exactly where ``torch.optim.SGD`` uses them.

numba's default ``fastmath=False`` must stay: it keeps LLVM from contracting ``a*b + c`` into an
FMA anywhere except through the explicit :func:`_fma` intrinsic.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

__all__ = ["gradient", "loss", "train"]

# error_model="numpy": IEEE division (x/0 -> inf/nan) instead of raising ZeroDivisionError, so an
# empty set's loss is NaN as in torch.
_JIT = dict(cache=True, nogil=True, error_model="numpy")


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


# --------------------------------------------------------------------------------------------
# ATen cascade_sum model (reference Appendix A1), on strided views of a flat array.
# --------------------------------------------------------------------------------------------


@numba.njit(**_JIT)
def _ceil_log2(x: int) -> int:
    if x <= 2:
        return 1
    v = x - 1
    n = 0
    while v > 0:
        v >>= 1
        n += 1
    return n


@numba.njit(**_JIT)
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


@numba.njit(**_JIT)
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


@numba.njit(**_JIT)
def _sum_flat(data, n, vec):
    """``torch.sum`` of the contiguous ``data[:n]`` (inner reduction, AVX2 lanes ``vec``)."""
    if n >= vec:
        nv = n // vec
        fin = _cast(0.0, data)
        # The scalar tail is added before the lanes, in lane order (ATen's vectorised reduce).
        for k in range(nv * vec, n):
            fin = fin + data[k]
        for lane in range(vec):
            fin = fin + _row_sum(data, lane, vec, nv)
        return fin
    return _row_sum(data, 0, 1, n)


@numba.njit(**_JIT)
def _sum_columns(data, B, U, vec, out):
    """``out[u] = torch.sum(G, 0)[u]`` for ``G = data[:B*U].reshape(B, U)``."""
    if U == 1:
        out[0] = _sum_flat(data, B, vec)
        return
    # The AVX2 outer-reduction kernel handles 4*vec (or 4) columns at a time with a plain
    # multi_row_sum; the remaining columns fall back to the ilp-4 row_sum.
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


@numba.njit(**_JIT)
def _dot(X, r, W, u, N, ACC):
    """``X[r] . W[u]`` without fused multiply-adds, in the order of ``dot`` in csrc/linsgd/math.hpp.

    Sequential below ``ACC.shape[0]`` features (torch's order on small problems); from there on
    ``L = ACC.shape[0]`` lane sums combined by a halving tree, then the tail.
    """
    L = ACC.shape[0]
    if N < L:
        if N == 0:
            return _cast(0.0, W)
        acc = X[r, 0] * W[u, 0]
        for j in range(1, N):
            acc = acc + X[r, j] * W[u, j]
        return acc
    for l in range(L):
        ACC[l] = X[r, l] * W[u, l]
    j = L
    while j + L <= N:
        for l in range(L):
            ACC[l] = ACC[l] + X[r, j + l] * W[u, j + l]
        j += L
    half = L // 2
    while half >= 1:
        for l in range(half):
            ACC[l] = ACC[l] + ACC[l + half]
        half //= 2
    total = ACC[0]
    while j < N:
        total = total + X[r, j] * W[u, j]
        j += 1
    return total


@numba.njit(**_JIT)
def _loss_kernel(X, Y, W, b, has_b, SQ, vec, ACC, SW, has_sw):
    M = X.shape[0]
    U, N = W.shape
    wsum = np.float64(M)
    if has_sw:
        wsum = 0.0
        for r in range(M):
            wsum += np.float64(SW[r])
        if wsum == 0.0:
            return _cast(0.0, W)
    for r in range(M):
        for u in range(U):
            acc = _dot(X, r, W, u, N, ACC)
            p = acc + b[u] if has_b else acc
            e = p - Y[r, u]
            SQ[r * U + u] = (e * e) * SW[r] if has_sw else e * e
    return _sum_flat(SQ, M * U, vec) / _cast(U * wsum, W)


@numba.njit(**_JIT)
def _batch_grad(X, Y, W, b, has_b, order, use_order, epoch, start, B, gW, gb, G, SQ, vec, ACC,
                SW, has_sw):
    """Forward + backward for rows ``start .. start+B-1`` (through ``order[epoch]`` if used).

    Writes gW, gb (when has_b) and returns the batch loss in T.
    """
    U, N = W.shape
    zero = _cast(0.0, W)
    # Sample weights: a weighted mean, sum(w e^2) / (U sum(w)), the weight sum taken in double
    # (exact for integer weights, so unit weights give torch's 2/numel bit for bit).
    wsum = np.float64(B)
    if has_sw:
        wsum = 0.0
        for i in range(B):
            wsum += np.float64(SW[order[epoch, start + i] if use_order else start + i])
    c = _cast(2.0 / (U * wsum), W) if wsum != 0.0 else zero  # torch: 2/numel in double, then T
    for u in range(U):
        for j in range(N):
            gW[u, j] = zero
    for i in range(B):
        r = order[epoch, start + i] if use_order else start + i
        for u in range(U):
            acc = _dot(X, r, W, u, N, ACC)
            p = acc + b[u] if has_b else acc
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
    if has_b:
        _sum_columns(G, B, U, vec, gb)
    if wsum == 0.0:
        return zero
    return _sum_flat(SQ, B * U, vec) / _cast(U * wsum, W)


@numba.njit(**_JIT)
def _sgd_update(p, g, buf, wd_on, wd, mom_on, mu, damp1, initialized, nesterov, maximize, neg_lr):
    """torch.optim.SGD single-tensor step on flat ``p``, using ``g`` as scratch.

    Returns whether every new value of ``p`` is finite. One flag-free loop per stage keeps the
    compiled code small; each element still sees exactly torch's sequence of roundings.
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
    bad = _cast(0.0, p)
    for k in range(n):
        q = _fma(d[k], neg_lr, p[k])
        p[k] = q
        bad = bad + (q - q)  # stays 0 unless some q is inf or nan
    return bad == 0


@numba.njit(**_JIT)
def _train_kernel(X, Y, W, b, has_b, order, use_order, R, batch_size, lr,
                  wd_w, wd_b, momentum, dampening, nesterov, maximize,
                  buf_W, buf_b, initialized, losses, Xv, Yv, vlosses, has_valid,
                  target_loss, vec, G, SQ, SQv, gW, gb, ACC, SW, has_sw):
    U, N = W.shape
    E = lr.shape[0]
    S = (R + batch_size - 1) // batch_size
    Wf = W.reshape(U * N)
    gWf = gW.reshape(U * N)
    bufWf = buf_W.reshape(buf_W.size)
    wdw_on = wd_w != 0.0
    wdb_on = wd_b != 0.0
    mom_on = momentum != 0.0
    wdw_t = _cast(wd_w, W)
    wdb_t = _cast(wd_b, W)
    mu_t = _cast(momentum, W)
    damp1_t = _cast(1.0 - dampening, W)  # 1 - dampening formed in double (Python), then rounded
    steps = 0
    for e in range(E):
        neg_lr = _cast(-lr[e], W)
        for s in range(S):
            start = s * batch_size
            B = min(batch_size, R - start)
            bl = _batch_grad(X, Y, W, b, has_b, order, use_order, e, start, B, gW, gb, G, SQ, vec, ACC,
                             SW, has_sw)
            blf = np.float64(bl)
            losses[e * S + s] = blf
            if not math.isfinite(blf):
                return steps, 2
            ok = _sgd_update(Wf, gWf, bufWf, wdw_on, wdw_t, mom_on, mu_t, damp1_t,
                             initialized, nesterov, maximize, neg_lr)
            if has_b:
                ok_b = _sgd_update(b, gb, buf_b, wdb_on, wdb_t, mom_on, mu_t, damp1_t,
                                   initialized, nesterov, maximize, neg_lr)
                ok = ok and ok_b
            if mom_on:
                initialized = True
            steps += 1
            if not ok:
                return steps, 2
            if blf < target_loss:
                return steps, 1
        if has_valid:
            vlosses[e] = np.float64(_loss_kernel(Xv, Yv, W, b, has_b, SQv, vec, ACC, SW[:0], False))
    return steps, 0


# --------------------------------------------------------------------------------------------
# Python entry points (arguments already validated by linsgd.kernels)
# --------------------------------------------------------------------------------------------


def _lanes(dtype: np.dtype) -> int:
    # ATen registers no AVX512 sum kernel, so the AVX2 one (32-byte vectors) runs everywhere.
    return 32 // np.dtype(dtype).itemsize


def _dot_scratch(dtype: np.dtype) -> np.ndarray:
    # Lanes of the blocked dot product: 128 bytes' worth, as DotLanes in math.hpp.
    return np.empty(128 // np.dtype(dtype).itemsize, dtype=dtype)


def _weights(sample_weight: np.ndarray | None, dtype: np.dtype) -> tuple[np.ndarray, bool]:
    if sample_weight is None:
        return np.empty(0, dtype=dtype), False
    return sample_weight, True


def _bias(b: np.ndarray | None, dtype: np.dtype) -> tuple[np.ndarray, bool]:
    if b is None:
        return np.empty(0, dtype=dtype), False
    return b, True


def loss(
    X: np.ndarray,
    Y: np.ndarray,
    W: np.ndarray,
    b: np.ndarray | None,
    sample_weight: np.ndarray | None = None,
) -> float:
    """Mean squared error of the linear model ``X @ W.T + b`` over all ``M*U`` entries.

    Parameters
    ----------
    X : ndarray of shape (M, N)
        Inputs, C-contiguous, dtype ``T`` (float32 or float64).
    Y : ndarray of shape (M, U)
        Targets, dtype ``T``.
    W : ndarray of shape (U, N)
        Weights, dtype ``T``.
    b : ndarray of shape (U,) or None
        Bias, dtype ``T``; ``None`` for a model without bias.

    Returns
    -------
    float
        The loss, computed in ``T`` as torch's ``MSELoss`` (sequential dot, then ``+ b``;
        cascade sum of the squared errors; divided by ``M*U``).
    """
    dtype = W.dtype
    bb, has_b = _bias(b, dtype)
    SQ = np.empty(X.shape[0] * W.shape[0], dtype=dtype)
    sw, has_sw = _weights(sample_weight, dtype)
    return float(_loss_kernel(X, Y, W, bb, has_b, SQ, _lanes(dtype), _dot_scratch(dtype), sw, has_sw))


def gradient(
    X: np.ndarray,
    Y: np.ndarray,
    W: np.ndarray,
    b: np.ndarray | None,
    gW: np.ndarray,
    gb: np.ndarray | None,
    sample_weight: np.ndarray | None = None,
) -> float:
    """Gradient of the MSE loss over the whole of ``X`` (one batch), as torch autograd gives it.

    Parameters
    ----------
    X : ndarray of shape (M, N)
        Inputs, C-contiguous, dtype ``T``.
    Y : ndarray of shape (M, U)
        Targets, dtype ``T``.
    W : ndarray of shape (U, N)
        Weights, dtype ``T``.
    b : ndarray of shape (U,) or None
        Bias, dtype ``T``; ``None`` for a model without bias.
    gW : ndarray of shape (U, N)
        Output: the weight gradient (sequential sum over rows, no FMA).
    gb : ndarray of shape (U,) or None
        Output: the bias gradient (ATen cascade sum); ``None`` exactly when ``b`` is.

    Returns
    -------
    float
        The batch loss (before any update).
    """
    dtype = W.dtype
    bb, has_b = _bias(b, dtype)
    gbb = gb if (has_b and gb is not None) else np.empty(0, dtype=dtype)
    M = X.shape[0]
    U = W.shape[0]
    G = np.empty(M * U, dtype=dtype)
    SQ = np.empty(M * U, dtype=dtype)
    order = np.empty((1, 0), dtype=np.int64)
    return float(
        _batch_grad(
            X, Y, W, bb, has_b, order, False, 0, 0, M, gW, gbb, G, SQ, _lanes(dtype),
            _dot_scratch(dtype), *_weights(sample_weight, dtype),
        )
    )


def train(
    X: np.ndarray,
    Y: np.ndarray,
    W: np.ndarray,
    b: np.ndarray | None,
    order: np.ndarray | None,
    batch_size: int,
    lr: np.ndarray,
    weight_decay: float,
    decay_bias: bool,
    l2: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    maximize: bool,
    buf_W: np.ndarray | None,
    buf_b: np.ndarray | None,
    momentum_initialized: bool,
    losses: np.ndarray,
    X_valid: np.ndarray | None,
    Y_valid: np.ndarray | None,
    valid_losses: np.ndarray | None,
    target_loss: float,
    sample_weight: np.ndarray | None = None,
) -> tuple[int, int]:
    """Run ``len(lr)`` epochs of mini-batch SGD in place, bit-compatible with ``torch.optim.SGD``.

    Parameters
    ----------
    X : ndarray of shape (M, N)
        Inputs, C-contiguous, dtype ``T`` (float32 or float64).
    Y : ndarray of shape (M, U)
        Targets, dtype ``T``.
    W : ndarray of shape (U, N)
        Weights, dtype ``T``; updated in place.
    b : ndarray of shape (U,) or None
        Bias, dtype ``T``, updated in place; ``None`` for a model without bias.
    order : ndarray of int64, shape (E, R), or None
        The rows of each epoch, in order; ``None`` means rows ``0 .. M-1`` every epoch.
    batch_size : int
        Rows per step; the last batch of an epoch may be smaller.
    lr : ndarray of float64, shape (E,)
        Learning rate of each epoch.
    weight_decay : float
        torch's coupled weight decay, on the weights and (if ``decay_bias``) the bias.
    decay_bias : bool
        Whether ``weight_decay`` also applies to the bias.
    l2 : float
        Keras-style penalty ``l2 * sum(W**2)``, weights only (adds ``2*l2`` to their decay).
    momentum, dampening : float
        torch's momentum and dampening.
    nesterov, maximize : bool
        torch's flags.
    buf_W : ndarray of shape (U, N) or None
        Momentum buffer of ``W``, updated in place (may be ``None`` only when ``momentum == 0``).
    buf_b : ndarray of shape (U,) or None
        Momentum buffer of ``b``; ``None`` when ``b`` is.
    momentum_initialized : bool
        Whether the buffers hold state; if not, the first step copies the direction into them.
    losses : ndarray of float64, shape (E*S,)
        Output: the batch loss of every step, before its update.
    X_valid, Y_valid : ndarray or None
        Validation set, evaluated after every epoch when given.
    valid_losses : ndarray of float64, shape (E,), or None
        Output: the validation MSE after each epoch.
    target_loss : float
        Stop after the first step whose batch loss is below it (NaN disables).

    Returns
    -------
    steps_done : int
        Steps whose update was applied.
    status : int
        0 completed, 1 ``target_loss`` reached, 2 diverged (non-finite loss: step not applied;
        or non-finite parameter after a step). 3 (interrupted) is never returned here.
    """
    dtype = W.dtype
    U, N = W.shape
    bb, has_b = _bias(b, dtype)
    if has_b and buf_b is None:
        buf_b = np.empty(U, dtype=dtype)
    bufb = buf_b if has_b else np.empty(0, dtype=dtype)
    bufW = buf_W if buf_W is not None else np.empty((U, N), dtype=dtype)
    if order is None:
        ordr = np.empty((1, 0), dtype=np.int64)
        use_order = False
        R = X.shape[0]
    else:
        ordr = order
        use_order = True
        R = order.shape[1]
    has_valid = X_valid is not None
    if has_valid:
        Xv, Yv, vl = X_valid, Y_valid, valid_losses
        SQv = np.empty(Xv.shape[0] * U, dtype=dtype)
    else:
        Xv = np.empty((0, N), dtype=dtype)
        Yv = np.empty((0, U), dtype=dtype)
        vl = np.empty(0, dtype=np.float64)
        SQv = np.empty(0, dtype=dtype)
    bs = int(batch_size)
    nb = min(bs, R)
    G = np.empty(nb * U, dtype=dtype)
    SQ = np.empty(nb * U, dtype=dtype)
    gW = np.empty((U, N), dtype=dtype)
    gb = np.empty(U if has_b else 0, dtype=dtype)
    wd = float(weight_decay)
    steps, status = _train_kernel(
        X, Y, W, bb, has_b, ordr, use_order, int(R), bs, lr,
        wd + 2.0 * float(l2), wd if decay_bias else 0.0,
        float(momentum), float(dampening), bool(nesterov), bool(maximize),
        bufW, bufb, bool(momentum_initialized), losses, Xv, Yv, vl, has_valid,
        float(target_loss), _lanes(dtype), G, SQ, SQv, gW, gb, _dot_scratch(dtype),
        *_weights(sample_weight, dtype),
    )
    return int(steps), int(status)
