"""scipy.sparse X: sparse fits equal dense fits of the densified data bit for bit.

* ``linsgd.kernels`` (train, epoch, step, loss, gradient, partial_gradient) and
  ``LinearRegressor`` on CSR X against the same calls on ``X.toarray()``, every CPU backend
  and dtype, U = 1 and 3, rows in order and shuffled, momentum, weight decay, l2, sample
  weights, a ragged last batch, feature counts on both sides of the blocked dot's lanes.
* Edge patterns: empty rows and columns, one stored entry, fully dense rows, explicit stored
  zeros, signed zeros (the one place the sparse sum may differ: the sign of a zero prediction,
  which reaches no result of a fit); NaN/infinity refused as for dense X.
* Other formats and non-canonical CSR (unsorted, duplicate indices) converted once, on a copy.
* Bad CSR triples given straight to the binding: refused naming the part, never read out of
  bounds (the file runs under ASan/UBSan in .ci/sanitize.sh).
* A fit on 2e5 x 1e5 at 0.01 % density stays far from an M x N allocation.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

sp = pytest.importorskip("scipy.sparse", reason="scipy is not installed")
linsgd = pytest.importorskip("linsgd", reason="linsgd is not importable")
kernels = linsgd.kernels
try:
    from linsgd import _core
except ImportError:  # a numba-only install
    _core = None

needs_core = pytest.mark.skipif(_core is None, reason="linsgd._core is not built (numba only)")


def _csr(M, N, density, dtype, seed, *, index_dtype=np.int32):
    """A seeded CSR matrix of standard-normal stored values."""
    X = sp.random(
        M, N, density=density, format="csr", dtype=np.float64, random_state=seed,
        data_rvs=np.random.default_rng(seed).standard_normal,
    )  # fmt: skip
    X = sp.csr_matrix(
        (X.data.astype(dtype), X.indices.astype(index_dtype), X.indptr.astype(index_dtype)),
        shape=(M, N),
    )
    return X


def _model(N, U, dtype, seed):
    rng = np.random.default_rng(seed + 1)
    bound = 1.0 / np.sqrt(max(N, 1))
    W = rng.uniform(-bound, bound, (U, N)).astype(dtype)
    b = rng.uniform(-bound, bound, U).astype(dtype)
    return W, b


def _targets(M, U, dtype, seed):
    return np.random.default_rng(seed + 2).standard_normal((M, U)).astype(dtype)


def _bits(*arrays):
    return [None if a is None else np.ascontiguousarray(a).tobytes() for a in arrays]


def _train_both(X, Y, W0, b0, backend, *, validate=False, **kw):
    """kernels.train on the densified X and on X itself (with ``validate``, each also its own
    validation set): [W, b, losses, valid_losses, steps, status] of each."""
    out = []
    for data in (X.toarray(), X):
        W, b = W0.copy(), None if b0 is None else b0.copy()
        state = {} if kw.get("momentum") else None
        r = kernels.train(data, Y, W, b, backend=backend, state=state,
                          eval_set=(data, Y) if validate else None, **kw)  # fmt: skip
        out.append([*_bits(W, b, r.losses, r.valid_losses), r.steps, r.status])
    return out


# ---------------------------------------------------------------------------- bit equality


@pytest.mark.parametrize("U", [1, 3])
@pytest.mark.parametrize("N", [5, 37, 70])
@pytest.mark.parametrize("shuffled", [False, True], ids=["in_order", "shuffled"])
@pytest.mark.parametrize("variant", ["plain", "momentum_decay_l2_weights"])
def test_train_sparse_equals_dense(backend, dtype, U, N, shuffled, variant):
    M, E = 61, 3  # batch 7: a ragged last batch
    X = _csr(M, N, 0.15, dtype, seed=N + U)
    Y = _targets(M, U, dtype, N)
    W0, b0 = _model(N, U, dtype, N)
    kw = dict(batch_size=7, epochs=E, lr=0.05, validate=True)
    if shuffled:
        rng = np.random.default_rng(U)
        kw["orders"] = np.stack([rng.permutation(M) for _ in range(E)])
    if variant != "plain":
        kw.update(momentum=0.9, weight_decay=0.01, l2=0.003)
        kw["sample_weight"] = np.random.default_rng(3).uniform(0, 2, M)
    dense, sparse = _train_both(X, Y, W0, b0, backend, **kw)
    assert dense[4:] == sparse[4:] == [E * 9, "completed"]
    assert sparse[:4] == dense[:4]


def test_eval_functions_sparse_equal_dense(backend, dtype):
    M, N, U = 40, 45, 3
    X = _csr(M, N, 0.2, dtype, 5)
    Y = _targets(M, U, dtype, 5)
    W, b = _model(N, U, dtype, 5)
    sw = np.random.default_rng(0).uniform(0, 3, M).astype(dtype)
    for kw in ({}, {"sample_weight": sw}):
        d, s = X.toarray(), X
        assert kernels.loss(d, Y, W, b, backend=backend, **kw) == kernels.loss(
            s, Y, W, b, backend=backend, **kw
        )
        gd, gs = (kernels.gradient(x, Y, W, b, backend=backend, **kw) for x in (d, s))
        assert _bits(*gd) == _bits(*gs)
        pd, ps = (
            kernels.partial_gradient(x, Y, W, b, n_total=3 * M, backend=backend, **kw)
            for x in (d, s)
        )
        assert _bits(pd[0], pd[1]) == _bits(ps[0], ps[1]) and pd[2] == ps[2]
    after = []
    for data in (X.toarray(), X):  # step and epoch: the same entry point, the same bits
        W1, b1 = W.copy(), b.copy()
        kernels.step(data, Y, W1, b1, lr=0.1, backend=backend)
        kernels.epoch(data, Y, W1, b1, batch_size=6, lr=0.05, backend=backend)
        after.append(_bits(W1, b1))
    assert after[0] == after[1]


def test_backends_agree_on_sparse(dtype):
    """The numba backend's sparse kernel is the C++ one's bit for bit."""
    from helpers import cpu_backends

    if len(cpu_backends()) < 2:
        pytest.skip("needs both CPU backends (cpp and numba) in this run")
    X = _csr(80, 50, 0.1, dtype, 9, index_dtype=np.int64)
    Y = _targets(80, 2, dtype, 9)
    W0, b0 = _model(50, 2, dtype, 9)
    res = []
    for backend in ("cpp", "numba"):
        W, b = W0.copy(), b0.copy()
        r = kernels.train(X, Y, W, b, batch_size=9, epochs=2, lr=0.05, momentum=0.5,
                          nesterov=True, eval_set=(X, Y), backend=backend)  # fmt: skip
        res.append(_bits(W, b, r.losses, r.valid_losses))
    assert res[0] == res[1]


def test_dense_eval_set_with_sparse_X(backend):
    X = _csr(50, 20, 0.2, np.float64, 1)
    Y = _targets(50, 1, np.float64, 1)
    Xv, Yv = np.random.default_rng(1).standard_normal((9, 20)), _targets(9, 1, np.float64, 4)
    W0, b0 = _model(20, 1, np.float64, 1)
    out = []
    for data, ev in ((X.toarray(), Xv), (X, Xv), (X, sp.csr_matrix(Xv))):
        W, b = W0.copy(), b0.copy()
        r = kernels.train(data, Y, W, b, batch_size=8, epochs=2, lr=0.1, eval_set=(ev, Yv),
                          backend=backend)  # fmt: skip
        out.append(_bits(W, b, r.valid_losses))
    assert out[0] == out[1] == out[2]
    with pytest.raises(TypeError, match="X_valid is sparse but X is dense"):
        kernels.train(X.toarray(), Y, W0.copy(), b0.copy(), batch_size=8, epochs=1, lr=0.1,
                      eval_set=(sp.csr_matrix(Xv), Yv), backend=backend)  # fmt: skip


# ---------------------------------------------------------------------------- edge patterns


def _edge_matrix(dtype):
    """Empty rows and columns, one row with one stored entry, fully dense rows, explicit
    stored zeros and signed zeros, N = 40 (past the lanes of both dtypes' blocked dot)."""
    N = 40
    rng = np.random.default_rng(7)
    D = np.zeros((12, N))
    D[1, 3] = 2.5  # one stored entry
    D[2] = rng.standard_normal(N)  # fully dense rows
    D[5] = rng.standard_normal(N)
    D[7, ::3] = rng.standard_normal(len(range(0, N, 3)))
    D[:, 10:14] = 0.0  # empty columns
    D[9, 39] = -1.0  # the tail of the blocked dot only
    # explicit stored zeros, +0 and -0, in row 0 (else empty) and row 7
    r, c = np.nonzero(D)
    rows = np.concatenate([r, [0, 0, 7]])
    cols = np.concatenate([c, [4, 20, 1]])
    vals = np.concatenate([D[r, c], [0.0, -0.0, -0.0]]).astype(dtype)
    X = sp.csr_matrix((vals, (rows, cols)), shape=D.shape)
    X.sum_duplicates()
    assert np.signbit(X.data[X.data == 0]).sum() == 2
    assert X.nnz > np.count_nonzero(X.toarray())  # the zeros are stored
    return X


def test_edge_patterns(backend, dtype):
    X = _edge_matrix(dtype)
    M, N = X.shape
    for U in (1, 3):
        Y = _targets(M, U, dtype, U)
        W0, b0 = _model(N, U, dtype, U)
        dense, sparse = _train_both(X, Y, W0, b0, backend, batch_size=5, epochs=3, lr=0.05,
                                    momentum=0.9, validate=True)  # fmt: skip
        assert sparse == dense


def test_signed_zero_predictions_do_not_reach_the_fit(backend, dtype):
    """All-zero rows against all-negative weights without a bias: the dense dot is -0 there,
    the sparse one +0 (the documented difference); with y = 0 there the errors are zeros of
    opposite signs, yet W, the losses and the gradients are the same bits."""
    M, N = 8, 6
    D = np.zeros((M, N), dtype)
    D[::2, 1] = 1.5  # odd rows empty
    X = sp.csr_matrix(D)
    Y = np.where(np.arange(M) % 2 == 1, 0.0, 1.0).astype(dtype)
    W0 = -np.linspace(0.5, 1.0, N, dtype=dtype).reshape(1, N)
    dense, sparse = _train_both(X, Y, W0, None, backend, batch_size=3, epochs=2, lr=0.01)
    assert sparse == dense
    gd, gs = (kernels.gradient(x, Y, W0, None, backend=backend) for x in (D, X))
    assert _bits(*gd) == _bits(*gs)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_stored_values_refused_as_dense(backend, bad):
    X = _csr(20, 8, 0.3, np.float64, 2)
    X.data[3] = bad
    Y = _targets(20, 1, np.float64, 2)
    W, b = _model(8, 1, np.float64, 2)
    for data in (X.toarray(), X):
        with pytest.raises(ValueError, match="X contains NaN or infinity"):
            kernels.train(data, Y, W.copy(), b.copy(), batch_size=4, epochs=1, lr=0.1,
                          backend=backend)  # fmt: skip
        with pytest.raises(ValueError, match="contains NaN or infinity"):
            linsgd.LinearRegressor(backend=backend).fit(data, Y[:, 0])


def test_overflowing_error_where_dense_gradient_has_nan(backend):
    """Where the bits cannot match (documented): an error so large that it is infinite makes
    the dense X^T e NaN (inf * 0) in every column the row does not store; the sparse gradient
    leaves those 0. Both losses are infinite, so training stops before any such update."""
    D = np.zeros((2, 3))
    D[0, 0] = 1e200
    D[1, 2] = 1.0
    W = np.array([[1e200, 0.5, 0.5]])
    Y = np.zeros(2)
    (gd, _, ld), (gs, _, ls) = (
        kernels.gradient(x, Y, W, None, backend=backend) for x in (D, sp.csr_matrix(D))
    )
    assert np.isinf(ld) and np.isinf(ls)
    assert np.isnan(gd[0, 1]) and gs[0, 1] == 0.0
    r = kernels.train(sp.csr_matrix(D), Y, W.copy(), None, batch_size=2, epochs=1, lr=0.1,
                      backend=backend)  # fmt: skip
    assert r.status == "diverged" and r.steps == 0


# ---------------------------------------------------------------------------- formats


def test_formats_and_canonicalisation(backend):
    X = _csr(30, 12, 0.3, np.float64, 4)
    Y = _targets(30, 1, np.float64, 4)
    W0, b0 = _model(12, 1, np.float64, 4)

    def fit(data):
        W, b = W0.copy(), b0.copy()
        kernels.train(data, Y, W, b, batch_size=4, epochs=2, lr=0.1, backend=backend)
        return _bits(W, b)

    ref = fit(X.toarray())
    for data in (X, sp.csr_array(X), X.tocoo(), X.tocsc(), X.tolil(), sp.coo_array(X)):
        assert fit(data) == ref
    # unsorted and duplicated indices: canonicalised on a copy, the caller's matrix untouched
    rows_data, rows_cols = [], []
    for i in range(X.shape[0]):  # each row's entries halved, twice over, in reverse order
        lo, hi = X.indptr[i], X.indptr[i + 1]
        rows_data.append(np.concatenate([X.data[lo:hi], X.data[lo:hi]])[::-1] / 2)
        rows_cols.append(np.concatenate([X.indices[lo:hi], X.indices[lo:hi]])[::-1])
    dup = sp.csr_matrix(
        (np.concatenate(rows_data), np.concatenate(rows_cols).astype(np.int32), 2 * X.indptr),
        shape=X.shape,
    )
    assert not dup.has_canonical_format
    before = (dup.data.copy(), dup.indices.copy(), dup.indptr.copy())
    W, b = W0.copy(), b0.copy()
    kernels.train(dup, Y, W, b, batch_size=4, epochs=2, lr=0.1, backend=backend)
    W2, b2 = W0.copy(), b0.copy()
    kernels.train(dup.toarray(), Y, W2, b2, batch_size=4, epochs=2, lr=0.1, backend=backend)
    assert _bits(W, b) == _bits(W2, b2)
    for a, c in zip(before, (dup.data, dup.indices, dup.indptr)):
        assert np.array_equal(a, c)


def test_integer_values_refused_by_kernels_cast_by_estimator(backend):
    X = sp.csr_matrix(np.eye(6, 4, dtype=np.int64))
    Y = np.arange(6, dtype=np.float64)
    with pytest.raises(TypeError, match="X"):
        kernels.loss(X, Y, np.zeros((1, 4)), None, backend=backend)
    est = linsgd.LinearRegressor(epochs=3, backend=backend).fit(X, Y)
    ref = linsgd.LinearRegressor(epochs=3, backend=backend).fit(X.toarray(), Y)
    assert _bits(est.coef_, est.intercept_) == _bits(ref.coef_, ref.intercept_)


# ---------------------------------------------------------------------------- estimator


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"shuffle": True, "random_state": 3, "momentum": 0.9, "weight_decay": 0.01},
        {"early_stopping": True, "random_state": 0, "epochs": 12, "n_iter_no_change": 3},
        {"lr": "auto", "l2": 0.01, "batch_size": 16},
    ],
    ids=["default", "shuffle_momentum", "early_stopping", "auto_lr"],
)
def test_estimator_sparse_equals_dense(backend, dtype, params):
    X = _csr(120, 30, 0.1, dtype, 11)
    y = _targets(120, 1, dtype, 11)[:, 0]
    sw = np.random.default_rng(2).integers(0, 3, 120)
    kw = dict(params, backend=backend, dtype=np.dtype(dtype).name)
    dense = linsgd.LinearRegressor(**kw).fit(X.toarray(), y, sample_weight=sw)
    sparse = linsgd.LinearRegressor(**kw).fit(X, y, sample_weight=sw)
    assert _bits(dense.coef_, dense.intercept_) == _bits(sparse.coef_, sparse.intercept_)
    assert dense.n_iter_ == sparse.n_iter_
    eps = np.finfo(dtype).eps
    # predict: scipy's sparse product against BLAS's dense one, a few eps apart
    scale = np.abs(X).toarray() @ np.abs(sparse.coef_) + np.abs(sparse.intercept_)
    assert np.all(np.abs(sparse.predict(X) - dense.predict(X.toarray())) <= 64 * eps * scale)
    assert sparse.predict(X).dtype == dtype
    assert abs(sparse.score(X, y) - dense.score(X.toarray(), y)) <= 1e3 * eps


