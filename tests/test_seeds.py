"""Every experiment of the seed notebooks (shared/seeds/), repeated with linsgd, checking each
notebook's own claim. The notebooks draw their data unseeded; here the same generators are
seeded, so the numbers differ from the printed ones where they depend on the draw, and are
compared with the printed values where they do not."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_regression

from helpers import needs_torch
from linsgd import LinearRegressor, RankDeficientWarning, closed_form, kernels
from linsgd.conventions import convert
from linsgd.metrics import mape
from reference import dataloader_orders, eps_distance

pytestmark = pytest.mark.usefixtures("torch_one_thread_module")


def _seed_lines(train, valid):
    """The notebooks' per-epoch line, ``epoch: k - MSE: x - MSE_v: y`` (rounded to 4)."""
    return [f"epoch: {k} - MSE: {round(t, 4)} - MSE_v: {round(v, 4)}"
            for k, (t, v) in enumerate(zip(train, valid))]  # fmt: skip


# ----------------------------------------------------------------------------- seed 000


def _seed000_data():
    X, Y, true_w = make_regression(n_samples=100, n_features=4, n_targets=1, n_informative=3,
                                   bias=0.33, noise=1, coef=True, random_state=0)  # fmt: skip
    rng = np.random.default_rng(0)  # SimpleLinearRegression: torch.randn init
    return X[:85], Y[:85], X[85:], Y[85:], true_w, rng.standard_normal(4), rng.standard_normal(1)


def _seed000_scratch(Xt, Yt, w, b, *, lam, lr, epochs, bs):
    """SimpleLinearRegression.update of seed 000 (the Keras-L2 scratch model), in numpy:
    w -= lr * (2/m X^T e + 2 lam w); b -= lr * 2/m sum(e)."""
    w = w.reshape(-1, 1).copy()
    b = b.copy()
    y = Yt.reshape(-1, 1)
    for _ in range(epochs):
        for s in range(0, len(Xt), bs):
            x, yt = Xt[s : s + bs], y[s : s + bs]
            e = x @ w + b - yt
            m = len(yt)
            w -= lr * (2 / m * (x.T @ e) + (2 * lam * w))
            b -= lr * 2 / m * (np.ones_like(yt).T @ e)[0]
    return w[:, 0], b


def test_seed000_keras_l2_scratch_model_is_linsgd_l2():
    """In [10]-[16]: Dense(kernel_regularizer=L2(0.03)) + SGD(0.01), 5 epochs, batch 85 // 3,
    and the scratch model with the L2 gradient 2*lambda*w end at the same weights; so does
    linsgd's ``l2`` (Keras's convention), and its printed loss includes the penalty."""
    Xt, Yt, Xv, Yv, _, w0, b0 = _seed000_data()
    lam, lr, epochs, bs = 0.03, 0.01, 5, len(Xt) // 3
    w, b = _seed000_scratch(Xt, Yt, w0, b0, lam=lam, lr=lr, epochs=epochs, bs=bs)
    model = LinearRegressor(lr=lr, batch_size=bs, epochs=epochs, l2=lam)
    model.fit(Xt, Yt, eval_set=(Xv, Yv), coef_init=w0, intercept_init=b0)
    assert mape(w, model.coef_) < 1e-10 and mape(b, [model.intercept_]) < 1e-10
    # the notebook's evaluate(): MSE + lambda * ||w||^2 on the validation set
    mse_v = float(np.mean((Xv @ w + b - Yv) ** 2))
    assert model.history_["valid_loss"][-1] + lam * np.sum(model.coef_**2) == pytest.approx(
        mse_v + lam * np.sum(w**2), rel=1e-12
    )


