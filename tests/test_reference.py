"""Checks of the test references themselves (tests/reference.py).

The fma emulation is checked against exact rational arithmetic and the exact and naive models
against each other (always run); the models are checked bit for bit against torch where torch
is installed (skipped with a reason otherwise).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from helpers import DT_IDS, DTYPES, needs_torch
from reference import (
    cascade_sum,
    dataloader_epoch_batches,
    dataloader_orders,
    eps_distance,
    exact_gradient,
    fma,
    make_problem,
    naive_gradient,
    sgd_update,
    sum_dim0,
    torch_train,
    train_reference,
)


def _torch_dtype(dt):
    import torch

    return torch.float64 if np.dtype(dt) == np.float64 else torch.float32


# --------------------------------------------------------------------------------------
# fma emulation against exact rational arithmetic


def _round_exact(fr: Fraction, dt) -> float:
    """``fr`` rounded to nearest (ties to even) in ``dt``, decided with exact arithmetic."""
    if dt == np.float64:
        return float(fr)  # int / int true division is correctly rounded
    x = np.float32(float(fr))  # within one float32 ulp of the answer
    cands = [x, np.nextafter(x, np.float32(np.inf)), np.nextafter(x, np.float32(-np.inf))]
    best = min(abs(Fraction(float(c)) - fr) for c in cands)
    ties = [c for c in cands if abs(Fraction(float(c)) - fr) == best]
    if len(ties) > 1:
        ties = [c for c in ties if int(np.array(c, np.float32).view(np.int32)) & 1 == 0]
    return float(ties[0])


def _fma_cases(dt, rng):
    """(a, b, c) triples: random over several binades, exact cancellations, halfway ties,
    and cases where the separately rounded ``a*b + c`` is wrong."""
    dt = np.dtype(dt).type
    p = 24 if dt == np.float32 else 53
    cases = []
    for _ in range(300):
        a, b, c = (dt(rng.standard_normal() * 2.0 ** rng.integers(-20, 20)) for _ in range(3))
        cases.append((a, b, c))
    for _ in range(100):  # c cancels the rounded product: the result is the product's error
        a, b = dt(rng.standard_normal()), dt(rng.standard_normal())
        cases.append((a, b, -(a * b)))
    for _ in range(100):  # a = 1 + k*u, b = 1 - k*u: a*b = 1 - k^2 u^2, c = -1 or near it
        k = int(rng.integers(1, 1 << 10))
        u = 2.0 ** -(p - 1)
        a, b = dt(1 + k * u), dt(1 - k * u)
        cases.append((a, b, dt(-1.0)))
        cases.append((a, b, dt(rng.standard_normal() * 2.0 ** -(p - 5))))
    # exact halfway cases: a*b = 1 + 2^-p exactly is a tie between 1 and 1 + 2^(1-p)
    half = 2.0**-p
    cases.append((dt(1 + 2 * half), dt(0.5), dt(0.5 + half * 0)))  # 0.5 + 2^-p*... exact checks
    cases.append((dt(1.0 + 2.0 ** (1 - p)), dt(1.0), dt(2.0**-p)))  # tie: rounds to even
    cases.append((dt(1.0), dt(1.0), dt(2.0**-p)))  # 1 + half-ulp: tie, to even (1)
    cases.append((dt(1.0), dt(1.0), dt(3 * 2.0**-p)))  # 1 + 1.5 ulp: tie, to even (1+2ulp)
    cases.append((dt(1.0), dt(1.0), dt(-(2.0 ** -(p + 1)))))  # just below 1: tie, to even
    return cases


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_fma_matches_exact_rounding(dt):
    rng = np.random.default_rng(12345)
    cases = _fma_cases(dt, rng)
    a = np.array([t[0] for t in cases], dt)
    b = np.array([t[1] for t in cases], dt)
    c = np.array([t[2] for t in cases], dt)
    got = fma(a, b, c)
    assert got.dtype == np.dtype(dt) and got.shape == a.shape
    want = np.array(
        [
            _round_exact(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z)), dt)
            for x, y, z in zip(a, b, c)
        ],
        dt,
    )
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, [(a[i], b[i], c[i], got[i], want[i]) for i in bad[:5]]
    # the cases are not all trivial: the separately rounded a*b + c differs in many of them
    unfused = (a * b) + c
    assert np.count_nonzero(unfused != want) > 50


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_fma_broadcasts_scalars(dt):
    p = np.array([[1.5, -2.0], [0.25, 3.0]], dt)
    got = fma(p, np.dtype(dt).type(0.1), np.ones_like(p))
    assert got.shape == (2, 2) and got.dtype == np.dtype(dt)
    assert np.allclose(got, p * 0.1 + 1)
    assert fma(np.array(2.0, dt), np.array(3.0, dt), np.array(1.0, dt)).shape == ()


# --------------------------------------------------------------------------------------
# models against each other (no torch)


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("U", [1, 3])
@pytest.mark.parametrize("with_bias", [True, False])
def test_exact_and_naive_gradient_agree(dt, U, with_bias):
    eps = np.finfo(dt).eps
    for B, N in [(1, 1), (7, 4), (33, 13), (64, 64)]:
        X, Y, W, b = make_problem(B, N, U, dt, seed=B * 10 + N)
        b = b if with_bias else None
        gW, gb, loss = exact_gradient(X, Y, W, b)
        nW, nb, nloss = naive_gradient(X, Y, W, b)
        assert gW.dtype == np.dtype(dt) and gW.shape == (U, N)
        # a priori error bounds: |e| <= |X||W|^T + |b| + |Y|, each sum has < N + B + 4 roundings
        ax, aw, ay = (np.abs(a.astype(np.float64)) for a in (X, W, Y.reshape(B, U)))
        mag_e = ax @ aw.T + ay + (0.0 if b is None else np.abs(b.astype(np.float64)))
        gamma = 2 * (N + B + 4) * eps
        assert (np.abs(gW - nW) <= gamma * (2 / (B * U)) * (mag_e.T @ ax)).all()
        if with_bias:
            assert gb.shape == (U,) and gb.dtype == np.dtype(dt)
            assert (np.abs(gb - nb) <= gamma * (2 / (B * U)) * mag_e.sum(0)).all()
        else:
            assert gb is None and nb is None
        assert abs(float(loss) - float(nloss)) <= 2 * gamma * float(np.mean(mag_e**2))


def test_sum_dim0_small_cases_are_plain_sums():
    # below 4 lanes every order gives the same exact sum of small integers
    for U in (1, 2, 3, 5, 9):
        for B in (1, 2, 3, 17, 100):
            g = np.arange(B * U, dtype=np.float64).reshape(B, U)
            assert np.array_equal(sum_dim0(g), g.sum(0))
    assert cascade_sum(np.arange(10, dtype=np.float32)) == np.float32(45)


def test_train_reference_exact_and_naive_agree():
    for dt in DTYPES:
        X, Y, W0, b0 = make_problem(40, 5, 2, dt, seed=3)
        kw = dict(batch_size=7, epochs=4, lr=0.02, momentum=0.5, weight_decay=0.01)
        We, be, le = train_reference(X, Y, W0, b0, exact=True, **kw)
        Wn, bn, _ln = train_reference(X, Y, W0, b0, exact=False, **kw)
        assert le.shape == (4, 6) and np.isfinite(le).all()
        assert eps_distance(We, Wn) < 64 and eps_distance(be, bn) < 64
        assert le[-1].mean() < le[0].mean()
        # the inputs are not modified
        assert np.array_equal(W0, make_problem(40, 5, 2, dt, seed=3)[2])


def test_train_reference_l2_is_weight_decay_on_weights_only():
    X, Y, W0, b0 = make_problem(30, 3, 1, np.float64, seed=9)
    kw = dict(batch_size=10, epochs=3, lr=0.05)
    a = train_reference(X, Y, W0, b0, l2=0.05, **kw)
    b = train_reference(X, Y, W0, b0, weight_decay=0.1, decay_bias=False, **kw)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_sgd_update_first_momentum_step_copies():
    p = np.array([1.0, -2.0])
    g = np.array([0.5, 0.25])
    p1, buf = sgd_update(p, g, None, lr=0.1, momentum=0.9, dampening=0.5)
    assert np.array_equal(buf, g) and np.array_equal(p1, p - 0.1 * g)
    _p2, buf2 = sgd_update(p1, g, buf, lr=0.1, momentum=0.9, dampening=0.5)
    assert np.allclose(buf2, 0.9 * g + 0.5 * g)
    # the bias ignores l2, and weight decay only when decay_bias is False
    q, _ = sgd_update(p, np.zeros(2), None, lr=0.1, l2=1.0, is_bias=True)
    assert np.array_equal(q, p)
    q, _ = sgd_update(
        p, np.zeros(2), None, lr=0.1, weight_decay=0.5, decay_bias=False, is_bias=True
    )
    assert np.array_equal(q, p)
    q, _ = sgd_update(p, np.zeros(2), None, lr=0.1, weight_decay=0.5, is_bias=True)
    assert np.array_equal(q, p * 0.95)


# --------------------------------------------------------------------------------------
# models against torch, bit for bit


@needs_torch
@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("with_bias", [True, False])
def test_exact_gradient_matches_autograd_bitwise(dt, with_bias):
    import torch

    mse = torch.nn.MSELoss()
    checked = 0
    for N in (1, 2, 3, 4):
        for B in (1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 64, 100, 257):
            X, Y, W, b = make_problem(B, N, 1, dt, seed=1000 * N + B)
            b = b if with_bias else None
            layer = torch.nn.Linear(N, 1, bias=with_bias, dtype=_torch_dtype(dt))
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(W))
                if with_bias:
                    layer.bias.copy_(torch.from_numpy(b))
            loss = mse(layer(torch.from_numpy(X)), torch.from_numpy(Y))
            loss.backward()
            gW, gb, eloss = exact_gradient(X, Y, W, b)
            assert np.array_equal(gW, layer.weight.grad.numpy()), (N, B)
            if with_bias:
                assert np.array_equal(gb, layer.bias.grad.numpy()), (N, B)
            assert eloss == loss.detach().numpy(), (N, B)
            assert eloss.dtype == np.dtype(dt)
            checked += 1
    assert checked == 60


@needs_torch
@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_sum_dim0_matches_torch_bitwise(dt):
    import torch

    rng = np.random.default_rng(7)
    for U in (1, 2, 3, 4, 5, 8, 9, 17, 33):
        for B in (1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 63, 64, 65, 255, 256, 257, 600):
            g = rng.standard_normal((B, U)).astype(dt)
            assert np.array_equal(sum_dim0(g), torch.from_numpy(g).sum(0).numpy()), (U, B)
    for n in (1, 5, 8, 40, 123, 999):
        x = rng.standard_normal(n).astype(dt)
        assert cascade_sum(x) == torch.from_numpy(x).sum().numpy(), n


@needs_torch
@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_sgd_update_matches_torch_optimizer_bitwise(dt):
    import torch

    rng = np.random.default_rng(11)
    configs = [
        dict(),
        dict(weight_decay=0.3),
        dict(momentum=0.9),
        dict(momentum=0.9, dampening=0.1, weight_decay=1e-2),
        dict(momentum=0.9, nesterov=True),
        dict(momentum=0.5, dampening=0.5, maximize=True),
        dict(weight_decay=1e-2, maximize=True),
        dict(momentum=0.9, l2=0.03, weight_decay=1e-2, decay_bias=False),
        dict(momentum=0.9, nesterov=True, l2=0.2),
    ]
    for cfg in configs:
        lr = 0.07
        W = rng.standard_normal((3, 13)).astype(dt)
        b = rng.standard_normal(3).astype(dt)
        tW = torch.from_numpy(W.copy()).requires_grad_()
        tb = torch.from_numpy(b.copy()).requires_grad_()
        wd, l2 = cfg.get("weight_decay", 0.0), cfg.get("l2", 0.0)
        groups = [
            {"params": [tW], "weight_decay": wd + 2 * l2},
            {"params": [tb], "weight_decay": wd if cfg.get("decay_bias", True) else 0.0},
        ]
        topt = torch.optim.SGD(
            groups,
            lr=lr,
            momentum=cfg.get("momentum", 0.0),
            dampening=cfg.get("dampening", 0.0),
            nesterov=cfg.get("nesterov", False),
            maximize=cfg.get("maximize", False),
        )
        bufW = bufb = None
        for _ in range(5):
            gW = rng.standard_normal(W.shape).astype(dt)
            gb = rng.standard_normal(b.shape).astype(dt)
            tW.grad = torch.from_numpy(gW.copy())
            tb.grad = torch.from_numpy(gb.copy())
            topt.step()
            W, bufW = sgd_update(W, gW, bufW, lr=lr, **cfg)
            b, bufb = sgd_update(b, gb, bufb, lr=lr, is_bias=True, **cfg)
            assert np.array_equal(W, tW.detach().numpy()), cfg
            assert np.array_equal(b, tb.detach().numpy()), cfg


@needs_torch
@pytest.mark.parametrize("drop_last", [False, True])
def test_dataloader_orders_match_torch(drop_last):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    for seed, M, bs in [(0, 7, 3), (42, 25, 4), (2**33 + 5, 30, 30), (123, 100, 7)]:
        ds = TensorDataset(torch.arange(M, dtype=torch.float64)[:, None])
        dl = DataLoader(
            ds,
            batch_size=bs,
            shuffle=True,
            drop_last=drop_last,
            generator=torch.Generator().manual_seed(seed),
        )
        want = [[xb[:, 0].long().tolist() for (xb,) in dl] for _ in range(4)]
        assert dataloader_epoch_batches(seed, M, bs, 4, drop_last) == want
        flat = dataloader_orders(seed, M, bs, 4, drop_last)
        assert flat.dtype == np.int64
        assert flat.tolist() == [[i for batch in ep for i in batch] for ep in want]


@needs_torch
@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
def test_train_reference_exact_matches_torch_loop_bitwise(dt):
    """Semantics §7: the pure-numpy model reproduces the torch loop for N=4 (U=1)."""
    X, Y, W0, b0 = make_problem(31, 4, 1, dt, seed=5, y_1d=True)
    order = dataloader_orders(3, 31, 8, 3)
    for kw in [
        dict(),
        dict(momentum=0.9, dampening=0.1, weight_decay=0.01),
        dict(momentum=0.9, nesterov=True, l2=0.01, decay_bias=False),
    ]:
        for o in (None, order):
            for b in (b0, None):
                t = torch_train(X, Y, W0, b, batch_size=8, epochs=3, lr=0.03, order=o, **kw)
                r = train_reference(X, Y, W0, b, batch_size=8, epochs=3, lr=0.03, order=o, **kw)
                assert np.array_equal(t[0], r[0])
                assert (b is None and t[1] is None and r[1] is None) or np.array_equal(t[1], r[1])
                assert np.array_equal(t[2], r[2])
