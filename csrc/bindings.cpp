// pybind11 module linsgd._core: the entry points (loss, gradient, train, run, all_finite and the
// CPU-variant controls), their docstrings and the module definition. Each entry point checks
// every buffer (python/arguments.hpp), dispatches on the dtype to the host kernels
// (linsgd/kernels.hpp) and releases the GIL. Callers normally go through linsgd.kernels, but a
// direct call must be just as safe: nothing here trusts a shape, a stride, a dtype or an index
// it has not checked.
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
#include "python/arguments.hpp"
#include "python/basic_checks.hpp"
#include "python/fastcall.hpp"

namespace py = pybind11;

namespace {

using namespace linsgd::python;

// Reached from the compiled loop with the GIL released: take it back briefly to see whether a
// signal (Ctrl-C) is pending; the Python exception stays set for the caller to raise.
bool python_signal_pending(void*) {
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
}

// ---- all_finite: one pass, no allocation -----------------------------------------------------
// Contiguous aligned arrays go to the kernel (linsgd::cpu::all_finite, the widest instruction
// set the CPU runs); any other layout (negative strides, unaligned data included) is walked here,
// element by element through memcpy, following numpy's shape and strides.

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
        return contiguous && aligned ? linsgd::cpu::all_finite<T>(reinterpret_cast<const T*>(p), n)
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

// Calls with less work than this (multiply-adds) keep the GIL: see run_train.
constexpr double kGilWork = 32768.0;

template <typename T>
linsgd::TrainOutcome run_train(const Checked& c, const int64_t* order, int64_t rows_per_epoch, int64_t batch_size,
                               const double* lr, int64_t epochs, const linsgd::SgdHyper& hyper, T* buf_w, T* buf_b,
                               bool momentum_initialized, double* losses, const py::array* x_valid,
                               const py::array* y_valid, double* valid_losses, double target_loss, const py::array& sw,
                               int threads) {
    linsgd::TrainArgs<T> a;
    a.data = weighted(data_of<T>(c.x, c.y), sw);
    a.model = model_of<T>(c);
    a.order = order;
    a.rows_per_epoch = rows_per_epoch;
    a.batch_size = batch_size;
    a.lr = lr;
    a.epochs = epochs;
    a.hyper = hyper;
    a.buf_weight = buf_w;
    a.buf_bias = buf_b;
    a.momentum_initialized = momentum_initialized;
    a.losses = losses;
    if (valid_losses) {
        a.valid = data_of<T>(*x_valid, *y_valid);
        a.valid_losses = valid_losses;
    }
    a.target_loss = target_loss;
    a.threads = threads;
    const linsgd::StopCheck stop{&python_signal_pending, nullptr};
    // Multiply-adds of the call (saturating): below a few tens of thousands the call takes
    // microseconds, less than other threads would gain, and handing the GIL over and back
    // would be a tenth of it; so it is released only for larger calls.
    const double work = static_cast<double>(epochs) * static_cast<double>(c.features + 1) *
                        static_cast<double>(c.outputs) *
                        static_cast<double>(rows_per_epoch + (valid_losses ? x_valid->shape(0) : 0));
    if (threads == 1 && work < kGilWork) return linsgd::cpu::train<T>(a, stop);
    py::gil_scoped_release nogil;
    return linsgd::cpu::train<T>(a, stop);
}

template <typename T>
T* data_or_null(py::array* a) {
    return a ? static_cast<T*>(a->mutable_data()) : nullptr;
}

// Runs a checked call in the model's dtype; raises a pending KeyboardInterrupt.
linsgd::TrainOutcome dispatch_train(const Checked& c, const int64_t* order, int64_t rows_per_epoch, int64_t batch_size,
                                    const double* lr, int64_t epochs, const linsgd::SgdHyper& hyper, py::array* bw,
                                    py::array* bb, bool momentum_initialized, double* losses, const py::array* xv,
                                    const py::array* yv, double* valid_losses, double target_loss, const py::array& sw,
                                    int threads) {
    const linsgd::TrainOutcome out =
        c.scalar == Scalar::f32
            ? run_train<float>(c, order, rows_per_epoch, batch_size, lr, epochs, hyper, data_or_null<float>(bw),
                               data_or_null<float>(bb), momentum_initialized, losses, xv, yv, valid_losses, target_loss,
                               sw, threads)
            : run_train<double>(c, order, rows_per_epoch, batch_size, lr, epochs, hyper, data_or_null<double>(bw),
                                data_or_null<double>(bb), momentum_initialized, losses, xv, yv, valid_losses,
                                target_loss, sw, threads);
    if (out.status == linsgd::TrainStatus::interrupted && PyErr_Occurred()) throw py::error_already_set();
    return out;
}

// ---- train and run: raw METH_FASTCALL functions ------------------------------------------------
// pybind11's dispatcher costs about a microsecond for train's two dozen arguments, as much as a
// whole small epoch; these entry points parse their arguments themselves, with the same checks,
// and translate C++ exceptions into Python ones (python/fastcall.hpp).

// ---- train: the documented low-level entry point (linsgd._backends) --------------------------

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
// clang-format on

py::tuple train_impl(PyObject* const* arg) {
    auto h = [arg](int i) { return py::handle(arg[i] ? arg[i] : Py_None); };
    const Checked c = check_model(h(kX), h(kY), h(kW), h(kB), true);
    const py::array sw = sample_weights(h(kSampleWeight), c);
    int64_t batch_size = int_arg(arg[kBatchSize], "batch_size");
    if (batch_size < 1) value_error("batch_size must be >= 1, got " + std::to_string(batch_size));
    py::array lr = double_array(h(kLr), "lr", 1, false);
    const int64_t epochs = lr.shape(0);
    const double* lr_values = static_cast<const double*>(lr.data());
    for (int64_t e = 0; e < epochs; ++e)
        if (!std::isfinite(lr_values[e])) value_error("lr must be finite in every epoch");

    linsgd::SgdHyper hyper;
    hyper.weight_decay = finite(real_arg(arg[kWeightDecay], "weight_decay"), "weight_decay");
    hyper.decay_bias = bool_arg(arg[kDecayBias], "decay_bias");
    hyper.l2 = finite(real_arg(arg[kL2], "l2"), "l2");
    hyper.momentum = finite(real_arg(arg[kMomentum], "momentum"), "momentum");
    hyper.dampening = finite(real_arg(arg[kDampening], "dampening"), "dampening");
    hyper.nesterov = bool_arg(arg[kNesterov], "nesterov");
    hyper.maximize = bool_arg(arg[kMaximize], "maximize");
    if (hyper.nesterov && (hyper.momentum == 0.0 || hyper.dampening != 0.0))
        value_error("nesterov requires momentum > 0 and dampening == 0");
    const bool momentum_initialized = bool_arg(arg[kMomentumInitialized], "momentum_initialized");
    const double target_loss = real_arg(arg[kTargetLoss], "target_loss");
    if (std::isinf(target_loss)) value_error("target_loss must be finite or NaN (disabled)");
    const int threads = thread_count(arg[kThreads] ? int_arg(arg[kThreads], "threads") : 1);

    int64_t rows_per_epoch = c.rows;
    py::array order = unset_array();
    const bool has_order = !h(kOrder).is_none();
    if (has_order) {
        // Row indices may repeat (sampling with replacement) and an epoch may have more or fewer
        // rows than X; each one must lie in [0, rows).
        order = require_array(h(kOrder), "order");
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
    const int64_t steps_per_epoch = steps_per_epoch_of(rows_per_epoch, batch_size, epochs);

    py::array losses = double_array(h(kLosses), "losses", 1, true);
    if (losses.shape(0) < epochs * steps_per_epoch)
        value_error("losses must hold epochs * steps_per_epoch = " + std::to_string(epochs * steps_per_epoch) +
                    " values, got shape " + shape_of(losses));

    py::array bw = unset_array(), bb = unset_array();
    const bool use_momentum = hyper.momentum != 0.0;
    if (use_momentum) momentum_buffers(h(kBufW), h(kBufB), c, bw, bb);

    const bool has_valid = !h(kValidLosses).is_none();
    py::array xv = unset_array(), yv = unset_array(), vl = unset_array();
    if (has_valid) {
        validation_set(h(kXValid), h(kYValid), c, false, xv, yv);
        vl = double_array(h(kValidLosses), "valid_losses", 1, true);
        expect_shape(vl, "valid_losses", {epochs});
    } else if (!h(kXValid).is_none() || !h(kYValid).is_none()) {
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

    const linsgd::TrainOutcome out = dispatch_train(
        c, has_order ? static_cast<const int64_t*>(order.data()) : nullptr, rows_per_epoch, batch_size, lr_values,
        epochs, hyper, use_momentum ? &bw : nullptr, use_momentum && c.has_bias ? &bb : nullptr, momentum_initialized,
        static_cast<double*>(losses.mutable_data()), has_valid ? &xv : nullptr, has_valid ? &yv : nullptr,
        has_valid ? static_cast<double*>(vl.mutable_data()) : nullptr, target_loss, sw, threads);
    return py::make_tuple(out.steps_done, static_cast<int>(out.status));
}

PyObject* train_fastcall(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    PyObject* arg[kTrainArgCount] = {};
    if (!parse_fastcall("train", args, nargs, kwnames, kTrainArgNames, kTrainArgCount, kTrainRequired, arg))
        return nullptr;
    return translate_exceptions([&] { return train_impl(arg); });
}

constexpr const char* kTrainDoc =
    "train(X, Y, W, b, order, batch_size, lr, weight_decay, decay_bias, l2, momentum, dampening, nesterov, "
    "maximize, buf_W, buf_b, momentum_initialized, losses, X_valid, Y_valid, valid_losses, target_loss, "
    "sample_weight=None, threads=1)\n--\n\n"
    "Run len(lr) epochs of mini-batch SGD in place; return (steps_done, status) with status 0 completed, "
    "1 target_loss reached, 2 diverged, 3 interrupted. threads (1..1024): host threads for large batches "
    "(the same bits for every count).";

// ---- run: the common call of linsgd.kernels, in one step -------------------------------------
// No row order and no sample weights; a constant learning rate or one per epoch; Y and Y_valid
// may be 1-D for one output; the loss arrays are made here. It accepts less than the Python API
// (exact numpy arrays, Python scalars of exactly the expected kinds, non-negative penalties and
// momentum), so that everything it accepts, linsgd.kernels accepts too, with the same meaning:
// linsgd.kernels calls it first and, when it refuses (always before anything is written), does
// the call the long way, which gives the error its full message.

// clang-format off
enum RunArg : int {
    rX, rY, rW, rB, rBatchSize, rLr, rEpochs, rWeightDecay, rDecayBias, rL2, rMomentum, rDampening, rNesterov,
    rMaximize, rBufW, rBufB, rMomentumInitialized, rXValid, rYValid, rTargetLoss, rThreads, rFlags, kRunArgCount
};
constexpr const char* kRunArgNames[kRunArgCount] = {
    "X", "Y", "W", "b", "batch_size", "lr", "epochs", "weight_decay", "decay_bias", "l2", "momentum", "dampening",
    "nesterov", "maximize", "buf_W", "buf_b", "momentum_initialized", "X_valid", "Y_valid", "target_loss", "threads",
    "flags"};
// clang-format on

constexpr int64_t kCheckData = 1;    // refuse NaN or infinity in X, Y, X_valid, Y_valid
constexpr int64_t kCheckParams = 2;  // refuse NaN or infinity in W, b
constexpr int64_t kCheckOnly = 4;    // check, make the loss arrays, run no step
constexpr int64_t kRunFlags = kCheckData | kCheckParams | kCheckOnly;

py::tuple run_impl(PyObject* const* arg) {
    for (int i : {rX, rY, rW}) exact_array(arg[i], kRunArgNames[i], false);
    for (int i : {rB, rBufW, rBufB, rXValid, rYValid}) exact_array(arg[i], kRunArgNames[i], true);
    const Checked c = check_model(arg[rX], arg[rY], arg[rW], arg[rB], true, true);
    const int64_t rows = c.rows;
    int64_t batch_size = rows;
    if (arg[rBatchSize] != Py_None) {
        batch_size = strict_int(arg[rBatchSize], "batch_size");
        if (batch_size < 1) value_error("batch_size must be >= 1, got " + std::to_string(batch_size));
        batch_size = std::min(batch_size, rows);
    }
    const int64_t epochs = strict_int(arg[rEpochs], "epochs");
    if (epochs < 1) value_error("epochs must be >= 1, got " + std::to_string(epochs));
    // lr: a number for every epoch, or a C-contiguous float64 array of one per epoch
    double lr_value = 0.0;
    const double* lr = &lr_value;
    std::vector<double> lr_copies;
    py::array lr_array = unset_array();
    if (PyFloat_Check(arg[rLr]) || PyLong_CheckExact(arg[rLr])) {
        lr_value = strict_real(arg[rLr], "lr", true);
        if (epochs > 1) {
            lr_copies.assign(static_cast<size_t>(epochs), lr_value);
            lr = lr_copies.data();
        }
    } else {
        exact_array(arg[rLr], "lr", false);
        lr_array = double_array(arg[rLr], "lr", 1, false);
        expect_shape(lr_array, "lr", {epochs});
        lr = static_cast<const double*>(lr_array.data());
        for (int64_t e = 0; e < epochs; ++e)
            if (!(std::isfinite(lr[e]) && lr[e] >= 0.0)) value_error("lr must be finite and >= 0 in every epoch");
    }
    linsgd::SgdHyper hyper;
    hyper.weight_decay = strict_real(arg[rWeightDecay], "weight_decay", true);
    hyper.decay_bias = strict_bool(arg[rDecayBias], "decay_bias");
    hyper.l2 = strict_real(arg[rL2], "l2", true);
    hyper.momentum = strict_real(arg[rMomentum], "momentum", true);
    hyper.dampening = strict_real(arg[rDampening], "dampening", false);
    hyper.nesterov = strict_bool(arg[rNesterov], "nesterov");
    hyper.maximize = strict_bool(arg[rMaximize], "maximize");
    if (hyper.nesterov && (hyper.momentum <= 0.0 || hyper.dampening != 0.0))
        value_error("nesterov requires momentum > 0 and dampening == 0");
    const bool momentum_initialized = strict_bool(arg[rMomentumInitialized], "momentum_initialized");
    double target_loss = std::numeric_limits<double>::quiet_NaN();
    if (arg[rTargetLoss] != Py_None) target_loss = strict_real(arg[rTargetLoss], "target_loss", false);
    const int threads = thread_count(strict_int(arg[rThreads], "threads"));
    const int64_t flags = strict_int(arg[rFlags], "flags");
    if ((flags & ~kRunFlags) != 0) value_error("flags must be a combination of 1, 2 and 4");
    const int64_t steps_per_epoch = steps_per_epoch_of(rows, batch_size, epochs);

    py::array bw = unset_array(), bb = unset_array();
    const bool use_momentum = hyper.momentum != 0.0;
    if (use_momentum) momentum_buffers(arg[rBufW], arg[rBufB], c, bw, bb);
    const bool has_valid = arg[rXValid] != Py_None || arg[rYValid] != Py_None;
    py::array xv = unset_array(), yv = unset_array();
    if (has_valid) validation_set(arg[rXValid], arg[rYValid], c, true, xv, yv);

    NamedList all, outs;
    all.add(c.x, "X");
    all.add(c.y, "Y");
    all.add(c.w, "W");
    outs.add(c.w, "W");
    if (c.has_bias) {
        all.add(c.b, "b");
        outs.add(c.b, "b");
    }
    if (lr_array.ptr()) all.add(lr_array, "lr");
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
    }
    no_overlap(outs, all);
    if (flags & kCheckData) {
        require_finite(c.x, "X");
        require_finite(c.y, "Y");
        if (has_valid) {
            require_finite(xv, "X_valid");
            require_finite(yv, "Y_valid");
        }
    }
    if (flags & kCheckParams) {
        require_finite(c.w, "W");
        if (c.has_bias) require_finite(c.b, "b");
    }

    // the outputs: NaN where no step (or no epoch) ran
    const double nan = std::numeric_limits<double>::quiet_NaN();
    py::array_t<double> losses(epochs * steps_per_epoch);
    std::fill(losses.mutable_data(), losses.mutable_data() + epochs * steps_per_epoch, nan);
    py::object valid_losses = py::none();
    double* vl = nullptr;
    if (has_valid) {
        py::array_t<double> v(epochs);
        vl = v.mutable_data();
        std::fill(vl, vl + epochs, nan);
        valid_losses = std::move(v);
    }
    if (flags & kCheckOnly) return py::make_tuple(0, 0, std::move(losses), std::move(valid_losses));
    const linsgd::TrainOutcome out =
        dispatch_train(c, nullptr, rows, batch_size, lr, epochs, hyper, use_momentum ? &bw : nullptr,
                       use_momentum && c.has_bias ? &bb : nullptr, momentum_initialized, losses.mutable_data(),
                       has_valid ? &xv : nullptr, has_valid ? &yv : nullptr, vl, target_loss, unset_array(), threads);
    return py::make_tuple(out.steps_done, static_cast<int>(out.status), std::move(losses), std::move(valid_losses));
}

PyObject* run_fastcall(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != kRunArgCount) {
        PyErr_Format(PyExc_TypeError, "run() takes exactly %d positional arguments (%zd given)", int(kRunArgCount),
                     nargs);
        return nullptr;
    }
    return translate_exceptions([&] { return run_impl(args); });
}

constexpr const char* kRunDoc =
    "run(X, Y, W, b, batch_size, lr, epochs, weight_decay, decay_bias, l2, momentum, dampening, nesterov, "
    "maximize, buf_W, buf_b, momentum_initialized, X_valid, Y_valid, target_loss, threads, flags, /)\n--\n\n"
    "train's common case for linsgd.kernels, with stricter checks: exact numpy arrays, Y and Y_valid (M,) or "
    "(M, U), no order or sample weights, batch_size an int or None (all rows), lr a float or a float64 "
    "array of one per epoch (>= 0), epochs >= 1, non-negative weight_decay, l2 and momentum, target_loss a "
    "float or None, threads 1..1024. flags: 1 refuse NaN or infinity in X, Y, X_valid, Y_valid; 2 in W, b; "
    "4 only check. Returns (steps_done, status, losses (epochs*steps,), valid_losses (epochs,) or None), the "
    "losses NaN where no step ran.";

PyMethodDef kTrainDef = {"train", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(&train_fastcall)),
                         METH_FASTCALL | METH_KEYWORDS, kTrainDoc};
