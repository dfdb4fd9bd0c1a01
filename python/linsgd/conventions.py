"""Conversions between the L2-penalty conventions of torch, Keras, scikit-learn and linsgd.

Every convention penalises the squared weights; they differ in the factor, in whether the
data term is a mean or a sum, and in whether the bias is penalised. All of them are mapped to
one number, the *penalty coefficient* ``c`` of the objective that linsgd's SGD (and
:func:`linsgd.closed_form`) minimises,

    J(W, b) = (1 / (M * U)) * ||Y - X W^T - b||^2  +  c * ||W||^2

(``M`` samples, ``U`` outputs; the mean over all ``M * U`` entries, as ``nn.MSELoss()`` and
Keras's MSE take it):

=====================  =======================================  =========================
convention             parameter                                ``c``
=====================  =======================================  =========================
``"torch"``            ``torch.optim.SGD(weight_decay=wd)``     ``wd / 2``
                       = linsgd ``weight_decay``
``"keras"``            ``kernel_regularizer=L2(l2)``            ``l2``
                       = linsgd ``l2``
``"ridge"``            ``sklearn.linear_model.Ridge(alpha)``    ``alpha / (M * U)``
``"sgd_regressor"``    ``sklearn.linear_model.SGDRegressor``    ``alpha``  (``U == 1``)
                       ``(penalty="l2", alpha)``
=====================  =======================================  =========================

Why: torch's coupled decay adds ``wd * p`` to the gradient, the gradient of
``(wd/2) ||p||^2``. Keras adds ``l2 * sum(W**2)`` to the loss. ``Ridge`` minimises
``||Y - XW - b||^2 + alpha ||W||^2`` (a sum, not a mean: ``M * U * J``). ``SGDRegressor``
minimises ``(1/M) sum(0.5 (y - y_hat)^2) + alpha * 0.5 ||w||^2`` (``J / 2``). The closed form
:func:`linsgd.closed_form` takes linsgd's own ``weight_decay`` / ``l2``.

The bias: torch decays it unless it sits in a parameter group with ``weight_decay=0``
(linsgd's ``decay_bias``); Keras (``bias_regularizer=None``), ``Ridge`` and ``SGDRegressor``
never penalise it. A decayed bias is ``Ridge(alpha, fit_intercept=False)`` on ``[X, 1]``, or
Keras's ``bias_regularizer=L2(wd/2)``; ``SGDRegressor`` cannot express it.

The conversions equate objectives, hence optima, not training paths: Keras rounds
differently, ``SGDRegressor`` steps per sample with its own learning-rate schedule, and
Keras's optimizer-level ``SGD(weight_decay=...)`` is decoupled decay, another algorithm.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = [
    "CONVENTIONS",
    "convert",
    "from_penalty_coefficient",
    "linsgd_params",
    "penalty_coefficient",
]

#: The convention names :func:`convert` knows, with their aliases.
CONVENTIONS = {
    "torch": "torch",
    "weight_decay": "torch",
    "keras": "keras",
    "l2": "keras",
    "ridge": "ridge",
    "sgd_regressor": "sgd_regressor",
    "sgdregressor": "sgd_regressor",
}


def _name(convention: Any, arg: str) -> str:
    if not isinstance(convention, str):
        raise TypeError(f"{arg} must be a convention name (str), got {type(convention).__name__}")
    key = convention.lower()
    if key not in CONVENTIONS:
        raise ValueError(f"{arg} must be one of {sorted(CONVENTIONS)}, got {convention!r}")
    return CONVENTIONS[key]


def _nonneg(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {v}")
    return v


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _scale(conv: str, n_samples: Any, n_outputs: Any) -> float:
    """``c = value / scale`` for convention ``conv``."""
    if conv == "torch":
        return 2.0
    if conv == "keras":
        return 1.0
    if conv == "ridge":
        if n_samples is None:
            raise ValueError("n_samples is required for the 'ridge' convention (alpha = M*U*c)")
        return float(_count(n_samples, "n_samples") * _count(n_outputs, "n_outputs"))
    if _count(n_outputs, "n_outputs") != 1:
        raise ValueError("the 'sgd_regressor' convention has one output; got n_outputs != 1")
    return 1.0


def penalty_coefficient(
    value: float, convention: str, *, n_samples: int | None = None, n_outputs: int = 1
) -> float:
    """Return the coefficient ``c`` of ``||W||^2`` in linsgd's objective for a penalty setting.

    Parameters
    ----------
    value : float
        The penalty parameter in ``convention`` (``wd``, ``l2`` or ``alpha``), >= 0.
    convention : {"torch", "keras", "ridge", "sgd_regressor"}
        Its convention (aliases: ``"weight_decay"`` for torch, ``"l2"`` for Keras).
    n_samples : int, optional
        ``M``; required for ``"ridge"``.
    n_outputs : int, default=1
        ``U``.

    Returns
    -------
    float
        ``c`` in ``J = mean squared error + c * ||W||^2``.
    """
    conv = _name(convention, "convention")
    return _nonneg(value, "value") / _scale(conv, n_samples, n_outputs)


def from_penalty_coefficient(
    c: float, convention: str, *, n_samples: int | None = None, n_outputs: int = 1
) -> float:
    """Return the parameter of ``convention`` whose objective has coefficient ``c``.

    Parameters
    ----------
    c : float
        The coefficient of ``||W||^2`` in linsgd's objective, >= 0.
    convention : {"torch", "keras", "ridge", "sgd_regressor"}
        The target convention.
    n_samples : int, optional
        ``M``; required for ``"ridge"``.
    n_outputs : int, default=1
        ``U``.

    Returns
    -------
    float
        ``wd = 2c``, ``l2 = c``, ``alpha = M*U*c`` or ``alpha = c``.
    """
    conv = _name(convention, "convention")
    return _nonneg(c, "c") * _scale(conv, n_samples, n_outputs)


def convert(
    value: float,
    source: str,
    target: str,
    *,
    n_samples: int | None = None,
    n_outputs: int = 1,
) -> float:
    """Convert a weight penalty from one convention to another (same objective, same optimum).

    Parameters
    ----------
    value : float
        The penalty in the ``source`` convention.
    source, target : {"torch", "keras", "ridge", "sgd_regressor"}
        Conventions (aliases ``"weight_decay"``, ``"l2"``); see the module docstring.
    n_samples : int, optional
        ``M``, needed when either side is ``"ridge"``.
    n_outputs : int, default=1
        ``U``.

    Returns
    -------
    float
        The equivalent penalty in ``target``.

    Examples
    --------
    >>> from linsgd.conventions import convert
    >>> convert(0.1, "torch", "keras")
    0.05
    >>> convert(0.1, "torch", "ridge", n_samples=100)
    5.0
    >>> convert(0.05, "keras", "sgd_regressor")
    0.05
    """
    c = penalty_coefficient(value, source, n_samples=n_samples, n_outputs=n_outputs)
    return from_penalty_coefficient(c, target, n_samples=n_samples, n_outputs=n_outputs)


def linsgd_params(
    value: float,
    convention: str,
    *,
    n_samples: int | None = None,
    n_outputs: int = 1,
    decay_bias: bool = False,
) -> dict[str, Any]:
    """Keyword arguments of :class:`~linsgd.LinearRegressor` / :func:`~linsgd.closed_form`.

    Parameters
    ----------
    value : float
        The penalty in ``convention``.
    convention : {"torch", "keras", "ridge", "sgd_regressor"}
        Its convention.
    n_samples : int, optional
        ``M``, the number of training rows; required for ``"ridge"``.
    n_outputs : int, default=1
        ``U``, the number of outputs.
    decay_bias : bool, default=False
        Whether the bias is penalised too (torch's default; a Ridge on ``[X, 1]``).
        Keras, ``Ridge`` and ``SGDRegressor`` leave it unpenalised, hence the default.

    Returns
    -------
    dict
        ``{"weight_decay": 2c, "decay_bias": decay_bias, "l2": 0.0}``.
    """
    c = penalty_coefficient(value, convention, n_samples=n_samples, n_outputs=n_outputs)
    if not isinstance(decay_bias, bool):
        raise TypeError(f"decay_bias must be a bool, got {type(decay_bias).__name__}")
    return {"weight_decay": 2.0 * c, "decay_bias": decay_bias, "l2": 0.0}
