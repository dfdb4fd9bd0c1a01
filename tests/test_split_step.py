"""kernels.partial_gradient and kernels.update: a step split in two around a collective.

Every backend (the ``backend`` fixture) x dtype. ``step`` equals ``update`` after
``partial_gradient(..., n_total=len(X))`` bit for bit, over several steps with the state
carried; ``partial_gradient`` of a part of a batch is the exact numpy model of its arithmetic
(tests/reference.py) normalised by the whole batch; bad input raises naming the argument.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import grad_bounds
from reference import cascade_sum, forward_seq, grad_w_seq, make_problem, naive_gradient, sum_dim0

linsgd = pytest.importorskip("linsgd", reason="linsgd is not importable")
kernels = linsgd.kernels

HYPER = {
    "plain": {},
    "wd_l2": dict(weight_decay=0.05, l2=0.02, decay_bias=False),
    "momentum": dict(momentum=0.9, dampening=0.1, weight_decay=0.01),
    "nesterov": dict(momentum=0.8, nesterov=True, weight_decay=0.01, l2=0.01),
    "maximize": dict(maximize=True, momentum=0.5),
}


@pytest.mark.parametrize("hyper", list(HYPER), ids=list(HYPER))
@pytest.mark.parametrize("U", [1, 3])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_step_is_update_after_partial_gradient(backend, dtype, hyper, U, weighted):
    X, Y, W0, b0 = make_problem(23, 5, U, dtype, seed=U)
    rng = np.random.default_rng(7)
    sw = rng.uniform(0.0, 3.0, len(X)).astype(dtype) if weighted else None
    W1, b1, W2, b2 = W0.copy(), b0.copy(), W0.copy(), b0.copy()
    s1: dict = {}
    s2: dict = {}
    kw = dict(HYPER[hyper], backend=backend)
    for k in range(4):
        rows = slice(5 * k, 5 * k + 9)  # batches of different rows, one ragged at the end
        xb, yb = X[rows], Y[rows]
        swb = None if sw is None else sw[rows]
        lr = 0.05 / (k + 1)
        loss = kernels.step(xb, yb, W1, b1, lr=lr, state=s1, sample_weight=swb, **kw)
        gW, gb, sse = kernels.partial_gradient(
            xb, yb, W2, b2, n_total=len(xb), sample_weight=swb, backend=backend
        )
        # (the kernels sum the weights in order, in double: cumsum is that order)
        weight = len(xb) if swb is None else float(np.cumsum(swb, dtype=np.float64)[-1])
        assert np.array_equal(gW, kernels.gradient(xb, yb, W2, b2, sample_weight=swb)[0])
        assert float(dtype(sse) / dtype(U * weight)) == loss
        kernels.update(W2, b2, gW, gb, lr=lr, state=s2, **kw)
        assert W1.tobytes() == W2.tobytes() and b1.tobytes() == b2.tobytes()
    assert s1["step"] == s2["step"] == 4
    for key in ("momentum_buffer_W", "momentum_buffer_b"):
        assert (key in s1) == (key in s2) == ("momentum" in HYPER[hyper])
        if key in s1:
            assert s1[key].tobytes() == s2[key].tobytes()


def test_no_bias_and_one_row(backend, dtype):
    X, Y, W0, _ = make_problem(1, 3, 2, dtype, seed=3)
    W1, W2 = W0.copy(), W0.copy()
    kernels.step(X, Y, W1, None, lr=0.1, momentum=0.5, backend=backend)
    gW, gb, _ = kernels.partial_gradient(X, Y, W2, None, n_total=1, backend=backend)
    assert gb is None
    kernels.update(W2, None, gW, None, lr=0.1, momentum=0.5, backend=backend)
    assert W1.tobytes() == W2.tobytes()


def _exact_partial(X, Y, W, b, n_total):
    """tests/reference.py's exact model of one batch gradient, normalised by ``n_total`` rows."""
    dt = X.dtype.type
    Y2 = Y.reshape(len(X), -1)
    e = forward_seq(X, W, b) - Y2
    G = e * dt(2.0 / (n_total * Y2.shape[1]))
    return grad_w_seq(G, X), sum_dim0(G), cascade_sum(e * e)


@pytest.mark.parametrize("split", [(7,), (3, 9), (1, 2, 12)], ids=["one", "two", "three"])
def test_partial_gradient_against_reference(backend, dtype, split):
    """Each part is the exact model (N <= 4, U == 1: bit for bit); the parts add up to the
    batch gradient within the rounding bounds of any summation order."""
    X, Y, W, b = make_problem(sum(split), 4, 1, dtype, seed=11, y_1d=True)
    m = len(X)
    parts = []
    start = 0
    for size in split:
        xs, ys = X[start : start + size], Y[start : start + size]
        gW, gb, sse = kernels.partial_gradient(xs, ys, W, b, n_total=m, backend=backend)
        rW, rb, rsse = _exact_partial(xs, ys, W, b, m)
        assert gW.tobytes() == rW.tobytes() and gb.tobytes() == rb.tobytes()
        assert sse == float(rsse)
        parts.append((gW, gb, sse))
        start += size
    tW = sum(p[0].astype(np.float64) for p in parts)
    tb = sum(p[1].astype(np.float64) for p in parts)
    tl = sum(p[2] for p in parts) / m
    nW, nb, nl = naive_gradient(X, Y, W, b)
    bW, bb, bl = grad_bounds(X, Y, W, b, float(np.finfo(dtype).eps))
    assert np.all(np.abs(tW - nW) <= bW)
    assert np.all(np.abs(tb - nb) <= bb)
    assert abs(tl - float(nl)) <= bl


