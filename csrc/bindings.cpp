// pybind11 module linsgd._core: the entry points (loss, gradient, train, partial_gradient, update,
// all_finite, epoch_means, randperm_from_draws and the CPU-variant controls), their docstrings and the module
// definition. Each entry point checks every argument (python/arguments.hpp, shared with _cuda), dispatches on the dtype
// to the host kernels (linsgd/kernels.hpp) and releases the GIL. Callers normally go through linsgd.kernels, but a
// direct call must be just as safe: nothing here trusts a shape, a stride, a dtype or an index it has not checked.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "linsgd/kernels.hpp"
#include "linsgd/randperm.hpp"
#include "linsgd/sparse.hpp"
#include "linsgd/steps.hpp"
#include "python/arguments.hpp"
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
    if (!py::isinstance<py::array>(obj))
        type_error("a must be a numpy array, got " + std::string(py::str(py::type::of(obj))));
    const auto a = py::reinterpret_borrow<py::array>(obj);
    const py::dtype dt = a.dtype();
    if (dt.kind() != 'f' || (dt.itemsize() != 4 && dt.itemsize() != 8) || !native_byte_order(dt.byteorder()))
        type_error("all_finite needs a float32 or float64 array in native byte order, got dtype " +
                   std::string(py::str(dt)));
    return dt.itemsize() == 4 ? all_finite_of<float>(a) : all_finite_of<double>(a);
}

// ---- epoch_means: the history of a run's losses --------------------------------------------

py::list epoch_means_py(py::handle obj) {
    if (!py::isinstance<py::array>(obj))
        type_error("losses must be a numpy array, got " + std::string(py::str(py::type::of(obj))));
    const auto a = py::reinterpret_borrow<py::array>(obj);
    const py::dtype dt = a.dtype();
    const bool layout =
        (a.flags() & py::array::c_style) != 0 && reinterpret_cast<std::uintptr_t>(a.data()) % sizeof(double) == 0;
    if (dt.kind() != 'f' || dt.itemsize() != 8 || !native_byte_order(dt.byteorder()) || a.ndim() != 2 || !layout)
        type_error("losses must be a C-contiguous float64 array of shape (epochs, steps), got dtype " +
                   std::string(py::str(dt)) + " with " + std::to_string(a.ndim()) + " dimension(s)");
    const py::ssize_t epochs = a.shape(0), steps = a.shape(1);
    const double* p = static_cast<const double*>(a.data());
    py::list out(epochs);
    for (py::ssize_t e = 0; e < epochs; ++e)
        PyList_SET_ITEM(out.ptr(), e, py::float_(linsgd::epoch_mean(p + e * steps, steps)).release().ptr());
    return out;
}

// ---- randperm_from_draws: torch's CPU randperm from its generator's raw outputs --------------

void randperm_py(const py::array& draws_obj, const py::array& out_obj) {
    if (!py::isinstance<py::array_t<uint32_t>>(draws_obj) || draws_obj.ndim() != 1 ||
        !(draws_obj.flags() & py::array::c_style))
        type_error("draws must be a 1-D C-contiguous uint32 array");
    if (!py::isinstance<py::array_t<int64_t>>(out_obj) || out_obj.ndim() != 1 ||
        !(out_obj.flags() & py::array::c_style) || !out_obj.writeable())
        type_error("out must be a 1-D C-contiguous writable int64 array");
    const int64_t n = out_obj.shape(0);
    if (draws_obj.shape(0) != (n > 0 ? n - 1 : 0))
        value_error("draws must hold len(out) - 1 values, got " + std::to_string(draws_obj.shape(0)));
    if (n > (int64_t(1) << 32) / 20) value_error("out must have fewer than 2**32 / 20 elements");
    const auto* draws = static_cast<const uint32_t*>(draws_obj.data());
    auto* out = static_cast<int64_t*>(py::array(out_obj).mutable_data());
    py::gil_scoped_release nogil;
    linsgd::randperm_from_draws(draws, n, out);
}

// ---- the kernels -----------------------------------------------------------------------------

template <typename T>
T* host_ptr(const ArrayView& a) {
    return a.given() ? reinterpret_cast<T*>(a.data) : nullptr;
}

template <typename T>
linsgd::Data<T> data_of(const ArrayView& x, const ArrayView& y, const ArrayView& sample_weight) {
    return {host_ptr<const T>(x), host_ptr<const T>(y), x.dim(0), host_ptr<const T>(sample_weight)};
}

// (loss and gradient only read W and b: writability is checked where the kernel writes, in train)
template <typename T>
linsgd::Model<T> model_of(const ModelViews& m) {
    return {host_ptr<T>(m.w), host_ptr<T>(m.b), m.outputs, m.features};
}

