"""Bad input at both layers: ``linsgd.kernels`` and the compiled ``linsgd._core`` called directly.

Every case is either handled correctly (the result equals the one from plain C-contiguous
arrays, bit for bit, and a copy is made only where the module documentation says so) or
refused with a ``TypeError``/``ValueError`` whose message names the argument, before anything
is written: ``W``, ``b`` and ``state`` are left as they were. The ``_core`` cases run under
AddressSanitizer in CI (``.ci/sanitize.sh``), so none may read or write out of bounds.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import linsgd._call
from reference import make_problem, naive_gradient, train_reference

linsgd = pytest.importorskip("linsgd", reason="linsgd is not importable")
kernels = linsgd.kernels

HAVE_TORCH = importlib.util.find_spec("torch") is not None
try:
    from linsgd import _core
except ImportError:  # a numba-only install
    _core = None

needs_core = pytest.mark.skipif(
    _core is None, reason="the compiled module linsgd._core is not built"
)


# --------------------------------------------------------------------------------------
# layouts: the same values in another memory layout


def fortran(a):
    return np.asfortranarray(a)


def strided(a):
    """A view with a step: every other element of a twice-as-large array."""
    big = np.zeros((*a.shape[:-1], 2 * a.shape[-1]), a.dtype)
    view = big[..., ::2]
    view[...] = a
    return view


def reversed_view(a):
    """A negative-stride view holding ``a``'s values."""
    rev = np.ascontiguousarray(a[::-1])
    return rev[::-1]


def readonly(a):
    r = a.copy()
    r.flags.writeable = False
    return r


def unaligned(a):
    buf = np.zeros(a.nbytes + a.itemsize, np.uint8)
    out = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


def byteswapped(a):
    return a.astype(a.dtype.newbyteorder())


LAYOUTS = {
    "fortran": fortran,
    "strided": strided,
    "negative": reversed_view,
    "readonly": readonly,
    "unaligned": unaligned,
    "byteswapped": byteswapped,
    "list": lambda a: a.tolist(),
}


def _problem(dt=np.float64, M=13, N=3, U=2, seed=0):
    X, Y, W, b = make_problem(M, N, U, dt, seed)
    return X, Y, W, b


def _call(fn, X, Y, W, b, **kw):
    if fn == "loss":
        return kernels.loss(X, Y, W, b, **kw)
    if fn == "gradient":
        return kernels.gradient(X, Y, W, b, **kw)
    if fn == "step":
        return kernels.step(X, Y, W, b, lr=0.01, **kw)
    if fn == "epoch":
        return kernels.epoch(X, Y, W, b, batch_size=4, lr=0.01, **kw)
    res = kernels.train(X, Y, W, b, batch_size=4, epochs=2, lr=0.01, **kw)
    return res.losses


def _same(a, b):
    if isinstance(a, tuple):
        return all(_same(x, y) for x, y in zip(a, b))
    if a is None or b is None:
        return a is b
    return np.array_equal(np.asarray(a), np.asarray(b))


FUNCS = ["loss", "gradient", "step", "epoch", "train"]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("which", ["X", "Y"])
@pytest.mark.parametrize("fn", FUNCS)
def test_any_layout_of_the_data_gives_the_plain_result(backend, fn, which, layout):
    X, Y, W0, b0 = _problem()
    W, b = W0.copy(), b0.copy()
    ref = _call(fn, X, Y, W, b, backend=backend)
    X2, Y2 = (LAYOUTS[layout](X), Y) if which == "X" else (X, LAYOUTS[layout](Y))
    W2, b2 = W0.copy(), b0.copy()
    got = _call(fn, X2, Y2, W2, b2, backend=backend)
    assert _same(got, ref)
    assert np.array_equal(W2, W) and np.array_equal(b2, b)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("fn", ["loss", "gradient"])
def test_any_layout_of_read_only_parameters_gives_the_plain_result(backend, fn, layout):
    X, Y, W, b = _problem()
    ref = _call(fn, X, Y, W, b, backend=backend)
    got = _call(fn, X, Y, LAYOUTS[layout](W), LAYOUTS[layout](b), backend=backend)
    assert _same(got, ref)


@pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")
def test_torch_cpu_tensors_are_used_in_place(backend):
    import torch

    X, Y, W0, b0 = _problem()
    W, b = W0.copy(), b0.copy()
    kernels.epoch(X, Y, W, b, batch_size=4, lr=0.01, backend=backend)
    Wt, bt = torch.from_numpy(W0.copy()), torch.from_numpy(b0.copy())
    kernels.epoch(
        torch.from_numpy(X), torch.from_numpy(Y), Wt, bt, batch_size=4, lr=0.01, backend=backend
    )
    assert np.array_equal(Wt.numpy(), W) and np.array_equal(bt.numpy(), b)
    with pytest.raises(TypeError, match="X"):
        kernels.loss(torch.from_numpy(X).to(torch.bfloat16), Y, W, b, backend=backend)


