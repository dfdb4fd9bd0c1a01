"""Parquet and CSV files through pyarrow: feature and target columns by name."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._source import (
    DEFAULT_CHUNK_ROWS,
    SourceBase,
    import_optional,
    positive_int,
    source_dtype,
)

__all__ = ["CSVSource", "ParquetSource"]

_SCAN_BLOCK = 1 << 24  # bytes read at a time while indexing a CSV file's lines


def _names(value: Any, name: str) -> list[str]:
    names = [value] if isinstance(value, str) else list(value)
    if not names or not all(isinstance(c, str) for c in names):
        raise TypeError(f"{name} must be a column name or a list of column names, got {value!r}")
    return names


def _path(path: Any, what: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what} path must be a str or os.PathLike, got {type(path).__name__}")
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"{what} file not found: {p!r}")
    return p


class _TableSource(SourceBase):
    """Columns of a pyarrow table, chunk by chunk, into ``(X, y)``; random access by chunk."""

    def _columns(self, schema: Any, target: Any, features: Any, dtype: Any) -> None:
        pa = import_optional("pyarrow", type(self).__name__)
        present = list(schema.names)
        tnames = [] if target is None else _names(target, "target")
        if features is None:
            fnames = [c for c in present if c not in tnames]
        else:
            fnames = _names(features, "features")
        for c in tnames + fnames:
            if c not in present:
                raise ValueError(f"column {c!r} not found in {self._file!r}; it has {present}")
        self._list_col = None
        width = len(fnames)
        for c in tnames + fnames:
            t = schema.field(c).type
            if pa.types.is_fixed_size_list(t) and c in fnames and len(fnames) == 1:
                self._list_col, width, t = c, t.list_size, t.value_type
            if not (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_null(t)):
                raise TypeError(
                    f"column {c!r} of {self._file!r} has type {t}, expected numbers "
                    "(or one fixed_size_list<float> feature column)"
                )
        data_dt = (
            np.float32
            if all(pa.types.is_float32(schema.field(c).type) for c in tnames + fnames)
            else np.float64
        )
        self._tnames, self._fnames = tnames, fnames
        super().__init__(width, len(tnames), source_dtype(dtype, data_dt), self._prefetch, True)
        self.target_1d = isinstance(target, str)

    def _convert(self, table: Any) -> tuple[np.ndarray, np.ndarray]:
        n = table.num_rows
        if self._list_col is not None:
            col = table.column(self._list_col).combine_chunks()
            X = col.flatten().to_numpy(zero_copy_only=False).reshape(n, self.n_features)
        else:
            X = np.empty((n, self.n_features), dtype=self.dtype)
            for j, c in enumerate(self._fnames):
                X[:, j] = table.column(c).to_numpy()
        y = np.empty((n, self.n_targets), dtype=self.dtype)
        for j, c in enumerate(self._tnames):
            y[:, j] = table.column(c).to_numpy()
        return self._pair(X, y)

    def _chunk_table(self, k: int) -> Any:
        raise NotImplementedError

    def iter_chunks(self, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(X, y)`` chunks in file order, from chunk number ``start`` on.

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
            yield self._convert(self._chunk_table(k))

    def take(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows ``rows`` (sorted, without repeats), reading the chunks they fall in.

        Every chunk holding one of the rows is read whole, so a shuffled window spread over
        the file costs about one read of the file.

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
        X = np.empty((len(rows), self.n_features), dtype=self.dtype)
        Y = np.empty((len(rows), self.n_targets), dtype=self.dtype)
        ks = np.searchsorted(self._starts, rows, side="right") - 1
        cuts = np.flatnonzero(np.diff(ks)) + 1
        firsts = np.r_[0, cuts].astype(np.int64)
        spans = zip(firsts, np.r_[cuts, len(rows)], self._tables(ks[firsts].tolist()))
        for a, z, table in spans:
            local = rows[a:z] - self._starts[ks[a]]
            Xc, yc = self._convert(table.take(local))
            X[a:z] = Xc
            Y[a:z] = yc.reshape(z - a, -1)
        return self._pair(X, Y)

    def _tables(self, chunks: list[int]) -> Iterator[Any]:
        """The tables of the chunks ``chunks`` (increasing), in that order."""
        for k in chunks:
            yield self._chunk_table(k)


class ParquetSource(_TableSource):
    """Chunks of a Parquet file: columns by name, or one ``fixed_size_list`` feature column.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    target : str or list of str or None
        The target column (a str gives a 1-D target) or columns; None for features only
        (prediction).
    features : str or list of str, optional
        The feature columns (default: every other column), or the name of one
        ``fixed_size_list<float>[n]`` column holding each row's features.
    chunk_rows : int, optional
        Rows per chunk (default 65536); chunks never span row groups.
    dtype : str or numpy.dtype, optional
        The dtype: float32 or float64 (default: float32 when every column is float32, else float64).
    prefetch : int, default=2
        Chunks read ahead by a background thread while the model trains (0: none).
    """

    def __init__(
        self,
        path: Any,
        target: Any,
        features: Any = None,
        *,
        chunk_rows: int | None = None,
        dtype: Any = None,
        prefetch: int = 2,
    ) -> None:
        pq = import_optional("pyarrow.parquet", "ParquetSource")
        self._file = _path(path, "Parquet")
        try:
            self._pf = pq.ParquetFile(self._file)
        except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for a non-Parquet file
            raise ValueError(f"cannot read {self._file!r} as Parquet: {exc}") from None
        self._prefetch = prefetch
        self._columns(self._pf.schema_arrow, target, features, dtype)
        rows = DEFAULT_CHUNK_ROWS if chunk_rows is None else positive_int(chunk_rows, "chunk_rows")
        self._rows = rows
        md = self._pf.metadata
        self._pieces = []  # (row group, offset in it, rows)
        for g in range(md.num_row_groups):
            m = md.row_group(g).num_rows
            self._pieces += [(g, a, min(rows, m - a)) for a in range(0, m, rows)]
        self.n_rows = int(md.num_rows)
        self.n_chunks = len(self._pieces)
        self._starts = np.concatenate([[0], np.cumsum([p[2] for p in self._pieces])])
        self._cols = list(dict.fromkeys(self._fnames + self._tnames))

    def _group_tables(self, k: int) -> Iterator[Any]:
        """The tables of chunks ``k, k+1, ...`` of chunk ``k``'s row group, exactly cut
        (pyarrow's batches need not follow ``batch_size``)."""
        pa = import_optional("pyarrow", "ParquetSource")
        g, skip, _ = self._pieces[k]
        lengths = [n for (h, _, n) in self._pieces[k:] if h == g]
        batches = iter(
            self._pf.iter_batches(batch_size=self._rows, row_groups=[g], columns=self._cols)
        )
        held: list = []
        have = 0
        for n in lengths:
            while have < skip + n:
                batch = next(batches)
                held.append(batch)
                have += batch.num_rows
            table = pa.Table.from_batches(held)
            yield table.slice(skip, n)
            rest = table.slice(skip + n)
            held, have, skip = rest.to_batches(), rest.num_rows, 0

    def _chunk_table(self, k: int) -> Any:
        return next(self._group_tables(k))

    def _tables(self, chunks: list[int]) -> Iterator[Any]:
        """The tables of the chunks ``chunks`` (increasing): one pass per row group."""
        i = 0
        while i < len(chunks):
            k = chunks[i]
            for j, table in enumerate(self._group_tables(k), k):
                if i < len(chunks) and chunks[i] == j:
                    yield table
                    i += 1
                if i == len(chunks) or self._pieces[chunks[i]][0] != self._pieces[k][0]:
                    break

    def iter_chunks(self, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(X, y)`` chunks in file order, from chunk number ``start`` on.

        Parameters
        ----------
        start : int, default=0
            The first chunk.

        Yields
        ------
        tuple of numpy.ndarray
            ``(X, y)``, C-contiguous, of the source dtype.
        """
        k = start
        while k < self.n_chunks:
            for table in self._group_tables(k):
                yield self._convert(table)
                k += 1


class CSVSource(_TableSource):
    """Chunks of a CSV file with a header line: feature and target columns by name.

    The file is indexed once (one pass counting lines, no parsing), so that the number of rows
    is known and any chunk can be read on its own (``shuffle='chunks'``, ``shuffle=True``).
    One record per line: quoted fields must not hold line breaks.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    target : str or list of str or None
        The target column (a str gives a 1-D target) or columns; None for features only
        (prediction).
    features : str or list of str, optional
        The feature columns (default: every other column).
    chunk_rows : int, optional
        Rows per chunk (default 65536).
    delimiter : str, default=","
        The field separator.
    dtype : str or numpy.dtype, optional
        The dtype: float32 or float64 (default float64).
    prefetch : int, default=2
        Chunks read ahead by a background thread while the model trains (0: none).
    """

    def __init__(
        self,
        path: Any,
        target: Any,
        features: Any = None,
        *,
        chunk_rows: int | None = None,
        delimiter: str = ",",
        dtype: Any = None,
        prefetch: int = 2,
    ) -> None:
        pa = import_optional("pyarrow", "CSVSource")
        pacsv = import_optional("pyarrow.csv", "CSVSource")
        self._file = _path(path, "CSV")
        self._prefetch = prefetch
        self._csv = pacsv
        self._parse = pacsv.ParseOptions(delimiter=delimiter)
        with open(self._file, "rb") as f:
            header = f.readline()
            try:
                head = pacsv.read_csv(io.BytesIO(header), parse_options=self._parse)
            except Exception as exc:
                raise ValueError(f"cannot read the header line of {self._file!r}: {exc}") from None
            names = list(head.schema.names)
        schema = pa.schema([(c, pa.float64()) for c in names])
        self._columns(schema, target, features, dtype)
        self._names = names
        rows = DEFAULT_CHUNK_ROWS if chunk_rows is None else positive_int(chunk_rows, "chunk_rows")
        self._offsets = self._index(len(header), rows)
        self.n_chunks = len(self._offsets) - 1
        counts = [rows] * self.n_chunks
        if counts:
            counts[-1] = self._n_rows_total - rows * (self.n_chunks - 1)
        self.n_rows = self._n_rows_total
        self._starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        self._convert_opts = pacsv.ConvertOptions(
            include_columns=list(dict.fromkeys(self._fnames + self._tnames)),
            column_types={c: pa.float64() for c in self._fnames + self._tnames},
        )

    def _index(self, start: int, rows: int) -> list[int]:
        """Byte offsets of chunk starts (every ``rows``-th line after the header), then the end."""
        size = os.path.getsize(self._file)
        offsets = [start]
        count = 0
        pos = start
        last = b"\n"
        with open(self._file, "rb") as f:
            f.seek(start)
            while True:
                buf = f.read(_SCAN_BLOCK)
                if not buf:
                    break
                ends = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == 10) + pos + 1
                need = rows - count % rows  # lines until the next chunk start
                offsets += ends[need - 1 :: rows].tolist()
                count += len(ends)
                pos += len(buf)
                last = buf[-1:]
        if last != b"\n" and size > start:
            count += 1  # a last line without a line break
        if offsets[-1] != size:
            offsets.append(size)
        self._n_rows_total = count
        return offsets

    def _chunk_table(self, k: int) -> Any:
        a, z = self._offsets[k], self._offsets[k + 1]
        with open(self._file, "rb") as f:
            f.seek(a)
            data = f.read(z - a)
        try:
            return self._csv.read_csv(
                io.BytesIO(data),
                read_options=self._csv.ReadOptions(column_names=self._names),
                parse_options=self._parse,
                convert_options=self._convert_opts,
            )
        except Exception as exc:  # ArrowInvalid: a field that is not a number, a short row
            raise ValueError(
                f"{self._file!r}, chunk {k} (rows from {int(self._starts[k])}): {exc}"
            ) from None
