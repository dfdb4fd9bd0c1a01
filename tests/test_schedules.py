"""Tests of linsgd.schedules: per-epoch learning rates bit-equal to torch's schedulers."""

from __future__ import annotations

import functools
import math
import pickle

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from helpers import needs_torch
from linsgd import LinearRegressor
from linsgd.schedules import CosineAnnealingLR, ExponentialLR, LambdaLR, StepLR
from reference import eps_distance, make_problem


def _inv_sqrt(epoch: int) -> float:
    return 1.0 / math.sqrt(1.0 + epoch)


def _cases():
    """(linsgd schedule, factory of the torch scheduler for an optimizer)."""
    return {
        "step": (StepLR(0.05, step_size=3, gamma=0.7),
                 lambda L, o: L.StepLR(o, step_size=3, gamma=0.7)),
        "exponential": (ExponentialLR(0.05, gamma=0.93),
                        lambda L, o: L.ExponentialLR(o, gamma=0.93)),
        "cosine": (CosineAnnealingLR(0.05, T_max=7, eta_min=0.001),
                   lambda L, o: L.CosineAnnealingLR(o, T_max=7, eta_min=0.001)),
        "cosine_restart": (CosineAnnealingLR(0.05, T_max=3),
                           lambda L, o: L.CosineAnnealingLR(o, T_max=3)),
        "lambda": (LambdaLR(0.05, _inv_sqrt), lambda L, o: L.LambdaLR(o, _inv_sqrt)),
    }  # fmt: skip


CASES = _cases()


def test_schedule_values_without_torch():
    assert StepLR(1.0, 2, 0.5).lrs(6) == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert ExponentialLR(1.0, 0.5).lrs(3) == [1.0, 0.5, 0.25]
    cos = CosineAnnealingLR(1.0, T_max=4).lrs(9)
    assert cos[0] == 1.0 and cos[4] == pytest.approx(0.0, abs=1e-15)
    assert cos[8] == pytest.approx(1.0)  # the cosine comes back up after T_max (restart)
    assert LambdaLR(2.0, lambda e: e + 1).lrs(3) == [2.0, 4.0, 6.0]
    sched = ExponentialLR(0.1, 0.9)
    assert sched(4) == sched.lrs(5)[4]
    # the recursive products are not the closed form bit for bit (hence the replication)
    rec = ExponentialLR(0.1, 0.93).lrs(40)
    assert any(rec[k] != 0.1 * 0.93**k for k in range(40))


@needs_torch
@pytest.mark.parametrize("name", list(CASES))
def test_learning_rates_are_bit_equal_to_torch(name):
    import torch

    ours, make = CASES[name]
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=ours.lr)
    sched = make(torch.optim.lr_scheduler, opt)
    expected = []
    for _ in range(60):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert ours.lrs(60) == expected  # Python floats, compared exactly


@needs_torch
@pytest.mark.parametrize("name", list(CASES))
def test_fit_with_schedule_agrees_with_torch_loop(name, dtype):
    """A whole fit: torch's loop calling scheduler.step() after each epoch."""
    import torch

    ours, make = CASES[name]
    epochs, bs = 12, 20
    X, y, W0, b0 = make_problem(60, 4, 1, dtype, 3, y_1d=True)
    model = LinearRegressor(lr=ours, batch_size=bs, epochs=epochs, momentum=0.5)
    model.fit(X, y, coef_init=W0[0], intercept_init=b0)

    tdt = torch.float64 if dtype == np.float64 else torch.float32
    layer = torch.nn.Linear(4, 1, dtype=tdt)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W0))
        layer.bias.copy_(torch.from_numpy(b0))
    opt = torch.optim.SGD(layer.parameters(), lr=ours.lr, momentum=0.5)
    sched = make(torch.optim.lr_scheduler, opt)
    xt, yt = torch.from_numpy(X), torch.from_numpy(y).unsqueeze(-1)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        for s in range(0, 60, bs):
            loss = torch.nn.functional.mse_loss(layer(xt[s : s + bs]), yt[s : s + bs])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    assert model.lr_history_ == lrs
    assert eps_distance(model.coef_, layer.weight.detach().numpy()[0]) <= 2
    assert eps_distance(np.atleast_1d(model.intercept_), layer.bias.detach().numpy()) <= 2


