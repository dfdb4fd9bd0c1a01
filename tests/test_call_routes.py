"""A call that needs no conversion gives exactly what a converted call gives.

``linsgd.kernels`` hands a call to the backend's ``train`` as it is first; the backend checks
it (``_core.train``'s compiled check, strict: exact numpy arrays of the layout it reads, Python
numbers and bools) and runs it, or refuses it before writing anything, and the call is then
converted by ``linsgd._call.prepare`` (every check with its message). ``LinearRegressor`` trains
through the public kernel API, skips the conversion of data that needs none and keeps its
checked parameters between fits. Each is compared here with the converted route, forced, bit
for bit; and ``_core.train`` called directly must refuse bad calls with TypeError/ValueError
before writing anything, never crash.
"""

from __future__ import annotations

import numpy as np
import pytest

import linsgd._call as call_module
import linsgd._validation as validation
from helpers import DTYPES
from linsgd import DivergenceError, LinearRegressor, kernels
from linsgd.schedules import StepLR
from reference import make_problem

try:
    from linsgd import _core
except ImportError:  # a numba-only install
    _core = None

needs_core = pytest.mark.skipif(
    _core is None, reason="the compiled module linsgd._core is not built"
)


@pytest.fixture
def long_way(monkeypatch):
    """Within the test, every kernels call is converted by prepare first (as without _core)."""

    def force():
        monkeypatch.setattr(call_module, "_core", None)

    return force


def _same(a, b):
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


CASES = {
    "plain": dict(),
    "1-D Y": dict(y_1d=True),
    "no bias": dict(no_bias=True),
    "momentum": dict(momentum=0.9, dampening=0.1),
    "nesterov, decay": dict(momentum=0.8, nesterov=True, weight_decay=0.01, decay_bias=False),
    "l2, maximize": dict(l2=0.01, maximize=True, lr=-0.0),
    "eval_set": dict(eval_set=True),
    "eval_set 1-D": dict(eval_set=True, y_1d=True),
    "target_loss": dict(target_loss=0.3),
    "diverges": dict(lr=1e3),
    "int scalars": dict(lr=1, weight_decay=0, momentum=0, batch_size=7),
    "numpy scalars": dict(lr=np.float64(0.05), weight_decay=np.float32(0.01)),
    "lr per epoch": dict(lr_array=True),
    "batch > M": dict(batch_size=1000),
    "no checks": dict(check_finite=False),
    "state kept": dict(state=True, momentum=0.9),
}


def _call(case, dt, backend):
    c = dict(CASES[case])
    U = 1 if c.pop("y_1d", False) else 2
    X, Y, W, b = make_problem(23, 4, U, dt, seed=2, y_1d=U == 1)
    if c.pop("no_bias", False):
        b = None
    kw = dict(batch_size=c.pop("batch_size", 5), epochs=3, lr=c.pop("lr", 0.05), backend=backend)
    if c.pop("lr_array", False):
        kw["lr"] = np.array([0.05, 0.02, 0.01])
    if c.pop("eval_set", False):
        Xv, Yv, _, _ = make_problem(9, 4, U, dt, seed=3, y_1d=U == 1)
        kw["eval_set"] = (Xv, Yv)
    state = {} if c.pop("state", False) else None
    kw.update(c)
    out = {}
    if state is not None:
        kernels.train(X, Y, W, b, state=state, **kw)  # buffers to start from
        out["step0"] = state["step"]
    res = kernels.train(X, Y, W, b, state=state, **kw)
    out.update(
        W=W,
        b=b,
        losses=res.losses,
        valid=res.valid_losses,
        steps=res.steps,
        epochs=res.epochs,
        status=res.status,
    )
    if state:
        out.update(
            bw=state.get("momentum_buffer_W"), bb=state.get("momentum_buffer_b"), step=state["step"]
        )
    return out


