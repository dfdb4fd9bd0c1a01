"""Training on chunk sources (linsgd.io): the bits of the in-memory fit, for every source type."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import linsgd
from helpers import problem
from linsgd import LinearRegressor, kernels
from linsgd.io import (
    ArraySource,
    CSVSource,
    IterableSource,
    ParquetSource,
    chunk_shuffle_order,
    open_path,
)

pa = pytest.importorskip("pyarrow", reason="pyarrow (the io extra) is needed")
import pyarrow.parquet as pq  # noqa: E402

M, N = 530, 4  # 530 rows: chunks of 77 and batches of 32 never line up


def _data(M=M, N=N, U=1, dtype=np.float64, seed=0):
    X, y = problem(M, N, U, dtype, seed)[:2]
    return np.ascontiguousarray(X), np.ascontiguousarray(y)


def _same(a: LinearRegressor, b: LinearRegressor) -> None:
    """Bit for bit: parameters, momentum buffers, history, counters, learning rates."""
    assert np.array_equal(a.coef_, b.coef_)
    assert np.array_equal(a.intercept_, b.intercept_)
    assert a.coef_.dtype == b.coef_.dtype
    assert a.history_ == b.history_  # lists of floats: == compares exact values
    assert (a.n_iter_, a.t_, a.lr_history_) == (b.n_iter_, b.t_, b.lr_history_)
    sa, sb = a._optimizer_state, b._optimizer_state
    assert sa.keys() == sb.keys()
    for k in sa:
        if isinstance(sa[k], np.ndarray):
            assert np.array_equal(sa[k], sb[k])
        else:
            assert sa[k] == sb[k]


CONFIGS = {
    "plain": dict(lr=0.05),
    "momentum_schedule": dict(
        lr=linsgd.schedules.StepLR(0.05, step_size=2, gamma=0.5),
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-3,
    ),
    "shuffle": dict(lr=0.05, momentum=0.9, shuffle=True, random_state=7, l2=1e-3),
    "drop_last": dict(lr=0.05, momentum=0.5, shuffle=True, random_state=1, drop_last=True),
}


def _write(kind: str, tmp_path, X, y):
    """The same rows in a file of the given kind, and its source (chunks of 77 rows)."""
    if kind == "numpy":
        return ArraySource(X, y, chunk_rows=77)
    if kind == "npy":
        p = tmp_path / "d.npy"
        np.save(p, np.column_stack([X, y]))
        return open_path(p, target=N, chunk_rows=77)
    if kind == "h5":
        h5py = pytest.importorskip("h5py")
        p = tmp_path / "d.h5"
        with h5py.File(p, "w") as f:
            f["X"], f["y"] = X, y
        return open_path(p, chunk_rows=77)
    if kind == "zarr":
        zarr = pytest.importorskip("zarr")
        p = tmp_path / "d.zarr"
        g = zarr.open_group(str(p), mode="w")
        g.create_array("X", data=X, chunks=(50, N))
        g.create_array("y", data=y, chunks=(50,))
        return open_path(p, chunk_rows=77)
    if kind == "dask":
        da = pytest.importorskip("dask.array")
        return ArraySource(da.from_array(X, chunks=(77, N)), da.from_array(y, chunks=77))
    cols = {f"x{j}": X[:, j] for j in range(N)} | {"t": y}
    if kind == "parquet":
        p = tmp_path / "d.parquet"
        pq.write_table(pa.table(cols), p, row_group_size=200)
        return ParquetSource(p, target="t", chunk_rows=77)
    if kind == "parquet_list":
        p = tmp_path / "dl.parquet"
        feats = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), N)
        pq.write_table(pa.table({"f": feats, "t": y}), p, row_group_size=200)
        return ParquetSource(p, target="t", features="f", chunk_rows=77)
    if kind == "csv":
        p = tmp_path / "d.csv"
        np.savetxt(
            p,
            np.column_stack([X, y]),
            delimiter=",",
            fmt="%.17g",
            header=",".join(list(cols)),
            comments="",
        )
        return CSVSource(p, target="t", chunk_rows=77)
    assert kind == "iterable"
    return IterableSource([(X[a : a + 77], y[a : a + 77]) for a in range(0, len(X), 77)])


KINDS = ["numpy", "npy", "h5", "zarr", "dask", "parquet", "parquet_list", "csv", "iterable"]


# an iterable has no random access: shuffle=True on it is refused (test_io_errors.py)
CASES = [
    (k, c) for k in KINDS for c in CONFIGS if not (k == "iterable" and "shuffle" in CONFIGS[c])
]


@pytest.mark.parametrize(("kind", "config"), CASES)
def test_source_fit_equals_in_memory(kind, config, tmp_path, backend):
    X, y = _data()
    Xv, yv = _data(60, seed=5)
    kw = dict(CONFIGS[config], epochs=4, batch_size=32, backend=backend)
    ref = LinearRegressor(**kw).fit(X, y, eval_set=(Xv, yv))
    src = _write(kind, tmp_path, X, y)
    got = LinearRegressor(**kw).fit(src, eval_set=(Xv, yv))
    _same(ref, got)


@pytest.mark.parametrize("prefetch", [0, 1, 3])
@pytest.mark.parametrize("chunk_rows", [1, 31, 32, 33, 530, 1000])
def test_chunk_sizes_and_read_ahead(chunk_rows, prefetch, dtype):
    X, y = _data(dtype=dtype)
    kw = dict(lr=0.05, momentum=0.9, epochs=3, batch_size=32, shuffle=True, random_state=2)
    ref = LinearRegressor(**kw).fit(X, y)
    got = LinearRegressor(**kw).fit(ArraySource(X, y, chunk_rows=chunk_rows, prefetch=prefetch))
    _same(ref, got)
    assert got.coef_.dtype == dtype


def test_multi_output_and_float32_file(tmp_path):
    X, y = _data(U=3, dtype=np.float32)
    p = tmp_path / "m.npz"
    np.savez(p, X=X, y=y)
    kw = dict(lr=0.02, momentum=0.9, epochs=3, batch_size=16)
    _same(LinearRegressor(**kw).fit(X, y), LinearRegressor(**kw).fit(open_path(p, chunk_rows=50)))


def test_partial_fit_carries_state(backend):
    X, y = _data()
    kw = dict(lr=0.05, momentum=0.9, batch_size=32, shuffle=True, random_state=4, backend=backend)
    ref = LinearRegressor(epochs=3, **kw).fit(X, y)
    got = LinearRegressor(**kw)
    for _ in range(3):
        got.partial_fit(ArraySource(X, y, chunk_rows=45))
    _same(ref, got)
    mixed = LinearRegressor(**kw).partial_fit(X, y)  # in memory, then from a source
    mixed.partial_fit(ArraySource(X, y, chunk_rows=100)).partial_fit(X, y)
    _same(ref, mixed)


def test_stopping_rules_and_eval_source():
    X, y = _data()
    Xv, yv = _data(90, seed=9)
    for kw in (
        dict(target_loss=0.05),
        dict(tol=1e-3, n_iter_no_change=2),
        dict(target_loss=0.05, shuffle=True, random_state=3),
    ):
        kw = dict(kw, lr=0.05, momentum=0.9, epochs=30, batch_size=8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ref = LinearRegressor(**kw).fit(X, y, eval_set=(Xv, yv))
            got = LinearRegressor(**kw).fit(
                ArraySource(X, y, chunk_rows=41), eval_set=ArraySource(Xv, yv, chunk_rows=20)
            )
        _same(ref, got)
        assert ref.n_iter_ < 30  # a stopping rule fired, part-way through the run
        assert got.best_epoch_ == ref.best_epoch_
        # after the stop the shuffle stream continues where the DataLoader's would
        ref.partial_fit(X, y)
        got.partial_fit(ArraySource(X, y, chunk_rows=41))
        _same(ref, got)


def test_lr_auto_and_init_torch():
    X, y = _data()
    kw = dict(lr="auto", init="torch", random_state=3, epochs=2, batch_size=32, momentum=0.9)
    ref = LinearRegressor(**kw).fit(X, y)
    got = LinearRegressor(**kw).fit(ArraySource(X, y, chunk_rows=60))
    _same(ref, got)
    assert got._auto_lr == ref._auto_lr


def test_shuffle_chunks_equals_kernels_train_with_orders():
    X, y = _data()
    sizes = [77] * 6 + [68]
    src = IterableSource([(X[a : a + 77], y[a : a + 77]) for a in range(0, M, 77)])
    est = LinearRegressor(
        lr=0.05, momentum=0.9, epochs=3, batch_size=32, shuffle="chunks", random_state=11
    ).fit(src)
    orders = np.stack([chunk_shuffle_order(sizes, 11, e) for e in range(3)])
    assert sorted(orders[1].tolist()) == list(range(M))  # a permutation of the rows
    W, b, state = np.zeros((1, N)), np.zeros(1), {}
    res = kernels.train(
        X, y, W, b, batch_size=32, epochs=3, lr=0.05, momentum=0.9, orders=orders, state=state
    )
    assert np.array_equal(est.coef_, W[0]) and est.intercept_ == b[0]
    assert est.history_["train_loss"] == [sum(r) / len(r) for r in res.losses.tolist()]
    # partial_fit continues with epoch n_iter_'s order
    est.partial_fit(src)
    kernels.train(
        X,
        y,
        W,
        b,
        batch_size=32,
        epochs=1,
        lr=0.05,
        momentum=0.9,
        state=state,
        orders=chunk_shuffle_order(sizes, 11, 3)[None],
    )
    assert np.array_equal(est.coef_, W[0])


def test_one_shot_iterator_gives_one_epoch():
    X, y = _data()
    gen = ((X[a : a + 50], y[a : a + 50]) for a in range(0, M, 50))
    got = LinearRegressor(lr=0.05, epochs=1, batch_size=32).fit(IterableSource(gen))
    _same(LinearRegressor(lr=0.05, epochs=1, batch_size=32).fit(X, y), got)
    gen = ((X[a : a + 50], y[a : a + 50]) for a in range(0, M, 50))
    with pytest.raises(ValueError, match="one-shot iterator can be read once"):
        LinearRegressor(lr=0.05, epochs=2).fit(IterableSource(gen))
    factory = IterableSource(lambda: ((X[a : a + 50], y[a : a + 50]) for a in range(0, M, 50)))
    _same(
        LinearRegressor(lr=0.05, epochs=3, batch_size=32).fit(X, y),
        LinearRegressor(lr=0.05, epochs=3, batch_size=32).fit(factory),
    )


def test_dask_array_directly():
    da = pytest.importorskip("dask.array")
    X, y = _data()
    kw = dict(lr=0.05, momentum=0.9, epochs=2, batch_size=32, shuffle=True, random_state=0)
    got = LinearRegressor(**kw).fit(da.from_array(X, chunks=(100, N)), da.from_array(y, chunks=100))
    _same(LinearRegressor(**kw).fit(X, y), got)


@pytest.mark.parametrize("kind", ["npy", "zarr", "parquet", "csv", "dask"])
def test_shuffle_chunks_on_files(kind, tmp_path):
    """``shuffle='chunks'`` reads chunk k with ``iter_chunks(start=k)``: the fit equals
    ``kernels.train`` with the documented orders, on every storage (Parquet chunks split row
    groups of 200 rows into 77 + 77 + 46)."""
    X, y = _data()
    src = _write(kind, tmp_path, X, y)
    sizes = [len(c) for c, _ in src.iter_chunks(0)]
    assert sum(sizes) == M and len(sizes) == src.n_chunks
    est = LinearRegressor(lr=0.05, momentum=0.9, epochs=2, batch_size=32, shuffle="chunks",
                          random_state=5).fit(src)  # fmt: skip
    orders = np.stack([chunk_shuffle_order(sizes, 5, e) for e in range(2)])
    W, b = np.zeros((1, N)), np.zeros(1)
    kernels.train(X, y, W, b, batch_size=32, epochs=2, lr=0.05, momentum=0.9, orders=orders)
    assert np.array_equal(est.coef_, W[0]) and est.intercept_ == b[0]


def test_warm_start_and_verbose_progress(capsys):
    X, y = _data()
    kw = dict(lr=0.05, momentum=0.9, epochs=2, batch_size=32, warm_start=True)
    ref = LinearRegressor(**kw).fit(X, y).fit(X, y)
    got = LinearRegressor(**kw).fit(ArraySource(X, y, chunk_rows=100))
    got.fit(ArraySource(X, y, chunk_rows=100))
    _same(ref, got)
    capsys.readouterr()
    LinearRegressor(lr=0.05, epochs=2, verbose=2).fit(ArraySource(X, y, chunk_rows=100))
    out = capsys.readouterr()
    assert out.out.count("epoch: ") == 2  # one line per epoch, as verbose=1
    assert out.err.count("rows/s") >= 2 and "MB/s" in out.err and f"{M:,} rows" in out.err


def test_read_ahead_thread_ends_when_training_stops_early():
    import threading

    X, y = _data()
    before = threading.active_count()
    est = LinearRegressor(lr=0.05, epochs=50, batch_size=8, target_loss=0.05)
    est.fit(ArraySource(X, y, chunk_rows=10, prefetch=2))
    assert est.n_iter_ < 50 and est.t_ < est.n_iter_ * -(-M // 8)  # stopped inside an epoch
    assert threading.active_count() == before
