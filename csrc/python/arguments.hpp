// The arguments of loss, gradient and train, checked once for both bindings (linsgd._core with
// HostMemory, linsgd._cuda with its device-aware policy): arrays through array_view.hpp, Python
// ints, reals and bools converted here, the value rules linsgd.kernels applies (non-negative
// rates, penalties and momentum, nesterov's condition, the thread count, the steps per epoch)
// enforced here too, so that a direct call accepts exactly what the Python API accepts. Nothing
// here trusts a shape, a stride, a dtype or an index it has not checked. Everything raises
// TypeError or ValueError naming the argument, before anything is written.
#pragma once

#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "linsgd/kernels.hpp"
#include "linsgd/steps.hpp"
#include "python/array_view.hpp"

namespace linsgd {
namespace python {

// ---- scalars ---------------------------------------------------------------------------------

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

// A real as Python writes it (0.1, not 0.100000).
inline std::string real_text(double v) { return py::repr(py::float_(v)); }

inline double finite(double v, const char* name) {
    if (!std::isfinite(v)) value_error(std::string(name) + " must be finite, got " + real_text(v));
    return v;
}

inline double finite_non_negative(double v, const char* name) {
    finite(v, name);
    if (!(v >= 0.0)) value_error(std::string(name) + " must be >= 0, got " + real_text(v));
    return v;
}

inline int thread_count(int64_t threads) {
    if (threads < 1 || threads > kMaxThreads)
        value_error("threads must be between 1 and " + std::to_string(kMaxThreads) + ", got " +
                    std::to_string(threads));
    return static_cast<int>(threads);
}

// ---- the data and the model ------------------------------------------------------------------

struct ModelViews {
    ArrayView x, y, w, b, sample_weight;
    Scalar scalar = Scalar::f64;
    int64_t rows = 0, features = 0, outputs = 0;
    bool has_bias() const { return b.given(); }
};

// Row weights: finite and non-negative (read on the host).
template <typename M, typename T>
void check_weights(const ArrayView& w) {
    std::vector<T> copy;
    const T* v = M::template host_values<T>(w, copy);
    for (Py_ssize_t i = 0, n = w.size(); i < n; ++i)
        if (!(v[i] >= T(0)) || !std::isfinite(v[i])) value_error("sample_weight must be finite and >= 0");
}

// X (M >= 1, N), Y (M, U >= 1), W (U, N), b (U,) or None, sample_weight (M,) or None.
template <typename M>
ModelViews check_model(py::handle X, py::handle Y, py::handle W, py::handle b, py::handle sample_weight,
                       bool params_writable) {
    ModelViews c;
    c.x = float_array<M>(X, "X", 2, false);
    c.scalar = c.x.scalar();
    c.rows = c.x.dim(0);
    c.features = c.x.dim(1);
    if (c.rows < 1) value_error("X must have at least one row");
    c.y = float_array<M>(Y, "Y", 2, false);
    same_scalar(c.y, c.scalar);
    c.outputs = c.y.dim(1);
    if (c.y.dim(0) != c.rows)
        value_error("Y must have as many rows as X (" + std::to_string(c.rows) + "), got shape " + c.y.shape_text());
    if (c.outputs < 1) value_error("Y must have at least one column");
    c.w = like_x<M>(W, "W", c.scalar, {c.outputs, c.features}, params_writable);
    if (!b.is_none()) c.b = like_x<M>(b, "b", c.scalar, {c.outputs}, params_writable);
    if (!sample_weight.is_none()) {
        c.sample_weight = like_x<M>(sample_weight, "sample_weight", c.scalar, {c.rows}, false);
        if (c.scalar == Scalar::f32)
            check_weights<M, float>(c.sample_weight);
        else
            check_weights<M, double>(c.sample_weight);
    }
    return c;
}

inline void add_inputs(const ModelViews& m, ViewList& all) {
    for (const ArrayView* a : {&m.x, &m.y, &m.w, &m.b, &m.sample_weight}) all.add(*a);
}

constexpr const char* kLossDoc =
    "Mean squared error of the model (W, b) on (X, Y), rounded as torch's MSELoss rounds it.";
constexpr const char* kGradientDoc =
    "Write the MSE gradient of one batch into gW (U, N) and gb (U,); return the batch loss.";

// ---- gradient --------------------------------------------------------------------------------

struct GradientCall {
    ModelViews model;
    ArrayView gw, gb;
    ViewList arrays() const {
        ViewList all;
        add_inputs(model, all);
        all.add(gw);
        all.add(gb);
        return all;
    }
};

template <typename M>
GradientCall check_gradient(py::handle X, py::handle Y, py::handle W, py::handle b, py::handle gW, py::handle gb,
                            py::handle sample_weight) {
    GradientCall c;
    c.model = check_model<M>(X, Y, W, b, sample_weight, false);
    c.gw = like_x<M>(gW, "gW", c.model.scalar, {c.model.outputs, c.model.features}, true);
    if (c.model.has_bias()) {
        if (gb.is_none()) value_error("gb must be an array of shape (U,) when b is given");
        c.gb = like_x<M>(gb, "gb", c.model.scalar, {c.model.outputs}, true);
    }
    ViewList outs;
    outs.add(c.gw);
    outs.add(c.gb);
    no_overlap(outs, c.arrays());
    return c;
}

// ---- train -----------------------------------------------------------------------------------

// train's parameters, the same in both bindings (parsed by python/fastcall.hpp).
// clang-format off
enum TrainArg : int {
    kX, kY, kW, kB, kOrder, kBatchSize, kLr, kWeightDecay, kDecayBias, kL2, kMomentum, kDampening, kNesterov,
    kMaximize, kBufW, kBufB, kMomentumInitialized, kLosses, kXValid, kYValid, kValidLosses, kTargetLoss,
    kSampleWeight, kThreads, kTrainArgCount
};
constexpr int kTrainRequired = kSampleWeight;  // the arguments before sample_weight have no default
constexpr const char* kTrainArgNames[kTrainArgCount] = {
    "X", "Y", "W", "b", "order", "batch_size", "lr", "weight_decay", "decay_bias", "l2", "momentum", "dampening",
    "nesterov", "maximize", "buf_W", "buf_b", "momentum_initialized", "losses", "X_valid", "Y_valid", "valid_losses",
    "target_loss", "sample_weight", "threads"};
#define LINSGD_TRAIN_SIGNATURE                                                                                     \
    "train(X, Y, W, b, order, batch_size, lr, weight_decay, decay_bias, l2, momentum, dampening, nesterov, "       \
    "maximize, buf_W, buf_b, momentum_initialized, losses, X_valid, Y_valid, valid_losses, target_loss, "          \
    "sample_weight=None, threads=1)\n--\n\n"
// clang-format on

struct TrainCall {
    ModelViews model;
    ArrayView order, lr, losses, buf_w, buf_b, x_valid, y_valid, valid_losses;
    const double* lr_values = nullptr;  // host memory: lr itself or lr_copy
    std::vector<double> lr_copy;
    int64_t epochs = 0;
    EpochSteps steps{0, 1};
    SgdHyper hyper;
    bool momentum_initialized = false;
    double target_loss = std::numeric_limits<double>::quiet_NaN();
    int threads = 1;

