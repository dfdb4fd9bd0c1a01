"""Streaming benchmark: one epoch of ``LinearRegressor.fit`` from each file format, against the
time to read that file into numpy chunks (the floor a stream cannot beat).

All timed side by side in one process, warm (after an untimed first read), on the same rows,
chunks and dtype: the read alone, the epoch from the file with the read-ahead thread and
without it (``prefetch=0``), and, once, the epoch on the rows in memory (the training alone).
An epoch close to ``max(read, in memory)`` means the read-ahead thread hides the training.
``--quick`` uses a small file.

    python bench/streaming.py [--rows 2000000] [--features 64] [--chunk-rows 65536] [--quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import linsgd
from linsgd.io import open_path


def _write(kind: str, d: str, X: np.ndarray, y: np.ndarray) -> str:
    if kind == "npy":
        p = os.path.join(d, "d.npy")
        np.save(p, np.column_stack([X, y]))
    elif kind == "h5":
        import h5py

        p = os.path.join(d, "d.h5")
        with h5py.File(p, "w") as f:
            f.create_dataset("X", data=X, chunks=(min(65536, len(X)), X.shape[1]))
            f["y"] = y
    elif kind == "zarr":
        import zarr

        p = os.path.join(d, "d.zarr")
        g = zarr.open_group(p, mode="w")
        g.create_array("X", data=X, chunks=(min(65536, len(X)), X.shape[1]), compressors=None)
        g.create_array("y", data=y, chunks=(min(65536, len(X)),), compressors=None)
    elif kind in ("parquet", "parquet_list"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        p = os.path.join(d, f"{kind}.parquet")
        if kind == "parquet":
            cols = {f"x{j}": X[:, j] for j in range(X.shape[1])}
        else:
            cols = {"f": pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), X.shape[1])}
        pq.write_table(pa.table(cols | {"t": y}), p)
    else:
        p = os.path.join(d, "d.csv")
        names = ",".join([f"x{j}" for j in range(X.shape[1])] + ["t"])
        np.savetxt(
            p, np.column_stack([X, y]), delimiter=",", fmt="%.17g", header=names, comments=""
        )
    return p


def _source(kind: str, p: str, N: int, chunk_rows: int):
    if kind == "npy":
        return open_path(p, target=N, chunk_rows=chunk_rows)
    if kind in ("h5", "zarr"):
        return open_path(p, chunk_rows=chunk_rows)
    feats = "f" if kind == "parquet_list" else None
    return open_path(p, target="t", features=feats, chunk_rows=chunk_rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--chunk-rows", type=int, default=65536)
    ap.add_argument("--formats", default="npy,h5,zarr,parquet,parquet_list,csv")
    ap.add_argument("--quick", action="store_true", help="20,000 rows, 16 features")
    a = ap.parse_args()
    M, N = (20_000, 16) if a.quick else (a.rows, a.features)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((M, N))
    y = X @ rng.standard_normal(N) + 0.1 * rng.standard_normal(M)
    print(
        f"{M} x {N} float64 ({X.nbytes / 1e6:.0f} MB), chunks of {a.chunk_rows} rows, "
        "batch 256, one epoch"
    )
    est = linsgd.LinearRegressor(lr=1e-3, epochs=1, batch_size=256)
    est.fit(X, y)  # warm-up
    t = time.perf_counter()
    est.fit(X, y)
    t_mem = time.perf_counter() - t
    print(f"in memory: one epoch {t_mem:.3f} s ({X.nbytes / t_mem / 1e9:.2f} GB/s)")
    print(
        f"{'format':<14}{'read s':>9}{'read GB/s':>11}{'epoch s':>9}{'epoch/read':>12}"
        f"{'no read-ahead':>15}"
    )
    with tempfile.TemporaryDirectory() as d:
        for kind in a.formats.split(","):
            try:
                p = _write(kind, d, X, y)
            except ImportError as exc:
                print(f"{kind:<14} skipped: {exc}")
                continue
            src = _source(kind, p, N, a.chunk_rows)
            for _ in src.iter_chunks(0):  # warm the page cache
                pass
            t = time.perf_counter()
            for _ in src.iter_chunks(0):
                pass
            t_read = time.perf_counter() - t
            times = []
            for prefetch in (2, 0):
                src.prefetch = prefetch
                est = linsgd.LinearRegressor(lr=1e-3, epochs=1, batch_size=256)
                t = time.perf_counter()
                est.fit(src)
                times.append(time.perf_counter() - t)
            print(
                f"{kind:<14}{t_read:>9.3f}{X.nbytes / t_read / 1e9:>11.2f}{times[0]:>9.3f}"
                f"{times[0] / t_read:>12.2f}{times[1] / t_read:>15.2f}"
            )


if __name__ == "__main__":
    main()
