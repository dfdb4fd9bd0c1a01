"""Tests of linsgd.LinearRegressor: the scikit-learn estimator that drives the kernels."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import linsgd
from helpers import needs_torch, problem
from linsgd import DivergenceError, LinearRegressor
from linsgd._shuffle import TorchDataLoaderOrder, dataloader_orders
from reference import dataloader_orders as a3_orders
from reference import eps_distance, torch_train

# Agreement with torch, in units of eps * max|parameter| (per tensor). For N=4 and U <= 3 the
# kernels reproduce torch's arithmetic (MKL's sequential GEMM order there) bit for bit on the
# reference machine; 2 eps leaves room for "the last bit or two" that DESIGN.md promises.
TORCH_BOUND_EPS = 2.0


pytestmark = pytest.mark.usefixtures("torch_one_thread_module")


# ----------------------------------------------------------------------------- shapes and dtypes


def test_fit_predict_score_single_output(dtype):
    X, y, _, _ = problem(dtype=dtype)
    model = LinearRegressor(batch_size=10, epochs=20, lr=0.05)
    assert model.fit(X, y) is model
    assert model.coef_.shape == (4,)
    assert np.ndim(model.intercept_) == 0
    assert model.n_features_in_ == 4
    pred = model.predict(X)
    assert pred.shape == (100,)
    score = model.score(X, y)
    assert isinstance(score, float) and 0.9 < score <= 1.0


@pytest.mark.parametrize("U", [1, 3])
def test_fit_predict_multi_output(U):
    X, Y, _, _ = problem(U=U, y_1d=False)
    assert Y.shape == (100, U)
    model = LinearRegressor(batch_size=10, epochs=20, lr=0.05).fit(X, Y)
    assert model.coef_.shape == (U, 4)
    assert model.intercept_.shape == (U,)
    pred = model.predict(X)
    assert pred.shape == (100, U)
    np.testing.assert_allclose(pred, X @ model.coef_.T + model.intercept_, rtol=1e-12)
    assert model.score(X, Y) > 0.9


def test_float32_stays_float32():
    X, y, _, _ = problem(dtype=np.float32)
    model = LinearRegressor(batch_size=33).fit(X, y)
    assert model.coef_.dtype == np.float32
    assert np.asarray(model.intercept_).dtype == np.float32
    assert model.predict(X).dtype == np.float32
    # float64 targets with float32 features: the model follows X
    model = LinearRegressor(batch_size=33).fit(X, y.astype(np.float64))
    assert model.coef_.dtype == np.float32


def test_float64_and_other_inputs_give_float64():
    X, y, _, _ = problem(dtype=np.float64)
    assert LinearRegressor().fit(X, y).coef_.dtype == np.float64
    Xi = np.arange(40, dtype=np.int64).reshape(20, 2) % 7
    yi = np.arange(20)
    model = LinearRegressor(lr=0.001).fit(Xi, yi)
    assert model.coef_.dtype == np.float64
    assert model.predict(Xi).dtype == np.float64


def test_explicit_dtype_parameter():
    X, y, _, _ = problem(dtype=np.float64)
    assert LinearRegressor(dtype="float32").fit(X, y).coef_.dtype == np.float32
    X32 = X.astype(np.float32)
    assert LinearRegressor(dtype=np.float64).fit(X32, y).coef_.dtype == np.float64


def test_fit_intercept_false():
    X, y, _, _ = problem()
    model = LinearRegressor(fit_intercept=False, batch_size=10).fit(X, y)
    assert model.intercept_ == 0.0
    np.testing.assert_array_equal(model.predict(X), X @ model.coef_)


def test_params_are_stored_unchanged_and_clone_works():
    from sklearn.base import clone

    model = LinearRegressor(lr=0.1, batch_size=7, epochs=3, dtype="float32", random_state=5)
    params = model.get_params()
    assert params["lr"] == 0.1 and params["epochs"] == 3 and params["dtype"] == "float32"
    assert set(params) == {
        "lr", "batch_size", "epochs", "momentum", "dampening", "nesterov", "maximize",
        "weight_decay", "decay_bias", "l2", "fit_intercept", "shuffle", "random_state",
        "solver", "tol", "n_iter_no_change", "target_loss", "drop_last", "init", "dtype",
        "backend", "verbose", "n_threads", "early_stopping", "validation_fraction", "warm_start",
        "comm", "sharding", "reduce",
    }  # fmt: skip
    assert clone(model).get_params() == params


def test_backends_agree_bitwise(backend):
    X, y, W0, b0 = problem(M=101)
    kw = dict(lr=0.02, batch_size=10, epochs=5, momentum=0.9, weight_decay=0.01)
    ref = LinearRegressor(**kw, backend="cpp" if "cpp" in linsgd.available_backends() else backend)
    ref.fit(X, y, coef_init=W0[0], intercept_init=b0)
    model = LinearRegressor(**kw, backend=backend).fit(X, y, coef_init=W0[0], intercept_init=b0)
    np.testing.assert_array_equal(model.coef_, ref.coef_)
    assert model.intercept_ == ref.intercept_


# ----------------------------------------------------------------------------- partial_fit


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"momentum": 0.9},
        {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
        {"momentum": 0.5, "dampening": 0.3, "l2": 0.05, "decay_bias": False, "weight_decay": 0.1},
        {"shuffle": True, "random_state": 3, "momentum": 0.9},
    ],
)
def test_partial_fit_k_times_equals_fit_bitwise(dtype, kw):
    X, y, _, _ = problem(M=101, dtype=dtype)
    k = 5
    full = LinearRegressor(lr=0.02, batch_size=10, epochs=k, **kw).fit(X, y)
    inc = LinearRegressor(lr=0.02, batch_size=10, **kw)
    for _ in range(k):
        inc.partial_fit(X, y)
    np.testing.assert_array_equal(inc.coef_, full.coef_)
    assert inc.intercept_ == full.intercept_
    assert inc.coef_.dtype == full.coef_.dtype == dtype
    assert inc.n_iter_ == full.n_iter_ == k
    assert inc.t_ == full.t_ == k * 11
    assert inc.history_ == full.history_


def test_partial_fit_continues_after_fit():
    X, y, _, _ = problem(M=60)
    kw = dict(lr=0.02, batch_size=7, momentum=0.9, shuffle=True, random_state=11)
    full = LinearRegressor(epochs=4, **kw).fit(X, y)
    inc = LinearRegressor(epochs=2, **kw).fit(X, y)
    inc.partial_fit(X, y).partial_fit(X, y)
    np.testing.assert_array_equal(inc.coef_, full.coef_)
    assert inc.intercept_ == full.intercept_
    assert inc.history_ == full.history_


def test_partial_fit_checks_features_and_outputs():
    X, Y, _, _ = problem(U=2, y_1d=False)
    model = LinearRegressor().fit(X, Y)
    with pytest.raises(ValueError, match="X has 3 features, but LinearRegressor is expecting 4"):
        model.partial_fit(X[:, :3], Y)
    with pytest.raises(ValueError, match="y has 1 outputs"):
        model.partial_fit(X, Y[:, :1])


# ----------------------------------------------------------------------------- agreement with torch


@needs_torch
@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"momentum": 0.9},
        {"momentum": 0.9, "nesterov": True},
        {"weight_decay": 0.01},
        {"weight_decay": 0.05, "decay_bias": False, "momentum": 0.5, "dampening": 0.2},
        {"l2": 0.02},
        {"maximize": True, "lr": 1e-4},
    ],
)
@pytest.mark.parametrize("U", [1, 3])
@pytest.mark.parametrize("M", [100, 301])
def test_fit_agrees_with_torch_loop(dtype, kw, U, M):
    X, Y, W0, b0 = problem(M=M, U=U, dtype=dtype, y_1d=U == 1)
    kw = {"lr": 0.01, **kw}
    bs = M // 3
    model = LinearRegressor(batch_size=bs, epochs=16, **kw)
    model.fit(X, Y, coef_init=W0[0] if U == 1 else W0, intercept_init=b0)
    Wt, bt, losses = torch_train(X, Y, W0, b0, batch_size=bs, epochs=16, **kw)
    W = np.atleast_2d(model.coef_)
    b = np.atleast_1d(model.intercept_)
    assert W.dtype == Wt.dtype == dtype
    assert eps_distance(W, Wt) <= TORCH_BOUND_EPS
    assert eps_distance(b, bt) <= TORCH_BOUND_EPS
    # the history is the mean of each epoch's step losses, as the seed notebooks print it
    expected = [sum(row) / len(row) for row in losses.tolist()]
    np.testing.assert_allclose(
        model.history_["train_loss"], expected, rtol=1e-5 if dtype == np.float32 else 1e-12
    )


@needs_torch
def test_seed_001_experiment_matches_torch(dtype):
    """Seed notebook 001: make_regression M=10_100 (100 rows train), N=4, lr 0.01, bs 33."""
    import torch
    from sklearn.datasets import make_regression

    from linsgd.cli import torch_fit

    X, Y = make_regression(n_samples=10_100, n_features=4, n_targets=1, n_informative=3,
                           bias=0.3, noise=1, random_state=1)  # fmt: skip
    X, Y = X.astype(dtype), Y.astype(dtype)
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 1, dtype=torch.float64 if dtype == np.float64 else torch.float32)
    W0 = layer.weight.detach().numpy().copy()
    b0 = layer.bias.detach().numpy().copy()
    model = LinearRegressor(lr=0.01, batch_size=33, epochs=16)
    model.fit(X[:100], Y[:100], eval_set=(X[100:], Y[100:]), coef_init=W0[0], intercept_init=b0)
    t_hist, v_hist = torch_fit(
        layer, torch.from_numpy(X[:100]), torch.from_numpy(Y[:100]).unsqueeze(-1), 16, 0.01, 33,
        torch.from_numpy(X[100:]), torch.from_numpy(Y[100:]).unsqueeze(-1),
    )  # fmt: skip
    assert eps_distance(model.coef_, layer.weight.detach().numpy()[0]) <= TORCH_BOUND_EPS
    assert (
        eps_distance(np.atleast_1d(model.intercept_), layer.bias.detach().numpy())
        <= TORCH_BOUND_EPS
    )
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(model.history_["train_loss"], t_hist, rtol=rtol)
    np.testing.assert_allclose(model.history_["valid_loss"], v_hist, rtol=rtol)


@needs_torch
def test_shuffled_fit_agrees_with_torch_dataloader(dtype):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    X, y, W0, b0 = problem(M=100, dtype=dtype)
    seed, bs, epochs = 1234, 16, 6
    model = LinearRegressor(lr=0.01, batch_size=bs, epochs=epochs, momentum=0.9, shuffle=True,
                            random_state=seed)  # fmt: skip
    model.fit(X, y, coef_init=W0[0], intercept_init=b0)

    layer = torch.nn.Linear(4, 1, dtype=torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W0))
        layer.bias.copy_(torch.from_numpy(b0))
    opt = torch.optim.SGD(layer.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(y).unsqueeze(-1)), bs,
                        shuffle=True, generator=torch.Generator().manual_seed(seed))  # fmt: skip
    mse = torch.nn.MSELoss()
    for _ in range(epochs):
        for xb, yb in loader:
            loss = mse(layer(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert eps_distance(model.coef_, layer.weight.detach().numpy()[0]) <= TORCH_BOUND_EPS
    assert (
        eps_distance(np.atleast_1d(model.intercept_), layer.bias.detach().numpy())
        <= TORCH_BOUND_EPS
    )


# ----------------------------------------------------------------------------- shuffle orders


@pytest.mark.parametrize("seed", [0, 7, 2**32 + 5])
@pytest.mark.parametrize("M", [1, 2, 25, 100])
def test_shuffle_orders_equal_appendix_a3_replica(seed, M):
    ours = dataloader_orders(seed, M, 4)
    np.testing.assert_array_equal(ours, a3_orders(seed, M, max(M // 3, 1), 4))


def test_shuffle_order_stream_can_be_resumed():
    gen = TorchDataLoaderOrder(42)
    first = gen.orders(30, 2)
    state = gen.get_state()
    third = gen.orders(30, 1)
    gen2 = TorchDataLoaderOrder(0)
    gen2.set_state(state)
    np.testing.assert_array_equal(gen2.orders(30, 1), third)
    np.testing.assert_array_equal(np.vstack([first, third]), dataloader_orders(42, 30, 3))


def test_large_shuffle_uses_the_same_order():
    # above the numba threshold; compared with the pure-Python replica of A3 on its first epoch
    M = 250_000
    ours = TorchDataLoaderOrder(9).next_epoch(M)
    np.testing.assert_array_equal(ours, a3_orders(9, M, M, 1)[0])


@needs_torch
@pytest.mark.parametrize("seed", [0, 123])
@pytest.mark.parametrize(("M", "bs", "drop_last"), [(100, 33, False), (25, 4, True), (7, 3, False)])
def test_shuffle_orders_equal_torch_dataloader(seed, M, bs, drop_last):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(torch.arange(M)), bs, shuffle=True, drop_last=drop_last,
                        generator=torch.Generator().manual_seed(seed))  # fmt: skip
    torch_orders = [torch.cat([xb for (xb,) in loader]).numpy() for _ in range(5)]
    ours = dataloader_orders(seed, M, 5)
    R = M - M % bs if drop_last else M
    for e in range(5):
        np.testing.assert_array_equal(ours[e][:R], torch_orders[e])


def test_shuffle_random_state_reproducible_and_none_random():
    X, y, _, _ = problem(M=50)
    a = LinearRegressor(batch_size=5, epochs=2, shuffle=True, random_state=3).fit(X, y)
    b = LinearRegressor(batch_size=5, epochs=2, shuffle=True, random_state=3).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    c = LinearRegressor(batch_size=5, epochs=2, shuffle=True, random_state=None).fit(X, y)
    d = LinearRegressor(batch_size=5, epochs=2, shuffle=True, random_state=None).fit(X, y)
    assert not np.array_equal(c.coef_, d.coef_)
    e = LinearRegressor(batch_size=5, epochs=2, shuffle=True,
                        random_state=np.random.default_rng(0)).fit(X, y)  # fmt: skip
    assert np.isfinite(e.coef_).all()


# ----------------------------------------------------------------------------- failures


def test_diverging_fit_leaves_model_unchanged():
    X, y, _, _ = problem()
    model = LinearRegressor(batch_size=33, epochs=4).fit(X, y, eval_set=(X, y))
    before = (
        model.coef_.copy(),
        model.intercept_,
        model.n_iter_,
        model.t_,
        copy.deepcopy(model.history_),
    )
    model.set_params(lr=1e100)
    with pytest.raises(DivergenceError, match=r"epoch \d+, step \d+") as info:
        model.fit(X, y)
    assert isinstance(info.value, FloatingPointError)
    assert info.value.epoch is not None and info.value.step is not None
    np.testing.assert_array_equal(model.coef_, before[0])
    assert model.intercept_ == before[1]
    assert (model.n_iter_, model.t_, model.history_) == before[2:]
    # partial_fit too
    with pytest.raises(DivergenceError):
        model.partial_fit(X, y)
    np.testing.assert_array_equal(model.coef_, before[0])
    assert model.n_iter_ == before[2]


def test_failed_validation_leaves_model_unchanged():
    X, y, _, _ = problem()
    model = LinearRegressor(batch_size=33).fit(X, y)
    coef = model.coef_.copy()
    with pytest.raises(ValueError):
        model.fit(X[:, :2], y[:10])
    np.testing.assert_array_equal(model.coef_, coef)
    assert model.n_features_in_ == 4


def _bad_fit_cases():
    X, y, _, _ = problem(M=20)
    Xnan = X.copy()
    Xnan[3, 1] = np.nan
    yinf = y.copy()
    yinf[0] = np.inf

    def fit(**params):
        return lambda m: m.set_params(**params).fit(X, y)

    return {
        "X 1-D": (lambda m: m.fit(X[:, 0], y), ValueError, r"X must be a 2-D array"),
        "X NaN": (lambda m: m.fit(Xnan, y), ValueError, r"X contains NaN"),
        "y inf": (lambda m: m.fit(X, yinf), ValueError, r"y contains NaN or infinity"),
        "y length": (lambda m: m.fit(X, y[:-1]), ValueError, r"y has 19 samples but X has 20"),
        "y 3-D": (lambda m: m.fit(X, y.reshape(20, 1, 1)), ValueError, r"y must be 1-D"),
        "X strings": (
            lambda m: m.fit(np.array([["a", "b"]] * 20), y),
            TypeError,
            r"X must hold real numbers",
        ),
        "X empty": (lambda m: m.fit(np.empty((0, 4)), np.empty(0)), ValueError, r"X is empty"),
        "X no features": (lambda m: m.fit(np.empty((20, 0)), y), ValueError, r"X has no features"),
        "X complex": (lambda m: m.fit(X + 1j, y), ValueError, r"X is complex"),
        "y None": (lambda m: m.fit(X, None), ValueError, r"y is None"),
        "X None": (lambda m: m.fit(None, y), TypeError, r"X must be an array"),
        "eval_set features": (
            lambda m: m.fit(X, y, eval_set=(X[:, :3], y)),
            ValueError,
            r"eval_set\[0\]",
        ),
        "eval_set form": (lambda m: m.fit(X, y, eval_set=X), TypeError, r"eval_set must be a pair"),
        "coef_init shape": (
            lambda m: m.fit(X, y, coef_init=np.zeros(3)),
            ValueError,
            r"coef_init must have shape",
        ),
        "intercept_init": (
            lambda m: m.fit(X, y, intercept_init=np.zeros(2)),
            ValueError,
            r"intercept_init",
        ),
        "batch_size 0": (fit(batch_size=0), ValueError, r"batch_size must be >= 1"),
        "batch_size float": (fit(batch_size=2.5), TypeError, r"batch_size must be an integer"),
        "lr nan": (fit(lr=float("nan")), ValueError, r"lr must be finite"),
        "lr negative": (fit(lr=-1.0), ValueError, r"lr must be >= 0"),
        "weight_decay inf": (fit(weight_decay=np.inf), ValueError, r"weight_decay must be finite"),
        "epochs 0": (fit(epochs=0), ValueError, r"epochs must be >= 1"),
        "nesterov": (fit(nesterov=True), ValueError, r"nesterov=True requires momentum > 0"),
        "solver": (fit(solver="adam"), ValueError, r"solver must be one of"),
        "dtype": (fit(dtype="float16"), ValueError, r"dtype must be"),
        "backend": (fit(backend="tpu"), ValueError, r"backend must be one of"),
        "random_state": (fit(shuffle=True, random_state="x"), TypeError, r"random_state"),
        "predict features": (
            lambda m: m.fit(X, y).predict(X[:, :2]),
            ValueError,
            r"X has 2 features, but LinearRegressor is expecting 4 features",
        ),
    }


_BAD_CASES = _bad_fit_cases()


@pytest.mark.parametrize("case", list(_BAD_CASES))
def test_bad_input_errors_name_the_argument(case):
    call, exc, match = _BAD_CASES[case]
    with pytest.raises(exc, match=match):
        call(LinearRegressor(batch_size=5))


def test_predict_before_fit_raises():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        LinearRegressor().predict(np.zeros((2, 2)))


# ---------------------------------------------------------------- history, stopping, verbose


def test_history_lengths():
    X, y, _, _ = problem()
    model = LinearRegressor(batch_size=33, epochs=7).fit(X, y)
    assert model.n_iter_ == 7 and model.t_ == 7 * 4
    assert list(model.history_) == ["train_loss"]
    assert len(model.history_["train_loss"]) == 7
    model.fit(X, y, eval_set=(X[:50], y[:50]))
    assert len(model.history_["train_loss"]) == len(model.history_["valid_loss"]) == 7
    assert all(isinstance(v, float) for v in model.history_["valid_loss"])
    # decreasing on this easy problem
    assert model.history_["train_loss"][-1] < model.history_["train_loss"][0]


def test_valid_loss_is_the_full_set_mse():
    X, y, _, _ = problem()
    Xv, yv = X[:40] + 0.1, y[:40]
    model = LinearRegressor(batch_size=33, epochs=3).fit(X, y, eval_set=(Xv, yv))
    mse = float(np.mean((model.predict(Xv) - yv) ** 2))
    assert model.history_["valid_loss"][-1] == pytest.approx(mse, rel=1e-12)


def test_tol_stops_early():
    X, y, _, _ = problem()
    model = LinearRegressor(batch_size=33, epochs=50, tol=1e12, n_iter_no_change=2).fit(X, y)
    assert model.n_iter_ == 3
    assert len(model.history_["train_loss"]) == 3
    assert model.t_ == 3 * 4
    # tol on the validation loss, and the epoch-by-epoch path equals the one-call path
    ref = LinearRegressor(batch_size=33, epochs=3).fit(X, y, eval_set=(X, y))
    es = LinearRegressor(batch_size=33, epochs=50, tol=1e12, n_iter_no_change=2)
    es.fit(X, y, eval_set=(X, y))
    np.testing.assert_array_equal(es.coef_, ref.coef_)
    assert es.history_ == ref.history_
    with pytest.warns(ConvergenceWarning):  # the 10 epochs ran out before the rule was met
        full = LinearRegressor(batch_size=33, epochs=10, tol=0.0).fit(X, y)
    assert full.n_iter_ == 10


def test_target_loss_stops_after_the_step():
    X, y, _, _ = problem()
    model = LinearRegressor(batch_size=10, epochs=20, target_loss=1e9).fit(X, y)
    assert model.t_ == 1 and model.n_iter_ == 1
    assert len(model.history_["train_loss"]) == 1


def test_verbose_prints_the_seed_notebook_line(capsys):
    X, y, _, _ = problem()
    model = LinearRegressor(batch_size=33, epochs=4, verbose=1).fit(X, y, eval_set=(X[:30], y[:30]))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    pattern = re.compile(
        r"^epoch: (\d+) - MSE: (-?[\d.]+(?:e[-+]\d+)?) - MSE_v: (-?[\d.]+(?:e[-+]\d+)?)$"
    )
    for k, line in enumerate(lines):
        m = pattern.match(line)
        assert m, line
        assert int(m.group(1)) == k
        assert float(m.group(2)) == round(model.history_["train_loss"][k], 4)
        assert float(m.group(3)) == round(model.history_["valid_loss"][k], 4)
    LinearRegressor(batch_size=33, epochs=2, verbose=1).fit(X, y)
    assert re.fullmatch(r"epoch: 0 - MSE: \S+\nepoch: 1 - MSE: \S+\n", capsys.readouterr().out)
    LinearRegressor(batch_size=33, epochs=2).fit(X, y)
    assert capsys.readouterr().out == ""


# ---------------------------------------------------------------- penalties and closed form


def test_keras_l2_equals_torch_weight_decay_on_weights_only():
    X, y, W0, b0 = problem()
    lam = 0.05
    a = LinearRegressor(batch_size=10, epochs=5, l2=lam).fit(
        X, y, coef_init=W0[0], intercept_init=b0
    )
    b = LinearRegressor(batch_size=10, epochs=5, weight_decay=2 * lam, decay_bias=False)
    b.fit(X, y, coef_init=W0[0], intercept_init=b0)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-12)
    assert a.intercept_ == pytest.approx(b.intercept_, rel=1e-12)


def test_closed_form_matches_ridge_conversions():
    from sklearn.linear_model import LinearRegression, Ridge

    X, y, _, _ = problem(M=80)
    M = X.shape[0]
    ols = LinearRegressor(solver="closed_form").fit(X, y)
    ref = LinearRegression().fit(X, y)
    np.testing.assert_allclose(ols.coef_, ref.coef_, rtol=1e-10)
    # torch weight_decay on the weights only  <->  Ridge(alpha = M * wd / 2)
    wd = 0.3
    cf = LinearRegressor(solver="closed_form", weight_decay=wd, decay_bias=False).fit(X, y)
    ridge = Ridge(alpha=M * wd / 2).fit(X, y)
    np.testing.assert_allclose(cf.coef_, ridge.coef_, rtol=1e-10)
    assert cf.intercept_ == pytest.approx(ridge.intercept_, rel=1e-10)
    # Keras L2(l2)  <->  Ridge(alpha = M * l2)
    l2 = 0.2
    cf = LinearRegressor(solver="closed_form", l2=l2).fit(X, y)
    np.testing.assert_allclose(cf.coef_, Ridge(alpha=M * l2).fit(X, y).coef_, rtol=1e-10)
    # bias decayed too: ridge on [X, 1] without a separate intercept
    cf = LinearRegressor(solver="closed_form", weight_decay=wd).fit(X, y)
    ridge = Ridge(alpha=M * wd / 2, fit_intercept=False).fit(np.hstack([X, np.ones((M, 1))]), y)
    np.testing.assert_allclose(np.append(cf.coef_, cf.intercept_), ridge.coef_, rtol=1e-10)


def test_long_sgd_run_converges_to_closed_form():
    X, y, _, _ = problem(M=64)
    kw = dict(weight_decay=0.1, decay_bias=False, l2=0.05)
    cf = LinearRegressor(solver="closed_form", **kw).fit(X, y)
    sgd = LinearRegressor(lr=0.1, batch_size=64, epochs=2000, **kw).fit(X, y)
    np.testing.assert_allclose(sgd.coef_, cf.coef_, rtol=1e-8, atol=1e-10)
    assert sgd.intercept_ == pytest.approx(cf.intercept_, rel=1e-8, abs=1e-10)


def test_closed_form_singular_design_gives_min_norm_solution():
    # seed 003: duplicated columns make X^T X singular; lstsq gives the minimum-norm optimum
    X = np.array([[5.0, 5.0], [5.0, 5.0], [1.0, 1.0]])
    y = np.array([15.0, 15.0, 3.0])
    with pytest.warns(linsgd.RankDeficientWarning, match=r"rank 1 < 2"):
        cf = LinearRegressor(solver="closed_form", fit_intercept=False).fit(X, y)
    np.testing.assert_allclose(cf.coef_, [1.5, 1.5], rtol=1e-12)


# ----------------------------------------------------------------------------- torch interop


@needs_torch
@pytest.mark.parametrize(("U", "bias"), [(1, True), (3, True), (2, False)])
def test_from_torch_to_torch_roundtrip(dtype, U, bias):
    import torch

    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    torch.manual_seed(0)
    layer = torch.nn.Linear(5, U, bias=bias, dtype=tdtype)
    model = LinearRegressor.from_torch(layer)
    assert model.coef_.dtype == dtype
    assert model.coef_.shape == ((5,) if U == 1 else (U, 5))
    assert model.fit_intercept is bias
    x = np.random.default_rng(1).standard_normal((7, 5)).astype(dtype)
    with torch.no_grad():
        expected = layer(torch.from_numpy(x)).numpy()
    pred = model.predict(x)
    np.testing.assert_allclose(
        pred.reshape(expected.shape), expected, rtol=1e-5 if dtype == np.float32 else 1e-12
    )
    back = model.to_torch()
    assert isinstance(back, torch.nn.Linear)
    assert back.weight.dtype == tdtype
    assert torch.equal(back.weight, layer.weight)
    if bias:
        assert torch.equal(back.bias, layer.bias)
    else:
        assert back.bias is None


@needs_torch
def test_to_torch_after_fit_and_keeps_global_rng():
    import torch

    X, y, _, _ = problem(dtype=np.float32)
    model = LinearRegressor(batch_size=10).fit(X, y)
    state = torch.random.get_rng_state()
    layer = model.to_torch()
    assert torch.equal(torch.random.get_rng_state(), state)
    np.testing.assert_array_equal(layer.weight.detach().numpy()[0], model.coef_)
    np.testing.assert_array_equal(layer.bias.detach().numpy()[0], model.intercept_)


@needs_torch
def test_from_torch_with_optimizer_continues_torch_training(dtype):
    """Two epochs in torch, then one in linsgd (from_torch + partial_fit) == three in torch."""
    import torch

    X, y, W0, b0 = problem(M=90, dtype=dtype)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    kw = dict(lr=0.01, momentum=0.9, dampening=0.1, weight_decay=0.02)

    def run_torch(epochs):
        layer = torch.nn.Linear(4, 1, dtype=tdtype)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(W0))
            layer.bias.copy_(torch.from_numpy(b0))
        opt = torch.optim.SGD(layer.parameters(), **kw)
        xt, yt = torch.from_numpy(X), torch.from_numpy(y).unsqueeze(-1)
        for _ in range(epochs):
            for s in range(0, 90, 30):
                loss = torch.nn.functional.mse_loss(layer(xt[s : s + 30]), yt[s : s + 30])
                opt.zero_grad()
                loss.backward()
                opt.step()
        return layer, opt

    layer2, opt2 = run_torch(2)
    model = LinearRegressor.from_torch(layer2, opt2, batch_size=30)
    assert model.get_params()["momentum"] == 0.9 and model.lr == 0.01 and model.dampening == 0.1
    assert model.weight_decay == 0.02 and model.batch_size == 30
    model.partial_fit(X, y)
    layer3, _ = run_torch(3)
    assert eps_distance(model.coef_, layer3.weight.detach().numpy()[0]) <= TORCH_BOUND_EPS
    assert (
        eps_distance(np.atleast_1d(model.intercept_), layer3.bias.detach().numpy())
        <= TORCH_BOUND_EPS
    )


@needs_torch
def test_from_torch_reads_bias_group_without_decay():
    import torch

    layer = torch.nn.Linear(3, 1, dtype=torch.float64)
    opt = torch.optim.SGD([{"params": [layer.weight], "weight_decay": 0.1},
                           {"params": [layer.bias], "weight_decay": 0.0}], lr=0.05)  # fmt: skip
    model = LinearRegressor.from_torch(layer, opt)
    assert model.weight_decay == 0.1 and model.decay_bias is False and model.lr == 0.05
    with pytest.raises(TypeError, match=r"optimizer must be a torch\.optim\.SGD"):
        LinearRegressor.from_torch(layer, torch.optim.Adam(layer.parameters()))
    with pytest.raises(TypeError, match=r"linear must be a torch\.nn\.Linear"):
        LinearRegressor.from_torch(torch.nn.ReLU())


@needs_torch
def test_fit_accepts_torch_tensors():
    import torch

    X, y, _, _ = problem(dtype=np.float32)
    model = LinearRegressor(batch_size=10).fit(torch.from_numpy(X), torch.from_numpy(y))
    ref = LinearRegressor(batch_size=10).fit(X, y)
    assert model.coef_.dtype == np.float32
    np.testing.assert_array_equal(model.coef_, ref.coef_)