def test_zero_features_is_a_bias_only_model(backend):
    X = np.zeros((6, 0))
    Y = np.arange(6.0)
    W = np.zeros((1, 0))
    b = np.zeros(1)
    gW, gb, loss = kernels.gradient(X, Y, W, b, backend=backend)
    _, nb, nloss = naive_gradient(X, Y, W, b)
    assert gW.shape == (1, 0) and np.allclose(gb, nb) and np.isclose(loss, nloss)
    kernels.train(X, Y, W, b, batch_size=4, epochs=3, lr=0.1, backend=backend)
    _, be, _ = train_reference(
        X, Y, np.zeros((1, 0)), np.zeros(1), batch_size=4, epochs=3, lr=0.1, exact=False
    )
    assert np.allclose(b, be, rtol=1e-12)


def test_repeated_and_longer_orders_sample_with_replacement(backend):
    X, Y, W0, b0 = _problem(M=5, U=1)
    order = np.array([[0, 0, 4, 4, 4, 1, 2, 0, 3, 3, 1, 1]])
    W, b = W0.copy(), b0.copy()
    res = kernels.train(X, Y, W, b, batch_size=5, epochs=1, lr=0.05, orders=order, backend=backend)
    We, be, le = train_reference(X, Y, W0, b0, batch_size=5, epochs=1, lr=0.05, order=order)
    assert np.array_equal(W, We) and np.array_equal(b, be)
    assert np.array_equal(res.losses, le)


@pytest.mark.parametrize("bs", [13, 14, 1000, 2**62, 2**70])
def test_batch_larger_than_the_data_is_one_batch(backend, bs):
    X, Y, W0, b0 = _problem()
    W1, b1 = W0.copy(), b0.copy()
    kernels.train(X, Y, W1, b1, batch_size=13, epochs=2, lr=0.01, backend=backend)
    W2, b2 = W0.copy(), b0.copy()
    res = kernels.train(X, Y, W2, b2, batch_size=bs, epochs=2, lr=0.01, backend=backend)
    assert res.losses.shape == (2, 1)
    assert np.array_equal(W1, W2) and np.array_equal(b1, b2)


def test_nan_data_with_check_finite_off_diverges_cleanly(backend):
    X, Y, W0, b0 = _problem()
    X[2, 1] = np.nan
    W, b = W0.copy(), b0.copy()
    res = kernels.train(
        X, Y, W, b, batch_size=4, epochs=1, lr=0.01, check_finite=False, backend=backend
    )
    assert res.status == "diverged" and res.steps == 0
    assert np.array_equal(W, W0) and np.array_equal(b, b0)
    with pytest.raises(linsgd.DivergenceError):
        kernels.epoch(X, Y, W, b, batch_size=4, lr=0.01, check_finite=False, backend=backend)


# --------------------------------------------------------------------------------------
# refused inputs: (what to change, exception, words the message must contain)


def _bad_cases():
    X, Y, W, b = _problem()
    M = X.shape[0]
    U = Y.shape[1]
    cases = {
        # data
        "X int": (dict(X=X.astype(np.int64)), TypeError, "X"),
        "X bool": (dict(X=X > 0), TypeError, "X"),
        "X complex": (dict(X=X.astype(np.complex128)), TypeError, "X"),
        "X object": (dict(X=X.astype(object)), TypeError, "X"),
        "X float16": (dict(X=X.astype(np.float16)), TypeError, "X"),
        "X None": (dict(X=None), TypeError, "X"),
        "X string": (dict(X="abc"), TypeError, "X"),
        "X masked": (dict(X=np.ma.masked_array(X)), TypeError, "X"),
        "X 1-D": (dict(X=X[:, 0]), ValueError, "X"),
        "X 3-D": (dict(X=X[None]), ValueError, "X"),
        "X no rows": (dict(X=X[:0], Y=Y[:0]), ValueError, "X"),
        "X NaN": (dict(X=np.where(X > 1, np.nan, X)), ValueError, "X"),
        "X inf": (dict(X=np.where(X > 1, -np.inf, X)), ValueError, "X"),
        "Y float32": (dict(Y=Y.astype(np.float32)), TypeError, "Y"),
        "Y int": (dict(Y=Y.astype(np.int32)), TypeError, "Y"),
        "Y rows": (dict(Y=Y[:-1]), ValueError, "Y"),
        "Y no columns": (dict(Y=Y[:, :0]), ValueError, "Y"),
        "Y 3-D": (dict(Y=Y[:, :, None]), ValueError, "Y"),
        "Y NaN": (dict(Y=np.where(Y > 0.5, np.nan, Y)), ValueError, "Y"),
        # parameters
        "W float32": (dict(W=W.astype(np.float32)), TypeError, "W"),
        "W int": (dict(W=W.astype(np.int64)), TypeError, "W"),
        "W shape": (dict(W=W[:, :-1].copy()), ValueError, "W"),
        "W transposed": (dict(W=W.T.copy()), ValueError, "W"),
        "W NaN": (dict(W=np.where(W > 0, np.nan, W)), ValueError, "W"),
        "b shape": (dict(b=np.zeros(U + 1)), ValueError, "b"),
        "b float32": (dict(b=b.astype(np.float32)), TypeError, "b"),
        "b inf": (dict(b=np.full(U, np.inf)), ValueError, "b"),
        "b 2-D": (dict(b=b[None]), ValueError, "b"),
        # sample weights
        "sample_weight negative": (dict(sample_weight=-np.ones(M)), ValueError, "sample_weight"),
        "sample_weight NaN": (dict(sample_weight=np.full(M, np.nan)), ValueError, "sample_weight"),
        "sample_weight shape": (dict(sample_weight=np.ones(M + 1)), ValueError, "sample_weight"),
        "sample_weight complex": (
            dict(sample_weight=np.ones(M, complex)),
            TypeError,
            "sample_weight",
        ),
        "sample_weight bool": (dict(sample_weight=np.ones(M, bool)), TypeError, "sample_weight"),
        # backend
        "backend unknown": (dict(backend="gpu"), ValueError, "backend"),
        "backend int": (dict(backend=3), ValueError, "backend"),
    }
    return cases


