"""The code paths the C++ kernel picks by shape, each against the references.

The host kernel vectorises differently by shape: the full-set loss has dedicated paths for one
to eight features (four features: rows transposed in registers), the fused training pass works
through chunks of rows sized to the L1 cache, and long rows use the blocked dot product. None of
this may change a bit: the loss must equal the sequential numpy reference exactly, and the two
CPU backends (numba replicates the C++ order) must agree bitwise on shapes that cross every
chunk and lane boundary.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import DT_IDS, DTYPES, cpu_backends, skip_unless_backend
from linsgd import kernels
from reference import cascade_sum, eps_distance, forward_seq, train_reference


def _reference_loss(X, Y, W, b, sample_weight=None):
    """nn.MSELoss of a model whose dot products are sequential (exact for N < the dot lanes)."""
    e = forward_seq(X, W, b) - Y
    sq = e * e
    if sample_weight is None:
        return float(cascade_sum(sq) / X.dtype.type(Y.size))
    sq = sq * sample_weight[:, None]
    total = float(np.sum(sample_weight, dtype=np.float64))
    return float(cascade_sum(sq) / X.dtype.type(Y.shape[1] * total))


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("N", list(range(1, 10)))
@pytest.mark.parametrize("U", [1, 2])
@pytest.mark.parametrize("M", [1, 3, 8, 37])
@pytest.mark.parametrize("variant", ["plain", "nobias", "weighted"])
def test_small_feature_loss_paths_are_exact(backend, dt, N, U, M, variant):
    rng = np.random.default_rng(1000 * N + 10 * U + M)
    X = rng.standard_normal((M, N)).astype(dt)
    Y = rng.standard_normal((M, U)).astype(dt)
    W = rng.standard_normal((U, N)).astype(dt)
    b = None if variant == "nobias" else rng.standard_normal(U).astype(dt)
    sw = rng.integers(0, 4, M).astype(dt) if variant == "weighted" else None
    if sw is not None and not sw.any():
        sw[0] = 1
    got = kernels.loss(X, Y, W, b, sample_weight=sw, backend=backend)
    assert got == _reference_loss(X, Y, W, b, sw)


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("N", [3, 4, 7])
def test_validation_losses_equal_the_loss_after_each_epoch(backend, dt, N):
    rng = np.random.default_rng(N)
    X = rng.standard_normal((90, N)).astype(dt)
    Y = rng.standard_normal((90, 1)).astype(dt)
    Xv = rng.standard_normal((1003, N)).astype(dt)
    Yv = rng.standard_normal((1003, 1)).astype(dt)
    W = np.zeros((1, N), dt)
    b = np.zeros(1, dt)
    expected = []
    W1, b1 = W.copy(), b.copy()
    for _ in range(3):
        kernels.epoch(X, Y, W1, b1, batch_size=16, lr=0.05, backend=backend)
        expected.append(kernels.loss(Xv, Yv, W1, b1, backend=backend))
    result = kernels.train(
        X, Y, W, b, batch_size=16, epochs=3, lr=0.05, eval_set=(Xv, Yv), backend=backend
    )
    assert result.valid_losses.tolist() == expected
    assert np.array_equal(W, W1) and np.array_equal(b, b1)


# (M, N, U, B): batches spanning several L1-sized chunks, ragged chunks and batches, feature
# counts on both sides of the dot-product lane width (16 doubles, 32 floats), long rows
LARGE_SHAPES = [
    (1000, 64, 1, 400),
    (301, 300, 3, 128),
    (130, 1030, 1, 64),
    (517, 33, 2, 517),
    (260, 16, 1, 250),
]


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize(
    "shape", LARGE_SHAPES, ids=[f"M{m}-N{n}-U{u}-B{b}" for m, n, u, b in LARGE_SHAPES]
)
@pytest.mark.parametrize("shuffled", [False, True], ids=["in-order", "shuffled"])
def test_large_shapes_backends_agree_bitwise(dt, shape, shuffled):
    for name in ("cpp", "numba"):  # needs both CPU backends
        skip_unless_backend(name)
    M, N, U, B = shape
    rng = np.random.default_rng(M + N)
    X = rng.standard_normal((M, N)).astype(dt)
    Y = rng.standard_normal((M, U)).astype(dt)
    W0 = (rng.standard_normal((U, N)) / np.sqrt(N)).astype(dt)
    b0 = rng.standard_normal(U).astype(dt)
    orders = np.stack([rng.permutation(M) for _ in range(2)]) if shuffled else None
    kw = dict(batch_size=B, epochs=2, lr=0.01, orders=orders, momentum=0.9, weight_decay=1e-3)
    runs = {}
    for be in ("cpp", "numba"):
        W, b = W0.copy(), b0.copy()
        res = kernels.train(X, Y, W, b, backend=be, **kw)
        runs[be] = (W, b, res.losses)
    assert np.array_equal(runs["cpp"][0], runs["numba"][0])
    assert np.array_equal(runs["cpp"][1], runs["numba"][1])
    assert np.array_equal(runs["cpp"][2], runs["numba"][2])
    # and within a few eps of the plain numpy loop, which sums in another order (measured: at
    # most 2 eps on these shapes)
    Wn, bn, _ = train_reference(
        X,
        Y,
        W0,
        b0,
        batch_size=B,
        epochs=2,
        lr=0.01,
        order=orders,
        momentum=0.9,
        weight_decay=1e-3,
        exact=False,
    )
    assert eps_distance(runs["cpp"][0], Wn) <= 16
    assert eps_distance(runs["cpp"][1], bn) <= 16


# (N, U) for the register-blocked X^T e: output groups of one to four (U = 5, 7, 9 leave a
# partial group), column blocks of every width up to the register budget and a scalar tail
# (N not a multiple of the vector width), on batches long enough (>= 16 rows a chunk) to take it
BLOCKED_N = [1, 3, 8, 13, 33, 100]
BLOCKED_U = [1, 2, 3, 4, 5, 7, 9]


@pytest.mark.parametrize("dt", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("N", BLOCKED_N)
@pytest.mark.parametrize("U", BLOCKED_U)
def test_output_groups_and_column_blocks_agree_bitwise(dt, N, U):
    M, B = 203, 67  # ragged last batch; 67 rows make several chunks only for long rows
    rng = np.random.default_rng(100 * N + U)
    X = rng.standard_normal((M, N)).astype(dt)
    Y = rng.standard_normal((M, U)).astype(dt)
    W0 = (rng.standard_normal((U, N)) / np.sqrt(N)).astype(dt)
    b0 = rng.standard_normal(U).astype(dt)
    kw = dict(batch_size=B, epochs=2, lr=0.02, momentum=0.5)
    # the numba backend (which repeats the C++ order) where installed; two C++ threads always
    others = [("cpp", 2)] + ([("numba", 1)] if "numba" in cpu_backends() else [])
    runs = {}
    for be, threads in [("cpp", 1), *others]:
        W, b = W0.copy(), b0.copy()
        res = kernels.train(X, Y, W, b, backend=be, n_threads=threads, **kw)
        runs[be, threads] = (W, b, res.losses)
    for other in others:
        for k in range(3):
            assert np.array_equal(runs["cpp", 1][k], runs[other][k]), (other, k)
    Wn, bn, _ = train_reference(X, Y, W0, b0, exact=False, **kw)
    assert eps_distance(runs["cpp", 1][0], Wn) <= 16
    assert eps_distance(runs["cpp", 1][1], bn) <= 16


def test_threaded_column_split_agrees_bitwise():
    # large enough (batch * N * U >= 2**14) that two threads really split the columns of X^T e
    rng = np.random.default_rng(7)
    X = rng.standard_normal((640, 100))
    Y = rng.standard_normal((640, 5))
    W0 = rng.standard_normal((5, 100)) / 10
    b0 = rng.standard_normal(5)
    out = []
    for threads in (1, 2):
        W, b = W0.copy(), b0.copy()
        res = kernels.train(X, Y, W, b, batch_size=320, epochs=2, lr=0.01, n_threads=threads)
        out.append((W, b, res.losses))
    for k in range(3):
        assert np.array_equal(out[0][k], out[1][k])
