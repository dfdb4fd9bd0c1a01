"""Numba backend: ``_core``'s entry points and signatures, JIT-compiled, the same bits.

``loss``, ``gradient``, ``partial_gradient``, ``update`` and ``train`` take exactly the
arguments of ``linsgd._core``'s (see :mod:`linsgd._backends`). ``train`` has ``_core.train``
check its arguments (check only, flag 4) when ``linsgd._core`` is built; the others, and
``train`` in a numba-only install, trust their arguments (dtypes, shapes, C-contiguity) as
``linsgd.kernels`` checked and converted them. The arithmetic is in :mod:`._kernels` (with
:mod:`._gradients` and :mod:`._sums`) and :mod:`._intrinsics`.

A jitted kernel cannot see a pending Ctrl-C, so :func:`train` cuts long runs into calls of about
``_CHUNK_SECONDS``, between which Python raises ``KeyboardInterrupt`` (W, b and the buffers then
hold the steps applied so far, as when ``_core`` raises it). Any cut gives the same bits: every
step sees the same rows, learning rate and momentum state.
"""

from __future__ import annotations

import time

import numpy as np

from . import _sparse
from ._kernels import (
    _NO_ORDER,
    _gradient_entry,
    _loss_entry,
    _partial_gradient_entry,
    _train_entry,
    _train_momentum,
    _train_plain,
    _update_entry,
)

__all__ = ["gradient", "loss", "partial_gradient", "train", "update"]

_CHUNK_SECONDS = 0.05
# multiply-adds in the first chunk, before any timing is known (2 U N per row of a step)
_FIRST_CHUNK_WORK = 1 << 22

# Zero-size stand-ins for the absent optional arrays, one set per dtype: nothing is ever
# written to a zero-size array, so one set serves every call and every thread.
_EMPTY = {np.dtype(dt): (np.empty(0, dt), np.empty((0, 0), dt)) for dt in (np.float64, np.float32)}
_NO_LOSSES = np.empty(0, dtype=np.float64)
_DEFER_SCAN_FROM = 1 << 16  # elements of X from which flag 1 is checked in the training pass

try:  # every call's arguments are checked by _core's check when it is built
    from .._core import all_finite as _core_all_finite
    from .._core import train as _core_train
except ImportError:
    _core_train = None


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
    sample_weight : ndarray of shape (M,) or None
        Row weights, dtype ``T``: the weighted mean ``sum(w e^2) / (U sum(w))``.

    Returns
    -------
    float
        The loss, computed in ``T`` as torch's ``MSELoss`` (dot, then ``+ b``; cascade sum of
        the squared errors; divided by ``M*U``).
    """
    if isinstance(X, tuple):  # CSR (data, indices, indptr)
        return _sparse.loss(X, Y, W, b, sample_weight)
    e1 = _EMPTY[W.dtype][0]
    sw = e1 if sample_weight is None else sample_weight
    value, ok = _loss_entry(X, Y, W, e1 if b is None else b, b is not None, sw, sw is not e1)
    return float(value) if ok else _no_memory()


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
    X, Y, W, b, sample_weight
        As in :func:`loss`.
    gW : ndarray of shape (U, N)
        Output: the weight gradient (sequential sum over rows, no FMA).
    gb : ndarray of shape (U,) or None
        Output: the bias gradient (ATen cascade sum); ``None`` exactly when ``b`` is.

    Returns
    -------
    float
        The batch loss (before any update).
    """
    if isinstance(X, tuple):  # CSR (data, indices, indptr)
        total, wsum = _sparse.gradient(X, Y, W, b, gW, gb, sample_weight, -1.0)
        t = W.dtype.type
        return 0.0 if wsum == 0.0 else float(t(total) / t(W.shape[0] * wsum))
    e1 = _EMPTY[W.dtype][0]
    has_b = b is not None
    sw = e1 if sample_weight is None else sample_weight
    gb = gb if (has_b and gb is not None) else e1
    value, ok = _gradient_entry(X, Y, W, b if has_b else e1, has_b, gW, gb, sw, sw is not e1)
    return float(value) if ok else _no_memory()


