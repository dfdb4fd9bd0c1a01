"""Sources over sliceable arrays: numpy, memmap, ``.npy`` files, h5py datasets, zarr and dask
arrays."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._source import DEFAULT_CHUNK_ROWS, SourceBase, positive_int, source_dtype

__all__ = ["ArraySource"]


def _load(a: Any, name: str) -> Any:
    """A path to a ``.npy`` file opened as a read-only memmap; anything else as it is."""
    if isinstance(a, (str, os.PathLike)):
        path = os.fspath(a)
        if not path.endswith(".npy"):
            raise ValueError(f"{name}: only .npy paths are opened here, got {path!r}")
        try:
            return np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise ValueError(f"{name}: cannot read {path!r}: {exc}") from None
    if not hasattr(a, "shape") or not hasattr(a, "__getitem__"):
        raise TypeError(
            f"{name} must be an array with .shape and slicing (numpy, memmap, h5py, zarr, dask) "
            f"or a .npy path, got {type(a).__name__}"
        )
    return a


def _columns(value: Any, n: int, name: str) -> list[int]:
    cols = [value] if isinstance(value, (int, np.integer)) else list(value)
    for c in cols:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not -n <= c < n:
            raise ValueError(f"{name}: column {c!r} is not an integer in [-{n}, {n})")
    return [int(c) % n for c in cols]


def _read(arr: Any, index: Any) -> np.ndarray:
    out = arr[index]
    if hasattr(out, "compute"):  # dask
        out = out.compute()
    return np.asarray(out)


class ArraySource(SourceBase):
    """Chunks of rows from arrays that slice (numpy, memmap, h5py, zarr, dask, ``.npy`` paths).

    Parameters
    ----------
    X : array or str
        ``(n_rows, n_columns)``; a ``.npy`` path is opened as a read-only memmap.
    y : array or str, optional
        ``(n_rows,)`` or ``(n_rows, n_targets)``. When None, ``target`` names the columns of
        ``X`` that are the targets (None too: features only, for prediction).
    target : int or list of int, optional
        With ``y=None``: the target column(s) of ``X`` (an int gives a 1-D target).
    features : list of int, optional
        The feature columns of ``X`` (default: every column that is not a target).
    chunk_rows : int, optional
        Rows per chunk (default 65536; for a dask array, its row blocks).
    dtype : str or numpy.dtype, optional
        The dtype: float32 or float64 (default: float32 data stays float32, anything else float64).
    prefetch : int, default=2
        Chunks read ahead by a background thread while the model trains (0: none).

    Notes
    -----
    Random access (:meth:`take`) reads the given rows with one fancy index (zarr: its
    orthogonal index), so ``shuffle=True`` works on every array source.
    """

    def __init__(
        self,
        X: Any,
        y: Any = None,
        *,
        target: Any = None,
        features: Any = None,
        chunk_rows: int | None = None,
        dtype: Any = None,
        prefetch: int = 2,
    ) -> None:
        X = _load(X, "X")
        if len(X.shape) != 2:
            raise ValueError(f"X must be 2-D (rows, columns), got shape {tuple(X.shape)}")
        n, ncol = (int(s) for s in X.shape)
        if y is None:
            tcols = [] if target is None else _columns(target, ncol, "target")
            target_1d = isinstance(target, (int, np.integer))
            fcols = [c for c in range(ncol) if c not in tcols]
        else:
            y = _load(y, "y")
            if len(y.shape) not in (1, 2) or int(y.shape[0]) != n:
                raise ValueError(
                    f"y must have shape ({n},) or ({n}, n_targets), got {tuple(y.shape)}"
                )
            tcols = None
            target_1d = len(y.shape) == 1
            fcols = list(range(ncol))
        if features is not None:
            fcols = _columns(features, ncol, "features")
        self._all_features = y is not None and fcols == list(range(ncol))
        self._X, self._y, self._fcols, self._tcols = X, y, fcols, tcols
        n_targets = len(tcols) if y is None else (1 if len(y.shape) == 1 else int(y.shape[1]))
        super().__init__(len(fcols), n_targets, source_dtype(dtype, X.dtype), prefetch, True)
        self.target_1d = target_1d
        self.n_rows = n
        dask_blocks = getattr(X, "chunks", None)
        if chunk_rows is None and hasattr(X, "compute") and dask_blocks is not None:
            sizes = [int(s) for s in dask_blocks[0]]
        else:
            rows = (
                DEFAULT_CHUNK_ROWS if chunk_rows is None else positive_int(chunk_rows, "chunk_rows")
            )
            sizes = [min(rows, n - a) for a in range(0, n, rows)]
        self._starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self.n_chunks = len(sizes)

    def _split(self, block: np.ndarray, yblock: np.ndarray | None) -> tuple:
        if self._y is not None:
            X = block if self._all_features else block[:, self._fcols]
            return self._pair(X, yblock)
        y = block[:, self._tcols[0]] if self.target_1d else block[:, self._tcols]
        return self._pair(block[:, self._fcols], y)

    def iter_chunks(self, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(X, y)`` chunks in row order, from chunk number ``start`` on.

        Parameters
        ----------
        start : int, default=0
            The first chunk.

        Yields
        ------
        tuple of numpy.ndarray
            ``(X, y)``, C-contiguous, of the source dtype.
        """
        for k in range(start, self.n_chunks):
            sl = slice(int(self._starts[k]), int(self._starts[k + 1]))
            yb = None if self._y is None else _read(self._y, sl)
            yield self._split(_read(self._X, sl), yb)

    def take(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows ``rows`` (sorted, without repeats) as one ``(X, y)`` pair.

        Parameters
        ----------
        rows : numpy.ndarray
            Row numbers (int64), increasing.

        Returns
        -------
        tuple of numpy.ndarray
            ``(X, y)``.
        """
        rows = np.asarray(rows, dtype=np.int64)

        def gather(a: Any) -> np.ndarray:
            if hasattr(a, "oindex"):  # zarr
                return np.asarray(a.oindex[rows])
            return _read(a, rows)

        return self._split(gather(self._X), None if self._y is None else gather(self._y))
