"""The numba backend's kernels for ``X`` in CSR form: cpu/sparse.cpp's loops, bit for bit.

``X`` is the tuple ``(data, indices, indptr)`` (int32 or int64 indices, sorted within each row);
the arithmetic is linsgd/sparse.hpp's: each stored product goes to the lane of the blocked dot
its column has in the dense kernel, the lanes fold by the same halving tree, ``X^T e`` adds the
rows' terms in batch order, and the update is the dense one (:func:`._gradients._update_params`).
Scratch is allocated by the Python wrappers in ``__init__``.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._gradients import (
    _batch_weights,
    _loss_kernel,
    _mean_loss,
    _row_error,
    _step_constants,
    _update_params,
)
from ._intrinsics import _block, _cast
from ._jit import _KERNEL
from ._kernels import _train_scratch
from ._sums import _column_sums, _sum_contiguous


@numba.njit(**_KERNEL)
def _sparse_dot(data, indices, lo, hi, W, u, N, lanes):
    """``dot`` of math.hpp for row entries ``lo .. hi-1`` against ``W[u]``; ``lanes``: scratch
    of one block."""
    L = _block(W)
    zero = _cast(0.0, W)
    total = zero
    k = lo
    if N >= L:
        blocked = N // L * L
        for lane in range(L):
            lanes[lane] = zero
        while k < hi and indices[k] < blocked:
            j = indices[k]
            lanes[j % L] = lanes[j % L] + data[k] * W[u, j]
            k += 1
        half = L // 2
        while half >= 1:
            for lane in range(half):
                lanes[lane] = lanes[lane] + lanes[lane + half]
            half //= 2
        total = lanes[0]
    while k < hi:
        total = total + data[k] * W[u, indices[k]]
        k += 1
    return total


@numba.njit(**_KERNEL)
def _sparse_batch(data, indices, indptr, Y, W, b, has_b, order, use_order, epoch, start, B, gW,
                  gb, G, SQ, CS, SW, has_sw, wtotal):  # fmt: skip
    """cpu/sparse.cpp's ``batch_gradient``: (sum of squared errors in T, the weight sum used)."""
    U, N = W.shape
    zero = _cast(0.0, W)
    wsum, c = _batch_weights(W, order, use_order, epoch, start, B, SW, has_sw, wtotal)
    for u in range(U):
        for j in range(N):
            gW[u, j] = zero
    for i in range(B):
        r = order[epoch, start + i] if use_order else start + i
        lo = indptr[r]
        hi = indptr[r + 1]
        for u in range(U):
            p = _sparse_dot(data, indices, lo, hi, W, u, N, CS)
            g = _row_error(p, r, u, i * U + u, b, has_b, Y, c, SW, has_sw, SQ, G)
            for k in range(lo, hi):
                j = indices[k]
                gW[u, j] = gW[u, j] + g * data[k]
    if has_b:
        _column_sums(G, B, U, gb, CS)
    return _sum_contiguous(SQ, np.intp(0), B * U, CS), wsum


@numba.njit(**_KERNEL)
def _sparse_loss(data, indices, indptr, Y, W, b, has_b, SQ, CS, SW, has_sw):
    """cpu/sparse.cpp's ``loss_into``: the MSE of (W, b) on the CSR rows."""
    M = indptr.shape[0] - 1
    U, N = W.shape
    if M == 0 or U == 0:
        return _cast(np.nan, W)
    wsum = np.float64(M)
    if has_sw:
        wsum = 0.0
        for r in range(M):
            wsum += np.float64(SW[r])
    for r in range(M):
        lo = indptr[r]
        hi = indptr[r + 1]
        for u in range(U):
            p = _sparse_dot(data, indices, lo, hi, W, u, N, CS)
            if has_b:
                p = p + b[u]
            e = p - Y[r, u]
            SQ[r * U + u] = (e * e) * SW[r] if has_sw else e * e
    total = _sum_contiguous(SQ, np.intp(0), M * U, CS)
    return _mean_loss(total, wsum, W)


@numba.njit(**_KERNEL)
def _sparse_train(data, indices, indptr, Y, W, b, has_b, order, use_order, R, batch_size, lr,
                  wd_w, wd_b, momentum, dampening, nesterov, maximize, buf_W, buf_b, initialized,
                  losses, Xv, vdata, vindices, vindptr, v_sparse, Yv, vlosses, has_valid,
                  target_loss, SW, has_sw, g0, g1, scratch):  # fmt: skip
    """_kernels._train_kernel with the sparse batch gradient (steps ``g0 .. g1-1``); the
    validation set dense (``Xv``) or in CSR (``v_sparse``); (steps applied, status)."""
    U, N = W.shape
    S = (R + batch_size - 1) // batch_size
    mv = (vindptr.shape[0] - 1 if v_sparse else Xv.shape[0]) if has_valid else 0
    G, SQ, SQv, gWf, gb, CS = _train_scratch(scratch, W, has_b, R, batch_size, mv)
    gW = gWf.reshape(U, N)
    Wf = W.reshape(U * N)
    bufWf = buf_W.reshape(buf_W.size)
    wdw_on, wdb_on, mom_on, wdw_t, wdb_t, mu_t, damp1_t = _step_constants(
        W, wd_w, wd_b, momentum, dampening
    )
    steps = 0
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
            total, wsum = _sparse_batch(data, indices, indptr, Y, W, b, has_b, order,
                                        use_order, e, start, B, gW, gb, G, SQ, CS, SW, has_sw,
                                        -1.0)  # fmt: skip
            bl = _mean_loss(total, wsum, W)
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
            if v_sparse:
                v = _sparse_loss(vdata, vindices, vindptr, Yv, W, b, has_b, SQv, CS, SW,
                                 np.bool_(False))  # fmt: skip
            else:
                v = _loss_kernel(Xv, Yv, W, b, has_b, SQv, CS, SW, np.bool_(False))
            vlosses[e] = np.float64(v)
        e += 1
        s0 = 0
    return steps, 0


