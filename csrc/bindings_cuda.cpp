// pybind11 module linsgd._cuda: the CUDA kernels behind the same entry points, signatures and
// checks as _core (python/arguments.hpp, with the memory policy below).
//
// Each array argument is either a device array (any object exposing __cuda_array_interface__:
// torch CUDA tensors, CuPy arrays), used in place without a copy, or a numpy array, copied to
// the device once per call and, when the kernel writes it, back at the end. Every call returns
// after the device has finished. CUDA failures raise RuntimeError (MemoryError when the device
// is out of memory) carrying CUDA's message.
#include <cuda_runtime.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <exception>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "linsgd/kernels.hpp"
#include "python/arguments.hpp"
#include "python/fastcall.hpp"

// Defined in cuda/sgd.cu, next to the kernels. Pointers are device memory except
// TrainArgs::lr, which is read on the host.
namespace linsgd {
namespace cuda {
// CUDA failures are thrown as std::system_error in this category, the code a cudaError_t.
const std::error_category& error_category();
void check(cudaError_t err, const char* what);
}  // namespace cuda
}  // namespace linsgd

namespace py = pybind11;
using linsgd::cuda::check;

namespace {

using namespace linsgd::python;

// Stream 1 and 2 are the legacy and per-thread default streams, which our work on the legacy
// default stream already follows.
bool named_stream(const ArrayView& a) { return a.on_device && a.stream > 2; }

// _cuda's memory: device arrays as well as numpy arrays; the small arrays the checks read (lr,
// order, sample weights) are copied to the host when they are on the device.
struct CudaMemory {
    static constexpr bool kDevice = true;
    static constexpr const char* kExpected =
        "a CUDA device array (an object exposing __cuda_array_interface__, such as a torch CUDA tensor or a CuPy "
        "array) or a numpy array";

    static void locate(ArrayView& a) {
        if (a.size() == 0 || !a.data) return;
        cudaPointerAttributes attr{};
        const cudaError_t err = cudaPointerGetAttributes(&attr, a.data);
        if (err != cudaSuccess) {
            cudaGetLastError();
            type_error(std::string(a.name) + " exposes __cuda_array_interface__ but CUDA does not know its memory (" +
                       cudaGetErrorString(err) + ")");
        }
        if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
            type_error(std::string(a.name) + " exposes __cuda_array_interface__ but its memory is not device memory");
        a.device = attr.device;
    }

    template <typename V>
    static const V* host_values(const ArrayView& a, std::vector<V>& copy) {
        if (!a.on_device) return reinterpret_cast<const V*>(a.data);
        copy.resize(static_cast<size_t>(a.size()));
        if (copy.empty()) return copy.data();
        if (named_stream(a))
            check(cudaStreamSynchronize(reinterpret_cast<cudaStream_t>(a.stream)), "waiting for a device array");
        check(cudaMemcpy(copy.data(), a.data, a.nbytes(), cudaMemcpyDeviceToHost), "reading an array from the device");
        return copy.data();
    }
    // (a direct call's check: linsgd.kernels checks device arrays on the device, and asks for none here)
    template <typename T>
    static bool all_finite(const ArrayView& a) {
        std::vector<T> copy;
        const T* v = host_values<T>(a, copy);
        for (Py_ssize_t i = 0, n = a.size(); i < n; ++i)
            if (!std::isfinite(v[i])) return false;
        return true;
    }
};

// Every device array on one device: the one the kernels run on (the current one when every
// argument is a numpy array).
int common_device(const ViewList& all) {
    const ArrayView* first = nullptr;
    for (const ArrayView* a : all) {
        if (!a->on_device || a->device < 0) continue;
        if (first && a->device != first->device)
            value_error(std::string(a->name) + " is on CUDA device " + std::to_string(a->device) + " but " +
                        first->name + " is on device " + std::to_string(first->device) + "; pass arrays on one device");
        if (!first) first = a;
    }
    if (first) return first->device;
    int current = 0;
    check(cudaGetDevice(&current), "cudaGetDevice");
    return current;
}

// The device side of one call: switches to the arrays' device, orders the work after the
// producers' streams, gives every numpy array a device copy and writes the outputs back.
// Used with the GIL released.
class DeviceCall {
  public:
    DeviceCall(int device, const ViewList& arrays) {
        check(cudaGetDevice(&previous_), "cudaGetDevice");
        check(cudaSetDevice(device), "cudaSetDevice");
        for (const ArrayView* a : arrays) after_producer(*a);
    }
    ~DeviceCall() {
        for (void* p : allocations_) cudaFree(p);
        cudaSetDevice(previous_);
    }
    DeviceCall(const DeviceCall&) = delete;
    DeviceCall& operator=(const DeviceCall&) = delete;

