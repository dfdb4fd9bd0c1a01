// Argument conversion and checking for linsgd._core (bindings.cpp): numpy arrays checked for
// dtype, rank, shape, layout, alignment, writability and overlap, then turned into the kernels'
// raw views (Data, Model); Python ints, reals and bools checked and converted, leniently for
// train and strictly for run. Nothing here trusts a shape, a stride, a dtype or an index it has
// not checked. Everything raises TypeError or ValueError naming the argument.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <string>

#include "linsgd/kernels.hpp"
#include "python/basic_checks.hpp"

namespace linsgd {
namespace python {

namespace py = pybind11;

// ---- arrays, the model and the data ----------------------------------------------------------

inline std::string shape_of(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t d = 0; d < a.ndim(); ++d) {
        s += std::to_string(a.shape(d));
        if (a.ndim() == 1 || d + 1 < a.ndim()) s += a.ndim() == 1 ? "," : ", ";
    }
    return s + ")";
}

inline py::array require_array(py::handle obj, const char* name) {
    if (!py::isinstance<py::array>(obj))
        type_error(std::string(name) + " must be a numpy array, got " + std::string(py::str(py::type::of(obj))));
    return py::reinterpret_borrow<py::array>(obj);
}

inline bool native_order(const py::dtype& dt) {
    const char bo = dt.byteorder();
    const uint16_t probe = 1;
    const bool little = *reinterpret_cast<const unsigned char*>(&probe) == 1;
    return bo == '=' || bo == '|' || (bo == '<' && little) || (bo == '>' && !little);
}

// A float32/float64 array of the given rank, C-contiguous, aligned, native byte order.
inline py::array float_array(py::handle obj, const char* name, int ndim, bool writable) {
    py::array a = require_array(obj, name);
    const py::dtype dt = a.dtype();
    if (dt.kind() != 'f' || (dt.itemsize() != 4 && dt.itemsize() != 8))
        type_error(std::string(name) + " must be float32 or float64, got dtype " + std::string(py::str(dt)));
    if (!native_order(dt)) type_error(std::string(name) + " must have native byte order");
    if (a.ndim() != ndim)
        value_error(std::string(name) + " must be " + std::to_string(ndim) + "-D, got shape " + shape_of(a));
    if (!(a.flags() & py::array::c_style)) value_error(std::string(name) + " must be C-contiguous");
    // (an empty array is never read, wherever its pointer points: numpy calls it aligned too)
    if (a.size() > 0 && reinterpret_cast<std::uintptr_t>(a.data()) % static_cast<std::uintptr_t>(dt.itemsize()) != 0)
        value_error(std::string(name) + " must be aligned to its itemsize");
    if (writable && !a.writeable()) value_error(std::string(name) + " must be writable (it is updated in place)");
    return a;
}

inline py::array double_array(py::handle obj, const char* name, int ndim, bool writable) {
    py::array a = float_array(obj, name, ndim, writable);
    if (a.dtype().itemsize() != 8) type_error(std::string(name) + " must be float64");
    return a;
}

inline Scalar scalar_of(const py::array& a) { return a.dtype().itemsize() == 4 ? Scalar::f32 : Scalar::f64; }

inline void same_scalar(const py::array& a, const char* name, Scalar s) {
    if (scalar_of(a) != s)
        type_error(std::string(name) + " must have the same dtype as X (" + (s == Scalar::f32 ? "float32" : "float64") +
                   "), got " + std::string(py::str(a.dtype())));
}

inline void expect_shape(const py::array& a, const char* name, std::initializer_list<py::ssize_t> shape) {
    bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
    py::ssize_t d = 0;
    for (auto it = shape.begin(); ok && it != shape.end(); ++it, ++d) ok = a.shape(d) == *it;
    if (!ok) {
        std::string want = "(";
        d = 0;
        for (auto it = shape.begin(); it != shape.end(); ++it, ++d)
            want += std::to_string(*it) +
                    (shape.size() == 1 ? "," : (d + 1 < static_cast<py::ssize_t>(shape.size()) ? ", " : ""));
        value_error(std::string(name) + " must have shape " + want + "), got " + shape_of(a));
    }
}

// A short fixed-capacity list of (array, name) pairs: the overlap check below runs on every
// call, so it should not allocate.
struct Named {
    const py::array* array = nullptr;
    const char* name = nullptr;
};

struct NamedList {
    static constexpr int kCapacity = 16;
    Named items[kCapacity];
    int count = 0;
    void add(const py::array& a, const char* name) {
        if (count == kCapacity) throw std::logic_error("linsgd: NamedList capacity exceeded");
        items[count++] = {&a, name};
    }
};

// An output must not share memory with any other argument: the kernel would read values it
// has already overwritten (or write the data it is reading). Every array here is contiguous, so
// [data, data + nbytes) is exactly the memory it covers.
inline void no_overlap(const NamedList& outputs, const NamedList& all) {
    for (int i = 0; i < outputs.count; ++i) {
        const py::array& out = *outputs.items[i].array;
        const py::ssize_t out_bytes = out.nbytes();
        if (out_bytes == 0) continue;
        const char* r0 = static_cast<const char*>(out.data());
        const char* r1 = r0 + out_bytes;
        for (int j = 0; j < all.count; ++j) {
            const py::array& other = *all.items[j].array;
            if (&other == &out) continue;
            const py::ssize_t other_bytes = other.nbytes();
            if (other_bytes == 0) continue;
            const char* q0 = static_cast<const char*>(other.data());
            const char* q1 = q0 + other_bytes;
            if (r0 < q1 && q0 < r1)
                value_error(std::string(outputs.items[i].name) + " shares memory with " + all.items[j].name +
                            "; pass separate arrays");
        }
    }
}

// An array handle holding nothing: py::array's default constructor would allocate a numpy array.
inline py::array unset_array() { return py::reinterpret_steal<py::array>(py::handle()); }

struct Checked {
    py::array x = unset_array(), y = unset_array(), w = unset_array(), b = unset_array();
    bool has_bias = false;
    Scalar scalar = Scalar::f64;
    int64_t rows = 0, features = 0, outputs = 0;
};

// X (M >= 1, N), Y (M, U >= 1) (or (M,), one output, when targets_1d), W (U, N), b (U,) or None.
inline Checked check_model(py::handle X, py::handle Y, py::handle W, py::handle b, bool params_writable,
                           bool targets_1d = false) {
    Checked c;
    c.x = float_array(X, "X", 2, false);
    c.scalar = scalar_of(c.x);
    c.rows = c.x.shape(0);
    c.features = c.x.shape(1);
    if (c.rows < 1) value_error("X must have at least one row");
    const bool y_1d = targets_1d && py::isinstance<py::array>(Y) && py::reinterpret_borrow<py::array>(Y).ndim() == 1;
    c.y = float_array(Y, "Y", y_1d ? 1 : 2, false);
    same_scalar(c.y, "Y", c.scalar);
    c.outputs = y_1d ? 1 : c.y.shape(1);
    if (c.y.shape(0) != c.rows)
        value_error("Y must have as many rows as X (" + std::to_string(c.rows) + "), got shape " + shape_of(c.y));
    if (c.outputs < 1) value_error("Y must have at least one column");
    c.w = float_array(W, "W", 2, params_writable);
    same_scalar(c.w, "W", c.scalar);
    expect_shape(c.w, "W", {c.outputs, c.features});
    c.has_bias = !b.is_none();
    if (c.has_bias) {
        c.b = float_array(b, "b", 1, params_writable);
        same_scalar(c.b, "b", c.scalar);
        expect_shape(c.b, "b", {c.outputs});
    }
    return c;
}

// Optional per-row weights: float, X's dtype, shape (rows,), finite and non-negative. An unset
// array when None.
inline py::array sample_weights(py::handle obj, const Checked& c) {
    if (obj.is_none()) return unset_array();
    py::array w = float_array(obj, "sample_weight", 1, false);
    same_scalar(w, "sample_weight", c.scalar);
    expect_shape(w, "sample_weight", {c.rows});
    const bool f32 = c.scalar == Scalar::f32;
    for (py::ssize_t i = 0; i < c.rows; ++i) {
        const double v = f32 ? static_cast<const float*>(w.data())[i] : static_cast<const double*>(w.data())[i];
        if (!(v >= 0.0) || !std::isfinite(v)) value_error("sample_weight must be finite and >= 0");
    }
    return w;
}

template <typename T>
linsgd::Data<T> weighted(linsgd::Data<T> d, const py::array& w) {
    d.sample_weight = w.ptr() ? static_cast<const T*>(w.data()) : nullptr;
    return d;
}

template <typename T>
linsgd::Model<T> model_of(const Checked& c) {
    // Writability was checked where the kernel writes (train); loss and gradient only read.
    T* w = const_cast<T*>(static_cast<const T*>(c.w.data()));
    T* b = c.has_bias ? const_cast<T*>(static_cast<const T*>(c.b.data())) : nullptr;
    return {w, b, c.outputs, c.features};
}

template <typename T>
linsgd::Data<T> data_of(const py::array& x, const py::array& y) {
    return {static_cast<const T*>(x.data()), static_cast<const T*>(y.data()), x.shape(0)};
}
// ---- scalars, threads, momentum buffers, the validation set (train and run) ------------------

// A worker pool of more threads than this is a mistake, not a request.
constexpr int64_t kMaxThreads = 1024;

// An integer argument: a Python int (or anything with __index__, as numpy integers), not a bool
// and not a float; TypeError naming it otherwise, or when it does not fit in int64.
inline int64_t int_arg(PyObject* o, const char* name) {
    if (PyLong_CheckExact(o)) {
        int overflow = 0;
        const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (!overflow && !(v == -1 && PyErr_Occurred())) return static_cast<int64_t>(v);
        PyErr_Clear();
        type_error(std::string(name) + " must fit in a 64-bit integer");
    }
    if (PyBool_Check(o) || PyFloat_Check(o) || !PyIndex_Check(o))
        type_error(std::string(name) + " must be an integer, got " + Py_TYPE(o)->tp_name);
    py::object idx = py::reinterpret_steal<py::object>(PyNumber_Index(o));
    if (!idx) throw py::error_already_set();
    return int_arg(idx.ptr(), name);
}

// A real argument: a Python float or int (numpy scalars included), not a bool.
inline double real_arg(PyObject* o, const char* name) {
    if (PyFloat_CheckExact(o)) return PyFloat_AS_DOUBLE(o);
    if (PyBool_Check(o)) type_error(std::string(name) + " must be a real number, got bool");
    const double v = PyFloat_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        type_error(std::string(name) + " must be a real number, got " + Py_TYPE(o)->tp_name);
    }
    return v;
}