def _in_place_cases():
    """Refused by the functions that update W and b (step, epoch, train) only."""
    X, Y, W, b = _problem()
    N = X.shape[1]
    U = Y.shape[1]
    ro_W = readonly(W)
    return {
        "W Fortran": (dict(W=fortran(W)), ValueError, "W"),
        "W strided": (dict(W=strided(W)), ValueError, "W"),
        "W negative": (dict(W=reversed_view(W)), ValueError, "W"),
        "W read-only": (dict(W=ro_W), ValueError, "W"),
        "W unaligned": (dict(W=unaligned(W)), ValueError, "W"),
        "W byteswapped": (dict(W=byteswapped(W)), TypeError, "W"),
        "W list": (dict(W=W.tolist()), TypeError, "W"),
        "b read-only": (dict(b=readonly(b)), ValueError, "b"),
        "b strided": (dict(b=strided(b)), ValueError, "b"),
        "b tuple": (dict(b=tuple(b)), TypeError, "b"),
        "lr NaN": (dict(lr=np.nan), ValueError, "lr"),
        "lr inf": (dict(lr=np.inf), ValueError, "lr"),
        "lr negative": (dict(lr=-0.1), ValueError, "lr"),
        "lr string": (dict(lr="0.1"), TypeError, "lr"),
        "lr bool": (dict(lr=True), TypeError, "lr"),
        "lr None": (dict(lr=None), TypeError, "lr"),
        "weight_decay inf": (dict(weight_decay=np.inf), ValueError, "weight_decay"),
        "weight_decay negative": (dict(weight_decay=-1.0), ValueError, "weight_decay"),
        "l2 NaN": (dict(l2=np.nan), ValueError, "l2"),
        "momentum negative": (dict(momentum=-0.5), ValueError, "momentum"),
        "momentum NaN": (dict(momentum=np.nan), ValueError, "momentum"),
        "dampening inf": (dict(dampening=np.inf), ValueError, "dampening"),
        "nesterov without momentum": (dict(nesterov=True), ValueError, "nesterov"),
        "nesterov string": (dict(nesterov="yes"), TypeError, "nesterov"),
        "maximize int": (dict(maximize=1), TypeError, "maximize"),
        "decay_bias None": (dict(decay_bias=None), TypeError, "decay_bias"),
        "state list": (dict(state=[]), TypeError, "state"),
        "state buffer shape": (
            dict(
                momentum=0.9,
                state={"momentum_buffer_W": np.zeros((U, N + 1)), "momentum_buffer_b": np.zeros(U)},
            ),
            ValueError,
            "momentum_buffer_W",
        ),
        "state buffer read-only": (
            dict(
                momentum=0.9,
                state={
                    "momentum_buffer_W": readonly(np.zeros((U, N))),
                    "momentum_buffer_b": np.zeros(U),
                },
            ),
            ValueError,
            "momentum_buffer_W",
        ),
        "state buffer missing b": (
            dict(momentum=0.9, state={"momentum_buffer_W": np.zeros((U, N))}),
            ValueError,
            "momentum_buffer_b",
        ),
        "state buffer dtype": (
            dict(
                momentum=0.9,
                state={
                    "momentum_buffer_W": np.zeros((U, N), np.float32),
                    "momentum_buffer_b": np.zeros(U),
                },
            ),
            ValueError,
            "momentum_buffer_W",
        ),
    }


def _aliasing_cases():
    """Parameters that share memory with the data or with each other (complete X, Y, W, b)."""
    X, Y, W, b = _problem(N=2, U=2)
    out = {}
    Xa = X.copy()
    out["W aliases X"] = (dict(X=Xa, Y=Y, W=Xa[:2], b=b.copy()), ValueError, "shares memory")
    Ya = Y.copy()
    out["W aliases Y"] = (dict(X=X, Y=Ya, W=Ya[:2], b=b.copy()), ValueError, "shares memory")
    Wa = W.copy()
    out["b aliases W"] = (dict(X=X, Y=Y, W=Wa, b=Wa[0]), ValueError, "shares memory")
    Xb = X.copy()
    out["b aliases X"] = (dict(X=Xb, Y=Y, W=W.copy(), b=Xb[0]), ValueError, "shares memory")
    Wm = W.copy()
    out["momentum buffer is W"] = (
        dict(
            X=X,
            Y=Y,
            W=Wm,
            b=b.copy(),
            momentum=0.9,
            state={"momentum_buffer_W": Wm, "momentum_buffer_b": b.copy()},
        ),
        ValueError,
        "shares memory",
    )
    holder = np.ones(X.shape[0] + 2)
    Ws = holder[-4:].reshape(2, 2)
    Ws[...] = np.abs(W) + 0.5
    out["sample_weight aliases W"] = (
        dict(X=X, Y=Y, W=Ws, b=b.copy(), sample_weight=holder[: X.shape[0]]),
        ValueError,
        "shares memory",
    )
    return out


