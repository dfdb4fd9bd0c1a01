"""Tests of linsgd.metrics (mse, r2, the seeds' modified MAPE) and linsgd.plot_history."""

from __future__ import annotations

import numpy as np
import pytest

import linsgd
from helpers import HAS_TORCH
from linsgd import LinearRegressor, plot_history
from linsgd.metrics import mape, mse, r2
from reference import make_problem


def test_mse_and_r2_match_sklearn():
    from sklearn.metrics import mean_squared_error, r2_score

    rng = np.random.default_rng(0)
    t = rng.standard_normal((30, 3))
    p = t + 0.3 * rng.standard_normal((30, 3))
    w = rng.uniform(0, 2, 30)
    assert mse(t, p) == pytest.approx(mean_squared_error(t, p), rel=1e-14)
    assert r2(t, p) == pytest.approx(r2_score(t, p), rel=1e-14)
    assert r2(t[:, 0], p[:, 0], sample_weight=w) == pytest.approx(
        r2_score(t[:, 0], p[:, 0], sample_weight=w), rel=1e-14
    )
    # weighted MSE: linsgd's normalisation sum(w e^2) / (U sum(w))
    assert mse(t, p, sample_weight=w) == pytest.approx(
        np.sum(w[:, None] * (t - p) ** 2) / (3 * w.sum()), rel=1e-14
    )
    assert r2([1.0, 1.0], [1.0, 1.0]) == 1.0 and r2([1.0, 1.0], [1.0, 2.0]) == 0.0


def test_mape_definition_of_the_seed_notebooks():
    """MAPE(y, y_hat) = 100/m * sum L_i, L_i = |(y_i - y_hat_i) / y_i| (y_i != 0), |y_hat_i|
    (y_i == 0); values as the notebooks print them (percent)."""
    a = np.full((3, 3), 2.0)
    assert mape(a, a) == 0.0
    assert mape(a, a * 0) == 100.0
    assert mape(a, -a) == 200.0
    assert mape(a * 0, a) == 200.0  # zero targets: |y_hat| (times 100)
    assert mape(a * 0, -a) == 200.0
    assert mape(a * 0, a * 0) == 0.0
    assert mape(a * 100, -a * 100) == 200.0
    assert mape(4.0, 5.0) == 25.0  # scalars, as the notebooks compare two losses
    assert mape([0.0, 4.0], [0.5, 3.0]) == pytest.approx(100 * (0.5 + 0.25) / 2)


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (pip install torch==2.13.0)")
def test_metrics_accept_torch_tensors():
    import torch

    t = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    assert mape(t, t * 1.5) == pytest.approx(50.0)
    assert mse(t, t) == 0.0


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        mse([1.0, 2.0], [1.0])
    with pytest.raises(TypeError, match="y_pred must hold real numbers"):
        mape([1.0], ["a"])
    with pytest.raises(ValueError, match="sample_weight"):
        mse([1.0, 2.0], [1.0, 2.0], sample_weight=[0.0, 0.0])


def test_plot_history_renders_png(tmp_path):
    mpl = pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    X, y, _, _ = make_problem(80, 3, 1, np.float64, 0, y_1d=True)
    Xv = X + 0.5 * np.random.default_rng(1).standard_normal(X.shape)
    model = LinearRegressor(lr=0.05, batch_size=8, epochs=40, tol=1e-6, n_iter_no_change=3)
    model.fit(X, y, eval_set=(Xv, y))
    ax = plot_history(model)
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:2] == ["train MSE", "validation MSE"] and "best epoch" in labels
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), model.history_["train_loss"])
    path = tmp_path / "history.png"
    ax.figure.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    _, ax2 = plt.subplots()
    plain = LinearRegressor(lr=0.05, batch_size=8, epochs=3).fit(X, y)
    assert linsgd.plot_history(plain, ax=ax2, log_scale=True) is ax2
    assert [line.get_label() for line in ax2.get_lines()] == ["train MSE"]
    assert ax2.get_yscale() == "log"
    plt.close("all")
    with pytest.raises(ValueError, match="no training history"):
        plot_history(LinearRegressor())