// A flag: True, False or a numpy bool.
inline bool bool_arg(PyObject* o, const char* name) {
    if (o == Py_True) return true;
    if (o == Py_False) return false;
    if (std::strcmp(Py_TYPE(o)->tp_name, "numpy.bool") == 0 || std::strcmp(Py_TYPE(o)->tp_name, "numpy.bool_") == 0)
        return PyObject_IsTrue(o) == 1;
    type_error(std::string(name) + " must be a bool, got " + Py_TYPE(o)->tp_name);
}

inline int thread_count(int64_t threads) {
    if (threads < 1 || threads > kMaxThreads)
        value_error("threads must be between 1 and " + std::to_string(kMaxThreads) + ", got " +
                    std::to_string(threads));
    return static_cast<int>(threads);
}

inline void require_finite(const py::array& a, const char* name) {
    const bool ok = scalar_of(a) == Scalar::f32
                        ? linsgd::cpu::all_finite<float>(static_cast<const float*>(a.data()), a.size())
                        : linsgd::cpu::all_finite<double>(static_cast<const double*>(a.data()), a.size());
    if (!ok) value_error(std::string(name) + " contains NaN or infinity");
}

// The momentum buffers, checked when momentum != 0 (unset arrays otherwise).
inline void momentum_buffers(py::handle buf_W, py::handle buf_b, const Checked& c, py::array& bw, py::array& bb) {
    bw = float_array(buf_W, "buf_W", 2, true);
    same_scalar(bw, "buf_W", c.scalar);
    expect_shape(bw, "buf_W", {c.outputs, c.features});
    if (c.has_bias) {
        if (buf_b.is_none()) value_error("buf_b must be an array of shape (U,) when b is given and momentum != 0");
        bb = float_array(buf_b, "buf_b", 1, true);
        same_scalar(bb, "buf_b", c.scalar);
        expect_shape(bb, "buf_b", {c.outputs});
    }
}

