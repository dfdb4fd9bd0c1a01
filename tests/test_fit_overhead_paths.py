"""What keeps a small fit cheap (the history sums, the recent-params cache, whole runs in one
kernel call) gives the results of the long way, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from linsgd import LinearRegressor, kernels
from linsgd._params import _RECENT, validated_params


@pytest.mark.parametrize(
    "shape", [(1, 1), (16, 4), (3, 500), (2000, 1), (64, 64), (7, 333), (33, 1), (5, 17), (1, 0)]
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_epoch_means_are_pythons_means(shape, dtype):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    losses = (rng.random(shape) * 10.0 ** rng.integers(-8, 8, size=shape)).astype(dtype)
    if losses.size:
        losses.flat[0] = -0.0  # sum() starts from the int 0: +0.0 + -0.0 is +0.0
        losses.flat[-1] = np.inf

    def python_mean(row):  # the seed notebooks' sum(l) / len(l), over the steps that ran
        ran = [v for v in row if v == v]
        return sum(ran) / len(ran) if ran else float("nan")

    expected = [python_mean(row) for row in losses.tolist()]
    got = kernels.epoch_means(losses)
    assert [np.float64(v).tobytes() for v in got] == [np.float64(v).tobytes() for v in expected]
    if losses.size:
        losses[0, : max(1, shape[1] // 2)] = np.nan  # steps that did not run
        losses[-1, :] = np.nan  # an epoch none of whose steps ran
        expected = [python_mean(row) for row in losses.tolist()]
        got = kernels.epoch_means(losses)
        assert [np.float64(v).tobytes() for v in got] == [np.float64(v).tobytes() for v in expected]


def test_epoch_means_refuses_what_is_not_a_table_of_losses():
    with pytest.raises(ValueError, match="losses must be a 2-D array"):
        kernels.epoch_means(np.zeros(3))
    # any layout or dtype is converted once (a transposed view, float32, a list)
    table = np.arange(6.0).reshape(2, 3)
    assert kernels.epoch_means(table.T) == [1.5, 2.5, 3.5]
    assert kernels.epoch_means(table.astype(np.float32)) == [1.0, 4.0]
    assert kernels.epoch_means([[1.0, 3.0]]) == [2.0]


def test_recent_params_are_reused_only_for_the_very_same_objects():
    X = np.random.default_rng(0).standard_normal((50, 3))
    y = X @ [1.0, 2.0, 3.0]
    lr = 0.0125
    a = LinearRegressor(lr=lr, batch_size=10, epochs=3).fit(X, y)
    b = LinearRegressor(lr=lr, batch_size=10, epochs=3)
    assert any(entry is validated_params(b)["checked"] for entry in _RECENT)  # reused
    np.testing.assert_array_equal(b.fit(X, y).coef_, a.coef_)
    # another value (equal ones included, if another object) is checked anew
    c = LinearRegressor(lr=float("0.025"), batch_size=10, epochs=3).fit(X, y)
    assert c.lr_history_ == [0.025] * 3
    assert not np.array_equal(c.coef_, a.coef_)
    # a bad value is never remembered: it fails every time
    for _ in range(2):
        with pytest.raises(ValueError, match="validation_fraction"):
            LinearRegressor(validation_fraction=1.5).fit(X, y)
    # set_params replaces the object: checked again
    with pytest.raises(ValueError, match="batch_size"):
        b.set_params(batch_size=0).fit(X, y)
    np.testing.assert_array_equal(b.coef_, a.coef_)  # the failed fit changed nothing


def test_a_run_in_one_call_equals_the_epoch_by_epoch_run(capsys):
    X = np.random.default_rng(1).standard_normal((101, 4))
    y = X @ [1.0, -1.0, 0.5, 2.0] + 0.2
    Xv, yv = X[:30] * 1.1, y[:30]
    kw = dict(lr=0.02, batch_size=16, epochs=7, momentum=0.9)
    one = LinearRegressor(**kw).fit(X, y, eval_set=(Xv, yv))
    # verbose=1 prints after every epoch, so its epochs run one kernel call each
    per_epoch = LinearRegressor(verbose=1, **kw).fit(X, y, eval_set=(Xv, yv))
    assert capsys.readouterr().out.count("epoch: ") == 7
    np.testing.assert_array_equal(one.coef_, per_epoch.coef_)
    assert one.intercept_ == per_epoch.intercept_
    assert one.history_ == per_epoch.history_
    assert one.lr_history_ == per_epoch.lr_history_ and one.t_ == per_epoch.t_
