"""``LinearRegressor``: a scikit-learn estimator that trains a linear model by mini-batch SGD.

The estimator owns the hyper-parameters (:mod:`linsgd._params`), the data semantics
(:mod:`linsgd._validation`), the fitted attributes (written in one place) and torch interop;
the epochs run in :mod:`linsgd._trainer`, through the public kernel API. ``fit`` and
``partial_fit`` share one path.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from ._closed_form import closed_form
from ._params import auto_lr, learning_rates, rows_per_epoch, seed_of, validated_params
from ._shuffle import TorchDataLoaderOrder
from ._torch_interop import TorchInteropMixin
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
from .schedules import LRSchedule

__all__ = ["EXPECTED_FAILED_CHECKS", "LinearRegressor", "auto_lr"]

#: scikit-learn estimator checks that mini-batch SGD cannot pass, with the reason; the test
#: suite passes it to ``check_estimator(..., expected_failed_checks=...)``. Empty: with the
#: default ``lr="auto"`` (a step size that cannot diverge) every check passes.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


def _kernel_layout(coef: Any, intercept: Any, has_intercept: bool) -> tuple:
    """Copies of fitted ``coef_``/``intercept_`` in kernel layout: W (U, N), b (U,) or None."""
    coef = np.asarray(coef)
    dt = coef.dtype if coef.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    W = np.array(np.atleast_2d(coef), dtype=dt, order="C", copy=True)
    if not has_intercept:
        return W, None
    b = np.array(np.atleast_1d(intercept), dtype=dt, order="C", copy=True).reshape(-1)
    if b.shape != (W.shape[0],):
        b = np.broadcast_to(b, (W.shape[0],)).copy()
    return W, b


class LinearRegressor(TorchInteropMixin, RegressorMixin, BaseEstimator):
    """Linear regression trained by mini-batch SGD in compiled code, in agreement with torch.

    The training loop is the one of ``nn.Linear`` + ``nn.MSELoss()`` + ``torch.optim.SGD``
    with batches cut from the rows in order (or in a torch ``DataLoader``'s shuffled order),
    computed with torch's rounding so that the parameters agree with torch's to the last bit
    or two.

    Parameters
    ----------
    lr : float, "auto", schedule or callable, default="auto"
        Learning rate. A float is used for every epoch (set it to compare with a torch run).
        ``"auto"`` computes, from the training data, a step size that no batch can make
        diverge: ``1 / (2 * max_i ||[x_i, 1]||^2 / U + weight_decay + 2 * l2)`` (see
        :func:`auto_lr`); it is computed at the first ``fit``/``partial_fit`` and kept by
        later ``partial_fit`` calls. A :mod:`linsgd.schedules` object (``StepLR``,
        ``ExponentialLR``, ``CosineAnnealingLR``, ``LambdaLR``) gives torch's scheduler
        values epoch by epoch, bit for bit; a callable ``epoch -> lr`` gives the learning
        rate of each (0-based) epoch directly.
    batch_size : int, default=32
        Rows per step; the last batch of an epoch may be smaller unless ``drop_last``.
    epochs : int, default=16
        Epochs (passes over the data) that :meth:`fit` runs, at most.
    momentum : float, default=0.0
        Momentum factor, as in ``torch.optim.SGD``.
    dampening : float, default=0.0
        Dampening for momentum, as in ``torch.optim.SGD``.
    nesterov : bool, default=False
        Nesterov momentum (requires ``momentum > 0`` and ``dampening == 0``).
    maximize : bool, default=False
        Ascend instead of descend, as in ``torch.optim.SGD``.
    weight_decay : float, default=0.0
        torch's coupled weight decay: the update direction gains ``weight_decay * p``.
    decay_bias : bool, default=True
        Whether ``weight_decay`` applies to the bias (torch decays every parameter of its group).
    l2 : float, default=0.0
        Keras's ``L2(l2)`` kernel regularizer: the loss gains ``l2 * sum(W**2)``; never the bias.
    fit_intercept : bool, default=True
        Whether the model has a bias (torch's ``bias=True``).
    shuffle : bool, default=False
        Shuffle the rows every epoch, in the order of a torch ``DataLoader(shuffle=True,
        generator=torch.Generator().manual_seed(random_state))``.
    random_state : int, numpy Generator, RandomState or None, default=None
        Seed of the shuffle and of ``init="torch"``. An int ``s`` reproduces a torch script
        that calls ``torch.manual_seed(s)`` before building ``nn.Linear`` and gives its
        DataLoader ``generator=torch.Generator().manual_seed(s)``. None draws a fresh seed at
        each :meth:`fit`; a Generator/RandomState draws one from that generator.
    solver : {"sgd", "closed_form"}, default="sgd"
        ``"closed_form"`` solves for the optimum of the same penalised objective directly
        (see :func:`linsgd.closed_form`) instead of running SGD.
    tol : float or None, default=None
        Early stopping: stop when the monitored loss (the validation loss with ``eval_set``,
        else the epoch's mean training loss) has not improved by at least ``tol`` for
        ``n_iter_no_change`` consecutive epochs. With ``eval_set`` the parameters (and the
        momentum buffers) of the epoch with the lowest validation loss are kept, see
        ``best_epoch_``. None disables it.
    n_iter_no_change : int, default=5
        See ``tol``.
    target_loss : float or None, default=None
        Stop right after the first step whose batch loss is below this value (that step is
        applied, as in the loop ``loss.backward(); opt.step(); if loss < target: break``).
    drop_last : bool, default=False
        Leave out the last ``n_samples % batch_size`` rows of every epoch, as
        ``DataLoader(drop_last=True)`` does.
    init : {"zeros", "torch"}, default="zeros"
        Initial parameters of :meth:`fit` when ``coef_init``/``intercept_init`` are not given:
        zeros, or ``nn.Linear``'s default initialisation (``U(-1/sqrt(N), 1/sqrt(N))`` for the
        weight and the bias) drawn as torch's CPU generator draws it after
        ``torch.manual_seed(random_state)``, bit for bit (see
        :func:`linsgd._torch_interop.torch_linear_init`).
    dtype : {None, "float32", "float64"}, default=None
        Parameter and arithmetic dtype. None keeps float32 data in float32 and uses float64
        for anything else; float32 input is never silently up-cast.
    backend : {None, "cpp", "numba", "cuda"}, default=None
        Kernel backend; None uses the default (``LINSGD_BACKEND`` overrides it).
    n_threads : int, default=1
        Host threads for each SGD step of the C++ backend (1 to 1024), or -1 for
        ``os.cpu_count()``. The fitted model is the same, bit for bit, for every count.
        Threads only start for steps with ``batch_size * n_features * n_outputs >= 2**14``
        (the validation loss then uses them too); smaller steps run on one thread, where a
        hand-off would cost more than it saves. So they are for large batches of wide data, and
        on a machine with few cores they may not be faster. The numba and CUDA backends ignore
        it.
    verbose : int, default=0
        1: print ``epoch: k - MSE: train - MSE_v: valid`` after every epoch, as the seed
        notebooks do. 2: a tqdm progress bar over the steps with the running loss (falls back
        to 1, with a note, when tqdm is not installed).

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,) or (n_outputs, n_features)
        The weights (1-D when ``y`` was 1-D), in the model dtype.
    intercept_ : scalar or ndarray of shape (n_outputs,)
        The bias (0 when ``fit_intercept=False``), in the model dtype.
    n_iter_ : int
        Epochs run (an epoch cut short by ``target_loss`` counts; 0 for the closed form).
    t_ : int
        SGD steps (parameter updates) run. With ``target_loss`` the stopping step is step
        number ``t_`` (1-based), i.e. the loop index ``t_ - 1`` that a torch loop
        ``for i in ...: ...; if loss < target: print(i); break`` prints.
    history_ : dict
        ``"train_loss"``: the mean batch loss of each epoch (as the seed notebooks print it);
        ``"valid_loss"`` (with ``eval_set``): the validation MSE after each epoch.
    lr_history_ : list of float
        The learning rate of each epoch run.
    best_epoch_ : int or None
        With ``tol``: the (0-based) epoch with the lowest monitored loss; with ``eval_set``
        too, the parameters are that epoch's. None without ``tol``.
    n_features_in_ : int
        Number of features seen in :meth:`fit`.
    feature_names_in_ : ndarray of str
        Column names, when ``X`` was a DataFrame with string column names.
    """

    def __init__(
        self,
        lr: float | str | LRSchedule | Callable[[int], float] = "auto",
        batch_size: int = 32,
        epochs: int = 16,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        maximize: bool = False,
        weight_decay: float = 0.0,
        decay_bias: bool = True,
        l2: float = 0.0,
        fit_intercept: bool = True,
        shuffle: bool = False,
        random_state: Any = None,
        solver: str = "sgd",
        tol: float | None = None,
        n_iter_no_change: int = 5,
        target_loss: float | None = None,
        drop_last: bool = False,
        init: str = "zeros",
        dtype: Any = None,
        backend: str | None = None,
        verbose: int = 0,
        n_threads: int = 1,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        warm_start: bool = False,
    ) -> None:
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
        self.maximize = maximize
        self.weight_decay = weight_decay
        self.decay_bias = decay_bias
        self.l2 = l2
        self.fit_intercept = fit_intercept
        self.shuffle = shuffle
        self.random_state = random_state
        self.solver = solver
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.target_loss = target_loss
        self.drop_last = drop_last
        self.init = init
        self.dtype = dtype
        self.backend = backend
        self.verbose = verbose
        self.n_threads = n_threads
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.warm_start = warm_start

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    # ------------------------------------------------------------------ fitted parameters

    def _params_from_attrs(self) -> tuple[np.ndarray, np.ndarray | None]:
        has_b = getattr(self, "_has_intercept", bool(self.fit_intercept))
        return _kernel_layout(self.coef_, self.intercept_, has_b)

    def _set_params_attrs(self, W: np.ndarray, b: np.ndarray | None, single: bool) -> None:
        dt = W.dtype
        if single:
            self.coef_ = W[0].copy()
            self.intercept_ = dt.type(0.0) if b is None else dt.type(b[0])
        else:
            self.coef_ = W.copy()
            self.intercept_ = np.zeros(W.shape[0], dtype=dt) if b is None else b.copy()
        self._has_intercept = b is not None

    def _commit(self, p, names, W, b, single, run: Run, state, order_gen, resumed: bool) -> None:
        """A successful (partial) fit: every fitted attribute set here, at once."""
        self._set_params_attrs(W, b, single)
        if resumed:
            hist = {k: list(v) for k, v in self.history_.items()}
            n_before = len(hist["train_loss"])
            hist["train_loss"].extend(run.train_loss)
            if run.valid_loss is not None:
                hist.setdefault("valid_loss", [math.nan] * n_before).extend(run.valid_loss)
            elif "valid_loss" in hist:
                hist["valid_loss"].extend([math.nan] * run.epochs)
            self.n_iter_ += run.epochs
            self.t_ += run.steps
            self.lr_history_ = list(self.lr_history_) + run.lrs
        else:
            self.n_features_in_ = W.shape[1]
            if names is not None:
                self.feature_names_in_ = names
            elif "feature_names_in_" in self.__dict__:
                del self.feature_names_in_
            hist = {"train_loss": run.train_loss}
            if run.valid_loss is not None:
                hist["valid_loss"] = run.valid_loss
            self.n_iter_ = run.epochs
            self.t_ = run.steps
            self.lr_history_ = run.lrs
            self.best_epoch_ = run.best_epoch
        self.history_ = hist
        self._optimizer_state = state
        self._order_state = None if order_gen is None else order_gen.get_state()
        self._auto_lr = p["auto_lr"]
        self._checked_params = p["checked"]

    # ------------------------------------------------------------------ training

    def fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        *,
        eval_set: tuple[Any, Any] | None = None,
        coef_init: Any = None,
        intercept_init: Any = None,
    ) -> LinearRegressor:
        """Train the model from scratch (from ``init``, or the given initial parameters).

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Training data (numpy, DataFrame, CPU torch tensor, ...).
        y : array_like of shape (n_samples,) or (n_samples, n_outputs)
            Targets. 1-D gives a single-output model with 1-D ``coef_``.
        sample_weight : array_like of shape (n_samples,), optional
            Non-negative row weights. Each batch's loss becomes the weighted mean
            ``sum(w_i * e_i**2) / (U * sum(w_i))`` over its rows (and outputs), so unit
            weights give exactly the unweighted (torch) bits, scaling all weights changes
            nothing, and in full-batch training an integer weight ``k`` equals repeating the
            row ``k`` times. A batch whose weights are all zero contributes no gradient (the
            decay and momentum terms still act).
        eval_set : tuple (X_valid, y_valid), optional
            Validation data whose MSE is recorded after every epoch (``history_["valid_loss"]``)
            and monitored by ``tol``.
        coef_init : array_like of shape (n_features,) or (n_outputs, n_features), optional
            Initial weights; from ``init`` when None.
        intercept_init : scalar or array_like of shape (n_outputs,), optional
            Initial bias; from ``init`` when None.

        Returns
        -------
        LinearRegressor
            The fitted estimator.

        Raises
        ------
        ValueError, TypeError
            On invalid data or hyper-parameters; the message names the argument.
        DivergenceError
            When the loss or the parameters become non-finite. The previously fitted
            parameters (if any) are left unchanged.

        Warns
        -----
        RankDeficientWarning
            ``solver="closed_form"`` on a singular system (the minimum-norm optimum is used).
        """
        return self._partial_fit(
            X, y, sample_weight, eval_set, coef_init, intercept_init, resume=False, n_epochs=None
        )

    def partial_fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        *,
        eval_set: tuple[Any, Any] | None = None,
    ) -> LinearRegressor:
        """Run one more epoch, continuing the optimizer state (momentum buffers, shuffle stream).

        On an unfitted estimator the first call starts from ``init``. ``partial_fit`` called
        ``k`` times gives bit for bit the same model, ``n_iter_``, ``t_`` and ``history_`` as
        ``fit(X, y)`` with ``epochs=k``; a learning-rate schedule continues at epoch
        ``n_iter_``. ``tol`` and ``target_loss`` are not used here.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Training data.
        y : array_like of shape (n_samples,) or (n_samples, n_outputs)
            Targets, with as many outputs as the model has.
        sample_weight : array_like of shape (n_samples,), optional
            Row weights, as in :meth:`fit`.
        eval_set : tuple (X_valid, y_valid), optional
            Validation data; its MSE after the epoch is appended to ``history_["valid_loss"]``
            (NaN is appended there for an epoch run without ``eval_set`` once the history has
            validation losses, so the lists keep the length ``n_iter_``).

        Returns
        -------
        LinearRegressor
            The estimator.

        Raises
        ------
        ValueError, TypeError
            On invalid data; the message names the argument.
        DivergenceError
            When the epoch diverges; the model is left as it was.
        """
        resume = hasattr(self, "coef_")
        return self._partial_fit(
            X, y, sample_weight, eval_set, None, None, resume=resume, n_epochs=1
        )

    def _partial_fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any,
        eval_set: Any,
        coef_init: Any,
        intercept_init: Any,
        *,
        resume: bool,
        n_epochs: int | None,
    ) -> LinearRegressor:
        """``fit`` (``n_epochs=None``: the ``epochs`` bound, stopping rules, the closed form),
        or ``n_epochs`` more epochs, from the fitted state (``resume``) or from ``init``."""
        p = validated_params(self)
        full_fit = n_epochs is None
        solver = p["solver"] if full_fit else "sgd"
        # warm_start: fit starts from the fitted parameters and optimizer state
        warm = full_fit and p["warm_start"] and solver == "sgd" and "coef_" in self.__dict__
        warm = warm and coef_init is None and intercept_init is None
        if resume:
            check_feature_names(self, X)
            names = None
        else:
            names = feature_names(X)
        if resume or warm:
            W, b = self._params_from_attrs()
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
                X_arr, Y, sw, p["validation_fraction"], self.random_state, seed_of
            )
            tol = 0.0 if tol is None else tol
        R = rows_per_epoch(p, X_arr.shape[0]) if solver == "sgd" else X_arr.shape[0]
        order_gen = None
        if resume or warm:
            single = np.ndim(self.coef_) == 1 if resume else y_arr.ndim == 1
            state = copy_state(getattr(self, "_optimizer_state", {}) or {})
            if p["shuffle"]:
                saved = getattr(self, "_order_state", None)
                seed = 0 if saved is not None else seed_of(self.random_state)
                order_gen = TorchDataLoaderOrder(seed)
                if saved is not None:
                    order_gen.set_state(copy.deepcopy(saved))
            # a warm fit is a new fit: lr="auto" from its data, schedules from epoch 0
            p["auto_lr"] = getattr(self, "_auto_lr", None) if resume else None
            first_epoch = int(self.n_iter_) if resume else 0
        else:
            single = y_arr.ndim == 1
            state = {}
            use_seed = solver == "sgd" and (p["shuffle"] or p["init"] == "torch")
            seed = seed_of(self.random_state) if use_seed else None
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
            coef, intercept = closed_form(
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
            run = run_epochs(
                settings, X_arr, Y, W, b, state, order_gen, ev, sw,
                p["epochs"] if full_fit else n_epochs, first_epoch, _lr_of(p),
            )  # fmt: skip
        self._commit(p, names, W, b, single, run, state, order_gen, resume)
        if tol is not None and solver == "sgd" and not run.stopped:
            warn_not_converged(self, p, tol)
        return self

    # ------------------------------------------------------------------ prediction

    def predict(self, X: Any) -> np.ndarray:
        """Predict with the linear model: ``X @ coef_.T + intercept_`` in the model dtype.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predictions (1-D for a single-output model fitted on 1-D ``y``).
        """
        check_is_fitted(self, "coef_")
        check_feature_names(self, X)
        W, b = self._params_from_attrs()
        X_arr = check_X(X, "X", W.dtype, W.shape[1])
        P = X_arr @ W.T
        if b is not None:
            P += b
        return P[:, 0] if np.ndim(self.coef_) == 1 else P


def _lr_of(p: dict) -> float | Callable[[int, int], list]:
    """The trainer's learning rate: one float for every epoch, or epoch by epoch."""
    if isinstance(p["lr"], float):
        return p["lr"]
    if isinstance(p["lr"], str):  # "auto", resolved from the data before training
        return float(p["auto_lr"])
    return lambda first, count: learning_rates(p, first, count)
