// pybind11 module linsgd._cuda: the CUDA kernels behind the same checks as _core.
//
// Each array argument is either a device array (any object exposing __cuda_array_interface__:
// torch CUDA tensors, CuPy arrays), used in place without a copy, or a numpy array, copied to
// the device once per call and, when the kernel writes it, back at the end. Every call returns
// after the device has finished. CUDA failures raise RuntimeError (MemoryError when the device
// is out of memory) carrying CUDA's message.
#include <cuda_runtime.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "linsgd/kernels.hpp"
#include "python/basic_checks.hpp"

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

using namespace linsgd::python;  // Scalar, type_error, value_error, finite: worded as in _core

bool little_endian() {
    const uint16_t probe = 1;
    return *reinterpret_cast<const unsigned char*>(&probe) == 1;
}

// One array argument as the checks see it, wherever its memory is.
struct Array {
    const char* name = nullptr;
    py::object owner;  // keeps the memory alive
    bool on_device = false;
    int device = -1;
    std::string dtype;  // numpy's name for it, for messages
    char kind = 0;
    int itemsize = 0;
    bool native = true;
    std::vector<int64_t> shape;
    bool contiguous = true;
    char* data = nullptr;
    bool readonly = false;
    bool has_stream = false;
    std::uintptr_t stream = 0;

    bool given() const { return static_cast<bool>(owner); }
    int64_t ndim() const { return static_cast<int64_t>(shape.size()); }
    int64_t size() const {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        return n;
    }
    size_t nbytes() const { return static_cast<size_t>(size()) * static_cast<size_t>(itemsize); }
};

std::string shape_of(const Array& a) {
    std::string s = "(";
    for (int64_t d = 0; d < a.ndim(); ++d) {
        s += std::to_string(a.shape[static_cast<size_t>(d)]);
        if (a.ndim() == 1 || d + 1 < a.ndim()) s += a.ndim() == 1 ? "," : ", ";
    }
    return s + ")";
}

// getattr that tells "no such attribute" apart from an attribute that raises (torch refuses
// __cuda_array_interface__ on a tensor that requires grad, with a message worth passing on).
py::object interface_of(py::handle obj) {
    PyObject* cai = PyObject_GetAttrString(obj.ptr(), "__cuda_array_interface__");
    if (cai) return py::reinterpret_steal<py::object>(cai);
    if (!PyErr_ExceptionMatches(PyExc_AttributeError)) throw py::error_already_set();
    PyErr_Clear();
    return py::object();
}

Array from_numpy(const py::array& a, const char* name) {
    Array out;
    out.name = name;
    out.owner = a;
    const py::dtype dt = a.dtype();
    out.dtype = py::str(dt);
    out.kind = dt.kind();
    out.itemsize = static_cast<int>(dt.itemsize());
    const char bo = dt.byteorder();
    out.native = bo == '=' || bo == '|' || (bo == '<' && little_endian()) || (bo == '>' && !little_endian());
    for (py::ssize_t d = 0; d < a.ndim(); ++d) out.shape.push_back(a.shape(d));
    out.contiguous = (a.flags() & py::array::c_style) != 0;
    out.data = static_cast<char*>(const_cast<void*>(a.data()));
    out.readonly = !a.writeable();
    return out;
}