def test_schedule_continues_across_partial_fit_and_early_stopping_chunks():
    X, y, _, _ = make_problem(50, 3, 1, np.float64, 0, y_1d=True)
    sched = StepLR(0.05, step_size=2, gamma=0.5)
    full = LinearRegressor(lr=sched, batch_size=10, epochs=6).fit(X, y)
    inc = LinearRegressor(lr=sched, batch_size=10)
    for _ in range(6):
        inc.partial_fit(X, y)
    np.testing.assert_array_equal(inc.coef_, full.coef_)
    assert inc.lr_history_ == full.lr_history_ == sched.lrs(6)
    # the per-epoch path (tol set) uses the same rates
    es = LinearRegressor(lr=sched, batch_size=10, epochs=6, tol=0.0, n_iter_no_change=100)
    with pytest.warns(ConvergenceWarning):  # n_iter_no_change=100 cannot be met in 6 epochs
        es.fit(X, y)
    np.testing.assert_array_equal(es.coef_, full.coef_)


def test_plain_callable_is_epoch_to_lr():
    X, y, _, _ = make_problem(40, 3, 1, np.float64, 1, y_1d=True)
    fn = functools.partial(lambda e, base: base / (1 + e), base=0.04)
    a = LinearRegressor(lr=fn, batch_size=8, epochs=4).fit(X, y)
    b = LinearRegressor(lr=LambdaLR(0.04, lambda e: 1 / (1 + e)), batch_size=8, epochs=4).fit(X, y)
    assert a.lr_history_ == [0.04, 0.02, 0.04 / 3, 0.01]
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-14)


def test_schedules_pickle_clone_and_repr():
    from sklearn.base import clone

    sched = CosineAnnealingLR(0.1, T_max=5, eta_min=0.01)
    assert pickle.loads(pickle.dumps(sched)) == sched
    assert "CosineAnnealingLR(lr=0.1, T_max=5, eta_min=0.01)" == repr(sched)
    model = LinearRegressor(lr=sched)
    assert clone(model).get_params()["lr"] == sched
    assert hash(sched) == hash(CosineAnnealingLR(0.1, T_max=5, eta_min=0.01))


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        (lambda: StepLR(0.1, step_size=0), ValueError, "step_size"),
        (lambda: StepLR(0.1, step_size=2.5), TypeError, "step_size"),
        (lambda: ExponentialLR(-0.1, 0.9), ValueError, "lr"),
        (lambda: ExponentialLR(0.1, float("inf")), ValueError, "gamma"),
        (lambda: CosineAnnealingLR(0.1, T_max=0), ValueError, "T_max"),
        (lambda: LambdaLR(0.1, 3.0), TypeError, "lr_lambda"),
    ],
)
def test_schedule_errors_name_the_argument(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_bad_lr_values_from_schedules_or_callables():
    X, y, _, _ = make_problem(20, 2, 1, np.float64, 0, y_1d=True)
    with pytest.raises(ValueError, match=r"lr for epoch 1 must be a finite number >= 0"):
        LinearRegressor(lr=lambda e: 0.01 - e, batch_size=5, epochs=3).fit(X, y)
    with pytest.raises(ValueError, match=r"lr for epoch 0"):
        LinearRegressor(lr=LambdaLR(0.1, lambda e: float("nan")), epochs=2).fit(X, y)
    with pytest.raises(ValueError, match=r"lr must be a number >= 0, 'auto'"):
        LinearRegressor(lr="fast").fit(X, y)
    with pytest.raises(TypeError, match=r"lr must be a number"):
        LinearRegressor(lr=[0.1, 0.2]).fit(X, y)