@pytest.mark.parametrize("dt", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("case", list(CASES))
def test_kernels_train_direct_call_is_the_converted_call(case, dt, backend, long_way):
    with np.errstate(all="ignore"):
        fast = _call(case, dt, backend)
        long_way()
        slow = _call(case, dt, backend)
    assert fast.keys() == slow.keys()
    for k in fast:
        assert _same(fast[k], slow[k]) if isinstance(fast[k], np.ndarray) else fast[k] == slow[k], k


@pytest.mark.parametrize("dt", DTYPES, ids=["float64", "float32"])
def test_epoch_and_step_direct_call_is_the_converted_call(dt, backend, long_way):
    def run():
        X, Y, W, b = make_problem(17, 3, 1, dt, seed=4, y_1d=True)
        state = {}
        a = kernels.epoch(
            X, Y, W, b, batch_size=4, lr=0.05, momentum=0.9, state=state, backend=backend
        )
        s = kernels.step(X[:6], Y[:6], W, b, lr=0.05, momentum=0.9, state=state, backend=backend)
        with pytest.raises(DivergenceError) as info:
            kernels.epoch(
                X, Y, W, b, batch_size=4, lr=1e200 if dt == np.float64 else 1e30, backend=backend
            )
        return a, s, W, b, state["momentum_buffer_W"], (info.value.epoch, info.value.step)

    with np.errstate(all="ignore"):
        fast = run()
        long_way()
        slow = run()
    for f, s in zip(fast, slow):
        assert _same(f, s) if isinstance(f, np.ndarray) else f == s


ODD_INPUTS = {
    "Fortran X": lambda X, Y: (np.asfortranarray(X), Y),
    "strided Y": lambda X, Y: (X, np.repeat(Y, 2)[::2]),
    "list Y": lambda X, Y: (X, Y.tolist()),
    "ndarray subclass": lambda X, Y: (X.view(_Sub), Y.view(_Sub)),
    "byte-swapped X": lambda X, Y: (X.astype(X.dtype.newbyteorder()), Y),
    "read-only X": lambda X, Y: (_readonly(X), _readonly(Y)),
}


class _Sub(np.ndarray):
    pass


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("odd", list(ODD_INPUTS))
def test_inputs_the_backend_refuses_train_the_same(odd, backend):
    X, Y, W0, b0 = make_problem(19, 3, 1, np.float64, seed=9, y_1d=True)
    ref_W, ref_b = W0.copy(), b0.copy()
    ref = kernels.train(X, Y, ref_W, ref_b, batch_size=4, epochs=2, lr=0.05, backend=backend)
    X2, Y2 = ODD_INPUTS[odd](X, Y)
    W, b = W0.copy(), b0.copy()
    got = kernels.train(X2, Y2, W, b, batch_size=4, epochs=2, lr=0.05, backend=backend)
    assert _same(got.losses, ref.losses) and _same(W, ref_W) and _same(b, ref_b)


# ----------------------------------------------------------------------------- the estimator


ESTIMATOR_CASES = {
    "defaults": (dict(), dict()),
    "numeric lr": (dict(lr=0.01, batch_size=33), dict()),
    "eval_set": (dict(lr=0.01, batch_size=33), dict(eval_set=True)),
    "momentum, wd": (dict(lr=0.01, momentum=0.9, weight_decay=1e-3), dict(eval_set=True)),
    "schedule": (dict(lr=StepLR(0.05, 2, 0.5), momentum=0.5), dict()),
    "early stopping": (dict(lr=0.01, tol=1e-3, n_iter_no_change=2, epochs=30), dict(eval_set=True)),
    "target_loss": (dict(lr=0.01, target_loss=2.0, epochs=50), dict()),
    "shuffle": (dict(lr=0.01, shuffle=True, random_state=3, init="torch"), dict(eval_set=True)),
    "no intercept, 2 outputs": (dict(lr=0.01, fit_intercept=False), dict(U=2)),
    "float32 model of float64 data": (dict(lr=0.01, dtype="float32"), dict()),
    "sample weights": (dict(lr=0.01), dict(sw=True)),
    "initial parameters": (dict(lr=0.01), dict(eval_set=True, init=True)),
    "initial parameters, no intercept": (dict(lr=0.01, fit_intercept=False), dict(init=True)),
}


def _fit(case, dt):
    params, how = ESTIMATOR_CASES[case]
    U = how.get("U", 1)
    X, Y, _, _ = make_problem(100, 4, U, dt, seed=12, y_1d=U == 1)
    kw = {}
    if how.get("eval_set"):
        Xv, Yv, _, _ = make_problem(500, 4, U, dt, seed=13, y_1d=U == 1)
        kw["eval_set"] = (Xv, Yv)
    if how.get("sw"):
        kw["sample_weight"] = np.random.default_rng(0).uniform(0.5, 2.0, 100)
    if how.get("init"):
        kw["coef_init"] = np.linspace(-0.5, 0.5, 4)
        if params.get("fit_intercept", True):
            kw["intercept_init"] = 0.25
    m = LinearRegressor(**params).fit(X, Y, **kw)
    m.partial_fit(X, Y)
    return m


FITTED = ("coef_", "intercept_", "n_iter_", "t_", "lr_history_", "best_epoch_")


@pytest.mark.parametrize("dt", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("case", list(ESTIMATOR_CASES))
def test_estimator_direct_call_is_the_converted_call(case, dt, monkeypatch, long_way):
    fast = _fit(case, dt)
    long_way()
    monkeypatch.setattr(validation, "_ready", lambda a, dt: False)  # convert as any input
    slow = _fit(case, dt)
    for name in FITTED:
        f, s = getattr(fast, name), getattr(slow, name)
        assert _same(f, s) if isinstance(f, np.ndarray) else f == s, name
    assert fast.history_.keys() == slow.history_.keys()
    for k in fast.history_:
        assert _same(fast.history_[k], slow.history_[k]), k
    fs, ss = fast._optimizer_state, slow._optimizer_state
    assert fs.keys() == ss.keys()
    assert all(_same(fs[k], ss[k]) if isinstance(fs[k], np.ndarray) else fs[k] == ss[k] for k in fs)


def test_estimator_checks_changed_parameters_again():
    X, y, _, _ = make_problem(40, 3, 1, np.float64, seed=1, y_1d=True)
    m = LinearRegressor(lr=0.01, epochs=2).fit(X, y)
    first = m.coef_.copy()
    m.set_params(batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        m.fit(X, y)
    m.batch_size = 8
    m.epochs = 3.0
    with pytest.raises(TypeError, match="epochs"):
        m.fit(X, y)
    m.epochs = 2
    m.lr = True
    with pytest.raises(TypeError, match="lr"):
        m.fit(X, y)
    m.lr = 0.01
    m.batch_size = 32
    assert np.array_equal(m.fit(X, y).coef_, first)
    m.set_params(lr=0.02)
    assert not np.array_equal(m.fit(X, y).coef_, first)


def test_estimator_checks_the_backend_every_fit(monkeypatch):
    X, y, _, _ = make_problem(40, 3, 1, np.float64, seed=1, y_1d=True)
    m = LinearRegressor(lr=0.01, epochs=2).fit(X, y)
    monkeypatch.setenv("LINSGD_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="LINSGD_BACKEND"):
        m.fit(X, y)


@pytest.mark.parametrize("where", ["X", "y", "X_valid", "y_valid"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_estimator_still_refuses_non_finite_data(where, bad):
    X, y, _, _ = make_problem(40, 3, 1, np.float64, seed=1, y_1d=True)
    Xv, yv, _, _ = make_problem(4000, 3, 1, np.float64, seed=2, y_1d=True)
    arrays = dict(X=X, y=y, X_valid=Xv, y_valid=yv)
    arrays[where] = arrays[where].copy()
    arrays[where].flat[-1] = bad
    m = LinearRegressor(lr=0.01, epochs=2)
    with pytest.raises(ValueError, match="NaN or infinity"):
        m.fit(arrays["X"], arrays["y"], eval_set=(arrays["X_valid"], arrays["y_valid"]))


# ----------------------------------------------------------------------------- _core.train


def _train_args(dt=np.float64, **change):
    X, Y, W, b = make_problem(10, 3, 1, dt, seed=1, y_1d=True)
    a = dict(
        X=X,
        Y=Y,
        W=W,
        b=b,
        order=None,
        batch_size=4,
        lr=0.1,
        epochs=2,
        weight_decay=0.0,
        decay_bias=True,
        l2=0.0,
        momentum=0.0,
        dampening=0.0,
        nesterov=False,
        maximize=False,
        buf_W=None,
        buf_b=None,
        momentum_initialized=False,
        X_valid=None,
        Y_valid=None,
        target_loss=None,
        sample_weight=None,
        threads=1,
        flags=0,
    )
    a.update(change)
    return a


def _with_last(a, v):
    a = a.copy()
    a.flat[-1] = v
    return a


def _masked(a):
    return np.ma.masked_array(a, mask=np.zeros(a.shape, bool))


RUN_REFUSALS = {
    "X subclass": dict(X=lambda a: _masked(a["X"])),
    "Y masked": dict(Y=lambda a: _masked(a["Y"])),
    "X list": dict(X=lambda a: a["X"].tolist()),
    "X float32": dict(X=lambda a: a["X"].astype(np.float32)),
    "X Fortran": dict(X=lambda a: np.asfortranarray(np.c_[a["X"], a["X"]])[:, :3]),
    "Y 1-D, 2 outputs": dict(W=lambda a: np.zeros((2, 3)), b=lambda a: np.zeros(2)),
    "Y rows": dict(Y=lambda a: a["Y"][:-1].copy()),
    "W read-only": dict(W=lambda a: _readonly(a["W"])),
    "b aliases W": dict(b=lambda a: a["W"][0, :1]),
    "W aliases X": dict(W=lambda a: a["X"][:1]),
    "batch_size 0": dict(batch_size=lambda a: 0),
    "batch_size float": dict(batch_size=lambda a: 4.0),
    "epochs negative": dict(epochs=lambda a: -1),
    "epochs float": dict(epochs=lambda a: 2.0),
    "lr negative": dict(lr=lambda a: -0.1),
    "lr NaN": dict(lr=lambda a: float("nan")),
    "lr list": dict(lr=lambda a: [0.1, 0.1]),
    "lr array short": dict(lr=lambda a: np.full(1, 0.1)),
    "lr array negative": dict(lr=lambda a: np.array([0.1, -0.1])),
    "lr float32 array": dict(lr=lambda a: np.full(2, 0.1, np.float32)),
    "weight_decay negative": dict(weight_decay=lambda a: -1.0),
    "weight_decay bool": dict(weight_decay=lambda a: True),
    "weight_decay numpy float32": dict(weight_decay=lambda a: np.float32(0.1)),
    "momentum negative": dict(momentum=lambda a: -0.5),
    "dampening inf": dict(dampening=lambda a: float("inf")),
    "decay_bias int": dict(decay_bias=lambda a: 1),
    "nesterov alone": dict(nesterov=lambda a: True),
    "momentum without buffers": dict(momentum=lambda a: 0.9),
    "buf_W shape": dict(
        momentum=lambda a: 0.9, buf_W=lambda a: np.zeros((1, 4)), buf_b=lambda a: np.zeros(1)
    ),
    "buf_W aliases W": dict(
        momentum=lambda a: 0.9, buf_W=lambda a: a["W"], buf_b=lambda a: np.zeros(1)
    ),
    "X_valid without Y_valid": dict(X_valid=lambda a: a["X"].copy()),
    "X_valid features": dict(X_valid=lambda a: np.zeros((3, 4)), Y_valid=lambda a: np.zeros(3)),
    "target_loss inf": dict(target_loss=lambda a: float("inf")),
    "target_loss NaN": dict(target_loss=lambda a: float("nan")),
    "threads 0": dict(threads=lambda a: 0),
    "threads -1": dict(threads=lambda a: -1),
    "order int32": dict(order=lambda a: np.zeros((2, 10), np.int32)),
    "order out of range": dict(order=lambda a: np.full((2, 10), 10, np.int64)),
    "order negative": dict(order=lambda a: np.full((2, 10), -1, np.int64)),
    "order 1-D for 2 epochs": dict(order=lambda a: np.arange(10)),
    "order epochs": dict(order=lambda a: np.zeros((3, 10), np.int64)),
    "order empty epoch": dict(order=lambda a: np.zeros((2, 0), np.int64)),
    "sample_weight negative": dict(sample_weight=lambda a: np.full(10, -1.0)),
    "sample_weight NaN": dict(sample_weight=lambda a: np.full(10, np.nan)),
    "sample_weight float32": dict(sample_weight=lambda a: np.ones(10, np.float32)),
    "sample_weight rows": dict(sample_weight=lambda a: np.ones(9)),
    "Y_valid without X_valid": dict(Y_valid=lambda a: a["Y"].copy()),
    "flags 8": dict(flags=lambda a: 8),
    "flags float": dict(flags=lambda a: 1.0),
    "X NaN, checked": dict(flags=lambda a: 1, X=lambda a: _with_last(a["X"], np.nan)),
    "W inf, checked": dict(flags=lambda a: 2, W=lambda a: np.full((1, 3), np.inf)),
}


@needs_core
@pytest.mark.parametrize("case", list(RUN_REFUSALS))
def test_core_train_refuses_bad_calls_before_writing(case):
    a = _train_args()
    for k, make in RUN_REFUSALS[case].items():
        a[k] = make(a)
    before = {k: np.array(v, copy=True) for k, v in a.items() if isinstance(v, np.ndarray)}
    with pytest.raises((TypeError, ValueError)):
        _core.train(*a.values())
    for k, v in before.items():
        assert np.array_equal(np.asarray(a[k]), v, equal_nan=True), k


@needs_core
def test_core_train_arguments_and_check_only():
    a = _train_args()
    with pytest.raises(TypeError, match="at most 24"):
        _core.train(*a.values(), None)
    with pytest.raises(TypeError, match="target_loss"):
        _core.train(*list(a.values())[:20])
    W0 = a["W"].copy()
    a["flags"] = 4  # check only
    steps, status, losses, valid = _core.train(**a)
    assert (steps, status, valid) == (0, 0, None) and losses.shape == (6,)
    assert np.isnan(losses).all() and np.array_equal(a["W"], W0)
    a["flags"] = 0
    Xv, Yv = a["X"][:4].copy(), a["Y"][:4].copy()
    a["X_valid"], a["Y_valid"] = Xv, Yv
    steps, status, losses, valid = _core.train(*a.values())
    assert (steps, status) == (6, 0) and valid.shape == (2,) and np.isfinite(valid).all()
    assert losses.dtype == valid.dtype == np.float64 and np.isfinite(losses).all()
    a["epochs"], a["lr"] = 0, np.empty(0)
    steps, status, losses, valid = _core.train(*a.values())
    assert (steps, status, losses.shape, valid.shape) == (0, 0, (0,), (0,))


@needs_core
def test_core_train_one_epoch_order_1d_is_the_2d_order():
    a = _train_args(epochs=1, flags=3)
    order = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3], np.int64)
    b = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in a.items()}
    r1 = _core.train(**{**a, "order": order})
    r2 = _core.train(**{**b, "order": order[None, :]})
    assert r1[:2] == r2[:2] and np.array_equal(r1[2], r2[2])
    assert np.array_equal(a["W"], b["W"]) and np.array_equal(a["b"], b["b"])


# ----------------------------------------------------------------------------- all_finite


@needs_core
@pytest.mark.parametrize("dt", DTYPES, ids=["float64", "float32"])
def test_all_finite_at_the_edges(dt):
    info = np.finfo(dt)
    finite = np.array(
        [
            0.0,
            -0.0,
            info.max,
            -info.max,
            info.tiny,
            info.smallest_subnormal,
            -info.smallest_subnormal,
            1.0,
            -1.0,
        ],
        dt,
    )
    for n in (1, 7, 8, 9, 63, 64, 65, 4096, 4097, 10_000):
        a = np.resize(finite, n)
        assert _core.all_finite(a)
        bits = a.view(np.uint32 if dt == np.float32 else np.uint64)
        nans = [np.nan, -np.nan, np.inf, -np.inf]
        # NaNs with other payloads: every mantissa bit pattern class
        exp = np.array(0x7F800000 if dt == np.float32 else 0x7FF0000000000000, bits.dtype)
        payloads = [exp | np.array(1, bits.dtype), exp | (exp >> np.array(1, bits.dtype))]
        for pos in {0, n // 2, n - 1}:
            for v in nans:
                c = a.copy()
                c[pos] = v
                assert not _core.all_finite(c), (n, pos, v)
            for p in payloads:
                c = bits.copy()
                c[pos] = p
                assert not _core.all_finite(c.view(dt)), (n, pos, hex(int(p)))


@needs_core
@pytest.mark.parametrize("dt", DTYPES, ids=["float64", "float32"])
def test_common_calls_need_no_conversion(dt, backend, monkeypatch):
    """No conversion for the calls that need none (a guard for speed)."""

    def long_path(*args, **kwargs):
        raise AssertionError("the call was converted")

    monkeypatch.setattr(call_module, "prepare", long_path)
    X, y, W, b = make_problem(100, 4, 1, dt, seed=1, y_1d=True)
    Xv, yv, _, _ = make_problem(1000, 4, 1, dt, seed=2, y_1d=True)
    kernels.epoch(X, y, W, b, batch_size=33, lr=0.01, check_finite=False, backend=backend)
    kernels.epoch(X, y, W, None, batch_size=33, lr=0.01, backend=backend)
    kernels.step(X, y, W, b, lr=0.01, momentum=0.9, state={}, backend=backend)
    kernels.train(
        X,
        y,
        W,
        b,
        batch_size=33,
        epochs=3,
        lr=0.01,
        eval_set=(Xv, yv),
        backend=backend,
        n_threads=2,
    )
    kernels.train(
        X,
        y.reshape(-1, 1),
        W,
        b,
        batch_size=33,
        epochs=3,
        lr=np.full(3, 0.01),
        eval_set=[Xv, yv.reshape(-1, 1)],
        target_loss=0.5,
        backend=backend,
    )
    m = LinearRegressor(lr=0.01, batch_size=33, backend=backend)
    m.fit(X, y, eval_set=(Xv, yv)).fit(X, y).partial_fit(X, y)
    LinearRegressor(backend=backend, momentum=0.9, lr=StepLR(0.01, 2, 0.5)).fit(X, y)
    calls = []
    monkeypatch.setattr(validation, "_as_array", lambda *a: calls.append(a))
    m.fit(X, y, eval_set=(Xv, yv)).predict(Xv)
    assert not calls


@pytest.mark.parametrize("dt", DTYPES, ids=["float64", "float32"])
def test_estimator_divergence_is_the_converted_calls(dt, backend, long_way):
    """A common fit that diverges is done again the general way: the same error, and a fitted
    model left as it was."""
    X, y, _, _ = make_problem(60, 3, 1, dt, seed=4, y_1d=True)
    Xv, yv, _, _ = make_problem(30, 3, 1, dt, seed=5, y_1d=True)

    def run():
        m = LinearRegressor(lr=0.01, epochs=2, backend=backend).fit(X, y)
        before = m.coef_.copy(), m.intercept_, dict(m.history_)
        m.set_params(lr=1e200 if dt == np.float64 else 1e30)
        with np.errstate(all="ignore"), pytest.raises(DivergenceError) as info:
            m.fit(X, y, eval_set=(Xv, yv))
        assert np.array_equal(m.coef_, before[0]) and m.intercept_ == before[1]
        assert m.history_ == before[2]
        return str(info.value), info.value.epoch, info.value.step

    fast = run()
    long_way()
    assert run() == fast


def test_fit_with_initial_parameters_needs_no_conversion(backend, monkeypatch):
    def long_path(*args, **kwargs):
        raise AssertionError("the call was converted")

    monkeypatch.setattr(call_module, "prepare", long_path)
    X, y, W, b = make_problem(100, 4, 1, np.float64, seed=1, y_1d=True)
    Xv, yv, _, _ = make_problem(1000, 4, 1, np.float64, seed=2, y_1d=True)
    m = LinearRegressor(lr=0.01, batch_size=33, backend=backend)
    m.fit(X, y, eval_set=(Xv, yv), coef_init=W[0], intercept_init=b)
    with pytest.raises(ValueError, match="coef_init"):  # checked where the general fit does
        m.fit(X, y, coef_init=np.zeros(5))
