"""``LinearRegressor.fit``/``partial_fit``: from the arguments to the fitted attributes.

One path for both methods (and for ``warm_start``): the parameters and the data are checked
(:mod:`linsgd._params`, :mod:`linsgd._validation`), the starting point is chosen (``init``,
given parameters, or the fitted state), the epochs run in :mod:`linsgd._trainer` on copies, and
only a run that succeeded is written into the estimator, every attribute at once
(:func:`commit`), so that a failed fit leaves the model as it was.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ._closed_form import closed_form
from ._params import auto_lr, learning_rates, rows_per_epoch, seed_of, validated_params
from ._shuffle import TorchDataLoaderOrder
from ._sparse import is_sparse
from ._trainer import Run, RunSettings, copy_state, run_epochs, warn_not_converged
from ._validation import (
    check_eval_set,
    check_feature_names,
    check_sample_weight,
    check_X,
    check_y,
    feature_names,
    initial_params,
    validation_split,
)

__all__ = ["commit", "fit_model"]


def fit_model(
    est: Any,
    X: Any,
    y: Any,
    sample_weight: Any,
    eval_set: Any,
    coef_init: Any,
    intercept_init: Any,
    *,
    resume: bool,
    n_epochs: int | None,
) -> Any:
    """``fit`` (``n_epochs=None``: the ``epochs`` bound, stopping rules, the closed form),
    or ``n_epochs`` more epochs, from the fitted state (``resume``) or from ``init``; on the
    group of processes of ``est.comm`` when it is set."""
    if est.comm is None:
        return _fit_model(
            est, X, y, sample_weight, eval_set, coef_init, intercept_init, resume, n_epochs,
            run_epochs, closed_form,
        )  # fmt: skip
    from .distributed._estimator import on_group

    with on_group(est) as (runner, solve):
        return _fit_model(
            est, X, y, sample_weight, eval_set, coef_init, intercept_init, resume, n_epochs,
            runner, solve,
        )  # fmt: skip


def _fit_model(
    est: Any,
    X: Any,
    y: Any,
    sample_weight: Any,
    eval_set: Any,
    coef_init: Any,
    intercept_init: Any,
    resume: bool,
    n_epochs: int | None,
    runner: Callable[..., Run],
    solve: Callable[..., tuple],
) -> Any:
    """:func:`fit_model` with the functions that run the epochs and the closed form (on a
    group of processes, :mod:`linsgd.distributed._estimator` passes its own)."""
    if type(X) is not np.ndarray:
        from ._stream import fit_source, is_stream_input  # (_stream imports this module)

        if is_stream_input(X):  # a chunk source or a dask array
            if runner is not run_epochs:
                raise ValueError(
                    "comm= trains on arrays: a chunk source (linsgd.io) or a dask array "
                    "cannot be combined with it; pass each rank's rows as arrays"
                )
            return fit_source(est, X, y, sample_weight, eval_set, coef_init, intercept_init,
                              resume=resume, n_epochs=n_epochs)  # fmt: skip
    p = validated_params(est)
    if p["shuffle"] == "chunks":
        raise ValueError("shuffle='chunks' is for chunk sources (linsgd.io); use shuffle=True")
    if y is None:
        raise ValueError(
            "LinearRegressor requires y to be passed, but the target y is None (y may be "
            "None only when X is a linsgd.io chunk source)"
        )
    full_fit = n_epochs is None
    solver = p["solver"] if full_fit else "sgd"
    # warm_start: fit starts from the fitted parameters and optimizer state
    warm = full_fit and p["warm_start"] and solver == "sgd" and "coef_" in est.__dict__
    warm = warm and coef_init is None and intercept_init is None
    if resume:
        check_feature_names(est, X)
        names = None
    else:
        names = feature_names(X)
    if resume or warm:
        W, b = est._params_from_attrs()
        if warm and (b is not None) != p["fit_intercept"]:
            raise ValueError(
                f"warm_start=True: fit_intercept={p['fit_intercept']} but the fitted model "
                f"{'has' if b is not None else 'has no'} intercept; refit with "
                "warm_start=False"
            )
        dt = W.dtype
        U, N = W.shape
        X_arr = check_X(X, "X", dt, N)
    else:
        X_arr = check_X(X, "X", p["dtype"])
        dt = X_arr.dtype
        N = X_arr.shape[1]
    y_arr = check_y(y, "y", dt, X_arr.shape[0], "X")
    Y = y_arr.reshape(len(y_arr), -1)  # C-contiguous, as y_arr
    if (resume or warm) and Y.shape[1] != U:
        raise ValueError(f"y has {Y.shape[1]} outputs, but the model has {U}")
    U = Y.shape[1]
    sw = check_sample_weight(sample_weight, X_arr.shape[0])
    ev = check_eval_set(eval_set, N, U, dt)
    tol = p["tol"] if full_fit else None
    if full_fit and p["early_stopping"] and solver == "sgd":
        if ev is not None:
            raise ValueError(
                "eval_set cannot be combined with early_stopping=True, which sets aside "
                "its own validation set: pass one or the other"
            )
        X_arr, Y, sw, ev = validation_split(
            X_arr, Y, sw, p["validation_fraction"], est.random_state, seed_of
        )
        tol = 0.0 if tol is None else tol
    R = rows_per_epoch(p, X_arr.shape[0]) if solver == "sgd" else X_arr.shape[0]
    order_gen = None
    if resume or warm:
        single = np.ndim(est.coef_) == 1 if resume else y_arr.ndim == 1
        state = copy_state(getattr(est, "_optimizer_state", {}) or {})
        if p["shuffle"]:
            saved = getattr(est, "_order_state", None)
            seed = 0 if saved is not None else seed_of(est.random_state)
            order_gen = TorchDataLoaderOrder(seed)
            if saved is not None:
                order_gen.set_state(copy.deepcopy(saved))
        # a warm fit is a new fit: lr="auto" from its data, schedules from epoch 0
        p["auto_lr"] = getattr(est, "_auto_lr", None) if resume else None
        first_epoch = int(est.n_iter_) if resume else 0
    else:
        single = y_arr.ndim == 1
        state = {}
        use_seed = solver == "sgd" and (p["shuffle"] or p["init"] == "torch")
        seed = seed_of(est.random_state) if use_seed else None
        torch_init = p["init"] == "torch" and coef_init is None and intercept_init is None
        W, b = initial_params(
            coef_init, intercept_init, N, U, dt, p["fit_intercept"],
            seed if torch_init else None,
        )  # fmt: skip
        if p["shuffle"] and solver == "sgd":
            order_gen = TorchDataLoaderOrder(seed)
        p["auto_lr"] = None
        first_epoch = 0
    if solver == "closed_form":
        if is_sparse(X_arr):
            raise TypeError("solver='closed_form' needs dense X; use solver='sgd' for sparse X")
        coef, intercept = solve(
            X_arr, Y, weight_decay=p["weight_decay"], decay_bias=p["decay_bias"],
            l2=p["l2"], fit_intercept=p["fit_intercept"], sample_weight=sw,
        )  # fmt: skip
        W = np.ascontiguousarray(coef, dtype=dt)
        b = np.ascontiguousarray(intercept, dtype=dt) if p["fit_intercept"] else None
        run = Run(valid_loss=None if ev is None else [])
    else:
        if p["lr"] == "auto" and p["auto_lr"] is None:  # kept by later partial_fit calls
            p["auto_lr"] = auto_lr(
                X_arr, U, fit_intercept=b is not None, weight_decay=p["weight_decay"],
                l2=p["l2"], sample_weight=sw,
            )  # fmt: skip
        settings = RunSettings(
            batch_size=p["batch_size"], rows_per_epoch=R,
            hyper=p["hyper"], backend=p["backend"],
            n_threads=p["n_threads"], tol=tol,
            n_iter_no_change=p["n_iter_no_change"],
            target_loss=p["target_loss"] if full_fit else None, verbose=p["verbose"],
            drop_last=p["drop_last"],
        )  # fmt: skip
        run = runner(
            settings, X_arr, Y, W, b, state, order_gen, ev, sw,
            p["epochs"] if full_fit else n_epochs, first_epoch, _lr_of(p),
        )  # fmt: skip
    commit(est, p, names, W, b, single, run, state, order_gen, resume)
    if tol is not None and solver == "sgd" and not run.stopped:
        warn_not_converged(est, p, tol)
    return est


def commit(
    est: Any,
    p: dict,
    names: np.ndarray | None,
    W: np.ndarray,
    b: np.ndarray | None,
    single: bool,
    run: Run,
    state: dict,
    order_gen: TorchDataLoaderOrder | None,
    resumed: bool,
) -> None:
    """A successful (partial) fit: every fitted attribute set here, at once (``names``: the
    feature names of a fit's data; not used when ``resumed``)."""
    est._set_params_attrs(W, b, single)
    if resumed:
        hist = {k: list(v) for k, v in est.history_.items()}
        n_before = len(hist["train_loss"])
        hist["train_loss"].extend(run.train_loss)
        if run.valid_loss is not None:
            hist.setdefault("valid_loss", [math.nan] * n_before).extend(run.valid_loss)
        elif "valid_loss" in hist:
            hist["valid_loss"].extend([math.nan] * run.epochs)
        est.n_iter_ += run.epochs
        est.t_ += run.steps
        est.lr_history_ = list(est.lr_history_) + run.lrs
    else:
        est.n_features_in_ = W.shape[1]
        if names is not None:
            est.feature_names_in_ = names
        elif "feature_names_in_" in est.__dict__:
            del est.feature_names_in_
        hist = {"train_loss": run.train_loss}
        if run.valid_loss is not None:
            hist["valid_loss"] = run.valid_loss
        est.n_iter_ = run.epochs
        est.t_ = run.steps
        est.lr_history_ = run.lrs
        est.best_epoch_ = run.best_epoch
    est.history_ = hist
    est._optimizer_state = state
    est._order_state = None if order_gen is None else order_gen.get_state()
    est._auto_lr = p["auto_lr"]
    est._checked_params = p["checked"]


def _lr_of(p: dict) -> float | Callable[[int, int], list]:
    """The trainer's learning rate: one float for every epoch, or epoch by epoch."""
    if isinstance(p["lr"], float):
        return p["lr"]
    if isinstance(p["lr"], str):  # "auto", resolved from the data before training
        return float(p["auto_lr"])
    return lambda first, count: learning_rates(p, first, count)