def test_estimator_partial_fit_pickle_eval_set(backend):
    X = _csr(90, 25, 0.1, np.float64, 12)
    Xv = _csr(20, 25, 0.1, np.float64, 13)
    y, yv = _targets(90, 2, np.float64, 12), _targets(20, 2, np.float64, 13)
    d = linsgd.LinearRegressor(epochs=4, backend=backend).fit(
        X.toarray(), y, eval_set=(Xv.toarray(), yv)
    )
    s = linsgd.LinearRegressor(epochs=4, backend=backend).fit(X, y, eval_set=(Xv, yv))
    assert _bits(d.coef_, d.intercept_) == _bits(s.coef_, s.intercept_)
    s = pickle.loads(pickle.dumps(s))
    d.partial_fit(X.toarray(), y)
    s.partial_fit(sp.csr_array(X), y)
    assert _bits(d.coef_, d.intercept_) == _bits(s.coef_, s.intercept_)


def test_estimator_refusals(backend):
    X = _csr(30, 5, 0.3, np.float64, 1)
    y = np.ones(30)
    with pytest.raises(TypeError, match="closed_form"):
        linsgd.LinearRegressor(solver="closed_form", backend=backend).fit(X, y)
    with pytest.raises(TypeError, match="y is a sparse matrix"):
        linsgd.LinearRegressor(backend=backend).fit(X, sp.csr_matrix(y.reshape(-1, 1)))
    with pytest.raises(ValueError, match="features"):
        linsgd.LinearRegressor(backend=backend).fit(X, y).predict(_csr(3, 6, 0.5, np.float64, 2))
    est = linsgd.LinearRegressor(backend=backend)
    with pytest.raises(ValueError, match="empty"):
        est.fit(sp.csr_matrix((0, 5)), np.ones(0))
    assert not hasattr(est, "coef_")


