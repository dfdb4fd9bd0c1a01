"""linsgd.distributed.closed_form (TSQR) against linsgd.closed_form, on thread groups.

Every rank passes its own rows (some none); the optimum equals the one-process closed form to
1e-12 relative, singular systems included (the same minimum-norm optimum and warning).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dist_cases import ThreadWorld

linsgd = pytest.importorskip("linsgd", reason="linsgd is not importable")
dist = linsgd.distributed


def _problem(M, N, U, seed=0, duplicate=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((M, N)) * rng.uniform(0.1, 10.0, N)
    if duplicate:
        X[:, -1] = X[:, 0]  # collinear columns: rank deficient without a penalty
    Y = X @ rng.standard_normal((N, U)) + 0.5 + 0.1 * rng.standard_normal((M, U))
    return X, Y[:, 0] if U == 1 else Y


def _run(world, X, Y, splits, **kw):
    bounds = np.cumsum([0, *splits])
    sw = kw.pop("sample_weight", None)

    def fn(r, c):
        sl = slice(bounds[r], bounds[r + 1])
        return dist.closed_form(
            X[sl], Y[sl], comm=c, sample_weight=None if sw is None else sw[sl], **kw
        )

    # (catch_warnings is process-wide: one around all the ranks' threads)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outs = ThreadWorld(world).run(fn)
    return outs, [w.category for w in caught]


CASES = {
    "plain": (dict(), False, 1),
    "penalties-multi": (dict(weight_decay=0.1, l2=0.05, decay_bias=False), False, 3),
    "weighted-no-intercept": (dict(fit_intercept=False), False, 2),
    "rank-deficient": (dict(), True, 2),
}


@pytest.mark.parametrize("world, splits", [(1, [40]), (2, [25, 15]), (3, [2, 0, 38])])
@pytest.mark.parametrize("case", list(CASES))
def test_equals_one_process(case, world, splits):
    kw, duplicate, U = CASES[case]
    X, Y = _problem(sum(splits), 5, U, duplicate=duplicate)
    if case.startswith("weighted"):
        kw = dict(kw, sample_weight=np.random.default_rng(3).uniform(0.0, 2.0, len(X)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coef, intercept = linsgd.closed_form(X, Y, **kw)
    expected_warnings = [w.category for w in caught]
    assert (linsgd.RankDeficientWarning in expected_warnings) == duplicate
    outs, got_warnings = _run(world, X, Y, splits, **kw)
    for c, i in outs:
        assert np.abs(c - coef).max() <= 1e-12 * np.abs(coef).max()
        assert np.abs(np.asarray(i) - intercept).max() <= 1e-12 * max(np.abs(intercept).max(), 1)
        assert np.shape(c) == np.shape(coef) and np.shape(i) == np.shape(intercept)
    assert got_warnings == expected_warnings * world  # on every rank
    assert all(o[0].tobytes() == outs[0][0].tobytes() for o in outs)


def test_bad_input_and_disagreement():
    X, Y = _problem(20, 3, 1)

    def bad(r, c):
        x = X.copy()
        if r == 1:
            x[10, 0] = np.nan  # a row of its own block
        return dist.closed_form(x[r * 10 : (r + 1) * 10], Y[r * 10 : (r + 1) * 10], comm=c)

    outs = ThreadWorld(2).run(bad)
    assert isinstance(outs[1], ValueError) and "X contains NaN" in str(outs[1])
    assert isinstance(outs[0], dist.DistributedError) and outs[0].ranks == [1]

    def differ(r, c):
        sl = slice(r * 10, (r + 1) * 10)
        return dist.closed_form(X[sl], Y[sl], comm=c, l2=0.1 * r)

    for out in ThreadWorld(2).run(differ):
        assert isinstance(out, ValueError) and "different l2" in str(out)