def partial_gradient(
    X: np.ndarray,
    Y: np.ndarray,
    W: np.ndarray,
    b: np.ndarray | None,
    gW: np.ndarray,
    gb: np.ndarray | None,
    n_total: int,
    sample_weight: np.ndarray | None = None,
    weight_total: float | None = None,
) -> float:
    """The rows' share of the gradient of a batch of ``n_total`` rows that ``X`` is part of.

    Parameters
    ----------
    X, Y, W, b, gW, gb, sample_weight
        As in :func:`gradient`.
    n_total : int
        Rows of the whole batch (>= M): the gradient is scaled by ``2 / (U * n_total)``.
    weight_total : float or None
        With sample weights, the whole batch's weight sum (the scale is then
        ``2 / (U * weight_total)``); None: these rows' own weight sum.

    Returns
    -------
    float
        The rows' (weighted) sum of squared errors, in ``T``.
    """
    e1 = _EMPTY[W.dtype][0]
    has_b = b is not None
    sw = e1 if sample_weight is None else sample_weight
    gb = gb if (has_b and gb is not None) else e1
    if weight_total is not None:
        wtotal = float(weight_total)
    else:
        wtotal = -1.0 if sample_weight is not None else float(n_total)
    if isinstance(X, tuple):  # CSR (data, indices, indptr)
        return _sparse.gradient(X, Y, W, b, gW, gb, sample_weight, wtotal)[0]
    value, ok = _partial_gradient_entry(
        X, Y, W, b if has_b else e1, has_b, gW, gb, sw, sw is not e1, wtotal
    )
    return float(value) if ok else _no_memory()


def update(
    W: np.ndarray,
    b: np.ndarray | None,
    gW: np.ndarray,
    gb: np.ndarray | None,
    lr: float,
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
) -> bool:
    """The update half of one :func:`train` step: torch.optim.SGD's update by ``(gW, gb)``.

    Parameters
    ----------
    W, b : ndarray
        The parameters, updated in place (``b`` None for a model without bias).
    gW, gb : ndarray
        Their gradient (read only; ``gb`` None exactly when ``b`` is).
    lr, weight_decay, decay_bias, l2, momentum, dampening, nesterov, maximize
        As in :func:`train` (``lr`` one number).
    buf_W, buf_b, momentum_initialized
        As in :func:`train`.

    Returns
    -------
    bool
        Whether every parameter is finite afterwards.
    """
    e1, e2 = _EMPTY[W.dtype]
    has_b = b is not None
    wd = float(weight_decay)
    ok, mem = _update_entry(
        W, b if has_b else e1, has_b, gW, gb if has_b else e1, float(lr),
        wd + 2.0 * float(l2), wd if decay_bias else 0.0, float(momentum), float(dampening),
        bool(nesterov), bool(maximize), e2 if buf_W is None else buf_W,
        buf_b if has_b and buf_b is not None else e1, bool(momentum_initialized),
    )  # fmt: skip
    return bool(ok) if mem else _no_memory()