Array from_interface(py::handle obj, const py::dict& cai, const char* name) {
    Array out;
    out.name = name;
    out.owner = py::reinterpret_borrow<py::object>(obj);
    out.on_device = true;
    const std::string typestr = py::str(cai["typestr"]);
    out.dtype = py::str(py::module_::import("numpy").attr("dtype")(typestr));
    if (typestr.size() < 3) type_error(std::string(name) + " has an invalid __cuda_array_interface__ typestr");
    const char bo = typestr[0];
    out.native = bo == '|' || bo == '=' || (bo == '<' && little_endian()) || (bo == '>' && !little_endian());
    out.kind = typestr[1];
    out.itemsize = std::stoi(typestr.substr(2));
    for (py::handle d : py::tuple(cai["shape"])) out.shape.push_back(d.cast<int64_t>());
    if (cai.contains("mask") && !cai["mask"].is_none())
        value_error(std::string(name) + " is a masked array; pass one without a mask");
    if (cai.contains("strides") && !cai["strides"].is_none()) {
        const py::tuple strides(cai["strides"]);
        if (static_cast<int64_t>(strides.size()) != out.ndim())
            value_error(std::string(name) + " has strides that do not match its shape");
        int64_t expect = out.itemsize;
        for (int64_t d = out.ndim() - 1; d >= 0; --d) {
            const int64_t extent = out.shape[static_cast<size_t>(d)];
            if (extent == 0) {
                out.contiguous = true;
                break;
            }
            if (extent != 1 && strides[static_cast<size_t>(d)].cast<int64_t>() != expect) out.contiguous = false;
            expect *= extent;
        }
    }
    const py::tuple data(cai["data"]);
    out.data = reinterpret_cast<char*>(data[0].cast<std::uintptr_t>());
    out.readonly = data[1].cast<bool>();
    if (cai.contains("stream") && !cai["stream"].is_none()) {
        out.has_stream = true;
        out.stream = cai["stream"].cast<std::uintptr_t>();
    }
    if (out.size() > 0 && out.data) {
        cudaPointerAttributes attr{};
        const cudaError_t err = cudaPointerGetAttributes(&attr, out.data);
        if (err != cudaSuccess) {
            cudaGetLastError();
            type_error(std::string(name) + " exposes __cuda_array_interface__ but CUDA does not know its memory (" +
                       cudaGetErrorString(err) + ")");
        }
        if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
            type_error(std::string(name) + " exposes __cuda_array_interface__ but its memory is not device memory");
        out.device = attr.device;
    }
    return out;
}

Array any_array(py::handle obj, const char* name) {
    py::object cai = interface_of(obj);
    if (cai) {
        if (!py::isinstance<py::dict>(cai)) type_error(std::string(name) + ".__cuda_array_interface__ must be a dict");
        return from_interface(obj, py::reinterpret_borrow<py::dict>(cai), name);
    }
    if (py::isinstance<py::array>(obj)) return from_numpy(py::reinterpret_borrow<py::array>(obj), name);
    type_error(std::string(name) +
               " must be a CUDA device array (an object exposing __cuda_array_interface__, such as a torch "
               "CUDA tensor or a CuPy array) or a numpy array, got " +
               std::string(py::str(py::type::of(obj))));
}

// A float32/float64 array of the given rank, C-contiguous, aligned, native byte order.
Array float_array(py::handle obj, const char* name, int ndim, bool writable) {
    Array a = any_array(obj, name);
    if (a.kind != 'f' || (a.itemsize != 4 && a.itemsize != 8))
        type_error(std::string(name) + " must be float32 or float64, got dtype " + a.dtype);
    if (!a.native) type_error(std::string(name) + " must have native byte order");
    if (a.ndim() != ndim)
        value_error(std::string(name) + " must be " + std::to_string(ndim) + "-D, got shape " + shape_of(a));
    if (!a.contiguous) value_error(std::string(name) + " must be C-contiguous");
    if (reinterpret_cast<std::uintptr_t>(a.data) % static_cast<std::uintptr_t>(a.itemsize) != 0)
        value_error(std::string(name) + " must be aligned to its itemsize");
    if (writable && a.readonly) value_error(std::string(name) + " must be writable (it is updated in place)");
    return a;
}

Array double_array(py::handle obj, const char* name, int ndim, bool writable) {
    Array a = float_array(obj, name, ndim, writable);
    if (a.itemsize != 8) type_error(std::string(name) + " must be float64");
    return a;
}

Scalar scalar_of(const Array& a) { return a.itemsize == 4 ? Scalar::f32 : Scalar::f64; }

