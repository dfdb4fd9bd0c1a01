"""Internal tests of the numba backend (``linsgd._numba``): its building blocks, bit for bit.

* the ``llvm.fma`` intrinsic against an exact (``fractions.Fraction``) fused multiply-add;
* the cascade sum against the Appendix A1 model (``reference.sum_dim0``);
* ``gradient`` and ``train`` against torch autograd / ``torch.optim.SGD`` where torch's GEMMs
  are known to use the sequential order (U = 1, N <= 4), and against the numpy model elsewhere;
* the vectorised pieces (the blocked dot's lanes and the cascade's lanes as LLVM vectors)
  against scalar ports of math.hpp, and the whole backend against the compiled one.
"""

from __future__ import annotations

import math
import signal
from fractions import Fraction

import numba
import numpy as np
import pytest

from helpers import DTYPES
from linsgd import _numba
from linsgd._numba import _intrinsics, _sums
from reference import sum_dim0, train_reference


def _train_into(
    mod, X, Y, W, b, order, bs, lr, wd, db, l2, mu, damp, nest, maxi, buf_W, buf_b, init,
    losses, X_valid, Y_valid, valid_losses, target, sample_weight=None, threads=1,
):  # fmt: skip
    """``mod.train``, writing its losses into ``losses`` and ``valid_losses`` (given arrays, as
    these tests compare them) and returning ``(steps, status)``; ``target`` NaN: none."""
    steps, status, got, got_valid = mod.train(
        X, Y, W, b, order, bs, lr, len(lr), wd, db, l2, mu, damp, nest, maxi, buf_W, buf_b,
        init, X_valid, Y_valid, None if math.isnan(target) else target, sample_weight, threads,
        0,  # (no finiteness checks: these tests train on NaN and infinity on purpose)
    )  # fmt: skip
    losses[: got.size] = got
    if valid_losses is not None:
        valid_losses[:] = got_valid
    return steps, status


def _bits(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.view(np.uint64 if a.dtype == np.float64 else np.uint32)


def assert_bits_equal(actual, expected) -> None:
    actual = np.atleast_1d(np.asarray(actual))
    expected = np.atleast_1d(np.asarray(expected))
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    diff = np.flatnonzero(_bits(actual).ravel() != _bits(expected).ravel())
    assert diff.size == 0, (
        f"{diff.size}/{actual.size} elements differ, first at {diff[0]}: "
        f"{actual.ravel()[diff[0]]!r} != {expected.ravel()[diff[0]]!r}"
    )


# --------------------------------------------------------------------------------------------
# fma intrinsic


@numba.njit(cache=True)
def _fma_arrays(a, b, c, out):
    for i in range(a.shape[0]):
        out[i] = _intrinsics._fma(a[i], b[i], c[i])


def _exact_fma(a: float, b: float, c: float, dtype) -> float:
    """Correctly rounded a*b + c in ``dtype`` (finite, non-overflowing inputs)."""
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    if exact == 0:
        # IEEE: an exact zero sum is +0 under round-to-nearest unless both terms are -0.
        neg = math.copysign(1.0, float(a) * float(b)) < 0 and math.copysign(1.0, float(c)) < 0
        return dtype(-0.0 if neg else 0.0)
    r = float(exact)  # int / int true division: correctly rounded to float64
    if dtype is np.float32 and Fraction(r) != exact:
        # Round to odd in float64, then once to float32: no double-rounding error (53 >= 24 + 2).
        if np.float64(r).view(np.int64) & 1 == 0:
            r = float(np.nextafter(r, math.inf if exact > Fraction(r) else -math.inf))
    return dtype(r)


def _fma_cases(dtype, n: int, seed: int):
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(n) * 2.0 ** rng.integers(-20, 20, n)).astype(dtype)
    b = (rng.standard_normal(n) * 2.0 ** rng.integers(-20, 20, n)).astype(dtype)
    c = (rng.standard_normal(n) * 2.0 ** rng.integers(-40, 40, n)).astype(dtype)
    # Contrived: c = -fl(a*b) makes the unfused result 0 and the fused one the product's
    # rounding error; c = -fl(a*b) * (1 + tiny) puts the sum next to a rounding boundary.
    m = n // 3
    c[:m] = -(a[:m] * b[:m])
    c[m : 2 * m] = -(a[m : 2 * m] * b[m : 2 * m]) * dtype(1 + 2.0**-10)
    # Exact halfway-ish operands: 1 + 2^-k products against -1.
    k = 12 if dtype is np.float32 else 27
    a[-4:] = dtype(1 + 2.0**-k)
    b[-4:] = dtype(1 - 2.0**-k)
    c[-4:] = dtype(-1.0)
    a[-1], b[-1], c[-1] = dtype(0.0), dtype(-3.0), dtype(-0.0)
    return a, b, c


