"""The data check inside the training pass (``train``'s flag 1) against the check before it.

With flag 1 a backend's ``train`` no longer scans X, Y, X_valid and Y_valid before training: a
non-finite datum makes its batch's loss (or the validation loss) non-finite, training stops
there, and what the pass did not read is scanned at the end. The outcome must be exactly that
of the check before training: the same ValueError naming the same array, with W, b and the
momentum buffers as they were; and when the data are finite, the same steps, status, losses
and parameters, bit for bit, as a call without flag 1. The reference outcome here is
``_core.train``'s check-only call (flag 4), which still scans everything first, followed by a
call with flag 1 off.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import problem

core = pytest.importorskip("linsgd._core", reason="the compiled check is linsgd._core's")


@pytest.fixture(autouse=True, params=["in the pass", "scan first"])
def numba_check_mode(request, monkeypatch):
    """The numba backend checks data of 65,536 elements or more inside the training pass and
    scans smaller data first (cheaper there); the small data here run both ways."""
    if request.param == "in the pass":
        try:
            from linsgd import _numba as numba_backend
        except ImportError:  # no numba: the cpp backend's pass does not depend on the mode
            return request.param
        monkeypatch.setattr(numba_backend, "_DEFER_SCAN_FROM", 0)
    return request.param


def _module(backend):
    from linsgd._backends import resolve_backend

    return resolve_backend(backend)[1]


def _args(X, Y, W, b, *, order=None, batch_size=16, lr=0.01, epochs=2, momentum=0.0, buf=None,
          valid=(None, None), target_loss=None, sample_weight=None, threads=1):  # fmt: skip
    bw, bb = buf if buf is not None else (None, None)
    hyper = [0.0, True, 0.0, momentum, 0.0, False, False]
    return [X, Y, W, b, order, batch_size, lr, epochs, *hyper, bw, bb, False, *valid,
            target_loss, sample_weight, threads]  # fmt: skip


def _mutable(args):
    """Fresh copies of W, b and the buffers, so that two calls start from the same model."""
    out = list(args)
    for k in (2, 3, 15, 16):
        if out[k] is not None:
            out[k] = out[k].copy()
    return out


def _expected(args):
    """(error message, None) or (None, (steps, status, losses, valid_losses, W, b, bufs))."""
    try:
        core.train(*_mutable(args), 3 | 4)
    except ValueError as e:
        return str(e), None
    a = _mutable(args)
    steps, status, losses, valid = core.train(*a, 2)
    return None, (steps, status, losses, valid, a[2], a[3], a[15], a[16])


def _check(backend, args):
    message, outcome = _expected(args)
    a = _mutable(args)
    before = [None if a[k] is None else a[k].copy() for k in (2, 3, 15, 16)]
    if message is not None:
        with pytest.raises(ValueError) as info:
            _module(backend).train(*a, 3)
        assert str(info.value) == message
        for k, was in zip((2, 3, 15, 16), before):
            if was is not None:
                assert a[k].tobytes() == was.tobytes(), "the model must be left as it was"
        return message
    steps, status, losses, valid = _module(backend).train(*a, 3)
    got = (steps, status, losses, valid, a[2], a[3], a[15], a[16])
    for x, y in zip(got, outcome):
        if isinstance(y, np.ndarray):
            assert x.tobytes() == y.tobytes()
        else:
            assert x == y
    return None


def _data(dtype, M=100, N=4, U=1, seed=0):
    X, Y, W, b = problem(M, N, U, dtype, seed)
    return X, Y, W, b


CASES = {
    "first row X": lambda X, Y: X.__setitem__((0, 0), np.nan),
    "last row X": lambda X, Y: X.__setitem__((-1, -1), np.inf),
    "ragged last batch Y": lambda X, Y: Y.__setitem__(-1, -np.inf),
    "middle Y": lambda X, Y: Y.__setitem__(50, np.nan),
    "X and Y: X named": lambda X, Y: (X.__setitem__((90, 1), np.nan), Y.__setitem__(3, np.nan)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_training_data_raises_as_the_check_before(backend, dtype, case):
    X, Y, W, b = _data(dtype)
    CASES[case](X, Y)
    assert _check(backend, _args(X, Y, W, b)) is not None


def test_finite_data_same_bits(backend, dtype):
    X, Y, W, b = _data(dtype)
    assert _check(backend, _args(X, Y, W, b, epochs=3)) is None


def test_zero_weight_in_w_column_still_found(backend, dtype):
    # infinity times a zero weight is NaN: the loss is non-finite even where W is zero
    X, Y, W, b = _data(dtype)
    W[:] = 0
    X[7, 2] = np.inf
    assert _check(backend, _args(X, Y, W, b)) == "X contains NaN or infinity"


def test_rows_outside_the_order(backend, dtype):
    # a row no epoch reads is still checked (the check before training saw it)
    X, Y, W, b = _data(dtype)
    X[99, 0] = np.nan
    order = np.tile(np.arange(90, dtype=np.int64), (2, 1))
    assert _check(backend, _args(X, Y, W, b, order=order)) == "X contains NaN or infinity"
    # and a shuffled order that reads every row finds it in the pass
    order = np.stack([np.random.default_rng(s).permutation(100) for s in range(2)])
    assert _check(backend, _args(X, Y, W, b, order=order)) == "X contains NaN or infinity"
    X[99, 0] = 0.5
    assert _check(backend, _args(X, Y, W, b, order=order)) is None


def test_call_ending_before_the_data_is_read(backend, dtype):
    X, Y, W, b = _data(dtype)
    Y[-1] = np.nan
    # no epoch: nothing is read; target_loss reached at the first step; a divergence at once
    assert _check(backend, _args(X, Y, W, b, epochs=0)) == "Y contains NaN or infinity"
    assert _check(backend, _args(X, Y, W, b, target_loss=1e30)) == "Y contains NaN or infinity"
    assert _check(backend, _args(X, Y, W, b, lr=1e30)) == "Y contains NaN or infinity"
    Y[-1] = 0.25
    assert _check(backend, _args(X, Y, W, b, target_loss=1e30)) is None
    assert _check(backend, _args(X, Y, W, b, lr=1e30)) is None  # diverges: same bits, status 2


def test_zero_sample_weights(backend, dtype):
    # a batch whose weights are all zero has loss 0 whatever its rows hold; a zero-weight row
    # in a weighted batch gives 0 * inf = NaN
    X, Y, W, b = _data(dtype)
    sw = np.ones(100, dtype)
    sw[16:32] = 0
    X[20, 1] = np.nan
    assert _check(backend, _args(X, Y, W, b, sample_weight=sw)) == "X contains NaN or infinity"
    X[20, 1] = 1.0
    Y[40] = np.inf
    sw[40] = 0
    assert _check(backend, _args(X, Y, W, b, sample_weight=sw)) == "Y contains NaN or infinity"
    Y[40] = 0.0
    assert _check(backend, _args(X, Y, W, b, sample_weight=sw)) is None


def test_validation_set(backend, dtype):
    X, Y, W, b = _data(dtype)
    Xv, Yv, _, _ = _data(dtype, M=30, seed=1)
    assert _check(backend, _args(X, Y, W, b, valid=(Xv, Yv))) is None
    Yv[29] = np.inf
    assert _check(backend, _args(X, Y, W, b, valid=(Xv, Yv))) == "Y_valid contains NaN or infinity"
    Xv[0, 0] = np.nan
    assert _check(backend, _args(X, Y, W, b, valid=(Xv, Yv))) == "X_valid contains NaN or infinity"
    Y[5] = np.nan  # the training data's error comes first
    assert _check(backend, _args(X, Y, W, b, valid=(Xv, Yv))) == "Y contains NaN or infinity"


def test_momentum_buffers_restored(backend, dtype):
    X, Y, W, b = _data(dtype)
    buf = (np.full_like(W, 0.5), np.full_like(b, -0.25))
    X[60, 3] = np.nan
    args = _args(X, Y, W, b, momentum=0.9, buf=buf, epochs=3)
    args[17] = True  # the buffers hold state
    assert _check(backend, args) == "X contains NaN or infinity"


def test_non_finite_parameters_after_the_data(backend, dtype):
    X, Y, W, b = _data(dtype)
    W[0, 0] = np.nan
    assert _check(backend, _args(X, Y, W, b)) == "W contains NaN or infinity"
    X[10, 0] = np.inf
    assert _check(backend, _args(X, Y, W, b)) == "X contains NaN or infinity"


def test_threads_and_long_rows(backend, dtype):
    # large enough batches for the threaded pass, rows long enough for the blocked dot
    X, Y, W, b = _data(dtype, M=600, N=64, U=2)
    assert _check(backend, _args(X, Y, W, b, batch_size=256, threads=2)) is None
    X[599, 63] = np.nan
    assert _check(backend, _args(X, Y, W, b, batch_size=256, threads=2)) is not None
