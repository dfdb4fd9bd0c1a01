"""``LinearRegressor``: a scikit-learn estimator that trains a linear model by mini-batch SGD.

The whole training run is one call into the compiled kernel (:func:`linsgd.kernels.train`);
this module validates the inputs, builds the row orders, keeps the optimizer state between
calls and turns the kernel's per-step losses into a per-epoch history.
"""

from __future__ import annotations

import copy
import math
import numbers
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from . import kernels
from ._backends import get_backend
from ._shuffle import TorchDataLoaderOrder
from ._torch_interop import is_torch_tensor
from .exceptions import DivergenceError

__all__ = ["LinearRegressor"]

_SOLVERS = ("sgd", "closed_form")


# ----------------------------------------------------------------------------- validation helpers


def _is_bool(v: Any) -> bool:
    return isinstance(v, (bool, np.bool_))


def _check_real(
    value: Any, name: str, *, minimum: float | None = None, allow_none: bool = False
) -> float | None:
    if value is None and allow_none:
        return None
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


def _check_int(value: Any, name: str, *, minimum: int) -> int:
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    v = int(value)
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


def _check_bool(value: Any, name: str) -> bool:
    if not _is_bool(value):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


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


def _as_array(a: Any, name: str) -> np.ndarray:
    """Turn ``a`` into a numeric ndarray (no dtype change yet), with errors naming ``name``."""
    if a is None:
        raise TypeError(f"{name} must be an array, got None")
    if sp.issparse(a):
        raise TypeError(f"{name} is a sparse matrix; linsgd needs a dense array")
    if is_torch_tensor(a):
        a = a.detach().cpu().numpy()
    try:
        arr = np.asarray(a)
    except Exception as exc:
        raise TypeError(f"{name} must be array-like, got {type(a).__name__}") from exc
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{name} must hold real numbers, got non-numeric values ({exc})"
            ) from exc
    if arr.dtype.kind == "c":
        raise ValueError(
            f"{name} is complex: Complex data not supported, {name} must hold real numbers"
        )
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    if arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity")


def _check_X(a: Any, name: str, dt: np.dtype | None, n_features: int | None = None) -> np.ndarray:
    """Validate a 2-D feature matrix; cast to ``dt`` (None: keep float32, else float64)."""
    arr = _as_array(a, name)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (samples, features), got {arr.ndim}-D shape {arr.shape}"
            + (
                ". Reshape your data with .reshape(-1, 1) if it has a single feature"
                if arr.ndim == 1
                else ""
            )
        )
    if arr.shape[0] < 1:
        raise ValueError(
            f"{name} is empty: 0 sample(s) (shape={arr.shape}) while a minimum of 1 is required."
        )
    if arr.shape[1] < 1:
        raise ValueError(
            f"{name} has no features: 0 feature(s) (shape={arr.shape}) while a minimum of 1 "
            "is required."
        )
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features, but LinearRegressor is expecting "
            f"{n_features} features as input"
        )
    if dt is None:
        dt = np.dtype(np.float32) if arr.dtype == np.float32 else np.dtype(np.float64)
    arr = np.ascontiguousarray(arr, dtype=dt)
    _check_finite(arr, name)
    return arr


