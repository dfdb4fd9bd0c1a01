"""A source over any iterable of ``(X, y)`` chunks."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ._source import SourceBase, source_dtype

__all__ = ["IterableSource"]


class IterableSource(SourceBase):
    """Chunks from a sequence of ``(X, y)`` pairs, a callable or a one-shot iterator.

    A callable returns a fresh iterable of them for each epoch; a one-shot iterator gives
    one epoch only.

    Parameters
    ----------
    chunks : sequence, callable or iterator of (X, y)
        The chunks, in order; each ``X`` is 2-D, each ``y`` 1-D (or 2-D for several targets).
    dtype : str or numpy.dtype, optional
        The dtype: float32 or float64 (default: float32 when the first chunk's ``X`` is
        float32, else float64).
    prefetch : int, default=2
        Chunks read ahead by a background thread while the model trains (0: none).

    Notes
    -----
    The first chunk is read when the source is made, for the number of features and targets.
    There is no random access: shuffle with ``shuffle='chunks'`` (a sequence or a callable) or
    not at all.
    """

    def __init__(self, chunks: Any, *, dtype: Any = None, prefetch: int = 2) -> None:
        self._seq = chunks if isinstance(chunks, Sequence) else None
        self._factory = chunks if callable(chunks) and self._seq is None else None
        self._once = None
        if self._seq is not None:
            if not self._seq:
                raise ValueError("IterableSource: the sequence of chunks is empty")
            first = self._seq[0]
        else:
            it = iter(self._factory() if self._factory is not None else chunks)
            try:
                first = next(it)
            except StopIteration:
                raise ValueError("IterableSource: the iterable of chunks is empty") from None
            if self._factory is None:
                self._once = itertools.chain([first], it)
        X, y = self._unpack(first, 0)
        X, y = np.asarray(X), np.asarray(y)
        if X.ndim != 2 or y.ndim not in (1, 2):
            raise ValueError(
                f"IterableSource: chunk 0 has X of shape {X.shape} and y of shape {y.shape}; "
                "expected 2-D X and 1-D or 2-D y"
            )
        U = 1 if y.ndim == 1 else y.shape[1]
        super().__init__(X.shape[1], U, source_dtype(dtype, X.dtype), prefetch, False)
        self.target_1d = y.ndim == 1
        if self._seq is not None:
            self.n_chunks = len(self._seq)

    @staticmethod
    def _unpack(item: Any, k: int) -> tuple[Any, Any]:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f"IterableSource: chunk {k} is not an (X, y) pair")
        return item[0], item[1]

    def iter_chunks(self, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(X, y)`` chunks in order, from chunk number ``start`` on.

        Parameters
        ----------
        start : int, default=0
            The first chunk.

        Yields
        ------
        tuple of numpy.ndarray
            ``(X, y)``, C-contiguous, of the source dtype.
        """
        if self._seq is not None:
            items: Any = (self._seq[k] for k in range(start, len(self._seq)))
        elif self._factory is not None:
            items = itertools.islice(iter(self._factory()), start, None)
        else:
            if self._once is None:
                raise ValueError(
                    "IterableSource over a one-shot iterator can be read once (one epoch): "
                    "pass a list of chunks or a callable returning a fresh iterator"
                )
            items, self._once = itertools.islice(self._once, start, None), None
        for k, item in enumerate(items, start):
            X, y = self._unpack(item, k)
            X, y = self._pair(X, y)
            if X.ndim != 2 or X.shape[1] != self.n_features or len(y) != len(X):
                raise ValueError(
                    f"IterableSource: chunk {k} has X of shape {X.shape} and y of shape "
                    f"{y.shape}; expected ({len(X)}, {self.n_features}) and {len(X)} rows"
                )
            yield X, y