    // The device address the kernel uses for a (nullptr when a was not given).
    template <typename T>
    T* ptr(const ArrayView& a, bool written) {
        if (!a.given()) return nullptr;
        if (a.on_device) return reinterpret_cast<T*>(a.data);
        void* p = nullptr;
        if (a.nbytes() > 0) {
            check(cudaMalloc(&p, a.nbytes()), "cudaMalloc");
            allocations_.push_back(p);
            check(cudaMemcpy(p, a.data, a.nbytes(), cudaMemcpyHostToDevice), "copying a numpy array to the device");
            if (written) write_back_.push_back({p, &a});
        }
        return static_cast<T*>(p);
    }

    template <typename T>
    linsgd::Data<T> data(const ArrayView& x, const ArrayView& y, const ArrayView& sample_weight) {
        return {ptr<const T>(x, false), ptr<const T>(y, false), x.dim(0), ptr<const T>(sample_weight, false)};
    }

    template <typename T>
    linsgd::Model<T> model(const ModelViews& m, bool written) {
        return {ptr<T>(m.w, written), ptr<T>(m.b, written), m.outputs, m.features};
    }

    void finish() {
        check(cudaStreamSynchronize(0), "running on the device");
        for (const auto& w : write_back_)
            check(cudaMemcpy(w.second->data, w.first, w.second->nbytes(), cudaMemcpyDeviceToHost),
                  "copying a result back to its numpy array");
    }

  private:
    // Any stream but the default ones gets an event to wait on.
    void after_producer(const ArrayView& a) {
        if (!named_stream(a)) return;
        cudaEvent_t ev;
        check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
        cudaError_t err = cudaEventRecord(ev, reinterpret_cast<cudaStream_t>(a.stream));
        if (err == cudaSuccess) err = cudaStreamWaitEvent(0, ev, 0);
        cudaEventDestroy(ev);
        check(err, "waiting for the stream of a device array");
    }