def _snapshot(kw):
    snap = {}
    for k in ("W", "b"):
        v = kw.get(k)
        if isinstance(v, np.ndarray):
            snap[k] = v.copy()
    st = kw.get("state")
    if isinstance(st, dict):
        snap["state"] = {k: v.copy() for k, v in st.items()}
    return snap


def _run_case(fn, backend, change):
    X, Y, W, b = _problem()
    kw = dict(X=X, Y=Y, W=W.copy(), b=b.copy(), backend=backend)
    kw.update(change)
    X, Y, W, b = kw.pop("X"), kw.pop("Y"), kw.pop("W"), kw.pop("b")
    lr = kw.pop("lr", 0.01)
    if fn == "loss":
        kw = {k: v for k, v in kw.items() if k in ("sample_weight", "backend")}
        return kernels.loss(X, Y, W, b, **kw)
    if fn == "gradient":
        kw = {k: v for k, v in kw.items() if k in ("sample_weight", "backend")}
        return kernels.gradient(X, Y, W, b, **kw)
    if fn == "step":
        return kernels.step(X, Y, W, b, lr=lr, **kw)
    if fn == "epoch":
        return kernels.epoch(X, Y, W, b, **{"batch_size": 4, "lr": lr, **kw})
    return kernels.train(X, Y, W, b, **{"batch_size": 4, "epochs": 2, "lr": lr, **kw})


def _expect_refused(fn, backend, change, exc, words):
    before = _snapshot(change)
    with pytest.raises(exc) as info:
        _run_case(fn, backend, change)
    assert words in str(info.value), f"{info.value!r} does not name {words!r}"
    after = _snapshot(change)
    for k, v in before.items():
        if k == "state":
            assert v.keys() == after[k].keys()
            for kk in v:
                assert np.array_equal(v[kk], after[k][kk])
        else:
            assert np.array_equal(v, after[k], equal_nan=True), f"{k} was modified"


BAD = _bad_cases()
IN_PLACE = _in_place_cases()
ALIASING = _aliasing_cases()


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("fn", FUNCS)
def test_bad_input_is_refused_naming_the_argument(backend, fn, case):
    change, exc, words = BAD[case]
    if case.startswith("backend"):
        change = dict(change)
        backend = change.pop("backend")
    _expect_refused(fn, backend, change, exc, words)


@pytest.mark.parametrize("case", list(IN_PLACE) + list(ALIASING))
@pytest.mark.parametrize("fn", ["step", "epoch", "train"])
def test_parameters_that_cannot_be_updated_in_place_are_refused(backend, fn, case):
    change, exc, words = {**IN_PLACE, **ALIASING}[case]
    _expect_refused(fn, backend, change, exc, words)


@pytest.mark.parametrize(
    "kw, exc, words",
    [
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(batch_size=-3), ValueError, "batch_size"),
        (dict(batch_size=2.0), TypeError, "batch_size"),
        (dict(batch_size=True), TypeError, "batch_size"),
        (dict(batch_size="4"), TypeError, "batch_size"),
        (dict(epochs=-1), ValueError, "epochs"),
        (dict(epochs=1.0), TypeError, "epochs"),
        (dict(lr=[0.1]), ValueError, "lr"),
        (dict(lr=[0.1, np.nan]), ValueError, "lr"),
        (dict(lr=np.array([0.1, -0.1])), ValueError, "lr"),
        (dict(lr=np.array([[0.1, 0.1]])), ValueError, "lr"),
        (dict(target_loss=np.nan), ValueError, "target_loss"),
        (dict(target_loss=np.inf), ValueError, "target_loss"),
        (dict(orders=np.zeros((2, 4))), TypeError, "orders"),
        (dict(orders=np.zeros((2, 4), bool)), TypeError, "orders"),
        (dict(orders=np.full((2, 4), 13)), ValueError, "orders"),
        (dict(orders=np.full((2, 4), -1)), ValueError, "orders"),
        (dict(orders=np.full((2, 4), 2**63 - 1, dtype=np.uint64)), ValueError, "orders"),
        (dict(orders=np.zeros(4, int)), ValueError, "orders"),
        (dict(orders=np.zeros((3, 4), int)), ValueError, "orders"),
        (dict(orders=np.zeros((2, 0), int)), ValueError, "orders"),
        (dict(eval_set=(1, 2, 3)), TypeError, "eval_set"),
        (dict(eval_set=np.zeros((3, 3))), TypeError, "eval_set"),
        (dict(eval_set=(np.zeros((3, 4)), np.zeros((3, 2)))), ValueError, "eval_set"),
        (
            dict(eval_set=(np.zeros((3, 3), np.float32), np.zeros((3, 2), np.float32))),
            TypeError,
            "X_valid",
        ),
        (dict(eval_set=(np.full((3, 3), np.nan), np.zeros((3, 2)))), ValueError, "X_valid"),
        (dict(eval_set=(np.zeros((0, 3)), np.zeros((0, 2)))), ValueError, "X_valid"),
    ],
)
def test_bad_train_arguments_are_refused(backend, kw, exc, words):
    _expect_refused("train", backend, kw, exc, words)


