// One array argument as both bindings see it: a numpy array (read in place by linsgd._core,
// copied to the device by linsgd._cuda) or, for _cuda only, any object exposing
// __cuda_array_interface__ (torch CUDA tensors, CuPy arrays). The dtype, rank, shape, layout,
// alignment, writability and overlap checks are written here once, for both bindings; what
// differs between them (whether device arrays are accepted, how a small array's values reach
// the host) is a memory policy: HostMemory here, _cuda's own in bindings_cuda.cpp.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "linsgd/kernels.hpp"

namespace linsgd {
namespace python {

namespace py = pybind11;

enum class Scalar { f32, f64 };

[[noreturn]] inline void type_error(const std::string& msg) { throw py::type_error(msg); }
[[noreturn]] inline void value_error(const std::string& msg) { throw py::value_error(msg); }

inline bool native_byte_order(char bo) {
    const uint16_t probe = 1;
    const bool little = *reinterpret_cast<const unsigned char*>(&probe) == 1;
    return bo == '=' || bo == '|' || (bo == '<' && little) || (bo == '>' && !little);
}

// Small and trivially copyable: a call builds a dozen of these, so their size is its cost.
struct ArrayView {
    const char* name = nullptr;
    PyObject* object = nullptr;  // borrowed: every argument outlives the call that checks it
    char* data = nullptr;
    char kind = 0;
    char byteorder = '=';
    int itemsize = 0;
    bool native = true;
    bool c_contiguous = true;
    bool writable = true;
    bool on_device = false;
    int device = -1;            // device arrays: the CUDA device holding the memory
    std::uintptr_t stream = 0;  // device arrays: the producer's stream, 0 when none is named
    int ndim = 0;
    const Py_ssize_t* host_shape = nullptr;  // numpy's own dimensions
    // Device arrays: the first two dimensions (no argument has more; the checks refuse a
    // larger ndim before reading a dimension) and the element count.
    Py_ssize_t device_shape[2] = {0, 0};
    Py_ssize_t device_size = 0;

    bool given() const { return object != nullptr; }
    Py_ssize_t dim(int d) const { return on_device ? device_shape[d] : host_shape[d]; }
    Py_ssize_t size() const {
        if (on_device) return device_size;
        Py_ssize_t n = 1;
        for (int d = 0; d < ndim; ++d) n *= host_shape[d];
        return n;
    }
    size_t nbytes() const { return static_cast<size_t>(size()) * static_cast<size_t>(itemsize); }
    Scalar scalar() const { return itemsize == 4 ? Scalar::f32 : Scalar::f64; }