// The validation set: X_valid (M_valid >= 1, N) and Y_valid (M_valid, U), or (M_valid,) when
// targets_1d and U == 1.
inline void validation_set(py::handle X_valid, py::handle Y_valid, const Checked& c, bool targets_1d, py::array& xv,
                           py::array& yv) {
    xv = float_array(X_valid, "X_valid", 2, false);
    same_scalar(xv, "X_valid", c.scalar);
    if (xv.shape(0) < 1 || xv.shape(1) != c.features)
        value_error("X_valid must have shape (M_valid >= 1, " + std::to_string(c.features) + "), got " + shape_of(xv));
    const bool one_d = targets_1d && c.outputs == 1 && py::isinstance<py::array>(Y_valid) &&
                       py::reinterpret_borrow<py::array>(Y_valid).ndim() == 1;
    yv = float_array(Y_valid, "Y_valid", one_d ? 1 : 2, false);
    same_scalar(yv, "Y_valid", c.scalar);
    if (one_d)
        expect_shape(yv, "Y_valid", {xv.shape(0)});
    else
        expect_shape(yv, "Y_valid", {xv.shape(0), c.outputs});
}

// Steps per epoch for a batch size already clamped to [1, rows_per_epoch], checked against
// int64 overflow of epochs * steps.
inline int64_t steps_per_epoch_of(int64_t rows_per_epoch, int64_t batch_size, int64_t epochs) {
    const int64_t steps = rows_per_epoch / batch_size + (rows_per_epoch % batch_size != 0);
    if (epochs > std::numeric_limits<int64_t>::max() / steps) value_error("epochs * steps per epoch overflows int64");
    return steps;
}