PyMethodDef kRunDef = {"run", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(&run_fastcall)),
                       METH_FASTCALL, kRunDoc};

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "linsgd's compiled CPU kernels (private: use linsgd.kernels).";
    m.def("loss", &loss_py, py::arg("X"), py::arg("Y"), py::arg("W"), py::arg("b").none(true),
          py::arg("sample_weight").none(true) = py::none(),
          "Mean squared error of the model (W, b) on (X, Y), rounded as torch's MSELoss rounds it.");
    m.def("gradient", &gradient_py, py::arg("X"), py::arg("Y"), py::arg("W"), py::arg("b").none(true), py::arg("gW"),
          py::arg("gb").none(true), py::arg("sample_weight").none(true) = py::none(),
          "Write the MSE gradient of one batch into gW (U, N) and gb (U,); return the batch loss.");
    for (PyMethodDef* def : {&kTrainDef, &kRunDef}) {
        py::object name = py::str("linsgd._core");
        PyObject* fn = PyCFunction_NewEx(def, nullptr, name.ptr());
        if (!fn) throw py::error_already_set();
        m.add_object(def->ml_name, py::reinterpret_steal<py::object>(fn));
    }
    m.def("all_finite", &all_finite_py, py::arg("a"),
          "Whether every element of the float32/float64 array a is finite (no NaN, no infinity): one "
          "pass, any layout, no allocation; the GIL is released for large arrays.");
    m.def("cpu_variant", &linsgd::cpu::variant_name,
          "The instruction-set variant the kernels run: 'baseline', 'avx2' or 'avx512'.");
    m.def("supported_cpu_variants", &linsgd::cpu::supported_variants, "The instruction-set variants this CPU can run.");
    m.def(
        "set_cpu_variant",
        [](const std::string& name) {
            if (!linsgd::cpu::set_variant(name.c_str()))
                value_error("cpu variant must be one of this CPU's " +
                            std::string(py::str(py::cast(linsgd::cpu::supported_variants()))) + ", got '" + name + "'");
        },
        py::arg("name"), "Force an instruction-set variant (for tests and benchmarks: all give the same bits).");
}
