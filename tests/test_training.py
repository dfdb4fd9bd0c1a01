"""LinearRegressor as a complete trainer: shuffling and drop_last, stopping, sample weights,
initialisation, torch interop with optimizer state, verbose output, pickling."""

from __future__ import annotations

import copy
import pickle
import re
import sys
import time

import numpy as np
import pytest

import linsgd
from helpers import needs_torch, problem
from linsgd import DivergenceError, LinearRegressor
from linsgd._shuffle import TorchDataLoaderOrder, dataloader_orders
from linsgd._torch_interop import torch_linear_init
from reference import dataloader_orders as a3_orders
from reference import eps_distance

BOUND = 2.0  # eps * max|param|: "the last bit or two"


pytestmark = pytest.mark.usefixtures("torch_one_thread_module")


def _tdtype(dtype):
    import torch

    return torch.float64 if dtype == np.float64 else torch.float32


def _layer(W0, b0):
    import torch

    layer = torch.nn.Linear(W0.shape[1], W0.shape[0], bias=b0 is not None,
                            dtype=_tdtype(W0.dtype))  # fmt: skip
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W0))
        if b0 is not None:
            layer.bias.copy_(torch.from_numpy(b0))
    return layer


def _close_to_layer(model, layer):
    W = np.atleast_2d(model.coef_)
    assert eps_distance(W, layer.weight.detach().numpy()) <= BOUND
    if layer.bias is not None:
        assert eps_distance(np.atleast_1d(model.intercept_), layer.bias.detach().numpy()) <= BOUND


# ----------------------------------------------------------------------------- shuffling


@pytest.mark.parametrize("seed", [0, 77])
@pytest.mark.parametrize("M", [1, 5, 4096, 5000])
def test_shuffle_orders_equal_a3_on_both_paths(seed, M):
    # 4096 and 5000 rows take the compiled swap loop, 1 and 5 the Python one
    np.testing.assert_array_equal(dataloader_orders(seed, M, 3), a3_orders(seed, M, 7, 3))


def test_shuffle_is_fast_for_large_data():
    TorchDataLoaderOrder(0).orders(5000, 1)  # compile or load the cached swap loop
    t0 = time.perf_counter()
    orders = TorchDataLoaderOrder(1).orders(1_000_000, 2)
    elapsed = time.perf_counter() - t0
    assert orders.shape == (2, 1_000_000)
    np.testing.assert_array_equal(np.sort(orders[1]), np.arange(1_000_000))
    assert elapsed < 5.0  # ~0.1 s per epoch; a Python loop per row takes seconds


def test_orders_by_epochs_equal_epoch_by_epoch():
    a = TorchDataLoaderOrder(3)
    b = TorchDataLoaderOrder(3)
    np.testing.assert_array_equal(a.orders(6000, 3), np.vstack([b.next_epoch(6000) for _ in "abc"]))
    assert a.get_state()["state"]["pos"] == b.get_state()["state"]["pos"]