# ---------------------------------------------------------------------------- the binding


def _direct(X, Y, W, b=None, **kw):
    """_core.train with X as given (a CSR triple), one epoch of batches of 2."""
    args = dict(order=None, batch_size=2, lr=0.1, epochs=1, weight_decay=0.0, decay_bias=True,
                l2=0.0, momentum=0.0, dampening=0.0, nesterov=False, maximize=False, buf_W=None,
                buf_b=None, momentum_initialized=False, X_valid=None, Y_valid=None,
                target_loss=None)  # fmt: skip
    args.update(kw)
    return _core.train(X, Y, W, b, **args)


def _triple(index_dtype=np.int32):
    X = sp.csr_matrix(np.array([[1.0, 0, 2], [0, 0, 0], [0, 3.0, 4]]))
    return X.data.copy(), X.indices.astype(index_dtype), X.indptr.astype(index_dtype)


@needs_core
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_binding_accepts_both_index_dtypes(index_dtype):
    Y = np.ones((3, 1))
    W = np.zeros((1, 3))
    steps, status, losses, _ = _direct(_triple(index_dtype), Y, W)
    assert (steps, status) == (2, 0) and np.all(np.isfinite(losses))
    assert _core.loss(_triple(index_dtype), Y, W, None) == _core.loss(_triple(), Y, W, None)


