"""Tests of linsgd.conventions: torch weight_decay, Keras L2, Ridge, SGDRegressor, closed form."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import needs_torch
from linsgd import LinearRegressor, closed_form
from linsgd.conventions import (
    CONVENTIONS,
    convert,
    from_penalty_coefficient,
    linsgd_params,
    penalty_coefficient,
)
from reference import eps_distance


def _data(M=90, N=4, U=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((M, N))
    W = rng.standard_normal((U, N))
    Y = X @ W.T + 0.5 + 0.1 * rng.standard_normal((M, U))
    W0 = rng.uniform(-0.5, 0.5, (U, N))
    b0 = rng.uniform(-0.5, 0.5, U)
    return X, Y, W0, b0


# ----------------------------------------------------------------------------- the numbers


def test_conversion_table():
    M, U = 100, 3
    assert convert(0.1, "torch", "keras") == 0.05
    assert convert(0.05, "keras", "torch") == 0.1
    assert convert(0.1, "weight_decay", "l2") == 0.05
    assert convert(0.1, "torch", "ridge", n_samples=M) == 5.0
    assert convert(0.1, "torch", "ridge", n_samples=M, n_outputs=U) == 15.0
    assert convert(0.05, "keras", "sgd_regressor") == 0.05
    assert convert(5.0, "ridge", "torch", n_samples=M) == pytest.approx(0.1, rel=1e-15)
    assert penalty_coefficient(0.3, "torch") == 0.15
    assert from_penalty_coefficient(0.15, "ridge", n_samples=10, n_outputs=2) == 3.0
    assert linsgd_params(0.05, "keras") == {"weight_decay": 0.1, "decay_bias": False, "l2": 0.0}
    for a in CONVENTIONS:
        for b in CONVENTIONS:
            v = convert(0.37, a, b, n_samples=50)
            assert convert(v, b, a, n_samples=50) == pytest.approx(0.37, rel=1e-14)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: convert(0.1, "torch", "ridge"), ValueError, "n_samples is required"),
        (lambda: convert(0.1, "pytorch", "keras"), ValueError, "source must be one of|convention"),
        (lambda: convert(-1.0, "torch", "keras"), ValueError, "value must be finite and >= 0"),
        (lambda: convert("a", "torch", "keras"), TypeError, "value must be a real number"),
        (lambda: convert(0.1, 3, "keras"), TypeError, "convention"),
        (lambda: convert(0.1, "torch", "sgd_regressor", n_outputs=2), ValueError, "one output"),
        (lambda: convert(0.1, "torch", "ridge", n_samples=0), ValueError, "n_samples"),
        (lambda: linsgd_params(0.1, "torch", decay_bias=1), TypeError, "decay_bias"),
    ],
)
def test_conversion_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ----------------------------------------------------------------------------- SGD paths


def _keras_sgd(X, Y, W0, b0, *, lr, l2, bias_l2=0.0, momentum=0.0, nesterov=False, bs, epochs):
    """Keras ``Dense(kernel_regularizer=L2(l2), bias_regularizer=L2(bias_l2))`` + ``SGD``,
    written from Keras's formulas: loss = mean squared error + l2 * sum(kernel**2)
    (+ bias_l2 * sum(bias**2)); velocity ``m = momentum * m - lr * g`` starting at zero,
    ``w += m`` (Nesterov: ``w += momentum * m - lr * g``). Kernel stored as (N, U)."""
    K = W0.T.copy()
    bias = b0.copy()
    mK = np.zeros_like(K)
    mb = np.zeros_like(bias)
    for _ in range(epochs):
        for s in range(0, len(X), bs):
            xb, yb = X[s : s + bs], Y[s : s + bs]
            e = xb @ K + bias - yb
            gK = 2.0 / e.size * xb.T @ e + 2.0 * l2 * K
            gb = 2.0 / e.size * e.sum(0) + 2.0 * bias_l2 * bias
            if momentum:
                mK = momentum * mK - lr * gK
                mb = momentum * mb - lr * gb
                K = K + (momentum * mK - lr * gK if nesterov else mK)
                bias = bias + (momentum * mb - lr * gb if nesterov else mb)
            else:
                K = K - lr * gK
                bias = bias - lr * gb
    return K.T, bias


@pytest.mark.parametrize("opt", [{}, {"momentum": 0.9}, {"momentum": 0.8, "nesterov": True}])
@pytest.mark.parametrize("U", [1, 2])
def test_keras_l2_formula_equals_linsgd_l2_and_torch_decay_on_weights(opt, U):
    """Keras's L2(l2) (loss + l2*sum(W**2), bias unpenalised) is linsgd's ``l2`` and torch's
    ``weight_decay = 2*l2`` on the weights only, step for step (Keras's velocity is -lr times
    torch's momentum buffer); only the rounding differs."""
    X, Y, W0, b0 = _data(U=U)
    lam, lr, bs, epochs = 0.03, 0.01, 30, 8
    Wk, bk = _keras_sgd(X, Y, W0, b0, lr=lr, l2=lam, bs=bs, epochs=epochs, **opt)
    fit_kw = {"coef_init": W0, "intercept_init": b0}
    a = LinearRegressor(lr=lr, batch_size=bs, epochs=epochs, l2=lam, **opt).fit(X, Y, **fit_kw)
    wd = convert(lam, "keras", "torch")
    b = LinearRegressor(lr=lr, batch_size=bs, epochs=epochs, weight_decay=wd, decay_bias=False,
                        **opt).fit(X, Y, **fit_kw)  # fmt: skip
    np.testing.assert_allclose(a.coef_, Wk, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a.intercept_, bk, rtol=1e-12, atol=1e-14)
    # l2 = wd / 2 with the bias undecayed is the same computation in linsgd, bit for bit
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.intercept_, b.intercept_)


