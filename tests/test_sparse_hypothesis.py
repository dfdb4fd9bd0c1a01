"""Property-based tests of sparse X over random sparsity patterns.

Each example draws a shape (feature counts on both sides of the blocked dot's lanes), a
sparsity pattern mixing empty rows, rows with one stored entry, fully dense rows and random
rows (so empty columns too), stored values that include explicit zeros of both signs, int32 or
int64 indices, a batch size, a row order with repeats, and momentum/decay settings; then
``kernels.train`` (with a sparse validation set), ``loss`` and ``gradient`` on the CSR matrix
must give the bits of the same calls on ``X.toarray()``, on every CPU backend, and the backends
must agree with each other. Deterministic (``derandomize=True``) and bounded in time.
"""

from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

sp = pytest.importorskip("scipy.sparse", reason="scipy is not installed")
from helpers import cpu_backends  # noqa: E402

linsgd = pytest.importorskip("linsgd", reason="linsgd is not importable")
kernels = linsgd.kernels
BACKENDS = cpu_backends()

_ROW_KINDS = ("empty", "one", "dense", "random")


@st.composite
def sparse_problems(draw):
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    M = draw(st.integers(1, 24))
    N = draw(st.sampled_from([1, 3, 8, 15, 16, 17, 31, 32, 33, 47, 64, 70]))
    U = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kinds = draw(st.lists(st.sampled_from(_ROW_KINDS), min_size=M, max_size=M))
    D = np.zeros((M, N))
    stored = np.zeros((M, N), dtype=bool)
    for i, kind in enumerate(kinds):
        if kind == "one":
            stored[i, rng.integers(N)] = True
        elif kind == "dense":
            stored[i] = True
        elif kind == "random":
            stored[i] = rng.random(N) < draw(st.sampled_from([0.05, 0.3, 0.7]))
    D[stored] = rng.standard_normal(int(stored.sum()))
    # some stored values are exact zeros, of either sign
    zeros = stored & (rng.random((M, N)) < draw(st.sampled_from([0.0, 0.2])))
    D[zeros] = np.where(rng.random(int(zeros.sum())) < 0.5, 0.0, -0.0)
    r, c = np.nonzero(stored)
    index_dtype = draw(st.sampled_from([np.int32, np.int64]))
    X = sp.csr_matrix((D[r, c].astype(dtype), (r, c)), shape=(M, N))
    X.indices = X.indices.astype(index_dtype)
    X.indptr = X.indptr.astype(index_dtype)
    Y = rng.standard_normal((M, U)).astype(dtype)
    W = rng.uniform(-1, 1, (U, N)).astype(dtype)
    b = rng.uniform(-1, 1, U).astype(dtype) if draw(st.booleans()) else None
    R = draw(st.integers(1, 2 * M))
    E = draw(st.integers(1, 2))
    orders = rng.integers(0, M, (E, R)) if draw(st.booleans()) else None
    penalised = {"weight_decay": 0.01, "l2": 0.002, "momentum": 0.5, "nesterov": True}
    hyper = draw(st.sampled_from([{}, {"momentum": 0.9}, penalised]))
    sw = rng.uniform(0, 2, M).astype(dtype) if draw(st.booleans()) else None
    return dict(X=X, Y=Y, W=W, b=b, batch_size=draw(st.integers(1, M + 2)), epochs=E,
                orders=orders, hyper=hyper, sample_weight=sw)  # fmt: skip


def _run(p, data, backend):
    W = p["W"].copy()
    b = None if p["b"] is None else p["b"].copy()
    r = kernels.train(
        data, p["Y"], W, b, batch_size=p["batch_size"], epochs=p["epochs"], lr=0.05,
        orders=p["orders"], state={}, eval_set=(data, p["Y"]),
        sample_weight=p["sample_weight"], backend=backend, **p["hyper"],
    )  # fmt: skip
    g = kernels.gradient(data, p["Y"], W, b, sample_weight=p["sample_weight"], backend=backend)
    loss = kernels.loss(data, p["Y"], W, b, backend=backend)
    arrays = (W, b, r.losses, r.valid_losses, g[0], g[1])
    return [None if a is None else a.tobytes() for a in arrays] + [r.steps, r.status, g[2], loss]


@pytest.mark.skipif(not BACKENDS, reason="no CPU backend selected in this run")
@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(sparse_problems())
def test_random_sparsity_patterns_match_dense(p):
    results = []
    for backend in BACKENDS:
        dense = _run(p, p["X"].toarray(), backend)
        sparse = _run(p, p["X"], backend)
        assert sparse == dense, backend
        results.append(sparse)
    assert all(r == results[0] for r in results)
