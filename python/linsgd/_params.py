"""The estimator's hyper-parameters: checked once per fit, and what follows from them.

``validated_params`` checks the constructor parameters of a ``LinearRegressor`` (and keeps the
result while the estimator holds the very same parameter objects, so that repeated fits skip
the checks); the rest turns them into what a run needs: per-epoch learning rates, a seed, the
rows of an epoch, the ``lr="auto"`` step size.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

import numpy as np

from . import _checks as ck
from ._sparse import is_sparse, row_sq_norms
from .kernels import backend_name
from .schedules import LRSchedule

__all__ = ["auto_lr", "learning_rates", "rows_per_epoch", "seed_of", "validated_params"]

_SOLVERS = ("sgd", "closed_form")
#: the hyper-parameters the kernels take as they are
_HYPER = ("weight_decay", "decay_bias", "l2", "momentum", "dampening", "nesterov", "maximize")
_INITS = ("zeros", "torch")


def _check_dtype_param(dtype: Any) -> np.dtype | None:
    if dtype is None:
        return None
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be None, 'float32' or 'float64', got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be None, 'float32' or 'float64', got {dtype!r}")
    return dt


#: The parameters ``validated_params`` reads, as one tuple.
_param_values = operator.attrgetter(
    "lr", "batch_size", "epochs", "momentum", "dampening", "nesterov", "maximize", "weight_decay",
    "decay_bias", "l2", "fit_intercept", "shuffle", "tol", "n_iter_no_change", "target_loss",
    "drop_last", "dtype", "verbose", "solver", "init", "backend", "n_threads", "early_stopping",
    "validation_fraction", "warm_start",
)  # fmt: skip

#: The last few successful checks, ``(raw values, result)``: a fresh estimator built with the
#: very same parameter objects (the same call site, defaults, a ``clone``) skips the checks too.
_RECENT: list[tuple[tuple, dict]] = []
_RECENT_SIZE = 8


def _check_lr(lr: Any) -> Any:
    if type(lr) is float and math.isfinite(lr) and lr >= 0.0:
        return lr
    if isinstance(lr, str):
        if lr != "auto":
            raise ValueError(
                f"lr must be a number >= 0, 'auto', a schedule or a callable, got {lr!r}"
            )
        return lr
    if isinstance(lr, LRSchedule) or (callable(lr) and not isinstance(lr, numbers.Real)):
        return lr
    if ck.is_bool(lr) or not isinstance(lr, numbers.Real):
        raise TypeError(
            "lr must be a number >= 0, 'auto', a linsgd.schedules schedule or a callable "
            f"epoch -> lr, got {type(lr).__name__} {lr!r}"
        )
    return ck.real(lr, "lr", minimum=0.0)


def _is_chunks(shuffle: Any) -> bool:
    """``shuffle='chunks'``: chunk sources (:mod:`linsgd.io`) shuffle chunk by chunk."""
    if isinstance(shuffle, str) and shuffle != "chunks":
        raise ValueError(f"shuffle must be True, False or 'chunks', got {shuffle!r}")
    return isinstance(shuffle, str)


def _check_fraction(value: Any) -> float:
    v = ck.real(value, "validation_fraction")
    if v is None or not 0.0 < v < 1.0:  # (never None: real() refuses it here)
        raise ValueError(f"validation_fraction must be in the open interval (0, 1), got {v}")
    return v


def validated_params(est: Any) -> dict:
    """The constructor parameters, checked, as a dict (a new one: callers add to it).

    A successful fit keeps the result (``p["checked"]``) with the parameter objects it came
    from, and it is given again while the estimator holds the very same objects
    (``set_params`` or an assignment replaces them; the ones checked here are immutable, or
    checked for their type only), so repeated fits skip the checks; so do fits of a fresh
    estimator built from the same objects as one of the last few checked (:data:`_RECENT`).
    The backend is looked up every time (``LINSGD_BACKEND`` may change); ``p["backend"]``
    is its name.
    """
    raw = _param_values(est)
    kept = est.__dict__.get("_checked_params")
    if kept is None or not all(map(operator.is_, kept[0], raw)):
        kept = next((k for k in _RECENT if all(map(operator.is_, k[0], raw))), None)
    if kept is not None:
        p = dict(kept[1])
        p["backend"] = backend_name(est.backend)
        p["checked"] = kept
        return p
    p = {
        "lr": _check_lr(est.lr),
        "batch_size": ck.integer(est.batch_size, "batch_size", minimum=1),
        "epochs": ck.integer(est.epochs, "epochs", minimum=1),
        "momentum": ck.real(est.momentum, "momentum", minimum=0.0),
        "dampening": ck.real(est.dampening, "dampening"),
        "nesterov": ck.flag(est.nesterov, "nesterov"),
        "maximize": ck.flag(est.maximize, "maximize"),
        "weight_decay": ck.real(est.weight_decay, "weight_decay", minimum=0.0),
        "decay_bias": ck.flag(est.decay_bias, "decay_bias"),
        "l2": ck.real(est.l2, "l2", minimum=0.0),
        "fit_intercept": ck.flag(est.fit_intercept, "fit_intercept"),
        "shuffle": "chunks" if _is_chunks(est.shuffle) else ck.flag(est.shuffle, "shuffle"),
        "tol": ck.real(est.tol, "tol", minimum=0.0, allow_none=True),
        "n_iter_no_change": ck.integer(est.n_iter_no_change, "n_iter_no_change", minimum=1),
        "target_loss": ck.real(est.target_loss, "target_loss", allow_none=True),
        "drop_last": ck.flag(est.drop_last, "drop_last"),
        "dtype": _check_dtype_param(est.dtype),
        "verbose": ck.integer(est.verbose, "verbose", minimum=0),
        "early_stopping": ck.flag(est.early_stopping, "early_stopping"),
        "validation_fraction": _check_fraction(est.validation_fraction),
        "warm_start": ck.flag(est.warm_start, "warm_start"),
    }
    ck.nesterov_rule(p["momentum"], p["dampening"], p["nesterov"])
    if not isinstance(est.solver, str) or est.solver not in _SOLVERS:
        raise ValueError(f"solver must be one of {list(_SOLVERS)}, got {est.solver!r}")
    p["solver"] = est.solver
    if not isinstance(est.init, str) or est.init not in _INITS:
        raise ValueError(f"init must be one of {list(_INITS)}, got {est.init!r}")
    p["init"] = est.init
    backend = backend_name(est.backend)  # ValueError naming the backend and what is missing
    p["backend"] = est.backend  # kept as given: LINSGD_BACKEND may change between fits
    p["n_threads"] = ck.thread_count(est.n_threads)
    # one learning rate for every epoch: a number, or "auto" (a number once resolved)
    p["constant_lr"] = isinstance(p["lr"], (float, str))
    p["hyper"] = {k: p[k] for k in _HYPER}
    p["checked"] = (raw, dict(p))
    _RECENT.insert(0, p["checked"])
    del _RECENT[_RECENT_SIZE:]
    p["backend"] = backend  # this fit's, by name
    return p


def seed_of(random_state: Any) -> int:
    """The seed of a run: ``random_state`` itself, or one drawn from it (fresh when None)."""
    rs = random_state
    if rs is None:
        return int(np.random.default_rng().integers(0, 2**32))
    if isinstance(rs, np.random.Generator):
        return int(rs.integers(0, 2**32))
    if isinstance(rs, np.random.RandomState):
        return int(rs.randint(0, 2**32, dtype=np.int64))
    if ck.is_bool(rs) or not isinstance(rs, numbers.Integral):
        raise TypeError(
            f"random_state must be None, an int, a numpy Generator or RandomState, got {rs!r}"
        )
    return int(rs)  # only its low 32 bits matter, as in torch's manual_seed


def rows_per_epoch(p: dict, n_samples: int) -> int:
    bs = p["batch_size"]
    if not p["drop_last"]:
        return n_samples
    rows = n_samples - n_samples % bs
    if rows == 0:
        raise ValueError(
            f"drop_last=True with batch_size={bs} > n_samples={n_samples} leaves no batch: "
            "lower batch_size or set drop_last=False"
        )
    return rows


def learning_rates(p: dict, first: int, count: int) -> list[float]:
    """The learning rates of epochs ``first .. first + count - 1`` (Python floats)."""
    lr = p["lr"]
    if isinstance(lr, float):
        return [lr] * count
    if isinstance(lr, str):  # "auto", resolved from the data before training
        return [float(p["auto_lr"])] * count
    if isinstance(lr, LRSchedule):
        values = lr.lrs(first + count)[first:]
    else:
        values = [lr(e) for e in range(first, first + count)]
    out = []
    for e, v in zip(range(first, first + count), values):
        if ck.is_bool(v) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)) or v < 0:
            raise ValueError(f"lr for epoch {e} must be a finite number >= 0, got {v!r}")
        out.append(float(v))
    return out


def auto_lr(
    X: np.ndarray,
    n_outputs: int,
    *,
    fit_intercept: bool = True,
    weight_decay: float = 0.0,
    l2: float = 0.0,
    sample_weight: np.ndarray | None = None,
) -> float:
    """The step size ``lr="auto"`` uses: one that no mini-batch can make diverge.

    Every batch's MSE has the Hessian ``(2 / (U * sum(w))) * sum_i w_i x~_i x~_i^T`` per output
    (``x~ = [x, 1]`` with a bias), whose largest eigenvalue is at most
    ``L = 2 * max_i ||x~_i||^2 / U`` over the rows with a non-zero weight; the penalties add
    ``weight_decay + 2 * l2``. ``lr = 1 / L_total`` keeps every step's contraction factor in
    ``[0, 1)``, whatever the batch (scikit-learn's SAG picks its step size the same way).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Training data.
    n_outputs : int
        ``U``.
    fit_intercept : bool, default=True
        Whether the model has a bias (adds 1 to every squared row norm).
    weight_decay, l2 : float, default=0
        The penalties.
    sample_weight : ndarray of shape (n_samples,), optional
        Rows with weight 0 are left out of the maximum.

    Returns
    -------
    float
        The learning rate.
    """
    if is_sparse(X):
        sq = row_sq_norms(X)
        if sample_weight is not None:
            sq = sq[np.asarray(sample_weight) > 0]
    else:
        x = np.asarray(X, dtype=np.float64)
        if sample_weight is not None:
            x = x[np.asarray(sample_weight) > 0]
        sq = np.einsum("ij,ij->i", x, x) if x.shape[1] else np.zeros(x.shape[0])
    max_sq = float(sq.max()) + (1.0 if fit_intercept else 0.0)
    lipschitz = 2.0 * max_sq / n_outputs + weight_decay + 2.0 * l2
    return 1.0 / lipschitz if lipschitz > 0 else 1.0