    int previous_ = 0;
    std::vector<void*> allocations_;
    std::vector<std::pair<void*, const ArrayView*>> write_back_;
};

// Reached from the host loop with the GIL released: take it back briefly to see whether a
// signal (Ctrl-C) is pending; the Python exception stays set for the caller to raise.
bool python_signal_pending(void*) {
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
}

ViewList inputs_of(const ModelViews& m) {
    ViewList all;
    add_inputs(m, all);
    return all;
}

template <typename T>
double run_loss(const ModelViews& m, int device) {
    DeviceCall call(device, inputs_of(m));
    const T value = linsgd::cuda::loss<T>(call.data<T>(m.x, m.y, m.sample_weight), call.model<T>(m, false));
    call.finish();
    return static_cast<double>(value);
}

double loss_py(py::handle X, py::handle Y, py::handle W, py::handle b, py::handle sample_weight) {
    const ModelViews m = check_model<CudaMemory>(X, Y, W, b, sample_weight, false);
    const int device = common_device(inputs_of(m));
    py::gil_scoped_release nogil;
    return m.scalar == Scalar::f32 ? run_loss<float>(m, device) : run_loss<double>(m, device);
}

template <typename T>
double run_gradient(const GradientCall& c, int device) {
    const ModelViews& m = c.model;
    DeviceCall call(device, c.arrays());
    const T value = linsgd::cuda::gradient<T>(call.data<T>(m.x, m.y, m.sample_weight), call.model<T>(m, false),
                                              call.ptr<T>(c.gw, true), call.ptr<T>(c.gb, true));
    call.finish();
    return static_cast<double>(value);
}

double gradient_py(py::handle X, py::handle Y, py::handle W, py::handle b, py::handle gW, py::handle gb,
                   py::handle sample_weight) {
    const GradientCall c = check_gradient<CudaMemory>(X, Y, W, b, gW, gb, sample_weight);
    const int device = common_device(c.arrays());
    py::gil_scoped_release nogil;
    return c.model.scalar == Scalar::f32 ? run_gradient<float>(c, device) : run_gradient<double>(c, device);
}

template <typename T>
double run_partial_gradient(const PartialGradientCall& p, int device) {
    const GradientCall& c = p.gradient;
    const ModelViews& m = c.model;
    DeviceCall call(device, c.arrays());
    const T value = linsgd::cuda::partial_gradient<T>(call.data<T>(m.x, m.y, m.sample_weight), call.model<T>(m, false),
                                                      p.weight_total, call.ptr<T>(c.gw, true), call.ptr<T>(c.gb, true));
    call.finish();
    return static_cast<double>(value);
}

double partial_gradient_py(py::handle X, py::handle Y, py::handle W, py::handle b, py::handle gW, py::handle gb,
                           py::handle n_total, py::handle sample_weight, py::handle weight_total) {
    const PartialGradientCall c =
        check_partial_gradient<CudaMemory>(X, Y, W, b, gW, gb, n_total, sample_weight, weight_total);
    const int device = common_device(c.gradient.arrays());
    py::gil_scoped_release nogil;
    return c.gradient.model.scalar == Scalar::f32 ? run_partial_gradient<float>(c, device)
                                                  : run_partial_gradient<double>(c, device);
}

template <typename T>
bool run_update(const UpdateCall& c, int device) {
    ViewList all;
    for (const ArrayView* a : {&c.w, &c.b, &c.gw, &c.gb, &c.buf_w, &c.buf_b}) all.add(*a);
    DeviceCall call(device, all);
    const linsgd::Model<T> model{call.ptr<T>(c.w, true), call.ptr<T>(c.b, true), c.outputs, c.features};
    const bool finite = linsgd::cuda::update<T>(model, call.ptr<const T>(c.gw, false), call.ptr<const T>(c.gb, false),
                                                call.ptr<T>(c.buf_w, true), call.ptr<T>(c.buf_b, true), c.lr, c.hyper,
                                                c.momentum_initialized);
    call.finish();
    return finite;
}

template <typename T>
linsgd::TrainOutcome run_train(const TrainCall& c, int device) {
    const ModelViews& m = c.model;
    DeviceCall call(device, c.arrays());
    linsgd::TrainArgs<T> a;
    a.data = call.data<T>(m.x, m.y, m.sample_weight);
    a.model = call.model<T>(m, true);
    a.order = call.ptr<const int64_t>(c.order, false);
    a.rows_per_epoch = c.steps.rows;
    a.batch_size = c.steps.batch;
    a.lr = c.lr_values;
    a.epochs = c.epochs;
    a.hyper = c.hyper;
    a.buf_weight = call.ptr<T>(c.buf_w, true);
    a.buf_bias = call.ptr<T>(c.buf_b, true);
    a.momentum_initialized = c.momentum_initialized;
    a.losses = call.ptr<double>(c.losses, true);
    if (c.has_valid()) {
        a.valid = call.data<T>(c.x_valid, c.y_valid, ArrayView());
        a.valid_losses = call.ptr<double>(c.valid_losses, true);
    }
    a.target_loss = c.target_loss;
    const linsgd::StopCheck stop{&python_signal_pending, nullptr};
    const linsgd::TrainOutcome out = linsgd::cuda::train<T>(a, stop);
    call.finish();
    return out;
}

// The Python exception for a CUDA failure; false for any other error.
bool set_cuda_error(const std::system_error& e) {
    if (&e.code().category() != &linsgd::cuda::error_category()) return false;
    PyErr_SetString(e.code().value() == cudaErrorMemoryAllocation ? PyExc_MemoryError : PyExc_RuntimeError,
                    (std::string("CUDA error: ") + e.what()).c_str());
    return true;
}

PyObject* update_fastcall(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    PyObject* arg[kUpdateArgCount] = {};
    if (!parse_fastcall("update", args, nargs, kwnames, kUpdateArgNames, kUpdateArgCount, kUpdateRequired, arg))
        return nullptr;
    return translate_exceptions([&] {
        try {
            const UpdateCall c = check_update<CudaMemory>(arg);
            ViewList all;
            for (const ArrayView* a : {&c.w, &c.b, &c.gw, &c.gb, &c.buf_w, &c.buf_b}) all.add(*a);
            const int device = common_device(all);
            bool finite;
            {
                py::gil_scoped_release nogil;
                finite = c.scalar == Scalar::f32 ? run_update<float>(c, device) : run_update<double>(c, device);
            }
            return py::bool_(finite);
        } catch (const std::system_error& e) {
            if (!set_cuda_error(e)) throw;
            throw py::error_already_set();
        }
    });
}

PyMethodDef kUpdateDef = {"update", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(&update_fastcall)),
                          METH_FASTCALL | METH_KEYWORDS, kUpdateDoc};

