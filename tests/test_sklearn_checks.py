"""scikit-learn conformance of LinearRegressor, and the defaults that make it hold."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import SkipTestWarning
from sklearn.utils.estimator_checks import check_estimator

from linsgd import LinearRegressor
from linsgd.estimator import EXPECTED_FAILED_CHECKS, auto_lr


def test_check_estimator_passes():
    assert isinstance(EXPECTED_FAILED_CHECKS, dict)
    assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in
               EXPECTED_FAILED_CHECKS.items())  # fmt: skip
    with warnings.catch_warnings():
        # checks that need pandas or SCIPY_ARRAY_API are skipped with a SkipTestWarning
        warnings.simplefilter("ignore", SkipTestWarning)
        results = check_estimator(
            LinearRegressor(), expected_failed_checks=EXPECTED_FAILED_CHECKS, on_fail=None
        )
    failed = {r["check_name"]: r["exception"] for r in results if r["status"] == "failed"}
    assert not failed
    xfailed = {r["check_name"] for r in results if r["status"] == "xfail"}
    assert xfailed == set(EXPECTED_FAILED_CHECKS)
    assert sum(r["status"] == "passed" for r in results) >= 50


def test_default_lr_does_not_diverge_on_badly_scaled_data():
    """The data of check_fit_check_is_fitted: features N(100, 1) make lr=0.01 diverge."""
    from linsgd import DivergenceError

    rng = np.random.RandomState(42)
    X = rng.normal(loc=100, size=(100, 2))
    y = rng.normal(size=100)
    with pytest.raises(DivergenceError):
        LinearRegressor(lr=0.01).fit(X, y)
    model = LinearRegressor().fit(X, y)
    assert np.isfinite(model.coef_).all()
    assert model.lr_history_[0] == auto_lr(X, 1)
    assert max(model.history_["train_loss"]) < 2 * np.mean(y**2)  # bounded: no blow-up


def test_auto_lr_formula_and_stability():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3)) * [1.0, 10.0, 0.1]
    sq = (X**2).sum(1).max()
    assert auto_lr(X, 1) == pytest.approx(1.0 / (2.0 * (sq + 1.0)), rel=1e-14)
    assert auto_lr(X, 2, fit_intercept=False, weight_decay=0.1, l2=0.2) == pytest.approx(
        1.0 / (sq + 0.5), rel=1e-14
    )
    sw = np.ones(50)
    sw[np.argmax((X**2).sum(1))] = 0.0  # the largest row is out of the maximum
    assert auto_lr(X, 1, sample_weight=sw) > auto_lr(X, 1)
    # no batch size, momentum or data scale makes the default diverge
    y = X @ [1.0, -1.0, 2.0] + 3.0
    for kw in ({"batch_size": 1}, {"batch_size": 50}, {"momentum": 0.9}, {"nesterov": True,
               "momentum": 0.9}):  # fmt: skip
        model = LinearRegressor(epochs=5, **kw).fit(X * 1e3, y)
        assert np.isfinite(model.coef_).all()


def test_defaults_fit_sklearn_toy_problems_well():
    from sklearn.datasets import load_diabetes, make_regression
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import StandardScaler

    # check_regressors_train's data (it asks for R^2 > 0.5): as good as least squares
    X, y = make_regression(n_samples=200, n_features=10, n_informative=1, bias=5.0, noise=20,
                           random_state=42)  # fmt: skip
    X = StandardScaler().fit_transform(X)
    best = LinearRegression().fit(X, y).score(X, y)
    assert LinearRegressor().fit(X, y).score(X, y) > 0.99 * best
    X, Y = make_regression(n_samples=200, n_features=5, n_targets=3, noise=1, random_state=0)
    assert LinearRegressor().fit(X, Y).score(X, Y) > 0.99
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    assert LinearRegressor(epochs=100).fit(X, y).score(X, y) > 0.45
