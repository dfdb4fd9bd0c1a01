"""Sparse ``X`` (scipy.sparse matrices and arrays), handed to the kernels in CSR form, never dense.

A CSR matrix or array (``csr_matrix``, ``csr_array``) whose indices are sorted and free of
duplicates (scipy's canonical format) is passed on as it is: its ``data``, ``indices`` and
``indptr`` are read in place. Any other sparse format (CSC, COO, LIL, ...) is converted once to
CSR, and a CSR matrix with unsorted or duplicate indices is canonicalised once
(``sum_duplicates`` on a copy: the caller's matrix is never modified). The compiled binding
checks the structure again (``indptr`` and every index), so no input can make a kernel read out of
bounds. The backends receive ``X`` as the tuple :class:`CsrX` ``(data, indices, indptr)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks as ck

try:
    import scipy.sparse as _sp
except ImportError:  # pragma: no cover - scipy is a dependency; a bare install still imports
    _sp = None

__all__ = ["CsrX", "as_csr", "csr_arg", "is_sparse", "row_sq_norms"]


def is_sparse(a: Any) -> bool:
    """Whether ``a`` is a scipy.sparse matrix or array (of any format)."""
    return _sp is not None and _sp.issparse(a)


class CsrX(tuple):
    """``(data, indices, indptr)`` of a canonical CSR matrix, with its ``shape`` and ``dtype``.

    A tuple, as the backends' ``train``, ``loss`` and ``gradient`` take a sparse ``X``; the
    attributes let the argument checks treat it as they treat a dense ``X``.
    """

    ndim = 2

    def __new__(cls, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple):
        self = super().__new__(cls, (data, indices, indptr))
        self.shape = shape
        self.dtype = data.dtype
        return self


def as_csr(a: Any, name: str) -> Any:
    """``a`` as a canonical CSR matrix/array: converted once from another format, duplicates
    summed and indices sorted on a copy; ``a`` itself when it already is one."""
    x = a if a.format == "csr" else a.tocsr()
    if not x.has_canonical_format:
        x = x.copy() if x is a else x
        x.sum_duplicates()
    if x.indices.dtype != x.indptr.dtype:  # (scipy keeps them alike; be sure)
        wide = np.promote_types(x.indices.dtype, x.indptr.dtype)
        x = x.copy() if x is a else x
        x.indices = x.indices.astype(wide)
        x.indptr = x.indptr.astype(wide)
    return x


def csr_arg(a: Any, name: str, check_finite: bool, dtype: np.dtype | None = None) -> CsrX:
    """A sparse ``X`` for the backends: CSR, canonical, float32/float64 values (cast to ``dtype``
    when given, else refused unless float32/float64), with at least one row."""
    x = as_csr(a, name)
    m, n = x.shape
    if m < 1:
        raise ValueError(f"{name} must have at least one row, got shape {x.shape}")
    data = x.data
    if dtype is not None:
        data = np.ascontiguousarray(data, dtype=dtype)
    else:
        dt = ck.native_float(data.dtype)
        if dt is None:
            raise ck.dtype_error(name, data.dtype, "float32 or float64")
        data = ck.readable(data, dt)
    if check_finite:
        ck.require_finite(data, name)
    return CsrX(
        data, np.ascontiguousarray(x.indices), np.ascontiguousarray(x.indptr), (int(m), int(n))
    )


def row_sq_norms(a: Any) -> np.ndarray:
    """The squared Euclidean norm of every row of a sparse matrix, in float64."""
    x = as_csr(a, "X")
    sq = np.square(x.data, dtype=np.float64)
    rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    return np.bincount(rows, weights=sq, minlength=x.shape[0])