def _mutations():
    d, i, p = _triple()
    yield "indptr must start at 0", (d, i, np.array([1, 2, 2, 4], np.int32))
    last = r"indptr\[-1\] must be the number of stored entries"
    yield last, (d, i, np.array([0, 2, 2, 3], np.int32))
    yield "indptr must not decrease", (d, i, np.array([0, 2, 1, 4], np.int32))
    yield "indptr must have rows", (d, i, np.array([0], np.int32))
    yield "outside", (d, np.array([0, 2, 1, 3], np.int32), p)
    yield "outside", (d, np.array([0, -1, 1, 2], np.int32), p)
    yield "sorted and without duplicates", (d, np.array([2, 0, 1, 2], np.int32), p)
    yield "sorted and without duplicates", (d, np.array([0, 2, 2, 2], np.int32), p)
    yield "one entry per stored value", (d[:3], i, p)
    yield r"must have the dtype of X(_valid)?\.indices", (d, i, p.astype(np.int64))
    yield "int32 or int64", (d, i.astype(np.uint32), p.astype(np.uint32))
    yield "int32 or int64", (d, i.astype(np.float64), p)
    yield "float32 or float64", (d.astype(np.int64), i, p)
    yield "1-D", (d.reshape(2, 2), i, p)
    yield "C-contiguous", (np.repeat(d, 2)[::2], i, p)
    yield "must be a numpy array", (list(d), i, p)


