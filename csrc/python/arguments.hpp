// The arguments of loss, gradient and train, checked once for both bindings (linsgd._core with
// HostMemory, linsgd._cuda with its device-aware policy): arrays through array_view.hpp, Python
// ints, reals and bools converted here, the value rules linsgd.kernels applies (non-negative
// rates, penalties and momentum, nesterov's condition, the thread count, the steps per epoch)
// enforced here too, so that a direct call accepts exactly what the Python API accepts. Nothing
// here trusts a shape, a stride, a dtype or an index it has not checked. Everything raises
// TypeError or ValueError naming the argument, before anything is written.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "linsgd/kernels.hpp"
#include "linsgd/steps.hpp"
#include "python/array_view.hpp"
#include "python/csr.hpp"

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
    ArrayView x, y, w, b, sample_weight;  // a CSR X: x is its data (the stored values)
    CsrViews csr;
    Scalar scalar = Scalar::f64;
    int64_t rows = 0, features = 0, outputs = 0;
    bool has_bias() const { return b.given(); }
    bool sparse() const { return csr.given(); }
};

// X as a float array (M >= 1, N), or in CSR form (the columns are W's).
template <typename M>
void check_x(py::handle X, py::handle W, ModelViews& c) {
    if (is_csr(X)) {
        c.csr = check_csr<M>(X, kCsrX, W);
        c.x = c.csr.data;
        c.rows = c.csr.rows;
        c.features = float_array<M>(W, "W", 2, false).dim(1);
    } else {
        c.x = float_array<M>(X, "X", 2, false);
        c.rows = c.x.dim(0);
        c.features = c.x.dim(1);
    }
    c.scalar = c.x.scalar();
    if (c.rows < 1) value_error("X must have at least one row");
}

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
    check_x<M>(X, W, c);
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
    for (const ArrayView* a : {&m.x, &m.csr.indices, &m.csr.indptr, &m.y, &m.w, &m.b, &m.sample_weight}) all.add(*a);
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
    kX, kY, kW, kB, kOrder, kBatchSize, kLr, kEpochs, kWeightDecay, kDecayBias, kL2, kMomentum, kDampening,
    kNesterov, kMaximize, kBufW, kBufB, kMomentumInitialized, kXValid, kYValid, kTargetLoss, kSampleWeight,
    kThreads, kFlags, kTrainArgCount
};
constexpr int kTrainRequired = kSampleWeight;  // the arguments before sample_weight have no default
constexpr const char* kTrainArgNames[kTrainArgCount] = {
    "X", "Y", "W", "b", "order", "batch_size", "lr", "epochs", "weight_decay", "decay_bias", "l2", "momentum",
    "dampening", "nesterov", "maximize", "buf_W", "buf_b", "momentum_initialized", "X_valid", "Y_valid",
    "target_loss", "sample_weight", "threads", "flags"};
#define LINSGD_TRAIN_SIGNATURE                                                                                     \
    "train(X, Y, W, b, order, batch_size, lr, epochs, weight_decay, decay_bias, l2, momentum, dampening, "         \
    "nesterov, maximize, buf_W, buf_b, momentum_initialized, X_valid, Y_valid, target_loss, sample_weight=None, "  \
    "threads=1, flags=3)\n--\n\n"
// clang-format on

constexpr int64_t kCheckData = 1;    // refuse NaN or infinity in X, Y, X_valid, Y_valid
constexpr int64_t kCheckParams = 2;  // refuse NaN or infinity in W, b
constexpr int64_t kCheckOnly = 4;    // check and make the loss arrays; run no step
constexpr int64_t kAllFlags = kCheckData | kCheckParams | kCheckOnly;

// train's reals are Python floats (numpy's float64 is one) or ints, nothing else: whatever
// train accepts, linsgd.kernels accepts with the same meaning; what it refuses, linsgd.kernels
// converts (or refuses with its own message) before calling again.
inline double exact_real(PyObject* o, const char* name) {
    if (PyFloat_Check(o)) return PyFloat_AS_DOUBLE(o);
    if (!PyLong_Check(o) || PyBool_Check(o))
        type_error(std::string(name) + " must be a float or an int, got " + Py_TYPE(o)->tp_name);
    const double v = PyLong_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        value_error(std::string(name) + " is too large for a float");
    }
    return v;
}

inline bool is_real(PyObject* o) { return PyFloat_Check(o) || (PyLong_Check(o) && !PyBool_Check(o)); }

