"""linsgd.kernels (loss, gradient, step, epoch, train) against the numpy references.

Every backend (the ``backend`` fixture) x dtype. Bit-for-bit against the exact numpy model of
torch's arithmetic (tests/reference.py) where that model is exact (N <= 4, U == 1), within a
few eps of the plain numpy loop everywhere, and bitwise against itself across the different
ways of running the same steps (step / epoch / train, state carried between calls).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from helpers import DT_IDS, DTYPES, grad_bounds
from reference import (
    dataloader_orders,
    eps_distance,
    exact_gradient,
    make_problem,
    naive_gradient,
    train_reference,
)

linsgd = pytest.importorskip("linsgd", reason="linsgd is not importable")
kernels = linsgd.kernels

HAVE_TORCH = importlib.util.find_spec("torch") is not None

# random shapes (M, N, U), seeded, plus the edge shapes: one row, one feature, one output
_rng = np.random.default_rng(20240611)
RANDOM_SHAPES = [
    tuple(int(v) for v in (_rng.integers(2, 60), _rng.integers(1, 20), _rng.integers(1, 5)))
    for _ in range(6)
]
EDGE_SHAPES = [(1, 3, 1), (1, 1, 1), (9, 1, 1), (9, 1, 3), (5, 4, 2), (33, 4, 1)]
SHAPES = RANDOM_SHAPES + EDGE_SHAPES
SHAPE_IDS = [f"M{m}-N{n}-U{u}" for m, n, u in SHAPES]


def _exact_case(N, U):
    """Where the exact numpy model is bit-identical to every backend by contract."""
    return N <= 4 and U == 1


def _hyper_sets():
    return {
        "plain": dict(),
        "wd": dict(weight_decay=0.05),
        "l2_nodecaybias": dict(l2=0.02, weight_decay=0.01, decay_bias=False),
        "momentum": dict(momentum=0.9, dampening=0.1),
        "nesterov": dict(momentum=0.8, nesterov=True, weight_decay=0.01),
        "maximize": dict(maximize=True, momentum=0.5),
    }


HYPER = _hyper_sets()


def _lr(N, hp):
    return 1e-3 / (N + 1) if hp.get("maximize") else 0.05 / (N + 1)


def _check_close_to_references(W, b, X, Y, W0, b0, kw, *, N, U):
    """ours == exact model bitwise (exact cases) or within a few eps of it and of naive numpy."""
    We, be, le = train_reference(X, Y, W0, b0, exact=True, **kw)
    Wn, bn, _ln = train_reference(X, Y, W0, b0, exact=False, **kw)
    if _exact_case(N, U):
        assert np.array_equal(W, We)
        assert b is None or np.array_equal(b, be)
    else:
        assert eps_distance(W, We) <= 16 + 2 * eps_distance(Wn, We)
        assert eps_distance(W, Wn) <= 64
        if b is not None:
            assert eps_distance(b, be) <= 16 + 2 * eps_distance(bn, be)
            assert eps_distance(b, bn) <= 64
    return le


# --------------------------------------------------------------------------------------
# loss and gradient


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
def test_gradient_and_loss_match_references(backend, dt, shape, with_bias):
    M, N, U = shape
    X, Y, W, b = make_problem(M, N, U, dt, seed=M * 1000 + N * 10 + U, y_1d=(U == 1 and M % 2 == 1))
    b = b if with_bias else None
    W_before = W.copy()
    gW, gb, loss = kernels.gradient(X, Y, W, b, backend=backend)
    full_loss = kernels.loss(X, Y, W, b, backend=backend)
    assert np.array_equal(W, W_before)  # gradient does not update
    assert gW.shape == (U, N) and gW.dtype == np.dtype(dt)
    assert isinstance(loss, float) and isinstance(full_loss, float)
    assert loss == full_loss
    eW, eb, eloss = exact_gradient(X, Y, W, b)
    nW, nb, nloss = naive_gradient(X, Y, W, b)
    tW, tb, tloss = grad_bounds(X, Y, W, b, np.finfo(dt).eps)
    assert (np.abs(gW - nW) <= tW).all()
    assert abs(loss - float(nloss)) <= tloss
    if with_bias:
        assert gb.shape == (U,) and gb.dtype == np.dtype(dt)
        assert (np.abs(gb - nb) <= tb).all()
    else:
        assert gb is None
    if _exact_case(N, U):
        assert np.array_equal(gW, eW)
        assert not with_bias or np.array_equal(gb, eb)
        assert loss == float(eloss)


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_gradient_of_one_row(backend, dt):
    X = np.array([[2.0, -1.0, 0.5]], dt)
    Y = np.array([1.0], dt)
    W = np.array([[0.5, 0.25, -1.0]], dt)
    b = np.array([0.125], dt)
    gW, gb, loss = kernels.gradient(X, Y, W, b, backend=backend)
    e = 1.0 - 0.25 - 0.5 + 0.125 - 1.0  # P - Y, exact in both dtypes
    assert np.array_equal(gW, np.array([[2 * e * 2.0, 2 * e * -1.0, 2 * e * 0.5]], dt))
    assert np.array_equal(gb, np.array([2 * e], dt))
    assert loss == e * e


# --------------------------------------------------------------------------------------
# step, epoch, train against the references


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("hp_name", list(HYPER))
@pytest.mark.parametrize("NU", [(1, 1), (4, 1), (13, 3)], ids=["N1U1", "N4U1", "N13U3"])
def test_epoch_matches_references(backend, dt, hp_name, NU):
    N, U = NU
    M, bs = 23, 5  # ragged last batch of 3 rows
    hp = HYPER[hp_name]
    X, Y, W0, b0 = make_problem(M, N, U, dt, seed=N * 7 + U, y_1d=(U == 1))
    kw = dict(batch_size=bs, lr=_lr(N, hp), **hp)
    W, b = W0.copy(), b0.copy()
    losses = kernels.epoch(X, Y, W, b, backend=backend, **kw)
    assert losses.dtype == np.float64 and losses.shape == (5,)
    assert W.dtype == np.dtype(dt) and b.dtype == np.dtype(dt)
    le = _check_close_to_references(W, b, X, Y, W0, b0, dict(epochs=1, **kw), N=N, U=U)
    if _exact_case(N, U):
        assert np.array_equal(losses, le[0])
    else:
        assert np.abs(losses - le[0]).max() <= 64 * np.finfo(dt).eps * le[0].max()


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("NU", [(3, 1), (13, 3)], ids=["N3U1", "N13U3"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
def test_train_with_orders_matches_references(backend, dt, NU, with_bias):
    N, U = NU
    M, bs, E = 30, 8, 3
    X, Y, W0, b0 = make_problem(M, N, U, dt, seed=N + 100 * U)
    b0 = b0 if with_bias else None
    orders = dataloader_orders(7, M, bs, E)
    kw = dict(batch_size=bs, epochs=E, lr=[0.04, 0.02, 0.01], momentum=0.9, weight_decay=0.01)
    W, b = W0.copy(), None if b0 is None else b0.copy()
    res = kernels.train(X, Y, W, b, orders=orders, backend=backend, **kw)
    assert res.status == "completed" and res.steps == E * 4 and res.epochs == E
    assert res.losses.shape == (E, 4) and res.valid_losses is None
    le = _check_close_to_references(W, b, X, Y, W0, b0, dict(order=orders, **kw), N=N, U=U)
    if _exact_case(N, U):
        assert np.array_equal(res.losses, le)
    # orders with fewer rows than M (drop_last) leave rows out
    orders_dl = dataloader_orders(7, M, bs, E, drop_last=True)
    W2, b2 = W0.copy(), None if b0 is None else b0.copy()
    res2 = kernels.train(X, Y, W2, b2, orders=orders_dl, backend=backend, **kw)
    assert res2.losses.shape == (E, 3) and res2.steps == E * 3
    _check_close_to_references(W2, b2, X, Y, W0, b0, dict(order=orders_dl, **kw), N=N, U=U)


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_step_matches_references(backend, dt):
    for N, U, hp_name in [(2, 1, "wd"), (4, 1, "nesterov"), (6, 2, "l2_nodecaybias")]:
        hp = HYPER[hp_name]
        X, Y, W0, b0 = make_problem(11, N, U, dt, seed=N)
        W, b = W0.copy(), b0.copy()
        state = {}
        losses = [
            kernels.step(X, Y, W, b, lr=0.03, state=state, backend=backend, **hp) for _ in range(3)
        ]
        assert all(isinstance(v, float) for v in losses)
        assert state["step"] == 3
        le = _check_close_to_references(
            W, b, X, Y, W0, b0, dict(batch_size=11, epochs=3, lr=0.03, **hp), N=N, U=U
        )
        if _exact_case(N, U):
            assert losses == list(le[:, 0])


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_batch_size_larger_than_data_is_one_batch(backend, dt):
    X, Y, W0, b0 = make_problem(9, 3, 1, dt, seed=4)
    W1, b1 = W0.copy(), b0.copy()
    W2, b2 = W0.copy(), b0.copy()
    losses = kernels.epoch(X, Y, W1, b1, batch_size=50, lr=0.05, backend=backend)
    value = kernels.step(X, Y, W2, b2, lr=0.05, backend=backend)
    assert losses.shape == (1,) and losses[0] == value
    assert np.array_equal(W1, W2) and np.array_equal(b1, b2)
    res = kernels.train(
        X, Y, W0.copy(), b0.copy(), batch_size=50, epochs=2, lr=0.05, backend=backend
    )
    assert res.losses.shape == (2, 1) and res.steps == 2


# --------------------------------------------------------------------------------------
# the same steps, run in different ways, give the same bits


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("hp_name", ["plain", "momentum", "nesterov"])
def test_steps_equal_epoch_bitwise(backend, dt, hp_name):
    hp = HYPER[hp_name]
    M, N, U, bs = 26, 7, 2, 6  # ragged last batch of 2
    X, Y, W0, b0 = make_problem(M, N, U, dt, seed=11)
    order = np.random.default_rng(1).permutation(M)
    W1, b1, s1 = W0.copy(), b0.copy(), {}
    losses = kernels.epoch(
        X, Y, W1, b1, batch_size=bs, lr=0.02, order=order, state=s1, backend=backend, **hp
    )
    W2, b2, s2 = W0.copy(), b0.copy(), {}
    step_losses = []
    for s in range(0, M, bs):
        idx = order[s : s + bs]
        step_losses.append(
            kernels.step(X[idx], Y[idx], W2, b2, lr=0.02, state=s2, backend=backend, **hp)
        )
    assert np.array_equal(W1, W2) and np.array_equal(b1, b2)
    assert np.array_equal(losses, np.array(step_losses))
    assert s1["step"] == s2["step"] == 5
    if hp.get("momentum"):
        assert np.array_equal(s1["momentum_buffer_W"], s2["momentum_buffer_W"])
        assert np.array_equal(s1["momentum_buffer_b"], s2["momentum_buffer_b"])
    else:
        assert "momentum_buffer_W" not in s1


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
def test_epochs_equal_train_bitwise(backend, dt, with_bias):
    M, N, U, bs, E = 20, 5, 3, 7, 3
    X, Y, W0, b0 = make_problem(M, N, U, dt, seed=21)
    b0 = b0 if with_bias else None
    hp = dict(momentum=0.9, dampening=0.2, weight_decay=0.01, l2=0.005)
    orders = dataloader_orders(99, M, bs, E)
    for use_orders in (False, True):
        W1, b1 = W0.copy(), None if b0 is None else b0.copy()
        state = {}
        per_epoch = [
            kernels.epoch(
                X,
                Y,
                W1,
                b1,
                batch_size=bs,
                lr=0.03,
                state=state,
                order=orders[e] if use_orders else None,
                backend=backend,
                **hp,
            )
            for e in range(E)
        ]
        W2, b2 = W0.copy(), None if b0 is None else b0.copy()
        res = kernels.train(
            X,
            Y,
            W2,
            b2,
            batch_size=bs,
            epochs=E,
            lr=0.03,
            orders=orders if use_orders else None,
            backend=backend,
            **hp,
        )
        assert np.array_equal(W1, W2)
        assert b0 is None or np.array_equal(b1, b2)
        assert np.array_equal(np.stack(per_epoch), res.losses)
        assert state["step"] == E * 3


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_state_carries_momentum_between_calls(backend, dt):
    X, Y, W0, b0 = make_problem(15, 4, 1, dt, seed=5)
    hp = dict(batch_size=4, lr=0.02, momentum=0.9, nesterov=True)
    W1, b1, state = W0.copy(), b0.copy(), {}
    kernels.epoch(X, Y, W1, b1, state=state, backend=backend, **hp)
    assert state["momentum_buffer_W"].dtype == np.dtype(dt)
    assert state["momentum_buffer_W"].shape == W0.shape
    assert state["momentum_buffer_b"].shape == b0.shape
    kernels.epoch(X, Y, W1, b1, state=state, backend=backend, **hp)
    W2, b2, state2 = W0.copy(), b0.copy(), {}
    kernels.train(X, Y, W2, b2, epochs=2, state=state2, backend=backend, **hp)
    assert np.array_equal(W1, W2) and np.array_equal(b1, b2)
    assert np.array_equal(state["momentum_buffer_W"], state2["momentum_buffer_W"])
    assert state["step"] == state2["step"] == 8
    # a fresh state restarts the optimizer: not the same as continuing
    W3, b3 = W0.copy(), b0.copy()
    kernels.epoch(X, Y, W3, b3, state={}, backend=backend, **hp)
    kernels.epoch(X, Y, W3, b3, state={}, backend=backend, **hp)
    assert not np.array_equal(W3, W1)
    # and the model says the same
    We, be, _ = train_reference(X, Y, W0, b0, epochs=2, **hp)
    assert np.array_equal(W1, We) and np.array_equal(b1, be)


# --------------------------------------------------------------------------------------
# inputs: non-contiguous, torch tensors, dtypes


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_non_contiguous_inputs_are_copied(backend, dt):
    X, Y, W0, b0 = make_problem(17, 6, 2, dt, seed=8)
    big = np.zeros((17, 12), dt)
    big[:, ::2] = X
    Xs = big[:, ::2]  # a strided view
    Xf = np.asfortranarray(X)
    Yf = np.asfortranarray(Y)
    assert not Xs.flags.c_contiguous and not Xf.flags.c_contiguous
    W1, b1 = W0.copy(), b0.copy()
    l1 = kernels.epoch(X, Y, W1, b1, batch_size=5, lr=0.02, backend=backend)
    for Xv, Yv in ((Xs, Y), (Xf, Yf)):
        W2, b2 = W0.copy(), b0.copy()
        l2 = kernels.epoch(Xv, Yv, W2, b2, batch_size=5, lr=0.02, backend=backend)
        assert np.array_equal(W1, W2) and np.array_equal(b1, b2) and np.array_equal(l1, l2)
        g1 = kernels.gradient(X, Y, W0, b0, backend=backend)
        g2 = kernels.gradient(Xv, Yv, W0, b0, backend=backend)
        assert np.array_equal(g1[0], g2[0]) and np.array_equal(g1[1], g2[1]) and g1[2] == g2[2]
    assert np.array_equal(big[:, ::2], X) and (big[:, 1::2] == 0).all()


@pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")
@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_torch_tensors_updated_in_place(backend, dt):
    import torch

    X, Y, W0, b0 = make_problem(12, 3, 2, dt, seed=3)
    Wt = torch.from_numpy(W0.copy())
    bt = torch.from_numpy(b0.copy())
    w_ptr, b_ptr = Wt.data_ptr(), bt.data_ptr()
    state = {}
    kernels.epoch(
        torch.from_numpy(X),
        torch.from_numpy(Y),
        Wt,
        bt,
        batch_size=5,
        lr=0.05,
        momentum=0.9,
        state=state,
        backend=backend,
    )
    Wn, bn = W0.copy(), b0.copy()
    kernels.epoch(X, Y, Wn, bn, batch_size=5, lr=0.05, momentum=0.9, state={}, backend=backend)
    assert Wt.data_ptr() == w_ptr and bt.data_ptr() == b_ptr
    assert np.array_equal(Wt.numpy(), Wn) and np.array_equal(bt.numpy(), bn)
    assert not np.array_equal(Wn, W0)
    # a layer's parameters (requires_grad=True) work too
    layer = torch.nn.Linear(3, 2, dtype=torch.float64 if dt == np.float64 else torch.float32)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W0))
        layer.bias.copy_(torch.from_numpy(b0))
    kernels.epoch(
        X, Y, layer.weight, layer.bias, batch_size=5, lr=0.05, momentum=0.9, backend=backend
    )
    assert np.array_equal(layer.weight.detach().numpy(), Wn)
    assert np.array_equal(layer.bias.detach().numpy(), bn)


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_dtypes_are_kept(backend, dt):
    X, Y, W, b = make_problem(10, 3, 2, dt, seed=2)
    gW, gb, _ = kernels.gradient(X, Y, W, b, backend=backend)
    assert gW.dtype == np.dtype(dt) and gb.dtype == np.dtype(dt)
    state = {}
    losses = kernels.epoch(
        X, Y, W, b, batch_size=4, lr=0.01, momentum=0.5, state=state, backend=backend
    )
    assert W.dtype == np.dtype(dt) and b.dtype == np.dtype(dt)
    assert state["momentum_buffer_W"].dtype == np.dtype(dt)
    assert losses.dtype == np.float64
    # the float32 losses are float32 values (exactly representable), not float64 sums
    if dt == np.float32:
        assert np.array_equal(losses.astype(np.float32).astype(np.float64), losses)


# --------------------------------------------------------------------------------------
# stopping: target loss, divergence


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_target_loss_stops_after_first_step_below(backend, dt):
    M, N, bs, E = 24, 3, 4, 5
    X, Y, W0, b0 = make_problem(M, N, 1, dt, seed=6, y_1d=True)
    kw = dict(batch_size=bs, lr=0.1)
    _, _, ref_losses = train_reference(X, Y, W0, b0, epochs=E, **kw)
    flat = ref_losses.ravel()
    target = float(np.median(flat))  # reached part-way through
    k = int(np.flatnonzero(flat < target)[0])
    assert 0 < k < flat.size - 1
    W, b = W0.copy(), b0.copy()
    res = kernels.train(X, Y, W, b, epochs=E, target_loss=target, backend=backend, **kw)
    assert res.status == "target_loss"
    assert res.steps == k + 1  # the step that reached the target is applied
    assert res.epochs == (k + 1) // (M // bs)
    got = res.losses.ravel()
    assert np.array_equal(got[: k + 1], flat[: k + 1])
    assert np.isnan(got[k + 1 :]).all()
    # the parameters are those after step k + 1 of the reference
    steps_per_epoch = M // bs
    e_full, s_part = divmod(k + 1, steps_per_epoch)
    We, be = W0, b0
    if e_full:
        We, be, _ = train_reference(X, Y, We, be, epochs=e_full, **kw)
    if s_part:
        We, be, _ = train_reference(X[: s_part * bs], Y[: s_part * bs], We, be, epochs=1, **kw)
    assert np.array_equal(W, We) and np.array_equal(b, be)
    # a target that is never reached changes nothing
    res2 = kernels.train(
        X, Y, W0.copy(), b0.copy(), epochs=E, target_loss=-1.0, backend=backend, **kw
    )
    assert res2.status == "completed" and res2.steps == E * steps_per_epoch


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_divergence_is_reported(backend, dt):
    X, Y, W0, b0 = make_problem(20, 5, 1, dt, seed=12)
    W0 = W0 * (1e100 if dt == np.float64 else 1e10)  # each step multiplies W by ~1e7: overflow
    W, b = W0.copy(), b0.copy()
    res = kernels.train(X, Y, W, b, batch_size=1, epochs=3, lr=1e6, backend=backend)
    assert res.status == "diverged"
    assert 0 < res.steps < 20 and res.epochs == 0
    assert np.isnan(res.losses.ravel()[res.steps + 1 :]).all()
    assert np.isfinite(res.losses.ravel()[: res.steps]).all()
    with pytest.raises(linsgd.DivergenceError) as info:
        kernels.epoch(X, Y, W0.copy(), b0.copy(), batch_size=1, lr=1e6, backend=backend)
    assert isinstance(info.value, FloatingPointError)
    assert issubclass(linsgd.DivergenceError, FloatingPointError)
    big = np.full_like(W0, 1e30 if dt == np.float32 else 1e300)
    with pytest.raises(linsgd.DivergenceError):
        kernels.step(X, Y, big, b0.copy(), lr=1e10, backend=backend)


# --------------------------------------------------------------------------------------
# bad input


def _bad_inputs(dt):
    X, Y, W, b = make_problem(8, 3, 2, dt, seed=1)
    nan_X = X.copy()
    nan_X[3, 1] = np.nan
    inf_Y = Y.copy()
    inf_Y[0, 0] = np.inf
    other = np.float32 if dt == np.float64 else np.float64
    return [
        ("X-ndim", dict(X=X[:, :, None]), "X"),
        ("X-1d", dict(X=X[:, 0]), "X"),
        ("Y-rows", dict(Y=Y[:-1]), "Y"),
        ("W-shape", dict(W=W.T.copy()), "W"),
        ("W-1d", dict(W=W[0].copy()), "W"),
        ("b-shape", dict(b=np.zeros(3, dt)), "b"),
        ("X-int", dict(X=X.astype(np.int64)), "X"),
        ("Y-mixed", dict(Y=Y.astype(other)), "Y"),
        ("W-mixed", dict(W=W.astype(other)), "W"),
        ("b-mixed", dict(b=b.astype(other)), "b"),
        ("X-nan", dict(X=nan_X), "X"),
        ("Y-inf", dict(Y=inf_Y), "Y"),
        ("X-empty", dict(X=X[:0], Y=Y[:0]), "X"),
    ], (X, Y, W, b)


_BAD_IDS = [c[0] for c in _bad_inputs(np.float64)[0]]


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("case", _BAD_IDS)
@pytest.mark.parametrize("func", ["loss", "gradient", "step", "epoch", "train"])
def test_bad_arrays_raise_naming_the_argument(backend, dt, case, func):
    cases, (X, Y, W, b) = _bad_inputs(dt)
    _, override, name = next(c for c in cases if c[0] == case)
    args = dict(X=X, Y=Y, W=W.copy(), b=b.copy())
    args.update(override)
    W_before, b_before = args["W"].copy(), args["b"].copy()
    extra = {
        "loss": {},
        "gradient": {},
        "step": dict(lr=0.1),
        "epoch": dict(batch_size=3, lr=0.1),
        "train": dict(batch_size=3, epochs=2, lr=0.1),
    }[func]
    with pytest.raises((ValueError, TypeError), match=rf"\b{name}\b"):
        getattr(kernels, func)(args["X"], args["Y"], args["W"], args["b"], backend=backend, **extra)
    if func in ("step", "epoch", "train") and args["W"].shape == W_before.shape:
        assert np.array_equal(args["W"], W_before, equal_nan=True)
        assert np.array_equal(args["b"], b_before, equal_nan=True)


@pytest.mark.parametrize(
    "kw, name",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=-3), "batch_size"),
        (dict(nesterov=True), "nesterov"),
        (dict(nesterov=True, momentum=0.9, dampening=0.1), "nesterov"),
        (dict(lr=-0.1), "lr"),
        (dict(lr=float("nan")), "lr"),
        (dict(lr=float("inf")), "lr"),
        (dict(weight_decay=float("nan")), "weight_decay"),
        (dict(momentum=float("inf")), "momentum"),
        (dict(order=[0, 1, 8]), "order"),
        (dict(order=[-1, 0]), "order"),
        (dict(backend="foo"), "backend"),
    ],
    ids=lambda v: str(v) if isinstance(v, str) else "-".join(f"{k}={v[k]}" for k in v),
)
def test_bad_hyper_parameters_raise_naming_the_argument(backend, kw, name):
    X, Y, W, b = make_problem(8, 3, 2, np.float64, seed=1)
    W0 = W.copy()
    args = dict(batch_size=3, lr=0.1, backend=backend)
    args.update(kw)
    with pytest.raises((ValueError, TypeError), match=rf"\b{name}\b"):
        kernels.epoch(X, Y, W, b, **args)
    assert np.array_equal(W, W0)
    train_args = dict(args, epochs=2)
    if "order" in train_args:
        train_args["orders"] = [train_args.pop("order")] * 2
        name = "orders"
    with pytest.raises((ValueError, TypeError), match=rf"\b{name}\b"):
        kernels.train(X, Y, W, b, **train_args)
    assert np.array_equal(W, W0)


def test_unknown_backend_is_named_in_the_error():
    X, Y, W, b = make_problem(4, 2, 1, np.float64, seed=0)
    for func, extra in [("loss", {}), ("gradient", {}), ("step", dict(lr=0.1))]:
        with pytest.raises(ValueError, match=r"backend.*'foo'|'foo'.*backend"):
            getattr(kernels, func)(X, Y, W, b, backend="foo", **extra)