template <typename T, typename I>
linsgd::Csr<T, I> csr_of(const CsrViews& c) {
    return {host_ptr<const T>(c.data), host_ptr<const I>(c.indices), host_ptr<const I>(c.indptr), c.rows};
}

// Calls f.template operator()<T, I>() for the model's scalar and a CSR X's index type.
template <typename F>
auto with_sparse_types(const ModelViews& m, F&& f) {
    if (m.scalar == Scalar::f32) return m.csr.wide() ? f(float(), int64_t()) : f(float(), int32_t());
    return m.csr.wide() ? f(double(), int64_t()) : f(double(), int32_t());
}

double loss_py(py::handle X, py::handle Y, py::handle W, py::handle b, py::handle sample_weight) {
    const ModelViews m = check_model<HostMemory>(X, Y, W, b, sample_weight, false);
    py::gil_scoped_release nogil;
    if (m.sparse())
        return with_sparse_types(m, [&](auto t, auto i) -> double {
            using T = decltype(t);
            using I = decltype(i);
            return linsgd::cpu::sparse_loss<T, I>(csr_of<T, I>(m.csr), data_of<T>(m.x, m.y, m.sample_weight),
                                                  model_of<T>(m));
        });
    if (m.scalar == Scalar::f32)
        return linsgd::cpu::loss<float>(data_of<float>(m.x, m.y, m.sample_weight), model_of<float>(m));
    return linsgd::cpu::loss<double>(data_of<double>(m.x, m.y, m.sample_weight), model_of<double>(m));
}

// A CSR X's gradient (weight_total < 0: gradient's scaling) and, with sse, partial_gradient's result.
double run_sparse_gradient(const GradientCall& c, double weight_total, bool sse) {
    const ModelViews& m = c.model;
    return with_sparse_types(m, [&](auto t, auto i) -> double {
        using T = decltype(t);
        using I = decltype(i);
        T rows_sse = T(0);
        const T loss = linsgd::cpu::sparse_gradient<T, I>(csr_of<T, I>(m.csr), data_of<T>(m.x, m.y, m.sample_weight),
                                                          model_of<T>(m), weight_total, host_ptr<T>(c.gw),
                                                          host_ptr<T>(c.gb), &rows_sse);
        return sse ? rows_sse : loss;
    });
}

template <typename T>
double run_gradient(const GradientCall& c) {
    const ModelViews& m = c.model;
    return linsgd::cpu::gradient<T>(data_of<T>(m.x, m.y, m.sample_weight), model_of<T>(m), host_ptr<T>(c.gw),
                                    host_ptr<T>(c.gb));
}

double gradient_py(py::handle X, py::handle Y, py::handle W, py::handle b, py::handle gW, py::handle gb,
                   py::handle sample_weight) {
    const GradientCall c = check_gradient<HostMemory>(X, Y, W, b, gW, gb, sample_weight);
    py::gil_scoped_release nogil;
    if (c.model.sparse()) return run_sparse_gradient(c, -1.0, false);
    return c.model.scalar == Scalar::f32 ? run_gradient<float>(c) : run_gradient<double>(c);
}

template <typename T>
double run_partial_gradient(const PartialGradientCall& c) {
    const ModelViews& m = c.gradient.model;
    return linsgd::cpu::partial_gradient<T>(data_of<T>(m.x, m.y, m.sample_weight), model_of<T>(m), c.weight_total,
                                            host_ptr<T>(c.gradient.gw), host_ptr<T>(c.gradient.gb));
}

double partial_gradient_py(py::handle X, py::handle Y, py::handle W, py::handle b, py::handle gW, py::handle gb,
                           py::handle n_total, py::handle sample_weight, py::handle weight_total) {
    const PartialGradientCall c =
        check_partial_gradient<HostMemory>(X, Y, W, b, gW, gb, n_total, sample_weight, weight_total);
    py::gil_scoped_release nogil;
    if (c.gradient.model.sparse()) return run_sparse_gradient(c.gradient, c.weight_total, true);
    return c.gradient.model.scalar == Scalar::f32 ? run_partial_gradient<float>(c) : run_partial_gradient<double>(c);
}

template <typename T>
bool run_update(const UpdateCall& c) {
    const linsgd::Model<T> model{host_ptr<T>(c.w), host_ptr<T>(c.b), c.outputs, c.features};
    return linsgd::cpu::update<T>(model, host_ptr<const T>(c.gw), host_ptr<const T>(c.gb), host_ptr<T>(c.buf_w),
                                  host_ptr<T>(c.buf_b), c.lr, c.hyper, c.momentum_initialized);
}