@pytest.mark.parametrize(
    "order, exc",
    [
        (np.array([0, 13]), ValueError),
        (np.array([[0, 1]]), ValueError),
        (np.array([], dtype=np.int64), ValueError),
        (np.array([0.0, 1.0]), TypeError),
        ([0, -1], ValueError),
    ],
)
def test_bad_epoch_order_is_refused(backend, order, exc):
    _expect_refused("epoch", backend, dict(order=order), exc, "order")


def test_valid_orders_of_other_integer_types_and_lists(backend):
    X, Y, W0, b0 = _problem()
    order = np.arange(13)[::-1]
    ref_W = W0.copy()
    ref = kernels.epoch(
        X, Y, ref_W, b0.copy(), batch_size=4, lr=0.01, order=order.copy(), backend=backend
    )
    for o in (
        order.astype(np.uint8),
        order.astype(np.int32),
        order.tolist(),
        order,
        order.astype(">i8"),
    ):
        W = W0.copy()
        got = kernels.epoch(X, Y, W, b0.copy(), batch_size=4, lr=0.01, order=o, backend=backend)
        assert np.array_equal(got, ref) and np.array_equal(W, ref_W)


# --------------------------------------------------------------------------------------
# the compiled module called directly: it checks everything itself


def _core_train_args(dt=np.float64, momentum=0.0, valid=False):
    X, Y, W, b = _problem(dt)
    N = X.shape[1]
    U = Y.shape[1]
    args = dict(
        X=X,
        Y=Y,
        W=W.copy(),
        b=b.copy(),
        order=None,
        batch_size=4,
        lr=np.full(2, 0.01),
        epochs=2,
        weight_decay=0.0,
        decay_bias=True,
        l2=0.0,
        momentum=momentum,
        dampening=0.0,
        nesterov=False,
        maximize=False,
        buf_W=np.zeros((U, N), dt) if momentum else None,
        buf_b=np.zeros(U, dt) if momentum else None,
        momentum_initialized=False,
        X_valid=X[:5].copy() if valid else None,
        Y_valid=Y[:5].copy() if valid else None,
        target_loss=None,
        sample_weight=None,
        threads=1,
        flags=3,
    )
    return args


def _core_train(args):
    return _core.train(*args.values())