@needs_core
@pytest.mark.parametrize("match,triple", list(_mutations()))
def test_binding_refuses_bad_triples(match, triple):
    Y = np.ones((3, 1))
    W = np.zeros((1, 3))
    before = W.copy()
    for call in (
        lambda: _direct(triple, Y, W),
        lambda: _core.loss(triple, Y, W, None),
        lambda: _core.gradient(triple, Y, W, None, np.empty((1, 3)), None),
        lambda: _direct(_triple(), Y, W, X_valid=triple, Y_valid=Y),
    ):
        with pytest.raises((TypeError, ValueError), match=match):
            call()
    assert np.array_equal(W, before)


@needs_core
def test_binding_refuses_mixed_forms_and_index_dtypes():
    Y = np.ones((3, 1))
    W = np.zeros((1, 3))
    with pytest.raises(TypeError, match="X_valid is sparse"):
        _direct(np.eye(3), Y, W, X_valid=_triple(), Y_valid=Y)
    with pytest.raises(TypeError, match=r"X_valid\.indices must have the dtype of X\.indices"):
        _direct(_triple(), Y, W, X_valid=_triple(np.int64), Y_valid=Y)
    with pytest.raises(ValueError, match="Y must have shape"):
        _direct(_triple(), np.ones((4, 1)), W)


