"""The estimator's data semantics: what ``LinearRegressor`` accepts as data and parameters.

scikit-learn's conventions (lenient conversion of array-likes, DataFrames and CPU torch
tensors; integer data cast to float64; float32 kept; messages its estimator checks expect),
checked once per fit and handed to the trainer as C-contiguous arrays of the model dtype.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.model_selection import ShuffleSplit
from sklearn.utils.validation import _get_feature_names

from . import _checks as ck
from ._sparse import as_csr
from ._torch_interop import torch_linear_init

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import _check_feature_names as _sk_check_feature_names
except ImportError:  # pragma: no cover - older scikit-learn has it as an estimator method

    def _sk_check_feature_names(estimator: Any, X: Any, *, reset: bool) -> None:
        estimator._check_feature_names(X, reset=reset)


__all__ = [
    "check_X",
    "check_eval_set",
    "check_feature_names",
    "check_sample_weight",
    "check_y",
    "feature_names",
    "initial_params",
    "validation_split",
]


def _as_array(a: Any, name: str) -> np.ndarray:
    """Turn ``a`` into a numeric ndarray (no dtype change yet), with errors naming ``name``."""
    if a is None:
        raise TypeError(f"{name} must be an array, got None")
    if sp.issparse(a):
        raise TypeError(f"{name} is a sparse matrix; linsgd needs a dense array")
    if ck.is_torch_tensor(a):
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


def _ready(a: Any, dt: np.dtype | None) -> bool:
    """Whether ``a`` is already what the checks below would make of it: a C-contiguous,
    aligned numpy array of the model dtype (``dt``, or float32/float64 when None)."""
    if type(a) is not np.ndarray:
        return False
    adt = a.dtype
    if not (adt is dt if dt is not None else (adt is ck.F64 or adt is ck.F32)):
        return False
    f = a.flags
    return f.c_contiguous and f.aligned


def check_X(a: Any, name: str, dt: np.dtype | None, n_features: int | None = None) -> np.ndarray:
    """Validate a 2-D feature matrix; cast to ``dt`` (None: keep float32, else float64)."""
    if _ready(a, dt) and a.ndim == 2 and a.shape[0] >= 1 and a.shape[1] >= 1:
        if n_features is None or a.shape[1] == n_features:
            ck.require_finite(a, name)
            return a
    if sp.issparse(a):
        return _check_sparse_X(a, name, dt, n_features)
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
    _check_2d_shape(arr.shape, name, n_features)
    if dt is None:
        dt = np.dtype(np.float32) if arr.dtype == np.float32 else np.dtype(np.float64)
    arr = np.ascontiguousarray(arr, dtype=dt)
    ck.require_finite(arr, name)
    return arr


def _check_2d_shape(shape: tuple, name: str, n_features: int | None) -> None:
    """At least one sample and one feature, and ``n_features`` of them when given."""
    if shape[0] < 1:
        raise ValueError(
            f"{name} is empty: 0 sample(s) (shape={shape}) while a minimum of 1 is required."
        )
    if shape[1] < 1:
        raise ValueError(
            f"{name} has no features: 0 feature(s) (shape={shape}) while a minimum of 1 "
            "is required."
        )
    if n_features is not None and shape[1] != n_features:
        raise ValueError(
            f"{name} has {shape[1]} features, but LinearRegressor is expecting "
            f"{n_features} features as input"
        )


def _check_sparse_X(a: Any, name: str, dt: np.dtype | None, n_features: int | None) -> Any:
    """A scipy.sparse ``X`` as a canonical CSR matrix (or array) of dtype ``dt``: other formats
    converted, duplicates summed and indices sorted, values cast, each once and on a copy (the
    caller's matrix is never modified); never densified."""
    x = as_csr(a, name)
    _check_2d_shape(x.shape, name, n_features)
    kind = x.dtype.kind
    if kind == "c":
        raise ValueError(
            f"{name} is complex: Complex data not supported, {name} must hold real numbers"
        )
    if kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if dt is None:
        dt = np.dtype(np.float32) if x.dtype == np.float32 else np.dtype(np.float64)
    if x.dtype != dt or not x.data.flags.c_contiguous:
        x = x.astype(dt)  # a copy
    ck.require_finite(x.data, name)
    return x


def check_y(a: Any, name: str, dt: np.dtype, n_samples: int, xname: str) -> np.ndarray:
    """Validate targets; return them 1-D ``(M,)`` or 2-D ``(M, U)``, cast to ``dt``."""
    if _ready(a, dt) and 1 <= a.ndim <= 2 and a.shape[0] == n_samples and a.size >= n_samples:
        ck.require_finite(a, name)
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
    ck.require_finite(arr, name)
    return arr


def feature_names(X: Any) -> np.ndarray | None:
    """The feature names of ``X`` as scikit-learn reads them (``feature_names_in_``): the
    column names of a DataFrame whose columns are all strings, else None (``TypeError`` for
    mixed string and non-string column names, as scikit-learn)."""
    if type(X) is np.ndarray:
        return None
    return _get_feature_names(X)


def check_feature_names(estimator: Any, X: Any) -> None:
    """Check the feature names of ``X`` against the fitted ones, with scikit-learn's own check
    (its messages and warnings: a ``ValueError`` for other names or another order, a
    ``UserWarning`` when only one of the two has names). Changes nothing."""
    if type(X) is np.ndarray and "feature_names_in_" not in estimator.__dict__:
        return
    _sk_check_feature_names(estimator, X, reset=False)


def check_sample_weight(sample_weight: Any, n_samples: int) -> np.ndarray | None:
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
    ck.require_finite(sw, "sample_weight")
    if (sw < 0).any():
        raise ValueError("sample_weight must be >= 0, got negative weights")
    if not (sw > 0).any():
        raise ValueError("sample_weight must contain at least one non-zero weight: all are zero")
    return sw


def initial_params(coef_init, intercept_init, N, U, dt, fit_intercept, seed):
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
        ck.require_finite(W, "coef_init")
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
        ck.require_finite(b, "intercept_init")
    return W, b


def check_eval_set(eval_set: Any, n_features: int, n_outputs: int, dt: np.dtype):
    if eval_set is None:
        return None
    es = eval_set
    if isinstance(es, list) and len(es) == 1 and isinstance(es[0], (tuple, list)):
        es = es[0]
    if not isinstance(es, (tuple, list)) or len(es) != 2:
        raise TypeError("eval_set must be a pair (X_valid, y_valid)")
    Xv = check_X(es[0], "eval_set[0] (X_valid)", dt, n_features)
    yv = check_y(es[1], "eval_set[1] (y_valid)", dt, Xv.shape[0], "eval_set[0] (X_valid)")
    Yv = yv.reshape(len(yv), -1)
    if Yv.shape[1] != n_outputs:
        raise ValueError(f"eval_set[1] (y_valid) has {Yv.shape[1]} outputs, but y has {n_outputs}")
    return Xv, Yv  # C-contiguous, as yv


def validation_split(
    X: np.ndarray,
    Y: np.ndarray,
    sw: np.ndarray | None,
    fraction: float,
    random_state: Any,
    seed_of: Callable[[Any], int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[np.ndarray, np.ndarray]]:
    """Set aside ``fraction`` of the rows as the validation set of ``early_stopping``.

    The rows are those of scikit-learn's ``SGDRegressor``: the test part of
    ``ShuffleSplit(test_size=fraction, random_state=random_state)`` (an int seed as it is, a
    ``RandomState`` advanced; None or a numpy Generator give a seed drawn by ``seed_of``).
    Both parts keep the original row order. Returns ``(X_train, Y_train, sw_train,
    (X_valid, Y_valid))``.
    """
    M = X.shape[0]
    rs = random_state
    if isinstance(rs, numbers.Integral) and not ck.is_bool(rs):
        rs = int(rs) & 0xFFFFFFFF  # the low 32 bits, as everywhere in linsgd
    elif not isinstance(rs, np.random.RandomState):
        rs = seed_of(rs)
    n_valid = int(np.ceil(fraction * M))
    if n_valid < 1 or M - n_valid < 1:
        raise ValueError(
            f"early_stopping: splitting {M} samples into a train set and a validation set with "
            f"validation_fraction={fraction} led to an empty set ({M - n_valid} and {n_valid} "
            "samples). Please either change validation_fraction, increase the number of "
            "samples, or disable early_stopping."
        )
    cv = ShuffleSplit(n_splits=1, test_size=fraction, random_state=rs)
    _, idx_valid = next(cv.split(np.zeros((M, 1))))
    mask = np.zeros(M, dtype=bool)
    mask[idx_valid] = True
    keep = ~mask
    sw_train = None
    if sw is not None:
        sw_train = sw[keep]
        if not (sw_train > 0).any():
            raise ValueError(
                "early_stopping: the sample weights of the training part are all zero; use "
                "another random_state or validation_fraction"
            )
    return X[keep], Y[keep], sw_train, (X[mask], Y[mask])