def _core_train_cases():
    X, Y, W, b = _problem()
    M, N = X.shape
    U = Y.shape[1]
    cases = {
        "X int": (dict(X=X.astype(np.int64)), TypeError, "X"),
        "X 1-D": (dict(X=X[:, 0].copy()), ValueError, "X"),
        "X fortran": (dict(X=fortran(X)), ValueError, "X"),
        "X strided": (dict(X=strided(X)), ValueError, "X"),
        "X negative": (dict(X=reversed_view(X)), ValueError, "X"),
        "X unaligned": (dict(X=unaligned(X)), ValueError, "X"),
        "X byteswapped": (dict(X=byteswapped(X)), TypeError, "X"),
        "X no rows": (dict(X=X[:0], Y=Y[:0]), ValueError, "X"),
        "X list": (dict(X=X.tolist()), TypeError, "X"),
        "X None": (dict(X=None), TypeError, "X"),
        "Y float32": (dict(Y=Y.astype(np.float32)), TypeError, "Y"),
        "Y rows": (dict(Y=Y[:-1].copy()), ValueError, "Y"),
        "Y 1-D, U > 1": (dict(Y=Y[:, 0].copy()), ValueError, "W"),
        "Y no columns": (dict(Y=np.zeros((M, 0))), ValueError, "Y"),
        "W shape": (dict(W=np.zeros((U, N + 1))), ValueError, "W"),
        "W read-only": (dict(W=readonly(W)), ValueError, "W"),
        "W float32": (dict(W=W.astype(np.float32)), TypeError, "W"),
        "W fortran": (dict(W=fortran(W)), ValueError, "W"),
        "b shape": (dict(b=np.zeros(U + 1)), ValueError, "b"),
        "b read-only": (dict(b=readonly(b)), ValueError, "b"),
        "order float": (dict(order=np.zeros((2, M))), TypeError, "order"),
        "order int32": (dict(order=np.zeros((2, M), np.int32)), TypeError, "order"),
        "order 1-D": (dict(order=np.zeros(M, np.int64)), ValueError, "order"),
        "order epochs": (dict(order=np.zeros((3, M), np.int64)), ValueError, "order"),
        "order too large": (dict(order=np.full((2, M), M, np.int64)), ValueError, "order"),
        "order negative": (dict(order=np.full((2, M), -1, np.int64)), ValueError, "order"),
        "order huge": (dict(order=np.full((2, M), 2**62, np.int64)), ValueError, "order"),
        "order empty": (dict(order=np.zeros((2, 0), np.int64)), ValueError, "order"),
        "order fortran": (
            dict(order=np.asfortranarray(np.zeros((2, M), np.int64))),
            ValueError,
            "order",
        ),
        "order unaligned": (dict(order=unaligned(np.zeros((2, M), np.int64))), ValueError, "order"),
        "order is W's memory": (dict(order=None), None, None),  # filled below
        "batch_size 0": (dict(batch_size=0), ValueError, "batch_size"),
        "batch_size negative": (dict(batch_size=-5), ValueError, "batch_size"),
        "batch_size too big for int64": (dict(batch_size=2**64), TypeError, ""),
        "lr NaN": (dict(lr=np.array([0.1, np.nan])), ValueError, "lr"),
        "lr float32": (dict(lr=np.full(2, 0.1, np.float32)), TypeError, "lr"),
        "lr 2-D": (dict(lr=np.full((2, 1), 0.1)), ValueError, "lr"),
        "lr list": (dict(lr=[0.1, 0.1]), TypeError, "lr"),
        "lr short": (dict(lr=np.full(1, 0.1)), ValueError, "lr"),
        "lr negative number": (dict(lr=-0.1), ValueError, "lr"),
        "lr numpy float32": (dict(lr=np.float32(0.1)), TypeError, "lr"),
        "epochs negative": (dict(epochs=-1), ValueError, "epochs"),
        "epochs float": (dict(epochs=2.0), TypeError, "epochs"),
        "flags 8": (dict(flags=8), ValueError, "flags"),
        "X NaN, checked": (dict(X=np.full((M, N), np.nan)), ValueError, "X contains NaN"),
        "W inf, checked": (dict(W=np.full((U, N), np.inf)), ValueError, "W contains NaN"),
        "weight_decay inf": (dict(weight_decay=np.inf), ValueError, "weight_decay"),
        "momentum NaN": (dict(momentum=np.nan), ValueError, "momentum"),
        "nesterov alone": (dict(nesterov=True), ValueError, "nesterov"),
        "target_loss inf": (dict(target_loss=np.inf), ValueError, "target_loss"),
        "momentum without buffers": (dict(momentum=0.9), TypeError, "buf_W"),
        "buf_W shape": (
            dict(momentum=0.9, buf_W=np.zeros((U, N + 1)), buf_b=np.zeros(U)),
            ValueError,
            "buf_W",
        ),
        "buf_b missing": (
            dict(momentum=0.9, buf_W=np.zeros((U, N)), buf_b=None),
            ValueError,
            "buf_b",
        ),
        "buf_W read-only": (
            dict(momentum=0.9, buf_W=readonly(np.zeros((U, N))), buf_b=np.zeros(U)),
            ValueError,
            "buf_W",
        ),
        "X_valid without Y_valid": (dict(X_valid=X), ValueError, "Y_valid"),
        "valid features": (
            dict(X_valid=np.zeros((3, N + 1)), Y_valid=np.zeros((3, U))),
            ValueError,
            "X_valid",
        ),
        "valid rows": (
            dict(X_valid=np.zeros((3, N)), Y_valid=np.zeros((4, U))),
            ValueError,
            "Y_valid",
        ),
        "valid outputs": (
            dict(X_valid=np.zeros((3, N)), Y_valid=np.zeros((3, U + 1))),
            ValueError,
            "Y_valid",
        ),
        "sample_weight negative": (dict(sample_weight=-np.ones(M)), ValueError, "sample_weight"),
        "sample_weight NaN": (dict(sample_weight=np.full(M, np.nan)), ValueError, "sample_weight"),
        "sample_weight short": (dict(sample_weight=np.ones(M - 1)), ValueError, "sample_weight"),
        "sample_weight float32": (
            dict(sample_weight=np.ones(M, np.float32)),
            TypeError,
            "sample_weight",
        ),
        "W aliases X": (dict(), None, None),  # filled below
        "b aliases W": (dict(), None, None),
        "buf_W aliases W": (dict(), None, None),
        "sample_weight aliases W": (dict(), None, None),
    }
    # memory-sharing cases need arrays built together
    Wx = np.zeros((U, N))  # its bytes read as int64 are valid row indices (0)
    cases["order is W's memory"] = (
        dict(W=Wx, order=Wx.view(np.int64).reshape(1, -1), lr=0.01, epochs=1),
        ValueError,
        "shares memory",
    )
    lr = np.full(2 + U * N, 0.01)
    cases["W is lr's memory"] = (
        dict(lr=lr[:2], W=lr[1 : 1 + U * N].reshape(U, N)),
        ValueError,
        "shares memory",
    )
    Xa = X.copy()
    cases["W aliases X"] = (dict(X=Xa, W=Xa[:U, :N]), ValueError, "shares memory")
    Wb = np.zeros((U, N))
    cases["b aliases W"] = (dict(W=Wb, b=Wb[0, :U]), ValueError, "shares memory")
    Wm = np.zeros((U, N))
    cases["buf_W aliases W"] = (
        dict(W=Wm, momentum=0.9, buf_W=Wm, buf_b=np.zeros(U)),
        ValueError,
        "shares memory",
    )
    sw = np.ones(M + U * N)
    Ws = sw[M - 2 : M - 2 + U * N].reshape(U, N)
    cases["sample_weight aliases W"] = (
        dict(W=Ws, sample_weight=sw[:M]),
        ValueError,
        "shares memory",
    )
    return cases


