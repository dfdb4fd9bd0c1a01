"""``n_threads``: host threads for the C++ kernel's steps, the same bits for every count.

The C++ kernel splits a step over threads when ``batch * N * U >= 2**14`` (errors by rows,
``X^T e`` by feature columns, each value summed in the single-threaded order) and the
validation loss with them; smaller steps run on one thread. Both regimes are checked here, for
every entry point that takes ``n_threads`` (``kernels.train``/``epoch``/``step``, the compiled
``_core.train`` and ``LinearRegressor``), against ``n_threads=1``, bit for bit.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import linsgd._checks as checks
from helpers import DT_IDS, DTYPES
from linsgd import LinearRegressor, kernels
from reference import make_problem

try:
    from linsgd import _core
except ImportError:  # a numba-only install
    _core = None

needs_core = pytest.mark.skipif(
    _core is None, reason="the compiled module linsgd._core is not built"
)

THREADS = [2, 3, -1]
# (M, N, U, B): a step of 256 * 300 * 3 >= 2**14 multiply-adds runs threaded; the others not
BIG = (2000, 300, 3, 256)
TINY = (10, 3, 2, 4)
HYPER = dict(momentum=0.9, weight_decay=1e-3, l2=1e-4, dampening=0.0, nesterov=True)


def _same(a, b):
    if a is None or b is None:
        return a is None and b is None
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def _train(shape, dt, n_threads, backend="cpp", **kw):
    M, N, U, B = shape
    X, Y, W0, b0 = make_problem(M, N, U, dt, seed=7)
    Xv, Yv, _, _ = make_problem(M // 2, N, U, dt, seed=8)
    W, b, state = W0.copy(), b0.copy(), {}
    lr = 1e-3 if N > 10 else 0.05
    res = kernels.train(
        X, Y, W, b, batch_size=B, epochs=3, lr=lr, state=state, eval_set=(Xv, Yv),
        n_threads=n_threads, backend=backend, **HYPER, **kw,
    )  # fmt: skip
    assert res.status == "completed"
    bufs = state["momentum_buffer_W"], state["momentum_buffer_b"]
    return (W, b, res.losses, res.valid_losses, *bufs)


def _assert_all_same(got, ref):
    names = ("W", "b", "losses", "valid_losses", "momentum_buffer_W", "momentum_buffer_b")
    for name, g, r in zip(names, got, ref):
        assert _same(g, r), name


@needs_core
@pytest.mark.parametrize("shape", [BIG, TINY], ids=["threaded", "tiny"])
@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("n_threads", THREADS)
def test_train_is_bitwise_the_same_for_every_thread_count(shape, dt, n_threads):
    ref = _train(shape, dt, 1)
    _assert_all_same(_train(shape, dt, n_threads), ref)


@needs_core
@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_threads_with_row_orders_and_sample_weights(dt):
    """The long path (orders, sample weights) passes n_threads on too."""
    M = BIG[0]
    rng = np.random.default_rng(3)
    orders = np.stack([rng.permutation(M) for _ in range(3)])
    sw = rng.uniform(0.5, 2.0, M)
    ref = _train(BIG, dt, 1, orders=orders, sample_weight=sw)
    for n in (2, -1):
        _assert_all_same(_train(BIG, dt, n, orders=orders, sample_weight=sw), ref)


@needs_core
@pytest.mark.parametrize("shape", [BIG, TINY], ids=["threaded", "tiny"])
@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_epoch_and_step_are_bitwise_the_same_for_every_thread_count(shape, dt):
    M, N, U, B = shape
    X, Y, W0, b0 = make_problem(M, N, U, dt, seed=11)

    def run(n_threads):
        W, b, state = W0.copy(), b0.copy(), {}
        out = [
            kernels.epoch(
                X, Y, W, b, batch_size=B, lr=1e-3, state=state, n_threads=n_threads, **HYPER
            )
        ]
        out.append(
            kernels.step(X[:B], Y[:B], W, b, lr=1e-3, state=state, n_threads=n_threads, **HYPER)
        )
        return out, W, b, state["momentum_buffer_W"], state["momentum_buffer_b"]

    (losses1, loss1), *rest1 = run(1)
    for n in THREADS:
        (losses, loss), *rest = run(n)
        assert _same(losses, losses1) and loss == loss1
        for g, r in zip(rest, rest1):
            assert _same(g, r)


@needs_core
@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_estimator_n_threads_gives_the_same_model(dt):
    M, N, U, B = BIG
    X, Y, _, _ = make_problem(M, N, U, dt, seed=5)
    Xv, Yv, _, _ = make_problem(300, N, U, dt, seed=6)
    kw = dict(
        lr=1e-3,
        batch_size=B,
        epochs=2,
        momentum=0.9,
        weight_decay=1e-3,
        shuffle=True,
        random_state=0,
        init="torch",
    )
    ref = LinearRegressor(**kw).fit(X, Y, eval_set=(Xv, Yv))
    for n in THREADS:
        m = LinearRegressor(n_threads=n, **kw).fit(X, Y, eval_set=(Xv, Yv))
        assert _same(m.coef_, ref.coef_) and _same(m.intercept_, ref.intercept_)
        assert m.history_ == ref.history_ and m.t_ == ref.t_
        m.partial_fit(X, Y)
        ref2 = LinearRegressor(**kw).fit(X, Y, eval_set=(Xv, Yv)).partial_fit(X, Y)
        assert _same(m.coef_, ref2.coef_)


def test_each_cpu_backend_accepts_n_threads(backend):
    """The numba backend runs on one thread: it checks n_threads, then ignores it."""
    ref = _train(TINY, np.float64, 1, backend=backend)
    for n in THREADS:
        _assert_all_same(_train(TINY, np.float64, n, backend=backend), ref)


def test_n_threads_is_an_estimator_parameter():
    from sklearn.base import clone

    m = LinearRegressor(n_threads=3)
    assert m.get_params()["n_threads"] == 3
    assert clone(m).n_threads == 3
    assert LinearRegressor().n_threads == 1
    assert LinearRegressor().set_params(n_threads=-1).n_threads == -1


def test_minus_one_means_every_cpu(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 5)
    assert checks.thread_count(-1) == 5
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert checks.thread_count(-1) == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 100_000)
    assert checks.thread_count(-1) == 1024


BAD_THREADS = [
    (0, ValueError),
    (-2, ValueError),
    (1025, ValueError),
    (2.0, TypeError),
    ("2", TypeError),
    (True, TypeError),
    (np.bool_(True), TypeError),
    (None, TypeError),
    ([2], TypeError),
]


@pytest.mark.parametrize("value, exc", BAD_THREADS, ids=[repr(v) for v, _ in BAD_THREADS])
def test_bad_n_threads_is_refused_naming_it(value, exc, backend):
    X, Y, W0, b0 = make_problem(*TINY[:3], np.float64, seed=1)
    calls = [
        lambda W, b: kernels.train(
            X, Y, W, b, batch_size=4, epochs=1, lr=0.1, n_threads=value, backend=backend
        ),
        lambda W, b: kernels.epoch(
            X, Y, W, b, batch_size=4, lr=0.1, n_threads=value, backend=backend
        ),
        lambda W, b: kernels.step(X, Y, W, b, lr=0.1, n_threads=value, backend=backend),
        lambda W, b: kernels.train(
            X,
            Y,
            W,
            b,
            batch_size=4,
            epochs=1,
            lr=0.1,
            n_threads=value,
            orders=np.zeros((1, 3), np.int64),
            backend=backend,
        ),
    ]
    for call in calls:
        W, b = W0.copy(), b0.copy()
        with pytest.raises(exc, match="n_threads"):
            call(W, b)
        assert np.array_equal(W, W0) and np.array_equal(b, b0)
    model = LinearRegressor(n_threads=value, backend=backend)
    with pytest.raises(exc, match="n_threads"):
        model.fit(X, Y)
    assert not hasattr(model, "coef_")


def test_numpy_integers_are_accepted_as_n_threads(backend):
    X, Y, W0, b0 = make_problem(*TINY[:3], np.float64, seed=1)
    ref = kernels.epoch(X, Y, W0.copy(), b0.copy(), batch_size=4, lr=0.1, backend=backend)
    got = kernels.epoch(
        X, Y, W0.copy(), b0.copy(), batch_size=4, lr=0.1, backend=backend, n_threads=np.int64(2)
    )
    assert _same(got, ref)


@needs_core
def test_core_train_checks_threads():
    X, Y, W0, b0 = make_problem(*TINY[:3], np.float64, seed=1)
    base = dict(
        X=X,
        Y=Y,
        W=W0.copy(),
        b=b0.copy(),
        order=None,
        batch_size=4,
        lr=0.1,
        epochs=1,
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
    )
    for bad, exc in ((0, ValueError), (1025, ValueError), (2.5, TypeError), (True, TypeError)):
        with pytest.raises(exc, match="threads"):
            _core.train(*base.values(), None, bad)
        with pytest.raises(exc, match="threads"):
            _core.train(**base, threads=bad)
    assert np.array_equal(base["W"], W0)
    assert _core.train(**base, threads=4)[:2] == (3, 0)
    assert checks.MAX_THREADS == 1024
