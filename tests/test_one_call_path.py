"""Regressions of issue 11: bugs that came from the estimator's two training paths.

1. A reloaded (pickled) model with momentum continues with ``partial_fit`` whatever the input
   needs (shuffling, sample weights, conversion), bit for bit as the model that was not saved.
2. A ``target_loss`` fit costs memory in proportion to the steps it runs, not to the
   ``epochs`` bound.
3. A diverging fit runs the kernel once before it raises.
"""

from __future__ import annotations

import pickle
import tracemalloc

import numpy as np
import pytest

import linsgd
from linsgd import DivergenceError, LinearRegressor


def _data(M=60, N=3, U=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((M, N))
    W = rng.standard_normal((U, N))
    Y = X @ W.T + 0.1 * rng.standard_normal((M, U))
    return X, (Y[:, 0] if U == 1 else Y)


@pytest.mark.parametrize(
    "extra",
    [
        {"shuffle": True, "random_state": 3},
        {"sample_weight": True},
        {"list_input": True},
    ],
    ids=["shuffle", "sample_weight", "converted_input"],
)
def test_reloaded_momentum_model_continues_bit_for_bit(backend, extra):
    X, y = _data()
    params = dict(lr=0.01, batch_size=7, epochs=3, momentum=0.9, backend=backend)
    params.update({k: v for k, v in extra.items() if k in ("shuffle", "random_state")})
    sw = np.linspace(0.5, 2.0, len(X)) if extra.get("sample_weight") else None
    model = LinearRegressor(**params).fit(X, y, sample_weight=sw)
    again = pickle.loads(pickle.dumps(model))
    Xc, yc = (X.tolist(), y.tolist()) if extra.get("list_input") else (X, y)
    for _ in range(2):
        model.partial_fit(Xc, yc, sample_weight=sw)
        again.partial_fit(Xc, yc, sample_weight=sw)
    np.testing.assert_array_equal(again.coef_, model.coef_)
    np.testing.assert_array_equal(again.intercept_, model.intercept_)
    assert again.history_ == model.history_
    assert again.t_ == model.t_


def test_target_loss_fit_memory_follows_the_steps_run(backend):
    # seed 003's pattern: a huge epochs bound, stopped by target_loss
    X, y = _data(M=40, N=2)
    kw = dict(lr=0.05, batch_size=40, backend=backend)
    ref = LinearRegressor(epochs=400, **kw).fit(X, y)
    target = ref.history_["train_loss"][150]
    tight = LinearRegressor(epochs=400, target_loss=target, **kw).fit(X, y)
    assert tight.n_iter_ < 400
    tracemalloc.start()
    try:
        loose = LinearRegressor(epochs=10_000_000, target_loss=target, **kw).fit(X, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # one float64 loss per step of the bound would be 80 MB; the run needs a few kB
    assert peak < 4 << 20, f"peak {peak} bytes"
    np.testing.assert_array_equal(loose.coef_, tight.coef_)
    assert (loose.n_iter_, loose.t_) == (tight.n_iter_, tight.t_)
    assert loose.history_ == tight.history_


def test_diverging_fit_runs_the_kernel_once(monkeypatch):
    if "cpp" not in linsgd.available_backends():
        pytest.skip("counts calls of the compiled module, which this install lacks")
    from linsgd import _core

    calls = []

    def counting(fn):
        def wrapped(*args, **kwargs):
            calls.append(fn.__name__)
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(_core, "train", counting(_core.train))
    X, y = _data()
    model = LinearRegressor(lr=50.0, batch_size=8, epochs=40, backend="cpp")
    with pytest.raises(DivergenceError):
        model.fit(X, y)
    assert calls == ["train"]
    assert not hasattr(model, "coef_")