@needs_torch
def test_seed000_keras_l2_equals_torch_weight_decay_on_the_kernel():
    """Keras L2(lambda) == torch SGD with weight_decay = 2*lambda on the weight group only."""
    import torch

    Xt, Yt, _, _, _, w0, b0 = _seed000_data()
    lam, lr, epochs, bs = 0.03, 0.01, 5, len(Xt) // 3
    layer = torch.nn.Linear(4, 1, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w0[None]))
        layer.bias.copy_(torch.from_numpy(b0))
    opt = torch.optim.SGD([{"params": [layer.weight], "weight_decay": convert(lam, "l2", "torch")},
                           {"params": [layer.bias], "weight_decay": 0.0}], lr=lr)  # fmt: skip
    xt, yt = torch.from_numpy(Xt), torch.from_numpy(Yt).unsqueeze(-1)
    for _ in range(epochs):
        for s in range(0, len(Xt), bs):
            loss = torch.nn.functional.mse_loss(layer(xt[s : s + bs]), yt[s : s + bs])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model = LinearRegressor(lr=lr, batch_size=bs, epochs=epochs, l2=lam)
    model.fit(Xt, Yt, coef_init=w0, intercept_init=b0)
    assert eps_distance(model.coef_, layer.weight.detach().numpy()[0]) <= 2
    assert eps_distance([model.intercept_], layer.bias.detach().numpy()) <= 2


def test_seed000_full_train_lambda_sweep():
    """In [17]-[25]: batch size 1, lr 0.01, 15 epochs, lambda in {0, 3, 0.001}: lambda -> 0
    recovers the true weights (MSE at the noise level); lambda = 3 underfits badly;
    lambda = 0.001 is almost lambda = 0."""
    Xt, Yt, Xv, Yv, true_w, w0, b0 = _seed000_data()
    fits = {}
    for lam in (0.0, 3.0, 0.001):
        m = LinearRegressor(lr=0.01, batch_size=1, epochs=15, l2=lam)
        fits[lam] = m.fit(Xt, Yt, eval_set=(Xv, Yv), coef_init=w0, intercept_init=b0)
    mse = {lam: float(np.mean((m.predict(Xt) - Yt) ** 2)) for lam, m in fits.items()}
    assert 0.5 < mse[0.0] < 1.5  # noise=1
    assert np.abs(fits[0.0].coef_ - true_w).max() < 0.05 * np.abs(true_w).max()
    assert mse[3.0] > 100 * mse[0.0]
    assert np.linalg.norm(fits[3.0].coef_) < 0.5 * np.linalg.norm(true_w)
    assert mse[0.001] == pytest.approx(mse[0.0], rel=0.05)
    # the minimiser the runs head for: the closed form of the same objective
    for lam in (0.0, 0.001):
        coef, _ = closed_form(Xt, Yt, l2=lam)
        assert np.abs(fits[lam].coef_ - coef).max() < 0.01 * np.abs(coef).max()


# ----------------------------------------------------------------------------- seeds 001, 002


def _notebook_scratch(X, y, w, b, *, lr, epochs, bs):
    """SimpleLinearRegression.update of seeds 001/002: delta = 2 (y_hat - y) / len(y);
    b -= lr * sum(delta); w -= lr * delta @ x."""
    w, b = w.copy(), b.copy()
    for _ in range(epochs):
        for s in range(0, len(y), bs):
            x = X[s : s + bs]
            delta = 2 * (x @ w + b - y[s : s + bs]) / len(y[s : s + bs])
            b -= lr * delta.sum()
            w -= lr * delta @ x
    return w, b