// (an update is a few flops per parameter: it keeps the GIL)
PyObject* update_fastcall(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    PyObject* arg[kUpdateArgCount] = {};
    if (!parse_fastcall("update", args, nargs, kwnames, kUpdateArgNames, kUpdateArgCount, kUpdateRequired, arg))
        return nullptr;
    return translate_exceptions([&] {
        const UpdateCall c = check_update<HostMemory>(arg);
        const bool finite = c.scalar == Scalar::f32 ? run_update<float>(c) : run_update<double>(c);
        return py::bool_(finite);
    });
}

PyMethodDef kUpdateDef = {"update", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(&update_fastcall)),
                          METH_FASTCALL | METH_KEYWORDS, kUpdateDoc};

// Calls with less work than this (multiply-adds) keep the GIL: see run_train.
constexpr double kGilWork = 32768.0;

template <typename T>
linsgd::TrainArgs<T> train_args(const TrainCall& c) {
    const ModelViews& m = c.model;
    linsgd::TrainArgs<T> a;
    a.data = data_of<T>(m.x, m.y, m.sample_weight);
    a.data.rows = m.rows;
    a.model = model_of<T>(m);
    a.order = host_ptr<const int64_t>(c.order);
    a.rows_per_epoch = c.steps.rows;
    a.batch_size = c.steps.batch;
    a.lr = c.lr_values;
    a.epochs = c.epochs;
    a.hyper = c.hyper;
    a.buf_weight = host_ptr<T>(c.buf_w);
    a.buf_bias = host_ptr<T>(c.buf_b);
    a.momentum_initialized = c.momentum_initialized;
    a.losses = host_ptr<double>(c.losses);
    if (c.has_valid()) {
        a.valid = data_of<T>(c.x_valid, c.y_valid, ArrayView());
        a.valid_losses = host_ptr<double>(c.valid_losses);
    }
    a.target_loss = c.target_loss;
    a.threads = c.threads;
    a.find_bad_data = c.data_check_deferred;
    return a;
}

// Multiply-adds of the call (saturating): below a few tens of thousands the call takes
// microseconds, less than other threads would gain, and handing the GIL over and back would be
// a tenth of it; so it is released only for larger calls.
bool keeps_gil(const TrainCall& c) {
    const ModelViews& m = c.model;
    const double per_row = m.sparse() ? static_cast<double>(m.x.size()) / static_cast<double>(m.rows) + 1.0
                                      : static_cast<double>(m.features + 1);
    const double work = static_cast<double>(c.epochs) * per_row * static_cast<double>(m.outputs) *
                        static_cast<double>(c.steps.rows + (c.has_valid() ? c.x_valid.dim(0) : 0));
    return c.threads == 1 && work < kGilWork;
}

template <typename T>
linsgd::TrainOutcome run_train(const TrainCall& c) {
    const linsgd::TrainArgs<T> a = train_args<T>(c);
    const linsgd::StopCheck stop{&python_signal_pending, nullptr};
    if (keeps_gil(c)) return linsgd::cpu::train<T>(a, stop);
    py::gil_scoped_release nogil;
    return linsgd::cpu::train<T>(a, stop);
}

// A CSR X (one thread: threads is checked and ignored); X_valid in CSR or dense.
linsgd::TrainOutcome run_sparse_train(const TrainCall& c) {
    return with_sparse_types(c.model, [&](auto t, auto i) {
        using T = decltype(t);
        using I = decltype(i);
        linsgd::SparseTrainArgs<T, I> a;
        a.base = train_args<T>(c);
        a.x = csr_of<T, I>(c.model.csr);
        if (c.csr_valid.given()) {
            a.valid_sparse = true;
            a.valid_x = csr_of<T, I>(c.csr_valid);
            a.base.valid.rows = c.csr_valid.rows;
        }
        const linsgd::StopCheck stop{&python_signal_pending, nullptr};
        if (keeps_gil(c)) return linsgd::cpu::sparse_train<T, I>(a, stop);
        py::gil_scoped_release nogil;
        return linsgd::cpu::sparse_train<T, I>(a, stop);
    });
}

// ---- train: a raw METH_FASTCALL function (python/fastcall.hpp) -------------------------------

// The parameters and momentum buffers at the call's start (small next to the data), put back
// when the training pass finds NaN or infinity in the data: the call then fails as the check
// before training would have, with the model as it was.
class ModelSnapshot {
  public:
    explicit ModelSnapshot(const TrainCall& c) : views_{&c.model.w, &c.model.b, &c.buf_w, &c.buf_b} {
        for (int k = 0; k < 4; ++k)
            if (views_[k]->given()) bytes_[k].assign(views_[k]->data, views_[k]->data + views_[k]->nbytes());
    }
    void restore() const {
        for (int k = 0; k < 4; ++k)
            if (views_[k]->given()) std::memcpy(views_[k]->data, bytes_[k].data(), bytes_[k].size());
    }

