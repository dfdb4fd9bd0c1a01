"""``LinearRegressor``: a scikit-learn estimator that trains a linear model by mini-batch SGD.

The training run is one call into the compiled kernel (:func:`linsgd.kernels.train`), or one
per epoch when something has to happen between epochs (early stopping, printing, a progress
bar); this module validates the inputs, builds the row orders and the per-epoch learning
rates, keeps the optimizer state between calls and turns the kernel's per-step losses into a
per-epoch history.
"""

from __future__ import annotations

import copy
import math
import numbers
import operator
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from . import kernels
from ._backends import resolve_backend
from ._closed_form import closed_form
from ._shuffle import TorchDataLoaderOrder
from ._torch_interop import is_torch_tensor, torch_linear_init
from .exceptions import DivergenceError
from .schedules import LRSchedule

__all__ = ["EXPECTED_FAILED_CHECKS", "LinearRegressor", "auto_lr"]

_SOLVERS = ("sgd", "closed_form")
_INITS = ("zeros", "torch")
_PROGRESS_PIECES = 20  # progress-bar updates per epoch (verbose=2)
_MAX_ORDER_ENTRIES = 1 << 24  # row indices built per kernel call when shuffling

#: scikit-learn estimator checks that mini-batch SGD cannot pass, with the reason; the test
#: suite passes it to ``check_estimator(..., expected_failed_checks=...)``. Empty: with the
#: default ``lr="auto"`` (a step size that cannot diverge) every check passes.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


# ----------------------------------------------------------------------------- validation helpers


# ----------------------------------------------------------------------------- validation helpers


def _is_bool(v: Any) -> bool:
    return isinstance(v, (bool, np.bool_))


def _check_real(
    value: Any, name: str, *, minimum: float | None = None, allow_none: bool = False
) -> float | None:
    if type(value) is float and math.isfinite(value) and (minimum is None or value >= minimum):
        return value
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
    if type(value) is int and value >= minimum:
        return value
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    v = int(value)
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


def _check_bool(value: Any, name: str) -> bool:
    if value is True or value is False:
        return value
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
    """``arr`` is a float32/float64 array: one pass, no temporary (``kernels._all_finite``)."""
    if not kernels._all_finite(arr):
        raise ValueError(f"{name} contains NaN or infinity")


_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


def _ready(a: Any, dt: np.dtype | None) -> bool:
    """Whether ``a`` is already what the checks below would make of it: a C-contiguous,
    aligned numpy array of the model dtype (``dt``, or float32/float64 when None)."""
    if type(a) is not np.ndarray:
        return False
    adt = a.dtype
    if not (adt is dt if dt is not None else (adt is _F64 or adt is _F32)):
        return False
    f = a.flags
    return f.c_contiguous and f.aligned


def _check_X(a: Any, name: str, dt: np.dtype | None, n_features: int | None = None) -> np.ndarray:
    """Validate a 2-D feature matrix; cast to ``dt`` (None: keep float32, else float64)."""
    if _ready(a, dt) and a.ndim == 2 and a.shape[0] >= 1 and a.shape[1] >= 1:
        if n_features is None or a.shape[1] == n_features:
            _check_finite(a, name)
            return a
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
    if _ready(a, dt) and 1 <= a.ndim <= 2 and a.shape[0] == n_samples and a.size >= n_samples:
        _check_finite(a, name)
        return a
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
    if type(X) is np.ndarray:
        return None
    cols = getattr(X, "columns", None)
    if cols is None or not hasattr(X, "iloc"):
        return None
    names = [str(c) for c in cols] if all(isinstance(c, str) for c in cols) else None
    return None if names is None else np.asarray(names, dtype=object)


