"""Sources from paths (by file extension) and from whatever ``fit`` is given."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ._arrays import ArraySource
from ._iterable import IterableSource
from ._source import import_optional, is_source
from ._tables import CSVSource, ParquetSource

__all__ = ["as_source", "is_dask_array", "open_path"]

FORMATS = (".npy", ".npz", ".csv", ".parquet", ".pq", ".h5", ".hdf5", ".zarr")


def is_dask_array(a: Any) -> bool:
    """Whether ``a`` is a dask array (checked without importing dask)."""
    return type(a).__module__.split(".")[0] == "dask" and hasattr(a, "chunks")


def _index_or_name(value: Any) -> Any:
    """A CLI column given as text: an integer index when it reads as one."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    if isinstance(value, (list, tuple)):
        return [_index_or_name(v) for v in value]
    return value


def _one_array(arr: Any, target: Any, features: Any, path: str, **kw: Any) -> ArraySource:
    target = _index_or_name(target)
    features = _index_or_name(features)
    if target is not None and not all(
        isinstance(c, int) for c in np.atleast_1d(np.asarray(target, dtype=object))
    ):
        raise ValueError(f"{path!r} holds one array: target must be a column index, got {target!r}")
    return ArraySource(arr, target=target, features=features, **kw)


def _named(container: Any, target: Any, features: Any, path: str, **kw: Any) -> ArraySource:
    xname = "X" if features is None else features
    yname = target if target is not None else ("y" if "y" in container else None)
    for name in (xname, yname):
        if name is not None and (not isinstance(name, str) or name not in container):
            keys = sorted(container.keys())
            raise ValueError(f"array {name!r} not found in {path!r}; it has {keys}")
    if yname is None:  # features only (prediction)
        return ArraySource(container[xname], **kw)
    return ArraySource(container[xname], container[yname], **kw)


def open_path(
    path: Any,
    target: Any = None,
    features: Any = None,
    *,
    chunk_rows: int | None = None,
    dtype: Any = None,
    prefetch: int = 2,
) -> Any:
    """A chunk source for a file, chosen by its extension.

    Parameters
    ----------
    path : str or os.PathLike
        ``.npy`` (memmap), ``.npz``, ``.csv``, ``.parquet``/``.pq``, ``.h5``/``.hdf5`` (h5py) or
        a ``.zarr`` store.
    target : str, int or list, optional
        CSV/Parquet: the target column name(s). ``.npz``/HDF5/zarr group: the name of the
        target array (default ``"y"``). A single 2-D array (``.npy``, a zarr array): the target
        column index (or indices).
    features : str, int or list, optional
        CSV/Parquet: the feature columns (default: all others) or one fixed-size-list column.
        ``.npz``/HDF5/zarr group: the name of the feature array (default ``"X"``). A single
        array: the feature column indices (default: all but the target).
    chunk_rows : int, optional
        Rows per chunk (default 65536).
    dtype : str or numpy.dtype, optional
        The dtype: float32 or float64.
    prefetch : int, default=2
        Chunks read ahead while training (0: none).

    Returns
    -------
    ChunkSource
        The source.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    p = os.fspath(path).rstrip("/")
    ext = os.path.splitext(p)[1].lower()
    kw = {"chunk_rows": chunk_rows, "dtype": dtype, "prefetch": prefetch}
    if ext not in FORMATS:
        raise ValueError(
            f"{p!r}: unknown data format {ext or '(no extension)'!r}; expected one of "
            f"{', '.join(FORMATS)}"
        )
    if not os.path.exists(p):
        raise FileNotFoundError(f"data file not found: {p!r}")
    if ext == ".csv":
        return CSVSource(p, target, features, **kw)
    if ext in (".parquet", ".pq"):
        return ParquetSource(p, target, features, **kw)
    if ext == ".npy":
        return _one_array(p, target, features, p, **kw)
    if ext == ".npz":
        try:
            data = np.load(p)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {p!r} as .npz: {exc}") from None
        return _named(data, target, features, p, **kw)
    if ext in (".h5", ".hdf5"):
        h5py = import_optional("h5py", "reading HDF5 files")
        try:
            f = h5py.File(p, "r")
        except OSError as exc:
            raise ValueError(f"cannot read {p!r} as HDF5: {exc}") from None
        return _named(f, target, features, p, **kw)
    zarr = import_optional("zarr", "reading zarr stores")
    try:
        store = zarr.open(p, mode="r")
    except Exception as exc:  # zarr raises its own errors for a path that is not a store
        raise ValueError(f"cannot read {p!r} as zarr: {exc}") from None
    if hasattr(store, "shape"):
        return _one_array(store, target, features, p, **kw)
    return _named(store, target, features, p, **kw)


def as_source(X: Any, y: Any = None, **kwargs: Any) -> Any:
    """A chunk source for ``X`` (and ``y``): a source as it is, a path, an array, an iterable.

    Parameters
    ----------
    X : ChunkSource, str, array or iterable
        A source (returned as it is), a path (:func:`open_path`), an array that slices
        (:class:`ArraySource`, with ``y``) or an iterable of ``(X, y)`` chunks
        (:class:`IterableSource`).
    y : array, optional
        The targets, for an array ``X``.
    **kwargs
        Passed on to the source (``chunk_rows``, ``dtype``, ``prefetch``, ...).

    Returns
    -------
    ChunkSource
        The source.
    """
    if is_source(X):
        return X
    if isinstance(X, (str, os.PathLike)):
        return open_path(X, **kwargs)
    if hasattr(X, "shape") and hasattr(X, "__getitem__"):
        return ArraySource(X, y, **kwargs)
    return IterableSource(X, **kwargs)
