// pybind11 module linsgd._core: checks every buffer, dispatches on the dtype, releases the GIL.
// Callers normally go through linsgd.kernels, but a direct call must be just as safe: nothing
// here trusts a shape, a stride, a dtype or an index it has not checked.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "linsgd/kernels.hpp"

namespace py = pybind11;

namespace {

enum class Scalar { f32, f64 };

[[noreturn]] void type_error(const std::string& msg) { throw py::type_error(msg); }
[[noreturn]] void value_error(const std::string& msg) { throw py::value_error(msg); }

std::string shape_of(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t d = 0; d < a.ndim(); ++d) {
        s += std::to_string(a.shape(d));
        if (a.ndim() == 1 || d + 1 < a.ndim()) s += a.ndim() == 1 ? "," : ", ";
    }
    return s + ")";
}

py::array require_array(py::handle obj, const char* name) {
    if (!py::isinstance<py::array>(obj))
        type_error(std::string(name) + " must be a numpy array, got " + std::string(py::str(py::type::of(obj))));
    return py::reinterpret_borrow<py::array>(obj);
}

bool native_order(const py::dtype& dt) {
    const char bo = dt.byteorder();
    const uint16_t probe = 1;
    const bool little = *reinterpret_cast<const unsigned char*>(&probe) == 1;
    return bo == '=' || bo == '|' || (bo == '<' && little) || (bo == '>' && !little);
}