@pytest.mark.parametrize("dtype", DTYPES)
def test_fma_intrinsic_is_correctly_rounded(dtype):
    a, b, c = _fma_cases(dtype, 3000, seed=11)
    got = np.empty_like(a)
    _fma_arrays(a, b, c, got)
    want = np.array([_exact_fma(x, y, z, dtype) for x, y, z in zip(a, b, c)], dtype)
    assert_bits_equal(got, want)
    unfused = a * b + c
    n_differ = int(np.count_nonzero(_bits(unfused) != _bits(want)))
    assert n_differ > 1000, "the cases must exercise fused != unfused"


@numba.njit(
    _nrt=False
)  # no cache: it compiles linsgd._numba code in, and would not see that change
def _scratch_roundtrip(like, n):
    s = _intrinsics._scratch(n, like)
    got = s.shape[0]
    for i in range(got):
        s[i] = i
    total = 0.0
    for i in range(got):
        total += s[i]
    if got:
        _intrinsics._release(s)
    return got, total


@pytest.mark.parametrize("dtype", DTYPES)
def test_scratch_gives_the_size_asked_or_nothing(dtype):
    """The runtime-free scratch holds n writable elements, or none when malloc refuses (too
    large, a size in bytes that overflows, a negative size)."""
    like = np.zeros(1, dtype)
    assert _scratch_roundtrip(like, 1000) == (1000, 999 * 1000 / 2)
    for n in (1 << 46, 1 << 62, -3):
        assert _scratch_roundtrip(like, n) == (0, 0.0)


# --------------------------------------------------------------------------------------------
# cascade sum


