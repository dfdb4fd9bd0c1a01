"""Chunk sources: one-line errors naming the problem, a model left as it was, bounded memory,
the command line's round trip, and dask."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from helpers import problem
from linsgd import LinearRegressor
from linsgd.cli import main
from linsgd.io import ArraySource, CSVSource, IterableSource, load_model, open_path, save_model

pa = pytest.importorskip("pyarrow", reason="pyarrow (the io extra) is needed")
import pyarrow.parquet as pq  # noqa: E402


def _data(M=300, N=3, seed=0):
    X, y = problem(M, N, 1, np.float64, seed)[:2]
    return X, y


def _csv(path, X, y, names=None):
    names = names or [f"x{j}" for j in range(X.shape[1])] + ["t"]
    np.savetxt(
        path,
        np.column_stack([X, y]),
        delimiter=",",
        fmt="%.17g",
        header=",".join(names),
        comments="",
    )
    return path


def test_nan_in_chunk_names_chunk_and_row():
    X, y = _data()
    X = X.copy()
    X[170, 1] = np.nan
    with pytest.raises(ValueError, match=r"chunk 3 of the source, row 20 \(row 170 overall\)"):
        LinearRegressor(epochs=2).fit(ArraySource(X, y, chunk_rows=50))
    with pytest.raises(ValueError, match=r"row 170 of the source"):
        LinearRegressor(epochs=2, shuffle=True, random_state=0).fit(
            ArraySource(X, y, chunk_rows=50)
        )


def test_failing_reader_leaves_model_unchanged():
    X, y = _data()
    est = LinearRegressor(epochs=2, momentum=0.9).fit(X, y)
    before = (est.coef_.copy(), est.intercept_, dict(est.history_), est.n_iter_)

    def chunks():
        yield X[:100], y[:100]
        yield X[100:200], y[100:200]
        raise OSError("disk gone")

    for call in (est.fit, est.partial_fit):
        with pytest.raises(OSError, match="disk gone"):  # re-raised from the read-ahead thread
            call(IterableSource(chunks))
        assert np.array_equal(est.coef_, before[0]) and est.intercept_ == before[1]
        assert est.history_ == before[2] and est.n_iter_ == before[3]


def test_refusals_name_the_problem(tmp_path):
    X, y = _data()
    it = IterableSource([(X[:150], y[:150]), (X[150:], y[150:])])
    with pytest.raises(ValueError, match="shuffle=True needs a source with random access"):
        LinearRegressor(shuffle=True).fit(it)
    with pytest.raises(ValueError, match="shuffle='chunks' is for chunk sources"):
        LinearRegressor(shuffle="chunks").fit(X, y)
    with pytest.raises(ValueError, match="shuffle must be True, False or 'chunks'"):
        LinearRegressor(shuffle="rows").fit(X, y)
    with pytest.raises(ValueError, match="y must be None when X is a chunk source"):
        LinearRegressor().fit(it, y)
    with pytest.raises(ValueError, match="sample_weight is not supported"):
        LinearRegressor().fit(it, sample_weight=np.ones(300))
    with pytest.raises(ValueError, match="early_stopping=True"):
        LinearRegressor(early_stopping=True).fit(it)
    with pytest.raises(
        ValueError, match="source has 3 features and 1 targets, but the model has 4"
    ):
        LinearRegressor().fit(np.ones((10, 4)), np.ones(10)).partial_fit(it)
    with pytest.raises(ValueError, match="the source gave no rows"):
        LinearRegressor().fit(IterableSource([(np.ones((0, 3)), np.ones(0))]))
    with pytest.raises(ValueError, match="drop_last=True with batch_size=32 > the rows"):
        LinearRegressor(drop_last=True).fit(IterableSource([(X[:20], y[:20])]))
    with pytest.raises(FileNotFoundError, match="not found"):
        open_path(tmp_path / "missing.csv", target="t")
    with pytest.raises(ValueError, match=r"unknown data format '\.txt'"):
        open_path(tmp_path / "a.txt")
    p = _csv(tmp_path / "d.csv", X, y)
    with pytest.raises(
        ValueError, match=r"column 'nope' not found in .*it has \['x0', 'x1', 'x2', 't'\]"
    ):
        CSVSource(p, target="nope")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,t\n1,2\nhello,3\n")
    with pytest.raises(ValueError, match=r"chunk 0 .*hello"):
        LinearRegressor().fit(CSVSource(bad, target="t"))
    pq.write_table(pa.table({"s": ["a", "b"], "t": [1.0, 2.0]}), tmp_path / "s.parquet")
    with pytest.raises(TypeError, match=r"column 's' .* has type string, expected numbers"):
        open_path(tmp_path / "s.parquet", target="t")
    with pytest.raises(ImportError, match=r"pip install 'linsgd\[io\]'"):
        from linsgd.io._source import import_optional

        import_optional("no_such_module_xyz", "reading this")


def test_model_file_round_trip_and_refusal(tmp_path):
    X, y = _data()
    est = LinearRegressor(epochs=2, momentum=0.9, shuffle=True, random_state=3).fit(X, y)
    save_model(est, tmp_path / "m.npz", metadata={"target": "t"})
    back, header = load_model(tmp_path / "m.npz")
    assert header["format"] == "linsgd-model" and header["version"] == 1
    assert np.array_equal(back.coef_, est.coef_) and back.intercept_ == est.intercept_
    assert np.array_equal(back.predict(X), est.predict(X))
    est.partial_fit(X, y)  # momentum buffers and the shuffle stream came back too
    back.partial_fit(X, y)
    assert np.array_equal(back.coef_, est.coef_) and back.history_ == est.history_
    np.savez(tmp_path / "other.npz", coef_=np.ones(3))
    with pytest.raises(ValueError, match="is not a linsgd model file"):
        load_model(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="is not a linsgd model file"):
        load_model(tmp_path / "junk.npz")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_cli_fit_predict_round_trip(fmt, tmp_path, capsys):
    X, y = _data(400)
    cols = {f"x{j}": X[:, j] for j in range(3)} | {"t": y}
    if fmt == "csv":
        data = str(_csv(tmp_path / "d.csv", X, y))
    else:
        data = str(tmp_path / "d.parquet")
        pq.write_table(pa.table(cols), data, row_group_size=150)
    model, out = str(tmp_path / "m.npz"), str(tmp_path / "p.npy")
    args = [
        "fit",
        data,
        "--target",
        "t",
        "--features",
        "x0,x1,x2",
        "--lr",
        "0.05",
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--momentum",
        "0.9",
        "--shuffle",
        "--seed",
        "5",
        "--chunk-rows",
        "70",
        "-o",
        model,
    ]
    assert main(args) == 0
    assert main(["predict", model, data, "-o", out]) == 0
    ref = LinearRegressor(
        lr=0.05, epochs=3, batch_size=16, momentum=0.9, shuffle=True, random_state=5
    ).fit(X, y)
    got, _ = load_model(model)
    assert np.array_equal(got.coef_, ref.coef_) and got.history_ == ref.history_
    assert np.array_equal(np.load(out), ref.predict(X))
    assert main(["info", model]) == 0
    assert "linsgd-model version 1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "{d}/missing.csv", "--target", "t", "-o", "{d}/m.npz"], "data file not found"),
        (["fit", "{d}/d.csv", "--target", "zz", "-o", "{d}/m.npz"], "column 'zz' not found"),
        (["fit", "{d}/nan.csv", "--target", "t", "-o", "{d}/m.npz"], "row 1 overall): X holds NaN"),
        (["fit", "{d}/d.csv", "--target", "t", "--lr", "x", "-o", "{d}/m.npz"], "invalid float"),
        (["fit", "{d}/d.csv", "--target", "t"], "the following arguments are required: -o"),
        (["info", "{d}/d.csv"], "is not a linsgd model file"),
        (["predict", "{d}/m0.npz", "{d}/d.csv", "-o", "{d}/p.txt"], "expected a .npy or .csv path"),
        (["fit", "{d}/s.csv", "--target", "t", "-o", "{d}/m.npz"], "invalid value 'abc'"),
    ],
)  # fmt: skip
def test_cli_errors_are_one_line(args, message, tmp_path, capsys):
    X, y = _data(20)
    _csv(tmp_path / "d.csv", X, y)
    (tmp_path / "nan.csv").write_text("x0,t\n1,2\n,3\n")
    (tmp_path / "s.csv").write_text("x0,t\n1,2\nabc,3\n")
    assert (
        main(["fit", str(tmp_path / "d.csv"), "--target", "t", "-o", str(tmp_path / "m0.npz")]) == 0
    )
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([a.format(d=tmp_path) for a in args])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("linsgd ") and message in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_memory_bounded_on_a_file_many_chunks_long(tmp_path):
    """Training from a .npy file 20 chunks long keeps the peak Python allocation within a few
    chunks (tracemalloc, in a fresh process, after a first small fit has compiled the kernels;
    memmap pages are not allocations)."""
    M, N, rows = 200_000, 16, 10_000  # 25.6 MB of X; a chunk is 1.28 MB
    path = tmp_path / "big.npy"
    a = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(M, N + 1))
    rng = np.random.default_rng(0)
    for s in range(0, M, rows):
        a[s : s + rows] = rng.standard_normal((rows, N + 1))
    a.flush()
    del a
    code = textwrap.dedent(f"""
        import tracemalloc, linsgd
        from linsgd.io import open_path
        src = open_path({str(path)!r}, target={N}, chunk_rows={rows})
        # compiled first (numba's compiler allocates), then traced
        X0, y0 = next(src.iter_chunks(0))
        linsgd.LinearRegressor(epochs=1, momentum=0.9, batch_size=64).fit(X0[:100], y0[:100])
        tracemalloc.start()
        linsgd.LinearRegressor(epochs=2, lr=0.01, momentum=0.9, batch_size=64).fit(src)
        print(tracemalloc.get_traced_memory()[1])
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    peak = int(out.stdout.split()[-1])
    chunk = rows * (N + 1) * 8
    size = M * (N + 1) * 8
    print(f"peak traced {peak / 1e6:.1f} MB = {peak / chunk:.1f} chunks; file {size / 1e6:.1f} MB")
    assert peak < 8 * chunk  # read-ahead holds 2, plus the one in training and its copies


