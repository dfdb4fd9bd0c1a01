"""Property-based tests of every kernel entry point, over shapes, dtypes, layouts and values.

* ``kernels.loss/gradient/step/epoch/train``: random shapes (zero features included), dtypes,
  memory layouts of the data, batch sizes (larger than the data included), row orders (with
  repeats, shorter or longer than the data), hyper-parameters and momentum state carried
  between calls, checked against the references in ``tests/reference.py`` (bit for bit where
  the exact model is exact, within its rounding bounds elsewhere), against the plain-layout
  result (bit for bit), and the C++ backend against the numba backend (bit for bit, the numba
  path cut into random chunks).
* Random defects (NaN/inf, wrong dtypes, shapes, layouts, hyper-parameters, indices) must be
  refused with a ``TypeError``/``ValueError`` naming the argument, before anything is written.
* ``linsgd._core.train/gradient/loss`` called directly with randomly mutated arguments: a
  Python model of the binding's contract predicts whether the call is valid; a valid call runs
  and agrees with the numba backend, an invalid one raises ``TypeError``/``ValueError``, and none
  may touch memory out of bounds (CI runs this file under AddressSanitizer too).

Deterministic (``derandomize=True``, no example database) and bounded in time.
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# On a failure, hypothesis's pytest plugin imports its patch writer (and libcst), whose import
# emits a DeprecationWarning here; under -W error that would replace the failure report by an
# INTERNALERROR. Import it now, with that warning silenced, so a failure reads as one.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except Exception:  # pragma: no cover - optional (needs libcst), best effort
        pass

from helpers import cpu_backends, grad_bounds  # noqa: E402
from reference import eps_distance, exact_gradient, naive_gradient, train_reference  # noqa: E402

linsgd = pytest.importorskip("linsgd", reason="linsgd is not importable")
kernels = linsgd.kernels
try:
    from linsgd import _core
except ImportError:  # a numba-only install
    _core = None

# the CPU backends selected here (LINSGD_BACKEND, LINSGD_TEST_BACKENDS: see helpers.py)
BACKENDS = cpu_backends()


# LINSGD_HYPOTHESIS_RANDOM=1 draws fresh examples on every run (for exploring locally); CI
# runs the same, derandomized ones every time.
_RANDOM = os.environ.get("LINSGD_HYPOTHESIS_RANDOM") == "1"


def _settings(n):
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=not _RANDOM,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


# --------------------------------------------------------------------------------------
# layouts


def _unaligned(a):
    buf = np.zeros(a.nbytes + a.itemsize, np.uint8)
    out = np.frombuffer(buf.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    out[...] = a
    return out


def _strided(a):
    big = np.zeros((*a.shape[:-1], 2 * a.shape[-1]), a.dtype)
    view = big[..., ::2]
    view[...] = a
    return view


def _readonly(a):
    r = a.copy()
    r.flags.writeable = False
    return r


LAYOUTS = {
    "plain": lambda a: a,
    "fortran": np.asfortranarray,
    "strided": _strided,
    "negative": lambda a: np.ascontiguousarray(a[::-1])[::-1],
    "readonly": _readonly,
    "unaligned": _unaligned,
    "byteswapped": lambda a: a.astype(a.dtype.newbyteorder()),
    # a nested list keeps float64 only (float32 values would come back as float64)
    "list": lambda a: a.tolist() if a.dtype == np.float64 else a,
}
layouts = st.sampled_from(sorted(LAYOUTS))


# --------------------------------------------------------------------------------------
# problems


@st.composite
def problems(draw, max_m=14, max_n=7, max_u=3):
    M = draw(st.integers(1, max_m))
    N = draw(st.integers(0, max_n))
    U = draw(st.integers(1, max_u))
    dt = np.dtype(draw(st.sampled_from([np.float64, np.float32])))
    kind = draw(st.sampled_from(["normal", "normal", "ints", "small", "large", "zeros"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = {"normal": 1.0, "ints": 1.0, "small": 1e-3, "large": 1e3, "zeros": 1.0}[kind]
    if kind == "ints":
        X = rng.integers(-3, 4, (M, N)).astype(float)
        Y = rng.integers(-3, 4, (M, U)).astype(float)
        W = rng.integers(-2, 3, (U, N)).astype(float)
        b = rng.integers(-2, 3, U).astype(float)
    else:
        X = rng.standard_normal((M, N)) * scale
        Y = rng.standard_normal((M, U)) * scale
        W = rng.uniform(-1, 1, (U, N))
        b = rng.uniform(-1, 1, U) * scale
        if kind == "zeros":
            X[...] = 0.0
    X, Y, W, b = (np.ascontiguousarray(a, dtype=dt) for a in (X, Y, W, b))
    if U == 1 and draw(st.booleans()):
        Y = np.ascontiguousarray(Y[:, 0])
    if not draw(st.booleans()):
        b = None
    return dict(X=X, Y=Y, W=W, b=b, scale=scale, exact=N <= 4 and U == 1)


def _eq(a, b):
    if a is None or b is None:
        return a is None and b is None
    return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)


# --------------------------------------------------------------------------------------
# loss and gradient


@_settings(400)
@given(p=problems(), lx=layouts, ly=layouts, lw=layouts, weighted=st.booleans())
def test_gradient_and_loss(p, lx, ly, lw, weighted):
    X, Y, W, b = p["X"], p["Y"], p["W"], p["b"]
    M = X.shape[0]
    sw = np.ones(M, X.dtype) if weighted else None
    eW, eb, eloss = exact_gradient(X, Y, W, b)
    nW, nb, nloss = naive_gradient(X, Y, W, b)
    tW, tb, tloss = grad_bounds(X, Y, W, b, np.finfo(X.dtype).eps)
    first = None
    for backend in BACKENDS:
        W_before = W.copy()
        gW, gb, loss = kernels.gradient(X, Y, W, b, sample_weight=sw, backend=backend)
        full = kernels.loss(X, Y, W, b, sample_weight=sw, backend=backend)
        assert np.array_equal(W, W_before)
        assert gW.dtype == X.dtype and gW.shape == W.shape and loss == full
        assert (gb is None) == (b is None)
        if p["exact"]:
            assert np.array_equal(gW, eW) and _eq(gb, eb) and loss == float(eloss)
        else:
            assert (np.abs(gW - nW) <= tW).all()
            assert b is None or (np.abs(gb - nb) <= tb).all()
            assert abs(loss - float(nloss)) <= tloss
        # the same bits from any layout of the inputs, and from doubled weights
        Xl, Yl, Wl = LAYOUTS[lx](X), LAYOUTS[ly](Y), LAYOUTS[lw](W)
        bl = None if b is None else LAYOUTS[lw](b)
        sw2 = None if sw is None else sw * 2
        g2 = kernels.gradient(Xl, Yl, Wl, bl, sample_weight=sw2, backend=backend)
        assert _eq(g2[0], gW) and _eq(g2[1], gb) and g2[2] == loss
        assert kernels.loss(Xl, Yl, Wl, bl, sample_weight=sw2, backend=backend) == loss
        if first is None:
            first = (gW, gb, loss)
        else:  # every backend gives the same bits
            assert _eq(first[0], gW) and _eq(first[1], gb) and first[2] == loss


# --------------------------------------------------------------------------------------
# training

HYPER = [
    dict(),
    dict(weight_decay=0.05),
    dict(l2=0.02, weight_decay=0.01, decay_bias=False),
    dict(momentum=0.9, dampening=0.1),
    dict(momentum=0.8, nesterov=True, weight_decay=0.01),
    dict(maximize=True, momentum=0.5),
]


@st.composite
def runs(draw):
    p = draw(problems(max_m=10, max_n=5))
    M = p["X"].shape[0]
    p["batch_size"] = draw(st.one_of(st.integers(1, M + 3), st.sampled_from([M, 2**40])))
    E = draw(st.integers(0, 3))
    p["epochs"] = E
    how = draw(st.sampled_from(["none", "permutation", "replacement"])) if E else "none"
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if how == "permutation":
        p["orders"] = np.stack([rng.permutation(M) for _ in range(E)])
    elif how == "replacement":
        R = draw(st.integers(1, 2 * M + 1))
        p["orders"] = rng.integers(0, M, (E, R))
    else:
        p["orders"] = None
    p["hyper"] = draw(st.sampled_from(HYPER))
    base = 0.05 / ((p["X"].shape[1] + 1) * max(p["scale"], 1.0) ** 2)
    if p["hyper"].get("maximize"):
        base /= 50
    p["lr"] = (
        [base * draw(st.sampled_from([0.5, 1.0, 2.0])) for _ in range(E)]
        if draw(st.booleans())
        else base
    )
    p["split"] = draw(st.integers(0, E))  # run as two calls sharing the state
    p["layout"] = draw(layouts)
    return p


def _train_once(p, backend, layout="plain"):
    X, Y, W0, b0 = p["X"], p["Y"], p["W"], p["b"]
    W, b = W0.copy(), (None if b0 is None else b0.copy())
    state: dict = {}
    E, k = p["epochs"], p["split"]
    lr = p["lr"]
    out = []
    Xl, Yl = LAYOUTS[layout](X), LAYOUTS[layout](Y)
    for lo, hi in ((0, k), (k, E)):
        if hi == lo and E:
            continue
        lrs = lr[lo:hi] if isinstance(lr, list) else lr
        orders = None if p["orders"] is None else p["orders"][lo:hi]
        res = kernels.train(
            Xl,
            Yl,
            W,
            b,
            batch_size=p["batch_size"],
            epochs=hi - lo,
            lr=lrs,
            orders=orders,
            state=state,
            backend=backend,
            **p["hyper"],
        )
        out.append(res)
    losses = np.concatenate([r.losses for r in out], axis=0)
    return W, b, losses, state, [r.status for r in out]


@_settings(250)
@given(p=runs())
def test_train_against_references_layouts_and_backends(p):
    X, Y, W0, b0 = p["X"], p["Y"], p["W"], p["b"]
    E = p["epochs"]
    order = p["orders"]
    kw = dict(
        batch_size=min(p["batch_size"], X.shape[0] if order is None else order.shape[1]),
        epochs=E,
        lr=p["lr"],
        order=order,
        **p["hyper"],
    )
    with np.errstate(all="ignore"):  # a draw that diverges is compared across backends only
        We, be, le = train_reference(X, Y, W0, b0, exact=True, **kw)
        Wn, bn, _ = train_reference(X, Y, W0, b0, exact=False, **kw)
    first = None
    for backend in BACKENDS:
        W, b, losses, state, status = _train_once(p, backend)
        if not all(s == "completed" for s in status):
            event("diverged")
            continue  # ill-conditioned draws may diverge; compared across backends below
        assert losses.shape == le.shape
        if p["exact"]:
            assert np.array_equal(W, We) and _eq(b, be)
            assert np.array_equal(losses, le)
        else:
            assert eps_distance(W, We) <= 16 + 2 * eps_distance(Wn, We)
            if b is not None:
                assert eps_distance(b, be) <= 16 + 2 * eps_distance(bn, be)
        assert state.get("step", 0) == (losses.size if E else 0)
        W2, b2, losses2, _, _ = _train_once(p, backend, p["layout"])
        assert _eq(W2, W) and _eq(b2, b) and _eq(losses2, losses)
        if first is None:
            first = (W, b, losses)
        else:
            assert _eq(first[0], W) and _eq(first[1], b) and _eq(first[2], losses)


@_settings(200)
@given(p=runs(), first_work=st.integers(1, 64), big=st.sampled_from([1.0, 1e150, 1e300]))
def test_backends_agree_bitwise_even_when_diverging_and_chunked(p, first_work, big):
    """cpp and numba (its run cut into chunks of random size) give the same bits, statuses and
    step counts, for data that overflows too."""
    if len(BACKENDS) < 2:
        pytest.skip("needs both CPU backends")
    dt = p["X"].dtype
    with np.errstate(over="ignore"):  # values overflowing to inf are wanted here
        p = dict(p, X=(p["X"] * min(big, float(np.finfo(dt).max) / 8)).astype(dt))
    if not np.isfinite(p["X"]).all():
        return
    if p["hyper"].get("maximize"):
        p["hyper"] = dict(p["hyper"], maximize=False)
    results = []
    nb = linsgd._numba
    saved = nb._FIRST_CHUNK_WORK, nb._CHUNK_SECONDS
    for backend in BACKENDS:
        W, b = p["W"].copy(), (None if p["b"] is None else p["b"].copy())
        try:
            nb._FIRST_CHUNK_WORK, nb._CHUNK_SECONDS = first_work, 0.0
            res = kernels.train(
                p["X"],
                p["Y"],
                W,
                b,
                batch_size=p["batch_size"],
                epochs=p["epochs"],
                lr=p["lr"],
                orders=p["orders"],
                state={},
                check_finite=False,
                backend=backend,
                **p["hyper"],
            )
        finally:
            nb._FIRST_CHUNK_WORK, nb._CHUNK_SECONDS = saved
        if res.status == "completed":
            assert np.isfinite(W).all() and (b is None or np.isfinite(b).all())
        results.append((W, b, res))
    (W1, b1, r1), (W2, b2, r2) = results
    assert _eq(W1, W2) and _eq(b1, b2) and _eq(r1.losses, r2.losses)
    assert (r1.status, r1.steps, r1.epochs) == (r2.status, r2.steps, r2.epochs)


@_settings(150)
@given(
    p=problems(max_m=10, max_n=5),
    lr=st.sampled_from([0.01, 1e3, 1e30]),
    mom=st.sampled_from([0.0, 0.9]),
)
def test_step_and_epoch_agree_with_train_and_report_divergence(p, lr, mom):
    X, Y, W0, b0 = p["X"], p["Y"], p["W"], p["b"]
    M = X.shape[0]
    bs = max(1, M // 3)
    for backend in BACKENDS:
        W, b = W0.copy(), (None if b0 is None else b0.copy())
        res = kernels.train(
            X, Y, W, b, batch_size=bs, epochs=2, lr=lr, momentum=mom, state={}, backend=backend
        )
        W2, b2 = W0.copy(), (None if b0 is None else b0.copy())
        state: dict = {}
        losses = []
        err = None
        try:
            for _ in range(2):
                losses.append(
                    kernels.epoch(
                        X,
                        Y,
                        W2,
                        b2,
                        batch_size=bs,
                        lr=lr,
                        momentum=mom,
                        state=state,
                        backend=backend,
                    )
                )
        except linsgd.DivergenceError as exc:
            err = exc
        assert _eq(W2, W) and _eq(b2, b)
        if res.status == "diverged":
            assert err is not None
            spe = res.losses.shape[1]
            k = (
                res.steps
                if np.isfinite(W).all() and (b is None or np.isfinite(b).all())
                else res.steps - 1
            )
            assert (len(losses), err.step) == divmod(k, spe)
        else:
            assert err is None and _eq(np.stack(losses), res.losses)
        # one step is an epoch with one batch
        W3, b3 = W0.copy(), (None if b0 is None else b0.copy())
        try:
            v = kernels.step(X, Y, W3, b3, lr=lr, backend=backend)
        except linsgd.DivergenceError as exc:
            assert (exc.epoch, exc.step) == (0, 0)
        else:
            W4, b4 = W0.copy(), (None if b0 is None else b0.copy())
            r4 = kernels.train(X, Y, W4, b4, batch_size=M, epochs=1, lr=lr, backend=backend)
            assert v == r4.losses[0, 0] and _eq(W3, W4) and _eq(b3, b4)


# --------------------------------------------------------------------------------------
# random defects: refused, naming the argument, before anything is written

DEFECTS = [
    ("X", "nan"),
    ("X", "inf"),
    ("X", "int"),
    ("X", "bool"),
    ("X", "complex"),
    ("X", "object"),
    ("X", "float16"),
    ("X", "1d"),
    ("X", "3d"),
    ("X", "empty"),
    ("Y", "nan"),
    ("Y", "inf"),
    ("Y", "other_float"),
    ("Y", "int"),
    ("Y", "rows"),
    ("Y", "3d"),
    ("W", "nan"),
    ("W", "other_float"),
    ("W", "shape"),
    ("W", "int"),
    ("b", "inf"),
    ("b", "shape"),
    ("b", "other_float"),
    ("W", "readonly"),
    ("W", "fortran"),
    ("W", "strided"),
    ("W", "list"),
    ("b", "readonly"),
    ("W", "alias_X"),
    ("lr", "nan"),
    ("lr", "inf"),
    ("lr", "negative"),
    ("lr", "str"),
    ("momentum", "negative"),
    ("momentum", "nan"),
    ("weight_decay", "inf"),
    ("dampening", "nan"),
    ("l2", "negative"),
    ("nesterov", "no_momentum"),
    ("batch_size", "zero"),
    ("batch_size", "negative"),
    ("batch_size", "float"),
    ("order", "too_large"),
    ("order", "negative"),
    ("order", "float"),
    ("order", "2d"),
    ("sample_weight", "negative"),
    ("sample_weight", "nan"),
    ("sample_weight", "shape"),
]
IN_PLACE_ONLY = {"readonly", "fortran", "strided", "list", "alias_X"}
TRAINING_ONLY = {
    "lr",
    "momentum",
    "weight_decay",
    "dampening",
    "l2",
    "nesterov",
    "batch_size",
    "order",
}


def _defective(p, arg, kind, rng):
    X, Y, W, b = p["X"].copy(), p["Y"].copy(), p["W"].copy(), p["b"]
    b = None if b is None else b.copy()
    M, N = X.shape
    U = W.shape[0]
    other = np.float32 if X.dtype == np.float64 else np.float64
    call = dict(X=X, Y=Y, W=W, b=b, lr=0.01, batch_size=max(1, M // 2))
    exc = ValueError
    if arg in ("X", "Y", "W", "b"):
        a = call[arg]
        if arg == "b" and a is None:
            a = np.zeros(U, X.dtype)
        if kind in ("nan", "inf") and a.size:
            a = a.copy()
            a.flat[rng.integers(0, a.size)] = np.nan if kind == "nan" else -np.inf
        elif kind in ("nan", "inf"):
            return None  # nothing to spoil
        elif kind == "int":
            a, exc = a.astype(np.int64), TypeError
        elif kind == "bool":
            a, exc = a > 0, TypeError
        elif kind == "complex":
            a, exc = a.astype(np.complex64), TypeError
        elif kind == "object":
            a, exc = a.astype(object), TypeError
        elif kind == "float16":
            a, exc = a.astype(np.float16), TypeError
        elif kind == "other_float":
            a, exc = a.astype(other), TypeError
        elif kind == "1d":
            a = a.ravel()
            if arg == "X" and N == 1:
                return None  # (M,) would still be refused, but so is its Y pairing; keep simple
        elif kind == "3d":
            a = a.reshape(a.shape + (1,) * (3 - a.ndim))
        elif kind == "empty":
            a = a[:0]
            call["Y"] = Y[:0]
        elif kind == "rows":
            a = np.concatenate([a, a[:1]])
        elif kind == "shape":
            a = np.zeros(tuple(d + 1 for d in a.shape), a.dtype)
        elif kind == "readonly":
            a = _readonly(a)
        elif kind == "fortran":
            if U == 1 or N <= 1:
                return None  # a one-row or one-column matrix is C-contiguous too
            a = np.asfortranarray(a)
        elif kind == "strided":
            a = _strided(a)
        elif kind == "list":
            a, exc = a.tolist(), TypeError
        elif kind == "alias_X":
            if M * N < U * N or N == 0:
                return None
            X2 = X.copy()
            call["X"] = X2
            a = X2.reshape(-1)[: U * N].reshape(U, N)
            if not np.isfinite(a).all():
                return None
        if kind in ("readonly", "fortran", "strided") and _flags_ok(a, writable=True):
            return None  # still a writable C-contiguous array (an empty one, say)
        call[arg] = a
        return call, exc, arg if kind != "alias_X" else "shares memory"
    if arg == "lr":
        call["lr"] = {"nan": np.nan, "inf": np.inf, "negative": -1e-3, "str": "0.1"}[kind]
        return call, TypeError if kind == "str" else ValueError, "lr"
    if arg in ("momentum", "weight_decay", "dampening", "l2"):
        call[arg] = {"negative": -0.5, "nan": np.nan, "inf": np.inf}[kind]
        return call, ValueError, arg
    if arg == "nesterov":
        call["nesterov"] = True
        return call, ValueError, "nesterov"
    if arg == "batch_size":
        call["batch_size"] = {"zero": 0, "negative": -2, "float": 2.0}[kind]
        return call, TypeError if kind == "float" else ValueError, "batch_size"
    if arg == "order":
        if kind == "too_large":
            o = rng.permutation(M)
            o[rng.integers(0, M)] = M + rng.integers(0, 3)
        elif kind == "negative":
            o = rng.permutation(M)
            o[rng.integers(0, M)] = -1
        elif kind == "float":
            o = rng.permutation(M).astype(float)
        else:
            o = rng.permutation(M)[None, :]
        call["order"] = o
        return call, TypeError if kind == "float" else ValueError, "order"
    if arg == "sample_weight":
        sw = np.ones(M)
        if kind == "negative":
            sw[rng.integers(0, M)] = -1.0
        elif kind == "nan":
            sw[rng.integers(0, M)] = np.nan
        else:
            sw = np.ones(M + 1)
        call["sample_weight"] = sw
        return call, ValueError, "sample_weight"
    raise AssertionError(arg)


def _invoke(fn, call, backend):
    c = dict(call)
    X, Y, W, b = c.pop("X"), c.pop("Y"), c.pop("W"), c.pop("b")
    lr, bs = c.pop("lr"), c.pop("batch_size")
    order = c.pop("order", None)
    if fn == "loss":
        return kernels.loss(X, Y, W, b, backend=backend, **c)
    if fn == "gradient":
        return kernels.gradient(X, Y, W, b, backend=backend, **c)
    if fn == "step":
        return kernels.step(X, Y, W, b, lr=lr, backend=backend, **c)
    if fn == "epoch":
        return kernels.epoch(X, Y, W, b, batch_size=bs, lr=lr, order=order, backend=backend, **c)
    orders = (
        None
        if order is None
        else np.asarray(order).reshape(1, -1)
        if np.ndim(order) == 1
        else order[None]
    )
    return kernels.train(
        X, Y, W, b, batch_size=bs, epochs=1, lr=lr, orders=orders, backend=backend, **c
    )


@_settings(600)
@given(
    p=problems(),
    defect=st.sampled_from(DEFECTS),
    fn=st.sampled_from(["loss", "gradient", "step", "epoch", "train"]),
    seed=st.integers(0, 2**32 - 1),
    backend=st.sampled_from(BACKENDS),
)
def test_random_defects_are_refused_naming_the_argument(p, defect, fn, seed, backend):
    arg, kind = defect
    if fn in ("loss", "gradient") and (kind in IN_PLACE_ONLY or arg in TRAINING_ONLY):
        event("not applicable")
        return  # read-only uses accept any layout, and have no hyper-parameters
    if fn == "step" and arg in ("batch_size", "order"):
        event("not applicable")
        return
    made = _defective(p, arg, kind, np.random.default_rng(seed))
    if made is None:
        event("not applicable")
        return
    event("refused as expected")
    call, exc, words = made
    keep = {
        k: np.array(v, copy=True)
        for k, v in call.items()
        if k in ("W", "b") and isinstance(v, np.ndarray)
    }
    with pytest.raises(exc) as info:
        _invoke(fn, call, backend)
    assert words in str(info.value), f"{info.value!r} should name {words!r}"
    for k, v in keep.items():
        assert np.array_equal(v, call[k], equal_nan=True), f"{k} was written"


# --------------------------------------------------------------------------------------
# linsgd._core called directly with mutated arguments


def _flags_ok(a, *, writable=False):
    f = a.flags
    return f.c_contiguous and f.aligned and a.dtype.isnative and (f.writeable or not writable)


def _float_ok(a, ndim, *, writable=False, dtype=None):
    if not isinstance(a, np.ndarray) or a.dtype.kind != "f" or a.dtype.itemsize not in (4, 8):
        return False
    if dtype is not None and a.dtype.itemsize != np.dtype(dtype).itemsize:
        return False
    return a.ndim == ndim and _flags_ok(a, writable=writable)


def _overlap(a, b):
    if a.nbytes == 0 or b.nbytes == 0:
        return False
    pa = a.__array_interface__["data"][0]
    pb = b.__array_interface__["data"][0]
    return pa < pb + b.nbytes and pb < pa + a.nbytes


def _core_train_valid(a):
    """The binding's contract, independently: True when _core.train must accept ``a``."""
    X, Y, W, b = a["X"], a["Y"], a["W"], a["b"]
    if not _float_ok(X, 2) or X.shape[0] < 1:
        return False
    dt = X.dtype
    M, N = X.shape
    if _float_ok(Y, 1, dtype=dt):
        U = 1
        if Y.shape[0] != M:
            return False
    elif not _float_ok(Y, 2, dtype=dt) or Y.shape[0] != M or Y.shape[1] < 1:
        return False
    else:
        U = Y.shape[1]
    if not _float_ok(W, 2, writable=True, dtype=dt) or W.shape != (U, N):
        return False
    if b is not None and (not _float_ok(b, 1, writable=True, dtype=dt) or b.shape != (U,)):
        return False
    sw = a["sample_weight"]
    if sw is not None:
        if not _float_ok(sw, 1, dtype=dt) or sw.shape != (M,):
            return False
        if not (np.isfinite(sw).all() and (sw >= 0).all()):
            return False
    bs = a["batch_size"]
    if bs is not None and (not isinstance(bs, int) or not (1 <= bs < 2**63)):
        return False
    E = a["epochs"]
    lr = a["lr"]
    if not _float_ok(lr, 1, dtype=np.float64) or lr.shape != (E,):
        return False
    if not (np.isfinite(lr).all() and (lr >= 0).all()):
        return False
    for k in ("weight_decay", "l2", "momentum", "dampening"):
        if not math.isfinite(a[k]) or (k != "dampening" and a[k] < 0):
            return False
    if a["nesterov"] and (a["momentum"] == 0 or a["dampening"] != 0):
        return False
    if a["target_loss"] is not None and not math.isfinite(a["target_loss"]):
        return False
    order = a["order"]
    if order is not None:
        if not (
            isinstance(order, np.ndarray)
            and order.dtype == np.int64
            and (order.ndim == 2 or (order.ndim == 1 and E == 1))
            and _flags_ok(order)
            and (order.ndim == 1 or order.shape[0] == E)
        ):
            return False
        if order.shape[-1] < 1:
            return False
        if order.size and (order.min() < 0 or order.max() >= M):
            return False
    outs = [W] + ([b] if b is not None else [])
    ins = [X, Y, lr] + [v for v in (order, sw) if v is not None]
    if a["momentum"] != 0:
        bw, bb = a["buf_W"], a["buf_b"]
        if not _float_ok(bw, 2, writable=True, dtype=dt) or bw.shape != (U, N):
            return False
        outs.append(bw)
        if b is not None:
            if not _float_ok(bb, 1, writable=True, dtype=dt) or bb.shape != (U,):
                return False
            outs.append(bb)
    xv, yv = a["X_valid"], a["Y_valid"]
    if (xv is None) != (yv is None):
        return False
    if xv is not None:
        if not _float_ok(xv, 2, dtype=dt) or xv.shape[0] < 1 or xv.shape[1] != N:
            return False
        if not (
            (_float_ok(yv, 2, dtype=dt) and yv.shape == (xv.shape[0], U))
            or (U == 1 and _float_ok(yv, 1, dtype=dt) and yv.shape == (xv.shape[0],))
        ):
            return False
        ins += [xv, yv]
    everything = outs + ins
    for i, o in enumerate(outs):
        for j, other in enumerate(everything):
            if i != j and _overlap(o, other):
                return False
    return True