def train(
    X: np.ndarray,
    Y: np.ndarray,
    W: np.ndarray,
    b: np.ndarray | None,
    order: np.ndarray | None,
    batch_size: int | None,
    lr: float | np.ndarray,
    epochs: int,
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
    X_valid: np.ndarray | None,
    Y_valid: np.ndarray | None,
    target_loss: float | None,
    sample_weight: np.ndarray | None = None,
    threads: int = 1,
    flags: int = 3,
) -> tuple[int, int, np.ndarray, np.ndarray | None]:
    """Run ``epochs`` epochs of mini-batch SGD in place, bit-compatible with ``torch.optim.SGD``.

    Parameters
    ----------
    X : ndarray of shape (M, N)
        Inputs, C-contiguous, dtype ``T`` (float32 or float64).
    Y : ndarray of shape (M, U) or (M,)
        Targets, dtype ``T`` (1-D: one output).
    W : ndarray of shape (U, N)
        Weights, dtype ``T``; updated in place.
    b : ndarray of shape (U,) or None
        Bias, dtype ``T``, updated in place; ``None`` for a model without bias.
    order : ndarray of int64, shape (E, R) (or (R,) when E is 1), or None
        The rows of each epoch, in order; ``None`` means rows ``0 .. M-1`` every epoch.
    batch_size : int or None
        Rows per step (a batch larger than the epoch is the whole epoch; None: the whole
        epoch); the last batch of an epoch may be smaller.
    lr : float or ndarray of float64, shape (E,)
        Learning rate of every epoch, or of each epoch.
    epochs : int
        Epochs to run, ``E``.
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
    buf_W, buf_b : ndarray or None
        Momentum buffers of ``W`` and ``b``, updated in place (arrays when ``momentum != 0``;
        ``buf_b`` is ``None`` when ``b`` is).
    momentum_initialized : bool
        Whether the buffers hold state; if not, the first step copies the direction into them.
    X_valid, Y_valid : ndarray or None
        Validation set, evaluated after every epoch when given.
    target_loss : float or None
        Stop after the first step whose batch loss is below it (None: never).
    sample_weight : ndarray of shape (M,) or None
        Row weights, as in :func:`loss`.
    threads : int
        Ignored (``_core``'s host threads).
    flags : int
        As ``_core.train``'s: 1 refuse NaN/infinity in the data, 2 in ``W``/``b``, 4 check only.

    Returns
    -------
    steps_done : int
        Steps whose update was applied.
    status : int
        0 completed, 1 ``target_loss`` reached, 2 diverged (non-finite loss: step not applied;
        or non-finite parameter after a step). An interruption raises ``KeyboardInterrupt``.
    losses : ndarray of float64, shape (E*S,)
        The batch loss of every step, before its update (NaN for steps not run).
    valid_losses : ndarray of float64, shape (E,), or None
        The validation MSE after each epoch (None without a validation set).
    """
    if _core_train is not None and flags & 5 == 1 and getattr(X, "size", 0) >= _DEFER_SCAN_FROM:
        return _train_checking_in_pass(
            X, Y, W, b, order, batch_size, lr, epochs, weight_decay, decay_bias, l2, momentum,
            dampening, nesterov, maximize, buf_W, buf_b, momentum_initialized, X_valid, Y_valid,
            target_loss, sample_weight, threads, flags,
        )  # fmt: skip
    losses = valid_losses = None
    if _core_train is not None:
        # _core's own check of every argument; it makes the loss arrays and runs nothing
        _, _, losses, valid_losses = _core_train(
            X, Y, W, b, order, batch_size, lr, epochs, weight_decay, decay_bias, l2, momentum,
            dampening, nesterov, maximize, buf_W, buf_b, momentum_initialized, X_valid, Y_valid,
            target_loss, sample_weight, threads, flags | 4,
        )  # fmt: skip
    return _train(
        X, Y, W, b, order, batch_size, lr, epochs, weight_decay, decay_bias, l2, momentum,
        dampening, nesterov, maximize, buf_W, buf_b, momentum_initialized, X_valid, Y_valid,
        target_loss, sample_weight, losses, valid_losses,
    )  # fmt: skip


def _train_checking_in_pass(*args):
    """:func:`train` with flag 1 inside the training pass, as ``_core.train`` does it: a
    non-finite datum makes its batch's loss non-finite (with row weights, its update), which
    ends training in the first epoch; what that epoch did not show finite is scanned after it,
    the model put back and ``_core``'s check raises its error. (Small data are scanned first
    instead: there the scan costs less than the copies and checks around it.)"""
    *call, threads, flags = args
    X, Y, W, b, order, _, _, epochs = call[:8]
    buf_W, buf_b, _, X_valid, Y_valid, _, sample_weight = call[15:22]
    try:
        _, _, losses, valid_losses = _core_train(*call, threads, (flags & ~1) | 4)
    except ValueError:
        _core_train(*call, threads, flags | 4)  # the data's error comes first
        raise
    start = [(a, a.copy()) for a in (W, b, buf_W, buf_b) if a is not None]
    out = _train(*call, losses, valid_losses)
    if not _shown_finite(out, int(epochs), order, X.shape[0], X_valid, sample_weight) and not all(
        _core_all_finite(a) for a in (X, Y, X_valid, Y_valid) if a is not None
    ):
        for a, copy in start:
            a[...] = copy
        _core_train(*call, threads, (flags & ~2) | 4)  # raises the data's error
    return out