@numba.njit  # no cache: it compiles linsgd._numba code in, and would not see that change
def _sum_flat(data, n, vec):
    """``torch.sum`` of the contiguous ``data[:n]`` (``vec``, the AVX2 lane count, unused: the
    kernels derive it from the dtype)."""
    cs = np.empty(4 * (128 // data.itemsize), dtype=data.dtype)
    return _sums._sum_contiguous(data, np.intp(0), n, cs)


@numba.njit  # no cache: it compiles linsgd._numba code in, and would not see that change
def _sum_columns(data, B, U, vec, out):
    """``out[u] = torch.sum(G, 0)[u]`` for ``G = data[:B*U].reshape(B, U)``."""
    cs = np.empty(4 * (128 // data.itemsize), dtype=data.dtype)
    _sums._column_sums(data, B, U, out, cs)


CASCADE_B = [*range(1, 71), 127, 128, 257, 600]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("U", [1, 2, 3, 4, 5, 17, 33])
def test_cascade_sum_matches_model(dtype, U):
    rng = np.random.default_rng(100 + U)
    vec = 32 // np.dtype(dtype).itemsize
    order_matters = 0
    for B in CASCADE_B:
        if U >= 17 and B > 70 and B != 600:
            continue  # keep the pure-Python model fast; B = 600 still covers the long cascade
        G = (rng.standard_normal((B, U)) * 10.0 ** rng.uniform(-3, 3, (B, U))).astype(dtype)
        flat = G.ravel()
        out = np.empty(U, dtype)
        _sum_columns(flat, B, U, vec, out)
        want = sum_dim0(G)
        assert_bits_equal(out, want)
        # The flattened (loss) sum: the U == 1 model over B*U elements.
        total = _sum_flat(flat, B * U, vec)
        assert_bits_equal(np.asarray(total, dtype), sum_dim0(flat.reshape(-1, 1)))
        seq = np.zeros(U, dtype)
        for i in range(B):
            seq = seq + G[i]
        order_matters += int(np.any(_bits(seq) != _bits(want)))
    assert order_matters > 0, "the data must distinguish the cascade from a sequential sum"


# --------------------------------------------------------------------------------------------
# against torch


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")


def _problem(M, N, U, dtype, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((M, N)).astype(dtype)
    W_true = rng.standard_normal((U, N))
    Y = (X @ W_true.T + 0.5 + 0.1 * rng.standard_normal((M, U))).astype(dtype)
    W0 = rng.uniform(-1, 1, (U, N)).astype(dtype) / np.sqrt(max(N, 1)).astype(dtype)
    b0 = rng.uniform(-1, 1, U).astype(dtype)
    return X, Y, W0, b0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_gradient_matches_torch_autograd(dtype, bias):
    torch = _torch()
    tdt = torch.float64 if dtype is np.float64 else torch.float32
    n_cases = 0
    for N in range(1, 5):
        for M in [*range(1, 41), 64, 99, 257]:
            X, Y, W0, b0 = _problem(M, N, 1, dtype, seed=1000 * N + M)
            b = b0 if bias else None
            gW = np.empty_like(W0)
            gb = np.empty_like(b0) if bias else None
            loss = _numba.gradient(X, Y, W0, b, gW, gb)

            layer = torch.nn.Linear(N, 1, bias=bias, dtype=tdt)
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(W0))
                if bias:
                    layer.bias.copy_(torch.from_numpy(b0))
            tl = torch.nn.MSELoss()(layer(torch.tensor(X)), torch.tensor(Y))
            tl.backward()
            assert_bits_equal(gW, layer.weight.grad.numpy())
            if bias:
                assert_bits_equal(gb, layer.bias.grad.numpy())
            assert loss == tl.item(), (N, M)
            assert _numba.loss(X, Y, W0, b) == tl.item(), (N, M)
            n_cases += 1
    assert n_cases == 4 * 43


def _torch_run(X, Y, W0, b0, orders, bs, lrs, cfg, Xv, Yv, torch):
    """The torch loop: nn.Linear + MSELoss + SGD, fresh batch tensors, lr set per epoch."""
    U, N = W0.shape
    layer = torch.nn.Linear(N, U, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W0))
        layer.bias.copy_(torch.from_numpy(b0))
    groups = [
        {"params": [layer.weight], "weight_decay": cfg["weight_decay"] + 2.0 * cfg["l2"]},
        {"params": [layer.bias], "weight_decay": cfg["weight_decay"] if cfg["decay_bias"] else 0.0},
    ]
    opt = torch.optim.SGD(
        groups,
        lr=lrs[0],
        momentum=cfg["momentum"],
        dampening=cfg["dampening"],
        nesterov=cfg["nesterov"],
        maximize=cfg["maximize"],
    )
    mse = torch.nn.MSELoss()
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    losses, vlosses = [], []
    for e, lr in enumerate(lrs):
        for g in opt.param_groups:
            g["lr"] = lr
        rows = torch.from_numpy(orders[e])
        for s in range(0, len(rows), bs):
            idx = rows[s : s + bs]
            loss = mse(layer(Xt[idx]), Yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        with torch.no_grad():
            vlosses.append(mse(layer(torch.tensor(Xv)), torch.tensor(Yv)).item())
    buf = [opt.state[p].get("momentum_buffer") for p in (layer.weight, layer.bias)]
    buf = [None if t is None else t.numpy().copy() for t in buf]
    return (
        layer.weight.detach().numpy().copy(),
        layer.bias.detach().numpy().copy(),
        np.array(losses),
        np.array(vlosses),
        buf,
    )


TRAIN_CONFIGS = [
    dict(
        momentum=0.0,
        dampening=0.0,
        nesterov=False,
        maximize=False,
        weight_decay=0.0,
        decay_bias=True,
        l2=0.0,
    ),
    dict(
        momentum=0.9,
        dampening=0.0,
        nesterov=False,
        maximize=False,
        weight_decay=0.0,
        decay_bias=True,
        l2=0.0,
    ),
    dict(
        momentum=0.5,
        dampening=0.3,
        nesterov=False,
        maximize=False,
        weight_decay=0.01,
        decay_bias=True,
        l2=0.0,
    ),
    dict(
        momentum=0.9,
        dampening=0.0,
        nesterov=True,
        maximize=False,
        weight_decay=0.03,
        decay_bias=False,
        l2=0.0,
    ),
    dict(
        momentum=0.0,
        dampening=0.0,
        nesterov=False,
        maximize=False,
        weight_decay=0.1,
        decay_bias=True,
        l2=0.02,
    ),
    dict(
        momentum=0.7,
        dampening=0.1,
        nesterov=False,
        maximize=True,
        weight_decay=0.01,
        decay_bias=False,
        l2=0.005,
    ),
]


@pytest.mark.parametrize("cfg", TRAIN_CONFIGS)
@pytest.mark.parametrize("bs", [1, 7, 33])
def test_train_matches_torch_sgd(cfg, bs):
    torch = _torch()
    M, N, U, E = 67, 4, 1, 4
    X, Y, W0, b0 = _problem(M, N, U, np.float64, seed=bs)
    Xv, Yv, _, _ = _problem(23, N, U, np.float64, seed=bs + 500)
    rng = np.random.default_rng(bs + 7)
    orders = np.stack([rng.permutation(M) for _ in range(E)]).astype(np.int64)
    # maximize ascends, so keep its steps small to stay finite.
    lrs = np.array([0.05, 0.03, 0.02, 0.01]) * (0.1 if cfg["maximize"] else 1.0) / bs**0.5
    if bs == 1:
        lrs = lrs * 0.2
    tW, tb, tlosses, tvl, (tbW, tbb) = _torch_run(X, Y, W0, b0, orders, bs, lrs, cfg, Xv, Yv, torch)

    S = -(-M // bs)
    W, b = W0.copy(), b0.copy()
    bufW, bufb = np.empty_like(W), np.empty_like(b)
    losses = np.full(E * S, np.nan)
    vl = np.full(E, np.nan)
    init = False
    # Two calls (2 epochs each) must continue exactly like one torch run: buffers carried.
    for part in (slice(0, 2), slice(2, 4)):
        steps, status = _train_into(
            _numba,
            X,
            Y,
            W,
            b,
            np.ascontiguousarray(orders[part]),
            bs,
            np.ascontiguousarray(lrs[part]),
            cfg["weight_decay"],
            cfg["decay_bias"],
            cfg["l2"],
            cfg["momentum"],
            cfg["dampening"],
            cfg["nesterov"],
            cfg["maximize"],
            bufW,
            bufb,
            init,
            losses[part.start * S : part.stop * S],
            Xv,
            Yv,
            vl[part],
            math.nan,
        )
        assert (steps, status) == (2 * S, 0)
        assert type(steps) is int and type(status) is int
        init = init or (cfg["momentum"] != 0 and steps > 0)
    assert np.all(np.isfinite(tW))
    assert_bits_equal(W, tW)
    assert_bits_equal(b, tb)
    assert_bits_equal(losses, tlosses)
    assert_bits_equal(vl, tvl)
    if cfg["momentum"] != 0:
        assert_bits_equal(bufW, tbW)
        assert_bits_equal(bufb, tbb)


# --------------------------------------------------------------------------------------------
# against the numpy model (U > 1, float32, no bias) and the stopping statuses


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("U,bias", [(3, True), (5, False), (9, True)])
def test_train_matches_numpy_model(dtype, U, bias):
    M, N, E, bs = 45, 6, 3, 8
    X, Y, W0, b0 = _problem(M, N, U, dtype, seed=U)
    rng = np.random.default_rng(U)
    orders = np.stack([rng.permutation(M)[:40] for _ in range(E)]).astype(np.int64)
    lrs = np.array([0.02, 0.015, 0.01])
    hyper = dict(
        momentum=0.9,
        dampening=0.1,
        weight_decay=0.01,
        decay_bias=False,
        l2=0.003,
        nesterov=False,
        maximize=False,
    )
    rW, rb, rlosses = train_reference(
        X, Y, W0, b0 if bias else None, batch_size=bs, epochs=E, lr=lrs, order=orders, **hyper
    )
    W = W0.copy()
    b = b0.copy() if bias else None
    S = -(-40 // bs)
    losses = np.empty(E * S)
    steps, status = _train_into(
        _numba,
        X,
        Y,
        W,
        b,
        orders,
        bs,
        lrs,
        hyper["weight_decay"],
        hyper["decay_bias"],
        hyper["l2"],
        hyper["momentum"],
        hyper["dampening"],
        hyper["nesterov"],
        hyper["maximize"],
        np.empty_like(W),
        np.empty_like(b0) if bias else None,
        False,
        losses,
        None,
        None,
        None,
        math.nan,
    )
    assert (steps, status) == (E * S, 0)
    assert_bits_equal(W, rW)
    if bias:
        assert_bits_equal(b, rb)
    assert_bits_equal(losses, rlosses.ravel())


def _train_plain(X, Y, W, b, lr, E, bs, target=math.nan, momentum=0.0):
    S = -(-X.shape[0] // bs)
    losses = np.full(E * S, np.nan)
    buf = (np.empty_like(W), np.empty_like(b)) if momentum else (None, None)
    res = _train_into(
        _numba,
        X,
        Y,
        W,
        b,
        None,
        bs,
        np.full(E, lr),
        0.0,
        True,
        0.0,
        momentum,
        0.0,
        False,
        False,
        buf[0],
        buf[1],
        False,
        losses,
        None,
        None,
        None,
        target,
    )
    return res, losses


@pytest.mark.parametrize("dtype", DTYPES)
def test_train_statuses(dtype):
    X, Y, W0, b0 = _problem(40, 3, 2, dtype, seed=3)
    # target_loss: stop after the first step whose batch loss is below it, update applied.
    # Full batches (one step per epoch) so that k+1 steps are k+1 epochs of a plain run.
    (steps, status), losses = _train_plain(X, Y, W0.copy(), b0.copy(), 0.05, 10, 40)
    assert (steps, status) == (10, 0)
    k = int(np.argmax(losses < losses[3]))
    assert k >= 4
    W, b = W0.copy(), b0.copy()
    (steps, status), losses_t = _train_plain(X, Y, W, b, 0.05, 10, 40, target=losses[3])
    assert (steps, status) == (k + 1, 1)
    assert_bits_equal(losses_t[: k + 1], losses[: k + 1])
    assert np.all(np.isnan(losses_t[k + 1 :]))
    W2, b2 = W0.copy(), b0.copy()
    _train_plain(X, Y, W2, b2, 0.05, k + 1, 40)
    assert_bits_equal(W, W2)
    assert_bits_equal(b, b2)
    # A huge learning rate diverges: status 2 with a non-finite loss or parameter.
    W, b = W0.copy(), b0.copy()
    (steps, status), losses = _train_plain(X, Y, W, b, 1e30, 50, 4, momentum=0.9)
    assert status == 2 and 0 < steps < 500
    # A non-finite loss on the very first step: nothing is applied.
    Yinf = Y.copy()
    Yinf[0, 0] = np.inf
    W, b = W0.copy(), b0.copy()
    (steps, status), losses = _train_plain(X, Yinf, W, b, 0.05, 2, 10)
    assert (steps, status) == (0, 2)
    assert_bits_equal(W, W0)
    assert_bits_equal(b, b0)
    assert not np.isfinite(losses[0])


# --------------------------------------------------------------------------------------------
# the vectorised pieces against scalar ports of math.hpp (same bits, any size)


@numba.njit  # no cache: it compiles linsgd._numba code in, and would not see that change
def _sum_flat_scalar(data, n, vec):
    """cascade_sum_contiguous one lane at a time (scalar row_sums): the reference order."""
    if n >= vec:
        nv = n // vec
        fin = _intrinsics._cast(0.0, data)
        for k in range(nv * vec, n):
            fin = fin + data[k]
        for lane in range(vec):
            fin = fin + _sums._row_sum(data, lane, vec, nv)
        return fin
    return _sums._row_sum(data, 0, 1, n)


def _special_values(x, rng):
    """A copy of ``x`` with some elements set to -0.0."""
    x = x.copy()
    x[rng.integers(0, x.size, max(1, x.size // 50))] = -0.0
    return x


@pytest.mark.parametrize("dtype", DTYPES)
def test_lockstep_cascade_matches_lane_by_lane(dtype):
    """The cascade with its K lanes in one vector (every level, every flush, every tail) gives
    the scalar lane-by-lane result bit for bit."""
    rng = np.random.default_rng(5)
    vec = 32 // np.dtype(dtype).itemsize
    K = 4 * vec
    sizes = sorted(
        {
            *range(0, 3 * K + 3),
            *(K * k + t for k in (15, 16, 17, 255, 256, 257) for t in (0, 1, vec, K - 1)),
            4095,
            4096 * 16 + 5,
            70_000,
            140_001,
            1_000_003,
            3_000_017,
        }
    )
    for n in sizes:
        x = (rng.standard_normal(n) * 10.0 ** rng.uniform(-4, 4, n)).astype(dtype)
        x = _special_values(x, rng) if n else x
        got = _sum_flat(x, n, vec)
        want = _sum_flat_scalar(x, n, vec)
        assert_bits_equal(np.asarray(got, dtype), np.asarray(want, dtype))
        if n in (70_000, 140_001):  # every cascade level, against the Appendix A1 model
            assert_bits_equal(np.asarray(got, dtype), sum_dim0(x.reshape(-1, 1)))
    for bad in (np.inf, -np.inf, np.nan):
        x = rng.standard_normal(5000).astype(dtype)
        x[1234] = bad
        got = _sum_flat(x, x.size, vec)
        want = _sum_flat_scalar(x, x.size, vec)
        assert_bits_equal(np.asarray(got, dtype), np.asarray(want, dtype))


@numba.njit  # no cache: it compiles linsgd._numba code in, and would not see that change
def _dot_scalar(x, w, n, L):
    """math.hpp's dot, one lane at a time."""
    if n < L:
        if n == 0:
            return _intrinsics._cast(0.0, x)
        acc = x[0] * w[0]
        for j in range(1, n):
            acc = acc + x[j] * w[j]
        return acc
    lanes = x[:L] * w[:L]
    j = L
    while j + L <= n:
        for lane in range(L):
            lanes[lane] = lanes[lane] + x[j + lane] * w[j + lane]
        j += L
    half = L // 2
    while half >= 1:
        for lane in range(half):
            lanes[lane] = lanes[lane] + lanes[lane + half]
        half //= 2
    total = lanes[0]
    while j < n:
        total = total + x[j] * w[j]
        j += 1
    return total


@numba.njit  # no cache: it compiles linsgd._numba code in, and would not see that change
def _dot_rows(X, W, out):
    M, N = X.shape
    for r in range(M):
        for u in range(W.shape[0]):
            out[r, u] = _intrinsics._dot(X, r * N, W, u * N, N)


@pytest.mark.parametrize("dtype", DTYPES)
def test_vector_dot_matches_scalar_order(dtype):
    """The blocked dot with its L lanes in one LLVM vector gives math.hpp's scalar order bit for
    bit: below, at and above each multiple of L, at row offsets of every alignment."""
    rng = np.random.default_rng(9)
    L = 128 // np.dtype(dtype).itemsize
    for N in sorted({*range(0, 2 * L + 2), 3 * L - 1, 3 * L, 5 * L + 7, 1024, 1031}):
        X = (rng.standard_normal((7, N)) * 10.0 ** rng.uniform(-3, 3, (7, N))).astype(dtype)
        W = rng.standard_normal((3, N)).astype(dtype)
        got = np.empty((7, 3), dtype)
        _dot_rows(X, W, got)
        want = np.array(
            [[_dot_scalar(X[r], W[u], N, L) for u in range(3)] for r in range(7)], dtype
        )
        assert_bits_equal(got, want)


# --------------------------------------------------------------------------------------------
# against the compiled backend, bit for bit, around every blocking boundary


def _core_or_skip():
    try:
        from linsgd import _core
    except ImportError:
        pytest.skip("the compiled backend (linsgd._core) is not built")
    return _core


def _run_backend(mod, X, Y, W, b, order, bs, lrs, cfg, buffers, Xv, Yv, sw, target=math.nan):
    W, b = W.copy(), None if b is None else b.copy()
    E = lrs.shape[0]
    R = X.shape[0] if order is None else order.shape[1]
    S = -(-R // bs)
    losses = np.full(E * S, np.nan)
    vl = None if Xv is None else np.full(E, np.nan)
    bW = bb = None
    if buffers:
        bW = np.zeros_like(W)
        bb = None if b is None else np.zeros_like(b)
    res = _train_into(
        mod,
        X,
        Y,
        W,
        b,
        order,
        bs,
        lrs,
        cfg["weight_decay"],
        cfg["decay_bias"],
        cfg["l2"],
        cfg["momentum"],
        cfg["dampening"],
        cfg["nesterov"],
        cfg["maximize"],
        bW,
        bb,
        False,
        losses,
        Xv,
        Yv,
        vl,
        target,
        sw,
    )
    out = [W, losses] + ([] if b is None else [b]) + ([] if vl is None else [vl])
    out += [a for a in (bW, bb) if a is not None]
    return tuple(int(v) for v in res[:2]), out


@pytest.mark.parametrize("dtype", DTYPES)
def test_train_matches_compiled_backend(dtype):
    """numba and C++ backends agree bit for bit (weights, bias, losses, validation losses,
    momentum buffers; gradient and loss) across row counts that are not multiples of the 4- and
    8-row blocks, feature counts around the dot's block of lanes, several outputs, orders,
    sample weights, momentum, weight decay and the plain fast path."""
    core = _core_or_skip()
    rng = np.random.default_rng(21)
    L = 128 // np.dtype(dtype).itemsize
    cfgs = TRAIN_CONFIGS[:4]
    n_cases = 0
    for N in (1, 3, L - 1, L, L + 1, 2 * L + 3):
        for U in (1, 2, 5):
            M = int(rng.integers(9, 60))
            X = rng.standard_normal((M, N)).astype(dtype)
            Y = rng.standard_normal((M, U)).astype(dtype)
            W = (rng.uniform(-1, 1, (U, N)) / np.sqrt(N)).astype(dtype)
            b = rng.uniform(-1, 1, U).astype(dtype) if U != 2 else None
            Xv = rng.standard_normal((int(rng.integers(1, 30)), N)).astype(dtype)
            Yv = rng.standard_normal((Xv.shape[0], U)).astype(dtype)
            sw = rng.integers(0, 3, M).astype(dtype)
            for k, cfg in enumerate(cfgs):
                bs = int((3, 4, 7, 8, 64)[(k + N + U) % 5])
                order = (
                    None
                    if k % 2 == 0
                    else np.stack([rng.permutation(M)[: M - 2] for _ in range(3)]).astype(np.int64)
                )
                lrs = np.array([0.02, 0.01, 0.005])
                valid = (Xv, Yv) if k != 0 else (None, None)
                weights = sw if k == 3 else None
                buffers = cfg["momentum"] != 0.0
                args = (X, Y, W, b, order, bs, lrs, cfg, buffers, *valid, weights)
                want = _run_backend(core, *args)
                got = _run_backend(_numba, *args)
                assert got[0] == want[0]
                for a, c in zip(got[1], want[1]):
                    assert_bits_equal(a, c)
                n_cases += 1
            gW, gWc = np.empty_like(W), np.empty_like(W)
            gb = None if b is None else np.empty_like(b)
            gbc = None if b is None else np.empty_like(b)
            for s in (None, sw):
                lg = _numba.gradient(X, Y, W, b, gW, gb, s)
                lc = core.gradient(X, Y, W, b, gWc, gbc, s)
                assert_bits_equal(np.float64(lg), np.float64(lc))
                assert_bits_equal(gW, gWc)
                if b is not None:
                    assert_bits_equal(gb, gbc)
                assert_bits_equal(
                    np.float64(_numba.loss(X, Y, W, b, s)), np.float64(core.loss(X, Y, W, b, s))
                )
    assert n_cases == 6 * 3 * len(cfgs)


# Feature counts around every blocking boundary of either dtype (lanes of 16 doubles or 32
# floats, rows of 4 and 8) up to a few blocks.
HARNESS_N = (1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 100, 129, 200, 300)
# Ways to cut a numba run: (first chunk's multiply-adds, seconds per later chunk); None: one call.
CHUNKINGS = (None, (1, 0.0), (2_000, 0.0), (20_000, 1e-6))


def _harness_cases(dtype, rng):
    """``(label, args of _run_backend)``: shapes N = 1..300, U = 1..5, ragged batches, row orders
    (shorter or longer than M, rows repeated), the momentum/nesterov/decay configurations,
    sample weights, a validation set, with and without a bias. Settings k = 0 and 5 have no
    order, validation or sample weights (the few-argument kernels), k = 5 with momentum."""
    for i, N in enumerate(HARNESS_N):
        U = 1 + i % 5
        M = int(rng.integers(5, 70))
        X = rng.standard_normal((M, N)).astype(dtype)
        Y = (rng.standard_normal((M, U)) * 2.0).astype(dtype)
        W = (rng.uniform(-1, 1, (U, N)) / np.sqrt(N)).astype(dtype)
        b = None if i % 4 == 3 else rng.uniform(-1, 1, U).astype(dtype)
        Xv = rng.standard_normal((int(rng.integers(1, 40)), N)).astype(dtype)
        Yv = rng.standard_normal((Xv.shape[0], U)).astype(dtype)
        sw = rng.integers(0, 4, M).astype(dtype)
        for k in range(6):
            if k == 0:
                cfg = TRAIN_CONFIGS[0]
            elif k == 5:
                cfg = TRAIN_CONFIGS[(1, 2, 3, 5)[i % 4]]
            else:
                cfg = TRAIN_CONFIGS[(i + k) % len(TRAIN_CONFIGS)]
            E = int(rng.integers(1, 4))
            order = None
            if k in (1, 3):
                R = int(rng.integers(1, 2 * M))
                order = rng.integers(0, M, (E, R)).astype(np.int64)
            R = M if order is None else order.shape[1]
            bs = int(rng.choice([1, 3, 4, 8, 33, R]) if k != 4 else rng.integers(1, R + 1))
            bs = min(bs, R)
            lrs = (np.array([0.02, 0.01, 0.005])[:E] / np.sqrt(N * U)).astype(np.float64)
            valid = (Xv, Yv) if k in (2, 3) else (None, None)
            weights = sw if k == 4 or (k == 2 and i % 2) else None
            buffers = cfg["momentum"] != 0.0
            yield (
                f"N={N} U={U} M={M} R={R} bs={bs} E={E} k={k} bias={b is not None}",
                (X, Y, W, b, order, bs, lrs, cfg, buffers, *valid, weights),
            )


@pytest.mark.parametrize("dtype", DTYPES)
def test_train_harness_against_compiled_backend(dtype, monkeypatch):
    """The numba entry point gives ``_core.train``'s bits (W, b, losses, validation losses,
    momentum buffers, steps and status) on every harness case, cut into chunks in several ways
    or run in one call; with a ``target_loss`` that stops a run part-way too, and with a
    diverging learning rate."""
    core = _core_or_skip()
    rng = np.random.default_rng(37)
    statuses = set()
    plain = n_cases = 0
    for label, args in _harness_cases(dtype, rng):
        want = _run_backend(core, *args)
        finite = want[1][1][np.isfinite(want[1][1])]
        runs = [(args, math.nan, want)]
        if finite.size > 2:  # a target between the run's losses: it stops part-way
            target = float(np.sort(finite)[finite.size // 2])
            runs.append((args, target, _run_backend(core, *args, target)))
        blown = (*args[:6], args[6] * 1e12, *args[7:])
        runs.append((blown, math.nan, _run_backend(core, *blown)))
        for a, target, ref in runs:
            statuses.add(ref[0][1])
            for chunking in CHUNKINGS:
                first, seconds = chunking or (1 << 62, 10.0)
                monkeypatch.setattr(_numba, "_FIRST_CHUNK_WORK", first)
                monkeypatch.setattr(_numba, "_CHUNK_SECONDS", seconds)
                got = _run_backend(_numba, *a, target)
                assert got[0] == ref[0], (label, target, chunking)
                for x, y in zip(got[1], ref[1]):
                    try:
                        assert_bits_equal(x, y)
                    except AssertionError as exc:
                        raise AssertionError(f"{label} target={target} {chunking}: {exc}") from None
        plain += args[4] is None and args[9] is None and args[11] is None
        n_cases += 1
    assert n_cases == 6 * len(HARNESS_N) and plain >= 2 * len(HARNESS_N)
    assert statuses == {0, 1, 2}


def test_interrupt_between_chunks(monkeypatch):
    """A Ctrl-C arriving during a chunk raises KeyboardInterrupt before the next one; W, b, the
    momentum buffers then hold exactly the steps applied so far."""
    X, Y, W0, b0 = _problem(40, 6, 2, np.float64, seed=8)
    cfg = TRAIN_CONFIGS[1]
    monkeypatch.setattr(_numba, "_FIRST_CHUNK_WORK", 1)  # one step per chunk
    monkeypatch.setattr(_numba, "_CHUNK_SECONDS", 0.0)
    real = _numba._train_entry
    seen = []

    def interrupted(*a):
        res = real(*a)
        seen.append(res[0])
        if len(seen) == 5:
            signal.raise_signal(signal.SIGINT)
        return res

    monkeypatch.setattr(_numba, "_train_entry", interrupted)
    W, b = W0.copy(), b0.copy()
    bW, bb = np.zeros_like(W), np.zeros_like(b)
    losses = np.full(4 * 14, np.nan)
    with pytest.raises(KeyboardInterrupt):
        _train_into(_numba,
            X, Y, W, b, None, 3, np.full(4, 0.01), 0.0, True, 0.0, cfg["momentum"], 0.0,
            False, False, bW, bb, False, losses, None, None, None, math.nan,
        )  # fmt: skip
    assert np.isnan(losses).all()  # (an interrupted call returns no losses, as _core's)
    assert seen == [1] * 5
    monkeypatch.setattr(_numba, "_train_entry", real)
    # rows 0..14 in batches of 3: the same five steps, in one call
    _, (W5, l5, b5, bW5, bb5) = _run_backend(
        _numba, X[:15], Y[:15], W0, b0, None, 3, np.full(1, 0.01), cfg, True, None, None, None
    )
    for got, want in ((W, W5), (b, b5), (bW, bW5), (bb, bb5)):
        assert_bits_equal(got, want)
    assert np.isfinite(l5).all()


def test_read_only_inputs():
    """Read-only X, Y (a different numba type) take the same kernels and give the same bits."""
    X, Y, W0, b0 = _problem(50, 20, 2, np.float64, seed=4)
    res = []
    for ro in (False, True):
        Xi, Yi = X.copy(), Y.copy()
        Xi.flags.writeable = not ro
        Yi.flags.writeable = not ro
        W, b = W0.copy(), b0.copy()
        losses = np.empty(7)
        _train_into(
            _numba,
            Xi,
            Yi,
            W,
            b,
            None,
            8,
            np.array([0.01]),
            0.0,
            True,
            0.0,
            0.0,
            0.0,
            False,
            False,
            None,
            None,
            False,
            losses,
            None,
            None,
            None,
            math.nan,
        )
        res.append((W, b, losses, _numba.loss(Xi, Yi, W, b)))
    for a, c in zip(res[0], res[1]):
        assert_bits_equal(np.asarray(a), np.asarray(c))
