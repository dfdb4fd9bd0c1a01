"""The exact optimum of the objective that linsgd's SGD follows (normal equations, min-norm).

For ``M`` samples (weights ``w_i``, all 1 by default), ``U`` outputs, weights ``W`` ``(U, N)``
and bias ``b`` ``(U,)``, linsgd's SGD (like ``nn.Linear`` + ``nn.MSELoss()`` +
``torch.optim.SGD``) descends, on the full batch,

.. math::

    J(W, b) = \\frac{1}{U \\sum_i w_i} \\sum_i w_i \\lVert y_i - W x_i - b \\rVert^2
              + \\left(\\frac{wd}{2} + l_2\\right) \\lVert W \\rVert^2
              + [\\text{decay\\_bias}] \\frac{wd}{2} \\lVert b \\rVert^2 .

torch's coupled weight decay adds ``wd * p`` to the gradient of the MSE; that is the gradient
of ``(wd/2) ||p||^2``, so SGD's fixed point is the stationary point of ``J``:
``grad MSE + wd * p (+ 2 * l2 * W) = 0``. With ``A = [X, 1]`` (or ``X`` without a bias),
``D = diag(w)``, ``S = sum(w)`` and ``lambda_j = wd/2 + l2`` for the weights and
``wd/2`` (or 0) for the bias, this is the ridge system

.. math::

    (A^T D A + U S \\Lambda)\\, \\theta = A^T D Y ,

one right-hand side per output. It is solved as the stacked least-squares problem
``[sqrt(D) A; sqrt(U S Lambda)] theta = [sqrt(D) Y; 0]`` (SVD-based ``lstsq`` in float64:
no squared condition number), which also gives the *minimum-norm* optimum when the system is
singular (duplicated or constant columns, fewer samples than parameters, no penalty), and a
:class:`RankDeficientWarning` that names the rank.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ._checks import real, real_array

__all__ = ["RankDeficientWarning", "closed_form"]


class RankDeficientWarning(UserWarning):
    """The normal equations are singular: the minimum-norm optimum was returned.

    Parameters
    ----------
    message : str
        The warning's text.
    rank : int, default=-1
        The numerical rank of the (penalised) system (-1: unknown).
    n_params : int, default=-1
        Its number of unknowns per output (-1: unknown).

    Attributes
    ----------
    rank : int
        The numerical rank of the (penalised) system.
    n_params : int
        Its number of unknowns per output (features, plus one for the bias).
    """

    def __init__(self, message: str, rank: int = -1, n_params: int = -1) -> None:
        super().__init__(message)
        self.rank = rank
        self.n_params = n_params


def _penalty(value: Any, name: str) -> float:
    return real(value, name, minimum=0.0)


def _matrix(a: Any, name: str) -> np.ndarray:
    arr = real_array(a, name)
    if arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


def closed_form(
    X: Any,
    y: Any,
    *,
    weight_decay: float = 0.0,
    decay_bias: bool = True,
    l2: float = 0.0,
    fit_intercept: bool = True,
    sample_weight: Any = None,
) -> tuple[np.ndarray, np.floating | np.ndarray]:
    """Solve exactly for the optimum that long (full-batch) SGD runs converge to.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features)
        Training data.
    y : array_like of shape (n_samples,) or (n_samples, n_outputs)
        Targets.
    weight_decay : float, default=0
        Coupled weight decay ``wd``, as torch's: the objective gains ``(wd/2) * ||W||^2``.
    decay_bias : bool, default=True
        Whether ``weight_decay`` also penalises the bias (``(wd/2) * ||b||^2``), as torch
        does for every parameter of its group.
    l2 : float, default=0
        Keras's ``L2(l2)`` kernel penalty: the objective gains ``l2 * ||W||^2``; never the bias.
    fit_intercept : bool, default=True
        Whether the model has a bias.
    sample_weight : array_like of shape (n_samples,), optional
        Non-negative row weights: the squared errors are averaged with these weights,
        ``sum(w_i * e_i**2) / (U * sum(w))``, as linsgd's weighted SGD does.

    Returns
    -------
    coef : ndarray of shape (n_features,) or (n_outputs, n_features)
        The weights, float64 (1-D when ``y`` is 1-D).
    intercept : float64 scalar or ndarray of shape (n_outputs,)
        The bias (0 when ``fit_intercept=False``).

    Raises
    ------
    ValueError, TypeError
        On invalid input; the message names the argument.

    Warns
    -----
    RankDeficientWarning
        When the system is singular; the minimum-norm optimum is returned.

    Examples
    --------
    >>> import numpy as np
    >>> from linsgd import closed_form
    >>> X = np.array([[1.0, 1.0], [2.0, 1.0], [5.0, 1.0], [-1.0, 1.0]])
    >>> coef, _ = closed_form(X, [5.0, 8.0, 17.0, -1.0], fit_intercept=False)
    >>> np.round(coef, 12)
    array([3., 2.])
    """
    wd = _penalty(weight_decay, "weight_decay")
    lam_l2 = _penalty(l2, "l2")
    if not isinstance(decay_bias, (bool, np.bool_)):
        raise TypeError(f"decay_bias must be a bool, got {type(decay_bias).__name__}")
    if not isinstance(fit_intercept, (bool, np.bool_)):
        raise TypeError(f"fit_intercept must be a bool, got {type(fit_intercept).__name__}")
    x = _matrix(X, "X")
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"X must be a non-empty 2-D array (samples, features), got {x.shape}")
    yy = _matrix(y, "y")
    if yy.ndim not in (1, 2) or yy.shape[0] != x.shape[0]:
        raise ValueError(
            f"y must have shape ({x.shape[0]},) or ({x.shape[0]}, n_outputs), got {yy.shape}"
        )
    single = yy.ndim == 1
    Y = yy.reshape(x.shape[0], -1)
    M, N = x.shape
    U = Y.shape[1]
    if sample_weight is None:
        sw = np.ones(M)
    else:
        sw = _matrix(sample_weight, "sample_weight")
        if sw.shape != (M,):
            raise ValueError(f"sample_weight must have shape ({M},), got {sw.shape}")
        if (sw < 0).any():
            raise ValueError("sample_weight must be >= 0")
        if not (sw > 0).any():
            raise ValueError("sample_weight must contain at least one non-zero weight")
    S = float(sw.sum())
    A = np.hstack([x, np.ones((M, 1))]) if fit_intercept else x
    lam = np.full(A.shape[1], wd / 2.0 + lam_l2)
    if fit_intercept:
        lam[-1] = wd / 2.0 if decay_bias else 0.0
    root_w = np.sqrt(sw)[:, None]
    A_s = A * root_w
    Y_s = Y * root_w
    scale = np.sqrt(U * S * lam)
    keep = scale > 0
    if keep.any():
        A_s = np.vstack([A_s, np.diag(scale)[keep]])
        Y_s = np.vstack([Y_s, np.zeros((int(keep.sum()), U))])
    theta, _, rank, _ = np.linalg.lstsq(A_s, Y_s, rcond=None)
    p = A.shape[1]
    if rank < p:
        warnings.warn(
            RankDeficientWarning(
                f"the normal equations are singular (rank {rank} < {p} unknowns per output: "
                "collinear or constant columns, or fewer samples than parameters, and no "
                "penalty to make them regular); returning the minimum-norm solution",
                rank=int(rank),
                n_params=p,
            ),
            stacklevel=2,
        )
    W = np.ascontiguousarray(theta[:N].T)
    b = np.ascontiguousarray(theta[N]) if fit_intercept else np.zeros(U)
    if single:
        return W[0].copy(), np.float64(b[0])
    return W, b