CORE_TRAIN = _core_train_cases() if _core is not None else {}


@needs_core
@pytest.mark.parametrize("case", list(CORE_TRAIN))
def test_core_train_checks_everything_itself(case):
    change, exc, words = CORE_TRAIN[case]
    args = _core_train_args()
    args.update(change)
    written = {
        k: v.copy()
        for k, v in args.items()
        if k in ("W", "b", "buf_W", "buf_b") and isinstance(v, np.ndarray) and v.flags.writeable
    }
    with pytest.raises(exc) as info:
        _core_train(args)
    assert words in str(info.value), f"{info.value!r} does not name {words!r}"
    for k, v in written.items():
        assert np.array_equal(v, args[k], equal_nan=True), f"{k} was written before the error"


@needs_core
def test_core_train_direct_call_matches_kernels():
    args = _core_train_args(momentum=0.9, valid=True)
    W0, b0 = args["W"].copy(), args["b"].copy()
    steps, status, losses, valid = _core_train(args)
    assert (steps, status) == (8, 0)
    W, b = W0.copy(), b0.copy()
    res = kernels.train(
        args["X"],
        args["Y"],
        W,
        b,
        batch_size=4,
        epochs=2,
        lr=0.01,
        momentum=0.9,
        eval_set=(args["X_valid"], args["Y_valid"]),
        backend="cpp",
    )
    assert np.array_equal(W, args["W"]) and np.array_equal(b, args["b"])
    assert np.array_equal(res.losses.ravel(), losses)
    assert np.array_equal(res.valid_losses, valid)


@needs_core
@pytest.mark.parametrize("bs", [13, 14, 2**40, 2**63 - 1, None])
def test_core_train_huge_batch_size_is_one_batch(bs):
    args = _core_train_args()
    args.update(batch_size=bs)
    steps, status, losses, _ = _core_train(args)
    assert (steps, status, losses.shape) == (2, 0, (2,))
    ref = _core_train_args()
    ref.update(batch_size=13)
    ref_losses = _core_train(ref)[2]
    assert np.array_equal(args["W"], ref["W"]) and np.array_equal(losses, ref_losses)


