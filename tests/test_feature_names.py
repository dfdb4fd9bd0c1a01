"""Feature names as scikit-learn validates them (issue 14, point 3)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from linsgd import LinearRegressor

pd = pytest.importorskip("pandas", reason="pandas is not installed (pip install 'linsgd[test]')")

NAMES = ["a", "b", "c", "d"]


def _frame(M=60, seed=0, columns=NAMES):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((M, len(columns)))
    y = X @ np.arange(1.0, len(columns) + 1) + 0.25
    return pd.DataFrame(X, columns=columns), y


def test_sklearns_own_column_names_check_passes():
    from sklearn.utils.estimator_checks import check_dataframe_column_names_consistency

    check_dataframe_column_names_consistency("LinearRegressor", LinearRegressor())


def test_names_are_kept_and_checked_as_sklearn_does():
    df, y = _frame()
    model = LinearRegressor(lr=0.05, epochs=3).fit(df, y)
    assert model.feature_names_in_.dtype == object
    assert list(model.feature_names_in_) == NAMES
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = model.predict(df)
    with pytest.warns(UserWarning, match=re.escape(
        "X does not have valid feature names, but LinearRegressor was fitted with feature names"
    )):  # fmt: skip
        got = model.predict(df.to_numpy())
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="Feature names must be in the same order"):
        model.predict(df[NAMES[::-1]])
    other = df.rename(columns={"a": "z"})
    with pytest.raises(ValueError, match="Feature names unseen at fit time:\n- z\n"):
        model.score(other, y)


def test_a_frame_after_a_numpy_fit_warns():
    df, y = _frame()
    model = LinearRegressor(lr=0.05, epochs=2).fit(df.to_numpy(), y)
    assert not hasattr(model, "feature_names_in_")
    with pytest.warns(UserWarning, match="X has feature names, but LinearRegressor was fitted"):
        model.predict(df)


def test_partial_fit_checks_names_and_a_refit_resets_them():
    df, y = _frame()
    model = LinearRegressor(lr=0.05).partial_fit(df, y)
    coef = model.coef_.copy()
    with pytest.raises(ValueError, match="The feature names should match"):
        model.partial_fit(df[NAMES[::-1]], y)
    np.testing.assert_array_equal(model.coef_, coef)  # the failed call changed nothing
    assert model.n_iter_ == 1
    renamed = df.rename(columns=dict(zip(NAMES, "wxyz")))
    model.fit(renamed, y)  # fit starts anew, with the new names
    assert list(model.feature_names_in_) == list("wxyz")
    model.fit(renamed.to_numpy(), y)
    assert not hasattr(model, "feature_names_in_")


def test_a_failed_fit_keeps_the_names():
    df, y = _frame()
    model = LinearRegressor(lr=0.05, epochs=2).fit(df, y)
    bad = df.rename(columns={"a": "q"}).copy()
    bad.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN|infinity|finite"):
        model.fit(bad, y)
    assert list(model.feature_names_in_) == NAMES


def test_mixed_column_name_types_are_refused_as_sklearn_does():
    df, y = _frame(columns=["a", 1, "c", "d"])
    with pytest.raises(TypeError, match="Feature names are only supported if all input features"):
        LinearRegressor(epochs=1).fit(df, y)


def test_non_string_names_are_not_feature_names():
    df, y = _frame(columns=[0, 1, 2, 3])
    model = LinearRegressor(epochs=1).fit(df, y)
    assert not hasattr(model, "feature_names_in_")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(df.to_numpy())