@needs_torch
@pytest.mark.parametrize(
    ("M", "bs", "drop_last"), [(100, 16, True), (96, 16, True), (50, 8, False)]
)
def test_shuffled_fit_with_drop_last_agrees_with_dataloader(dtype, M, bs, drop_last):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    X, y, W0, b0 = problem(M=M, dtype=dtype)
    seed, epochs = 2024, 5
    kw = dict(lr=0.01, batch_size=bs, epochs=epochs, momentum=0.9, shuffle=True,
              random_state=seed, drop_last=drop_last)  # fmt: skip
    model = LinearRegressor(**kw).fit(X, y, coef_init=W0[0], intercept_init=b0)
    assert model.t_ == epochs * (M // bs if drop_last else -(-M // bs))

    layer = _layer(W0, b0)
    opt = torch.optim.SGD(layer.parameters(), lr=0.01, momentum=0.9)
    data = TensorDataset(torch.from_numpy(X), torch.from_numpy(y).unsqueeze(-1))
    loader = DataLoader(data, bs, shuffle=True, drop_last=drop_last,
                        generator=torch.Generator().manual_seed(seed))  # fmt: skip
    for _ in range(epochs):
        for xb, yb in loader:
            loss = torch.nn.functional.mse_loss(layer(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    _close_to_layer(model, layer)


def test_shuffled_fit_in_chunks_of_epochs_gives_the_same_bits(monkeypatch):
    """Large shuffled fits build their row orders a few epochs at a time (bounded memory)."""
    import linsgd._trainer as est

    X, y, _, _ = problem(M=50)
    kw = dict(lr=0.02, batch_size=8, epochs=7, momentum=0.9, shuffle=True, random_state=5)
    ref = LinearRegressor(**kw).fit(X, y)
    stop = LinearRegressor(target_loss=0.7 * min(ref.history_["train_loss"]), **kw).fit(X, y)
    monkeypatch.setattr(est, "_MAX_ORDER_ENTRIES", 120)  # 2 epochs of 50 rows per kernel call
    assert 2 * 7 < stop.t_ < ref.t_  # the stop falls in a later chunk
    again = LinearRegressor(target_loss=stop.target_loss, **kw).fit(X, y)
    for a, b in ((ref, LinearRegressor(**kw).fit(X, y)), (stop, again)):
        np.testing.assert_array_equal(b.coef_, a.coef_)
        assert (b.t_, b.n_iter_, b.history_) == (a.t_, a.n_iter_, a.history_)
        np.testing.assert_array_equal(b.partial_fit(X, y).coef_, a.partial_fit(X, y).coef_)


def test_drop_last_without_shuffle_skips_the_tail():
    X, y, _, _ = problem(M=50)
    a = LinearRegressor(lr=0.01, batch_size=8, epochs=3, drop_last=True).fit(X, y)
    b = LinearRegressor(lr=0.01, batch_size=8, epochs=3).fit(X[:48], y[:48])
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert a.t_ == b.t_ == 18
    with pytest.raises(ValueError, match=r"drop_last=True with batch_size=64 > n_samples=50"):
        LinearRegressor(batch_size=64, drop_last=True).fit(X, y)


# ----------------------------------------------------------------------------- stopping


def test_tol_on_training_loss():
    X, y, _, _ = problem()
    model = LinearRegressor(lr=0.01, batch_size=25, epochs=100, tol=1e9, n_iter_no_change=3)
    model.fit(X, y)
    assert model.n_iter_ == 4 and model.t_ == 16  # epoch 0 sets the best, 3 without progress
    assert model.best_epoch_ == int(np.argmin(model.history_["train_loss"]))
    full = LinearRegressor(lr=0.01, batch_size=25, epochs=4).fit(X, y)
    np.testing.assert_array_equal(model.coef_, full.coef_)  # training loss: the last epoch's
    assert LinearRegressor(lr=0.01, batch_size=25, epochs=3).fit(X, y).best_epoch_ is None


@pytest.mark.parametrize("kw", [{}, {"momentum": 0.9}, {"shuffle": True, "random_state": 4}])
def test_tol_on_validation_keeps_the_best_epoch(kw):
    X, y, _, _ = problem(M=80)
    rng = np.random.default_rng(1)
    Xv, yv = X + 0.4 * rng.standard_normal(X.shape), y  # noisy copy: overfits soon
    model = LinearRegressor(lr=0.05, batch_size=10, epochs=300, tol=1e-6, n_iter_no_change=4, **kw)
    model.fit(X, y, eval_set=(Xv, yv))
    valid = model.history_["valid_loss"]
    best = model.best_epoch_
    assert best == int(np.argmin(valid)) and best < model.n_iter_ - 1
    assert model.n_iter_ == len(valid) == len(model.history_["train_loss"])
    assert model.t_ == 8 * model.n_iter_
    # the model holds the best epoch's parameters: those of a fit that stops there
    ref = LinearRegressor(lr=0.05, batch_size=10, epochs=best + 1, **kw).fit(X, y)
    np.testing.assert_array_equal(model.coef_, ref.coef_)
    assert model.intercept_ == ref.intercept_
    assert model.score(Xv, yv) == pytest.approx(1 - valid[best] / np.var(yv), rel=1e-9)
    # ... and its momentum buffers: partial_fit continues from the best epoch
    if kw.get("momentum"):
        ref_state = ref._optimizer_state["momentum_buffer_W"]
        np.testing.assert_array_equal(model._optimizer_state["momentum_buffer_W"], ref_state)


def _torch_stop_run(X, y, W0, b0, *, bs, lr, seed, drop_last, target, epochs, more):
    """The seed-003 loop with a shuffling DataLoader: break after the first step whose loss is
    below ``target``; then ``more`` further epochs from the same loader."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    layer = _layer(W0, b0)
    opt = torch.optim.SGD(layer.parameters(), lr=lr)
    data = TensorDataset(torch.from_numpy(X), torch.from_numpy(y).unsqueeze(-1))
    loader = DataLoader(data, bs, shuffle=True, drop_last=drop_last,
                        generator=torch.Generator().manual_seed(seed))  # fmt: skip
    losses, stop_step, steps = [], None, 0
    for _ in range(epochs):
        for xb, yb in loader:
            loss = torch.nn.functional.mse_loss(layer(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            steps += 1
            if target is not None and loss.item() < target:
                stop_step = steps
                break
        if stop_step is not None:
            break
    for _ in range(more):
        for xb, yb in loader:
            loss = torch.nn.functional.mse_loss(layer(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return layer, losses, stop_step


@needs_torch
@pytest.mark.parametrize(
    ("M", "bs", "drop_last", "where"),
    [(50, 8, False, "last"), (48, 8, False, "last"), (50, 8, True, "last"), (50, 8, False, "mid")],
)
def test_target_loss_with_shuffle_then_partial_fit_agrees_with_torch(M, bs, drop_last, where):
    """t_ is the stopping step, and the shuffle stream continues as torch's DataLoader does after
    a ``break`` (the sampler's trailing draw happens only if the last batch was partial)."""
    X, y, W0, b0 = problem(M=M, seed=2)
    lr = 0.02
    S = M // bs if drop_last else -(-M // bs)
    for seed in range(11, 40):  # a shuffle seed with a new loss minimum at the wanted position
        kw = dict(bs=bs, lr=lr, seed=seed, drop_last=drop_last, epochs=6)
        _, losses, _ = _torch_stop_run(X, y, W0, b0, target=None, more=0, **kw)
        run_min = np.minimum.accumulate(losses)
        candidates = [
            j for j in range(S, len(losses))
            if losses[j] < run_min[j - 1] and ((j % S == S - 1) == (where == "last"))
        ]  # fmt: skip
        if candidates:
            break
    assert candidates, "no step sets a new minimum at the wanted position"
    j = candidates[0]
    target = (losses[j] + run_min[j - 1]) / 2
    layer, _, stop_step = _torch_stop_run(X, y, W0, b0, target=target, more=2, **kw)
    assert stop_step == j + 1
    model = LinearRegressor(lr=lr, batch_size=bs, epochs=6, shuffle=True, random_state=seed,
                            drop_last=drop_last, target_loss=target)  # fmt: skip
    model.fit(X, y, coef_init=W0[0], intercept_init=b0)
    assert model.t_ == j + 1 and model.n_iter_ == j // S + 1
    model.partial_fit(X, y).partial_fit(X, y)
    assert model.t_ == j + 1 + 2 * S
    _close_to_layer(model, layer)


# ----------------------------------------------------------------------------- sample weights


@pytest.mark.parametrize("kw", [{}, {"momentum": 0.9, "weight_decay": 0.01},
                                {"shuffle": True, "random_state": 1}])  # fmt: skip
def test_unit_sample_weights_are_bit_identical_to_unweighted(dtype, kw, backend):
    X, y, _, _ = problem(M=101, dtype=dtype)
    common = dict(lr=0.02, batch_size=10, epochs=4, backend=backend, **kw)
    a = LinearRegressor(**common).fit(X, y)
    b = LinearRegressor(**common).fit(X, y, sample_weight=np.ones(101))
    c = LinearRegressor(**common).fit(X, y, sample_weight=[4] * 101)  # a power of 2: exact
    for m in (b, c):
        np.testing.assert_array_equal(m.coef_, a.coef_)
        assert m.intercept_ == a.intercept_
        assert m.history_ == a.history_


def test_integer_weight_equals_duplicated_row_in_full_batch():
    X, y, _, _ = problem(M=30)
    sw = np.ones(30)
    sw[[3, 17]] = [2, 3]
    rows = np.concatenate([np.arange(30), [3, 17, 17]])
    kw = dict(lr=0.05, epochs=50, weight_decay=0.01, momentum=0.5)
    a = LinearRegressor(batch_size=30, **kw).fit(X, y, sample_weight=sw)
    b = LinearRegressor(batch_size=33, **kw).fit(X[rows], y[rows])
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-13)
    assert a.intercept_ == pytest.approx(b.intercept_, rel=1e-13)
    np.testing.assert_allclose(a.history_["train_loss"], b.history_["train_loss"], rtol=1e-13)
    # zero weights: the rows are ignored
    sw0 = np.ones(30)
    sw0[:5] = 0
    c = LinearRegressor(batch_size=30, **kw).fit(X, y, sample_weight=sw0)
    d = LinearRegressor(batch_size=25, **kw).fit(X[5:], y[5:])
    np.testing.assert_allclose(c.coef_, d.coef_, rtol=1e-13)


def test_sample_weight_in_partial_fit_and_validation():
    X, y, _, _ = problem(M=40)
    sw = np.random.default_rng(0).uniform(0.5, 2, 40)
    full = LinearRegressor(lr=0.02, batch_size=8, epochs=3).fit(X, y, sample_weight=sw)
    inc = LinearRegressor(lr=0.02, batch_size=8)
    for _ in range(3):
        inc.partial_fit(X, y, sample_weight=sw)
    np.testing.assert_array_equal(inc.coef_, full.coef_)
    for bad, exc, match in [
        (np.ones(39), ValueError, r"sample_weight must have shape \(40,\)"),
        (-np.ones(40), ValueError, r"sample_weight must be >= 0"),
        (np.zeros(40), ValueError, r"at least one non-zero weight"),
        (np.full(40, np.nan), ValueError, r"sample_weight contains NaN"),
        (["a"] * 40, TypeError, r"sample_weight must hold real numbers"),
    ]:
        with pytest.raises(exc, match=match):
            LinearRegressor().fit(X, y, sample_weight=bad)


# ----------------------------------------------------------------------------- initialisation


def test_init_zeros_and_torch_without_torch():
    X, y, _, _ = problem(M=30)
    m = LinearRegressor(lr=0.0, batch_size=10, epochs=1).fit(X, y)  # lr 0: params stay put
    assert not np.any(m.coef_) and m.intercept_ == 0
    t = LinearRegressor(lr=0.0, batch_size=10, epochs=1, init="torch", random_state=5).fit(X, y)
    W, b = torch_linear_init(4, 1, 5, np.float64)
    np.testing.assert_array_equal(t.coef_, W[0])
    assert t.intercept_ == b[0]
    assert np.all(np.abs(W) <= 0.5) and np.all(np.abs(b) <= 0.5)  # U(-1/sqrt(4), 1/sqrt(4))
    # coef_init wins over init; the seed drives both init and shuffle
    c = LinearRegressor(lr=0.0, epochs=1, init="torch", random_state=5)
    c.fit(X, y, coef_init=np.ones(4))
    np.testing.assert_array_equal(c.coef_, np.ones(4))
    with pytest.raises(ValueError, match=r"init must be one of \['zeros', 'torch'\]"):
        LinearRegressor(init="normal").fit(X, y)


@needs_torch
@pytest.mark.parametrize(("N", "U", "bias"), [(4, 1, True), (13, 3, True), (7, 2, False)])
def test_init_torch_equals_nn_linear_after_manual_seed(dtype, N, U, bias):
    import torch

    for seed in (0, 1, 123456):
        torch.manual_seed(seed)
        layer = torch.nn.Linear(N, U, bias=bias, dtype=_tdtype(dtype))
        W, b = torch_linear_init(N, U, seed, dtype, bias=bias)
        ref_W = layer.weight.detach().numpy()
        if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
            np.testing.assert_array_equal(W, ref_W)  # bit for bit (torch fuses an FMA)
        else:  # pragma: no cover - torch's non-vectorised build rounds twice
            np.testing.assert_allclose(W, ref_W, rtol=2 * np.finfo(dtype).eps)
        if bias:
            np.testing.assert_allclose(b, layer.bias.detach().numpy(), rtol=0, atol=0)
        else:
            assert b is None


@needs_torch
def test_a_whole_torch_script_is_reproduced_from_one_seed(dtype):
    """torch.manual_seed(s); nn.Linear(...); DataLoader(shuffle, Generator().manual_seed(s))."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    X, y, _, _ = problem(M=64, dtype=dtype)
    s = 31
    torch.manual_seed(s)
    layer = torch.nn.Linear(4, 1, dtype=_tdtype(dtype))
    opt = torch.optim.SGD(layer.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(y).unsqueeze(-1)),
                        10, shuffle=True, generator=torch.Generator().manual_seed(s))  # fmt: skip
    for _ in range(4):
        for xb, yb in loader:
            loss = torch.nn.functional.mse_loss(layer(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model = LinearRegressor(lr=0.01, momentum=0.9, batch_size=10, epochs=4, shuffle=True,
                            random_state=s, init="torch").fit(X, y)  # fmt: skip
    _close_to_layer(model, layer)


# ----------------------------------------------------------------------------- torch interop


def _torch_epochs(layer, opt, X, y, epochs, bs):
    import torch

    xt = torch.from_numpy(X)
    yt = torch.from_numpy(y.reshape(len(y), -1))
    for _ in range(epochs):
        for s in range(0, len(X), bs):
            loss = torch.nn.functional.mse_loss(layer(xt[s : s + bs]), yt[s : s + bs])
            opt.zero_grad()
            loss.backward()
            opt.step()


@needs_torch
@pytest.mark.parametrize(
    "kw",
    [
        {"momentum": 0.9},
        {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
        {"momentum": 0.5, "dampening": 0.2, "l2": 0.03, "weight_decay": 0.01, "decay_bias": False},
        {"weight_decay": 0.02},
    ],
)
def test_fit_in_linsgd_then_continue_in_torch(dtype, kw):
    """k epochs in linsgd, j in torch (to_torch(optimizer=True)) == k + j epochs in torch."""
    import torch

    X, y, W0, b0 = problem(M=90, dtype=dtype)
    k, j, bs = 3, 2, 30
    model = LinearRegressor(lr=0.01, batch_size=bs, epochs=k, **kw)
    model.fit(X, y, coef_init=W0[0], intercept_init=b0)
    layer, opt = model.to_torch(optimizer=True)
    assert isinstance(opt, torch.optim.SGD)
    _torch_epochs(layer, opt, X, y, j, bs)

    ref = _layer(W0, b0)
    wd_w = kw.get("weight_decay", 0.0) + 2 * kw.get("l2", 0.0)
    wd_b = kw.get("weight_decay", 0.0) if kw.get("decay_bias", True) else 0.0
    hp = {k2: v for k2, v in kw.items() if k2 in ("momentum", "nesterov", "dampening")}
    groups = [{"params": [ref.weight], "weight_decay": wd_w},
              {"params": [ref.bias], "weight_decay": wd_b}]  # fmt: skip
    ref_opt = torch.optim.SGD(groups, lr=0.01, **hp)
    _torch_epochs(ref, ref_opt, X, y, k + j, bs)
    assert eps_distance(layer.weight.detach().numpy(), ref.weight.detach().numpy()) <= BOUND
    assert eps_distance(layer.bias.detach().numpy(), ref.bias.detach().numpy()) <= BOUND
    # and back again: from_torch + partial_fit continues the torch run
    back = LinearRegressor.from_torch(layer, opt, batch_size=bs, l2=0.0)
    back.partial_fit(X, y)
    _torch_epochs(ref, ref_opt, X, y, 1, bs)
    _close_to_layer(back, ref)


@needs_torch
def test_to_torch_optimizer_details():
    X, y, _, _ = problem(M=40)
    model = LinearRegressor(lr=0.01, batch_size=10, epochs=2).fit(X, y)
    layer, opt = model.to_torch(optimizer=True)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["lr"] == 0.01
    assert opt.state_dict()["state"] == {}  # no momentum: no buffers
    auto = LinearRegressor(batch_size=10, epochs=2).fit(X, y)
    assert auto.to_torch(optimizer=True)[1].param_groups[0]["lr"] == auto.lr_history_[-1]
    from linsgd.schedules import StepLR

    sched = LinearRegressor(lr=StepLR(0.1, 2, 0.5), batch_size=10, epochs=2).fit(X, y)
    assert sched.to_torch(optimizer=True)[1].param_groups[0]["lr"] == 0.05  # epoch 2's
    with pytest.raises(TypeError, match="optimizer must be a bool"):
        model.to_torch(optimizer="yes")
    with pytest.raises(ValueError, match=r"lr='auto' is computed from the training data"):
        LinearRegressor.from_torch(layer, lr="auto").to_torch(optimizer=True)


# ----------------------------------------------------------------------------- verbose


def test_verbose_1_prints_each_epoch_as_it_ends(capsys):
    X, y, _, _ = problem()
    model = LinearRegressor(lr=0.01, batch_size=33, epochs=3, verbose=1)
    model.fit(X, y, eval_set=(X[:20], y[:20]))
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split(" - ")[0] for ln in lines] == ["epoch: 0", "epoch: 1", "epoch: 2"]
    assert lines[1] == (f"epoch: 1 - MSE: {round(model.history_['train_loss'][1], 4)}"
                        f" - MSE_v: {round(model.history_['valid_loss'][1], 4)}")  # fmt: skip
    model.partial_fit(X, y)
    assert capsys.readouterr().out.startswith("epoch: 3 - MSE: ")


@pytest.mark.parametrize("kw", [{}, {"shuffle": True, "random_state": 2, "momentum": 0.9},
                                {"drop_last": True, "target_loss": 0.05}])  # fmt: skip
def test_verbose_2_progress_bar_gives_the_same_bits(capsys, kw):
    pytest.importorskip("tqdm", reason="tqdm is not installed")
    X, y, _, _ = problem(M=101)
    common = dict(lr=0.02, batch_size=4, epochs=3, **kw)
    quiet = LinearRegressor(**common).fit(X, y, eval_set=(X, y))
    loud = LinearRegressor(verbose=2, **common).fit(X, y, eval_set=(X, y))
    np.testing.assert_array_equal(loud.coef_, quiet.coef_)
    assert loud.intercept_ == quiet.intercept_
    assert (loud.n_iter_, loud.t_, loud.history_) == (quiet.n_iter_, quiet.t_, quiet.history_)
    err = capsys.readouterr().err
    assert "linsgd" in err and "step" in err and "loss=" in err


def test_verbose_2_without_tqdm_falls_back_to_lines(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm -> ImportError
    X, y, _, _ = problem()
    LinearRegressor(lr=0.01, batch_size=50, epochs=2, verbose=2).fit(X, y)
    out, err = capsys.readouterr()
    assert "verbose=2 needs tqdm" in err
    assert re.fullmatch(r"epoch: 0 - MSE: \S+\nepoch: 1 - MSE: \S+\n", out)


# ----------------------------------------------------------------------------- failures, pickling


def _equal(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, z) for x, z in zip(a, b))
    if isinstance(a, (np.ndarray, np.generic)):
        return np.array_equal(a, b)
    return a == b


def test_failed_fits_leave_the_model_unchanged():
    X, y, _, _ = problem()
    model = LinearRegressor(batch_size=20, epochs=3, momentum=0.9, shuffle=True, random_state=0)
    model.fit(X, y, eval_set=(X, y))
    before = copy.deepcopy(model.__dict__)

    def same():
        assert set(model.__dict__) == set(before)
        for key, value in before.items():
            assert _equal(model.__dict__[key], value), key

    for params, call in [
        ({"lr": 1e200}, lambda: model.fit(X, y)),
        ({"lr": 1e200}, lambda: model.partial_fit(X, y)),
        ({"lr": lambda e: -1.0}, lambda: model.fit(X, y)),
        ({"lr": 0.01}, lambda: model.fit(X, y, sample_weight=np.zeros(len(y)))),
        ({"lr": 0.01, "drop_last": True, "batch_size": 1000}, lambda: model.fit(X, y)),
    ]:
        saved = model.get_params()
        model.set_params(**params)
        with pytest.raises((DivergenceError, ValueError)):
            call()
        model.set_params(**saved)
        same()


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"momentum": 0.9, "shuffle": True, "random_state": 3},
        {"solver": "closed_form", "weight_decay": 0.1},
        {"lr": linsgd.schedules.ExponentialLR(0.05, 0.9), "dtype": "float32"},
    ],
)
def test_pickle_roundtrip_predicts_and_continues_identically(kw):
    X, Y, _, _ = problem(M=60, U=2)
    model = LinearRegressor(batch_size=16, epochs=3, **kw).fit(X, Y, eval_set=(X, Y))
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.predict(X), model.predict(X))
    assert clone.get_params().keys() == model.get_params().keys()
    if kw.get("solver") != "closed_form":
        model.partial_fit(X, Y)
        clone.partial_fit(X, Y)
        np.testing.assert_array_equal(clone.coef_, model.coef_)
        np.testing.assert_array_equal(clone.intercept_, model.intercept_)
        assert clone.history_ == model.history_