def _train_mean(row: list) -> float:
    """Mean of an epoch's step losses (a list of floats, NaN where a step did not run), as the
    seed notebooks compute it (``sum(l) / len(l)``)."""
    total = sum(row)
    if total == total:  # no NaN: the losses are >= 0, so only a NaN makes their sum NaN
        return total / len(row)
    vals = [v for v in row if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def _copy_state(state: dict) -> dict:
    return {
        k: (v.copy() if isinstance(v, np.ndarray) else copy.deepcopy(v)) for k, v in state.items()
    }


def _check_sample_weight(sample_weight: Any, n_samples: int) -> np.ndarray | None:
    """Validate ``sample_weight``: finite, >= 0, shape ``(n_samples,)``, not all zero."""
    if sample_weight is None:
        return None
    sw = _as_array(sample_weight, "sample_weight")
    if sw.ndim == 0:
        sw = np.full(n_samples, float(sw))
    if sw.shape != (n_samples,):
        raise ValueError(
            f"sample_weight must have shape ({n_samples},), one weight per row of X, got {sw.shape}"
        )
    sw = np.ascontiguousarray(sw, dtype=np.float64)
    _check_finite(sw, "sample_weight")
    if (sw < 0).any():
        raise ValueError("sample_weight must be >= 0, got negative weights")
    if not (sw > 0).any():
        raise ValueError("sample_weight must contain at least one non-zero weight: all are zero")
    return sw


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
    x = np.asarray(X, dtype=np.float64)
    if sample_weight is not None:
        x = x[np.asarray(sample_weight) > 0]
    sq = np.einsum("ij,ij->i", x, x) if x.shape[1] else np.zeros(x.shape[0])
    max_sq = float(sq.max()) + (1.0 if fit_intercept else 0.0)
    lipschitz = 2.0 * max_sq / n_outputs + weight_decay + 2.0 * l2
    return 1.0 / lipschitz if lipschitz > 0 else 1.0


def _progress_bar(total: int) -> Any:
    """A tqdm bar over ``total`` steps, or None (with a note on stderr) without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        print(
            "linsgd: verbose=2 needs tqdm (pip install tqdm), which is not installed; "
            "printing one line per epoch instead (verbose=1)",
            file=sys.stderr,
            flush=True,
        )
        return None
    return tqdm(total=total, unit="step", desc="linsgd", file=sys.stderr, dynamic_ncols=True)


# ----------------------------------------------------------------------------- the estimator

#: The parameters ``LinearRegressor._validated_params`` reads, as one tuple.
_param_values = operator.attrgetter(
    "lr", "batch_size", "epochs", "momentum", "dampening", "nesterov", "maximize", "weight_decay",
    "decay_bias", "l2", "fit_intercept", "shuffle", "tol", "n_iter_no_change", "target_loss",
    "drop_last", "dtype", "verbose", "solver", "init", "backend", "n_threads",
)  # fmt: skip


class LinearRegressor(RegressorMixin, BaseEstimator):
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

    # ------------------------------------------------------------------ sklearn plumbing

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    @staticmethod
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
        if _is_bool(lr) or not isinstance(lr, numbers.Real):
            raise TypeError(
                "lr must be a number >= 0, 'auto', a linsgd.schedules schedule or a callable "
                f"epoch -> lr, got {type(lr).__name__} {lr!r}"
            )
        return _check_real(lr, "lr", minimum=0.0)

    def _validated_params(self) -> dict:
        """The constructor parameters, checked, as a dict (a new one: callers add to it).

        A successful fit keeps the result (``p["checked"]``) with the parameter objects it came
        from, and it is given again while the estimator holds the very same objects
        (``set_params`` or an assignment replaces them; the ones checked here are immutable, or
        checked for their type only), so repeated fits skip the checks. The backend is looked
        up every time (``LINSGD_BACKEND`` may change).
        """
        raw = _param_values(self)
        kept = self.__dict__.get("_checked_params")
        if kept is not None and all(map(operator.is_, kept[0], raw)):
            resolve_backend(self.backend)
            p = dict(kept[1])
            p["checked"] = kept
            return p
        p = {
            "lr": self._check_lr(self.lr),
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
            "drop_last": _check_bool(self.drop_last, "drop_last"),
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
        if not isinstance(self.init, str) or self.init not in _INITS:
            raise ValueError(f"init must be one of {list(_INITS)}, got {self.init!r}")
        p["init"] = self.init
        resolve_backend(self.backend)  # ValueError naming the backend and what is missing
        p["backend"] = self.backend
        p["n_threads"] = kernels._n_threads(self.n_threads)
        # one learning rate for every epoch: a number, or "auto" (a number once resolved)
        p["constant_lr"] = isinstance(p["lr"], (float, str))
        # the settings of LinearRegressor._fit_common
        p["common"] = (
            p["constant_lr"] and p["solver"] == "sgd" and p["init"] == "zeros"
            and not (p["shuffle"] or p["drop_last"] or p["verbose"])
            and p["tol"] is None and p["target_loss"] is None
        )  # fmt: skip
        p["checked"] = (raw, dict(p))
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
        return int(rs)  # only its low 32 bits matter, as in torch's manual_seed

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
        return Xv, Yv  # C-contiguous, as yv

    def _rows_per_epoch(self, p: dict, n_samples: int) -> int:
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

    def _initial_params(self, coef_init, intercept_init, N, U, dt, fit_intercept, seed):
        if coef_init is None and intercept_init is None and seed is not None:
            # init="torch": nn.Linear's default initialisation after torch.manual_seed(seed)
            return torch_linear_init(N, U, seed, dt, bias=fit_intercept)
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

    # ------------------------------------------------------------------ learning rates

    def _learning_rates(self, p: dict, first: int, count: int) -> list[float]:
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
            if (
                _is_bool(v)
                or not isinstance(v, numbers.Real)
                or not math.isfinite(float(v))
                or v < 0
            ):
                raise ValueError(f"lr for epoch {e} must be a finite number >= 0, got {v!r}")
            out.append(float(v))
        return out

    # ------------------------------------------------------------------ training

    def _block(self, p, X, Y, W, b, state, orders, lrs, ev, target, sw, bar, epoch0):
        """Run ``len(lrs)`` epochs; return ``(losses (E, S), valid (E,) or None, steps, status)``.

        Without a progress bar this is one kernel call. With one, every epoch is cut into
        pieces of whole batches that run as successive kernel calls (the same steps, in the
        same order, with the same optimizer state: the same bits), and the bar advances
        after each piece.
        """
        bs = p["batch_size"]
        E = len(lrs)
        if bar is None and orders is None and sw is None:
            # the common run, in one compiled call (kernels' fast path; None if it refuses)
            lr = lrs[0] if p["constant_lr"] else np.array(lrs, dtype=np.float64)
            r = kernels._fast_run(
                X, Y, W, b, bs, E, lr, p["weight_decay"], p["decay_bias"], p["l2"],
                p["momentum"], p["dampening"], p["nesterov"], p["maximize"], state, ev, target,
                False, p["backend"], p["n_threads"],
            )  # fmt: skip
            if r is not None:
                losses, valid, steps, status = r
                return losses.reshape(E, -1), valid, steps, kernels._STATUS[status]
        common = dict(
            batch_size=bs, weight_decay=p["weight_decay"], decay_bias=p["decay_bias"],
            l2=p["l2"], momentum=p["momentum"], dampening=p["dampening"],
            nesterov=p["nesterov"], maximize=p["maximize"], state=state,
            target_loss=target, sample_weight=sw, check_finite=False, backend=p["backend"],
            n_threads=p["n_threads"],
        )  # fmt: skip
        if bar is None:
            res = kernels.train(X, Y, W, b, epochs=E, lr=lrs, orders=orders, eval_set=ev, **common)
            return res.losses, res.valid_losses, res.steps, res.status
        M = X.shape[0]
        R = M if orders is None else orders.shape[1]
        S = -(-R // bs)
        losses = np.full((E, S), np.nan)
        valid = None if ev is None else np.full(E, np.nan)
        cuts = sorted({round(k * S / _PROGRESS_PIECES) for k in range(_PROGRESS_PIECES + 1)})
        steps = 0
        for e in range(E):
            rows = np.arange(R, dtype=np.int64) if orders is None else orders[e]
            for s0, s1 in zip(cuts[:-1], cuts[1:]):
                last = s1 == S
                piece = np.ascontiguousarray(rows[s0 * bs : min(s1 * bs, R)])[None, :]
                res = kernels.train(
                    X, Y, W, b, epochs=1, lr=[lrs[e]], orders=piece,
                    eval_set=ev if last else None, **common,
                )  # fmt: skip
                losses[e, s0:s1] = res.losses[0, : s1 - s0]
                steps += res.steps
                done = losses[e, :s1][~np.isnan(losses[e, :s1])]
                bar.update(res.steps)
                post = {
                    "epoch": epoch0 + e,
                    "loss": f"{float(done.mean()) if done.size else math.nan:.6g}",
                }
                if last and valid is not None and res.valid_losses is not None:
                    valid[e] = res.valid_losses[0]
                    post["val_loss"] = f"{valid[e]:.6g}"
                bar.set_postfix(post, refresh=False)
                if res.status != "completed":
                    return losses, valid, steps, res.status
        return losses, valid, steps, "completed"

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
        sw: np.ndarray | None,
        n_epochs: int,
        first_epoch: int,
        early_stopping: bool,
        target_loss: float | None,
    ) -> dict:
        """Train ``W``/``b``/``state``/``order_gen`` in place; return what happened.

        One kernel call for all epochs, or one per epoch when early stopping or ``verbose``
        needs to act between epochs. Raises DivergenceError / KeyboardInterrupt (the caller's
        copies are then discarded, so the estimator is untouched).
        """
        M = X.shape[0]
        bs = p["batch_size"]
        R = self._rows_per_epoch(p, M)
        S = -(-R // bs)
        all_lrs = self._learning_rates(p, first_epoch, n_epochs)
        verbose = p["verbose"]
        bar = _progress_bar(n_epochs * S) if verbose >= 2 else None
        if verbose >= 2 and bar is None:
            verbose = 1
        chunk = 1 if (early_stopping or verbose) else n_epochs
        if order_gen is not None or R < M:  # explicit row orders: at most ~128 MiB of them
            chunk = max(1, min(chunk, _MAX_ORDER_ENTRIES // R))
        train_hist: list[float] = []
        valid_hist: list[float] = []
        lr_hist: list[float] = []
        steps_total = 0
        best = math.inf
        best_epoch = None
        snapshot = None
        no_improvement = 0
        stop = False
        done = 0
        try:
            while done < n_epochs and not stop:
                E = min(chunk, n_epochs - done)
                lrs = all_lrs[done : done + E]
                orders = None
                if order_gen is not None:
                    saved = order_gen.get_state()
                    orders = order_gen.orders(M, E)
                    if R < M:
                        orders = np.ascontiguousarray(orders[:, :R])
                elif R < M:
                    orders = np.ascontiguousarray(np.broadcast_to(np.arange(R), (E, R)))
                losses, valid, steps, status = self._block(
                    p, X, Y, W, b, state, orders, lrs, ev, target_loss, sw, bar, first_epoch + done
                )
                if status == "diverged":
                    # a non-finite loss stops before its step is applied (W, b stay finite); a
                    # non-finite parameter is found right after the step that produced it
                    k = steps
                    if not (np.isfinite(W).all() and (b is None or np.isfinite(b).all())):
                        k = max(k - 1, 0)
                    e, s = divmod(k, S)
                    e += first_epoch + done
                    raise DivergenceError(
                        f"training diverged at epoch {e}, step {s} (0-based; step "
                        f"{steps_total + k} of this call): the loss or the parameters became NaN "
                        f"or infinite. Lower lr (epoch {e} used {all_lrs[e - first_epoch]}). "
                        "The model was left unchanged.",
                        epoch=e,
                        step=s,
                    )
                if status == "interrupted":
                    raise KeyboardInterrupt(
                        "linsgd training interrupted; the model was left unchanged"
                    )
                if status == "completed" and not (early_stopping or verbose):
                    # the common run: every step ran, so no loss is NaN (a NaN loss would have
                    # stopped it); the same history as the loop below
                    train_hist += [sum(row) / S for row in losses.tolist()]
                    lr_hist += lrs
                    if ev is not None:
                        vals = valid.tolist()
                        if any(v != v for v in vals):  # evaluated again, as the loop below does
                            again = kernels.loss(ev[0], ev[1], W, b, backend=p["backend"])
                            vals = [v if v == v else again for v in vals]
                        valid_hist += vals
                    steps_total += steps
                    done += E
                    continue
                if status == "completed":
                    ran = E
                else:  # target_loss: stopped right after step number `steps` of this block
                    e_stop, s_stop = divmod(steps - 1, S)
                    ran = e_stop + 1
                    if order_gen is not None:
                        # replay the generator as torch's loop that breaks out of its epoch:
                        # complete epochs, then one whose sampler was exhausted only if the
                        # break came after the last, partial batch had been fetched
                        order_gen.set_state(saved)
                        order_gen.orders(M, e_stop)
                        exhausted = s_stop == S - 1 and not p["drop_last"] and M % bs != 0
                        order_gen.next_epoch(M, complete=exhausted)
                rows = losses.tolist()
                valid_list = None if ev is None else valid.tolist()
                for e in range(ran):
                    train_hist.append(_train_mean(rows[e]))
                    lr_hist.append(lrs[e])
                    if ev is not None:
                        v = valid_list[e]
                        if math.isnan(v):  # the epoch was cut short: evaluate where it stopped
                            v = kernels.loss(ev[0], ev[1], W, b, backend=p["backend"])
                        valid_hist.append(v)
                    if verbose == 1:
                        k = len(train_hist) - 1
                        line = f"epoch: {first_epoch + k} - MSE: {round(train_hist[k], 4)}"
                        if ev is not None:
                            line += f" - MSE_v: {round(valid_hist[k], 4)}"
                        print(line, flush=True)
                steps_total += steps
                done += ran
                if status != "completed":
                    stop = True
                if early_stopping:
                    crit = valid_hist[-1] if ev is not None else train_hist[-1]
                    if status == "completed":
                        if crit > best - p["tol"]:
                            no_improvement += 1
                        else:
                            no_improvement = 0
                    if crit < best:
                        best = crit
                        best_epoch = first_epoch + done - 1
                        if ev is not None:
                            snapshot = (
                                W.copy(),
                                None if b is None else b.copy(),
                                _copy_state(state),
                            )
                    if no_improvement >= p["n_iter_no_change"]:
                        stop = True
        finally:
            if bar is not None:
                bar.close()
        if snapshot is not None and best_epoch != first_epoch + done - 1:
            W[...] = snapshot[0]
            if b is not None:
                b[...] = snapshot[1]
            state.clear()
            state.update(snapshot[2])
        return {
            "train_loss": train_hist,
            "valid_loss": valid_hist if ev is not None else None,
            "lrs": lr_hist,
            "steps": steps_total,
            "epochs": done,
            "best_epoch": best_epoch,
        }

    def _prepare(self, p, X, y, sample_weight, dt):
        """Validated ``X``, ``Y`` (2-D), whether ``y`` was 1-D, and ``sample_weight``."""
        X_arr = _check_X(X, "X", dt if dt is not None else p["dtype"])
        dt = X_arr.dtype
        y_arr = _check_y(y, "y", dt, X_arr.shape[0], "X")
        Y = y_arr.reshape(len(y_arr), -1)  # C-contiguous, as y_arr
        sw = _check_sample_weight(sample_weight, X_arr.shape[0])
        return X_arr, Y, y_arr.ndim == 1, sw

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
        p = self._validated_params()
        if sample_weight is None and p["common"]:
            fitted = self._fit_common(p, X, y, eval_set, coef_init, intercept_init)
            if fitted is not None:
                return fitted
        X_arr, Y, single, sw = self._prepare(p, X, y, sample_weight, None)
        dt = X_arr.dtype
        M, N = X_arr.shape
        U = Y.shape[1]
        ev = self._eval_set(eval_set, N, U, dt)
        use_seed = p["solver"] == "sgd" and (p["shuffle"] or p["init"] == "torch")
        seed = self._seed() if use_seed else None
        init_seed = (
            seed
            if (p["init"] == "torch" and coef_init is None and intercept_init is None)
            else None
        )
        W, b = self._initial_params(
            coef_init, intercept_init, N, U, dt, p["fit_intercept"], init_seed
        )
        state: dict = {}
        order_gen = None
        p["auto_lr"] = None
        if p["solver"] == "closed_form":
            coef, intercept = closed_form(
                X_arr, Y, weight_decay=p["weight_decay"], decay_bias=p["decay_bias"],
                l2=p["l2"], fit_intercept=p["fit_intercept"], sample_weight=sw,
            )  # fmt: skip
            W = np.ascontiguousarray(coef, dtype=dt)
            b = np.ascontiguousarray(intercept, dtype=dt) if p["fit_intercept"] else None
            run = {
                "train_loss": [],
                "valid_loss": None if ev is None else [],
                "lrs": [],
                "steps": 0,
                "epochs": 0,
                "best_epoch": None,
            }
        else:
            self._rows_per_epoch(p, M)  # drop_last check before anything runs
            if p["lr"] == "auto":
                p["auto_lr"] = auto_lr(
                    X_arr, U, fit_intercept=p["fit_intercept"],
                    weight_decay=p["weight_decay"], l2=p["l2"], sample_weight=sw,
                )  # fmt: skip
            if p["shuffle"]:
                order_gen = TorchDataLoaderOrder(seed)
            run = self._run(
                p, X_arr, Y, W, b, state, order_gen, ev, sw, p["epochs"], 0,
                early_stopping=p["tol"] is not None, target_loss=p["target_loss"],
            )  # fmt: skip
        return self._commit_fit(p, X, W, b, single, run, state, order_gen)

    def _commit_fit(self, p, X, W, b, single, run, state, order_gen) -> LinearRegressor:
        """A successful fit: set every fitted attribute at once."""
        self._set_params_attrs(W, b, single)
        self.n_features_in_ = W.shape[1]
        names = _feature_names(X)
        if names is not None:
            self.feature_names_in_ = names
        elif "feature_names_in_" in self.__dict__:
            del self.feature_names_in_
        self.n_iter_ = run["epochs"]
        self.t_ = run["steps"]
        self.history_ = {"train_loss": list(run["train_loss"])}
        if run["valid_loss"] is not None:
            self.history_["valid_loss"] = list(run["valid_loss"])
        self.lr_history_ = list(run["lrs"])
        self.best_epoch_ = run["best_epoch"]
        self._optimizer_state = state
        self._order_state = None if order_gen is None else order_gen.get_state()
        self._auto_lr = p["auto_lr"]
        self._checked_params = p["checked"]
        return self

    def _fit_common(
        self, p: dict, X: Any, y: Any, eval_set: Any, coef_init: Any, intercept_init: Any
    ) -> LinearRegressor | None:
        """:meth:`fit` for the common case, in few steps, or None (nothing changed) when the
        case is not that one: numpy arrays of the model dtype that need no conversion, plain
        SGD over the rows in order (no shuffle, stopping, printing, schedule or sample
        weights), a run that completes. The result is the general path's, bit for bit
        (tests/test_fast_paths.py); anything else, errors included, goes the general way (the
        initial parameters are checked at the point where the general path checks them).
        """
        dt = p["dtype"]
        if not (_ready(X, dt) and X.ndim == 2):
            return None
        M, N = X.shape
        dt = X.dtype
        if not (M >= 1 and N >= 1 and _ready(y, dt)):
            return None
        single = y.ndim == 1
        U = 1 if single else y.shape[1] if y.ndim == 2 else 0
        if not (U >= 1 and y.shape[0] == M and kernels._all_finite(X) and kernels._all_finite(y)):
            return None
        ev = None
        if eval_set is not None:
            if not (type(eval_set) in (tuple, list) and len(eval_set) == 2):
                return None
            Xv, yv = eval_set
            if not (_ready(Xv, dt) and _ready(yv, dt) and Xv.ndim == 2 and Xv.shape[1] == N):
                return None
            Mv = Xv.shape[0]
            if not (
                Mv >= 1
                and (yv.shape == (Mv,) if U == 1 and yv.ndim == 1 else yv.shape == (Mv, U))
                and kernels._all_finite(Xv) and kernels._all_finite(yv)
            ):  # fmt: skip
                return None
            ev = (Xv, yv)
        W, b = self._initial_params(coef_init, intercept_init, N, U, dt, p["fit_intercept"], None)
        lr = p["lr"]
        p["auto_lr"] = None
        if type(lr) is str:  # "auto"
            lr = p["auto_lr"] = auto_lr(
                X, U, fit_intercept=p["fit_intercept"], weight_decay=p["weight_decay"],
                l2=p["l2"],
            )  # fmt: skip
        lr = float(lr)
        state: dict = {}
        E = p["epochs"]
        r = kernels._fast_run(
            X, y, W, b, p["batch_size"], E, lr, p["weight_decay"], p["decay_bias"], p["l2"],
            p["momentum"], p["dampening"], p["nesterov"], p["maximize"], state, ev, None, False,
            p["backend"], p["n_threads"],
        )  # fmt: skip
        if r is None or r[3] != 0:  # refused (nothing ran), or did not complete: redone in full
            return None
        losses, valid, steps, _ = r
        S = losses.shape[0] // E
        run = {
            # every step ran, so no loss is NaN; the mean as _run computes it
            "train_loss": [sum(row) / S for row in losses.reshape(E, S).tolist()],
            "valid_loss": None,
            "lrs": [lr] * E,
            "steps": steps,
            "epochs": E,
            "best_epoch": None,
        }
        if ev is not None:
            vals = valid.tolist()
            if any(v != v for v in vals):  # evaluated again, as _run does
                again = kernels.loss(Xv, yv, W, b, backend=p["backend"])
                vals = [v if v == v else again for v in vals]
            run["valid_loss"] = vals
        return self._commit_fit(p, X, W, b, single, run, state, None)

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
        if not hasattr(self, "coef_"):
            return self._first_partial_fit(X, y, sample_weight, eval_set)
        p = self._validated_params()
        W, b = self._params_from_attrs()
        dt = W.dtype
        U, N = W.shape
        single = np.ndim(self.coef_) == 1
        X_arr = _check_X(X, "X", dt, N)
        y_arr = _check_y(y, "y", dt, X_arr.shape[0], "X")
        Y = y_arr.reshape(len(y_arr), -1)  # C-contiguous, as y_arr
        if Y.shape[1] != U:
            raise ValueError(f"y has {Y.shape[1]} outputs, but the model has {U}")
        sw = _check_sample_weight(sample_weight, X_arr.shape[0])
        ev = self._eval_set(eval_set, N, U, dt)
        self._rows_per_epoch(p, X_arr.shape[0])
        state = _copy_state(getattr(self, "_optimizer_state", {}) or {})
        order_gen = None
        if p["shuffle"]:
            saved = getattr(self, "_order_state", None)
            order_gen = TorchDataLoaderOrder(0 if saved is not None else self._seed())
            if saved is not None:
                order_gen.set_state(copy.deepcopy(saved))
        p["auto_lr"] = getattr(self, "_auto_lr", None)
        if p["lr"] == "auto" and p["auto_lr"] is None:  # kept from the first fit/partial_fit
            p["auto_lr"] = auto_lr(
                X_arr, U, fit_intercept=b is not None, weight_decay=p["weight_decay"],
                l2=p["l2"], sample_weight=sw,
            )  # fmt: skip
        first = int(getattr(self, "n_iter_", 0))
        run = self._run(
            p, X_arr, Y, W, b, state, order_gen, ev, sw, 1, first,
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
        self.lr_history_ = list(getattr(self, "lr_history_", [])) + run["lrs"]
        self.best_epoch_ = getattr(self, "best_epoch_", None)
        self._optimizer_state = state
        self._order_state = None if order_gen is None else order_gen.get_state()
        self._auto_lr = p["auto_lr"]
        self._checked_params = p["checked"]
        return self

    def _first_partial_fit(
        self, X: Any, y: Any, sample_weight: Any, eval_set: Any
    ) -> LinearRegressor:
        params = self.get_params()
        keys = ("epochs", "tol", "target_loss", "solver")
        try:
            self.set_params(epochs=1, tol=None, target_loss=None, solver="sgd")
            self.fit(X, y, sample_weight, eval_set=eval_set)
        finally:
            self.set_params(**{k: params[k] for k in keys})
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
            ``maximize`` become the estimator's (a bias group with ``weight_decay=0`` becomes
            ``decay_bias=False``), and its momentum buffers (when it has taken steps) become
            the optimizer state that :meth:`partial_fit` continues from.
        **params
            Further estimator parameters; they override the values read from the optimizer.
            ``dtype`` defaults to the layer's dtype, ``fit_intercept`` to whether it has a bias.

        Returns
        -------
        LinearRegressor
            An estimator that predicts like the layer; ``coef_`` is 1-D when the layer has
            one output. Continuing with :meth:`partial_fit` continues the torch run.
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
        est.lr_history_ = []
        est.best_epoch_ = None
        est._optimizer_state = state
        est._order_state = None
        return est

    def to_torch(self, optimizer: bool = False) -> Any:
        """Return a ``torch.nn.Linear`` holding the fitted parameters (dtype kept).

        Parameters
        ----------
        optimizer : bool, default=False
            Also return a ``torch.optim.SGD`` over the layer with this estimator's settings
            and its momentum buffers, so that training can continue in torch exactly where
            linsgd stopped (``lr`` is the learning rate of the next epoch, ``n_iter_``).

        Returns
        -------
        torch.nn.Linear or tuple (torch.nn.Linear, torch.optim.SGD)
            ``nn.Linear(n_features, n_outputs, bias=fit_intercept)`` on the CPU whose weight is
            ``coef_`` (as a ``(n_outputs, n_features)`` matrix) and whose bias is
            ``intercept_``; with ``optimizer=True`` also the optimizer. Building them does
            not touch torch's global random state.
        """
        from ._torch_interop import make_linear, make_sgd

        check_is_fitted(self, "coef_")
        if not isinstance(optimizer, (bool, np.bool_)):
            raise TypeError(f"optimizer must be a bool, got {type(optimizer).__name__}")
        W, b = self._params_from_attrs()
        layer = make_linear(W, b)
        if not optimizer:
            return layer
        p = self._validated_params()
        p["auto_lr"] = getattr(self, "_auto_lr", None)
        if p["lr"] == "auto" and p["auto_lr"] is None:
            raise ValueError(
                "lr='auto' is computed from the training data: fit the model first, or set a "
                "numeric lr, before to_torch(optimizer=True)"
            )
        p["lr"] = self._learning_rates(p, int(getattr(self, "n_iter_", 0)), 1)[0]
        opt = make_sgd(layer, p, getattr(self, "_optimizer_state", {}) or {})
        return layer, opt