// ---- train: a raw METH_FASTCALL function, as in _core (threads is checked, then unused) ------

py::tuple train_impl(PyObject* const* arg) {
    const TrainCall c = check_train<CudaMemory>(arg);
    if (c.check_only() || c.epochs == 0) return c.result(0, 0);
    const int device = common_device(c.arrays());
    linsgd::TrainOutcome out;
    {
        py::gil_scoped_release nogil;
        out = c.model.scalar == Scalar::f32 ? run_train<float>(c, device) : run_train<double>(c, device);
    }
    if (out.status == linsgd::TrainStatus::interrupted && PyErr_Occurred()) throw py::error_already_set();
    return c.result(out.steps_done, static_cast<int>(out.status));
}

PyObject* train_fastcall(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    PyObject* arg[kTrainArgCount] = {};
    if (!parse_fastcall("train", args, nargs, kwnames, kTrainArgNames, kTrainArgCount, kTrainRequired, arg))
        return nullptr;
    return translate_exceptions([&] {
        try {
            return train_impl(arg);
        } catch (const std::system_error& e) {
            if (!set_cuda_error(e)) throw;
            throw py::error_already_set();
        }
    });
}

constexpr const char* kTrainDoc = LINSGD_TRAIN_SIGNATURE
    "_core.train on the device: the same arguments, checks and result; numpy arrays are copied to the device "
    "and back, device arrays are used in place. threads (1..1024) is checked and ignored.";

PyMethodDef kTrainDef = {"train", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(&train_fastcall)),
                         METH_FASTCALL | METH_KEYWORDS, kTrainDoc};

bool device_available() {
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    cudaGetLastError();
    return err == cudaSuccess && count > 0;
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
    m.doc() =
        "linsgd's CUDA kernels (private: use linsgd.kernels). Arrays are device arrays exposing "
        "__cuda_array_interface__ (used in place) or numpy arrays (copied to the device and back).";
    py::register_local_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const std::system_error& e) {
            if (!set_cuda_error(e)) throw;
        }
    });
    m.def("device_available", &device_available, "Whether a CUDA device is visible (never raises).");
    m.def("loss", &loss_py, py::arg("X"), py::arg("Y"), py::arg("W"), py::arg("b").none(true),
          py::arg("sample_weight").none(true) = py::none(), kLossDoc);
    m.def("gradient", &gradient_py, py::arg("X"), py::arg("Y"), py::arg("W"), py::arg("b").none(true), py::arg("gW"),
          py::arg("gb").none(true), py::arg("sample_weight").none(true) = py::none(), kGradientDoc);
    m.def("partial_gradient", &partial_gradient_py, py::arg("X"), py::arg("Y"), py::arg("W"), py::arg("b").none(true),
          py::arg("gW"), py::arg("gb").none(true), py::arg("n_total"), py::arg("sample_weight").none(true) = py::none(),
          py::arg("weight_total").none(true) = py::none(), kPartialGradientDoc);
    add_fastcall(m, &kTrainDef);
    add_fastcall(m, &kUpdateDef);
}
