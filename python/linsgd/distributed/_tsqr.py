"""The exact optimum on a group of processes, by TSQR: :func:`closed_form`.

Each rank QR-factors its block of the weighted least-squares problem ``[sqrt(w) A | sqrt(w)
Y]`` (``A = [X, 1]``), the ranks gather the small R factors in one collective and every rank
factors their stack again: the R of the whole problem, without the condition number ever being
squared. The penalty rows are appended to that R and the stacked system is solved as
:func:`linsgd.closed_form` solves the whole one (SVD, minimum norm, the same rank cut-off).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .._closed_form import RankDeficientWarning, _matrix, _penalty
from ._args import DistributedError
from ._comm import as_communicator

__all__ = ["closed_form"]


def _block(X: Any, y: Any, sample_weight: Any, fit_intercept: bool) -> tuple:
    """This rank's weighted block ``[sqrt(w) A | sqrt(w) Y]``, its weight sum and row count."""
    x = _matrix(X, "X")
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"X must be a 2-D array (samples, features), got {x.shape}")
    yy = _matrix(y, "y")
    if yy.ndim not in (1, 2) or yy.shape[0] != x.shape[0]:
        raise ValueError(
            f"y must have shape ({x.shape[0]},) or ({x.shape[0]}, n_outputs), got {yy.shape}"
        )
    m = x.shape[0]
    Y = yy.reshape(m, 1 if yy.ndim == 1 else yy.shape[1])
    if sample_weight is None:
        sw = np.ones(m)
    else:
        sw = _matrix(sample_weight, "sample_weight")
        if sw.shape != (m,):
            raise ValueError(f"sample_weight must have shape ({m},), got {sw.shape}")
        if (sw < 0).any():
            raise ValueError("sample_weight must be >= 0")
    A = np.hstack([x, np.ones((m, 1))]) if fit_intercept else x
    root = np.sqrt(sw)[:, None]
    return np.hstack([A * root, Y * root]), float(sw.sum()), m, yy.ndim == 1


def closed_form(
    X: Any,
    y: Any,
    *,
    comm: Any,
    weight_decay: float = 0.0,
    decay_bias: bool = True,
    l2: float = 0.0,
    fit_intercept: bool = True,
    sample_weight: Any = None,
) -> tuple[np.ndarray, np.floating | np.ndarray]:
    """:func:`linsgd.closed_form` of the rows of every rank together; every rank calls it.

    Parameters
    ----------
    X : array_like of shape (n_samples_of_this_rank, n_features)
        This rank's rows (any number, none included).
    y : array_like of shape (n_samples_of_this_rank,) or (n_samples_of_this_rank, n_outputs)
        Their targets (1-D or 2-D alike on every rank).
    comm : Communicator, "torch", torch.distributed.ProcessGroup or mpi4py.MPI.Comm
        The group (see :func:`linsgd.distributed.as_communicator`).
    weight_decay : float, default=0.0
        Coupled weight decay, as in :func:`linsgd.closed_form`; the same on every rank
        (checked).
    decay_bias : bool, default=True
        Whether ``weight_decay`` also penalises the bias, as in :func:`linsgd.closed_form`;
        the same on every rank (checked).
    l2 : float, default=0.0
        Keras's ``L2(l2)`` kernel penalty, as in :func:`linsgd.closed_form`; the same on
        every rank (checked).
    fit_intercept : bool, default=True
        Whether the model has a bias; the same on every rank (checked).
    sample_weight : array_like of shape (n_samples_of_this_rank,), optional
        This rank's row weights.

    Returns
    -------
    coef : ndarray of shape (n_features,) or (n_outputs, n_features)
        The weights, float64 (1-D when ``y`` is 1-D), as :func:`linsgd.closed_form` returns
        them; the same on every rank.
    intercept : float64 scalar or ndarray of shape (n_outputs,)
        The bias (0 when ``fit_intercept=False``); the same on every rank.

    Raises
    ------
    ValueError, TypeError
        On a rank with bad input (the others raise :class:`DistributedError`), and on every
        rank when the ranks disagree on the settings, the features or the outputs.
    DistributedError
        On every other rank, when one rank refused its arguments.

    Warns
    -----
    RankDeficientWarning
        On every rank, when the whole system is singular (the minimum-norm optimum is
        returned).
    """
    c = as_communicator(comm)
    try:
        wd = _penalty(weight_decay, "weight_decay")
        lam_l2 = _penalty(l2, "l2")
        for value, name in ((decay_bias, "decay_bias"), (fit_intercept, "fit_intercept")):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
        C, S, m, single = _block(X, y, sample_weight, bool(fit_intercept))
        header = [1.0, C.shape[1], C.shape[1] - np.shape(X)[1], wd, lam_l2, decay_bias, single,
                  fit_intercept]  # fmt: skip
        error = None
    except (TypeError, ValueError) as exc:
        header, error = [0.0] * 8, exc
    heads = c.allgather(np.array(header, dtype=np.float64))
    if error is not None:
        raise error
    failed = [r for r in range(c.world_size) if heads[r, 0] != 1.0]
    if failed:
        raise DistributedError(f"rank {failed[0]} refused its arguments", failed)
    names = ["", "the number of features and outputs", "the number of outputs", "weight_decay",
             "l2", "decay_bias", "whether y is 1-D", "fit_intercept"]  # fmt: skip
    for k in range(1, heads.shape[1]):
        if not np.all(heads[:, k] == heads[0, k]):
            raise ValueError(f"the ranks were given different {names[k]}")
    width = C.shape[1]
    R = np.zeros((width, width))
    if m:
        r = np.linalg.qr(C, mode="r")
        R[: r.shape[0]] = r
    packed = np.concatenate([R.ravel(), [S, float(m)]])
    everyone = c.allgather(packed)  # the one collective of the solve
    S_total = float(sum(everyone[:, -2]))
    rows_total = int(sum(everyone[:, -1]))
    if not S_total > 0:
        raise ValueError("sample_weight must contain at least one non-zero weight")
    stack = everyone[:, : width * width].reshape(-1, width)
    R = np.linalg.qr(stack, mode="r")
    U = int(heads[0, 2]) - (1 if fit_intercept else 0)
    p = width - U
    N = p - (1 if fit_intercept else 0)
    lam = np.full(p, wd / 2.0 + lam_l2)
    if fit_intercept:
        lam[-1] = wd / 2.0 if decay_bias else 0.0
    scale = np.sqrt(U * S_total * lam)
    keep = scale > 0
    A_s = np.vstack([R[:p, :p], np.diag(scale)[keep]])
    Y_s = np.vstack([R[:p, p:], np.zeros((int(keep.sum()), U))])
    # the cut-off lstsq(rcond=None) takes for the whole stacked problem, not for this small one
    rcond = np.finfo(np.float64).eps * max(rows_total + int(keep.sum()), p)
    theta, _, rank, _ = np.linalg.lstsq(A_s, Y_s, rcond=rcond)
    if rank < p:
        warnings.warn(
            RankDeficientWarning(
                f"the normal equations are singular (rank {rank} < {p} unknowns per output); "
                "returning the minimum-norm solution",
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