def _mutants(a, rng, M, E, dt):
    """Ways of spoiling (or validly changing) one argument of a _core.train call (built for
    M rows, E epochs, dtype dt), as (key, make) pairs: ``make()`` builds the value when picked."""
    other = np.float32 if dt == np.float64 else np.float64
    arrays = [
        "X",
        "Y",
        "W",
        "b",
        "lr",
        "buf_W",
        "buf_b",
        "X_valid",
        "Y_valid",
        "sample_weight",
        "order",
    ]
    out = []
    for k in arrays:
        v = a[k]
        like = (
            v
            if isinstance(v, np.ndarray)
            else (np.zeros((E, M), np.int64) if k == "order" else np.zeros(M, dt))
        )
        out += [
            (k, lambda: None),
            (
                k,
                lambda like=like: (
                    like.astype(other) if like.dtype.kind == "f" else like.astype(np.int32)
                ),
            ),
            (
                k,
                lambda like=like: (
                    like.astype(np.int64) if like.dtype.kind == "f" else like.astype(np.float64)
                ),
            ),
            (k, lambda like=like: like.astype(like.dtype.newbyteorder())),
            (k, lambda like=like: _unaligned(like)),
            (k, lambda like=like: _readonly(like)),
            (k, lambda like=like: like.reshape(-1)),
            (k, lambda like=like: like.reshape((*like.shape, 1))),
            (
                k,
                lambda like=like: np.zeros(
                    tuple(max(0, int(d) + int(rng.integers(-1, 2))) for d in like.shape), like.dtype
                ),
            ),
            (k, lambda like=like: like.tolist()),
            (k, lambda like=like: like[..., ::-1] if like.ndim else like),
            (k, lambda like=like: np.asfortranarray(like) if like.ndim == 2 else like),
        ]
    out += [
        ("order", lambda: rng.integers(-2, M + 2, (E, int(rng.integers(0, 2 * M + 2))))),
        ("order", lambda: rng.integers(0, M, (E, int(rng.integers(1, 2 * M + 2))))),
        ("order", lambda: np.full((E, M), 2**62, np.int64)),
        ("batch_size", lambda: int(rng.integers(-3, M + 5))),
        ("batch_size", lambda: 2**63 - 1),
        ("batch_size", lambda: 2**40),
        ("lr", lambda: np.full(E, np.nan)),
        ("lr", lambda: np.full(E + 1, 0.01)),
        ("order", lambda: rng.integers(0, M, M)),
        ("batch_size", lambda: None),
        ("lr", lambda: np.full(E, -0.01)),
        ("momentum", lambda: float(rng.choice([0.0, 0.9, np.nan, -0.5]))),
        ("nesterov", lambda: True),
        ("dampening", lambda: float(rng.choice([0.0, 0.5, np.inf]))),
        ("target_loss", lambda: float(rng.choice([np.nan, 0.5, np.inf, -np.inf]))),
        ("target_loss", lambda: None),
        ("weight_decay", lambda: float(rng.choice([0.0, 0.1, np.nan, -0.1]))),
        ("sample_weight", lambda: np.abs(rng.standard_normal(M)).astype(dt)),
        ("sample_weight", lambda: -np.ones(M, dt)),
        ("sample_weight", lambda: np.full(M, np.nan, dt)),
        ("momentum_initialized", lambda: True),
        ("valid", lambda: None),  # add a validation set (valid or not)
        ("alias", lambda: None),  # make an output share memory with another argument
    ]
    return out


