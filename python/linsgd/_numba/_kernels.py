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

This module holds the training loop (:func:`_train_kernel`) and the entry points the
wrappers in ``__init__`` call; the cascade sums are in :mod:`._sums`, the loss, gradient and
update kernels in :mod:`._gradients`, the jit options in :mod:`._jit`.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._gradients import (
    _batch_grad,
    _batch_grad_sums,
    _loss_kernel,
    _mean_loss,
    _sgd_update,
    _step_constants,
    _update_params,
)
from ._intrinsics import _block, _cast, _release, _scratch
from ._jit import _INLINE, _KERNEL

# The absent row order. numba freezes a global array into the code as a read-only constant; the
# entry layer passes this same array, read-only, so that both share one specialisation.
_NO_ORDER = np.empty((1, 0), dtype=np.int64)
_NO_ORDER.flags.writeable = False


@numba.njit(**_KERNEL)
def _scratch_size(W, has_b, R, batch_size, Xv, has_valid):
    """Elements of _train_kernel's scratch: the scaled and the squared errors of a batch, the
    validation set's squared errors, the gradients, the cascade levels."""
    U, N = W.shape
    nvu = Xv.shape[0] * U if has_valid else 0
    return 2 * min(batch_size, R) * U + nvu + U * N + (U if has_b else 0) + 4 * _block(W)


@numba.njit(**_INLINE)
def _train_scratch(scratch, W, has_b, R, batch_size, mv):
    """The parts of a training kernel's scratch (:func:`_scratch_size`'s elements, ``mv``
    validation rows): (G, SQ, SQv, flat gW, gb, CS)."""
    U, N = W.shape
    nbu = min(batch_size, R) * U
    ngb = U if has_b else 0
    o = 2 * nbu + mv * U
    return (scratch[:nbu], scratch[nbu : 2 * nbu], scratch[2 * nbu : o], scratch[o : o + U * N],
            scratch[o + U * N : o + U * N + ngb], scratch[o + U * N + ngb :])  # fmt: skip


@numba.njit(**_KERNEL)
def _train_kernel(X, Y, W, b, has_b, order, use_order, R, batch_size, lr, wd_w, wd_b, momentum,
                  dampening, nesterov, maximize, buf_W, buf_b, initialized, losses, Xv, Yv,
                  vlosses, has_valid, target_loss, SW, has_sw, g0, g1, scratch):  # fmt: skip
    """sgd.cpp's ``train`` over steps ``g0 .. g1-1`` of ``lr.shape[0]`` epochs of S steps, in
    place; (steps applied, status)."""
    U, N = W.shape
    S = (R + batch_size - 1) // batch_size
    mv = Xv.shape[0] if has_valid else 0
    G, SQ, SQv, gWf, gb, CS = _train_scratch(scratch, W, has_b, R, batch_size, mv)
    gW = gWf.reshape(U, N)
    Wf = W.reshape(U * N)
    bufWf = buf_W.reshape(buf_W.size)
    wdw_on, wdb_on, mom_on, wdw_t, wdb_t, mu_t, damp1_t = _step_constants(
        W, wd_w, wd_b, momentum, dampening
    )
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
            ok = _update_params(Wf, gWf, bufWf, b, gb, buf_b, has_b, wdw_on, wdw_t, wdb_on,
                                wdb_t, mom_on, mu_t, damp1_t, initialized, nesterov, maximize,
                                neg_lr)  # fmt: skip
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
def _gradient_sums_entry(X, Y, W, b, has_b, gW, gb, SW, has_sw, wtotal):
    """:func:`._gradients._batch_grad_sums` of all rows with its scratch: (rows' sum of squared
    errors, the weight sum used, whether there was memory for the scratch); writes gW, gb."""
    M = X.shape[0]
    n = M * W.shape[0]
    scratch = _scratch(2 * n + 4 * _block(W), W)
    if scratch.shape[0] != 2 * n + 4 * _block(W):
        return _cast(0.0, W), 0.0, False
    nil = np.intp(0)
    sse, wsum = _batch_grad_sums(X, Y, W, b, has_b, _NO_ORDER, np.bool_(False), nil, nil, M, gW,
                                 gb, scratch[:n], scratch[n : 2 * n], scratch[2 * n :], SW,
                                 has_sw, wtotal)  # fmt: skip
    _release(scratch)
    return sse, wsum, True


@numba.njit(**_KERNEL)
def _gradient_entry(X, Y, W, b, has_b, gW, gb, SW, has_sw):
    """(batch loss, whether there was memory for the scratch); writes gW, gb."""
    sse, wsum, ok = _gradient_sums_entry(X, Y, W, b, has_b, gW, gb, SW, has_sw, -1.0)
    return _mean_loss(sse, wsum, W), ok


@numba.njit(**_KERNEL)
def _partial_gradient_entry(X, Y, W, b, has_b, gW, gb, SW, has_sw, wtotal):
    """(rows' sum of squared errors, whether there was memory for the scratch); writes gW, gb."""
    sse, _, ok = _gradient_sums_entry(X, Y, W, b, has_b, gW, gb, SW, has_sw, wtotal)
    return sse, ok


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
