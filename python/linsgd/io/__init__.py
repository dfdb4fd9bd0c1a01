"""Training data from files and streams: chunk sources for :meth:`LinearRegressor.fit`.

A source yields ``(X, y)`` chunks of rows (:class:`ChunkSource`); ``fit(source)`` trains on
them with the batches, and so the bits, of the in-memory fit on the same rows. Optional
readers (pyarrow, h5py, zarr, dask) are imported only when used: ``pip install 'linsgd[io]'``.
"""

from __future__ import annotations

from ._arrays import ArraySource
from ._iterable import IterableSource
from ._model import load_model, save_model
from ._open import as_source, open_path
from ._order import chunk_shuffle_order
from ._readahead import read_ahead
from ._source import ChunkSource, is_source
from ._tables import CSVSource, ParquetSource

__all__ = [
    "ArraySource",
    "CSVSource",
    "ChunkSource",
    "IterableSource",
    "ParquetSource",
    "as_source",
    "chunk_shuffle_order",
    "is_source",
    "load_model",
    "open_path",
    "read_ahead",
    "save_model",
]