@needs_torch
@pytest.mark.parametrize("n_features", [4, 1], ids=["seed001", "seed002"])
def test_seed001_002_scratch_torch_and_linsgd_agree(n_features, capsys):
    """make_regression M = 10_100 (100 train, 10_000 valid), lr 0.01, 16 epochs, batch 100 // 3,
    torch's default nn.Linear init copied into the scratch model: the scratch model and torch
    print the same lines and end with the same parameters (modified MAPE ~ 0). linsgd, started
    from the same parameters, prints the same lines and agrees with torch to the last bit or two.
    Seed 002 is the one-feature version."""
    import torch

    from linsgd.cli import torch_fit

    X, Y = make_regression(n_samples=10_100, n_features=n_features, n_targets=1,
                           n_informative=max(n_features - 1, 1), bias=0.5, noise=1,
                           random_state=n_features)  # fmt: skip
    Xt, Yt, Xv, Yv = X[:100], Y[:100], X[100:], Y[100:]
    lr, epochs, bs = 0.01, 16, 100 // 3
    torch.manual_seed(7)
    layer = torch.nn.Linear(n_features, 1, dtype=torch.float64)
    W0 = layer.weight.detach().numpy().copy()
    b0 = layer.bias.detach().numpy().copy()
    t_hist, v_hist = torch_fit(layer, torch.from_numpy(Xt), torch.from_numpy(Yt).unsqueeze(-1),
                               epochs, lr, bs, torch.from_numpy(Xv),
                               torch.from_numpy(Yv).unsqueeze(-1))  # fmt: skip
    model = LinearRegressor(lr=lr, batch_size=bs, epochs=epochs, verbose=1)
    model.fit(Xt, Yt, eval_set=(Xv, Yv), coef_init=W0[0], intercept_init=b0)
    assert capsys.readouterr().out.splitlines() == _seed_lines(t_hist, v_hist)
    Wt = layer.weight.detach().numpy()[0]
    bt = layer.bias.detach().numpy()
    assert eps_distance(model.coef_, Wt) <= 2 and eps_distance([model.intercept_], bt) <= 2
    with torch.no_grad():
        pred_torch = layer(torch.from_numpy(Xv)).squeeze(-1).numpy()
    assert mape(pred_torch, model.predict(Xv)) < 1e-12
    w_s, b_s = _notebook_scratch(Xt, Yt, W0[0], b0, lr=lr, epochs=epochs, bs=bs)
    assert mape(Wt, w_s) < 1e-10 and mape(bt, b_s) < 1e-10
    assert mape(pred_torch, Xv @ w_s + b_s) < 1e-10


def test_seed001_mape_is_the_notebook_metric():
    """Before copying the parameters the two models differ a lot; after, MAPE is exactly 0."""
    X, _ = make_regression(n_samples=50, n_features=4, random_state=0)
    a = LinearRegressor(lr=0.0, epochs=1, init="torch", random_state=1).fit(X, X[:, 0])
    b = LinearRegressor(lr=0.0, epochs=1, init="torch", random_state=2).fit(X, X[:, 0])
    assert mape(a.predict(X), b.predict(X)) > 10
    b.coef_, b.intercept_ = a.coef_.copy(), a.intercept_
    assert mape(a.predict(X), b.predict(X)) == 0.0


# ----------------------------------------------------------------------------- seed 003


_X003 = np.array([(1, 1), (2, 1), (5, 1), (-1, 1)], dtype=np.float32)
_Y003 = np.array([5, 8, 17, -1], dtype=np.float32)


@pytest.mark.parametrize("bias", [False, True])
def test_seed003_zero_init_keeps_every_output_identical(bias):
    """In [75]/[73]: nn.Linear(2, 3) zero-initialised, lr 1e-4, two full-batch steps on three
    identical target columns: the loss is 94.75 then 94.64761352539062 (float32), the gradient
    of every row [-17.8333, -4.8333], and the three rows of W stay identical."""
    Y = np.repeat(_Y003[:, None], 3, axis=1)
    W = np.zeros((3, 2), np.float32)
    gW, _, loss0 = kernels.gradient(_X003, Y, W, None)
    assert loss0 == 94.75
    np.testing.assert_allclose(gW, [[-17.8333, -4.8333]] * 3, atol=5e-5)
    model = LinearRegressor(lr=1e-4, batch_size=4, epochs=2, fit_intercept=bias).fit(_X003, Y)
    assert model.coef_.dtype == np.float32
    np.testing.assert_array_equal(model.coef_, model.coef_[[0, 0, 0]])  # every row the same
    if bias:  # "all neurons will move the same": the biases too
        assert np.all(model.intercept_ == model.intercept_[0])
    else:  # the notebook's numbers (bias=False)
        assert model.history_["train_loss"] == [94.75, 94.64761352539062]
        np.testing.assert_allclose(model.coef_[0], [0.0036, 0.0010], atol=5e-5)


