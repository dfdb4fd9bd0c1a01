"""scikit-learn habits of LinearRegressor: early_stopping with an internal validation split,
ConvergenceWarning, warm_start (issue 14, points 1, 2 and 4)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, ShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from linsgd import LinearRegressor
from linsgd.schedules import StepLR


def _data(M=300, N=4, seed=0, scale=None):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((M, N))
    y = X @ rng.standard_normal(N) + 0.5 + 0.1 * rng.standard_normal(M)
    if scale is not None:
        X = X * scale
    return X, y


def _no_warnings():
    """A context in which any warning fails the test."""
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("error")
    return ctx


def _split_mask(M, fraction, seed):
    _, idx = next(ShuffleSplit(n_splits=1, test_size=fraction, random_state=seed).split(
        np.zeros((M, 1))))  # fmt: skip
    mask = np.zeros(M, dtype=bool)
    mask[idx] = True
    return mask


# --------------------------------------------------------------------------- early_stopping


def test_early_stopping_in_a_pipeline_on_badly_scaled_data_scores_like_without():
    scale = np.array([1.0, 100.0, 1e-2, 1e4])
    X, y = _data(1000, 4, seed=1, scale=scale)
    X, y, Xt, yt = X[:600], y[:600], X[600:], y[600:]
    kw = dict(lr=0.01, batch_size=16, epochs=200, random_state=0)
    plain = make_pipeline(StandardScaler(), LinearRegressor(**kw)).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # it stops: no ConvergenceWarning
        es = make_pipeline(StandardScaler(), LinearRegressor(early_stopping=True, **kw)).fit(X, y)
    reg = es[-1]
    assert reg.n_iter_ < 200  # it stopped early
    assert len(reg.history_["valid_loss"]) == reg.n_iter_
    r2_plain, r2_es = plain.score(Xt, yt), es.score(Xt, yt)
    assert r2_plain > 0.95
    assert r2_es > r2_plain - 0.01, (r2_es, r2_plain)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # not the point
def test_early_stopping_is_a_fit_on_sgdregressors_split_with_that_eval_set():
    X, y = _data(200)
    for fraction, seed in ((0.1, 0), (0.25, 7)):
        mask = _split_mask(len(y), fraction, seed)
        kw = dict(lr=0.02, batch_size=16, epochs=60, n_iter_no_change=3, random_state=seed)
        es = LinearRegressor(early_stopping=True, validation_fraction=fraction, **kw)
        es.fit(X, y)
        ref = LinearRegressor(tol=0.0, **kw).fit(X[~mask], y[~mask], eval_set=(X[mask], y[mask]))
        np.testing.assert_array_equal(es.coef_, ref.coef_)
        assert es.intercept_ == ref.intercept_
        assert es.history_ == ref.history_
        assert es.best_epoch_ == ref.best_epoch_ and es.n_iter_ == ref.n_iter_


def test_early_stopping_split_matches_sgdregressor():
    from sklearn.linear_model import SGDRegressor

    sgd = SGDRegressor(early_stopping=True, validation_fraction=0.2, random_state=3)
    if not hasattr(sgd, "_make_validation_split"):  # pragma: no cover - private, may move
        pytest.skip("this scikit-learn has no SGDRegressor._make_validation_split")
    y = np.arange(57.0)
    try:
        theirs = sgd._make_validation_split(y, sample_mask=np.ones(57, dtype=bool))
    except TypeError:  # pragma: no cover - older signature
        theirs = sgd._make_validation_split(y)
    np.testing.assert_array_equal(theirs, _split_mask(57, 0.2, 3))


def test_early_stopping_restores_the_best_epoch():
    X, y = _data(200, seed=2)
    mask = _split_mask(200, 0.1, 0)
    # a rate that overshoots late: the validation loss rises again after its minimum
    lr = StepLR(0.02, step_size=8, gamma=12.0)
    model = LinearRegressor(lr=lr, batch_size=200, epochs=20, n_iter_no_change=4,
                            early_stopping=True, random_state=0).fit(X, y)  # fmt: skip
    valid = model.history_["valid_loss"]
    assert model.best_epoch_ == int(np.argmin(valid)) < model.n_iter_ - 1
    mse = float(np.mean((model.predict(X[mask]) - y[mask]) ** 2))
    assert mse == pytest.approx(min(valid), rel=1e-12)
    assert mse < valid[-1]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # not the point
def test_early_stopping_seeded_by_random_state():
    X, y = _data(150)
    fits = [
        LinearRegressor(lr=0.02, epochs=30, early_stopping=True, random_state=rs).fit(X, y)
        for rs in (4, 4, 5)
    ]
    np.testing.assert_array_equal(fits[0].coef_, fits[1].coef_)
    assert fits[0].history_ == fits[1].history_
    assert fits[0].history_["valid_loss"] != fits[2].history_["valid_loss"]


def test_early_stopping_in_grid_search():
    X, y = _data(240, seed=3, scale=np.array([1.0, 50.0, 0.1, 10.0]))
    pipe = make_pipeline(StandardScaler(), LinearRegressor(lr=0.02, epochs=100, random_state=0))
    grid = GridSearchCV(
        pipe,
        {"linearregressor__early_stopping": [False, True],
         "linearregressor__validation_fraction": [0.1, 0.2]},
        cv=3,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X, y)
    assert grid.best_score_ > 0.95
    assert set(grid.cv_results_["param_linearregressor__early_stopping"]) == {False, True}


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"validation_fraction": 0.0}, "validation_fraction"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"validation_fraction": "a"}, "validation_fraction"),
        ({"early_stopping": "yes"}, "early_stopping"),
        ({"warm_start": 2}, "warm_start"),
    ],
)
def test_bad_new_parameters_name_themselves(kw, match):
    X, y = _data(50)
    model = LinearRegressor(lr=0.01, epochs=2).fit(X, y)
    before = model.coef_.copy()
    with pytest.raises((ValueError, TypeError), match=match):
        model.set_params(early_stopping=True, **kw).fit(X * 2, y)
    np.testing.assert_array_equal(model.coef_, before)


def test_early_stopping_refuses_eval_set_and_too_few_rows():
    X, y = _data(50)
    model = LinearRegressor(early_stopping=True, epochs=3)
    with pytest.raises(ValueError, match="eval_set"):
        model.fit(X, y, eval_set=(X, y))
    with pytest.raises(ValueError, match=r"validation_fraction=0\.1 led to an empty set"):
        model.fit(X[:1], y[:1])
    assert not hasattr(model, "coef_")
    # the closed form has no epochs: early_stopping does not split for it
    cf = LinearRegressor(solver="closed_form", early_stopping=True).fit(X, y)
    ref = LinearRegressor(solver="closed_form").fit(X, y)
    np.testing.assert_array_equal(cf.coef_, ref.coef_)


# --------------------------------------------------------------------------- ConvergenceWarning


def test_convergence_warning_when_epochs_run_out():
    X, y = _data(100)
    with pytest.warns(ConvergenceWarning, match=r"Maximum number of epochs \(3\)"):
        LinearRegressor(lr=0.01, epochs=3, tol=1e-12).fit(X, y)
    with pytest.warns(ConvergenceWarning):
        LinearRegressor(lr=0.01, epochs=3, early_stopping=True, random_state=0).fit(X, y)


def test_no_convergence_warning_when_the_rule_is_met_or_absent():
    X, y = _data(100)
    bounded = LinearRegressor(lr=0.05, batch_size=10, epochs=500, tol=1e-4, n_iter_no_change=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = bounded.fit(X, y)
        k = first.n_iter_
        assert k < 500
        # met at the very last epoch allowed: no warning
        exact = LinearRegressor(lr=0.05, batch_size=10, epochs=k, tol=1e-4,
                                n_iter_no_change=3).fit(X, y)  # fmt: skip
        assert exact.n_iter_ == k
        LinearRegressor(lr=0.01, epochs=3).fit(X, y)  # no tol: no rule, no warning
        LinearRegressor(lr=0.01, epochs=5, tol=1e-12, target_loss=1e9).fit(X, y)  # target met
        m = LinearRegressor(lr=0.01, epochs=2, tol=1e-12)
        for _ in range(3):
            m.partial_fit(X, y)  # partial_fit has no stopping rule
    with pytest.warns(ConvergenceWarning):  # one epoch fewer: not met
        LinearRegressor(lr=0.05, batch_size=10, epochs=k - 1, tol=1e-4,
                        n_iter_no_change=3).fit(X, y)  # fmt: skip


def test_convergence_warning_can_be_silenced_as_documented():
    X, y = _data(60)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LinearRegressor(lr=0.01, epochs=2, tol=1e-12).fit(X, y)
    assert caught == []
    assert model.n_iter_ == 2  # the fit itself is complete


# --------------------------------------------------------------------------- warm_start

WARM_CASES = {
    "plain": dict(lr=0.01, batch_size=16),
    "momentum": dict(lr=0.01, batch_size=16, momentum=0.9, dampening=0.1),
    "nesterov+wd": dict(lr=0.01, batch_size=7, momentum=0.8, nesterov=True, weight_decay=0.1),
    "shuffle": dict(lr=0.01, batch_size=16, shuffle=True, random_state=3, momentum=0.5),
    "auto+l2": dict(batch_size=32, l2=0.01, drop_last=True),
    "torch init": dict(lr=0.01, batch_size=16, init="torch", random_state=1),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", list(WARM_CASES))
def test_warm_start_fit_equals_fit_then_partial_fit(case, dtype):
    X, y = _data(101)
    X, y = X.astype(dtype), y.astype(dtype)
    kw = WARM_CASES[case]
    inc = LinearRegressor(epochs=3, **kw).fit(X, y)
    for _ in range(4):
        inc.partial_fit(X, y)
    warm = LinearRegressor(epochs=3, warm_start=True, **kw).fit(X, y)
    warm.set_params(epochs=4).fit(X, y)
    assert warm.coef_.dtype == dtype
    np.testing.assert_array_equal(warm.coef_, inc.coef_)
    assert warm.intercept_ == inc.intercept_
    assert warm.history_["train_loss"] == inc.history_["train_loss"][3:]
    # a warm fit is a new fit: its own epochs and steps (SGDRegressor resets n_iter_ and t_)
    assert warm.n_iter_ == 4 and inc.n_iter_ == 7
    assert warm.t_ * 7 == inc.t_ * 4
    # and the optimizer state continues: one more epoch each stays equal
    warm.partial_fit(X, y)
    inc.partial_fit(X, y)
    np.testing.assert_array_equal(warm.coef_, inc.coef_)
    assert warm.n_iter_ == 5


def test_warm_start_off_or_unfitted_is_a_fresh_fit():
    X, y = _data(80)
    ref = LinearRegressor(lr=0.01, epochs=4, momentum=0.9).fit(X, y)
    cold = LinearRegressor(lr=0.01, epochs=4, momentum=0.9).fit(X, y).fit(X, y)
    np.testing.assert_array_equal(cold.coef_, ref.coef_)
    first = LinearRegressor(lr=0.01, epochs=4, momentum=0.9, warm_start=True).fit(X, y)
    np.testing.assert_array_equal(first.coef_, ref.coef_)
    second = first.fit(X, y)
    assert not np.array_equal(second.coef_, ref.coef_)  # it went on from there
    # coef_init given: a fresh run from it, as without warm_start
    W0 = np.full(4, 0.3)
    a = LinearRegressor(lr=0.01, epochs=2, warm_start=True).fit(X, y).fit(X, y, coef_init=W0)
    b = LinearRegressor(lr=0.01, epochs=2).fit(X, y, coef_init=W0)
    np.testing.assert_array_equal(a.coef_, b.coef_)


def test_warm_start_restarts_a_schedule_and_keeps_stopping_rules():
    X, y = _data(90)
    sched = StepLR(0.05, step_size=2, gamma=0.5)
    model = LinearRegressor(lr=sched, batch_size=30, epochs=3, warm_start=True).fit(X, y)
    model.fit(X, y)
    assert model.lr_history_ == sched.lrs(3)
    model.set_params(tol=1e12, n_iter_no_change=2, epochs=50).fit(X, y)
    assert model.n_iter_ == 3  # the stopping rule applies to the warm fit's epochs


def test_warm_start_refuses_other_shapes_and_keeps_the_model():
    X, y = _data(60)
    model = LinearRegressor(lr=0.01, epochs=2, warm_start=True).fit(X, y)
    before = model.coef_.copy()
    with pytest.raises(ValueError, match="features"):
        model.fit(X[:, :3], y)
    with pytest.raises(ValueError, match="outputs"):
        model.fit(X, np.c_[y, y])
    with pytest.raises(ValueError, match="fit_intercept"):
        model.set_params(fit_intercept=False).fit(X, y)
    np.testing.assert_array_equal(model.coef_, before)
    assert model.n_iter_ == 2


def test_convergence_warning_points_at_the_callers_line():
    X, y = _data(200, 4, seed=3)
    with pytest.warns(ConvergenceWarning) as record:
        LinearRegressor(lr=0.01, batch_size=16, epochs=2, tol=0.0, early_stopping=True).fit(X, y)
    assert record[0].filename == __file__