// torch.optim.SGD's settings, seven consecutive arguments in train's and update's order:
// weight_decay, decay_bias, l2, momentum, dampening, nesterov, maximize.
inline SgdHyper sgd_hyper(PyObject* const* arg) {
    SgdHyper hp;
    hp.weight_decay = finite_non_negative(exact_real(arg[0], "weight_decay"), "weight_decay");
    hp.decay_bias = bool_arg(arg[1], "decay_bias");
    hp.l2 = finite_non_negative(exact_real(arg[2], "l2"), "l2");
    hp.momentum = finite_non_negative(exact_real(arg[3], "momentum"), "momentum");
    hp.dampening = finite(exact_real(arg[4], "dampening"), "dampening");
    hp.nesterov = bool_arg(arg[5], "nesterov");
    hp.maximize = bool_arg(arg[6], "maximize");
    if (hp.nesterov && (hp.momentum <= 0.0 || hp.dampening != 0.0))
        value_error("nesterov requires momentum > 0 and dampening == 0");
    return hp;
}

struct TrainCall {
    ModelViews model;
    ArrayView order, lr, buf_w, buf_b, x_valid, y_valid, losses, valid_losses;
    CsrViews csr_valid;                           // a CSR X_valid: x_valid is its data
    py::object losses_array, valid_losses_array;  // made here, returned to the caller
    const double* lr_values = nullptr;            // host memory: lr itself or lr_copy
    std::vector<double> lr_copy;
    int64_t epochs = 0;
    EpochSteps steps{0, 1};
    SgdHyper hyper;
    bool momentum_initialized = false;
    double target_loss = std::numeric_limits<double>::quiet_NaN();
    int threads = 1;
    int64_t flags = kCheckData | kCheckParams;
    bool data_check_deferred = false;  // flag 1 left to the training pass (TrainArgs::find_bad_data)

    TrainCall() = default;
    TrainCall(TrainCall&&) = default;  // lr_values may point into lr_copy, which a move keeps
    TrainCall(const TrainCall&) = delete;
    TrainCall& operator=(const TrainCall&) = delete;

    bool use_momentum() const { return hyper.momentum != 0.0; }
    bool has_valid() const { return x_valid.given(); }
    bool check_only() const { return (flags & kCheckOnly) != 0; }
    ViewList arrays() const {
        ViewList all;
        add_inputs(model, all);
        for (const ArrayView* a : {&order, &lr, &buf_w, &buf_b, &x_valid, &csr_valid.indices, &csr_valid.indptr,
                                   &y_valid, &losses, &valid_losses})
            all.add(*a);
        return all;
    }
    py::tuple result(int64_t steps_done, int status) const {
        return py::make_tuple(steps_done, status, losses_array,
                              valid_losses_array ? valid_losses_array : py::object(py::none()));
    }
};

// Y (M, U) or, for one output, (M,).
template <typename M>
ArrayView targets(py::handle obj, const char* name, Scalar s, int64_t rows, int64_t outputs) {
    ArrayView y = any_array<M>(obj, name);
    const bool one_d = y.ndim == 1 && (outputs < 0 || outputs == 1);
    y = float_array<M>(obj, name, one_d ? 1 : 2, false);
    same_scalar(y, s);
    if (y.dim(0) != rows || (!one_d && outputs >= 0 && y.dim(1) != outputs)) {
        const std::string cols = outputs < 0 ? "U" : std::to_string(outputs);
        value_error(std::string(name) + " must have shape (" + std::to_string(rows) + ", " + cols + ")" +
                    (outputs <= 1 ? ", or (" + std::to_string(rows) + ",)," : "") + " got " + y.shape_text());
    }
    if (!one_d && y.dim(1) < 1) value_error(std::string(name) + " must have at least one column");
    return y;
}