def test_seed003_target_loss_stops_at_the_notebooks_step():
    """In [35]-[39]: nn.Linear(2, 1, bias=False), SGD(lr=1e-4), full batch, break after the
    first step whose loss < 3e-3. Started from the weights the notebook printed just before
    that loop ([3.1303, 1.4657], In [38]), it prints 17695 (the 0-based loop index): t_ is
    17696 steps, the last one's loss below 3e-3. (The printed weights are rounded to 4
    decimals, so the final loss differs from the notebook's 0.0029997 in the 5th digit.)"""
    model = LinearRegressor(lr=1e-4, batch_size=4, epochs=100_000, fit_intercept=False,
                            target_loss=3e-3)  # fmt: skip
    model.fit(_X003, _Y003, coef_init=np.array([3.1303, 1.4657], np.float32))
    assert model.t_ == 17695 + 1 and model.n_iter_ == model.t_  # one step per epoch
    assert model.history_["train_loss"][-1] < 3e-3 <= model.history_["train_loss"][-2]
    # the data are y = 3 x + 2: the run approaches the exact solution
    coef, _ = closed_form(_X003, _Y003, fit_intercept=False)
    np.testing.assert_allclose(coef, [3.0, 2.0], rtol=1e-12)
    assert np.abs(model.coef_ - coef).max() < 0.1