void same_scalar(const Array& a, const char* name, Scalar s) {
    if (scalar_of(a) != s)
        type_error(std::string(name) + " must have the same dtype as X (" + (s == Scalar::f32 ? "float32" : "float64") +
                   "), got " + a.dtype);
}

void expect_shape(const Array& a, const char* name, std::vector<int64_t> shape) {
    if (a.shape != shape) {
        std::string want = "(";
        for (size_t d = 0; d < shape.size(); ++d)
            want += std::to_string(shape[d]) + (shape.size() == 1 ? "," : (d + 1 < shape.size() ? ", " : ""));
        value_error(std::string(name) + " must have shape " + want + "), got " + shape_of(a));
    }
}

// An output must not share memory with any other argument: the kernel would read values it
// has already overwritten. Host and device memory never overlap each other.
void no_overlap(const std::vector<const Array*>& outputs, const std::vector<const Array*>& all) {
    for (const Array* out : outputs) {
        if (out->nbytes() == 0) continue;
        for (const Array* other : all) {
            if (other == out || other->nbytes() == 0 || other->on_device != out->on_device) continue;
            if (out->data < other->data + other->nbytes() && other->data < out->data + out->nbytes())
                value_error(std::string(out->name) + " shares memory with " + other->name + "; pass separate arrays");
        }
    }
}

