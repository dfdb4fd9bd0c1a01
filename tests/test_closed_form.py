"""Tests of linsgd.closed_form and solver="closed_form": the optimum that SGD converges to."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import linsgd
from linsgd import LinearRegressor, RankDeficientWarning, closed_form


def _data(M=64, N=3, U=1, seed=0, y_1d=True):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((M, N))
    W = rng.standard_normal((U, N))
    Y = X @ W.T + 0.7 + 0.1 * rng.standard_normal((M, U))
    return X, (Y[:, 0] if (U == 1 and y_1d) else Y)


def _stationarity(X, Y, W, b, wd, decay_bias, l2, sw=None):
    """Gradient of the objective (torch's MSE-mean + coupled decay + Keras L2) at (W, b)."""
    Y = Y.reshape(len(Y), -1)
    W = np.atleast_2d(W)
    U = Y.shape[1]
    w = np.ones(len(X)) if sw is None else sw
    E = X @ W.T + b - Y
    gW = 2.0 / (U * w.sum()) * (w[:, None] * E).T @ X + (wd + 2 * l2) * W
    gb = 2.0 / (U * w.sum()) * (w[:, None] * E).sum(0) + (wd * np.asarray(b) if decay_bias else 0.0)
    return np.concatenate([gW.ravel(), np.ravel(gb)])


# ----------------------------------------------------------------------------- the objective


@pytest.mark.parametrize("U", [1, 3])
@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"weight_decay": 0.3},
        {"weight_decay": 0.3, "decay_bias": False},
        {"l2": 0.2},
        {"weight_decay": 0.1, "l2": 0.05, "decay_bias": False},
    ],
)
def test_closed_form_is_the_stationary_point_of_torch_coupled_decay(U, kw):
    X, Y = _data(U=U, y_1d=False)
    coef, intercept = closed_form(X, Y, **kw)
    assert coef.shape == (U, 3) and intercept.shape == (U,)
    g = _stationarity(X, Y, coef, intercept, kw.get("weight_decay", 0.0),
                      kw.get("decay_bias", True), kw.get("l2", 0.0))  # fmt: skip
    assert np.abs(g).max() < 1e-12


def test_closed_form_equals_sklearn_ridge_with_converted_alpha():
    from sklearn.linear_model import Ridge

    from linsgd.conventions import convert

    for U in (1, 2):
        X, Y = _data(M=80, U=U)
        M = len(X)
        wd = 0.4
        # bias not decayed: Ridge(alpha = M * U * wd / 2)
        alpha = convert(wd, "torch", "ridge", n_samples=M, n_outputs=U)
        assert alpha == M * U * wd / 2
        coef, intercept = closed_form(X, Y, weight_decay=wd, decay_bias=False)
        ridge = Ridge(alpha=alpha).fit(X, Y)
        np.testing.assert_allclose(coef, ridge.coef_, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(intercept, ridge.intercept_, rtol=1e-12, atol=1e-14)
        # bias decayed too (torch's default): Ridge on [X, 1] without its own intercept
        coef, intercept = closed_form(X, Y, weight_decay=wd)
        Xa = np.hstack([X, np.ones((M, 1))])
        ridge = Ridge(alpha=alpha, fit_intercept=False).fit(Xa, Y)
        both = np.hstack([np.atleast_2d(coef), np.reshape(intercept, (-1, 1))])
        np.testing.assert_allclose(both, np.atleast_2d(ridge.coef_), rtol=1e-12, atol=1e-14)
        # no bias at all
        coef, intercept = closed_form(X, Y, l2=0.1, fit_intercept=False)
        ridge = Ridge(alpha=convert(0.1, "keras", "ridge", n_samples=M, n_outputs=U),
                      fit_intercept=False).fit(X, Y)  # fmt: skip
        np.testing.assert_allclose(coef, ridge.coef_, rtol=1e-12, atol=1e-14)
        assert np.all(intercept == 0)


def test_closed_form_sample_weight_equals_ridge_and_repetition():
    from sklearn.linear_model import Ridge

    X, y = _data(M=30)
    sw = np.random.default_rng(3).integers(0, 4, size=30).astype(float)
    S = sw.sum()
    l2 = 0.05
    coef, intercept = closed_form(X, y, l2=l2, sample_weight=sw)
    ridge = Ridge(alpha=S * l2).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(coef, ridge.coef_, rtol=1e-11)
    assert intercept == pytest.approx(ridge.intercept_, rel=1e-11)
    # integer weights == repeating the rows
    rep = np.repeat(np.arange(30), sw.astype(int))
    coef_r, intercept_r = closed_form(X[rep], y[rep], l2=l2)
    np.testing.assert_allclose(coef, coef_r, rtol=1e-11)
    assert intercept == pytest.approx(intercept_r, rel=1e-11)
    # scaling every weight changes nothing
    coef_s, _ = closed_form(X, y, l2=l2, sample_weight=sw * 7.5)
    np.testing.assert_allclose(coef, coef_s, rtol=1e-11)


@pytest.mark.parametrize(
    ("kw", "U"),
    [
        ({"weight_decay": 0.2}, 1),
        ({"weight_decay": 0.1, "decay_bias": False, "l2": 0.05}, 2),
        ({}, 2),
        ({"l2": 0.1, "fit_intercept": False}, 1),
    ],
)
def test_full_batch_sgd_converges_to_closed_form(kw, U):
    """Full-batch GD in float64, run long enough, reaches the closed form to 1e-10 (relative)."""
    X, Y = _data(M=64, N=3, U=U)
    cf = LinearRegressor(solver="closed_form", **kw).fit(X, Y)
    # a well-conditioned problem (X ~ N(0, 1)): lr 0.2 contracts every direction by < 0.8
    sgd = LinearRegressor(lr=0.2, batch_size=64, epochs=300, **kw).fit(X, Y)
    scale = max(np.abs(cf.coef_).max(), np.abs(cf.intercept_).max())
    assert np.abs(sgd.coef_ - cf.coef_).max() <= 1e-10 * scale
    assert np.abs(np.asarray(sgd.intercept_) - cf.intercept_).max() <= 1e-10 * scale


def test_weighted_full_batch_sgd_converges_to_weighted_closed_form():
    X, y = _data(M=40)
    sw = np.random.default_rng(5).uniform(0.2, 3.0, size=40)
    kw = {"weight_decay": 0.05}
    cf = LinearRegressor(solver="closed_form", **kw).fit(X, y, sample_weight=sw)
    sgd = LinearRegressor(lr=0.2, batch_size=40, epochs=300, **kw).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(sgd.coef_, cf.coef_, rtol=1e-10, atol=1e-12)
    assert sgd.intercept_ == pytest.approx(cf.intercept_, rel=1e-10, abs=1e-12)


# ----------------------------------------------------------------------------- singular systems


def test_singular_system_gives_min_norm_solution_and_warning():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((20, 2))
    X = np.hstack([base, base[:, :1]])  # column 2 duplicates column 0
    y = base @ [1.0, -1.0] + 0.5
    with pytest.warns(RankDeficientWarning, match=r"rank 3 < 4") as rec:
        coef, intercept = closed_form(X, y)
    assert rec[0].message.rank == 3 and rec[0].message.n_params == 4
    A = np.hstack([X, np.ones((20, 1))])
    expected = np.linalg.pinv(A) @ y  # the minimum-norm least-squares solution
    np.testing.assert_allclose(np.append(coef, intercept), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(coef[[0, 2]], [0.5, 0.5], rtol=1e-10)  # split evenly
    # a penalty on every parameter makes the system regular: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        closed_form(X, y, weight_decay=1e-3)


def test_more_features_than_samples_and_constant_column():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3, 6))
    y = rng.standard_normal(3)
    with pytest.warns(RankDeficientWarning, match=r"rank 3 < 7"):
        coef, intercept = closed_form(X, y)
    np.testing.assert_allclose(X @ coef + intercept, y, atol=1e-12)  # interpolates
    Xc = np.hstack([rng.standard_normal((10, 1)), np.ones((10, 1))])  # constant = the bias
    with pytest.warns(RankDeficientWarning, match=r"rank 2 < 3"):
        closed_form(Xc, rng.standard_normal(10))