def test_weight_total_normalises_weighted_parts(backend, dtype):
    X, Y, W, b = make_problem(12, 3, 2, dtype, seed=5)
    sw = np.arange(1, 13).astype(dtype)  # integer weights: their sums are exact
    total = float(sw.sum())
    gW, gb, sse = kernels.partial_gradient(
        X[:5], Y[:5], W, b, n_total=12, sample_weight=sw[:5], weight_total=total, backend=backend
    )
    # weight k on a row is k copies of it: the unweighted partial of the repeated rows
    rep = np.repeat(np.arange(5), sw[:5].astype(int))
    rW, rb, rsse = kernels.partial_gradient(
        X[rep], Y[rep], W, b, n_total=int(total), backend=backend
    )
    eps = float(np.finfo(dtype).eps)
    assert np.allclose(gW, rW, rtol=0, atol=64 * eps * np.abs(rW).max())
    assert np.allclose(gb, rb, rtol=0, atol=64 * eps * np.abs(rb).max())
    assert abs(sse - rsse) <= 64 * eps * abs(rsse)
    zero = np.zeros(5, dtype)
    gW0, gb0, sse0 = kernels.partial_gradient(
        X[:5], Y[:5], W, b, n_total=12, sample_weight=zero, weight_total=0.0, backend=backend
    )
    assert not gW0.any() and not gb0.any() and sse0 == 0.0


def test_update_divergence_raises(backend):
    W = np.ones((1, 2))
    b = np.ones(1)
    gW = np.full((1, 2), 1e308)
    state: dict = {}
    with pytest.raises(linsgd.DivergenceError):
        kernels.update(W, b, gW, np.ones(1), lr=1e10, state=state, backend=backend)
    assert not np.isfinite(W).all() and state["step"] == 1


@pytest.mark.parametrize(
    "kwargs, exc, name",
    [
        (dict(n_total=3), ValueError, "n_total"),
        (dict(n_total=0), ValueError, "n_total"),
        (dict(n_total=5.0), TypeError, "n_total"),
        (dict(n_total=6, weight_total=2.0), ValueError, "weight_total"),
        (dict(n_total=6, sample_weight=np.ones(5), weight_total=-1.0), ValueError, "weight_total"),
        (dict(n_total=6, sample_weight=np.ones(4)), ValueError, "sample_weight"),
    ],
)
def test_partial_gradient_refuses(backend, kwargs, exc, name):
    X, Y, W, b = make_problem(5, 3, 1, np.float64, seed=1)
    with pytest.raises(exc, match=name):
        kernels.partial_gradient(X, Y, W, b, backend=backend, **kwargs)


def test_partial_gradient_binding_checks():
    """The compiled entry checks for itself (arguments.hpp): a direct call is as safe."""
    core = pytest.importorskip("linsgd._core", reason="linsgd._core is not built")
    X, Y, W, b = make_problem(5, 3, 1, np.float64, seed=1, y_1d=False)
    gW, gb = np.empty_like(W), np.empty_like(b)
    with pytest.raises(ValueError, match="n_total"):
        core.partial_gradient(X, Y, W, b, gW, gb, 4)
    with pytest.raises(ValueError, match="weight_total"):
        core.partial_gradient(X, Y, W, b, gW, gb, 5, None, 1.0)
    with pytest.raises(ValueError, match="gW shares memory"):
        core.partial_gradient(X, Y, W, b, W, gb, 5)
    args = [W.copy(), b.copy(), gW, gb, 0.1, 0.0, True, 0.0, 0.9, 0.0, False, False]
    with pytest.raises(TypeError, match="buf_W"):
        core.update(*args, None, None, False)
    with pytest.raises(ValueError, match="nesterov"):
        core.update(*args[:9], 0.5, True, False, np.zeros_like(W), np.zeros_like(b), False)
    with pytest.raises(ValueError, match="W shares memory"):
        core.update(args[0], args[1], args[0], gb, *args[4:], np.zeros_like(W), np.zeros(1), False)


@pytest.mark.parametrize(
    "change, exc, name",
    [
        (dict(W=np.ones((1, 3), np.float32)), TypeError, "b must have dtype float32"),
        (dict(W=np.ones((1, 3), np.float32), b=None, gb=None), TypeError, "gW"),
        (dict(W=np.ones((1, 6))[:, ::2]), ValueError, "W must be C-contiguous"),
        (dict(W=[[1.0, 2.0, 3.0]]), TypeError, "W"),
        (dict(gW=np.ones((2, 3))), ValueError, "gW"),
        (dict(gb=None), ValueError, "gb"),
        (dict(b=np.ones(2)), ValueError, "b"),
        (dict(lr=-1.0), ValueError, "lr"),
        (dict(nesterov=True), ValueError, "nesterov"),
        (dict(state=[]), TypeError, "state"),
        (
            dict(momentum=0.5, state={"momentum_buffer_W": np.ones(3)}),
            ValueError,
            "momentum_buffer_W",
        ),
    ],
)
def test_update_refuses(backend, change, exc, name):
    args = dict(W=np.ones((1, 3)), b=np.ones(1), gW=np.ones((1, 3)), gb=np.ones(1), lr=0.1)
    args.update(change)
    W, b, gW, gb = (args.pop(k) for k in ("W", "b", "gW", "gb"))
    with pytest.raises(exc, match=name):
        kernels.update(W, b, gW, gb, backend=backend, **args)


def test_update_refuses_shared_memory(backend):
    W = np.ones((1, 3))
    with pytest.raises(ValueError, match="shares memory"):
        kernels.update(W, None, W, None, lr=0.1, backend=backend)