// ---- run's stricter conversions (exact types only) -------------------------------------------

// An exact numpy array (no subclass: a masked array's mask would be ignored), or None when allowed.
inline py::handle exact_array(PyObject* o, const char* name, bool none_ok) {
    if (none_ok && o == Py_None) return py::handle(o);
    if (Py_TYPE(o) != py::detail::npy_api::get().PyArray_Type_)
        type_error(std::string(name) + " must be a numpy.ndarray, got " + Py_TYPE(o)->tp_name);
    return py::handle(o);
}

inline double strict_real(PyObject* o, const char* name, bool non_negative) {
    double v;
    if (PyFloat_Check(o)) {
        v = PyFloat_AS_DOUBLE(o);
    } else if (PyLong_CheckExact(o)) {
        v = PyLong_AsDouble(o);
        if (v == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            value_error(std::string(name) + " is too large");
        }
    } else {
        type_error(std::string(name) + " must be a float or an int, got " + Py_TYPE(o)->tp_name);
    }
    finite(v, name);
    if (non_negative && !(v >= 0.0)) value_error(std::string(name) + " must be >= 0");
    return v;
}

inline bool strict_bool(PyObject* o, const char* name) {
    if (o == Py_True) return true;
    if (o == Py_False) return false;
    type_error(std::string(name) + " must be True or False, got " + Py_TYPE(o)->tp_name);
}

inline int64_t strict_int(PyObject* o, const char* name) {
    if (!PyLong_CheckExact(o)) type_error(std::string(name) + " must be an int, got " + Py_TYPE(o)->tp_name);
    return int_arg(o, name);
}

}  // namespace python
}  // namespace linsgd