// Every device array on one device: the one the kernels run on (the current one when every
// argument is a numpy array).
int common_device(const std::vector<const Array*>& all) {
    const Array* first = nullptr;
    for (const Array* a : all) {
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
    explicit DeviceCall(int device) {
        check(cudaGetDevice(&previous_), "cudaGetDevice");
        check(cudaSetDevice(device), "cudaSetDevice");
    }
    ~DeviceCall() {
        for (void* p : allocations_) cudaFree(p);
        cudaSetDevice(previous_);
    }
    DeviceCall(const DeviceCall&) = delete;
    DeviceCall& operator=(const DeviceCall&) = delete;

    // Stream 1 and 2 are the legacy and per-thread default streams, which our work on the
    // legacy default stream already follows; any other stream gets an event to wait on.
    void after_producer(const Array& a) {
        if (!a.given() || !a.has_stream || a.stream <= 2) return;
        cudaEvent_t ev;
        check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
        cudaError_t err = cudaEventRecord(ev, reinterpret_cast<cudaStream_t>(a.stream));
        if (err == cudaSuccess) err = cudaStreamWaitEvent(0, ev, 0);
        cudaEventDestroy(ev);
        check(err, "waiting for the stream of a device array");
    }

    // The device address the kernel uses for a (nullptr when a was not given).
    template <typename T>
    T* device_ptr(const Array& a, bool written) {
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

    void finish() {
        check(cudaStreamSynchronize(0), "running on the device");
        for (const auto& w : write_back_)
            check(cudaMemcpy(w.second->data, w.first, w.second->nbytes(), cudaMemcpyDeviceToHost),
                  "copying a result back to its numpy array");
    }

  private:
    int previous_ = 0;
    std::vector<void*> allocations_;
    std::vector<std::pair<void*, const Array*>> write_back_;
};

// A host copy of a small array the host has to read (lr, order): the numpy data itself, or
// the device array's contents.
template <typename V>
std::vector<V> host_values(const Array& a) {
    std::vector<V> out(static_cast<size_t>(a.size()));
    if (out.empty()) return out;
    if (a.on_device) {
        if (a.has_stream && a.stream > 2)
            check(cudaStreamSynchronize(reinterpret_cast<cudaStream_t>(a.stream)), "waiting for a device array");
        check(cudaMemcpy(out.data(), a.data, a.nbytes(), cudaMemcpyDeviceToHost), "reading an array from the device");
    } else
        std::memcpy(out.data(), a.data, a.nbytes());
    return out;
}

struct Checked {
    Array x, y, w, b;
    Scalar scalar = Scalar::f64;
    int64_t rows = 0, features = 0, outputs = 0;
    bool has_bias() const { return b.given(); }
};

Checked check_model(py::handle X, py::handle Y, py::handle W, py::handle b, bool params_writable) {
    Checked c;
    c.x = float_array(X, "X", 2, false);
    c.scalar = scalar_of(c.x);
    c.rows = c.x.shape[0];
    c.features = c.x.shape[1];
    if (c.rows < 1) value_error("X must have at least one row");
    c.y = float_array(Y, "Y", 2, false);
    same_scalar(c.y, "Y", c.scalar);
    c.outputs = c.y.shape[1];
    if (c.y.shape[0] != c.rows)
        value_error("Y must have as many rows as X (" + std::to_string(c.rows) + "), got shape " + shape_of(c.y));
    if (c.outputs < 1) value_error("Y must have at least one column");
    c.w = float_array(W, "W", 2, params_writable);
    same_scalar(c.w, "W", c.scalar);
    expect_shape(c.w, "W", {c.outputs, c.features});
    if (!b.is_none()) {
        c.b = float_array(b, "b", 1, params_writable);
        same_scalar(c.b, "b", c.scalar);
        expect_shape(c.b, "b", {c.outputs});
    }
    return c;
}

// Optional per-row weights: float, X's dtype, shape (rows,), finite and non-negative.
Array sample_weights(py::handle obj, const Checked& c) {
    if (obj.is_none()) return Array();
    Array w = float_array(obj, "sample_weight", 1, false);
    same_scalar(w, "sample_weight", c.scalar);
    expect_shape(w, "sample_weight", {c.rows});
    const bool f32 = c.scalar == Scalar::f32;
    const std::vector<float> wf = f32 ? host_values<float>(w) : std::vector<float>();
    const std::vector<double> wd = f32 ? std::vector<double>() : host_values<double>(w);
    for (int64_t i = 0; i < c.rows; ++i) {
        const double v = f32 ? wf[static_cast<size_t>(i)] : wd[static_cast<size_t>(i)];
        if (!(v >= 0.0) || !std::isfinite(v)) value_error("sample_weight must be finite and >= 0");
    }
    return w;
}

template <typename T>
linsgd::Model<T> model_on(DeviceCall& call, const Checked& c, bool written) {
    return {call.device_ptr<T>(c.w, written), call.device_ptr<T>(c.b, written), c.outputs, c.features};
}

template <typename T>
linsgd::Data<T> data_on(DeviceCall& call, const Array& x, const Array& y, const Array& sample_weight) {
    return {call.device_ptr<T>(x, false), call.device_ptr<T>(y, false), x.shape[0],
            call.device_ptr<T>(sample_weight, false)};
}

// Reached from the host loop with the GIL released: take it back briefly to see whether a
// signal (Ctrl-C) is pending; the Python exception stays set for the caller to raise.
bool python_signal_pending(void*) {
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
}

template <typename T>
double run_loss(const Checked& c, const Array& sw, int device) {
    DeviceCall call(device);
    for (const Array* a : {&c.x, &c.y, &c.w, &c.b, &sw}) call.after_producer(*a);
    const T value = linsgd::cuda::loss<T>(data_on<T>(call, c.x, c.y, sw), model_on<T>(call, c, false));
    call.finish();
    return static_cast<double>(value);
}

double loss_py(py::handle X, py::handle Y, py::handle W, py::handle b, py::handle sample_weight) {
    const Checked c = check_model(X, Y, W, b, false);
    const Array sw = sample_weights(sample_weight, c);
    const int device = common_device({&c.x, &c.y, &c.w, &c.b, &sw});
    py::gil_scoped_release nogil;
    return c.scalar == Scalar::f32 ? run_loss<float>(c, sw, device) : run_loss<double>(c, sw, device);
}

template <typename T>
double run_gradient(const Checked& c, const Array& sw, const Array& gw, const Array& gb, int device) {
    DeviceCall call(device);
    for (const Array* a : {&c.x, &c.y, &c.w, &c.b, &sw, &gw, &gb}) call.after_producer(*a);
    const T value = linsgd::cuda::gradient<T>(data_on<T>(call, c.x, c.y, sw), model_on<T>(call, c, false),
                                              call.device_ptr<T>(gw, true), call.device_ptr<T>(gb, true));
    call.finish();
    return static_cast<double>(value);
}

double gradient_py(py::handle X, py::handle Y, py::handle W, py::handle b, py::handle gW, py::handle gb,
                   py::handle sample_weight) {
    const Checked c = check_model(X, Y, W, b, false);
    const Array sw = sample_weights(sample_weight, c);
    Array gw = float_array(gW, "gW", 2, true);
    same_scalar(gw, "gW", c.scalar);
    expect_shape(gw, "gW", {c.outputs, c.features});
    Array gbias;
    if (c.has_bias()) {
        if (gb.is_none()) value_error("gb must be an array of shape (U,) when b is given");
        gbias = float_array(gb, "gb", 1, true);
        same_scalar(gbias, "gb", c.scalar);
        expect_shape(gbias, "gb", {c.outputs});
    }
    std::vector<const Array*> all = {&c.x, &c.y, &c.w, &gw};
    std::vector<const Array*> outs = {&gw};
    if (sw.given()) all.push_back(&sw);
    if (c.has_bias()) {
        all.push_back(&c.b);
        all.push_back(&gbias);
        outs.push_back(&gbias);
    }
    no_overlap(outs, all);
    const int device = common_device(all);
    py::gil_scoped_release nogil;
    return c.scalar == Scalar::f32 ? run_gradient<float>(c, sw, gw, gbias, device)
                                   : run_gradient<double>(c, sw, gw, gbias, device);
}

struct TrainInputs {
    Array order, lr, losses, buf_w, buf_b, x_valid, y_valid, valid_losses, sample_weight;
    std::vector<double> lr_values;
    int64_t rows_per_epoch = 0;
    int64_t batch_size = 1;
    linsgd::SgdHyper hyper;
    bool momentum_initialized = false;
    double target_loss = NAN;
};

template <typename T>
linsgd::TrainOutcome run_train(const Checked& c, const TrainInputs& in, int device) {
    DeviceCall call(device);
    for (const Array* a : {&c.x, &c.y, &c.w, &c.b, &in.order, &in.losses, &in.buf_w, &in.buf_b, &in.x_valid,
                           &in.y_valid, &in.valid_losses, &in.sample_weight})
        call.after_producer(*a);
    linsgd::TrainArgs<T> a;
    a.data = data_on<T>(call, c.x, c.y, in.sample_weight);
    a.model = model_on<T>(call, c, true);
    a.order = call.device_ptr<const int64_t>(in.order, false);
    a.rows_per_epoch = in.rows_per_epoch;
    a.batch_size = in.batch_size;
    a.lr = in.lr_values.data();
    a.epochs = static_cast<int64_t>(in.lr_values.size());
    a.hyper = in.hyper;
    a.buf_weight = call.device_ptr<T>(in.buf_w, true);
    a.buf_bias = call.device_ptr<T>(in.buf_b, true);
    a.momentum_initialized = in.momentum_initialized;
    a.losses = call.device_ptr<double>(in.losses, true);
    if (in.valid_losses.given()) {
        a.valid = data_on<T>(call, in.x_valid, in.y_valid, Array());
        a.valid_losses = call.device_ptr<double>(in.valid_losses, true);
    }
    a.target_loss = in.target_loss;
    const linsgd::StopCheck stop{&python_signal_pending, nullptr};
    const linsgd::TrainOutcome out = linsgd::cuda::train<T>(a, stop);
    call.finish();
    return out;
}

py::tuple train_py(py::handle X, py::handle Y, py::handle W, py::handle b, py::handle order_obj, int64_t batch_size,
                   py::handle lr_obj, double weight_decay, bool decay_bias, double l2, double momentum,
                   double dampening, bool nesterov, bool maximize, py::handle buf_W, py::handle buf_b,
                   bool momentum_initialized, py::handle losses_obj, py::handle X_valid, py::handle Y_valid,
                   py::handle valid_losses_obj, double target_loss, py::handle sample_weight) {
    const Checked c = check_model(X, Y, W, b, true);
    TrainInputs in;
    in.sample_weight = sample_weights(sample_weight, c);
    if (batch_size < 1) value_error("batch_size must be >= 1, got " + std::to_string(batch_size));
    in.batch_size = batch_size;
    in.lr = double_array(lr_obj, "lr", 1, false);
    in.lr_values = host_values<double>(in.lr);
    const int64_t epochs = in.lr.shape[0];
    for (double v : in.lr_values)
        if (!std::isfinite(v)) value_error("lr must be finite in every epoch");

    in.hyper.weight_decay = finite(weight_decay, "weight_decay");
    in.hyper.decay_bias = decay_bias;
    in.hyper.l2 = finite(l2, "l2");
    in.hyper.momentum = finite(momentum, "momentum");
    in.hyper.dampening = finite(dampening, "dampening");
    in.hyper.nesterov = nesterov;
    in.hyper.maximize = maximize;
    if (nesterov && (momentum == 0.0 || dampening != 0.0))
        value_error("nesterov requires momentum > 0 and dampening == 0");
    if (std::isinf(target_loss)) value_error("target_loss must be finite or NaN (disabled)");
    in.target_loss = target_loss;
    in.momentum_initialized = momentum_initialized;

    in.rows_per_epoch = c.rows;
    if (!order_obj.is_none()) {
        in.order = any_array(order_obj, "order");
        if (in.order.kind != 'i' || in.order.itemsize != 8 || !in.order.native)
            type_error("order must be an int64 array, got dtype " + in.order.dtype);
        if (in.order.ndim() != 2) value_error("order must be 2-D (epochs, rows), got shape " + shape_of(in.order));
        if (!in.order.contiguous) value_error("order must be C-contiguous");
        if (in.order.shape[0] != epochs)
            value_error("order must have one row per epoch (" + std::to_string(epochs) + "), got shape " +
                        shape_of(in.order));
        in.rows_per_epoch = in.order.shape[1];
        for (int64_t idx : host_values<int64_t>(in.order))
            if (idx < 0 || idx >= c.rows)
                value_error("order holds row index " + std::to_string(idx) + ", outside [0, " + std::to_string(c.rows) +
                            ")");
    }
    if (in.rows_per_epoch < 1) value_error("order must select at least one row per epoch");
    const int64_t steps_per_epoch = (in.rows_per_epoch + batch_size - 1) / batch_size;

    in.losses = double_array(losses_obj, "losses", 1, true);
    if (in.losses.shape[0] < epochs * steps_per_epoch)
        value_error("losses must hold epochs * steps_per_epoch = " + std::to_string(epochs * steps_per_epoch) +
                    " values, got shape " + shape_of(in.losses));

    const bool use_momentum = momentum != 0.0;
    if (use_momentum) {
        in.buf_w = float_array(buf_W, "buf_W", 2, true);
        same_scalar(in.buf_w, "buf_W", c.scalar);
        expect_shape(in.buf_w, "buf_W", {c.outputs, c.features});
        if (c.has_bias()) {
            if (buf_b.is_none()) value_error("buf_b must be an array of shape (U,) when b is given and momentum != 0");
            in.buf_b = float_array(buf_b, "buf_b", 1, true);
            same_scalar(in.buf_b, "buf_b", c.scalar);
            expect_shape(in.buf_b, "buf_b", {c.outputs});
        }
    }

    const bool has_valid = !valid_losses_obj.is_none();
    if (has_valid) {
        in.x_valid = float_array(X_valid, "X_valid", 2, false);
        same_scalar(in.x_valid, "X_valid", c.scalar);
        if (in.x_valid.shape[0] < 1 || in.x_valid.shape[1] != c.features)
            value_error("X_valid must have shape (M_valid >= 1, " + std::to_string(c.features) + "), got " +
                        shape_of(in.x_valid));
        in.y_valid = float_array(Y_valid, "Y_valid", 2, false);
        same_scalar(in.y_valid, "Y_valid", c.scalar);
        expect_shape(in.y_valid, "Y_valid", {in.x_valid.shape[0], c.outputs});
        in.valid_losses = double_array(valid_losses_obj, "valid_losses", 1, true);
        expect_shape(in.valid_losses, "valid_losses", {epochs});
    } else if (!X_valid.is_none() || !Y_valid.is_none()) {
        value_error("X_valid and Y_valid need valid_losses to write to");
    }

    std::vector<const Array*> all = {&c.x, &c.y, &c.w, &in.lr, &in.losses};
    std::vector<const Array*> outs = {&c.w, &in.losses};
    if (c.has_bias()) {
        all.push_back(&c.b);
        outs.push_back(&c.b);
    }
    if (in.order.given()) all.push_back(&in.order);
    if (in.sample_weight.given()) all.push_back(&in.sample_weight);
    if (use_momentum) {
        all.push_back(&in.buf_w);
        outs.push_back(&in.buf_w);
        if (c.has_bias()) {
            all.push_back(&in.buf_b);
            outs.push_back(&in.buf_b);
        }
    }
    if (has_valid) {
        all.push_back(&in.x_valid);
        all.push_back(&in.y_valid);
        all.push_back(&in.valid_losses);
        outs.push_back(&in.valid_losses);
    }
    no_overlap(outs, all);
    const int device = common_device(all);

    linsgd::TrainOutcome out;
    {
        py::gil_scoped_release nogil;
        out = c.scalar == Scalar::f32 ? run_train<float>(c, in, device) : run_train<double>(c, in, device);
    }
    if (out.status == linsgd::TrainStatus::interrupted && PyErr_Occurred()) throw py::error_already_set();
    return py::make_tuple(out.steps_done, static_cast<int>(out.status));
}

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
            if (&e.code().category() != &linsgd::cuda::error_category()) throw;
            PyErr_SetString(e.code().value() == cudaErrorMemoryAllocation ? PyExc_MemoryError : PyExc_RuntimeError,
                            (std::string("CUDA error: ") + e.what()).c_str());
        }
    });
    m.def("device_available", &device_available, "Whether a CUDA device is visible (never raises).");
    m.def("loss", &loss_py, py::arg("X"), py::arg("Y"), py::arg("W"), py::arg("b").none(true),
          py::arg("sample_weight").none(true) = py::none(),
          "Mean squared error of the model (W, b) on (X, Y), rounded as torch's MSELoss rounds it.");
    m.def("gradient", &gradient_py, py::arg("X"), py::arg("Y"), py::arg("W"), py::arg("b").none(true), py::arg("gW"),
          py::arg("gb").none(true), py::arg("sample_weight").none(true) = py::none(),
          "Write the MSE gradient of one batch into gW (U, N) and gb (U,); return the batch loss.");
    m.def("train", &train_py, py::arg("X"), py::arg("Y"), py::arg("W"), py::arg("b").none(true),
          py::arg("order").none(true), py::arg("batch_size"), py::arg("lr"), py::arg("weight_decay"),
          py::arg("decay_bias"), py::arg("l2"), py::arg("momentum"), py::arg("dampening"), py::arg("nesterov"),
          py::arg("maximize"), py::arg("buf_W").none(true), py::arg("buf_b").none(true),
          py::arg("momentum_initialized"), py::arg("losses"), py::arg("X_valid").none(true),
          py::arg("Y_valid").none(true), py::arg("valid_losses").none(true), py::arg("target_loss"),
          py::arg("sample_weight").none(true) = py::none(),
          "Run len(lr) epochs of mini-batch SGD on the device, in place; return (steps_done, status) with "
          "status 0 completed, 1 target_loss reached, 2 diverged, 3 interrupted.");
}
