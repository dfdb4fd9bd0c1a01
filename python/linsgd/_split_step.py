"""The split step of data-parallel training: :func:`partial_gradient` and :func:`update`
(re-exported by :mod:`linsgd.kernels`, which documents them)."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks as ck
from . import _cuda_dispatch as _cd
from ._call import _hyper, evaluation_arrays, keep_state, raise_if_diverged, update_arrays

__all__ = ["partial_gradient", "update"]


def partial_gradient(
    X: Any,
    Y: Any,
    W: Any,
    b: Any,
    *,
    n_total: int,
    sample_weight: Any = None,
    weight_total: float | None = None,
    backend: str | None = None,
) -> tuple[np.ndarray, np.ndarray | None, float]:
    """The rows' share of the gradient of a larger batch, for a step split around a collective.

    ``X`` holds some rows of a batch of ``n_total`` rows (data-parallel training gives each
    process a part). The gradient is formed as :func:`step` forms it, but normalised by the
    whole batch: each row's scaled error is ``2 * e / (U * n_total)`` (``2 * w * e / (U *
    weight_total)`` with sample weights), the weight gradient is summed over these rows in
    order and the bias gradient and the sum of squared errors by torch's cascade sums. The
    parts' results summed over the batch give its gradient and ``loss = sse / (U * n_total)``;
    with ``n_total=len(X)`` it is :func:`gradient`'s gradient bit for bit, and
    ``update(W, b, gW, gb, ...)`` then takes exactly :func:`step`'s step.

    Parameters
    ----------
    X : array_like of shape (M, N)
        These rows of the batch (float32 or float64: the model dtype).
    Y : array_like of shape (M, U) or (M,)
        Their targets, of ``X``'s dtype.
    W : array_like of shape (U, N)
        The weights; only read.
    b : array_like of shape (U,) or None
        The bias; None for a model without one. Only read.
    n_total : int
        Rows of the whole batch, at least ``M``.
    sample_weight : array_like of shape (M,), optional
        Row weights, as in :func:`train`.
    weight_total : float, optional
        With ``sample_weight``: the whole batch's weight sum (>= 0; all-zero weights give a
        zero gradient). None: these rows' own weight sum, as :func:`step` takes it.
    backend : str, optional
        ``"cpp"``, ``"numba"`` or ``"cuda"``; the default backend when None (GPU arrays go to
        the CUDA backend).

    Returns
    -------
    gW : ndarray of shape (U, N)
        These rows' share of the batch gradient with respect to ``W``.
    gb : ndarray of shape (U,) or None
        Their share of the gradient with respect to ``b``; None when ``b`` is None.
    sse : float
        The rows' (weighted) sum of squared errors over their ``M * U`` entries, a value of
        ``X``'s dtype.
    """
    mod, x, y, w, bias, sw, device = evaluation_arrays(X, Y, W, b, sample_weight, backend)
    if not hasattr(mod, "partial_gradient"):  # a _cuda module built before it had one
        raise ValueError("this build of the CUDA backend has no partial_gradient: rebuild linsgd")
    n = ck.integer(n_total, "n_total", minimum=1)
    if n < x.shape[0]:
        raise ValueError(
            f"n_total must be at least the number of rows of X ({x.shape[0]}), got {n}"
        )
    wt = ck.real(weight_total, "weight_total", minimum=0.0, allow_none=True)
    if wt is not None and sw is None:
        raise ValueError("weight_total needs sample_weight (without weights the total is n_total)")
    if device:
        gw, gb = _cd.zeros_like(w), _cd.zeros_like(bias)
    else:
        gw = np.empty_like(w)
        gb = None if bias is None else np.empty_like(bias)
    sse = mod.partial_gradient(x, y, w, bias, gw, gb, n, sw, wt)
    return gw, gb, float(sse)


def update(
    W: Any,
    b: Any,
    gW: Any,
    gb: Any,
    *,
    lr: float,
    weight_decay: float = 0.0,
    decay_bias: bool = True,
    l2: float = 0.0,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    state: dict | None = None,
    backend: str | None = None,
) -> None:
    """Apply one SGD update by a given gradient to ``W`` and ``b`` in place.

    It is the update half of :func:`step`: ``step(X, Y, W, b, lr=lr, ...)`` is
    ``gW, gb, _ = partial_gradient(X, Y, W, b, n_total=len(X))`` followed by
    ``update(W, b, gW, gb, lr=lr, ...)``, bit for bit, momentum state included.

    Parameters
    ----------
    W : array of shape (U, N)
        Updated in place: writable and C-contiguous, float32 or float64.
    b : array of shape (U,) or None
        Updated in place; None for a model without a bias.
    gW : array_like of shape (U, N)
        The gradient of the loss with respect to ``W``, of ``W``'s dtype.
    gb : array_like of shape (U,) or None
        The gradient with respect to ``b``; None exactly when ``b`` is.
    lr : float
        The learning rate.
    weight_decay : float, default=0.0
        Coupled weight decay, as torch's: ``d += weight_decay * p``.
    decay_bias : bool, default=True
        Whether ``weight_decay`` applies to the bias too (torch's default: yes).
    l2 : float, default=0.0
        Keras's ``L2(l2)`` kernel penalty, ``l2 * sum(W**2)`` added to the loss; never on the bias.
    momentum : float, default=0.0
        Momentum factor, as in ``torch.optim.SGD``.
    dampening : float, default=0.0
        Dampening for momentum, as in ``torch.optim.SGD``.
    nesterov : bool, default=False
        Nesterov momentum, as in ``torch.optim.SGD`` (needs ``momentum > 0``, ``dampening == 0``).
    maximize : bool, default=False
        Ascend instead of descend, as in ``torch.optim.SGD``.
    state : dict, optional
        Optimizer state carried between calls (momentum buffers, step count), as in
        :func:`step`.
    backend : str, optional
        ``"cpp"``, ``"numba"`` or ``"cuda"``; the default backend when None (GPU arrays go to
        the CUDA backend).

    Raises
    ------
    DivergenceError
        When the update made ``W`` or ``b`` NaN or infinite (they then hold those values).
    """
    rate = ck.real(lr, "lr", minimum=0.0)
    h = _hyper(weight_decay, decay_bias, l2, momentum, dampening, nesterov, maximize)
    mod, w, bias, gw, g_b, bw, bb, initialized = update_arrays(W, b, gW, gb, h[3], state, backend)
    finite = mod.update(w, bias, gw, g_b, rate, *h, bw, bb, initialized)
    keep_state(state, bw, bb, initialized, 1)
    if not finite:
        raise_if_diverged(2, 1, 1, w, bias)