@needs_torch
def test_seed003_target_loss_step_agrees_with_torch():
    """The notebook's torch loop, run over the last 1000 steps (from linsgd's parameters after
    step 16696; the agreement of such runs step by step is tested elsewhere), stops at the same
    step with the same loss and weights as linsgd's target_loss run from the start."""
    import torch

    W0 = np.array([3.1303, 1.4657], np.float32)
    head = LinearRegressor(lr=1e-4, batch_size=4, epochs=16_696, fit_intercept=False)
    head.fit(_X003, _Y003, coef_init=W0)
    layer = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(head.coef_[None]))
    opt = torch.optim.SGD(layer.parameters(), lr=0.0001)
    criterion = torch.nn.MSELoss()
    x, t = torch.from_numpy(_X003), torch.from_numpy(_Y003).view(-1, 1)
    epoch = 16_696
    while True:  # the notebook's loop; `epoch` is its 0-based step index
        loss = criterion(layer(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 3e-3:
            break
        epoch += 1
    model = LinearRegressor(lr=1e-4, batch_size=4, epochs=100_000, fit_intercept=False,
                            target_loss=3e-3).fit(_X003, _Y003, coef_init=W0)  # fmt: skip
    assert epoch == 17695 and model.t_ == epoch + 1
    assert model.history_["train_loss"][-1] == loss.item()
    assert eps_distance(model.coef_, layer.weight.detach().numpy()[0]) <= 2


def test_seed003_normal_equations():
    """In [1]-[3] of the closed-form part: np.linalg.solve on the normal equations, and the
    singular cases that raise LinAlgError there give the minimum-norm solution and a warning
    here (the matrices are used as designs without a bias: least squares on them is the
    solve where that exists)."""
    coef, _ = closed_form(np.array([[2070.0, 138], [138, 10]]), [3717.0, 241], fit_intercept=False)
    np.testing.assert_allclose(coef, [2.36231884, -8.5], rtol=1e-8)
    coef, _ = closed_form(np.array([[5.0, 7], [7, 10]]), [4.0, 5], fit_intercept=False)
    np.testing.assert_allclose(coef, [5.0, -3.0], rtol=1e-12)
    with pytest.warns(RankDeficientWarning, match=r"rank 1 < 2"):  # infinitely many solutions
        coef, _ = closed_form(np.array([[5.0, 5], [5, 5]]), [15.0, 15], fit_intercept=False)
    np.testing.assert_allclose(coef, [1.5, 1.5], rtol=1e-12)  # the smallest of them
    with pytest.warns(RankDeficientWarning, match=r"rank 1 < 2"):  # contradictory: least squares
        coef, _ = closed_form(np.array([[13.0, 13], [13, 13]]), [36.0, 54], fit_intercept=False)
    np.testing.assert_allclose(coef, [45 / 26, 45 / 26], rtol=1e-12)


# ----------------------------------------------------------------------------- seed 004


def _seed004_data(n=5_000, seed=1000):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, size=(n, 2))
    y = x @ np.array([2, -3.4]) + 4.2 + rng.normal(0, 0.01, size=n)
    return x, y


def test_seed004_torch_weight_decay_is_not_divided_by_the_batch():
    """pytorch实现2: sum-of-squares loss, grad / batch_size, then ``- lr * wd * param``: the
    decay is NOT divided by the batch size; that is torch's SGD(weight_decay) and linsgd's
    weight_decay. Data as the notebook (x ~ N(0, 1), w = [2, -3.4], b = 4.2), batch 128,
    lr 0.01, wd 0.05, shuffled, 20 epochs, init w ~ N(0, 0.01), b = 0."""
    x, y = _seed004_data()
    lr, wd, bs, epochs, seed = 0.01, 0.05, 128, 20, 100
    w0 = np.random.default_rng(100).normal(0, 0.01, 2)
    orders = dataloader_orders(seed, len(x), bs, epochs)
    w, b = w0.copy(), np.zeros(1)
    for e in range(epochs):
        for s in range(0, len(x), bs):
            idx = orders[e, s : s + bs]
            xb, yb = x[idx], y[idx]
            err = xb @ w + b - yb
            grad_w, grad_b = 2 * xb.T @ err, 2 * err.sum(keepdims=True)  # of sum((y_p - y)^2)
            w = w - lr * grad_w / len(yb) - lr * wd * w
            b = b - lr * grad_b / len(yb) - lr * wd * b
    model = LinearRegressor(lr=lr, batch_size=bs, epochs=epochs, weight_decay=wd, shuffle=True,
                            random_state=seed).fit(x, y, coef_init=w0)  # fmt: skip
    np.testing.assert_allclose(model.coef_, w, rtol=1e-12)
    assert model.intercept_ == pytest.approx(b[0], rel=1e-12)
    # the decay shrinks the weights towards the closed form of the same objective
    coef, intercept = closed_form(x, y, weight_decay=wd)
    np.testing.assert_allclose(model.coef_, coef, rtol=5e-3)
    assert np.all(np.abs(coef) < [2, 3.4]) and abs(intercept) < 4.2
    # dividing the decay by the batch size as well (the "L2 inside the mean" reading) is a
    # much weaker penalty: a different model
    weak = LinearRegressor(lr=lr, batch_size=bs, epochs=epochs, weight_decay=wd / bs,
                           shuffle=True, random_state=seed).fit(x, y, coef_init=w0)  # fmt: skip
    assert np.abs(weak.coef_ - model.coef_).max() > 0.05


@needs_torch
def test_seed004_torch_sgd_weight_decay_agrees():
    """pytorch实现1: SGD(lr=0.01, weight_decay=0.05) over a shuffling DataLoader, float32."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    x, y = _seed004_data(n=2_000)
    x, y = x.astype(np.float32), y.astype(np.float32)
    w0 = np.random.default_rng(100).normal(0, 0.01, (1, 2)).astype(np.float32)
    layer = torch.nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w0))
        torch.nn.init.constant_(layer.bias, 0)
    opt = torch.optim.SGD(layer.parameters(), lr=0.01, weight_decay=0.05)
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), 128, shuffle=True,
                        generator=torch.Generator().manual_seed(1000))  # fmt: skip
    loss_fn = torch.nn.MSELoss()
    for _ in range(20):
        for xb, yb in loader:
            out = layer(xb)
            loss = loss_fn(out, yb.reshape(out.shape))
            opt.zero_grad()
            loss.backward()
            opt.step()
    model = LinearRegressor(lr=0.01, batch_size=128, epochs=20, weight_decay=0.05, shuffle=True,
                            random_state=1000).fit(x, y, coef_init=w0[0])  # fmt: skip
    assert eps_distance(model.coef_, layer.weight.detach().numpy()[0]) <= 2
    assert eps_distance([model.intercept_], layer.bias.detach().numpy()) <= 2
