"""What keeps a small fit cheap (the history sums, the recent-params cache, whole runs in one
kernel call) gives the results of the long way, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from linsgd import LinearRegressor
from linsgd._params import _RECENT, validated_params
from linsgd._trainer import _row_sums


@pytest.mark.parametrize("shape", [(1, 1), (16, 4), (3, 500), (2000, 1), (64, 64), (7, 333)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_row_sums_are_pythons_sums(shape, dtype):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    losses = (rng.random(shape) * 10.0 ** rng.integers(-8, 8, size=shape)).astype(dtype)
    assert _row_sums(losses) == [sum(row) for row in losses.tolist()]


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