    std::string shape_text() const {
        if (on_device && ndim > 2) return py::str(cuda_shape());
        std::string s = "(";
        for (int d = 0; d < ndim; ++d) {
            s += std::to_string(dim(d));
            if (ndim == 1 || d + 1 < ndim) s += ndim == 1 ? "," : ", ";
        }
        return s + ")";
    }
    std::string dtype_text() const {
        if (!on_device) return py::str(py::reinterpret_borrow<py::array>(object).dtype());
        const std::string typestr = std::string(1, byteorder) + kind + std::to_string(itemsize);
        return py::str(py::module_::import("numpy").attr("dtype")(typestr));
    }
    py::tuple cuda_shape() const { return py::tuple(py::handle(object).attr("__cuda_array_interface__")["shape"]); }
};

static_assert(std::is_trivially_copyable<ArrayView>::value, "ArrayView must stay trivially copyable");

// A numpy subclass may carry meaning the kernels would ignore: refuse a masked array.
inline void not_masked(PyObject* o, const char* name) {
    if (Py_TYPE(o) == py::detail::npy_api::get().PyArray_Type_) return;
    const py::object masked = py::module_::import("numpy.ma").attr("MaskedArray");
    if (PyObject_IsInstance(o, masked.ptr()) == 1)
        type_error(std::string(name) + " is a masked array; pass " + name + ".filled(...) or the valid rows");
}

inline ArrayView numpy_view(PyObject* o, const char* name) {
    not_masked(o, name);
    const auto a = py::reinterpret_borrow<py::array>(o);
    ArrayView v;
    v.name = name;
    v.object = o;
    const py::dtype dt = a.dtype();
    v.kind = dt.kind();
    v.itemsize = static_cast<int>(dt.itemsize());
    v.native = native_byte_order(dt.byteorder());
    v.ndim = static_cast<int>(a.ndim());
    v.host_shape = a.shape();
    v.c_contiguous = (a.flags() & py::array::c_style) != 0;
    v.writable = a.writeable();
    v.data = static_cast<char*>(const_cast<void*>(a.data()));
    return v;
}

// getattr that tells "no such attribute" apart from an attribute that raises (torch refuses
// __cuda_array_interface__ on a tensor that requires grad, with a message worth passing on).
inline py::object cuda_interface_of(PyObject* o) {
    PyObject* cai = PyObject_GetAttrString(o, "__cuda_array_interface__");
    if (cai) return py::reinterpret_steal<py::object>(cai);
    if (!PyErr_ExceptionMatches(PyExc_AttributeError)) throw py::error_already_set();
    PyErr_Clear();
    return py::object();
}

inline void parse_cuda_interface(const py::dict& cai, ArrayView& v) {
    const std::string typestr = py::str(cai["typestr"]);
    if (typestr.size() < 3 || typestr.size() > 5 || typestr.find_first_not_of("0123456789", 2) != std::string::npos)
        type_error(std::string(v.name) + " has an invalid __cuda_array_interface__ typestr '" + typestr + "'");
    v.byteorder = typestr[0];
    v.native = native_byte_order(v.byteorder);
    v.kind = typestr[1];
    v.itemsize = std::stoi(typestr.substr(2));
    const py::tuple shape(cai["shape"]);
    v.ndim = static_cast<int>(shape.size());
    v.device_size = 1;
    for (int d = 0; d < v.ndim; ++d) {
        const Py_ssize_t extent = shape[static_cast<size_t>(d)].cast<Py_ssize_t>();
        if (d < 2) v.device_shape[d] = extent;
        v.device_size *= extent;
    }
    if (cai.contains("mask") && !cai["mask"].is_none())
        type_error(std::string(v.name) + " is a masked array; pass one without a mask");
    if (cai.contains("strides") && !cai["strides"].is_none()) {
        const py::tuple strides(cai["strides"]);
        if (static_cast<int>(strides.size()) != v.ndim)
            value_error(std::string(v.name) + " has strides that do not match its shape");
        Py_ssize_t expect = v.itemsize;
        for (int d = v.ndim - 1; d >= 0; --d) {
            const Py_ssize_t extent = shape[static_cast<size_t>(d)].cast<Py_ssize_t>();
            if (extent == 0) {
                v.c_contiguous = true;
                break;
            }
            if (extent != 1 && strides[static_cast<size_t>(d)].cast<Py_ssize_t>() != expect) v.c_contiguous = false;
            expect *= extent;
        }
    }
    const py::tuple data(cai["data"]);
    v.data = reinterpret_cast<char*>(data[0].cast<std::uintptr_t>());
    v.writable = !data[1].cast<bool>();
    if (cai.contains("stream") && !cai["stream"].is_none()) v.stream = cai["stream"].cast<std::uintptr_t>();
}

// An array argument of either kind the memory policy M accepts; TypeError naming it otherwise.
template <typename M>
ArrayView any_array(py::handle obj, const char* name) {
    PyObject* o = obj.ptr();
    if (py::isinstance<py::array>(obj)) return numpy_view(o, name);
    if constexpr (M::kDevice) {
        const py::object cai = cuda_interface_of(o);
        if (cai) {
            if (!py::isinstance<py::dict>(cai))
                type_error(std::string(name) + ".__cuda_array_interface__ must be a dict");
            ArrayView v;
            v.name = name;
            v.object = o;
            v.on_device = true;
            try {
                parse_cuda_interface(py::reinterpret_borrow<py::dict>(cai), v);
            } catch (const py::cast_error&) {
                type_error(std::string(name) + " has an invalid __cuda_array_interface__");
            }
            M::locate(v);
            return v;
        }
    }
    type_error(std::string(name) + " must be " + M::kExpected + ", got " + std::string(py::str(py::type::of(obj))));
}

// The layout every kernel argument needs: C-contiguous, aligned to its itemsize, and writable
// where the kernel writes it.
inline void check_layout(const ArrayView& a, bool writable) {
    if (!a.c_contiguous) value_error(std::string(a.name) + " must be C-contiguous");
    // (an empty array is never read, wherever its pointer points: numpy calls it aligned too)
    if (a.size() > 0 && reinterpret_cast<std::uintptr_t>(a.data) % static_cast<std::uintptr_t>(a.itemsize) != 0)
        value_error(std::string(a.name) + " must be aligned to its itemsize");
    if (writable && !a.writable) value_error(std::string(a.name) + " must be writable (it is updated in place)");
}

// A float32/float64 array of the given rank, C-contiguous, aligned, native byte order.
template <typename M>
ArrayView float_array(py::handle obj, const char* name, int ndim, bool writable) {
    ArrayView a = any_array<M>(obj, name);
    if (a.kind != 'f' || (a.itemsize != 4 && a.itemsize != 8))
        type_error(std::string(name) + " must be float32 or float64, got dtype " + a.dtype_text());
    if (!a.native) type_error(std::string(name) + " must have native byte order");
    if (a.ndim != ndim)
        value_error(std::string(name) + " must be " + std::to_string(ndim) + "-D, got shape " + a.shape_text());
    check_layout(a, writable);
    return a;
}

template <typename M>
ArrayView double_array(py::handle obj, const char* name, int ndim, bool writable) {
    ArrayView a = float_array<M>(obj, name, ndim, writable);
    if (a.itemsize != 8) type_error(std::string(name) + " must be float64");
    return a;
}

inline void same_scalar(const ArrayView& a, Scalar s) {
    if (a.scalar() != s)
        type_error(std::string(a.name) + " must have the same dtype as X (" +
                   (s == Scalar::f32 ? "float32" : "float64") + "), got " + a.dtype_text());
}

inline void expect_shape(const ArrayView& a, std::initializer_list<Py_ssize_t> shape) {
    bool ok = a.ndim == static_cast<int>(shape.size());
    int d = 0;
    for (auto it = shape.begin(); ok && it != shape.end(); ++it, ++d) ok = a.dim(d) == *it;
    if (ok) return;
    std::string want = "(";
    d = 0;
    for (auto it = shape.begin(); it != shape.end(); ++it, ++d)
        want += std::to_string(*it) + (shape.size() == 1 ? "," : (d + 1 < static_cast<int>(shape.size()) ? ", " : ""));
    value_error(std::string(a.name) + " must have shape " + want + "), got " + a.shape_text());
}

// A float array of X's dtype and the given shape.
template <typename M>
ArrayView like_x(py::handle obj, const char* name, Scalar s, std::initializer_list<Py_ssize_t> shape, bool writable) {
    ArrayView a = float_array<M>(obj, name, static_cast<int>(shape.size()), writable);
    same_scalar(a, s);
    expect_shape(a, shape);
    return a;
}

// A short fixed-capacity list of the arguments given: the overlap check runs on every call,
// so it should not allocate.
struct ViewList {
    static constexpr int kCapacity = 24;
    const ArrayView* items[kCapacity];
    int count = 0;
    void add(const ArrayView& a) {
        if (!a.given()) return;
        if (count == kCapacity) throw std::logic_error("linsgd: ViewList capacity exceeded");
        items[count++] = &a;
    }
    const ArrayView* const* begin() const { return items; }
    const ArrayView* const* end() const { return items + count; }
};

// An output must not share memory with any other argument: the kernel would read values it
// has already overwritten (or write the data it is reading). Every array here is contiguous, so
// [data, data + nbytes) is exactly the memory it covers; host and device memory never overlap.
inline void no_overlap(const ViewList& outputs, const ViewList& all) {
    for (const ArrayView* out : outputs) {
        const size_t out_bytes = out->nbytes();
        if (out_bytes == 0) continue;
        for (const ArrayView* other : all) {
            const size_t other_bytes = other->nbytes();
            if (other == out || other_bytes == 0 || other->on_device != out->on_device) continue;
            if (out->data < other->data + other_bytes && other->data < out->data + out_bytes)
                value_error(std::string(out->name) + " shares memory with " + other->name + "; pass separate arrays");
        }
    }
}

// linsgd._core's memory: numpy arrays only, whose values the checks read in place.
struct HostMemory {
    static constexpr bool kDevice = false;
    static constexpr const char* kExpected = "a numpy array";
    static void locate(ArrayView&) {}
    template <typename V>
    static const V* host_values(const ArrayView& a, std::vector<V>&) {
        return reinterpret_cast<const V*>(a.data);
    }
    template <typename T>
    static bool all_finite(const ArrayView& a) {
        return linsgd::cpu::all_finite<T>(reinterpret_cast<const T*>(a.data), a.size());
    }
};

}  // namespace python
}  // namespace linsgd