def test_estimator_closed_form_warns_and_keeps_model_shapes():
    X = np.array([[5.0, 5.0], [5.0, 5.0]])
    with pytest.warns(RankDeficientWarning):
        model = LinearRegressor(solver="closed_form", fit_intercept=False).fit(X, [15.0, 15.0])
    np.testing.assert_allclose(model.coef_, [1.5, 1.5], rtol=1e-12)
    assert model.n_iter_ == 0 and model.t_ == 0 and model.history_ == {"train_loss": []}


def test_closed_form_dtype_and_shapes_in_estimator():
    X, Y = _data(U=2, y_1d=False)
    f32 = LinearRegressor(solver="closed_form", dtype="float32").fit(X, Y)
    # the data are cast to float32 first, the solve runs in float64, the result is rounded
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    f64 = LinearRegressor(solver="closed_form").fit(X32.astype(float), Y32.astype(float))
    assert f32.coef_.dtype == np.float32 and f32.intercept_.dtype == np.float32
    np.testing.assert_array_equal(f32.coef_, f64.coef_.astype(np.float32))
    coef, intercept = closed_form(X, Y[:, 0])
    assert coef.shape == (3,) and np.ndim(intercept) == 0
    assert isinstance(linsgd.closed_form(X, Y)[0], np.ndarray)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"weight_decay": -1.0}, ValueError, "weight_decay"),
        ({"l2": float("nan")}, ValueError, "l2"),
        ({"l2": "x"}, TypeError, "l2"),
        ({"decay_bias": 1}, TypeError, "decay_bias"),
        ({"fit_intercept": None}, TypeError, "fit_intercept"),
        ({"sample_weight": np.ones(3)}, ValueError, "sample_weight"),
        ({"sample_weight": -np.ones(10)}, ValueError, "sample_weight"),
        ({"sample_weight": np.zeros(10)}, ValueError, "non-zero weight"),
    ],
)
def test_closed_form_errors_name_the_argument(kwargs, exc, match):
    X, y = _data(M=10)
    with pytest.raises(exc, match=match):
        closed_form(X, y, **kwargs)


def test_closed_form_data_errors():
    X, y = _data(M=10)
    with pytest.raises(ValueError, match="X must be a non-empty 2-D"):
        closed_form(X[:, 0], y)
    with pytest.raises(ValueError, match="y must have shape"):
        closed_form(X, y[:5])
    with pytest.raises(ValueError, match="X contains NaN"):
        closed_form(np.full((10, 3), np.nan), y)
    with pytest.raises(TypeError, match="y must hold real numbers"):
        closed_form(X, np.array(["a"] * 10))