def test_keras_bias_regularizer_equals_torch_decay_on_everything():
    X, Y, W0, b0 = _data()
    wd, lr, bs, epochs = 0.06, 0.01, 30, 8
    Wk, bk = _keras_sgd(X, Y, W0, b0, lr=lr, l2=wd / 2, bias_l2=wd / 2, bs=bs, epochs=epochs)
    m = LinearRegressor(lr=lr, batch_size=bs, epochs=epochs, weight_decay=wd)
    m.fit(X, Y, coef_init=W0, intercept_init=b0)
    np.testing.assert_allclose(m.coef_, Wk, rtol=1e-12)
    np.testing.assert_allclose(m.intercept_, bk, rtol=1e-12)


@needs_torch
def test_linsgd_l2_equals_torch_param_groups(dtype):
    """linsgd ``l2=lam`` == torch SGD with the weight in a group of weight_decay=2*lam and the
    bias in a group of weight_decay=0 (to the last bit or two; N=4 is bit-exact)."""
    import torch

    X, Y, W0, b0 = _data(M=60)
    X, Y, W0, b0 = (a.astype(dtype) for a in (X, Y, W0, b0))
    lam = 0.05
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    layer = torch.nn.Linear(4, 1, dtype=tdt)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W0))
        layer.bias.copy_(torch.from_numpy(b0))
    groups = [{"params": [layer.weight], "weight_decay": convert(lam, "keras", "torch")},
              {"params": [layer.bias], "weight_decay": 0.0}]  # fmt: skip
    opt = torch.optim.SGD(groups, lr=0.01, momentum=0.9)
    xt, yt = torch.from_numpy(X), torch.from_numpy(Y)
    for _ in range(5):
        for s in range(0, 60, 20):
            loss = torch.nn.functional.mse_loss(layer(xt[s : s + 20]), yt[s : s + 20])
            opt.zero_grad()
            loss.backward()
            opt.step()
    m = LinearRegressor(lr=0.01, batch_size=20, epochs=5, l2=lam, momentum=0.9)
    m.fit(X, Y, coef_init=W0, intercept_init=b0)
    assert eps_distance(m.coef_, layer.weight.detach().numpy()) <= 2
    assert eps_distance(m.intercept_, layer.bias.detach().numpy()) <= 2


