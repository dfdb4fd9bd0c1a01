"""The kernel-level API: one batch gradient, one SGD step, whole epochs, in compiled code.

Arrays follow torch's layout: ``X`` is ``(M, N)``, ``Y`` is ``(M, U)`` (or ``(M,)`` when
``U == 1``), ``W`` is ``(U, N)`` and ``b`` is ``(U,)`` or ``None`` for a model without a bias.
``W`` and ``b`` are updated in place, so they must be writable C-contiguous arrays of ``X``'s
dtype: numpy arrays, or CPU torch tensors (used without a copy). ``X`` and ``Y`` may be any
array-like of float32 or float64; a non-contiguous one is copied once per call. Every function
takes ``backend=None`` (``"cpp"``, ``"numba"``; ``"cuda"`` where built); ``LINSGD_BACKEND``
overrides the default.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._backends import get_backend
from .exceptions import DivergenceError

__all__ = ["TrainResult", "epoch", "gradient", "loss", "step", "train"]

_STATUS = {0: "completed", 1: "target_loss", 2: "diverged", 3: "interrupted"}


@dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes
    ----------
    losses : ndarray of shape (epochs, steps_per_epoch)
        The batch loss of every step, before its update; NaN where a step did not run.
    valid_losses : ndarray of shape (epochs,) or None
        The full validation-set MSE after each epoch (NaN where the epoch did not finish),
        when ``eval_set`` was given.
    steps : int
        Steps whose update was applied.
    epochs : int
        Epochs run to their end.
    status : str
        ``"completed"``, ``"target_loss"`` (stopped after the first step whose batch loss fell
        below ``target_loss``), ``"diverged"`` (a non-finite loss or parameter) or
        ``"interrupted"``.
    """

    losses: np.ndarray
    valid_losses: np.ndarray | None
    steps: int
    epochs: int
    status: str


def _is_torch_tensor(obj: Any) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach")


def _to_numpy(obj: Any, name: str) -> np.ndarray:
    if isinstance(obj, np.ndarray):
        return obj
    if _is_torch_tensor(obj):
        if obj.device.type != "cpu":
            raise ValueError(
                f"{name} is a torch tensor on {obj.device}; the CPU backends need CPU tensors "
                "(use backend='cuda' for GPU data where linsgd's CUDA module is available)"
            )
        return obj.detach().numpy()
    if obj is None:
        raise TypeError(f"{name} must be an array, got None")
    try:
        return np.asarray(obj)
    except Exception as exc:
        raise TypeError(f"{name} must be array-like, got {type(obj).__name__}") from exc


def _float_dtype(a: np.ndarray, name: str) -> np.dtype:
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must have dtype float32 or float64, got {a.dtype}")
    return a.dtype


def _check_finite(a: np.ndarray, name: str) -> None:
    if a.size and not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinity")


def _data(
    X: Any, Y: Any, check_finite: bool, xname: str = "X", yname: str = "Y"
) -> tuple[np.ndarray, np.ndarray]:
    x = _to_numpy(X, xname)
    dt = _float_dtype(x, xname)
    if x.ndim != 2:
        raise ValueError(f"{xname} must be 2-D (samples, features), got shape {x.shape}")
    if x.shape[0] < 1:
        raise ValueError(f"{xname} must have at least one row, got shape {x.shape}")
    y = _to_numpy(Y, yname)
    if y.dtype != dt:
        _float_dtype(y, yname)
        raise TypeError(f"{yname} must have the same dtype as {xname} ({dt}), got {y.dtype}")
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"{yname} must have shape ({x.shape[0]}, U) or ({x.shape[0]},) to match {xname}, "
            f"got {np.shape(Y)}"
        )
    x = np.ascontiguousarray(x)
    y = np.ascontiguousarray(y)
    if check_finite:
        _check_finite(x, xname)
        _check_finite(y, yname)
    return x, y