def test_dask_ml_incremental_on_local_cluster():
    distributed = pytest.importorskip("distributed")
    dask_ml = pytest.importorskip("dask_ml.wrappers")
    da = pytest.importorskip("dask.array")
    X, y = _data(400)
    dX, dy = da.from_array(X, chunks=(100, 3)), da.from_array(y, chunks=100)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster, timeout=60),
    ):
        inc = dask_ml.Incremental(
            LinearRegressor(momentum=0.9, lr=0.05, batch_size=16), shuffle_blocks=False
        )  # block order as sequential partial_fit
        inc.fit(dX, dy)
    ref = LinearRegressor(momentum=0.9, lr=0.05, batch_size=16)
    for a in range(0, 400, 100):
        ref.partial_fit(X[a : a + 100], y[a : a + 100])
    assert np.array_equal(inc.estimator_.coef_, ref.coef_)
    assert inc.estimator_._optimizer_state["step"] == ref._optimizer_state["step"]


def test_cli_bench_runs_or_says_where_it_lives(tmp_path, monkeypatch, capfd):
    import linsgd._cli_data as cli_data

    assert main(["bench", "--streaming", "--quick", "--formats", "npy,csv"]) == 0
    out = capfd.readouterr().out
    assert "in memory: one epoch" in out and "csv" in out
    monkeypatch.setattr(cli_data, "__file__", str(tmp_path / "a" / "b" / "_cli_data.py"))
    monkeypatch.chdir(tmp_path)  # neither beside the package nor in the current directory
    with pytest.raises(SystemExit) as exc:
        main(["bench"])
    assert exc.value.code == 2
    assert "bench/run.py not found" in capfd.readouterr().err
