"""Regression metrics: MSE, R² and a "modified MAPE".

All three take ``(y_true, y_pred)`` in scikit-learn's order, accept numpy arrays, lists,
scalars and CPU torch tensors, and compute in float64.

The modified MAPE is

    MAPE(y, y_hat) = (1/m) * sum_i L(y_i, y_hat_i),
    L(y_i, y_hat_i) = |(y_i - y_hat_i) / y_i|   if y_i != 0,
                      |y_hat_i|                 if y_i == 0

in percent (``100 * MAPE``: ``0.0`` for identical inputs). Unlike the textbook MAPE it stays
finite where a target is exactly 0. The reference comes first, as in scikit-learn:
``mape(reference, prediction)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import real_array

__all__ = ["mape", "mse", "r2"]


def _array(a: Any, name: str) -> np.ndarray:
    return real_array(a, name)


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = _array(y_true, "y_true")
    p = _array(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must have the same shape, got {t.shape} and {p.shape}")
    if t.size == 0:
        raise ValueError("y_true is empty")
    return t, p


def _weights(sample_weight: Any, t: np.ndarray) -> np.ndarray | None:
    if sample_weight is None:
        return None
    w = _array(sample_weight, "sample_weight")
    if t.ndim == 0 or w.shape != (t.shape[0],):
        raise ValueError(
            f"sample_weight must have shape ({t.shape[0] if t.ndim else 1},), got {w.shape}"
        )
    if (w < 0).any() or not (w > 0).any():
        raise ValueError("sample_weight must be >= 0 with at least one non-zero weight")
    return w


def mse(y_true: Any, y_pred: Any, *, sample_weight: Any = None) -> float:
    """Mean squared error over all entries (``nn.MSELoss()``'s value, in float64).

    Parameters
    ----------
    y_true, y_pred : array_like of the same shape
        Targets and predictions; ``(M,)`` or ``(M, U)``.
    sample_weight : array_like of shape (M,), optional
        Row weights: ``sum(w * e**2) / (U * sum(w))``, the normalisation of linsgd's weighted
        training loss.

    Returns
    -------
    float
        The mean of the squared errors.
    """
    t, p = _pair(y_true, y_pred)
    e2 = (p - t) ** 2
    w = _weights(sample_weight, t)
    if w is None:
        return float(np.mean(e2))
    e2 = e2.reshape(t.shape[0], -1)
    return float(np.sum(w[:, None] * e2) / (e2.shape[1] * np.sum(w)))


def r2(y_true: Any, y_pred: Any, *, sample_weight: Any = None) -> float:
    """Coefficient of determination, as ``sklearn.metrics.r2_score`` (outputs averaged).

    Parameters
    ----------
    y_true, y_pred : array_like of the same shape, (M,) or (M, U)
        Targets and predictions.
    sample_weight : array_like of shape (M,), optional
        Row weights.

    Returns
    -------
    float
        ``1 - SS_res / SS_tot`` per output, averaged uniformly over the outputs. An output
        with constant targets scores 1 when predicted exactly and 0 otherwise (scikit-learn's
        convention).
    """
    t, p = _pair(y_true, y_pred)
    if t.ndim == 0:
        raise ValueError("r2 needs at least one sample per output, got a scalar")
    t2 = t.reshape(t.shape[0], -1)
    p2 = p.reshape(t.shape[0], -1)
    w = _weights(sample_weight, t)
    w = np.ones(t.shape[0]) if w is None else w
    mean = np.sum(w[:, None] * t2, axis=0) / np.sum(w)
    ss_res = np.sum(w[:, None] * (t2 - p2) ** 2, axis=0)
    ss_tot = np.sum(w[:, None] * (t2 - mean) ** 2, axis=0)
    scores = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), 0.0)
    scores = np.where((ss_tot == 0) & (ss_res == 0), 1.0, scores)
    return float(np.mean(scores))


def mape(y_true: Any, y_pred: Any) -> float:
    """The modified MAPE (finite where a target is 0), in percent.

    Parameters
    ----------
    y_true : array_like or float
        The reference values.
    y_pred : array_like or float, same shape
        The values compared with them.

    Returns
    -------
    float
        ``100 * mean(L_i)`` with ``L_i = |(y_true_i - y_pred_i) / y_true_i|`` where
        ``y_true_i != 0`` and ``L_i = |y_pred_i|`` where ``y_true_i == 0``.

    Examples
    --------
    >>> from linsgd.metrics import mape
    >>> mape([2.0, 2.0], [2.0, 2.0]), mape([2.0], [0.0]), mape([2.0], [-2.0]), mape([0.0], [2.0])
    (0.0, 100.0, 200.0, 200.0)
    """
    t, p = _pair(y_true, y_pred)
    zero = t == 0
    safe = np.where(zero, 1.0, t)
    per = np.where(zero, np.abs(p), np.abs((t - p) / safe))
    return float(np.mean(per) * 100.0)