    TrainCall() = default;
    TrainCall(TrainCall&&) = default;  // lr_values may point into lr_copy, which a move keeps
    TrainCall(const TrainCall&) = delete;
    TrainCall& operator=(const TrainCall&) = delete;

    bool use_momentum() const { return hyper.momentum != 0.0; }
    bool has_valid() const { return valid_losses.given(); }
    ViewList arrays() const {
        ViewList all;
        add_inputs(model, all);
        for (const ArrayView* a : {&order, &lr, &losses, &buf_w, &buf_b, &x_valid, &y_valid, &valid_losses})
            all.add(*a);
        return all;
    }
    ViewList outputs() const {
        ViewList outs;
        for (const ArrayView* a : {&model.w, &model.b, &losses, &buf_w, &buf_b, &valid_losses}) outs.add(*a);
        return outs;
    }
};

// Row indices may repeat (sampling with replacement) and an epoch may have more or fewer rows
// than X; each one must lie in [0, rows).
template <typename M>
ArrayView check_order(py::handle obj, int64_t epochs, int64_t rows) {
    ArrayView o = any_array<M>(obj, "order");
    if (o.kind != 'i' || o.itemsize != 8 || !o.native)
        type_error("order must be an int64 array, got dtype " + o.dtype_text());
    if (o.ndim != 2) value_error("order must be 2-D (epochs, rows), got shape " + o.shape_text());
    check_layout(o, false);
    if (o.dim(0) != epochs)
        value_error("order must have one row per epoch (" + std::to_string(epochs) + "), got shape " + o.shape_text());
    std::vector<int64_t> copy;
    const int64_t* idx = M::template host_values<int64_t>(o, copy);
    for (Py_ssize_t k = 0, n = o.size(); k < n; ++k)
        if (idx[k] < 0 || idx[k] >= rows)
            value_error("order holds row index " + std::to_string(idx[k]) + ", outside [0, " + std::to_string(rows) +
                        ")");
    return o;
}

template <typename M>
TrainCall check_train(PyObject* const* arg) {
    auto h = [arg](int i) { return py::handle(arg[i] ? arg[i] : Py_None); };
    TrainCall c;
    c.model = check_model<M>(h(kX), h(kY), h(kW), h(kB), h(kSampleWeight), true);
    const ModelViews& m = c.model;
    const int64_t batch_size = int_arg(arg[kBatchSize], "batch_size");
    if (batch_size < 1) value_error("batch_size must be >= 1, got " + std::to_string(batch_size));
    c.lr = double_array<M>(h(kLr), "lr", 1, false);
    c.epochs = c.lr.dim(0);
    c.lr_values = M::template host_values<double>(c.lr, c.lr_copy);
    for (int64_t e = 0; e < c.epochs; ++e)
        if (!(std::isfinite(c.lr_values[e]) && c.lr_values[e] >= 0.0))
            value_error("lr must be finite and >= 0 in every epoch, got " + real_text(c.lr_values[e]) + " in epoch " +
                        std::to_string(e));

    SgdHyper& hp = c.hyper;
    hp.weight_decay = finite_non_negative(real_arg(arg[kWeightDecay], "weight_decay"), "weight_decay");
    hp.decay_bias = bool_arg(arg[kDecayBias], "decay_bias");
    hp.l2 = finite_non_negative(real_arg(arg[kL2], "l2"), "l2");
    hp.momentum = finite_non_negative(real_arg(arg[kMomentum], "momentum"), "momentum");
    hp.dampening = finite(real_arg(arg[kDampening], "dampening"), "dampening");
    hp.nesterov = bool_arg(arg[kNesterov], "nesterov");
    hp.maximize = bool_arg(arg[kMaximize], "maximize");
    if (hp.nesterov && (hp.momentum <= 0.0 || hp.dampening != 0.0))
        value_error("nesterov requires momentum > 0 and dampening == 0");
    c.momentum_initialized = bool_arg(arg[kMomentumInitialized], "momentum_initialized");
    c.target_loss = real_arg(arg[kTargetLoss], "target_loss");
    if (std::isinf(c.target_loss)) value_error("target_loss must be finite or NaN (disabled)");
    c.threads = thread_count(arg[kThreads] ? int_arg(arg[kThreads], "threads") : 1);

    int64_t rows_per_epoch = m.rows;
    if (!h(kOrder).is_none()) {
        c.order = check_order<M>(h(kOrder), c.epochs, m.rows);
        rows_per_epoch = c.order.dim(1);
    }
    if (rows_per_epoch < 1) value_error("order must select at least one row per epoch");
    c.steps = EpochSteps(rows_per_epoch, batch_size);
    if (!c.steps.total_fits(c.epochs)) value_error("epochs * steps per epoch overflows int64");

    c.losses = double_array<M>(h(kLosses), "losses", 1, true);
    const int64_t total = c.epochs * c.steps.steps;
    if (c.losses.dim(0) < total)
        value_error("losses must hold epochs * steps_per_epoch = " + std::to_string(total) + " values, got shape " +
                    c.losses.shape_text());

    if (c.use_momentum()) {
        c.buf_w = like_x<M>(h(kBufW), "buf_W", m.scalar, {m.outputs, m.features}, true);
        if (m.has_bias()) {
            if (h(kBufB).is_none())
                value_error("buf_b must be an array of shape (U,) when b is given and momentum != 0");
            c.buf_b = like_x<M>(h(kBufB), "buf_b", m.scalar, {m.outputs}, true);
        }
    }

    if (!h(kValidLosses).is_none()) {
        c.x_valid = float_array<M>(h(kXValid), "X_valid", 2, false);
        same_scalar(c.x_valid, m.scalar);
        if (c.x_valid.dim(0) < 1 || c.x_valid.dim(1) != m.features)
            value_error("X_valid must have shape (M_valid >= 1, " + std::to_string(m.features) + "), got " +
                        c.x_valid.shape_text());
        c.y_valid = like_x<M>(h(kYValid), "Y_valid", m.scalar, {c.x_valid.dim(0), m.outputs}, false);
        c.valid_losses = double_array<M>(h(kValidLosses), "valid_losses", 1, true);
        expect_shape(c.valid_losses, {c.epochs});
    } else if (!h(kXValid).is_none() || !h(kYValid).is_none()) {
        value_error("X_valid and Y_valid need valid_losses to write to");
    }
    no_overlap(c.outputs(), c.arrays());
    return c;
}

}  // namespace python
}  // namespace linsgd
