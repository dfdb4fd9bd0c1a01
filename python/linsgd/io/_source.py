"""The chunk-source protocol, and what every source shares: chunk checks, row selection."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["ChunkSource", "SourceBase", "import_optional", "is_source"]

DEFAULT_CHUNK_ROWS = 65536


@runtime_checkable
class ChunkSource(Protocol):
    """What :meth:`linsgd.LinearRegressor.fit` reads from a data source.

    Attributes
    ----------
    n_rows : int or None
        Rows in the source, or None when not known before a full pass (a CSV file, a
        generator).
    n_features : int
        Columns of each chunk's ``X``.
    n_targets : int
        Columns of each chunk's ``y`` (1 for a 1-D target).
    target_1d : bool
        Whether ``y`` is 1-D (a single-output model with 1-D ``coef_``).
    dtype : numpy.dtype
        float32 or float64: the dtype the chunks are read into.
    n_chunks : int or None
        Number of chunks, when known.
    random_access : bool
        Whether :meth:`take` is available (``shuffle=True`` needs it).
    """

    n_rows: int | None
    n_features: int
    n_targets: int
    target_1d: bool
    dtype: np.dtype
    n_chunks: int | None
    random_access: bool

    def iter_chunks(self, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(X, y)`` chunks in storage order, from chunk number ``start`` on.

        Parameters
        ----------
        start : int, default=0
            The first chunk.

        Yields
        ------
        tuple of numpy.ndarray
            ``(X, y)``: ``X`` of shape ``(rows, n_features)``, ``y`` of shape ``(rows,)``
            (``target_1d``) or ``(rows, n_targets)``.
        """

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


def is_source(obj: Any) -> bool:
    """Whether ``obj`` is a chunk source (has ``iter_chunks`` and ``n_features``).

    Parameters
    ----------
    obj : object
        Anything.

    Returns
    -------
    bool
        True for a source.
    """
    return callable(getattr(obj, "iter_chunks", None)) and hasattr(obj, "n_features")


def import_optional(module: str, what: str) -> Any:
    """Import an optional dependency, or raise ImportError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise ImportError(
            f"{what} needs the optional dependency {top!r}, which is not installed: "
            f"pip install 'linsgd[io]' (or pip install {top})"
        ) from exc


def source_dtype(dtype: Any, data_dtype: Any) -> np.dtype:
    """The dtype chunks are read into: ``dtype`` if given, else float32 data stays float32."""
    if dtype is not None:
        dt = np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            raise ValueError(f"dtype must be None, 'float32' or 'float64', got {dtype!r}")
        return dt
    return np.dtype(np.float32) if np.dtype(data_dtype) == np.float32 else np.dtype(np.float64)


def positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class SourceBase:
    """Shared by the sources of :mod:`linsgd.io`: the protocol's attributes and chunk checks.

    ``prefetch`` chunks are read ahead by a background thread while the model trains (0: read
    in the training thread).
    """

    def __init__(
        self, n_features: int, n_targets: int, dtype: np.dtype, prefetch: int, random_access: bool
    ) -> None:
        self.n_rows: int | None = None
        self.n_chunks: int | None = None
        self.random_access = random_access
        self.target_1d = True
        self.n_features = int(n_features)
        self.n_targets = int(n_targets)
        self.dtype = np.dtype(dtype)
        self.prefetch = positive_int(prefetch, "prefetch", minimum=0)

    def __repr__(self) -> str:
        rows = "?" if self.n_rows is None else self.n_rows
        return (
            f"{type(self).__name__}(rows={rows}, features={self.n_features}, "
            f"targets={self.n_targets}, dtype={self.dtype.name})"
        )

    def _pair(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """A chunk as C-contiguous arrays of the source dtype, ``y`` shaped as declared."""
        X = np.ascontiguousarray(X, dtype=self.dtype)
        y = np.ascontiguousarray(y, dtype=self.dtype)
        if self.target_1d:
            y = y.reshape(-1)
        elif y.ndim == 1:
            y = y.reshape(-1, 1)
        return X, y

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
        raise TypeError(
            f"{type(self).__name__} has no random access by row: use shuffle='chunks' or "
            "shuffle=False"
        )