def _check_y(a: Any, name: str, dt: np.dtype, n_samples: int, xname: str) -> np.ndarray:
    """Validate targets; return them 1-D ``(M,)`` or 2-D ``(M, U)``, cast to ``dt``."""
    if a is None:
        raise ValueError(
            f"{name} is None: LinearRegressor requires y to be passed, but the target y is None"
        )
    arr = _as_array(a, name)
    if arr.ndim not in (1, 2):
        raise ValueError(
            f"{name} must be 1-D (samples,) or 2-D (samples, outputs), got shape {arr.shape}"
        )
    if arr.shape[0] != n_samples:
        raise ValueError(
            f"{name} has {arr.shape[0]} samples but {xname} has {n_samples}: they must match"
        )
    if arr.ndim == 2 and arr.shape[1] < 1:
        raise ValueError(f"{name} has no outputs: shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dt)
    _check_finite(arr, name)
    return arr


def _feature_names(X: Any) -> np.ndarray | None:
    cols = getattr(X, "columns", None)
    if cols is None or not hasattr(X, "iloc"):
        return None
    names = [str(c) for c in cols] if all(isinstance(c, str) for c in cols) else None
    return None if names is None else np.asarray(names, dtype=object)


def _train_mean(row: np.ndarray) -> float:
    """Mean of an epoch's step losses, as the seed notebooks compute it (``sum(l) / len(l)``)."""
    vals = [v for v in row.tolist() if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def _copy_state(state: dict) -> dict:
    return {
        k: (v.copy() if isinstance(v, np.ndarray) else copy.deepcopy(v)) for k, v in state.items()
    }


def _closed_form(
    X: np.ndarray,
    Y: np.ndarray,
    *,
    fit_intercept: bool,
    weight_decay: float,
    decay_bias: bool,
    l2: float,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Minimiser of the SGD objective, by least squares on ``[X, 1]`` (float64 throughout).

    Objective (``M`` samples, ``U`` outputs)::

        (1/(M*U)) * ||Y - X W^T - 1 b^T||^2 + (weight_decay/2 + l2) * ||W||^2
                                            + (weight_decay/2 if decay_bias else 0) * ||b||^2

    whose gradient is exactly the one SGD follows. Solved per output as the stacked
    least-squares problem ``[A; sqrt(M*U*lam) I] theta = [y; 0]`` with ``A = [X, 1]``, which
    gives the minimum-norm solution when the penalty is zero and ``A`` is rank deficient.
    """
    x = X.astype(np.float64)
    y = Y.astype(np.float64)
    M, N = x.shape
    U = y.shape[1]
    lam_w = weight_decay / 2.0 + l2
    lam_b = weight_decay / 2.0 if decay_bias else 0.0
    A = np.hstack([x, np.ones((M, 1))]) if fit_intercept else x
    lam = np.full(A.shape[1], lam_w)
    if fit_intercept:
        lam[-1] = lam_b
    scale = np.sqrt(M * U * lam)
    keep = scale > 0
    if keep.any():
        A = np.vstack([A, np.diag(scale)[keep]])
        y = np.vstack([y, np.zeros((int(keep.sum()), U))])
    theta, *_ = np.linalg.lstsq(A, y, rcond=None)
    W = np.ascontiguousarray(theta[:N].T)
    b = np.ascontiguousarray(theta[N]) if fit_intercept else None
    return W, b


# ----------------------------------------------------------------------------- the estimator


class LinearRegressor(RegressorMixin, BaseEstimator):
    """Linear regression trained by mini-batch SGD in compiled code, in agreement with torch.

    The training loop is the one of ``nn.Linear`` + ``nn.MSELoss()`` + ``torch.optim.SGD``
    with batches cut from the rows in order (or in a torch ``DataLoader``'s shuffled order),
    computed with torch's rounding so that the parameters agree with torch's to the last bit
    or two.

    Parameters
    ----------
    lr : float, default=0.01
        Learning rate.
    batch_size : int, default=32
        Rows per step; the last batch of an epoch may be smaller (``drop_last=False``).
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
        Shuffle the rows every epoch, in the order a torch ``DataLoader(shuffle=True,
        generator=torch.Generator().manual_seed(random_state))`` uses.
    random_state : int, numpy Generator, RandomState or None, default=None
        Seed of the shuffle; None draws a fresh seed at each :meth:`fit`.
    solver : {"sgd", "closed_form"}, default="sgd"
        ``"closed_form"`` solves for the optimum of the same penalised objective directly
        (least squares on ``[X, 1]``) instead of running SGD.
    tol : float or None, default=None
        Early stopping: stop when the monitored loss (the validation loss with ``eval_set``,
        else the epoch's mean training loss) has not improved by at least ``tol`` for
        ``n_iter_no_change`` consecutive epochs. None disables it.
    n_iter_no_change : int, default=5
        See ``tol``.
    target_loss : float or None, default=None
        Stop right after the first step whose batch loss is below this value.
    dtype : {None, "float32", "float64"}, default=None
        Parameter and arithmetic dtype. None keeps float32 data in float32 and uses float64
        for anything else; float32 input is never silently up-cast.
    backend : {None, "cpp", "numba", "cuda"}, default=None
        Kernel backend; None uses the default (``LINSGD_BACKEND`` overrides it).
    verbose : int, default=0
        With 1 or more, print ``epoch: k - MSE: train - MSE_v: valid`` per epoch.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,) or (n_outputs, n_features)
        The weights (1-D when ``y`` was 1-D), in the model dtype.
    intercept_ : scalar or ndarray of shape (n_outputs,)
        The bias (0 when ``fit_intercept=False``), in the model dtype.
    n_iter_ : int
        Epochs run (an epoch cut short by ``target_loss`` counts).
    t_ : int
        SGD steps (parameter updates) run.
    history_ : dict
        ``"train_loss"``: the mean batch loss of each epoch; ``"valid_loss"`` (with
        ``eval_set``): the validation MSE after each epoch.
    n_features_in_ : int
        Number of features seen in :meth:`fit`.
    feature_names_in_ : ndarray of str
        Column names, when ``X`` was a DataFrame with string column names.
    """

    def __init__(
        self,
        lr: float = 0.01,
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
        dtype: Any = None,
        backend: str | None = None,
        verbose: int = 0,
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
        self.dtype = dtype
        self.backend = backend
        self.verbose = verbose

    # ------------------------------------------------------------------ sklearn plumbing

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    def _validated_params(self) -> dict:
        p = {
            "lr": _check_real(self.lr, "lr", minimum=0.0),
            "batch_size": _check_int(self.batch_size, "batch_size", minimum=1),
            "epochs": _check_int(self.epochs, "epochs", minimum=1),
            "momentum": _check_real(self.momentum, "momentum", minimum=0.0),
            "dampening": _check_real(self.dampening, "dampening"),
            "nesterov": _check_bool(self.nesterov, "nesterov"),
            "maximize": _check_bool(self.maximize, "maximize"),
            "weight_decay": _check_real(self.weight_decay, "weight_decay", minimum=0.0),
            "decay_bias": _check_bool(self.decay_bias, "decay_bias"),
            "l2": _check_real(self.l2, "l2", minimum=0.0),
            "fit_intercept": _check_bool(self.fit_intercept, "fit_intercept"),
            "shuffle": _check_bool(self.shuffle, "shuffle"),
            "tol": _check_real(self.tol, "tol", minimum=0.0, allow_none=True),
            "n_iter_no_change": _check_int(self.n_iter_no_change, "n_iter_no_change", minimum=1),
            "target_loss": _check_real(self.target_loss, "target_loss", allow_none=True),
            "dtype": _check_dtype_param(self.dtype),
            "verbose": _check_int(self.verbose, "verbose", minimum=0),
        }
        if p["nesterov"] and (p["momentum"] <= 0.0 or p["dampening"] != 0.0):
            raise ValueError(
                f"nesterov=True requires momentum > 0 and dampening == 0, got "
                f"momentum={p['momentum']} and dampening={p['dampening']}"
            )
        if not isinstance(self.solver, str) or self.solver not in _SOLVERS:
            raise ValueError(f"solver must be one of {list(_SOLVERS)}, got {self.solver!r}")
        p["solver"] = self.solver
        get_backend(self.backend)  # ValueError naming the backend and what is missing
        p["backend"] = self.backend
        return p

    def _seed(self) -> int:
        rs = self.random_state
        if rs is None:
            return int(np.random.default_rng().integers(0, 2**32))
        if isinstance(rs, np.random.Generator):
            return int(rs.integers(0, 2**32))
        if isinstance(rs, np.random.RandomState):
            return int(rs.randint(0, 2**32, dtype=np.int64))
        if _is_bool(rs) or not isinstance(rs, numbers.Integral):
            raise TypeError(
                f"random_state must be None, an int, a numpy Generator or RandomState, got {rs!r}"
            )
        return int(rs)

    def _eval_set(self, eval_set: Any, n_features: int, n_outputs: int, dt: np.dtype):
        if eval_set is None:
            return None
        es = eval_set
        if isinstance(es, list) and len(es) == 1 and isinstance(es[0], (tuple, list)):
            es = es[0]
        if not isinstance(es, (tuple, list)) or len(es) != 2:
            raise TypeError("eval_set must be a pair (X_valid, y_valid)")
        Xv = _check_X(es[0], "eval_set[0] (X_valid)", dt, n_features)
        yv = _check_y(es[1], "eval_set[1] (y_valid)", dt, Xv.shape[0], "eval_set[0] (X_valid)")
        Yv = yv.reshape(len(yv), -1)
        if Yv.shape[1] != n_outputs:
            raise ValueError(
                f"eval_set[1] (y_valid) has {Yv.shape[1]} outputs, but y has {n_outputs}"
            )
        return Xv, np.ascontiguousarray(Yv)

    # ------------------------------------------------------------------ parameters in kernel layout

    def _params_from_attrs(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Copies of ``coef_``/``intercept_`` in kernel layout: W (U, N), b (U,) or None."""
        coef = np.asarray(self.coef_)
        dt = coef.dtype if coef.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        W = np.array(np.atleast_2d(coef), dtype=dt, order="C", copy=True)
        if not self._fitted_with_intercept():
            return W, None
        b = np.array(np.atleast_1d(self.intercept_), dtype=dt, order="C", copy=True).reshape(-1)
        if b.shape != (W.shape[0],):
            b = np.broadcast_to(b, (W.shape[0],)).copy()
        return W, b

    def _fitted_with_intercept(self) -> bool:
        return getattr(self, "_has_intercept", bool(self.fit_intercept))

    def _set_params_attrs(self, W: np.ndarray, b: np.ndarray | None, single: bool) -> None:
        dt = W.dtype
        if single:
            self.coef_ = W[0].copy()
            self.intercept_ = dt.type(0.0) if b is None else dt.type(b[0])
        else:
            self.coef_ = W.copy()
            self.intercept_ = np.zeros(W.shape[0], dtype=dt) if b is None else b.copy()
        self._has_intercept = b is not None

    def _initial_params(self, coef_init, intercept_init, N, U, single, dt, fit_intercept):
        if coef_init is None:
            W = np.zeros((U, N), dtype=dt)
        else:
            c = _as_array(coef_init, "coef_init")
            if c.shape not in ((N,), (U, N)) or (c.ndim == 1 and U != 1):
                want = f"({N},) or (1, {N})" if U == 1 else f"({U}, {N})"
                raise ValueError(f"coef_init must have shape {want}, got {c.shape}")
            W = np.array(c.reshape(U, N), dtype=dt, order="C", copy=True)
            _check_finite(W, "coef_init")
        if not fit_intercept:
            if intercept_init is not None and np.any(np.asarray(intercept_init) != 0):
                raise ValueError("intercept_init must be None when fit_intercept=False")
            return W, None
        if intercept_init is None:
            b = np.zeros(U, dtype=dt)
        else:
            c = _as_array(intercept_init, "intercept_init")
            if c.size != U or c.ndim > 1:
                want = "a scalar or shape (1,)" if U == 1 else f"shape ({U},)"
                raise ValueError(f"intercept_init must be {want}, got shape {c.shape}")
            b = np.array(c.reshape(U), dtype=dt, order="C", copy=True)
            _check_finite(b, "intercept_init")
        return W, b

    # ------------------------------------------------------------------ training

    def _run(
        self,
        p: dict,
        X: np.ndarray,
        Y: np.ndarray,
        W: np.ndarray,
        b: np.ndarray | None,
        state: dict,
        order_gen: TorchDataLoaderOrder | None,
        ev: tuple[np.ndarray, np.ndarray] | None,
        n_epochs: int,
        first_epoch: int,
        early_stopping: bool,
        target_loss: float | None,
    ) -> dict:
        """Train ``W``/``b``/``state``/``order_gen`` in place; return what happened.

        One kernel call for all epochs, or one per epoch when early stopping (``tol``) is on.
        Raises DivergenceError / KeyboardInterrupt without touching the estimator.
        """
        M = X.shape[0]
        chunk = 1 if early_stopping else n_epochs
        train_hist: list[float] = []
        valid_hist: list[float] = []
        steps_total = 0
        best = math.inf
        no_improvement = 0
        stop = False
        done = 0
        while done < n_epochs and not stop:
            E = min(chunk, n_epochs - done)
            orders = None
            if order_gen is not None:
                saved = order_gen.get_state()
                orders = order_gen.orders(M, E)
            res = kernels.train(
                X, Y, W, b,
                batch_size=p["batch_size"], epochs=E, lr=p["lr"], orders=orders,
                weight_decay=p["weight_decay"], decay_bias=p["decay_bias"], l2=p["l2"],
                momentum=p["momentum"], dampening=p["dampening"], nesterov=p["nesterov"],
                maximize=p["maximize"], state=state, eval_set=ev, target_loss=target_loss,
                check_finite=False, backend=p["backend"],
            )  # fmt: skip
            S = res.losses.shape[1]
            if res.status == "diverged":
                # a non-finite loss stops before its step is applied (W, b stay finite); a
                # non-finite parameter is found right after the step that produced it
                k = res.steps
                if not (np.isfinite(W).all() and (b is None or np.isfinite(b).all())):
                    k = max(k - 1, 0)
                e, s = divmod(k, S)
                e += first_epoch + done
                raise DivergenceError(
                    f"training diverged at epoch {e}, step {s} (0-based; step {steps_total + k} "
                    f"of this call): the loss or the parameters became NaN or infinite. "
                    f"Lower lr (now {p['lr']}). The model was left unchanged.",
                    epoch=e,
                    step=s,
                )
            if res.status == "interrupted":
                raise KeyboardInterrupt("linsgd training interrupted; the model was left unchanged")
            ran = res.epochs
            partial = res.status == "target_loss" and res.steps > ran * S
            if partial:
                ran += 1
            if order_gen is not None and res.status != "completed":
                # replay the generator as torch would: complete epochs, then a broken-off one
                order_gen.set_state(saved)
                order_gen.orders(M, res.epochs)
                if partial:
                    order_gen.next_epoch(M, complete=False)
            for e in range(ran):
                train_hist.append(_train_mean(res.losses[e]))
                if ev is not None:
                    v = float(res.valid_losses[e])
                    if math.isnan(v):  # the epoch was cut short: evaluate where it stopped
                        v = kernels.loss(ev[0], ev[1], W, b, backend=p["backend"])
                    valid_hist.append(v)
            steps_total += res.steps
            done += ran
            if res.status != "completed":
                stop = True
            elif early_stopping:
                crit = valid_hist[-1] if ev is not None else train_hist[-1]
                if crit > best - p["tol"]:
                    no_improvement += 1
                else:
                    no_improvement = 0
                best = min(best, crit)
                if no_improvement >= p["n_iter_no_change"]:
                    stop = True
        if p["verbose"]:
            for i, tl in enumerate(train_hist):
                line = f"epoch: {first_epoch + i} - MSE: {round(tl, 4)}"
                if ev is not None:
                    line += f" - MSE_v: {round(valid_hist[i], 4)}"
                print(line, flush=True)
        return {
            "train_loss": train_hist,
            "valid_loss": valid_hist if ev is not None else None,
            "steps": steps_total,
            "epochs": done,
        }

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        eval_set: tuple[Any, Any] | None = None,
        coef_init: Any = None,
        intercept_init: Any = None,
    ) -> LinearRegressor:
        """Train the model from scratch (zeros, or the given initial parameters).

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Training data (numpy, DataFrame, CPU torch tensor, ...).
        y : array_like of shape (n_samples,) or (n_samples, n_outputs)
            Targets. 1-D gives a single-output model with 1-D ``coef_``.
        eval_set : tuple (X_valid, y_valid), optional
            Validation data whose MSE is recorded after every epoch (``history_["valid_loss"]``)
            and monitored by ``tol``.
        coef_init : array_like of shape (n_features,) or (n_outputs, n_features), optional
            Initial weights; zeros when None.
        intercept_init : scalar or array_like of shape (n_outputs,), optional
            Initial bias; zeros when None.

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
        """
        p = self._validated_params()
        X_arr = _check_X(X, "X", p["dtype"])
        dt = X_arr.dtype
        y_arr = _check_y(y, "y", dt, X_arr.shape[0], "X")
        single = y_arr.ndim == 1
        Y = np.ascontiguousarray(y_arr.reshape(len(y_arr), -1))
        N = X_arr.shape[1]
        U = Y.shape[1]
        ev = self._eval_set(eval_set, N, U, dt)
        W, b = self._initial_params(coef_init, intercept_init, N, U, single, dt, p["fit_intercept"])
        state: dict = {}
        order_gen = None
        if p["solver"] == "closed_form":
            Wc, bc = _closed_form(
                X_arr, Y, fit_intercept=p["fit_intercept"], weight_decay=p["weight_decay"],
                decay_bias=p["decay_bias"], l2=p["l2"],
            )  # fmt: skip
            W = Wc.astype(dt)
            b = None if bc is None else bc.astype(dt)
            run = {
                "train_loss": [],
                "valid_loss": None if ev is None else [],
                "steps": 0,
                "epochs": 0,
            }
        else:
            if p["shuffle"]:
                order_gen = TorchDataLoaderOrder(self._seed())
            run = self._run(
                p, X_arr, Y, W, b, state, order_gen, ev, p["epochs"], 0,
                early_stopping=p["tol"] is not None, target_loss=p["target_loss"],
            )  # fmt: skip
        # success: commit everything at once
        self._set_params_attrs(W, b, single)
        self.n_features_in_ = N
        names = _feature_names(X)
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.n_iter_ = run["epochs"]
        self.t_ = run["steps"]
        self.history_ = {"train_loss": list(run["train_loss"])}
        if run["valid_loss"] is not None:
            self.history_["valid_loss"] = list(run["valid_loss"])
        self._optimizer_state = state
        self._order_state = None if order_gen is None else order_gen.get_state()
        return self

    def partial_fit(
        self, X: Any, y: Any, *, eval_set: tuple[Any, Any] | None = None
    ) -> LinearRegressor:
        """Run one more epoch, continuing the optimizer state (momentum buffers, shuffle stream).

        On an unfitted estimator the first call starts from zeros. ``partial_fit`` called ``k``
        times gives bit for bit the same model, ``n_iter_``, ``t_`` and ``history_`` as
        ``fit(X, y)`` with ``epochs=k``. ``tol`` and ``target_loss`` are not used here.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Training data.
        y : array_like of shape (n_samples,) or (n_samples, n_outputs)
            Targets, with as many outputs as the model has.
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
        if not hasattr(self, "coef_"):
            return self._first_partial_fit(X, y, eval_set)
        p = self._validated_params()
        W, b = self._params_from_attrs()
        dt = W.dtype
        U, N = W.shape
        single = np.ndim(self.coef_) == 1
        X_arr = _check_X(X, "X", dt, N)
        y_arr = _check_y(y, "y", dt, X_arr.shape[0], "X")
        Y = np.ascontiguousarray(y_arr.reshape(len(y_arr), -1))
        if Y.shape[1] != U:
            raise ValueError(f"y has {Y.shape[1]} outputs, but the model has {U}")
        ev = self._eval_set(eval_set, N, U, dt)
        state = _copy_state(getattr(self, "_optimizer_state", {}) or {})
        order_gen = None
        if p["shuffle"]:
            saved = getattr(self, "_order_state", None)
            order_gen = TorchDataLoaderOrder(0 if saved is not None else self._seed())
            if saved is not None:
                order_gen.set_state(copy.deepcopy(saved))
        first = int(getattr(self, "n_iter_", 0))
        run = self._run(
            p, X_arr, Y, W, b, state, order_gen, ev, 1, first,
            early_stopping=False, target_loss=None,
        )  # fmt: skip
        self._set_params_attrs(W, b, single)
        self.n_iter_ = first + run["epochs"]
        self.t_ = int(getattr(self, "t_", 0)) + run["steps"]
        hist = getattr(self, "history_", None) or {"train_loss": []}
        hist = {k: list(v) for k, v in hist.items()}
        n_before = len(hist["train_loss"])
        hist["train_loss"].extend(run["train_loss"])
        if run["valid_loss"] is not None:
            hist.setdefault("valid_loss", [math.nan] * n_before).extend(run["valid_loss"])
        elif "valid_loss" in hist:
            hist["valid_loss"].extend([math.nan] * run["epochs"])
        self.history_ = hist
        self._optimizer_state = state
        self._order_state = None if order_gen is None else order_gen.get_state()
        return self

    def _first_partial_fit(self, X: Any, y: Any, eval_set: Any) -> LinearRegressor:
        params = self.get_params()
        try:
            self.set_params(epochs=1, tol=None, target_loss=None, solver="sgd")
            self.fit(X, y, eval_set=eval_set)
        finally:
            self.set_params(**{k: params[k] for k in ("epochs", "tol", "target_loss", "solver")})
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
        W, b = self._params_from_attrs()
        names = getattr(self, "feature_names_in_", None)
        given = _feature_names(X)
        if names is not None and given is not None and list(given) != list(names):
            raise ValueError(
                f"X has feature names {list(given)}, but the model was fitted with {list(names)}"
            )
        X_arr = _check_X(X, "X", W.dtype, W.shape[1])
        P = X_arr @ W.T
        if b is not None:
            P += b
        return P[:, 0] if np.ndim(self.coef_) == 1 else P

    # ------------------------------------------------------------------ torch interop

    @classmethod
    def from_torch(cls, linear: Any, optimizer: Any = None, **params: Any) -> LinearRegressor:
        """Build a fitted-state estimator holding a torch layer's parameters.

        Parameters
        ----------
        linear : torch.nn.Linear
            The layer; its weight and bias are copied (dtype kept: float32 or float64).
        optimizer : torch.optim.SGD, optional
            Its ``lr``, ``momentum``, ``dampening``, ``weight_decay``, ``nesterov`` and
            ``maximize`` become the estimator's, and its momentum buffers (when it has taken
            steps) become the optimizer state that :meth:`partial_fit` continues from.
        **params
            Further estimator parameters; they override the values read from the optimizer.
            ``dtype`` defaults to the layer's dtype, ``fit_intercept`` to whether it has a bias.

        Returns
        -------
        LinearRegressor
            An estimator that predicts like the layer; ``coef_`` is 1-D when the layer has
            one output.
        """
        from ._torch_interop import linear_to_arrays, sgd_settings

        W, b = linear_to_arrays(linear)
        kw: dict[str, Any] = {"dtype": str(W.dtype), "fit_intercept": b is not None}
        state: dict = {}
        if optimizer is not None:
            hp, state = sgd_settings(linear, optimizer)
            kw.update(hp)
        kw.update(params)
        est = cls(**kw)
        est._set_params_attrs(W, b, single=W.shape[0] == 1)
        est.n_features_in_ = W.shape[1]
        est.n_iter_ = 0
        est.t_ = 0
        est.history_ = {"train_loss": []}
        est._optimizer_state = state
        est._order_state = None
        return est

    def to_torch(self) -> Any:
        """Return a ``torch.nn.Linear`` holding the fitted parameters (dtype kept).

        Returns
        -------
        torch.nn.Linear
            ``nn.Linear(n_features, n_outputs, bias=fit_intercept)`` on the CPU whose weight is
            ``coef_`` (as a ``(n_outputs, n_features)`` matrix) and whose bias is ``intercept_``.
        """
        from ._torch_interop import make_linear

        check_is_fitted(self, "coef_")
        W, b = self._params_from_attrs()
        return make_linear(W, b)