def test_numba_structure_check_matches_binding():
    """A numba-only install checks the triple itself (the same refusals)."""
    from linsgd._numba._sparse import check_structure

    for match, triple in _mutations():
        if "must be a numpy array" in match or "float32" in match or "1-D" in match:
            continue  # refused by the kernels layer before any backend
        if "C-contiguous" in match:
            continue
        with pytest.raises((TypeError, ValueError)):
            check_structure(triple, 3)
    check_structure(_triple(), 3)


# ---------------------------------------------------------------------------- memory


def test_large_sparse_fit_never_allocates_dense():
    """2e5 x 1e5 at 0.01 % density (2e6 stored entries, 24 MB; dense it would be 160 GB): the
    fit's peak Python allocation (tracemalloc) and the growth of the process's resident set
    stay within a generous bound, far below even one densified batch (8 MB a row block of 10
    rows; 800 MB for a batch of 1000)."""
    code = textwrap.dedent(
        """
        import resource, tracemalloc
        import numpy as np, scipy.sparse as sp
        import linsgd
        M, N, per_row = 200_000, 100_000, 10
        rng = np.random.default_rng(0)
        stripe = N // per_row  # one stored column in each stripe of columns: sorted, distinct
        cols = rng.integers(0, stripe, (M, per_row)) + np.arange(per_row) * stripe
        X = sp.csr_matrix((rng.standard_normal(M * per_row), cols.ravel().astype(np.int32),
                           np.arange(0, M * per_row + 1, per_row, dtype=np.int32)), shape=(M, N))
        y = rng.standard_normal(M)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        est = linsgd.LinearRegressor(epochs=1, batch_size=1000, shuffle=True, random_state=0,
                                     momentum=0.9).fit(X, y)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(peak, grew * 1024, est.coef_.shape)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    peak, grew, shape = out.stdout.split(maxsplit=2)
    assert "100000" in shape
    assert int(peak) < 150e6, f"peak Python allocation {int(peak) / 1e6:.0f} MB"
    assert int(grew) < 300e6, f"resident set grew by {int(grew) / 1e6:.0f} MB"


@pytest.mark.parametrize("N", [40, 400], ids=["dense_update", "touched_columns"])
@pytest.mark.parametrize("lr", [0.1, 0.0])
def test_plain_sgd_touched_update_keeps_signed_zero_weights(backend, dtype, lr, N):
    """Plain SGD updates only the columns a batch stores when they are few (C++; else the dense
    update, the gradient kept zero between steps): the other weights, exact zeros of either sign
    included, keep the bits the dense update gives them."""
    X = _csr(30, N, 2.0 / N if N > 100 else 0.25, dtype, 6)
    Y = _targets(30, 2, dtype, 6)
    W0, b0 = _model(N, 2, dtype, 6)
    W0[:, ::4] = 0.0
    W0[:, 1::4] = -0.0
    dense, sparse = _train_both(X, Y, W0, b0, backend, batch_size=4, epochs=2, lr=lr)
    assert sparse == dense


@needs_core
def test_non_finite_weight_unchecked_ends_training_as_dense():
    """A direct call that skips the parameter check (flags=1) with a NaN weight in a column no
    row stores: the dense predictions are NaN (0 * NaN), so training ends at the first batch
    loss, before any step; the sparse kernel, whose dots skip that column, ends there too."""
    D = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    Y = np.ones((2, 1))
    out = []
    for data in (D, _triple_of(sp.csr_matrix(D))):
        W = np.array([[0.5, 0.5, np.nan]])
        steps, status, losses, _ = _direct(data, Y, W, flags=1)
        out.append((steps, status, np.isnan(losses[0])))
    assert out[0] == out[1] == (0, 2, True)


def _triple_of(X):
    return X.data, X.indices, X.indptr