def _base_core_args(p, E, bs, momentum, rng):
    X, Y, W, b = p["X"], p["Y"].reshape(p["X"].shape[0], -1), p["W"].copy(), p["b"]
    b = None if b is None else b.copy()
    N = X.shape[1]
    U = Y.shape[1]
    dt = X.dtype
    return dict(
        X=X,
        Y=np.ascontiguousarray(Y),
        W=W,
        b=b,
        order=None,
        batch_size=bs,
        lr=np.full(E, 0.01),
        epochs=E,
        weight_decay=0.0,
        decay_bias=True,
        l2=0.0,
        momentum=momentum,
        dampening=0.0,
        nesterov=False,
        maximize=False,
        buf_W=np.zeros((U, N), dt) if momentum else None,
        buf_b=np.zeros(U, dt) if momentum and b is not None else None,
        momentum_initialized=False,
        X_valid=None,
        Y_valid=None,
        target_loss=None,
        sample_weight=None,
        threads=1,
        flags=0,
    )


def _apply(a, key, value, rng):
    if key in ("valid", "alias") and not all(
        isinstance(a[k], np.ndarray) and a[k].ndim == n for k, n in (("X", 2), ("W", 2), ("lr", 1))
    ):
        return  # built from arguments already spoiled: nothing sensible to add
    if key == "valid":
        X = a["X"]
        Mv = int(rng.integers(0, 4))
        a["X_valid"] = np.zeros(
            (Mv, X.shape[1] + int(rng.integers(0, 2) * rng.integers(0, 2))), X.dtype
        )
        a["Y_valid"] = np.zeros((Mv, a["W"].shape[0] + int(rng.integers(0, 2))), X.dtype)
        return
    if key == "alias":
        X, W = a["X"], a["W"]
        choice = int(rng.integers(0, 5))
        if (
            choice == 0
            and X.size >= W.size
            and X.shape[1] == W.shape[1]
            and X.shape[0] >= W.shape[0]
        ):
            X2 = X.copy()
            a["X"] = X2
            a["W"] = X2[: W.shape[0]]
        elif choice == 1 and W.size:
            buf = np.zeros(a["lr"].size + W.size * W.itemsize // 8 + 1)
            buf[: a["lr"].size] = 0.01
            a["lr"] = buf[: a["lr"].size]
            W2 = buf[max(0, a["lr"].size - 1) :].view(W.dtype)[: W.size].reshape(W.shape)
            W2[...] = W
            a["W"] = W2
        elif choice == 2 and a["b"] is not None and W.size >= a["b"].size and W.size:
            a["b"] = W.reshape(-1)[: a["b"].size]
        elif choice == 3:
            a["momentum"] = 0.9
            a["buf_W"] = W
            a["buf_b"] = None if a["b"] is None else np.zeros_like(a["b"])
        else:
            sw = np.ones(a["X"].shape[0] + W.size, W.dtype)
            W2 = sw[-W.size - 1 : -1].reshape(W.shape) if W.size else W
            W2[...] = W
            a["W"] = W2
            a["sample_weight"] = sw[: a["X"].shape[0]]
        return
    a[key] = value


@pytest.mark.skipif(_core is None, reason="the compiled module linsgd._core is not built")
@_settings(1500)
@given(
    p=problems(max_m=9, max_n=4),
    E=st.integers(1, 2),
    bs_frac=st.integers(1, 4),
    momentum=st.sampled_from([0.0, 0.9]),
    picks=st.lists(st.integers(0, 10**6), max_size=2),
    seed=st.integers(0, 2**32 - 1),
)
def test_core_train_direct_calls(p, E, bs_frac, momentum, picks, seed):
    rng = np.random.default_rng(seed)
    M = p["X"].shape[0]
    a = _base_core_args(p, E, max(1, M // bs_frac), momentum, rng)
    for pick in picks:
        muts = _mutants(a, rng, M, E, p["X"].dtype)
        key, make = muts[pick % len(muts)]
        with np.errstate(all="ignore"):  # casts of NaN to int and the like are wanted
            value = make()
        _apply(a, key, value, rng)
    valid = _core_train_valid(a)
    event("valid call" if valid else "invalid call")
    before = {
        k: np.array(v, copy=True)
        for k, v in a.items()
        if isinstance(v, np.ndarray) and k in ("W", "b", "buf_W", "buf_b")
    }
    try:
        steps, status, losses, valid_losses = _core.train(*a.values())
    except (TypeError, ValueError) as exc:
        assert not valid, f"a valid call was refused: {exc}"
        for k, v in before.items():  # refused before anything was written
            assert np.array_equal(v, a[k], equal_nan=True), k
        return
    assert valid, "an invalid call was accepted"
    assert status in (0, 1, 2) and 0 <= steps <= losses.size
    assert (valid_losses is None) == (a["X_valid"] is None)
    if "numba" in BACKENDS:  # the same call through the other backend gives the same bits
        b2 = {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v) for k, v in a.items()}
        for k, v in before.items():
            b2[k] = v.copy()
        steps2, status2, losses2, valid2 = linsgd._numba.train(**b2)
        assert (steps2, status2) == (steps, status)
        assert _eq(b2["W"], a["W"]) and _eq(b2["b"], a["b"])
        assert _eq(losses2, losses) and _eq(valid2, valid_losses)


@pytest.mark.skipif(_core is None, reason="the compiled module linsgd._core is not built")
@_settings(800)
@given(
    p=problems(max_m=9, max_n=4),
    picks=st.lists(st.integers(0, 10**6), max_size=2),
)
def test_core_gradient_and_loss_direct_calls(p, picks):
    X, W, b = p["X"], p["W"], p["b"]
    Y = np.ascontiguousarray(p["Y"].reshape(X.shape[0], -1))
    a = dict(
        X=X,
        Y=Y,
        W=W,
        b=b,
        gW=np.zeros_like(W),
        gb=None if b is None else np.zeros_like(b),
        sample_weight=None,
    )
    keys = list(a)
    for pick in picks:
        k = keys[pick % len(keys)]
        like = a[k] if isinstance(a[k], np.ndarray) else np.ones(X.shape[0], X.dtype)
        variants = [
            None,
            like.astype(np.float32 if like.dtype == np.float64 else np.float64),
            _unaligned(like),
            _readonly(like),
            like.reshape(-1),
            like[..., ::-1],
            np.zeros(tuple(d + 1 for d in like.shape), like.dtype),
            like.astype(like.dtype.newbyteorder()),
            -np.abs(like) - 1,
            like.tolist(),
        ]
        if k == "gW" and X.shape[1] == W.shape[1] and X.shape[0] >= W.shape[0]:
            X2 = X.copy()
            a["X"] = X2
            variants.append(X2[: W.shape[0]])
        a[k] = variants[(pick // 7) % len(variants)]
    x, y, w, bb, gw, gb, sw = a.values()
    ok = (
        _float_ok(x, 2)
        and x.shape[0] >= 1
        and _float_ok(y, 2, dtype=x.dtype)
        and y.shape[0] == x.shape[0]
        and y.shape[1] >= 1
        and _float_ok(w, 2, dtype=x.dtype)
        and w.shape == (y.shape[1], x.shape[1])
        and (bb is None or (_float_ok(bb, 1, dtype=x.dtype) and bb.shape == (y.shape[1],)))
        and (
            sw is None
            or (
                _float_ok(sw, 1, dtype=x.dtype)
                and sw.shape == (x.shape[0],)
                and np.isfinite(sw).all()
                and (sw >= 0).all()
            )
        )
    )
    loss_ok = ok
    ok = ok and _float_ok(gw, 2, writable=True, dtype=x.dtype) and gw.shape == w.shape
    if ok and bb is not None:
        ok = _float_ok(gb, 1, writable=True, dtype=x.dtype) and gb.shape == bb.shape
    if ok:
        outs = [gw] + ([gb] if bb is not None else [])
        ins = [x, y, w] + [v for v in (bb, sw) if v is not None]
        ok = not any(
            _overlap(o, v) for i, o in enumerate(outs) for v in outs[:i] + outs[i + 1 :] + ins
        )
    event(f"loss {'valid' if loss_ok else 'invalid'}, gradient {'valid' if ok else 'invalid'}")
    try:
        value = _core.loss(x, y, w, bb, sw)
    except (TypeError, ValueError):
        assert not loss_ok
    else:
        assert loss_ok
        assert value == kernels.loss(x, y, w, bb, sample_weight=sw, backend=BACKENDS[-1]) or (
            math.isnan(value)
        )
    try:
        g = _core.gradient(x, y, w, bb, gw, gb, sw)
    except (TypeError, ValueError):
        assert not ok
    else:
        assert ok
        ref = kernels.gradient(x, y, w, bb, sample_weight=sw, backend=BACKENDS[-1])
        assert _eq(gw, ref[0]) and (bb is None or _eq(gb, ref[1]))
        assert g == ref[2] or (math.isnan(g) and math.isnan(ref[2]))
