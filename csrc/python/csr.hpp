// X (or X_valid) given in compressed sparse rows, as the tuple (data, indices, indptr) of a
// scipy.sparse CSR matrix; the column count is W's. Every index is checked here, once per call,
// so that no input can make the kernel read outside its arrays: indptr starts at 0, never
// decreases and ends at nnz (the length of data and of indices), and the columns of each row lie
// in [0, N) and strictly increase (sorted and without duplicates, scipy's canonical format,
// which the dense association of linsgd/sparse.hpp needs).
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "python/array_view.hpp"

namespace linsgd {
namespace python {

struct CsrViews {
    ArrayView data, indices, indptr;
    int64_t rows = 0;
    bool given() const { return indptr.given(); }
    bool wide() const { return indices.itemsize == 8; }  // int64 indices, else int32
};

// Names of the three arrays in messages (static storage: an ArrayView keeps the pointer).
struct CsrNames {
    const char* matrix;
    const char* data;
    const char* indices;
    const char* indptr;
};
constexpr CsrNames kCsrX{"X", "X.data", "X.indices", "X.indptr"};
constexpr CsrNames kCsrXValid{"X_valid", "X_valid.data", "X_valid.indices", "X_valid.indptr"};

// Whether an X argument is given in CSR form: a (data, indices, indptr) tuple.
inline bool is_csr(py::handle obj) { return PyTuple_Check(obj.ptr()) && PyTuple_GET_SIZE(obj.ptr()) == 3; }

template <typename M>
ArrayView index_array(py::handle obj, const char* name) {
    ArrayView a = any_array<M>(obj, name);
    if (a.kind != 'i' || (a.itemsize != 4 && a.itemsize != 8) || !a.native)
        type_error(std::string(name) + " must be int32 or int64 in native byte order, got dtype " + a.dtype_text());
    if (a.ndim != 1) value_error(std::string(name) + " must be 1-D, got shape " + a.shape_text());
    check_layout(a, false);
    return a;
}

template <typename I>
void check_csr_structure(const I* indptr, const I* indices, int64_t rows, int64_t nnz, int64_t features,
                         const CsrNames& names) {
    if (indptr[0] != 0)
        value_error(std::string(names.indptr) + " must start at 0, got " + std::to_string(int64_t(indptr[0])));
    if (static_cast<int64_t>(indptr[rows]) != nnz)
        value_error(std::string(names.indptr) + "[-1] must be the number of stored entries (" + std::to_string(nnz) +
                    "), got " + std::to_string(int64_t(indptr[rows])));
    for (int64_t i = 0; i < rows; ++i) {
        const int64_t lo = indptr[i], hi = indptr[i + 1];
        if (hi < lo)
            value_error(std::string(names.indptr) + " must not decrease, but it does at row " + std::to_string(i));
        int64_t previous = -1;
        for (int64_t k = lo; k < hi; ++k) {
            const int64_t j = indices[k];
            if (j < 0 || j >= features)
                value_error(std::string(names.indices) + " holds column " + std::to_string(j) + " (row " +
                            std::to_string(i) + "), outside [0, " + std::to_string(features) + ") for W's " +
                            std::to_string(features) + " columns");
            if (j <= previous)
                value_error(std::string(names.indices) +
                            " must be sorted and without duplicates within each row, "
                            "not so in row " +
                            std::to_string(i) + " (scipy: X.sum_duplicates() makes it so)");
            previous = j;
        }
    }
}

// The CSR triple obj, of W's column count (W: a 2-D float array); the CUDA binding refuses it.
template <typename M>
CsrViews check_csr(py::handle obj, const CsrNames& names, py::handle W) {
    if constexpr (M::kDevice) {
        type_error(std::string(names.matrix) +
                   " is sparse (data, indices, indptr): the CUDA backend takes dense arrays only; use backend='cpp' "
                   "or 'numba' for sparse input");
    } else {
        const int64_t features = float_array<M>(W, "W", 2, false).dim(1);
        const py::tuple t = py::reinterpret_borrow<py::tuple>(obj);
        CsrViews c;
        c.data = float_array<M>(t[0], names.data, 1, false);
        c.indices = index_array<M>(t[1], names.indices);
        c.indptr = index_array<M>(t[2], names.indptr);
        if (c.indptr.itemsize != c.indices.itemsize)
            type_error(std::string(names.indptr) + " must have the dtype of " + names.indices + " (" +
                       c.indices.dtype_text() + "), got " + c.indptr.dtype_text());
        const int64_t nnz = c.data.size();
        if (c.indices.size() != nnz)
            value_error(std::string(names.indices) + " must have one entry per stored value (" + std::to_string(nnz) +
                        "), got " + std::to_string(c.indices.size()));
        if (c.indptr.size() < 2)
            value_error(std::string(names.indptr) + " must have rows + 1 >= 2 entries, got " +
                        std::to_string(c.indptr.size()));
        c.rows = c.indptr.size() - 1;
        if (c.wide())
            check_csr_structure<int64_t>(reinterpret_cast<const int64_t*>(c.indptr.data),
                                         reinterpret_cast<const int64_t*>(c.indices.data), c.rows, nnz, features,
                                         names);
        else
            check_csr_structure<int32_t>(reinterpret_cast<const int32_t*>(c.indptr.data),
                                         reinterpret_cast<const int32_t*>(c.indices.data), c.rows, nnz, features,
                                         names);
        return c;
    }
}

}  // namespace python
}  // namespace linsgd