def _params(
    W: Any, b: Any, x: np.ndarray, y: np.ndarray, *, writable: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    u, n = y.shape[1], x.shape[1]
    w = _to_numpy(W, "W")
    if w.dtype != x.dtype:
        _float_dtype(w, "W")
        raise TypeError(f"W must have the same dtype as X ({x.dtype}), got {w.dtype}")
    if w.shape != (u, n):
        raise ValueError(f"W must have shape (U, N) = ({u}, {n}), got {w.shape}")
    bias = None
    if b is not None:
        bias = _to_numpy(b, "b")
        if bias.dtype != x.dtype:
            _float_dtype(bias, "b")
            raise TypeError(f"b must have the same dtype as X ({x.dtype}), got {bias.dtype}")
        if bias.shape != (u,):
            raise ValueError(f"b must have shape (U,) = ({u},) or be None, got {bias.shape}")
    for arr, name in ((w, "W"), (bias, "b")):
        if arr is None:
            continue
        if writable:
            if not arr.flags.c_contiguous:
                raise ValueError(f"{name} must be C-contiguous: it is updated in place")
            if not arr.flags.writeable:
                raise ValueError(f"{name} must be writable: it is updated in place")
        _check_finite(arr, name)
    if not writable:
        w = np.ascontiguousarray(w)
        bias = None if bias is None else np.ascontiguousarray(bias)
    return w, bias


def _sample_weight(sample_weight: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    # Returned as keyword arguments so that a backend without weights is called as before.
    if sample_weight is None:
        return {}
    sw = _to_numpy(sample_weight, "sample_weight")
    if sw.dtype.kind not in "fiu" or sw.dtype.kind == "b":
        raise TypeError(f"sample_weight must hold real numbers, got dtype {sw.dtype}")
    if sw.shape != (x.shape[0],):
        raise ValueError(f"sample_weight must have shape ({x.shape[0]},), one weight per row, got {sw.shape}")
    sw = np.ascontiguousarray(sw, dtype=x.dtype)
    if not np.isfinite(sw).all() or (sw < 0).any():
        raise ValueError("sample_weight must be finite and >= 0")
    return {"sample_weight": sw}


def _real(value: Any, name: str, *, minimum: float | None = None) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def _batch_size(value: Any) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError("batch_size must be an integer, got bool")
    try:
        bs = operator.index(value)
    except TypeError:
        raise TypeError(f"batch_size must be an integer, got {type(value).__name__}") from None
    if bs < 1:
        raise ValueError(f"batch_size must be >= 1, got {bs}")
    return bs


def _hyper(
    weight_decay: Any,
    decay_bias: Any,
    l2: Any,
    momentum: Any,
    dampening: Any,
    nesterov: Any,
    maximize: Any,
) -> dict[str, Any]:
    h = {
        "weight_decay": _real(weight_decay, "weight_decay", minimum=0.0),
        "decay_bias": _flag(decay_bias, "decay_bias"),
        "l2": _real(l2, "l2", minimum=0.0),
        "momentum": _real(momentum, "momentum", minimum=0.0),
        "dampening": _real(dampening, "dampening"),
        "nesterov": _flag(nesterov, "nesterov"),
        "maximize": _flag(maximize, "maximize"),
    }
    if h["nesterov"] and (h["momentum"] <= 0.0 or h["dampening"] != 0.0):
        raise ValueError("nesterov=True requires momentum > 0 and dampening == 0")
    return h


def _learning_rates(lr: Any, epochs: int) -> np.ndarray:
    if isinstance(lr, (Sequence, np.ndarray)) and not isinstance(lr, str):
        rates = np.array([_real(v, "lr", minimum=0.0) for v in lr], dtype=np.float64)
        if rates.shape != (epochs,):
            raise ValueError(f"lr must be a number or a sequence of {epochs} per-epoch values, got {len(rates)}")
        return rates
    return np.full(epochs, _real(lr, "lr", minimum=0.0), dtype=np.float64)


def _orders(order: Any, m: int, epochs: int, name: str) -> np.ndarray | None:
    if order is None:
        return None
    o = np.asarray(order)
    if o.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer row indices, got dtype {o.dtype}")
    want = 1 if name == "order" else 2
    if o.ndim != want or (want == 2 and o.shape[0] != epochs):
        shape = "(R,)" if want == 1 else f"({epochs}, R)"
        raise ValueError(f"{name} must have shape {shape} of row indices, got {o.shape}")
    if o.size == 0 or o.shape[-1] == 0:
        raise ValueError(f"{name} must select at least one row")
    if o.min() < 0 or o.max() >= m:
        raise ValueError(f"{name} holds row indices outside [0, {m})")
    return np.ascontiguousarray(o.reshape(epochs, -1), dtype=np.int64)


def _momentum_buffers(
    state: dict | None, w: np.ndarray, bias: np.ndarray | None, momentum: float
) -> tuple[np.ndarray | None, np.ndarray | None, bool]:
    if momentum == 0.0:
        return None, None, False
    if state is not None and "momentum_buffer_W" in state:
        bw = state["momentum_buffer_W"]
        bb = state.get("momentum_buffer_b")
        if not isinstance(bw, np.ndarray) or bw.shape != w.shape or bw.dtype != w.dtype:
            raise ValueError("state['momentum_buffer_W'] does not match W (shape and dtype)")
        if bias is not None and (
            not isinstance(bb, np.ndarray) or bb.shape != bias.shape or bb.dtype != bias.dtype
        ):
            raise ValueError("state['momentum_buffer_b'] does not match b (shape and dtype)")
        return bw, (bb if bias is not None else None), True
    return np.zeros_like(w), (None if bias is None else np.zeros_like(bias)), False


def _check_state(state: Any) -> None:
    if state is not None and not isinstance(state, dict):
        raise TypeError(f"state must be a dict or None, got {type(state).__name__}")


def loss(
    X: Any, Y: Any, W: Any, b: Any, *, sample_weight: Any = None, backend: str | None = None
) -> float:
    """Mean squared error of the model on a data set, rounded as ``nn.MSELoss`` rounds it.

    Parameters
    ----------
    X : array_like of shape (M, N)
    Y : array_like of shape (M, U) or (M,)
    W : array_like of shape (U, N)
    b : array_like of shape (U,) or None
    sample_weight : array_like of shape (M,), optional
        Row weights: the loss becomes ``sum(w * e**2) / (U * sum(w))``.
    backend : str, optional
        ``"cpp"`` or ``"numba"``; the default backend when None.

    Returns
    -------
    float
        The mean of the squared errors over all ``M * U`` entries.
    """
    mod = get_backend(backend)
    x, y = _data(X, Y, True)
    w, bias = _params(W, b, x, y, writable=False)
    return float(mod.loss(x, y, w, bias, **_sample_weight(sample_weight, x)))


def gradient(
    X: Any, Y: Any, W: Any, b: Any, *, sample_weight: Any = None, backend: str | None = None
) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Gradient of the batch MSE with respect to ``W`` and ``b``, without an update.

    Parameters
    ----------
    X : array_like of shape (B, N)
    Y : array_like of shape (B, U) or (B,)
    W : array_like of shape (U, N)
    b : array_like of shape (U,) or None
    sample_weight : array_like of shape (B,), optional
        Row weights, as in :func:`train`.
    backend : str, optional
        ``"cpp"`` or ``"numba"``; the default backend when None.

    Returns
    -------
    gW : ndarray of shape (U, N)
    gb : ndarray of shape (U,) or None
        None when ``b`` is None.
    loss : float
        The batch MSE.
    """
    mod = get_backend(backend)
    x, y = _data(X, Y, True)
    w, bias = _params(W, b, x, y, writable=False)
    gw = np.empty_like(w)
    gb = None if bias is None else np.empty_like(bias)
    value = mod.gradient(x, y, w, bias, gw, gb, **_sample_weight(sample_weight, x))
    return gw, gb, float(value)


def train(
    X: Any,
    Y: Any,
    W: Any,
    b: Any,
    *,
    batch_size: int,
    epochs: int,
    lr: float | Sequence[float],
    orders: Any = None,
    weight_decay: float = 0.0,
    decay_bias: bool = True,
    l2: float = 0.0,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    state: dict | None = None,
    eval_set: tuple[Any, Any] | None = None,
    target_loss: float | None = None,
    sample_weight: Any = None,
    check_finite: bool = True,
    backend: str | None = None,
) -> TrainResult:
    """Run several epochs of mini-batch SGD in one compiled call, updating ``W`` and ``b`` in place.

    Each step computes the batch MSE gradient and applies ``torch.optim.SGD``'s update with the
    given hyper-parameters, in torch's order of operations.

    Parameters
    ----------
    X : array_like of shape (M, N)
    Y : array_like of shape (M, U) or (M,)
    W : array of shape (U, N)
        Updated in place.
    b : array of shape (U,) or None
        Updated in place; None for a model without a bias.
    batch_size : int
        Rows per step; the last batch of an epoch may be smaller.
    epochs : int
        Epochs to run.
    lr : float or sequence of float
        The learning rate, or one per epoch (a schedule).
    orders : array_like of int, shape (epochs, R), optional
        The rows of each epoch, in order (``R <= M``; a shorter ``R`` drops rows). Rows
        ``0..M-1`` in order when None.
    weight_decay : float
        torch's coupled weight decay, ``d += weight_decay * p``.
    decay_bias : bool
        Whether ``weight_decay`` applies to the bias too (torch's default: yes).
    l2 : float
        Keras's ``L2(l2)`` kernel penalty, ``l2 * sum(W**2)`` added to the loss; never on the bias.
    momentum, dampening : float
        As in ``torch.optim.SGD``.
    nesterov, maximize : bool
        As in ``torch.optim.SGD``.
    state : dict, optional
        Optimizer state carried between calls (momentum buffers, step count); a fresh
        optimizer when None or empty.
    eval_set : tuple (X_valid, Y_valid), optional
        A validation set whose MSE is computed after every epoch.
    target_loss : float, optional
        Stop after the first step whose batch loss is below this value.
    sample_weight : array_like of shape (M,), optional
        Non-negative row weights (cast to ``X``'s dtype). Each batch's loss becomes the weighted
        mean ``sum(w * e**2) / (U * sum(w))`` over its rows, so unit weights give exactly the
        unweighted (torch) result and scaling all weights changes nothing; a batch whose weights
        are all zero contributes no gradient.
    check_finite : bool
        Check the data for NaN and infinity first (one extra pass over it).
    backend : str, optional
        ``"cpp"`` or ``"numba"``; the default backend when None.

    Returns
    -------
    TrainResult
        The per-step losses, the validation losses, the steps and epochs run and the status.
    """
    mod = get_backend(backend)
    _check_state(state)
    x, y = _data(X, Y, check_finite)
    w, bias = _params(W, b, x, y, writable=True)
    if isinstance(epochs, (bool, np.bool_)):
        raise TypeError("epochs must be an integer, got bool")
    try:
        n_epochs = operator.index(epochs)
    except TypeError:
        raise TypeError(f"epochs must be an integer, got {type(epochs).__name__}") from None
    if n_epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {n_epochs}")
    bs = _batch_size(batch_size)
    h = _hyper(weight_decay, decay_bias, l2, momentum, dampening, nesterov, maximize)
    rates = _learning_rates(lr, n_epochs)
    order = _orders(orders, x.shape[0], n_epochs, "orders")
    target = float("nan") if target_loss is None else _real(target_loss, "target_loss")
    xv = yv = vl = None
    if eval_set is not None:
        if not isinstance(eval_set, (tuple, list)) or len(eval_set) != 2:
            raise TypeError("eval_set must be a pair (X_valid, Y_valid)")
        xv, yv = _data(eval_set[0], eval_set[1], check_finite, "X_valid", "Y_valid")
        if xv.dtype != x.dtype:
            raise TypeError(f"X_valid must have the same dtype as X ({x.dtype}), got {xv.dtype}")
        if xv.shape[1] != x.shape[1] or yv.shape[1] != y.shape[1]:
            raise ValueError(
                f"eval_set must have {x.shape[1]} features and {y.shape[1]} outputs, "
                f"got X_valid {xv.shape} and Y_valid {yv.shape}"
            )
        vl = np.full(n_epochs, np.nan)
    rows = x.shape[0] if order is None else order.shape[1]
    steps_per_epoch = -(-rows // bs)
    losses = np.full(n_epochs * steps_per_epoch, np.nan)
    weights = _sample_weight(sample_weight, x)
    bw, bb, initialized = _momentum_buffers(state, w, bias, h["momentum"])
    steps, status = mod.train(
        x, y, w, bias, order, bs, rates,
        h["weight_decay"], h["decay_bias"], h["l2"], h["momentum"], h["dampening"],
        h["nesterov"], h["maximize"], bw, bb, initialized,
        losses, xv, yv, vl, target, **weights,
    )  # fmt: skip
    if state is not None:
        if bw is not None and (initialized or steps > 0):
            state["momentum_buffer_W"] = bw
            if bb is not None:
                state["momentum_buffer_b"] = bb
        state["step"] = int(state.get("step", 0)) + int(steps)
    status_name = _STATUS[int(status)]
    done_epochs = n_epochs if status_name == "completed" else int(steps) // steps_per_epoch
    return TrainResult(
        losses=losses.reshape(n_epochs, steps_per_epoch),
        valid_losses=vl,
        steps=int(steps),
        epochs=done_epochs,
        status=status_name,
    )


def _raise_if_diverged(result: TrainResult, steps_per_epoch: int) -> None:
    if result.status == "diverged":
        e, s = divmod(result.steps, steps_per_epoch)
        raise DivergenceError(
            f"training diverged at epoch {e}, step {s}: a loss or parameter became NaN or "
            "infinite (try a smaller lr); W and b hold the values of that step",
            epoch=e,
            step=s,
        )


def epoch(
    X: Any,
    Y: Any,
    W: Any,
    b: Any,
    *,
    batch_size: int,
    lr: float,
    order: Any = None,
    weight_decay: float = 0.0,
    decay_bias: bool = True,
    l2: float = 0.0,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    state: dict | None = None,
    sample_weight: Any = None,
    check_finite: bool = True,
    backend: str | None = None,
) -> np.ndarray:
    """Run one epoch of mini-batch SGD in one compiled call, updating ``W`` and ``b`` in place.

    Parameters
    ----------
    X, Y, W, b, batch_size, lr, weight_decay, decay_bias, l2, momentum, dampening, nesterov, maximize, state, sample_weight, check_finite, backend
        As in :func:`train`.
    order : array_like of int, shape (R,), optional
        The rows of the epoch, in order; rows ``0..M-1`` when None.

    Returns
    -------
    ndarray of float64, shape (steps,)
        The batch loss of every step, before its update.

    Raises
    ------
    DivergenceError
        When a loss or a parameter becomes NaN or infinite.
    """
    orders = None if order is None else _orders(order, _to_numpy(X, "X").shape[0], 1, "order")
    result = train(
        X, Y, W, b, batch_size=batch_size, epochs=1, lr=lr, orders=orders,
        weight_decay=weight_decay, decay_bias=decay_bias, l2=l2, momentum=momentum,
        dampening=dampening, nesterov=nesterov, maximize=maximize, state=state,
        sample_weight=sample_weight, check_finite=check_finite, backend=backend,
    )  # fmt: skip
    _raise_if_diverged(result, result.losses.shape[1])
    return result.losses[0]


def step(
    X: Any,
    Y: Any,
    W: Any,
    b: Any,
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
    sample_weight: Any = None,
    check_finite: bool = True,
    backend: str | None = None,
) -> float:
    """Take one SGD step on one batch (all of ``X``), updating ``W`` and ``b`` in place.

    Parameters
    ----------
    X, Y, W, b, lr, weight_decay, decay_bias, l2, momentum, dampening, nesterov, maximize, state, sample_weight, check_finite, backend
        As in :func:`train`; ``state`` carries the momentum buffers between steps.

    Returns
    -------
    float
        The batch loss before the update.

    Raises
    ------
    DivergenceError
        When the loss or a parameter becomes NaN or infinite.
    """
    m = _to_numpy(X, "X").shape[0] if hasattr(X, "shape") else len(X)
    result = train(
        X, Y, W, b, batch_size=max(int(m), 1), epochs=1, lr=lr,
        weight_decay=weight_decay, decay_bias=decay_bias, l2=l2, momentum=momentum,
        dampening=dampening, nesterov=nesterov, maximize=maximize, state=state,
        sample_weight=sample_weight, check_finite=check_finite, backend=backend,
    )  # fmt: skip
    _raise_if_diverged(result, 1)
    return float(result.losses[0, 0])