  private:
    const ArrayView* views_[4];
    std::vector<char> bytes_[4];
};

py::tuple train_impl(PyObject* const* arg) {
    const TrainCall c = check_train<HostMemory>(arg, true);
    if (c.check_only() || c.epochs == 0) return c.result(0, 0);
    const std::unique_ptr<ModelSnapshot> start(c.data_check_deferred ? new ModelSnapshot(c) : nullptr);
    const linsgd::TrainOutcome out = c.model.sparse()                ? run_sparse_train(c)
                                     : c.model.scalar == Scalar::f32 ? run_train<float>(c)
                                                                     : run_train<double>(c);
    if (out.status == linsgd::TrainStatus::interrupted && PyErr_Occurred()) throw py::error_already_set();
    if (out.status == linsgd::TrainStatus::data_not_finite) {
        start->restore();
        require_finite_data<HostMemory>(c);
        value_error("the data contain NaN or infinity");  // (not reached: the scan names the array)
    }
    return c.result(out.steps_done, static_cast<int>(out.status));
}

PyObject* train_fastcall(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    PyObject* arg[kTrainArgCount] = {};
    if (!parse_fastcall("train", args, nargs, kwnames, kTrainArgNames, kTrainArgCount, kTrainRequired, arg))
        return nullptr;
    return translate_exceptions([&] { return train_impl(arg); });
}

constexpr const char* kTrainDoc = LINSGD_TRAIN_SIGNATURE
    "Run `epochs` epochs of mini-batch SGD on (W, b) in place; return (steps_done, status, losses, valid_losses): "
    "status 0 completed, 1 target_loss reached, 2 diverged, 3 interrupted; losses (epochs * steps per epoch,) "
    "and valid_losses (epochs,) or None, NaN where nothing ran. Y (and Y_valid) may be 1-D for one output; order "
    "int64 (epochs, R) (or (R,) for one epoch) or None; batch_size None: the whole epoch; lr a number or a "
    "float64 array of one per epoch; X (and X_valid) may be the CSR triple (data, indices, indptr), int32 or int64 "
    "indices sorted within each row, N taken from W (one thread); buf_W/buf_b needed when momentum != 0. flags: 1 "
    "refuse NaN/infinity in the "
    "data, 2 in W and b, 4 check only (no step). threads (1..1024): host threads for large batches (the same "
    "bits for every count). Arrays are used in place and never converted: anything else raises TypeError or "
    "ValueError naming the argument before anything is written.";

PyMethodDef kTrainDef = {"train", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(&train_fastcall)),
                         METH_FASTCALL | METH_KEYWORDS, kTrainDoc};

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "linsgd's compiled CPU kernels (private: use linsgd.kernels).";
    m.def("loss", &loss_py, py::arg("X"), py::arg("Y"), py::arg("W"), py::arg("b").none(true),
          py::arg("sample_weight").none(true) = py::none(), kLossDoc);
    m.def("gradient", &gradient_py, py::arg("X"), py::arg("Y"), py::arg("W"), py::arg("b").none(true), py::arg("gW"),
          py::arg("gb").none(true), py::arg("sample_weight").none(true) = py::none(), kGradientDoc);
    m.def("partial_gradient", &partial_gradient_py, py::arg("X"), py::arg("Y"), py::arg("W"), py::arg("b").none(true),
          py::arg("gW"), py::arg("gb").none(true), py::arg("n_total"), py::arg("sample_weight").none(true) = py::none(),
          py::arg("weight_total").none(true) = py::none(), kPartialGradientDoc);
    add_fastcall(m, &kTrainDef);
    add_fastcall(m, &kUpdateDef);
    m.def("all_finite", &all_finite_py, py::arg("a"),
          "Whether every element of the float32/float64 array a is finite (no NaN, no infinity): one "
          "pass, any layout, no allocation; the GIL is released for large arrays.");
    m.def("epoch_means", &epoch_means_py, py::arg("losses"),
          "The mean of each row of the C-contiguous float64 array losses (epochs, steps) over its non-NaN "
          "entries, added in order from 0 (Python's sum() before 3.12), NaN for a row of NaN; a list of floats.");
    m.def("randperm_from_draws", &randperm_py, py::arg("draws"), py::arg("out"),
          "Write into out (int64, n) torch's CPU randperm(n) from its generator's n - 1 raw 32-bit outputs "
          "(uint32 draws): swap r[i] and r[i + draws[i] % (n - i)] for i = 0 .. n - 2.");
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