# ----------------------------------------------------------------------------- optima


@pytest.mark.parametrize("U", [1, 3])
def test_all_conventions_share_one_optimum(U):
    from sklearn.linear_model import Ridge

    X, Y, _, _ = _data(M=70, U=U)
    M = len(X)
    wd = 0.2
    cf_torch = closed_form(X, Y, weight_decay=wd, decay_bias=False)
    cf_keras = closed_form(X, Y, l2=convert(wd, "torch", "keras"))
    cf_params = closed_form(X, Y, **linsgd_params(wd, "torch"))
    ridge = Ridge(alpha=convert(wd, "torch", "ridge", n_samples=M, n_outputs=U)).fit(X, Y)
    for coef, intercept in (cf_keras, cf_params):
        np.testing.assert_allclose(coef, cf_torch[0], rtol=1e-13)
        np.testing.assert_allclose(intercept, cf_torch[1], rtol=1e-13)
    np.testing.assert_allclose(cf_torch[0], np.reshape(ridge.coef_, (U, -1)), rtol=1e-11)
    np.testing.assert_allclose(cf_torch[1], np.ravel(ridge.intercept_), rtol=1e-11)


def test_sgd_regressor_alpha_has_the_same_optimum():
    """SGDRegressor(alpha) minimises (1/M) sum 0.5 (y - y_hat)^2 + alpha * 0.5 ||w||^2: its
    gradient vanishes at closed_form(l2=alpha), and the fitted model lands there."""
    from sklearn.linear_model import SGDRegressor

    rng = np.random.default_rng(0)
    M = 200
    X = rng.standard_normal((M, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3 + 0.1 * rng.standard_normal(M)
    lam = 0.05
    alpha = convert(lam, "keras", "sgd_regressor")
    coef, intercept = closed_form(X, y, l2=lam)
    r = y - X @ coef - intercept
    grad_w = -(X.T @ r) / M + alpha * coef  # SGDRegressor's objective, from its docs
    grad_b = -r.mean()
    assert np.abs(grad_w).max() < 1e-13 and abs(grad_b) < 1e-13
    sgd = SGDRegressor(alpha=alpha, penalty="l2", learning_rate="constant", eta0=1e-3,
                       max_iter=3000, tol=None, random_state=0).fit(X, y)  # fmt: skip
    assert np.abs(sgd.coef_ - coef).max() < 2e-3 * np.abs(coef).max()
    # the wrong (Ridge-style) conversion lands visibly elsewhere
    far = closed_form(X, y, l2=convert(alpha, "ridge", "keras", n_samples=M))[0]
    assert np.abs(far - coef).max() > 20 * np.abs(sgd.coef_ - coef).max()


def test_weight_decay_coupled_equals_decoupled_for_plain_sgd():
    """Seed 004: coupled decay (d = g + wd*p, p -= lr*d) is decoupled decay with factor
    lr*wd (p = (1 - lr*wd) p - lr*g) for plain SGD."""
    X, Y, W0, b0 = _data(M=64)
    wd, lr, bs = 0.05, 0.01, 16
    W, b = W0.copy(), b0.copy()
    for _ in range(3):
        for s in range(0, 64, bs):
            xb, yb = X[s : s + bs], Y[s : s + bs]
            e = xb @ W.T + b - yb
            gW, gb = 2.0 / e.size * e.T @ xb, 2.0 / e.size * e.sum(0)
            W = (1 - lr * wd) * W - lr * gW
            b = (1 - lr * wd) * b - lr * gb
    m = LinearRegressor(lr=lr, batch_size=bs, epochs=3, weight_decay=wd)
    m.fit(X, Y, coef_init=W0, intercept_init=b0)
    np.testing.assert_allclose(m.coef_, W, rtol=1e-13)
    np.testing.assert_allclose(m.intercept_, b, rtol=1e-13)