@needs_core
def test_core_train_order_with_repeats_and_longer_epochs():
    args = _core_train_args()
    M = args["X"].shape[0]
    order = np.random.default_rng(0).integers(0, M, (2, 3 * M))
    args.update(order=order)
    steps, status, losses, _ = _core_train(args)
    assert status == 0 and steps == losses.size == 2 * -(-3 * M // 4)
    X, Y = args["X"], args["Y"]
    W0, b0 = _core_train_args()["W"], _core_train_args()["b"]
    We, _, _ = train_reference(
        X, Y, W0, b0, batch_size=4, epochs=2, lr=0.01, order=order, exact=False
    )
    assert np.allclose(args["W"], We, rtol=1e-12, atol=1e-14)


@needs_core
@pytest.mark.parametrize(
    "change, exc, words",
    [
        (dict(gW=np.zeros((2, 4))), ValueError, "gW"),
        (dict(gW=readonly(np.zeros((2, 3)))), ValueError, "gW"),
        (dict(gW=np.zeros((2, 3), np.float32)), TypeError, "gW"),
        (dict(gW=fortran(np.zeros((2, 3)))), ValueError, "gW"),
        (dict(gb=None), ValueError, "gb"),
        (dict(gb=np.zeros(3)), ValueError, "gb"),
        (dict(gb=readonly(np.zeros(2))), ValueError, "gb"),
        (dict(sample_weight=-np.ones(13)), ValueError, "sample_weight"),
        (dict(sample_weight=np.ones(12)), ValueError, "sample_weight"),
        (dict(X=np.zeros((13, 3), np.int32)), TypeError, "X"),
        (dict(W=fortran(np.zeros((2, 3)))), ValueError, "W"),
        (dict(b=np.zeros((2, 1))), ValueError, "b"),
    ],
)
def test_core_gradient_and_loss_check_everything_themselves(change, exc, words):
    X, Y, W, b = _problem()
    args = dict(X=X, Y=Y, W=W, b=b, gW=np.zeros((2, 3)), gb=np.zeros(2), sample_weight=None)
    args.update(change)
    with pytest.raises(exc, match=words):
        _core.gradient(*args.values())
    if not {"gW", "gb"} & change.keys():
        with pytest.raises(exc, match=words):
            _core.loss(args["X"], args["Y"], args["W"], args["b"], args["sample_weight"])


@needs_core
def test_core_gradient_outputs_must_not_alias_inputs():
    X, Y, W, b = _problem()
    Xa = X.copy()
    with pytest.raises(ValueError, match="gW shares memory with X"):
        _core.gradient(Xa, Y, W, b, Xa[:2, :], np.zeros(2))
    g = np.zeros(8)
    with pytest.raises(ValueError, match="shares memory"):
        _core.gradient(X, Y, W, b, g[:6].reshape(2, 3), g[5:7])
    Wr = readonly(W)  # read-only W is fine for gradient and loss: they only read it
    gW, gb = np.zeros((2, 3)), np.zeros(2)
    value = _core.gradient(X, Y, Wr, b, gW, gb)
    ref = kernels.gradient(X, Y, W, b, backend="cpp")
    assert np.array_equal(gW, ref[0]) and np.array_equal(gb, ref[1]) and value == ref[2]


@needs_core
@pytest.mark.parametrize("dt", [np.float64, np.float32])
def test_core_all_finite(dt):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((37, 53)).astype(dt)
    f = _core.all_finite
    assert f(a) and f(a[::-1, ::3]) and f(a.T) and f(unaligned(a)) and f(a[:0]) and f(a[0, 0:1])
    assert f(np.asarray(a[3, 4]))  # 0-d
    big = rng.standard_normal(1 << 17).astype(dt)
    assert f(big)
    for pos in (0, 7, 8, 4095, 4096, 50_000, big.size - 1):
        for v in (np.nan, np.inf, -np.inf):
            c = big.copy()
            c[pos] = v
            assert not f(c), (pos, v)
            assert not f(c[::-1]) and not f(unaligned(c))
    b = a.copy()
    b[36, 52] = np.nan
    assert not f(b) and not f(b.T) and not f(b[::-1, ::-1]) and f(b[:36]) and not f(b[:, ::4])
    with pytest.raises(TypeError):
        f(np.zeros(3, np.int64))
    with pytest.raises(TypeError):
        f(np.zeros(3, np.float16))
    with pytest.raises(TypeError):
        f(byteswapped(a))
    with pytest.raises(TypeError):
        f([1.0, 2.0])


# --------------------------------------------------------------------------------------
# GPU arrays are routed to the CUDA backend (simulated here: no device needed)


class _FakeDeviceArray:
    """Stands for a GPU array: it exposes ``__cuda_array_interface__`` and wraps host memory."""

    def __init__(self, a):
        self.a = a

    @property
    def __cuda_array_interface__(self):
        return self.a.__array_interface__

    @property
    def shape(self):
        return self.a.shape

    def reshape(self, *shape):
        return _FakeDeviceArray(self.a.reshape(*shape))


class _FakeCudaModule:
    """The CUDA backend's interface, run on the host by the C++/numba kernels."""

    def __init__(self, backend):
        self.backend = backend
        self.calls = []
        self.mod = linsgd._backends.get_backend(backend)

    @staticmethod
    def _host(v):
        return v.a if isinstance(v, _FakeDeviceArray) else v

    def train(self, *args):
        self.calls.append("train")
        return self.mod.train(*(self._host(v) for v in args))

    def loss(self, X, Y, W, b, sample_weight=None):
        self.calls.append("loss")
        return self.mod.loss(*(self._host(v) for v in (X, Y, W, b, sample_weight)))

    def gradient(self, X, Y, W, b, gW, gb, sample_weight=None):
        self.calls.append("gradient")
        return self.mod.gradient(*(self._host(v) for v in (X, Y, W, b, gW, gb, sample_weight)))


def test_gpu_arrays_are_routed_to_the_cuda_backend(backend, monkeypatch):
    fake = _FakeCudaModule(backend)
    monkeypatch.setattr(linsgd._call, "_device_backend", lambda name: fake)
    monkeypatch.setattr(
        linsgd._cuda_dispatch,
        "zeros_like",
        lambda a: None if a is None else _FakeDeviceArray(np.zeros_like(a.a)),
    )
    X, Y, W0, b0 = _problem(M=13, N=3, U=1)
    Y = Y[:, 0].copy()
    W, b, state = W0.copy(), b0.copy(), {}
    ref = [
        kernels.epoch(X, Y, W, b, batch_size=4, lr=0.01, momentum=0.9, state=state, backend=backend)
        for _ in range(2)
    ]
    Wd, bd, state_d = _FakeDeviceArray(W0.copy()), _FakeDeviceArray(b0.copy()), {}
    got = [
        kernels.epoch(
            _FakeDeviceArray(X),
            _FakeDeviceArray(Y),
            Wd,
            bd,
            batch_size=4,
            lr=0.01,
            momentum=0.9,
            state=state_d,
        )
        for _ in range(2)
    ]
    assert fake.calls == ["train", "train"]
    assert np.array_equal(np.array(got), np.array(ref))
    assert np.array_equal(Wd.a, W) and np.array_equal(bd.a, b) and state_d["step"] == state["step"]
    assert np.array_equal(state_d["momentum_buffer_W"].a, state["momentum_buffer_W"])
    gW, gb, loss = kernels.gradient(_FakeDeviceArray(X), _FakeDeviceArray(Y), Wd, bd)
    ref_g = kernels.gradient(X, Y, W, b, backend=backend)
    assert np.array_equal(gW.a, ref_g[0]) and np.array_equal(gb.a, ref_g[1]) and loss == ref_g[2]
    assert kernels.loss(_FakeDeviceArray(X), Y, Wd, bd) == kernels.loss(X, Y, W, b, backend=backend)
    with pytest.raises(ValueError, match="backend='cuda'"):
        monkeypatch.undo()
        kernels.loss(_FakeDeviceArray(X), Y, Wd, bd, backend="cpp")