// Row indices may repeat (sampling with replacement) and an epoch may have more or fewer rows
// than X; each one must lie in [0, rows). One epoch may give its order as (R,).
template <typename M>
ArrayView check_order(py::handle obj, int64_t epochs, int64_t rows) {
    ArrayView o = any_array<M>(obj, "order");
    if (o.kind != 'i' || o.itemsize != 8 || !o.native)
        type_error("order must be an int64 array, got dtype " + o.dtype_text());
    if (!(o.ndim == 2 || (o.ndim == 1 && epochs == 1)))
        value_error("order must be 2-D (epochs, rows), got shape " + o.shape_text());
    check_layout(o, false);
    if (o.ndim == 2 && o.dim(0) != epochs)
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
void require_finite(const ArrayView& a) {
    if (!a.given()) return;
    const bool ok = a.scalar() == Scalar::f32 ? M::template all_finite<float>(a) : M::template all_finite<double>(a);
    if (!ok) value_error(std::string(a.name) + " contains NaN or infinity");
}

// flag 1's check: the first of X, Y, X_valid, Y_valid holding NaN or infinity is named.
template <typename M>
void require_finite_data(const TrainCall& c) {
    for (const ArrayView* a : {&c.model.x, &c.model.y, &c.x_valid, &c.y_valid}) require_finite<M>(*a);
}

inline py::object nan_array(int64_t n) {
    py::array_t<double> a(static_cast<py::ssize_t>(n));
    std::fill_n(a.mutable_data(), n, std::numeric_limits<double>::quiet_NaN());
    return std::move(a);
}

// may_defer_data_check: a binding whose kernel checks the data inside the training pass
// (TrainArgs::find_bad_data) lets flag 1 wait for it when that gives the same outcome: a call
// that trains, with finite parameters (a non-finite one is refused after the data, as here).
template <typename M>
TrainCall check_train(PyObject* const* arg, bool may_defer_data_check = false) {
    auto h = [arg](int i) { return py::handle(arg[i] ? arg[i] : Py_None); };
    TrainCall c;
    ModelViews& m = c.model;
    check_x<M>(h(kX), h(kW), m);
    m.y = targets<M>(h(kY), "Y", m.scalar, m.rows, -1);
    m.outputs = m.y.ndim == 1 ? 1 : m.y.dim(1);
    m.w = like_x<M>(h(kW), "W", m.scalar, {m.outputs, m.features}, true);
    if (!h(kB).is_none()) m.b = like_x<M>(h(kB), "b", m.scalar, {m.outputs}, true);
    if (!h(kSampleWeight).is_none()) {
        m.sample_weight = like_x<M>(h(kSampleWeight), "sample_weight", m.scalar, {m.rows}, false);
        if (m.scalar == Scalar::f32)
            check_weights<M, float>(m.sample_weight);
        else
            check_weights<M, double>(m.sample_weight);
    }

    c.epochs = int_arg(arg[kEpochs], "epochs");
    if (c.epochs < 0) value_error("epochs must be >= 0, got " + std::to_string(c.epochs));
    if (is_real(arg[kLr])) {
        const double v = finite_non_negative(exact_real(arg[kLr], "lr"), "lr");
        c.lr_copy.assign(static_cast<size_t>(c.epochs), v);
        c.lr_values = c.lr_copy.data();
    } else {
        c.lr = double_array<M>(h(kLr), "lr", 1, false);
        expect_shape(c.lr, {c.epochs});
        c.lr_values = M::template host_values<double>(c.lr, c.lr_copy);
        for (int64_t e = 0; e < c.epochs; ++e)
            if (!(std::isfinite(c.lr_values[e]) && c.lr_values[e] >= 0.0))
                value_error("lr must be finite and >= 0 in every epoch, got " + real_text(c.lr_values[e]) +
                            " in epoch " + std::to_string(e));
    }

    c.hyper = sgd_hyper(arg + kWeightDecay);
    c.momentum_initialized = bool_arg(arg[kMomentumInitialized], "momentum_initialized");
    if (!h(kTargetLoss).is_none()) c.target_loss = finite(exact_real(arg[kTargetLoss], "target_loss"), "target_loss");
    c.threads = thread_count(arg[kThreads] ? int_arg(arg[kThreads], "threads") : 1);
    if (arg[kFlags]) c.flags = int_arg(arg[kFlags], "flags");
    if ((c.flags & ~kAllFlags) != 0) value_error("flags must be a combination of 1, 2 and 4");

    int64_t rows_per_epoch = m.rows;
    if (!h(kOrder).is_none()) {
        c.order = check_order<M>(h(kOrder), c.epochs, m.rows);
        rows_per_epoch = c.order.dim(c.order.ndim - 1);
        if (rows_per_epoch < 1) value_error("order must select at least one row per epoch");
    }
    int64_t batch_size = rows_per_epoch;
    if (!h(kBatchSize).is_none()) {
        batch_size = int_arg(arg[kBatchSize], "batch_size");
        if (batch_size < 1) value_error("batch_size must be >= 1, got " + std::to_string(batch_size));
    }
    // (a batch larger than the epoch is the whole epoch: the same steps)
    c.steps = EpochSteps(rows_per_epoch, batch_size);
    if (!c.steps.total_fits(c.epochs)) value_error("epochs * steps per epoch overflows int64");

    if (c.use_momentum()) {
        c.buf_w = like_x<M>(h(kBufW), "buf_W", m.scalar, {m.outputs, m.features}, true);
        if (m.has_bias()) {
            if (h(kBufB).is_none())
                value_error("buf_b must be an array of shape (U,) when b is given and momentum != 0");
            c.buf_b = like_x<M>(h(kBufB), "buf_b", m.scalar, {m.outputs}, true);
        }
    }

    if (!h(kXValid).is_none() || !h(kYValid).is_none()) {
        if (h(kXValid).is_none() || h(kYValid).is_none()) value_error("X_valid and Y_valid must be given together");
        int64_t valid_rows = 0;
        if (is_csr(h(kXValid))) {
            if (!m.sparse()) type_error("X_valid is sparse (data, indices, indptr) but X is dense: pass both alike");
            c.csr_valid = check_csr<M>(h(kXValid), kCsrXValid, h(kW));
            if (c.csr_valid.indices.itemsize != m.csr.indices.itemsize)
                type_error("X_valid.indices must have the dtype of X.indices (" + m.csr.indices.dtype_text() +
                           "), got " + c.csr_valid.indices.dtype_text());
            c.x_valid = c.csr_valid.data;
            valid_rows = c.csr_valid.rows;
        } else {
            c.x_valid = float_array<M>(h(kXValid), "X_valid", 2, false);
            if (c.x_valid.dim(0) < 1 || c.x_valid.dim(1) != m.features)
                value_error("X_valid must have shape (M_valid >= 1, " + std::to_string(m.features) + "), got " +
                            c.x_valid.shape_text());
            valid_rows = c.x_valid.dim(0);
        }
        same_scalar(c.x_valid, m.scalar);
        c.y_valid = targets<M>(h(kYValid), "Y_valid", m.scalar, valid_rows, m.outputs);
    }
    ViewList outs;
    for (const ArrayView* a : {&m.w, &m.b, &c.buf_w, &c.buf_b}) outs.add(*a);
    no_overlap(outs, c.arrays());
    auto finite_view = [](const ArrayView& a) {
        return !a.given() ||
               (a.scalar() == Scalar::f32 ? M::template all_finite<float>(a) : M::template all_finite<double>(a));
    };
    const bool params_finite = !(c.flags & kCheckParams) || (finite_view(m.w) && finite_view(m.b));
    // (a CSR X or X_valid is scanned first: the sparse kernel has no in-pass check)
    c.data_check_deferred = may_defer_data_check && !m.sparse() && !c.csr_valid.given() && (c.flags & kCheckData) &&
                            !c.check_only() && c.epochs > 0 && params_finite;
    if ((c.flags & kCheckData) && !c.data_check_deferred) require_finite_data<M>(c);
    if (!params_finite)
        for (const ArrayView* a : {&m.w, &m.b}) require_finite<M>(*a);

    // the outputs, NaN where no step (or no epoch) runs; numpy arrays for both bindings
    c.losses_array = nan_array(c.epochs * c.steps.steps);
    c.losses = numpy_view(c.losses_array.ptr(), "losses");
    if (c.has_valid()) {
        c.valid_losses_array = nan_array(c.epochs);
        c.valid_losses = numpy_view(c.valid_losses_array.ptr(), "valid_losses");
    }
    return c;
}

// ---- partial_gradient and update: a step split around a collective -------------------------

constexpr const char* kPartialGradientDoc =
    "partial_gradient(X, Y, W, b, gW, gb, n_total, sample_weight=None, weight_total=None)\n--\n\n"
    "Write into gW (U, N) and gb (U,) the rows' share of the gradient of a batch of n_total rows (>= M), of which "
    "X is a part: the gradient scale is 2 / (U * n_total), or 2 / (U * weight_total) with sample weights "
    "(weight_total None: the rows' own weight sum). Return the rows' (weighted) sum of squared errors.";

struct PartialGradientCall {
    GradientCall gradient;
    double weight_total = 0.0;
};

template <typename M>
PartialGradientCall check_partial_gradient(py::handle X, py::handle Y, py::handle W, py::handle b, py::handle gW,
                                           py::handle gb, py::handle n_total, py::handle sample_weight,
                                           py::handle weight_total) {
    PartialGradientCall c;
    c.gradient = check_gradient<M>(X, Y, W, b, gW, gb, sample_weight);
    const ModelViews& m = c.gradient.model;
    const int64_t n = int_arg(n_total.ptr(), "n_total");
    if (n < m.rows)
        value_error("n_total must be at least the number of rows of X (" + std::to_string(m.rows) + "), got " +
                    std::to_string(n));
    c.weight_total = static_cast<double>(n);
    if (!weight_total.is_none()) {
        if (!m.sample_weight.given()) value_error("weight_total needs sample_weight");
        c.weight_total = finite_non_negative(exact_real(weight_total.ptr(), "weight_total"), "weight_total");
    } else if (m.sample_weight.given()) {
        c.weight_total = -1.0;  // the rows' own weight sum, as gradient() takes it
    }
    return c;
}

// update's parameters, the same in both bindings (parsed by python/fastcall.hpp).
// clang-format off
enum UpdateArg : int {
    kUW, kUB, kUGW, kUGB, kULr, kUWeightDecay, kUDecayBias, kUL2, kUMomentum, kUDampening, kUNesterov, kUMaximize,
    kUBufW, kUBufB, kUMomentumInitialized, kUpdateArgCount
};
constexpr int kUpdateRequired = kUpdateArgCount;
constexpr const char* kUpdateArgNames[kUpdateArgCount] = {
    "W", "b", "gW", "gb", "lr", "weight_decay", "decay_bias", "l2", "momentum", "dampening", "nesterov", "maximize",
    "buf_W", "buf_b", "momentum_initialized"};
// clang-format on

constexpr const char* kUpdateDoc =
    "update(W, b, gW, gb, lr, weight_decay, decay_bias, l2, momentum, dampening, nesterov, maximize, buf_W, buf_b, "
    "momentum_initialized)\n--\n\n"
    "Apply torch.optim.SGD's update by the gradient (gW, gb) to (W, b) and the momentum buffers, in place: the "
    "update half of one train step. Return whether every parameter is finite afterwards.";

struct UpdateCall {
    ArrayView w, b, gw, gb, buf_w, buf_b;
    Scalar scalar = Scalar::f64;
    int64_t outputs = 0, features = 0;
    double lr = 0.0;
    SgdHyper hyper;
    bool momentum_initialized = false;
};

template <typename M>
UpdateCall check_update(PyObject* const* arg) {
    auto h = [arg](int i) { return py::handle(arg[i] ? arg[i] : Py_None); };
    UpdateCall c;
    c.w = float_array<M>(h(kUW), "W", 2, true);
    c.scalar = c.w.scalar();
    c.outputs = c.w.dim(0);
    c.features = c.w.dim(1);
    if (!h(kUB).is_none()) c.b = like_x<M>(h(kUB), "b", c.scalar, {c.outputs}, true);
    c.gw = like_x<M>(h(kUGW), "gW", c.scalar, {c.outputs, c.features}, false);
    if (c.b.given()) {
        if (h(kUGB).is_none()) value_error("gb must be an array of shape (U,) when b is given");
        c.gb = like_x<M>(h(kUGB), "gb", c.scalar, {c.outputs}, false);
    }
    c.lr = finite_non_negative(exact_real(arg[kULr], "lr"), "lr");
    c.hyper = sgd_hyper(arg + kUWeightDecay);
    c.momentum_initialized = bool_arg(arg[kUMomentumInitialized], "momentum_initialized");
    if (c.hyper.momentum != 0.0) {
        c.buf_w = like_x<M>(h(kUBufW), "buf_W", c.scalar, {c.outputs, c.features}, true);
        if (c.b.given()) {
            if (h(kUBufB).is_none())
                value_error("buf_b must be an array of shape (U,) when b is given and momentum != 0");
            c.buf_b = like_x<M>(h(kUBufB), "buf_b", c.scalar, {c.outputs}, true);
        }
    }
    ViewList outs, all;
    for (const ArrayView* a : {&c.w, &c.b, &c.buf_w, &c.buf_b}) outs.add(*a);
    for (const ArrayView* a : {&c.w, &c.b, &c.gw, &c.gb, &c.buf_w, &c.buf_b}) all.add(*a);
    no_overlap(outs, all);
    for (const ArrayView* a : {&c.w, &c.b}) require_finite<M>(*a);
    return c;
}

}  // namespace python
}  // namespace linsgd
