"""Same-bits harness: run a fixed list of cases through linsgd's public API and compare two builds.

Every case runs ``linsgd.kernels`` (``loss``, ``gradient``, ``step``, ``epoch``, ``train``) and
``linsgd.LinearRegressor`` (``fit``, ``partial_fit``, ``predict``, pickling) on deterministic
data, for each backend (``"cpp"``, ``"numba"``, always passed explicitly) and dtype (float32,
float64), and records every output: parameters, losses, ``TrainResult`` fields, momentum
buffers in ``state``, the fitted attributes, and the type and message of expected exceptions.
Two builds agree on a case when every recorded value has the same kind, dtype, shape and bits
(floats are compared by their bit patterns; NaN equals NaN).

The baseline build
------------------
The comparison needs the pre-refactor code importable as a second package, ``linsgd_base``,
next to the working tree's ``linsgd``. Build it once from a worktree of the baseline commit::

    git worktree add /work/base 40c4a6f
    pip install --no-deps --no-build-isolation --target /work/base_site/tmp \\
        -C cmake.define.LINSGD_CUDA=OFF -C build-dir=/work/base_site/build /work/base
    mv /work/base_site/tmp/linsgd /work/base_site/linsgd_base
    sed -i 's/"linsgd\\._/"linsgd_base._/g' \\
        /work/base_site/linsgd_base/_backends.py /work/base_site/linsgd_base/kernels.py
    rm -rf /work/base_site/tmp

(the ``sed`` renames the module paths that ``_backends.py`` imports by name and that
``kernels.py`` compares ``__name__`` with; messages mentioning ``linsgd`` stay as they are, so
that they compare equal).

Usage
-----
::

    PYTHONPATH=/work/base_site python bench/same_bits.py compare      # linsgd_base vs linsgd
    PYTHONPATH=/work/base_site python bench/same_bits.py record base.npz --module linsgd_base
    python bench/same_bits.py compare-file base.npz                  # recorded vs linsgd
    python bench/same_bits.py list                                   # the case names

``-k SUBSTRING`` (repeatable) runs only the cases whose name contains one of the substrings,
``-v`` prints the traceback of cases that raised unexpectedly. ``compare`` and
``compare-file`` print one line per case (``OK``, ``DIFF`` with the first differing fields and
their largest difference in units in the last place, or ``FIXED`` when the baseline raised
and the new code succeeded) and a summary; the exit status is 1 on any ``DIFF``, and on a
``FIXED`` case that is not a known baseline bug (``KNOWN_BASELINE_BUGS``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import pickle
import sys
import time
import traceback
import zlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

BACKENDS = ("cpp", "numba")
DTYPES = (np.float32, np.float64)
EXC_FIELD = "__raised__"  # prefix of the fields recorded for an exception a case did not expect

# Cases on which the baseline raises because of a bug that the refactor fixes: "baseline raised,
# new succeeded" is expected there (and does not fail the comparison).
KNOWN_BASELINE_BUGS = {
    # partial_fit after a pickle round trip, 1-D y, momentum and an intercept: the baseline
    # refuses state['momentum_buffer_b'] ("must be a writable, aligned, C-contiguous array")
    "est_pickle_partial_fit_1d": "ValueError on state['momentum_buffer_b'] after unpickling",
}

_MISSING = object()


# ============================================================================ recording values


def encode(value: Any) -> tuple[str, np.ndarray]:
    """Turn one recorded value into a kind tag and an array holding its bits.

    Parameters
    ----------
    value : object
        None, a bool, int, float or str, a numpy scalar or array, a list or tuple of numbers,
        or anything else (recorded by its ``repr``).

    Returns
    -------
    kind : str
        ``"none"``, ``"missing"``, ``"bool"``, ``"int"``, ``"float"``, ``"str"``,
        ``"npscalar"``, ``"ndarray"``, ``"list"`` or ``"repr"``.
    data : ndarray
        A C-contiguous copy of the value (an empty array for ``"none"``/``"missing"``).
    """
    if value is _MISSING:
        return "missing", np.zeros(0, np.uint8)
    if value is None:
        return "none", np.zeros(0, np.uint8)
    if isinstance(value, (bool, np.bool_)) and not isinstance(value, np.ndarray):
        return ("bool" if isinstance(value, bool) else "npscalar"), np.array(value, dtype=bool)
    if isinstance(value, int):
        return "int", np.array(value, dtype=np.int64)
    if isinstance(value, float):
        return "float", np.array(value, dtype=np.float64)
    if isinstance(value, str):
        return "str", np.array(value, dtype=np.str_)
    if isinstance(value, np.generic):
        return "npscalar", np.array(value)
    if isinstance(value, np.ndarray):
        return "ndarray", np.array(value, copy=True, order="C")
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, float) for v in value):
            return "list", np.array(value, dtype=np.float64)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return "list", np.array(value, dtype=np.int64)
    return "repr", np.array(repr(value), dtype=np.str_)


class Record:
    """The outputs of one case: an ordered mapping ``field -> (kind, array)``.

    Values are encoded (and so copied) when they are stored, so later in-place updates of
    ``W``, ``b`` or momentum buffers do not change what was recorded.
    """

    def __init__(self) -> None:
        self.fields: dict[str, tuple[str, np.ndarray]] = {}

    def __setitem__(self, field: str, value: Any) -> None:
        if field in self.fields:
            raise KeyError(f"field {field!r} recorded twice")
        self.fields[field] = encode(value)

    def exception(self, prefix: str, exc: BaseException) -> None:
        """Record an exception: its class name, message and ``epoch``/``step`` if it has them.

        Parameters
        ----------
        prefix : str
            Field prefix, e.g. ``"err0."``.
        exc : BaseException
            The exception.
        """
        self[prefix + "type"] = type(exc).__name__
        self[prefix + "msg"] = str(exc).replace("linsgd_base", "linsgd")
        if hasattr(exc, "epoch") or hasattr(exc, "step"):
            self[prefix + "epoch"] = getattr(exc, "epoch", _MISSING)
            self[prefix + "step"] = getattr(exc, "step", _MISSING)

    def catch(self, prefix: str, fn: Callable[[], Any]) -> Any:
        """Call ``fn``; record the exception it raises (or ``prefix + "raised" = False``).

        Parameters
        ----------
        prefix : str
            Field prefix for the exception's fields.
        fn : callable
            Called without arguments.

        Returns
        -------
        object
            What ``fn`` returned, or None when it raised.
        """
        try:
            result = fn()
        except Exception as exc:
            self.exception(prefix, exc)
            return None
        self[prefix + "raised"] = False
        return result


# ============================================================================ data


def _seed(*parts: Any) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


def _problem(
    seed: int, M: int, N: int, U: int, dtype: Any, *, y1d: bool = False, noise: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic regression data: ``X`` (M, N), ``Y`` (M, U) (or (M,)), both of ``dtype``.

    Made in float64 without BLAS (``einsum`` without ``optimize``), then rounded once, so that
    the data do not depend on the thread count or the process.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((M, N))
    Wt = rng.standard_normal((U, N))
    bt = rng.standard_normal(U)
    Y = np.einsum("mn,un->mu", X, Wt, optimize=False) + bt + noise * rng.standard_normal((M, U))
    X, Y = X.astype(dtype), Y.astype(dtype)
    if y1d:
        Y = np.ascontiguousarray(Y[:, 0])
    return X, Y


def _init(seed: int, U: int, N: int, dtype: Any, scale: float = 0.1) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    W = (scale * rng.standard_normal((U, N))).astype(dtype)
    b = (scale * rng.standard_normal(U)).astype(dtype)
    return W, b


def _state(r: Record, prefix: str, state: dict) -> None:
    r[prefix + "keys"] = ",".join(sorted(state))
    for key in ("momentum_buffer_W", "momentum_buffer_b", "step"):
        r[prefix + key] = state.get(key, _MISSING)


def _train_result(r: Record, prefix: str, res: Any) -> None:
    for name in ("losses", "valid_losses", "steps", "epochs", "status"):
        r[prefix + name] = getattr(res, name, _MISSING)


def _estimator(r: Record, prefix: str, est: Any, X: Any) -> None:
    for name in ("coef_", "intercept_", "n_iter_", "t_", "lr_history_", "best_epoch_"):
        r[prefix + name] = getattr(est, name, _MISSING)
    hist = getattr(est, "history_", None)
    if hist is None:
        r[prefix + "history_"] = None
    else:
        r[prefix + "history_.keys"] = ",".join(sorted(hist))
        for key in sorted(hist):
            r[prefix + "history_." + key] = list(hist[key])
    r[prefix + "predict"] = est.predict(X)


def _put(r: Record, field: str, value: Any) -> None:
    r[field] = value


def _sched_lambda(epoch: int) -> float:
    """A picklable ``LambdaLR`` factor."""
    return 1.0 / (1.0 + 0.5 * epoch)


def _lr_of_epoch(epoch: int) -> float:
    """A picklable plain ``epoch -> lr`` callable."""
    return 0.04 * 0.9**epoch


# ============================================================================ kernel cases


def k_loss_gradient(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """``loss`` and ``gradient`` on several shapes, with and without bias and sample weights."""
    K = m.kernels
    shapes = [
        (1, 1, 1, False),
        (7, 3, 1, True),
        (50, 5, 3, False),
        (300, 2, 5, False),
        (129, 17, 1, False),
    ]
    for i, (M, N, U, y1d) in enumerate(shapes):
        X, Y = _problem(_seed(name, i), M, N, U, dt, y1d=y1d)
        W, b = _init(_seed(name, i, "w"), U, N, dt)
        sw = np.random.default_rng(_seed(name, i, "sw")).uniform(0.0, 2.0, M)
        p = f"s{i}."
        r[p + "loss"] = K.loss(X, Y, W, b, backend=backend)
        r[p + "loss_nob"] = K.loss(X, Y, W, None, backend=backend)
        r[p + "loss_sw"] = K.loss(X, Y, W, b, sample_weight=sw, backend=backend)
        gW, gb, val = K.gradient(X, Y, W, b, backend=backend)
        r[p + "grad.gW"], r[p + "grad.gb"], r[p + "grad.loss"] = gW, gb, val
        gW, gb, val = K.gradient(X, Y, W, None, backend=backend)
        r[p + "grad_nob.gW"], r[p + "grad_nob.gb"], r[p + "grad_nob.loss"] = gW, gb, val
        gW, gb, val = K.gradient(X, Y, W, b, sample_weight=sw, backend=backend)
        r[p + "grad_sw.gW"], r[p + "grad_sw.gb"], r[p + "grad_sw.loss"] = gW, gb, val


def k_step_state(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """``step`` (the whole ``X`` as one batch) with momentum state carried across calls."""
    K = m.kernels
    X, Y = _problem(_seed(name), 60, 4, 1, dt, y1d=True)
    W, b = _init(_seed(name, "w"), 1, 4, dt)
    st: dict = {}
    for i in range(6):
        rows = slice(10 * i, 10 * i + 10)
        r[f"step{i}.loss"] = K.step(
            X[rows], Y[rows], W, b, lr=0.05, momentum=0.9, dampening=0.1, state=st, backend=backend
        )
        _state(r, f"step{i}.state.", st)
    r["W"], r["b"] = W, b
    # nesterov, weight decay (not on the bias), 3 outputs, no state kept between two dicts
    X, Y = _problem(_seed(name, 2), 40, 5, 3, dt)
    W, b = _init(_seed(name, "w2"), 3, 5, dt)
    st = {}
    for i in range(4):
        r[f"nest{i}.loss"] = K.step(
            X,
            Y,
            W,
            b,
            lr=0.02,
            momentum=0.8,
            nesterov=True,
            weight_decay=0.01,
            decay_bias=False,
            state=st,
            backend=backend,
        )
    _state(r, "nest.state.", st)
    r["nest.W"], r["nest.b"] = W, b
    # maximize, l2 and sample weights on one step; b=None with momentum
    sw = np.random.default_rng(_seed(name, "sw")).uniform(0.0, 1.0, 40)
    r["max.loss"] = K.step(
        X, Y, W, b, lr=0.001, maximize=True, l2=0.01, sample_weight=sw, backend=backend
    )
    r["max.W"], r["max.b"] = W, b
    W2 = W.copy()
    st = {}
    for i in range(3):
        r[f"nob{i}.loss"] = K.step(X, Y, W2, None, lr=0.01, momentum=0.5, state=st, backend=backend)
    _state(r, "nob.state.", st)
    r["nob.W"] = W2


def k_epoch_ragged(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """Several ``epoch`` calls, ragged last batch, momentum state, decay, ``l2``."""
    K = m.kernels
    X, Y = _problem(_seed(name), 101, 5, 3, dt)
    W, b = _init(_seed(name, "w"), 3, 5, dt)
    st: dict = {}
    for e in range(3):
        r[f"e{e}.losses"] = K.epoch(
            X,
            Y,
            W,
            b,
            batch_size=10,
            lr=0.02,
            momentum=0.9,
            dampening=0.05,
            weight_decay=1e-3,
            decay_bias=False,
            l2=1e-3,
            state=st,
            backend=backend,
        )
        r[f"e{e}.W"], r[f"e{e}.b"] = W, b
        _state(r, f"e{e}.state.", st)
    # without momentum, without bias, 1-D Y, batch 7 of 101 rows
    X1, Y1 = _problem(_seed(name, 1), 101, 5, 1, dt, y1d=True)
    W1, _ = _init(_seed(name, "w1"), 1, 5, dt)
    st = {}
    r["nob.losses"] = K.epoch(X1, Y1, W1, None, batch_size=7, lr=0.03, state=st, backend=backend)
    r["nob.W"] = W1
    _state(r, "nob.state.", st)


def k_epoch_big_batch(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """``batch_size`` larger than / equal to ``M``, ``maximize``, ``nesterov``."""
    K = m.kernels
    X, Y = _problem(_seed(name), 37, 3, 2, dt)
    for i, (bs, kw) in enumerate(
        [
            (500, {}),
            (37, {"momentum": 0.9, "nesterov": True}),
            (36, {"maximize": True}),
            (10**9, {"weight_decay": 0.1, "momentum": 0.3, "dampening": 0.3}),
        ]
    ):
        W, b = _init(_seed(name, "w"), 2, 3, dt)
        st: dict = {}
        r[f"c{i}.losses"] = K.epoch(
            X, Y, W, b, batch_size=bs, lr=0.01, state=st, backend=backend, **kw
        )
        r[f"c{i}.W"], r[f"c{i}.b"] = W, b
        _state(r, f"c{i}.state.", st)


def k_epoch_order_weights(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """``epoch`` with an explicit ``order`` (repeats, longer than ``M``) and sample weights."""
    K = m.kernels
    M = 64
    X, Y = _problem(_seed(name), M, 4, 2, dt)
    rng = np.random.default_rng(_seed(name, "o"))
    order = rng.integers(0, M, size=M + 13)
    short = rng.permutation(M)[:40].astype(np.int32)
    sw = rng.uniform(0.0, 2.0, M)
    sw[::9] = 0.0
    W, b = _init(_seed(name, "w"), 2, 4, dt)
    st: dict = {}
    r["o.losses"] = K.epoch(
        X, Y, W, b, batch_size=16, lr=0.02, order=order, momentum=0.9, state=st, backend=backend
    )
    r["o.W"], r["o.b"] = W, b
    _state(r, "o.state.", st)
    r["sw.losses"] = K.epoch(
        X,
        Y,
        W,
        b,
        batch_size=16,
        lr=0.02,
        sample_weight=sw,
        momentum=0.9,
        state=st,
        backend=backend,
    )
    r["sw.W"], r["sw.b"] = W, b
    _state(r, "sw.state.", st)
    r["both.losses"] = K.epoch(
        X, Y, W, b, batch_size=9, lr=0.02, order=short, sample_weight=sw, backend=backend
    )
    r["both.W"], r["both.b"] = W, b


def k_train_orders_eval(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """``train`` with ``orders=``, ``eval_set``, per-epoch lr lists and carried state."""
    K, S = m.kernels, m.schedules
    M = 90
    X, Y = _problem(_seed(name), M, 6, 2, dt)
    Xv, Yv = _problem(_seed(name, "v"), 200, 6, 2, dt)
    rng = np.random.default_rng(_seed(name, "o"))
    orders = np.stack([rng.permutation(M) for _ in range(4)])
    W, b = _init(_seed(name, "w"), 2, 6, dt)
    st: dict = {}
    lrs = S.CosineAnnealingLR(0.05, T_max=3, eta_min=0.001).lrs(4)
    res = K.train(
        X,
        Y,
        W,
        b,
        batch_size=16,
        epochs=4,
        lr=lrs,
        orders=orders,
        eval_set=(Xv, Yv),
        momentum=0.9,
        nesterov=True,
        state=st,
        backend=backend,
    )
    _train_result(r, "t0.", res)
    r["t0.W"], r["t0.b"] = W, b
    _state(r, "t0.state.", st)
    # continue from the same state: a float64 lr array, rows in order, another batch size
    res = K.train(
        X,
        Y,
        W,
        b,
        batch_size=25,
        epochs=3,
        lr=np.array([0.01, 0.02, 0.005]),
        eval_set=(Xv, Yv),
        momentum=0.9,
        nesterov=True,
        state=st,
        backend=backend,
    )
    _train_result(r, "t1.", res)
    r["t1.W"], r["t1.b"] = W, b
    _state(r, "t1.state.", st)
    # schedules as lists: StepLR / ExponentialLR / LambdaLR
    for i, sched in enumerate(
        [
            S.StepLR(0.05, step_size=2, gamma=0.5),
            S.ExponentialLR(0.04, gamma=0.8),
            S.LambdaLR(0.05, _sched_lambda),
        ]
    ):
        W2, b2 = _init(_seed(name, "w", i), 2, 6, dt)
        res = K.train(
            X,
            Y,
            W2,
            b2,
            batch_size=32,
            epochs=5,
            lr=sched.lrs(5),
            eval_set=(Xv, Yv),
            backend=backend,
        )
        r[f"sched{i}.lrs"] = sched.lrs(5)
        _train_result(r, f"sched{i}.", res)
        r[f"sched{i}.W"], r[f"sched{i}.b"] = W2, b2


def k_train_target_loss(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """``train`` stopped mid-epoch by ``target_loss`` (fast path and general path)."""
    K = m.kernels
    X, Y = _problem(_seed(name), 80, 3, 1, dt, y1d=True, noise=0.01)
    Xv, Yv = _problem(_seed(name, "v"), 30, 3, 1, dt, y1d=True, noise=0.01)
    W0, b0 = _init(_seed(name, "w"), 1, 3, dt)
    probe = K.train(X, Y, W0.copy(), b0.copy(), batch_size=8, epochs=4, lr=0.05, backend=backend)
    target = float(probe.losses[2, 4]) * 1.0000001  # reached in epoch 2 (or before)
    r["target"] = target
    for i, kw in enumerate(
        [
            {},
            {"eval_set": (Xv, Yv), "momentum": 0.5},
            {"sample_weight": np.ones(80)},
            {"orders": np.tile(np.arange(80), (4, 1))},
        ]
    ):
        W, b = W0.copy(), b0.copy()
        st: dict = {}
        res = K.train(
            X,
            Y,
            W,
            b,
            batch_size=8,
            epochs=4,
            lr=0.05,
            target_loss=target,
            state=st,
            backend=backend,
            **kw,
        )
        _train_result(r, f"c{i}.", res)
        r[f"c{i}.W"], r[f"c{i}.b"] = W, b
        _state(r, f"c{i}.state.", st)


def k_diverge(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """A large lr: ``epoch``/``step`` raise ``DivergenceError``, ``train`` reports it."""
    K = m.kernels
    X, Y = _problem(_seed(name), 50, 4, 2, dt)
    X = X * 10
    for i, lr in enumerate([1e3, 1e30]):
        W, b = _init(_seed(name, "w"), 2, 4, dt)
        r.catch(
            f"epoch{i}.",
            lambda W=W, b=b, lr=lr: K.epoch(X, Y, W, b, batch_size=5, lr=lr, backend=backend),
        )
        r[f"epoch{i}.W"], r[f"epoch{i}.b"] = W, b
        W, b = _init(_seed(name, "w"), 2, 4, dt)
        st: dict = {}
        res = K.train(
            X, Y, W, b, batch_size=5, epochs=3, lr=lr, momentum=0.9, state=st, backend=backend
        )
        _train_result(r, f"train{i}.", res)
        r[f"train{i}.W"], r[f"train{i}.b"] = W, b
        _state(r, f"train{i}.state.", st)
    W, b = _init(_seed(name, "w"), 2, 4, dt)
    for i in range(4):
        r.catch(f"step{i}.", lambda W=W, b=b: K.step(X, Y, W, b, lr=1e8, backend=backend))
    r["step.W"], r["step.b"] = W, b


def k_convert_inputs(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """Inputs that need converting: Fortran order, strided, byte-swapped, lists, int lists."""
    K = m.kernels
    X, Y = _problem(_seed(name), 60, 4, 3, dt)
    big, _ = _problem(_seed(name, "big"), 120, 8, 3, dt)
    variants = {
        "fortran": (np.asfortranarray(X), np.asfortranarray(Y)),
        "strided": (big[::2, ::2], Y),
        "negstride": (X[::-1], Y[::-1]),
        "byteswap": (X.astype(X.dtype.newbyteorder(">")), Y),
        "list": (X.tolist(), Y.tolist()),  # float64 lists: TypeError for a float32 W
        "f32list": ([[np.float32(v) for v in row] for row in X.tolist()], Y),
    }
    for key, (Xi, Yi) in variants.items():
        W, b = _init(_seed(name, "w"), 3, 4, dt)
        Wf = np.asfortranarray(W)  # loss only reads W: any layout is fine
        r.catch(
            f"{key}.loss.",
            lambda Xi=Xi, Yi=Yi, Wf=Wf, b=b, key=key: _put(
                r, f"{key}.loss", K.loss(Xi, Yi, Wf, b, backend=backend)
            ),
        )
        st: dict = {}
        r.catch(
            f"{key}.epoch.",
            lambda Xi=Xi, Yi=Yi, W=W, b=b, st=st, key=key: _put(
                r,
                f"{key}.losses",
                K.epoch(
                    Xi, Yi, W, b, batch_size=16, lr=0.02, momentum=0.9, state=st, backend=backend
                ),
            ),
        )
        r[f"{key}.W"], r[f"{key}.b"] = W, b
        _state(r, f"{key}.state.", st)
        res = r.catch(
            f"{key}.train.",
            lambda Xi=Xi, Yi=Yi, W=W, b=b: K.train(
                Xi,
                Yi,
                W,
                b,
                batch_size=16,
                epochs=2,
                lr=[0.01, 0.02],
                eval_set=(Xi, Yi),
                backend=backend,
            ),
        )
        if res is not None:
            _train_result(r, f"{key}.train.", res)
        r[f"{key}.W2"], r[f"{key}.b2"] = W, b


def k_errors(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """Bad inputs: the exception type and message of each."""
    K = m.kernels
    X, Y = _problem(_seed(name), 20, 3, 2, dt)
    W, b = _init(_seed(name, "w"), 2, 3, dt)
    Xnan = X.copy()
    Xnan[3, 1] = np.nan
    other = np.float64 if dt is np.float32 else np.float32
    W_ro = W.copy()
    W_ro.setflags(write=False)
    W_wide = np.zeros((2, 6), dt)
    X_shared = X.copy()
    calls = {
        "W_shape": lambda: K.epoch(X, Y, W.T.copy(), b, batch_size=4, lr=0.1, backend=backend),
        "b_shape": lambda: K.epoch(X, Y, W, b[:1].copy(), batch_size=4, lr=0.1, backend=backend),
        "X_int": lambda: K.epoch(
            X.astype(np.int64), Y, W, b, batch_size=4, lr=0.1, backend=backend
        ),
        "Y_dtype": lambda: K.epoch(X, Y.astype(other), W, b, batch_size=4, lr=0.1, backend=backend),
        "Y_rows": lambda: K.epoch(X, Y[:-1], W, b, batch_size=4, lr=0.1, backend=backend),
        "X_1d": lambda: K.loss(X[:, 0], Y, W, b, backend=backend),
        "X_empty": lambda: K.epoch(X[:0], Y[:0], W, b, batch_size=4, lr=0.1, backend=backend),
        "batch0": lambda: K.epoch(X, Y, W, b, batch_size=0, lr=0.1, backend=backend),
        "batch_float": lambda: K.epoch(X, Y, W, b, batch_size=4.0, lr=0.1, backend=backend),
        "nesterov": lambda: K.epoch(
            X, Y, W, b, batch_size=4, lr=0.1, nesterov=True, backend=backend
        ),
        "X_nan": lambda: K.epoch(Xnan, Y, W, b, batch_size=4, lr=0.1, backend=backend),
        "lr_neg": lambda: K.epoch(X, Y, W, b, batch_size=4, lr=-0.1, backend=backend),
        "lr_nan": lambda: K.step(X, Y, W, b, lr=float("nan"), backend=backend),
        "lr_list_len": lambda: K.train(
            X, Y, W, b, batch_size=4, epochs=3, lr=[0.1, 0.2], backend=backend
        ),
        "momentum_neg": lambda: K.step(X, Y, W, b, lr=0.1, momentum=-0.5, backend=backend),
        "order_range": lambda: K.epoch(
            X, Y, W, b, batch_size=4, lr=0.1, order=[0, 1, 20], backend=backend
        ),
        "orders_shape": lambda: K.train(
            X,
            Y,
            W,
            b,
            batch_size=4,
            epochs=2,
            lr=0.1,
            orders=np.zeros((3, 5), np.int64),
            backend=backend,
        ),
        "state_type": lambda: K.step(X, Y, W, b, lr=0.1, state=[], backend=backend),
        "state_buf": lambda: K.step(
            X,
            Y,
            W,
            b,
            lr=0.1,
            momentum=0.9,
            state={"momentum_buffer_W": np.zeros((3, 3), dt)},
            backend=backend,
        ),
        "W_fortran": lambda: K.epoch(
            X, Y, np.asfortranarray(W), b, batch_size=4, lr=0.1, backend=backend
        ),
        "W_readonly": lambda: K.step(X, Y, W_ro, b, lr=0.1, backend=backend),
        "W_strided": lambda: K.step(X, Y, W_wide[:, ::2], b, lr=0.1, backend=backend),
        "W_list": lambda: K.step(X, Y, W.tolist(), b, lr=0.1, backend=backend),
        "W_shares_X": lambda: K.step(X_shared, Y, X_shared[:2], b, lr=0.1, backend=backend),
        "b_shares_W": lambda: K.step(X, Y, W, W[0, :2], lr=0.1, backend=backend),
        "sw_neg": lambda: K.step(X, Y, W, b, lr=0.1, sample_weight=-np.ones(20), backend=backend),
        "sw_shape": lambda: K.loss(X, Y, W, b, sample_weight=np.ones(3), backend=backend),
        "eval_shape": lambda: K.train(
            X, Y, W, b, batch_size=4, epochs=1, lr=0.1, eval_set=(X[:, :2], Y), backend=backend
        ),
        "eval_pair": lambda: K.train(
            X, Y, W, b, batch_size=4, epochs=1, lr=0.1, eval_set=(X,), backend=backend
        ),
        "n_threads0": lambda: K.step(X, Y, W, b, lr=0.1, n_threads=0, backend=backend),
        "backend_bad": lambda: K.loss(X, Y, W, b, backend="fortran"),
        "weight_decay": lambda: K.step(X, Y, W, b, lr=0.1, weight_decay="0.1", backend=backend),
        "flag_type": lambda: K.step(X, Y, W, b, lr=0.1, maximize=1, backend=backend),
    }
    for key, call in calls.items():
        r.catch(key + ".", call)
    r["W"], r["b"] = W, b  # untouched by every refused call


def k_threads(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """``n_threads=2`` on steps with ``batch_size * N * U >= 2**14`` (the threaded path)."""
    K = m.kernels
    X, Y = _problem(_seed(name), 1000, 64, 3, dt)
    Xv, Yv = _problem(_seed(name, "v"), 500, 64, 3, dt)
    W, b = _init(_seed(name, "w"), 3, 64, dt, scale=0.01)
    st: dict = {}
    res = K.train(
        X,
        Y,
        W,
        b,
        batch_size=128,
        epochs=2,
        lr=0.002,
        momentum=0.9,
        eval_set=(Xv, Yv),
        state=st,
        n_threads=2,
        backend=backend,
    )
    _train_result(r, "t.", res)
    r["t.W"], r["t.b"] = W, b
    _state(r, "t.state.", st)
    order = np.random.default_rng(_seed(name, "o")).permutation(1000)
    r["e.losses"] = K.epoch(
        X,
        Y,
        W,
        b,
        batch_size=256,
        lr=0.002,
        order=order,
        state=st,
        momentum=0.9,
        n_threads=2,
        backend=backend,
    )
    r["e.W"], r["e.b"] = W, b
    r["s.loss"] = K.step(X, Y, W, b, lr=0.001, n_threads=2, backend=backend)
    r["s.W"], r["s.b"] = W, b
    gW, gb, val = K.gradient(X, Y, W, b, backend=backend)
    r["g.gW"], r["g.gb"], r["g.loss"] = gW, gb, val


def k_large_m(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """``M`` = 5000 rows, ``N`` = ``U`` = 1 (1-D targets), several batch sizes."""
    K = m.kernels
    X, Y = _problem(_seed(name), 5000, 1, 1, dt, y1d=True)
    W, b = _init(_seed(name, "w"), 1, 1, dt)
    r["loss0"] = K.loss(X, Y, W, b, backend=backend)
    for i, bs in enumerate([64, 999, 5000]):
        r[f"e{i}.losses"] = K.epoch(X, Y, W, b, batch_size=bs, lr=0.01, backend=backend)
        r[f"e{i}.W"], r[f"e{i}.b"] = W, b
    res = K.train(
        X, Y, W, b, batch_size=128, epochs=3, lr=0.01, eval_set=(X[:100], Y[:100]), backend=backend
    )
    _train_result(r, "t.", res)
    r["t.W"], r["t.b"] = W, b


# ============================================================================ estimator cases


def _est(m: ModuleType, backend: str, **kw: Any) -> Any:
    return m.LinearRegressor(backend=backend, **kw)


def e_fit_basic(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """``fit`` with 2-D ``Y``, ragged last batch, the fast path with and without ``eval_set``."""
    X, Y = _problem(_seed(name), 120, 4, 3, dt)
    Xv, Yv = _problem(_seed(name, "v"), 1000, 4, 3, dt)
    est = _est(m, backend, lr=0.01, batch_size=32, epochs=5).fit(X, Y)
    _estimator(r, "a.", est, X)
    est = _est(m, backend, lr=0.01, batch_size=32, epochs=5).fit(X, Y, eval_set=(Xv, Yv))
    _estimator(r, "ev.", est, Xv)
    est = _est(m, backend, lr=0.01, batch_size=33, epochs=4, momentum=0.9).fit(
        X, Y, eval_set=(Xv, Yv)
    )
    _estimator(r, "mom.", est, X)
    est.fit(X, Y)  # refit the same estimator from scratch
    _estimator(r, "refit.", est, X)


def e_fit_1d_options(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """1-D ``y``, ``fit_intercept=False``, ``lr="auto"``, dampening, maximize, decay, ``l2``."""
    X, y = _problem(_seed(name), 77, 3, 1, dt, y1d=True)
    for i, kw in enumerate(
        [
            {"fit_intercept": False},
            {"momentum": 0.5, "dampening": 0.2},
            {"lr": 0.02, "weight_decay": 0.01, "decay_bias": False, "l2": 0.005},
            {"lr": 1e-4, "maximize": True, "batch_size": 100},
            {"lr": 0.02, "momentum": 0.9, "nesterov": True, "fit_intercept": False},
        ]
    ):
        kw = {"batch_size": 16, "epochs": 4, **kw}
        est = _est(m, backend, **kw).fit(X, y)
        _estimator(r, f"c{i}.", est, X)


def e_shuffle(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """``shuffle=True`` with ``random_state``, momentum, nesterov, ``eval_set``."""
    X, Y = _problem(_seed(name), 150, 5, 2, dt)
    Xv, Yv = _problem(_seed(name, "v"), 60, 5, 2, dt)
    est = _est(
        m,
        backend,
        lr=0.02,
        batch_size=16,
        epochs=4,
        shuffle=True,
        random_state=0,
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-3,
        decay_bias=False,
        l2=1e-3,
    ).fit(X, Y, eval_set=(Xv, Yv))
    _estimator(r, "a.", est, Xv)
    est = _est(m, backend, lr=0.02, batch_size=23, epochs=3, shuffle=True, random_state=12345).fit(
        X, Y[:, 1]
    )
    _estimator(r, "b.", est, X)


def e_early_stopping(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """``tol``/``n_iter_no_change`` with and without ``eval_set`` (best-epoch restore)."""
    X, Y = _problem(_seed(name), 100, 4, 2, dt, noise=0.5)
    Xv, Yv = _problem(_seed(name, "v"), 100, 4, 2, dt, noise=0.5)
    est = _est(
        m, backend, lr=0.005, batch_size=10, epochs=60, tol=1e-3, n_iter_no_change=3, momentum=0.5
    ).fit(X, Y, eval_set=(Xv, Yv))
    _estimator(r, "ev.", est, Xv)
    est = _est(
        m,
        backend,
        lr=0.05,
        batch_size=10,
        epochs=60,
        tol=1e-3,
        n_iter_no_change=2,
        shuffle=True,
        random_state=1,
    ).fit(X, Y)
    _estimator(r, "train.", est, X)


def e_target_loss(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """``target_loss`` stopping mid-epoch, with and without shuffle and ``eval_set``."""
    X, Y = _problem(_seed(name), 90, 3, 1, dt, noise=0.01)
    Xv, Yv = _problem(_seed(name, "v"), 40, 3, 1, dt, noise=0.01)
    probe = _est(m, backend, lr=0.05, batch_size=8, epochs=4).fit(X, Y)
    target = float(probe.history_["train_loss"][2])
    r["target"] = target
    for i, kw in enumerate(
        [
            {},
            {"shuffle": True, "random_state": 3},
            {"momentum": 0.9, "lr": 0.01},
        ]
    ):
        kw = {"lr": 0.05, "batch_size": 8, "epochs": 4, "target_loss": target, **kw}
        est = _est(m, backend, **kw).fit(X, Y, eval_set=(Xv, Yv))
        _estimator(r, f"c{i}.", est, X)


def e_drop_last(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """``drop_last=True`` with and without shuffle, then ``partial_fit``."""
    X, Y = _problem(_seed(name), 103, 3, 2, dt)
    est = _est(m, backend, lr=0.03, batch_size=10, epochs=3, drop_last=True).fit(X, Y)
    _estimator(r, "a.", est, X)
    est = _est(
        m,
        backend,
        lr=0.03,
        batch_size=10,
        epochs=3,
        drop_last=True,
        shuffle=True,
        random_state=7,
        momentum=0.9,
    ).fit(X, Y)
    _estimator(r, "b.", est, X)
    est.partial_fit(X, Y)
    _estimator(r, "b.pf.", est, X)


def e_schedules(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """Every ``linsgd.schedules`` class and a plain callable as ``lr``, then ``partial_fit``."""
    S = m.schedules
    X, Y = _problem(_seed(name), 64, 3, 2, dt)
    Xv, Yv = _problem(_seed(name, "v"), 32, 3, 2, dt)
    for key, lr in [
        ("step", S.StepLR(0.05, step_size=2, gamma=0.5)),
        ("exp", S.ExponentialLR(0.05, gamma=0.8)),
        ("cos", S.CosineAnnealingLR(0.05, T_max=3, eta_min=0.001)),
        ("lambda", S.LambdaLR(0.05, _sched_lambda)),
        ("callable", _lr_of_epoch),
    ]:
        est = _est(m, backend, lr=lr, batch_size=16, epochs=6, momentum=0.5).fit(
            X, Y, eval_set=(Xv, Yv)
        )
        _estimator(r, f"{key}.", est, X)
        est.partial_fit(X, Y)
        _estimator(r, f"{key}.pf.", est, X)


def e_init(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """``init="torch"`` (with and without bias), ``coef_init``/``intercept_init``."""
    X, Y = _problem(_seed(name), 50, 4, 2, dt)
    est = _est(m, backend, lr=0.02, batch_size=8, epochs=2, init="torch", random_state=5)
    _estimator(r, "torch.", est.fit(X, Y), X)
    est = _est(
        m,
        backend,
        lr=0.02,
        batch_size=8,
        epochs=2,
        init="torch",
        random_state=5,
        fit_intercept=False,
    )
    _estimator(r, "torch_nob.", est.fit(X, Y[:, 0]), X)
    W0, b0 = _init(_seed(name, "w"), 2, 4, np.float64)
    est = _est(m, backend, lr=0.02, batch_size=8, epochs=2)
    _estimator(r, "given.", est.fit(X, Y, coef_init=W0, intercept_init=b0), X)
    est = _est(m, backend, lr=0.02, batch_size=8, epochs=2)
    _estimator(r, "given1d.", est.fit(X, Y[:, 1], coef_init=W0[1], intercept_init=0.5), X)


def e_sample_weight(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """``sample_weight`` in ``fit`` (with zeros, with shuffle) and ``partial_fit``."""
    X, Y = _problem(_seed(name), 70, 3, 2, dt)
    sw = np.random.default_rng(_seed(name, "sw")).uniform(0.0, 3.0, 70)
    sw[::5] = 0.0
    est = _est(m, backend, lr=0.02, batch_size=16, epochs=3).fit(X, Y, sample_weight=sw)
    _estimator(r, "a.", est, X)
    est = _est(
        m, backend, lr=0.02, batch_size=16, epochs=3, shuffle=True, random_state=2, momentum=0.9
    ).fit(X, Y, sample_weight=sw.tolist())
    _estimator(r, "b.", est, X)
    est.partial_fit(X, Y, sample_weight=sw)
    _estimator(r, "b.pf.", est, X)


def e_partial_fit(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """``partial_fit`` from unfitted, momentum, ``eval_set`` only some of the time."""
    X, Y = _problem(_seed(name), 80, 4, 3, dt)
    Xv, Yv = _problem(_seed(name, "v"), 30, 4, 3, dt)
    est = _est(m, backend, lr=0.02, batch_size=16, momentum=0.9)
    for i, ev in enumerate([None, (Xv, Yv), None, (Xv, Yv)]):
        est.partial_fit(X, Y, eval_set=ev)
        _estimator(r, f"pf{i}.", est, X)
    est = _est(m, backend, lr=0.02, batch_size=16, momentum=0.9, shuffle=True, random_state=4)
    for i in range(3):
        est.partial_fit(X, Y[:, 0])
        _estimator(r, f"shuf{i}.", est, X)


def e_pickle_partial_fit(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """Pickle round trip of a fitted model (momentum, shuffle, 2-D y), then ``partial_fit``."""
    X, Y = _problem(_seed(name), 60, 3, 2, dt)
    est = _est(
        m, backend, lr=0.02, batch_size=16, epochs=3, momentum=0.9, shuffle=True, random_state=3
    ).fit(X, Y, eval_set=(X, Y))
    _estimator(r, "fit.", est, X)
    clone = pickle.loads(pickle.dumps(est))
    _estimator(r, "clone.", clone, X)
    for i in range(2):
        clone.partial_fit(X, Y)
        _estimator(r, f"clone.pf{i}.", clone, X)


def e_pickle_partial_fit_1d(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """As :func:`e_pickle_partial_fit` with 1-D ``y`` (the baseline raises: a known bug)."""
    X, Y = _problem(_seed(name), 60, 3, 1, dt, y1d=True)
    est = _est(
        m, backend, lr=0.02, batch_size=16, epochs=3, momentum=0.9, shuffle=True, random_state=3
    ).fit(X, Y)
    _estimator(r, "fit.", est, X)
    clone = pickle.loads(pickle.dumps(est))
    _estimator(r, "clone.", clone, X)
    for i in range(2):
        clone.partial_fit(X, Y)  # the baseline raises ValueError here
        _estimator(r, f"clone.pf{i}.", clone, X)


def e_diverge(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """A diverging ``fit``: ``DivergenceError`` with epoch/step; the model stays unchanged."""
    X, Y = _problem(_seed(name), 50, 4, 2, dt)
    X = X * 10
    est = _est(m, backend, lr=0.001, batch_size=8, epochs=2).fit(X, Y)
    _estimator(r, "good.", est, X)
    for i, kw in enumerate(
        [
            {"lr": 10.0},
            {"lr": 10.0, "shuffle": True, "random_state": 0, "momentum": 0.9},
            {"lr": 1e30, "tol": 1e-3},
        ]
    ):
        est.set_params(**kw)
        r.catch(f"fit{i}.", lambda: est.fit(X, Y))
        _estimator(r, f"after{i}.", est, X)
    r.catch("pf.", lambda: est.partial_fit(X, Y))
    _estimator(r, "after_pf.", est, X)


def e_errors(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """Bad inputs and parameters of the estimator: exception type and message."""
    X, Y = _problem(_seed(name), 30, 3, 2, dt)
    Xnan = X.copy()
    Xnan[0, 0] = np.inf
    E = m.LinearRegressor
    fitted = _est(m, backend, lr=0.01, batch_size=8, epochs=1).fit(X, Y)
    calls = {
        "X_nan": lambda: _est(m, backend, lr=0.01).fit(Xnan, Y),
        "y_rows": lambda: _est(m, backend, lr=0.01).fit(X, Y[:-1]),
        "y_3d": lambda: _est(m, backend, lr=0.01).fit(X, Y[:, :, None]),
        "lr_str": lambda: _est(m, backend, lr="fast").fit(X, Y),
        "lr_neg": lambda: _est(m, backend, lr=-1.0).fit(X, Y),
        "lr_bool": lambda: _est(m, backend, lr=True).fit(X, Y),
        "batch0": lambda: _est(m, backend, lr=0.01, batch_size=0).fit(X, Y),
        "epochs_float": lambda: _est(m, backend, lr=0.01, epochs=2.5).fit(X, Y),
        "nesterov": lambda: _est(m, backend, lr=0.01, nesterov=True).fit(X, Y),
        "init_bad": lambda: _est(m, backend, lr=0.01, init="ones").fit(X, Y),
        "solver_bad": lambda: _est(m, backend, lr=0.01, solver="adam").fit(X, Y),
        "dtype_bad": lambda: _est(m, backend, lr=0.01, dtype="int32").fit(X, Y),
        "backend_bad": lambda: E(lr=0.01, backend="tpu").fit(X, Y),
        "drop_last_all": lambda: _est(m, backend, lr=0.01, batch_size=31, drop_last=True).fit(X, Y),
        "sw_neg": lambda: _est(m, backend, lr=0.01).fit(X, Y, sample_weight=-np.ones(30)),
        "sw_zero": lambda: _est(m, backend, lr=0.01).fit(X, Y, sample_weight=np.zeros(30)),
        "eval_feat": lambda: _est(m, backend, lr=0.01).fit(X, Y, eval_set=(X[:, :2], Y)),
        "eval_type": lambda: _est(m, backend, lr=0.01).fit(X, Y, eval_set=X),
        "coef_init": lambda: _est(m, backend, lr=0.01).fit(X, Y, coef_init=np.zeros(5)),
        "pf_features": lambda: pickle.loads(pickle.dumps(fitted)).partial_fit(X[:, :2], Y),
        "pf_outputs": lambda: pickle.loads(pickle.dumps(fitted)).partial_fit(X, Y[:, 0]),
        "predict_features": lambda: fitted.predict(X[:, :2]),
        "predict_unfitted": lambda: _est(m, backend).predict(X),
        "X_str": lambda: _est(m, backend, lr=0.01).fit([["a", "b", "c"]] * 30, Y),
    }
    for key, call in calls.items():
        r.catch(key + ".", call)


def e_convert_inputs(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """Inputs that need converting: lists, Fortran order, strided, dtype casts."""
    X, Y = _problem(_seed(name), 64, 4, 2, dt)
    name_dt = np.dtype(dt).name
    other = "float64" if name_dt == "float32" else "float32"
    for key, (Xi, Yi, kw) in {
        "lists": (X.tolist(), Y.tolist(), {"dtype": name_dt}),
        "fortran": (np.asfortranarray(X), np.asfortranarray(Y), {}),
        "strided": (np.repeat(X, 2, axis=0)[::2], Y[:, ::-1], {}),
        "cast": (X, Y, {"dtype": other}),
        "int_y": (X, np.rint(Y * 10).astype(np.int64), {}),
        "f32_from_list": (
            [[np.float32(v) for v in row] for row in X.tolist()],
            Y[:, 0].tolist(),
            {"dtype": "float32"},
        ),
    }.items():
        est = _est(m, backend, lr=0.02, batch_size=10, epochs=2, momentum=0.5, **kw)
        fitted = r.catch(
            f"{key}.", lambda Xi=Xi, Yi=Yi, est=est: est.fit(Xi, Yi, eval_set=(Xi, Yi))
        )
        if fitted is not None:
            _estimator(r, f"{key}.", fitted, Xi)
            fitted.partial_fit(Xi, Yi)
            _estimator(r, f"{key}.pf.", fitted, np.asarray(Xi))


def e_threads(m: ModuleType, r: Record, backend: str, dt: Any, name: str) -> None:
    """``n_threads=2`` with ``batch_size * N * U >= 2**14``, ``eval_set``, momentum, shuffle."""
    X, Y = _problem(_seed(name), 800, 64, 3, dt)
    Xv, Yv = _problem(_seed(name, "v"), 300, 64, 3, dt)
    est = _est(m, backend, lr=0.002, batch_size=128, epochs=2, momentum=0.9, n_threads=2)
    _estimator(r, "a.", est.fit(X, Y, eval_set=(Xv, Yv)), Xv)
    est = _est(
        m, backend, lr=0.002, batch_size=100, epochs=2, shuffle=True, random_state=9, n_threads=2
    )
    _estimator(r, "b.", est.fit(X, Y), X)


# ============================================================================ the case list

_FAMILIES: list[Callable[..., None]] = [
    k_loss_gradient,
    k_step_state,
    k_epoch_ragged,
    k_epoch_big_batch,
    k_epoch_order_weights,
    k_train_orders_eval,
    k_train_target_loss,
    k_diverge,
    k_convert_inputs,
    k_errors,
    k_threads,
    k_large_m,
    e_fit_basic,
    e_fit_1d_options,
    e_shuffle,
    e_early_stopping,
    e_target_loss,
    e_drop_last,
    e_schedules,
    e_init,
    e_sample_weight,
    e_partial_fit,
    e_pickle_partial_fit,
    e_pickle_partial_fit_1d,
    e_diverge,
    e_errors,
    e_convert_inputs,
    e_threads,
]


def _family_name(fn: Callable[..., None]) -> str:
    name = fn.__name__
    return ("est_" + name[2:]) if name.startswith("e_") else ("kernels_" + name[2:])


class Case:
    """One case: a family function run for one backend and dtype.

    Parameters
    ----------
    fn : callable
        ``fn(module, record, backend, dtype, family_name)``.
    backend : str
        ``"cpp"`` or ``"numba"``.
    dtype : type
        ``np.float32`` or ``np.float64``.
    """

    def __init__(self, fn: Callable[..., None], backend: str, dtype: Any) -> None:
        self.fn, self.backend, self.dtype = fn, backend, dtype
        self.family = _family_name(fn)
        self.name = f"{self.family}.{backend}.{'f32' if dtype is np.float32 else 'f64'}"

    def run(self, module: ModuleType, verbose: bool = False) -> Record:
        """Run the case on ``module``; an exception it does not catch is recorded too.

        Parameters
        ----------
        module : module
            The ``linsgd`` package (or a renamed copy of it).
        verbose : bool
            Print the traceback of an exception the case did not catch.

        Returns
        -------
        Record
            Everything recorded, up to the exception if one escaped (then under
            ``__raised__.type`` / ``__raised__.msg``).
        """
        r = Record()
        try:
            self.fn(module, r, self.backend, self.dtype, self.family)
        except Exception as exc:
            r.exception(EXC_FIELD + ".", exc)
            if verbose:
                traceback.print_exc()
        return r


def cases() -> list[Case]:
    """The fixed list of cases: one per family, backend and dtype.

    Returns
    -------
    list of Case
        Names look like ``kernels_epoch_ragged.cpp.f32``.
    """
    return [Case(fn, backend, dt) for fn in _FAMILIES for backend in BACKENDS for dt in DTYPES]


def family(case_name: str) -> str:
    """The family part of a case name (``"est_drop_last.cpp.f64"`` -> ``"est_drop_last"``)."""
    return case_name.split(".", 1)[0]


def run_all(module: ModuleType, selected: list[str] | None, verbose: bool) -> dict[str, Record]:
    """Run the selected cases on ``module``.

    Parameters
    ----------
    module : module
        The package to run.
    selected : list of str or None
        Substrings; a case runs when its name contains one of them (all cases when None).
    verbose : bool
        See :meth:`Case.run`.

    Returns
    -------
    dict
        ``case name -> Record``, in case order.
    """
    return {
        c.name: c.run(module, verbose)
        for c in cases()
        if not selected or any(s in c.name for s in selected)
    }


# ============================================================================ comparison


def _ulps(a: np.ndarray, b: np.ndarray) -> int:
    """The largest distance in units in the last place between finite floats ``a`` and ``b``."""
    itype = np.int32 if a.dtype.itemsize == 4 else np.int64
    lowest = -(2 ** (8 * a.dtype.itemsize - 1))

    def ordered(x: np.ndarray) -> list[int]:  # bit patterns as monotone integers
        return [v if v >= 0 else lowest - v for v in x.view(itype).tolist()]

    return max(abs(p - q) for p, q in zip(ordered(a), ordered(b)))


def compare_values(a: tuple[str, np.ndarray], b: tuple[str, np.ndarray]) -> str | None:
    """Compare two encoded values bit for bit.

    Parameters
    ----------
    a, b : (str, ndarray)
        Values from :func:`encode` (old, new).

    Returns
    -------
    str or None
        None when they agree (floats: the same bits, or NaN in both); otherwise a short
        description of the difference (for floats, how many elements differ and the largest
        difference in units in the last place, "eps", and in absolute value).
    """
    (ka, xa), (kb, xb) = a, b
    if ka != kb:
        return f"kind {ka} -> {kb}"
    if ka in ("str", "repr"):
        sa, sb = xa.item(), xb.item()
        return None if sa == sb else f"{sa[:60]!r} -> {sb[:60]!r}"
    if xa.dtype != xb.dtype:
        return f"dtype {xa.dtype} -> {xb.dtype}"
    if xa.shape != xb.shape:
        return f"shape {xa.shape} -> {xb.shape}"
    if xa.dtype.kind != "f":
        if np.array_equal(xa, xb):
            return None
        if xa.dtype.kind in "US" or xa.ndim == 0:
            return f"{xa.tolist()!r} -> {xb.tolist()!r}"
        return f"{int(np.count_nonzero(xa != xb))}/{xa.size} elements differ"
    fa, fb = xa.reshape(-1), xb.reshape(-1)
    width = fa.dtype.itemsize
    same = (fa.view(np.uint8).reshape(-1, width) == fb.view(np.uint8).reshape(-1, width)).all(1)
    same |= np.isnan(fa) & np.isnan(fb)
    if same.all():
        return None
    bad = ~same
    msg = f"{int(bad.sum())}/{bad.size} differ"
    finite = bad & np.isfinite(fa) & np.isfinite(fb)
    if finite.any():
        delta = np.abs(fa[finite].astype(np.float64) - fb[finite].astype(np.float64)).max()
        ulps = _ulps(fa[finite], fb[finite])
        msg += f", max {ulps} eps (|delta| {delta:.3g})" if ulps else ", -0.0 vs 0.0"
    nonfinite = int(bad.sum() - finite.sum())
    if nonfinite:
        msg += f", {nonfinite} NaN/inf mismatch"
    return msg


def compare_records(old: Record, new: Record) -> list[str]:
    """Every difference between two records of one case.

    Parameters
    ----------
    old, new : Record
        The baseline's and the new code's record.

    Returns
    -------
    list of str
        ``"field: description"`` for each field that differs, is missing or is extra; empty
        when the records agree bit for bit. Exceptions only the new code raised come first,
        then values that differ, then the fields only one side recorded.
    """
    raised, first, last = [], [], []
    for field, value in old.fields.items():
        if field not in new.fields:
            last.append(f"{field}: missing in new")
            continue
        d = compare_values(value, new.fields[field])
        if d is not None:
            first.append(f"{field}: {d}")
    for field, (_, data) in new.fields.items():
        if field in old.fields:
            continue
        if field.endswith(".type") and field[:-5] + ".msg" in new.fields:
            msg = new.fields[field[:-5] + ".msg"][1].item()
            raised.append(f"{field[:-5]}: only new raised {data.item()}: {msg[:80]}")
        elif not field.endswith(".msg"):
            last.append(f"{field}: only in new")
    return raised + first + last


def _raised(r: Record) -> bool:
    return EXC_FIELD + ".type" in r.fields


def _exc_text(r: Record) -> str:
    t = r.fields[EXC_FIELD + ".type"][1].item()
    msg = r.fields[EXC_FIELD + ".msg"][1].item()
    return f"{t}: {msg[:100]}"


def report(old: dict[str, Record], new: dict[str, Record]) -> int:
    """Print one line per case and a summary; return the exit status.

    Parameters
    ----------
    old, new : dict
        ``case name -> Record`` of the baseline and of the new code.

    Returns
    -------
    int
        1 on any difference (or an unexpected "baseline raised, new succeeded"), else 0.
    """
    n_ok = n_diff = 0
    fixed: list[str] = []
    unexpected_fixed = False
    for name, rec in new.items():
        if name not in old:
            print(f"SKIP  {name}: not in the baseline record")
            continue
        base = old[name]
        if _raised(base) and not _raised(new[name]):
            # compare what the baseline recorded before it raised
            common = Record()
            common.fields = {f: v for f, v in rec.fields.items() if f in base.fields}
            partial = Record()
            partial.fields = {f: v for f, v in base.fields.items() if not f.startswith(EXC_FIELD)}
            diffs = compare_records(partial, common)
            if diffs:
                n_diff += 1
                print(f"DIFF  {name}: before the baseline's exception: {'; '.join(diffs[:4])}")
                continue
            known = family(name) in KNOWN_BASELINE_BUGS
            unexpected_fixed |= not known
            tag = "known baseline bug" if known else "UNEXPECTED"
            fixed.append(f"{name} ({tag}; baseline: {_exc_text(base)})")
            print(f"FIXED {name}: baseline raised, new succeeded ({tag})")
            continue
        diffs = compare_records(base, rec)
        if diffs and _raised(rec):
            n_diff += 1
            first = [d for d in diffs if "missing in new" not in d and EXC_FIELD not in d]
            before = f"; before it: {'; '.join(first[:3])}" if first else ""
            also = f" (baseline raised {_exc_text(base)})" if _raised(base) else ""
            print(f"DIFF  {name}: new raised {_exc_text(rec)}{also}{before}")
        elif diffs:
            n_diff += 1
            more = f" (+{len(diffs) - 4} more)" if len(diffs) > 4 else ""
            print(f"DIFF  {name}: {'; '.join(diffs[:4])}{more}")
        else:
            n_ok += 1
            extra = f" (both raised {_exc_text(rec)})" if _raised(rec) else ""
            print(f"OK    {name}{extra}")
    missing = [n for n in old if n not in new]
    print()
    print(
        f"{len(new)} cases: {n_ok} OK, {n_diff} DIFF, {len(fixed)} baseline raised / new "
        f"succeeded" + (f", {len(missing)} baseline cases not run" if missing else "")
    )
    if fixed:
        print("baseline raised, new succeeded:")
        for line in fixed:
            print("  " + line)
    return 1 if (n_diff or unexpected_fixed) else 0


# ============================================================================ files


def save(path: str, records: dict[str, Record], module: ModuleType) -> None:
    """Store records flattened into an ``.npz``: one array per ``case/field`` key.

    Parameters
    ----------
    path : str
        Output file.
    records : dict
        ``case name -> Record``.
    module : module
        The package that produced them (its name and version are stored too).
    """
    arrays: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    for case, rec in records.items():
        for field, (kind, data) in rec.fields.items():
            key = f"{case}/{field}"
            arrays[key] = data
            kinds[key] = kind
    meta = {
        "kinds": kinds,
        "order": list(records),
        "module": module.__name__,
        "version": getattr(module, "__version__", "?"),
        "numpy": np.__version__,
    }
    arrays["__meta__"] = np.array(json.dumps(meta), dtype=np.str_)
    np.savez_compressed(path, **arrays)


def load(path: str) -> dict[str, Record]:
    """Read records written by :func:`save`.

    Parameters
    ----------
    path : str
        An ``.npz`` from ``record``.

    Returns
    -------
    dict
        ``case name -> Record``, in the recorded order.
    """
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(f["__meta__"].item())
        out = {case: Record() for case in meta["order"]}
        for key, kind in meta["kinds"].items():
            case, field = key.split("/", 1)
            out[case].fields[field] = (kind, f[key])
    return out


# ============================================================================ command line


def _import(name: str) -> ModuleType:
    module = importlib.import_module(name)
    print(
        f"# {name} {getattr(module, '__version__', '?')} from {module.__file__}; "
        f"backends {module.available_backends()}"
    )
    return module


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (``sys.argv[1:]`` when None).

    Returns
    -------
    int
        The exit status.
    """
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-k",
        action="append",
        default=None,
        metavar="SUBSTRING",
        help="run only cases whose name contains this (repeatable)",
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", help="print tracebacks of unexpected exceptions"
    )
    p = sub.add_parser("compare", parents=[common], help="old and new in this process")
    p.add_argument("--old", default="linsgd_base", help="baseline package (linsgd_base)")
    p.add_argument("--new", default="linsgd", help="new package (linsgd)")
    p = sub.add_parser("record", parents=[common], help="record one package into an .npz")
    p.add_argument("out", help="output .npz")
    p.add_argument("--module", default="linsgd", help="package to record (linsgd)")
    p = sub.add_parser("compare-file", parents=[common], help="a recorded .npz vs a package")
    p.add_argument("file", help=".npz written by record (the baseline)")
    p.add_argument("--module", default="linsgd", help="package to compare with (linsgd)")
    sub.add_parser("list", help="print the case names")
    args = ap.parse_args(argv)

    if args.cmd == "list":
        names = [c.name for c in cases()]
        print("\n".join(names))
        print(f"# {len(names)} cases")
        return 0
    t0 = time.perf_counter()
    if args.cmd == "record":
        module = _import(args.module)
        records = run_all(module, args.k, args.verbose)
        save(args.out, records, module)
        raised = [n for n, r in records.items() if _raised(r)]
        print(
            f"recorded {len(records)} cases of {args.module} into {args.out} "
            f"({time.perf_counter() - t0:.1f} s)"
        )
        for n in raised:
            print(f"  raised: {n}: {_exc_text(records[n])}")
        return 0
    if args.cmd == "compare":
        old_mod, new_mod = _import(args.old), _import(args.new)
        if old_mod is new_mod:
            print("warning: --old and --new are the same module", file=sys.stderr)
        old = run_all(old_mod, args.k, args.verbose)
        new = run_all(new_mod, args.k, args.verbose)
    else:
        old = load(args.file)
        if args.k:
            old = {n: r for n, r in old.items() if any(s in n for s in args.k)}
        new = run_all(_import(args.module), args.k, args.verbose)
    status = report(old, new)
    print(f"({time.perf_counter() - t0:.1f} s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