def _shown_finite(out, epochs: int, order, m: int, X_valid, sample_weight) -> bool:
    """Whether a finished call's training pass read every datum into a finite loss."""
    steps, _, losses, valid_losses = out
    per_epoch = losses.size // max(epochs, 1)
    if losses.size == 0 or steps < per_epoch:
        return False
    if sample_weight is not None and (losses[:per_epoch] == 0.0).any():
        return False  # an all-zero weight sum gives a zero loss whatever the rows hold
    if order is not None:
        seen = np.zeros(m, np.bool_)
        seen[order.reshape(-1, order.shape[-1])[0]] = True
        if not seen.all():
            return False
    return X_valid is None or bool(np.isfinite(valid_losses[0]))


def _train(
    X, Y, W, b, order, batch_size, lr, epochs, weight_decay, decay_bias, l2, momentum,
    dampening, nesterov, maximize, buf_W, buf_b, momentum_initialized, X_valid, Y_valid,
    target_loss, sample_weight, losses, valid_losses,
):  # fmt: skip
    """:func:`train` once checked (``losses`` None: by ``linsgd.kernels``)."""
    sparse = isinstance(X, tuple)  # CSR (data, indices, indptr)
    if sparse and _core_train is None:
        _sparse.check_structure(X, W.shape[1])
        if isinstance(X_valid, tuple):
            _sparse.check_structure(X_valid, W.shape[1], "X_valid")
    m = X[2].shape[0] - 1 if sparse else X.shape[0]
    E = int(epochs)
    rows = m if order is None else order.shape[-1]
    bs = rows if batch_size is None else min(int(batch_size), rows)
    has_valid = X_valid is not None
    if losses is None:  # checked by linsgd.kernels, which calls it
        losses = np.full(E * -(-rows // bs), np.nan)
        valid_losses = np.full(E, np.nan) if has_valid else None
    if E == 0:
        return 0, 0, losses, valid_losses
    if Y.ndim == 1:
        Y = Y.reshape(m, 1)
    if has_valid and Y_valid.ndim == 1:
        Y_valid = Y_valid.reshape(-1, 1)
    if order is not None and order.ndim == 1:
        order = order.reshape(1, -1)
    rates = lr if type(lr) is np.ndarray else _constant_rates(float(lr), E)
    target = np.nan if target_loss is None else float(target_loss)
    has_b = b is not None
    if momentum != 0.0 and (buf_W is None or (has_b and buf_b is None)):
        # no state to keep: the first step fills fresh buffers
        buf_W = np.empty_like(W) if buf_W is None else buf_W
        buf_b = np.empty_like(b) if has_b and buf_b is None else buf_b
        momentum_initialized = False
    # float()/bool(): a Python int where numba has seen a float would compile another
    # specialisation (numpy scalars type as the Python scalars of their kind).
    wd = float(weight_decay)
    if sparse:
        if losses.size and not np.isfinite(W).all():  # cpu/sparse.cpp: the dense dots are NaN
            return 0, 2, losses, valid_losses
        args, size = _sparse.train_args(
            X, Y, W, b, has_b, order, rows, bs, rates, wd + 2.0 * float(l2),
            wd if decay_bias else 0.0, momentum, dampening, nesterov, maximize, buf_W, buf_b,
            momentum_initialized, losses, X_valid, Y_valid, valid_losses, target, sample_weight,
        )  # fmt: skip
        scratch = np.empty(size, W.dtype)
        per_step = 2 * bs * (X[0].shape[0] // max(m, 1) + 1) * W.shape[0] + W.size
        entry = lambda *a: _sparse._sparse_train(*a, scratch)  # noqa: E731
        res = _train_chunked((*args, 0, losses.size), max(1, _FIRST_CHUNK_WORK // per_step), entry)
        return res[0], res[1], losses, valid_losses
    if order is None and X_valid is None and sample_weight is None:
        # The common calls, straight to a few-argument kernel: numba's dispatcher types every
        # argument of every call, and with the Python around it that is most of a small call's
        # cost. losses.size is E*S, the steps of the call.
        if 2 * losses.size * bs * W.size <= _FIRST_CHUNK_WORK:
            bias = b if has_b else _EMPTY[W.dtype][0]
            if momentum == 0.0:
                res = _train_plain(X, Y, W, bias, bs, rates, wd + 2.0 * float(l2),
                                   wd if decay_bias else 0.0, bool(maximize), losses,
                                   target)  # fmt: skip
            else:
                res = _train_momentum(X, Y, W, bias, bs, rates, wd + 2.0 * float(l2),
                                      wd if decay_bias else 0.0, float(momentum),
                                      float(dampening), bool(nesterov), bool(maximize), buf_W,
                                      buf_b if has_b else bias, bool(momentum_initialized),
                                      losses, target)  # fmt: skip
            if res[1] < 0:
                _no_memory()
            return res[0], res[1], losses, valid_losses
    e1, e2 = _EMPTY[W.dtype]
    n = losses.size  # E*S (the kernel clamps its last step to E*S)
    args = (
        X, Y, W, b if has_b else e1, has_b,
        _NO_ORDER if order is None else order, order is not None,
        X.shape[0] if order is None else order.shape[1],
        bs, rates, wd + 2.0 * float(l2), wd if decay_bias else 0.0, float(momentum),
        float(dampening), bool(nesterov), bool(maximize),
        e2 if buf_W is None else buf_W, buf_b if has_b and buf_b is not None else e1,
        bool(momentum_initialized), losses,
        X_valid if has_valid else e2, Y_valid if has_valid else e2,
        valid_losses if has_valid else _NO_LOSSES, has_valid,
        target,
        e1 if sample_weight is None else sample_weight, sample_weight is not None,
        0, n,
    )  # fmt: skip
    if n > 1 and 2 * n * bs * W.size > _FIRST_CHUNK_WORK:
        res = _train_chunked(args, max(1, _FIRST_CHUNK_WORK // max(1, 2 * bs * W.size)))
    else:
        res = _train_entry(*args)
        if res[1] < 0:
            _no_memory()
    return res[0], res[1], losses, valid_losses


# One learning-rate array per (lr, epochs) seen lately: the kernels only read it, and building
# it costs more than the dict look-up. Zero is left out (0.0 and -0.0 are one key but not the
# same bits).
_RATES: dict = {}


def _constant_rates(lr: float, epochs: int) -> np.ndarray:
    key = (lr, epochs)
    out = _RATES.get(key) if lr != 0.0 else None
    if out is None:
        out = np.empty(epochs)
        out.fill(lr)
        if lr != 0.0:
            if len(_RATES) >= 64:
                _RATES.clear()
            _RATES[key] = out
    return out


def _no_memory():
    raise MemoryError("the numba backend could not allocate its scratch memory")


def _train_chunked(args, budget, entry=None):
    """``entry(*args)`` (None: ``_train_entry``, looked up at the call) in chunks of steps:
    ``budget`` steps at first, then about ``_CHUNK_SECONDS`` at the speed measured."""
    if entry is None:
        entry = _train_entry
    *head, _, total = args
    steps_done = 0
    g = 0
    while g < total:
        k = min(budget, total - g)
        t0 = time.perf_counter()
        st, status = entry(*head, g, g + k)
        elapsed = time.perf_counter() - t0
        if status < 0:
            _no_memory()
        steps_done += st
        if status != 0:
            return steps_done, status
        g += k
        # growing at most 4x from one chunk to the next
        budget = max(1, min(int(k / max(elapsed, 1e-6) * _CHUNK_SECONDS), 4 * k))
    return steps_done, 0