def check_structure(X: tuple, n_features: int, name: str = "X") -> None:
    """The binding's CSR checks (python/csr.hpp), for a numba-only install: ``indptr`` from 0
    to nnz, never decreasing; columns in ``[0, N)``, strictly increasing within each row."""
    data, indices, indptr = X
    for a, part in ((indices, "indices"), (indptr, "indptr")):
        if a.dtype not in (np.int32, np.int64) or a.ndim != 1:
            raise TypeError(f"{name}.{part} must be a 1-D int32 or int64 array")
    if indices.dtype != indptr.dtype:
        raise TypeError(f"{name}.indptr must have the dtype of {name}.indices")
    nnz = data.shape[0]
    if indices.shape[0] != nnz or indptr.shape[0] < 2:
        raise ValueError(f"{name}: indices must match data, indptr must have rows + 1 >= 2 entries")
    if indptr[0] != 0 or indptr[-1] != nnz or (np.diff(indptr) < 0).any():
        raise ValueError(f"{name}.indptr must run from 0 to nnz ({nnz}) without decreasing")
    if nnz and (indices.min() < 0 or indices.max() >= n_features):
        raise ValueError(f"{name}.indices holds a column outside [0, {n_features})")
    step = np.diff(indices.astype(np.int64))
    starts = np.zeros(nnz, dtype=bool)
    starts[indptr[1:-1][indptr[1:-1] < nnz]] = True
    if nnz > 1 and ((step <= 0) & ~starts[1:]).any():
        raise ValueError(f"{name}.indices must be sorted and without duplicates within each row")


# ---------------------------------------------------------------------------- Python wrappers


def _scratch(n: int, like: np.ndarray) -> np.ndarray:
    return np.empty(n, dtype=like.dtype)


def _rows(X: tuple) -> int:
    return X[2].shape[0] - 1


def loss(X: tuple, Y: np.ndarray, W: np.ndarray, b, sw) -> float:
    """The MSE on CSR rows (the numba backend's ``loss`` for a sparse ``X``)."""
    n = _rows(X) * W.shape[0]
    cs = 4 * (128 // W.dtype.itemsize)
    s = _scratch(n + cs, W)
    e1 = W[0, :0] if W.size else np.empty(0, W.dtype)
    value = _sparse_loss(
        *X, Y, W, e1 if b is None else b, b is not None, s[:n], s[n:],
        e1 if sw is None else sw, sw is not None,
    )  # fmt: skip
    return float(value)


def gradient(X: tuple, Y, W, b, gW, gb, sw, wtotal: float) -> tuple[float, float]:
    """gW, gb of CSR rows; (sum of squared errors in T, the weight sum used)."""
    M = _rows(X)
    n = M * W.shape[0]
    cs = 4 * (128 // W.dtype.itemsize)
    s = _scratch(2 * n + cs, W)
    e1 = np.empty(0, W.dtype)
    no_order = np.empty((1, 0), dtype=np.int64)
    has_b = b is not None
    total, wsum = _sparse_batch(
        *X, Y, W, b if has_b else e1, has_b, no_order, False, 0, 0, M, gW,
        gb if has_b and gb is not None else e1, s[:n], s[n : 2 * n], s[2 * n :],
        e1 if sw is None else sw, sw is not None, wtotal,
    )  # fmt: skip
    return float(total), float(wsum)


def train_args(X, Y, W, b, has_b, order, R, bs, rates, wd_w, wd_b, momentum, dampening,
               nesterov, maximize, buf_W, buf_b, initialized, losses, X_valid, Y_valid,
               valid_losses, target, sample_weight):  # fmt: skip
    """The arguments of :func:`_sparse_train` but its last three (g0, g1, scratch), and the
    scratch size."""
    e1 = np.empty(0, W.dtype)
    e2 = np.empty((0, 0), W.dtype)
    has_valid = X_valid is not None
    v_sparse = has_valid and isinstance(X_valid, tuple)
    ei = np.empty(0, X[1].dtype)
    vdata, vind, vptr = X_valid if v_sparse else (e1, ei, np.zeros(1, X[1].dtype))
    U, N = W.shape
    mv = (_rows(X_valid) if v_sparse else X_valid.shape[0]) if has_valid else 0
    size = 2 * min(bs, R) * U + mv * U + U * N + (U if has_b else 0) + 4 * (128 // W.itemsize)
    args = (
        *X, Y, W, b if has_b else e1, has_b,
        np.empty((1, 0), np.int64) if order is None else order, order is not None, R, bs,
        rates, wd_w, wd_b, float(momentum), float(dampening), bool(nesterov), bool(maximize),
        e2 if buf_W is None else buf_W, buf_b if has_b and buf_b is not None else e1,
        bool(initialized), losses,
        X_valid if has_valid and not v_sparse else e2, vdata, vind, vptr, v_sparse,
        Y_valid if has_valid else e2, valid_losses if has_valid else np.empty(0), has_valid,
        target, e1 if sample_weight is None else sample_weight, sample_weight is not None,
    )  # fmt: skip
    return args, size