// A float32/float64 array of the given rank, C-contiguous, aligned, native byte order.
py::array float_array(py::handle obj, const char* name, int ndim, bool writable) {
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

py::array double_array(py::handle obj, const char* name, int ndim, bool writable) {
    py::array a = float_array(obj, name, ndim, writable);
    if (a.dtype().itemsize() != 8) type_error(std::string(name) + " must be float64");
    return a;
}

Scalar scalar_of(const py::array& a) { return a.dtype().itemsize() == 4 ? Scalar::f32 : Scalar::f64; }

void same_scalar(const py::array& a, const char* name, Scalar s) {
    if (scalar_of(a) != s)
        type_error(std::string(name) + " must have the same dtype as X (" + (s == Scalar::f32 ? "float32" : "float64") +
                   "), got " + std::string(py::str(a.dtype())));
}

void expect_shape(const py::array& a, const char* name, std::initializer_list<py::ssize_t> shape) {
    bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
    py::ssize_t d = 0;
    for (auto it = shape.begin(); ok && it != shape.end(); ++it, ++d) ok = a.shape(d) == *it;
    if (!ok) {
        std::string want = "(";
        d = 0;
        for (auto it = shape.begin(); it != shape.end(); ++it, ++d)
            want += std::to_string(*it) + (shape.size() == 1 ? "," : (d + 1 < static_cast<py::ssize_t>(shape.size()) ? ", " : ""));
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
void no_overlap(const NamedList& outputs, const NamedList& all) {
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

double finite(double v, const char* name) {
    if (!std::isfinite(v)) value_error(std::string(name) + " must be finite, got " + std::to_string(v));
    return v;
}

// An array handle holding nothing: py::array's default constructor would allocate a numpy array.
py::array unset_array() { return py::reinterpret_steal<py::array>(py::handle()); }

struct Checked {
    py::array x = unset_array(), y = unset_array(), w = unset_array(), b = unset_array();
    bool has_bias = false;
    Scalar scalar = Scalar::f64;
    int64_t rows = 0, features = 0, outputs = 0;
};

Checked check_model(py::handle X, py::handle Y, py::handle W, py::handle b, bool params_writable) {
    Checked c;
    c.x = float_array(X, "X", 2, false);
    c.scalar = scalar_of(c.x);
    c.rows = c.x.shape(0);
    c.features = c.x.shape(1);
    if (c.rows < 1) value_error("X must have at least one row");
    c.y = float_array(Y, "Y", 2, false);
    same_scalar(c.y, "Y", c.scalar);
    c.outputs = c.y.shape(1);
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
py::array sample_weights(py::handle obj, const Checked& c) {
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

// Reached from the compiled loop with the GIL released: take it back briefly to see whether a
// signal (Ctrl-C) is pending; the Python exception stays set for the caller to raise.
bool python_signal_pending(void*) {
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
}

// ---- all_finite: one pass, no allocation -----------------------------------------------------

// x - x is +0 for every finite x and NaN for an infinity or a NaN, so a sum of such terms is
// zero exactly when all are finite. Eight independent sums per block (the compiler vectorises
// them) and one test per block, so a NaN early in a large array stops the scan early.
template <typename T>
bool finite_contiguous(const T* p, int64_t n) {
    constexpr int64_t kLanes = 8;
    constexpr int64_t kBlock = int64_t(1) << 12;
    for (int64_t start = 0; start < n; start += kBlock) {
        const int64_t end = std::min(n, start + kBlock);
        T acc[kLanes] = {};
        int64_t i = start;
        for (; i + kLanes <= end; i += kLanes)
            for (int64_t l = 0; l < kLanes; ++l) acc[l] = acc[l] + (p[i + l] - p[i + l]);
        for (; i < end; ++i) acc[0] = acc[0] + (p[i] - p[i]);
        T total = T(0);
        for (int64_t l = 0; l < kLanes; ++l) total = total + acc[l];
        if (total != T(0)) return false;
    }
    return true;
}

// Any layout (negative strides, unaligned data included): element by element through memcpy.
template <typename T>
bool finite_strided(const char* p, const py::ssize_t* shape, const py::ssize_t* strides, py::ssize_t ndim) {
    if (ndim == 0) {
        T v;
        std::memcpy(&v, p, sizeof(T));
        return std::isfinite(v);
    }
    if (ndim == 1) {
        for (py::ssize_t i = 0; i < shape[0]; ++i) {
            T v;
            std::memcpy(&v, p + i * strides[0], sizeof(T));
            if (!std::isfinite(v)) return false;
        }
        return true;
    }
    for (py::ssize_t i = 0; i < shape[0]; ++i)
        if (!finite_strided<T>(p + i * strides[0], shape + 1, strides + 1, ndim - 1)) return false;
    return true;
}

template <typename T>
bool all_finite_of(const py::array& a) {
    const int64_t n = a.size();
    if (n == 0) return true;
    const bool aligned = reinterpret_cast<std::uintptr_t>(a.data()) % sizeof(T) == 0;
    const bool contiguous = (a.flags() & (py::array::c_style | py::array::f_style)) != 0;
    const char* p = static_cast<const char*>(a.data());
    const py::ssize_t ndim = a.ndim();
    std::vector<py::ssize_t> shape, strides;
    if (!(contiguous && aligned)) {
        shape.assign(a.shape(), a.shape() + ndim);
        strides.assign(a.strides(), a.strides() + ndim);
    }
    auto scan = [&]() {
        return contiguous && aligned ? finite_contiguous<T>(reinterpret_cast<const T*>(p), n)
                                     : finite_strided<T>(p, shape.data(), strides.data(), ndim);
    };
    if (n < (int64_t(1) << 16)) return scan();
    py::gil_scoped_release nogil;
    return scan();
}

bool all_finite_py(py::handle obj) {
    py::array a = require_array(obj, "a");
    const py::dtype dt = a.dtype();
    if (dt.kind() != 'f' || (dt.itemsize() != 4 && dt.itemsize() != 8) || !native_order(dt))
        type_error("all_finite needs a float32 or float64 array in native byte order, got dtype " +
                   std::string(py::str(dt)));
    return dt.itemsize() == 4 ? all_finite_of<float>(a) : all_finite_of<double>(a);
}

// ---- the kernels -----------------------------------------------------------------------------

double loss_py(py::handle X, py::handle Y, py::handle W, py::handle b, py::handle sample_weight) {
    const Checked c = check_model(X, Y, W, b, false);
    const py::array sw = sample_weights(sample_weight, c);
    py::gil_scoped_release nogil;
    if (c.scalar == Scalar::f32)
        return linsgd::cpu::loss<float>(weighted(data_of<float>(c.x, c.y), sw), model_of<float>(c));
    return linsgd::cpu::loss<double>(weighted(data_of<double>(c.x, c.y), sw), model_of<double>(c));
}

double gradient_py(py::handle X, py::handle Y, py::handle W, py::handle b, py::handle gW, py::handle gb,
                   py::handle sample_weight) {
    const Checked c = check_model(X, Y, W, b, false);
    const py::array sw = sample_weights(sample_weight, c);
    py::array gw = float_array(gW, "gW", 2, true);
    same_scalar(gw, "gW", c.scalar);
    expect_shape(gw, "gW", {c.outputs, c.features});
    py::array gbias = unset_array();
    if (c.has_bias) {
        if (gb.is_none()) value_error("gb must be an array of shape (U,) when b is given");
        gbias = float_array(gb, "gb", 1, true);
        same_scalar(gbias, "gb", c.scalar);
        expect_shape(gbias, "gb", {c.outputs});
    }
    NamedList all, outs;
    all.add(c.x, "X");
    all.add(c.y, "Y");
    all.add(c.w, "W");
    all.add(gw, "gW");
    outs.add(gw, "gW");
    if (c.has_bias) {
        all.add(c.b, "b");
        all.add(gbias, "gb");
        outs.add(gbias, "gb");
    }
    if (sw.ptr()) all.add(sw, "sample_weight");
    no_overlap(outs, all);
    py::gil_scoped_release nogil;
    if (c.scalar == Scalar::f32)
        return linsgd::cpu::gradient<float>(weighted(data_of<float>(c.x, c.y), sw), model_of<float>(c),
                                            static_cast<float*>(gw.mutable_data()),
                                            c.has_bias ? static_cast<float*>(gbias.mutable_data()) : nullptr);
    return linsgd::cpu::gradient<double>(weighted(data_of<double>(c.x, c.y), sw), model_of<double>(c),
                                         static_cast<double*>(gw.mutable_data()),
                                         c.has_bias ? static_cast<double*>(gbias.mutable_data()) : nullptr);
}

template <typename T>
linsgd::TrainOutcome run_train(const Checked& c, const py::array* order, int64_t rows_per_epoch, int64_t batch_size,
                               const py::array& lr, const linsgd::SgdHyper& hyper, py::array* buf_w,
                               py::array* buf_b, bool momentum_initialized, py::array& losses,
                               const py::array* x_valid, const py::array* y_valid, py::array* valid_losses,
                               double target_loss, const py::array& sw) {
    linsgd::TrainArgs<T> a;
    a.data = weighted(data_of<T>(c.x, c.y), sw);
    a.model = model_of<T>(c);
    a.order = order ? static_cast<const int64_t*>(order->data()) : nullptr;
    a.rows_per_epoch = rows_per_epoch;
    a.batch_size = batch_size;
    a.lr = static_cast<const double*>(lr.data());
    a.epochs = lr.shape(0);
    a.hyper = hyper;
    a.buf_weight = buf_w ? static_cast<T*>(buf_w->mutable_data()) : nullptr;
    a.buf_bias = buf_b ? static_cast<T*>(buf_b->mutable_data()) : nullptr;
    a.momentum_initialized = momentum_initialized;
    a.losses = static_cast<double*>(losses.mutable_data());
    if (valid_losses) {
        a.valid = data_of<T>(*x_valid, *y_valid);
        a.valid_losses = static_cast<double*>(valid_losses->mutable_data());
    }
    a.target_loss = target_loss;
    const linsgd::StopCheck stop{&python_signal_pending, nullptr};
    py::gil_scoped_release nogil;
    return linsgd::cpu::train<T>(a, stop);
}

py::tuple train_py(py::handle X, py::handle Y, py::handle W, py::handle b, py::handle order_obj, int64_t batch_size,
                   py::handle lr_obj, double weight_decay, bool decay_bias, double l2, double momentum,
                   double dampening, bool nesterov, bool maximize, py::handle buf_W, py::handle buf_b,
                   bool momentum_initialized, py::handle losses_obj, py::handle X_valid, py::handle Y_valid,
                   py::handle valid_losses_obj, double target_loss, py::handle sample_weight) {
    const Checked c = check_model(X, Y, W, b, true);
    const py::array sw = sample_weights(sample_weight, c);
    if (batch_size < 1) value_error("batch_size must be >= 1, got " + std::to_string(batch_size));
    py::array lr = double_array(lr_obj, "lr", 1, false);
    const int64_t epochs = lr.shape(0);
    const double* lr_values = static_cast<const double*>(lr.data());
    for (int64_t e = 0; e < epochs; ++e)
        if (!std::isfinite(lr_values[e])) value_error("lr must be finite in every epoch");

    linsgd::SgdHyper hyper;
    hyper.weight_decay = finite(weight_decay, "weight_decay");
    hyper.decay_bias = decay_bias;
    hyper.l2 = finite(l2, "l2");
    hyper.momentum = finite(momentum, "momentum");
    hyper.dampening = finite(dampening, "dampening");
    hyper.nesterov = nesterov;
    hyper.maximize = maximize;
    if (nesterov && (momentum == 0.0 || dampening != 0.0))
        value_error("nesterov requires momentum > 0 and dampening == 0");
    if (std::isinf(target_loss)) value_error("target_loss must be finite or NaN (disabled)");

    int64_t rows_per_epoch = c.rows;
    py::array order = unset_array();
    const bool has_order = !order_obj.is_none();
    if (has_order) {
        // Row indices may repeat (sampling with replacement) and an epoch may have more or fewer
        // rows than X; each one must lie in [0, rows).
        order = require_array(order_obj, "order");
        if (order.dtype().kind() != 'i' || order.dtype().itemsize() != 8 || !native_order(order.dtype()))
            type_error("order must be an int64 array, got dtype " + std::string(py::str(order.dtype())));
        if (order.ndim() != 2) value_error("order must be 2-D (epochs, rows), got shape " + shape_of(order));
        if (!(order.flags() & py::array::c_style)) value_error("order must be C-contiguous");
        if (order.size() > 0 && reinterpret_cast<std::uintptr_t>(order.data()) % sizeof(int64_t) != 0)
            value_error("order must be aligned to its itemsize");
        if (order.shape(0) != epochs)
            value_error("order must have one row per epoch (" + std::to_string(epochs) + "), got shape " +
                        shape_of(order));
        rows_per_epoch = order.shape(1);
        const int64_t* idx = static_cast<const int64_t*>(order.data());
        for (int64_t k = 0, n = epochs * rows_per_epoch; k < n; ++k)
            if (idx[k] < 0 || idx[k] >= c.rows)
                value_error("order holds row index " + std::to_string(idx[k]) + ", outside [0, " +
                            std::to_string(c.rows) + ")");
    }
    if (rows_per_epoch < 1) value_error("order must select at least one row per epoch");
    // A batch larger than the epoch is the whole epoch: the same steps, and no overflow below.
    batch_size = std::min(batch_size, rows_per_epoch);
    const int64_t steps_per_epoch = rows_per_epoch / batch_size + (rows_per_epoch % batch_size != 0);
    if (epochs > std::numeric_limits<int64_t>::max() / steps_per_epoch)
        value_error("epochs * steps per epoch overflows int64");

    py::array losses = double_array(losses_obj, "losses", 1, true);
    if (losses.shape(0) < epochs * steps_per_epoch)
        value_error("losses must hold epochs * steps_per_epoch = " + std::to_string(epochs * steps_per_epoch) +
                    " values, got shape " + shape_of(losses));

    py::array bw = unset_array(), bb = unset_array();
    const bool use_momentum = momentum != 0.0;
    if (use_momentum) {
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

    const bool has_valid = !valid_losses_obj.is_none();
    py::array xv = unset_array(), yv = unset_array(), vl = unset_array();
    if (has_valid) {
        xv = float_array(X_valid, "X_valid", 2, false);
        same_scalar(xv, "X_valid", c.scalar);
        if (xv.shape(0) < 1 || xv.shape(1) != c.features)
            value_error("X_valid must have shape (M_valid >= 1, " + std::to_string(c.features) + "), got " +
                        shape_of(xv));
        yv = float_array(Y_valid, "Y_valid", 2, false);
        same_scalar(yv, "Y_valid", c.scalar);
        expect_shape(yv, "Y_valid", {xv.shape(0), c.outputs});
        vl = double_array(valid_losses_obj, "valid_losses", 1, true);
        expect_shape(vl, "valid_losses", {epochs});
    } else if (!X_valid.is_none() || !Y_valid.is_none()) {
        value_error("X_valid and Y_valid need valid_losses to write to");
    }

    NamedList all, outs;
    all.add(c.x, "X");
    all.add(c.y, "Y");
    all.add(c.w, "W");
    all.add(lr, "lr");
    all.add(losses, "losses");
    outs.add(c.w, "W");
    outs.add(losses, "losses");
    if (c.has_bias) {
        all.add(c.b, "b");
        outs.add(c.b, "b");
    }
    if (has_order) all.add(order, "order");
    if (sw.ptr()) all.add(sw, "sample_weight");
    if (use_momentum) {
        all.add(bw, "buf_W");
        outs.add(bw, "buf_W");
        if (c.has_bias) {
            all.add(bb, "buf_b");
            outs.add(bb, "buf_b");
        }
    }
    if (has_valid) {
        all.add(xv, "X_valid");
        all.add(yv, "Y_valid");
        all.add(vl, "valid_losses");
        outs.add(vl, "valid_losses");
    }
    no_overlap(outs, all);

    py::array* bw_ptr = use_momentum ? &bw : nullptr;
    py::array* bb_ptr = use_momentum && c.has_bias ? &bb : nullptr;
    const linsgd::TrainOutcome out =
        c.scalar == Scalar::f32
            ? run_train<float>(c, has_order ? &order : nullptr, rows_per_epoch, batch_size, lr, hyper, bw_ptr, bb_ptr,
                               momentum_initialized, losses, has_valid ? &xv : nullptr, has_valid ? &yv : nullptr,
                               has_valid ? &vl : nullptr, target_loss, sw)
            : run_train<double>(c, has_order ? &order : nullptr, rows_per_epoch, batch_size, lr, hyper, bw_ptr, bb_ptr,
                                momentum_initialized, losses, has_valid ? &xv : nullptr, has_valid ? &yv : nullptr,
                                has_valid ? &vl : nullptr, target_loss, sw);
    if (out.status == linsgd::TrainStatus::interrupted && PyErr_Occurred()) throw py::error_already_set();
    return py::make_tuple(out.steps_done, static_cast<int>(out.status));
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "linsgd's compiled CPU kernels (private: use linsgd.kernels).";
    m.def("loss", &loss_py, py::arg("X"), py::arg("Y"), py::arg("W"), py::arg("b").none(true),
          py::arg("sample_weight").none(true) = py::none(),
          "Mean squared error of the model (W, b) on (X, Y), rounded as torch's MSELoss rounds it.");
    m.def("gradient", &gradient_py, py::arg("X"), py::arg("Y"), py::arg("W"), py::arg("b").none(true),
          py::arg("gW"), py::arg("gb").none(true), py::arg("sample_weight").none(true) = py::none(),
          "Write the MSE gradient of one batch into gW (U, N) and gb (U,); return the batch loss.");
    m.def("train", &train_py, py::arg("X"), py::arg("Y"), py::arg("W"), py::arg("b").none(true),
          py::arg("order").none(true), py::arg("batch_size"), py::arg("lr"), py::arg("weight_decay"),
          py::arg("decay_bias"), py::arg("l2"), py::arg("momentum"), py::arg("dampening"), py::arg("nesterov"),
          py::arg("maximize"), py::arg("buf_W").none(true), py::arg("buf_b").none(true),
          py::arg("momentum_initialized"), py::arg("losses"), py::arg("X_valid").none(true),
          py::arg("Y_valid").none(true), py::arg("valid_losses").none(true), py::arg("target_loss"),
          py::arg("sample_weight").none(true) = py::none(),
          "Run len(lr) epochs of mini-batch SGD in place; return (steps_done, status) with status 0 completed, "
          "1 target_loss reached, 2 diverged, 3 interrupted.");
    m.def("all_finite", &all_finite_py, py::arg("a"),
          "Whether every element of the float32/float64 array a is finite (no NaN, no infinity): one "
          "pass, any layout, no allocation; the GIL is released for large arrays.");
    m.def("cpu_variant", &linsgd::cpu::variant_name,
          "The instruction-set variant the kernels run: 'baseline', 'avx2' or 'avx512'.");
    m.def("supported_cpu_variants", &linsgd::cpu::supported_variants,
          "The instruction-set variants this CPU can run.");
    m.def(
        "set_cpu_variant",
        [](const std::string& name) {
            if (!linsgd::cpu::set_variant(name.c_str()))
                value_error("cpu variant must be one of this CPU's " +
                            std::string(py::str(py::cast(linsgd::cpu::supported_variants()))) + ", got '" + name +
                            "'");
        },
        py::arg("name"), "Force an instruction-set variant (for tests and benchmarks: all give the same bits).");
}
