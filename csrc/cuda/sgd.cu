// Device kernels: the batch gradient, the SGD step and whole epochs, the same names and the
// same bits as cpu/sgd.cpp.
//
// Every pointer in Data, Model and TrainArgs is device memory, except TrainArgs::lr, which is
// read on the host (each epoch's SgdScalars are formed there and passed by value). All work
// goes to the legacy default stream and each entry point returns after it has finished.
//
// Summation order. Every reduction is the CPU kernel's, evaluated by one thread per result, so
// the GPU gives the CPU's bits (and torch's, where the CPU does): the forward pass runs one
// thread per (row, output) through math.hpp's dot(); each weight-gradient element gW[u, j] is
// one thread summing g[i, u] * x[i, j] sequentially over the batch (i = 0, 1, ...), from zero,
// unfused; the bias gradient (cascade_column_sum) and the loss (cascade_sum_contiguous) are one
// thread each over the stored errors. Products are never contracted into FMAs (built with
// --fmad=false); the update's FMAs are explicit in math.hpp. The price of those bits is that
// nothing is parallel over the batch: a step costs O(batch) sequential work per thread, which
// is small for mini-batches and dominates for full batches of many rows. Sample weights enter
// as on the CPU: the batch's weight sum in double, in row order, by one thread.
//
// Training: five launches per step (forward; loss and bias gradient; weight gradient; update;
// finish; one more first for a weighted batch's weight sum), no host synchronisation or
// allocation inside the loop. The single-thread finish kernel alone decides whether training
// ends (a non-finite loss or parameter, target_loss reached) and raises a stop flag in device
// memory that makes every later kernel return at once; it also sets a word in mapped host
// memory so that the host stops queueing launches. The step bookkeeping (batches, how often to
// ask about Ctrl-C, what ends training) is the CPU loop's, from linsgd/steps.hpp.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <system_error>

#include "linsgd/kernels.hpp"
#include "linsgd/math.hpp"
#include "linsgd/steps.hpp"

namespace linsgd {
namespace cuda {

namespace {

class CudaCategory final : public std::error_category {
  public:
    const char* name() const noexcept override { return "cuda"; }
    std::string message(int code) const override { return cudaGetErrorString(static_cast<cudaError_t>(code)); }
};

}  // namespace

const std::error_category& error_category() {
    static const CudaCategory category;
    return category;
}

void check(cudaError_t err, const char* what) {
    if (err == cudaSuccess) return;
    cudaGetLastError();  // clear a non-sticky error so that the next call starts clean
    throw std::system_error(static_cast<int>(err), error_category(), std::string(what) + ": " + cudaGetErrorName(err));
}

namespace {

constexpr cudaStream_t kStream = 0;
constexpr int kThreads = 256;

template <typename T>
class DeviceArray {
  public:
    explicit DeviceArray(int64_t count) {
        if (count > 0) check(cudaMalloc(&ptr_, sizeof(T) * static_cast<size_t>(count)), "cudaMalloc");
    }
    ~DeviceArray() {
        if (ptr_) cudaFree(ptr_);
    }
    DeviceArray(const DeviceArray&) = delete;
    DeviceArray& operator=(const DeviceArray&) = delete;
    T* get() const { return ptr_; }

  private:
    T* ptr_ = nullptr;
};

// One int in page-locked host memory that kernels can write: the host polls it without
// synchronising.
class MappedFlag {
  public:
    MappedFlag() {
        check(cudaHostAlloc(reinterpret_cast<void**>(&host_), sizeof(int), cudaHostAllocMapped), "cudaHostAlloc");
        *host_ = 0;
        void* dev = nullptr;
        check(cudaHostGetDevicePointer(&dev, host_, 0), "cudaHostGetDevicePointer");
        device_ = static_cast<int*>(dev);
    }
    ~MappedFlag() { cudaFreeHost(host_); }
    MappedFlag(const MappedFlag&) = delete;
    MappedFlag& operator=(const MappedFlag&) = delete;
    bool raised() const { return *static_cast<volatile int*>(host_) != 0; }
    int* device() const { return device_; }

  private:
    int* host_ = nullptr;
    int* device_ = nullptr;
};

struct DeviceState {
    int stop;  // once set, every later kernel returns at once
    int status;
    int nonfinite;  // a parameter became NaN or infinite in this step
    int momentum_ready;
    long long steps_done;
};

__device__ inline int64_t thread_index() { return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }

void launch_check(int64_t threads) {
    if ((threads + kThreads - 1) / kThreads > 0x7fffffff)
        throw std::system_error(static_cast<int>(cudaErrorInvalidConfiguration), error_category(),
                                "the problem is too large for one kernel launch");
}

unsigned blocks_for(int64_t threads) { return static_cast<unsigned>((threads + kThreads - 1) / kThreads); }

// With sample weights, the batch's weight sum and gradient scale, for the kernels after it.
template <typename T>
__global__ void batch_weight_kernel(const T* weight, const int64_t* rows, int64_t start, int64_t batch, int64_t outputs,
                                    double* weight_sum, T* scale, const DeviceState* state) {
    if (state->stop || thread_index() != 0) return;
    double total = 0.0;
    for (int64_t i = 0; i < batch; ++i) total += static_cast<double>(weight[rows ? rows[start + i] : start + i]);
    *weight_sum = total;
    *scale = weighted_gradient_scale<T>(total, outputs);
}

// partial_gradient's weighted batch: the given weight total and its gradient scale.
template <typename T>
__global__ void given_weight_kernel(double total, int64_t outputs, double* weight_sum, T* scale) {
    if (thread_index() != 0) return;
    *weight_sum = total;
    *scale = weighted_gradient_scale<T>(total, outputs);
}

// e = P - Y for every (row, output) of the batch, and e scaled by 2 / (B * U) (by the
// weighted scale, times the row's weight, with sample weights).
template <typename T>
__global__ void forward_kernel(Data<T> data, const int64_t* rows, int64_t start, int64_t batch, Model<T> model, T scale,
                               const T* weighted, T* error, T* scaled_error, const DeviceState* state) {
    if (state->stop) return;
    const int64_t u_count = model.outputs;
    const int64_t t = thread_index();
    if (t >= batch * u_count) return;
    const int64_t i = t / u_count;
    const int64_t u = t - i * u_count;
    const int64_t r = rows ? rows[start + i] : start + i;
    const int64_t n = model.features;
    const T e = predict_one<T>(data.x + r * n, model.weight + u * n, n, model.bias ? model.bias + u : nullptr) -
                data.y[r * u_count + u];
    error[t] = e;
    scaled_error[t] = data.sample_weight ? (e * *weighted) * data.sample_weight[r] : e * scale;
}

// The batch loss (thread 0) and the bias gradient (threads 1..U): one thread per sum, each
// the long sequential cascade, so kept apart from the weight gradient, whose many short-lived
// threads need few registers.
template <typename T>
__global__ void reduce_kernel(const T* weight, const int64_t* rows, int64_t start, int64_t batch, int64_t outputs,
                              const double* weight_sum, const T* error, const T* scaled_error, T* grad_bias,
                              T* step_loss, double* loss_out, T* sse_out, const DeviceState* state) {
    if (state->stop) return;
    const int64_t t = thread_index();
    if (t == 0) {
        const int64_t cells = batch * outputs;
        T value;
        if (weight) {
            const T total = cascade_sum_contiguous<T>(
                [&](int64_t k) {
                    const int64_t i = k / outputs;
                    return (error[k] * error[k]) * weight[rows ? rows[start + i] : start + i];
                },
                cells);
            value = weighted_mean<T>(total, *weight_sum, outputs);
            if (sse_out) *sse_out = total;
        } else {
            const T total = cascade_sum_contiguous<T>([&](int64_t k) { return error[k] * error[k]; }, cells);
            value = weighted_mean<T>(total, static_cast<double>(batch), outputs);
            if (sse_out) *sse_out = total;
        }
        *step_loss = value;
        if (loss_out) *loss_out = static_cast<double>(value);
    } else if (grad_bias && t <= outputs) {
        grad_bias[t - 1] = cascade_column_sum<T>(scaled_error, batch, outputs, t - 1);
    }
}

// gW[u, j], one thread each: the batch summed in row order from zero, as on the CPU.
template <typename T>
__global__ void weight_gradient_kernel(Data<T> data, const int64_t* rows, int64_t start, int64_t batch, int64_t outputs,
                                       int64_t features, const T* scaled_error, T* grad_weight,
                                       const DeviceState* state) {
    if (state->stop) return;
    const int64_t k = thread_index();
    if (k >= outputs * features) return;
    const int64_t u = k / features;
    const int64_t j = k - u * features;
    T acc = T(0);
    for (int64_t i = 0; i < batch; ++i) {
        const int64_t r = rows ? rows[start + i] : start + i;
        acc = acc + scaled_error[i * outputs + u] * data.x[r * features + j];
    }
    grad_weight[k] = acc;
}

template <typename T>
__global__ void update_kernel(Model<T> model, const T* grad_weight, const T* grad_bias, T* buf_weight, T* buf_bias,
                              SgdScalars<T> s, const T* step_loss, DeviceState* state) {
    if (state->stop || loss_diverged(*step_loss)) return;
    const bool first_momentum_step = s.use_momentum && !state->momentum_ready;
    const int64_t count = model.outputs * model.features;
    const int64_t t = thread_index();
    T p;
    if (t < count) {
        p = sgd_update<T>(model.weight[t], grad_weight[t], buf_weight ? buf_weight + t : nullptr, s, s.use_decay_weight,
                          s.decay_weight, first_momentum_step);
        model.weight[t] = p;
    } else if (model.bias && t - count < model.outputs) {
        const int64_t u = t - count;
        p = sgd_update<T>(model.bias[u], grad_bias[u], buf_bias ? buf_bias + u : nullptr, s, s.use_decay_bias,
                          s.decay_bias, first_momentum_step);
        model.bias[u] = p;
    } else {
        return;
    }
    if (!is_finite(p)) state->nonfinite = 1;
}

__device__ inline void halt(DeviceState* state, int* host_stop, TrainStatus status) {
    state->status = static_cast<int>(status);
    state->stop = 1;
    *static_cast<volatile int*>(host_stop) = 1;
    __threadfence_system();
}

// The CPU loop's bookkeeping after a step, in its order (linsgd/steps.hpp).
template <typename T>
__global__ void finish_step_kernel(const T* step_loss, double target_loss, DeviceState* state, int* host_stop) {
    if (state->stop) return;
    const T value = *step_loss;
    if (loss_diverged(value)) {
        halt(state, host_stop, TrainStatus::diverged);
        return;
    }
    ++state->steps_done;
    state->momentum_ready = 1;
    const TrainStatus status = status_after_update(value, state->nonfinite == 0, target_loss);
    if (status != TrainStatus::completed) halt(state, host_stop, status);
}

template <typename T>
__global__ void squared_error_kernel(Data<T> data, Model<T> model, T* squared, const DeviceState* state) {
    if (state && state->stop) return;
    const int64_t u_count = model.outputs;
    const int64_t t = thread_index();
    if (t >= data.rows * u_count) return;
    const int64_t r = t / u_count;
    const int64_t u = t - r * u_count;
    const int64_t n = model.features;
    const T e =
        predict_one<T>(data.x + r * n, model.weight + u * n, n, model.bias ? model.bias + u : nullptr) - data.y[t];
    squared[t] = data.sample_weight ? (e * e) * data.sample_weight[r] : e * e;
}

template <typename T>
__global__ void mean_kernel(const T* squared, const T* weight, int64_t rows, int64_t outputs, T* out,
                            double* out_double, const DeviceState* state) {
    if ((state && state->stop) || thread_index() != 0) return;
    const T total = cascade_sum_contiguous<T>([&](int64_t k) { return squared[k]; }, rows * outputs);
    double weight_sum = static_cast<double>(rows);
    if (weight) {
        weight_sum = 0.0;
        for (int64_t i = 0; i < rows; ++i) weight_sum += static_cast<double>(weight[i]);
    }
    const T value = weighted_mean<T>(total, weight_sum, outputs);
    if (out) *out = value;
    if (out_double) *out_double = static_cast<double>(value);
}

void check_launch() { check(cudaGetLastError(), "kernel launch"); }

// The mean squared error of the model on data, into out (device) and out_double (device).
template <typename T>
void enqueue_loss(const Data<T>& data, const Model<T>& model, T* squared, T* out, double* out_double,
                  const DeviceState* state) {
    const int64_t cells = data.rows * model.outputs;
    launch_check(cells);
    squared_error_kernel<T><<<blocks_for(cells), kThreads, 0, kStream>>>(data, model, squared, state);
    mean_kernel<T><<<1, 1, 0, kStream>>>(squared, data.sample_weight, data.rows, model.outputs, out, out_double, state);
    check_launch();
}

// Scratch space of one step: the errors, and the weight sum and scale of a weighted batch.
template <typename T>
struct StepBuffers {
    T* error;
    T* scaled_error;
    T* step_loss;
    double* weight_sum;
    T* weighted_scale;
};

// weight_total >= 0: the rows are part of a larger batch of that row count (or weight sum), which
// normalises the gradient; their sum of squared errors goes to sse_out (partial_gradient).
template <typename T>
void enqueue_gradient(const Data<T>& data, const int64_t* rows, int64_t start, int64_t batch, const Model<T>& model,
                      const StepBuffers<T>& b, T* grad_weight, T* grad_bias, double* loss_out, const DeviceState* state,
                      double weight_total = -1.0, T* sse_out = nullptr) {
    const int64_t cells = batch * model.outputs;
    const bool given = weight_total >= 0.0;
    if (data.sample_weight && given)
        given_weight_kernel<T><<<1, 1, 0, kStream>>>(weight_total, model.outputs, b.weight_sum, b.weighted_scale);
    else if (data.sample_weight)
        batch_weight_kernel<T><<<1, 1, 0, kStream>>>(data.sample_weight, rows, start, batch, model.outputs,
                                                     b.weight_sum, b.weighted_scale, state);
    const T scale = weighted_gradient_scale<T>(given ? weight_total : static_cast<double>(batch), model.outputs);
    forward_kernel<T><<<blocks_for(cells), kThreads, 0, kStream>>>(data, rows, start, batch, model, scale,
                                                                   b.weighted_scale, b.error, b.scaled_error, state);
    reduce_kernel<T><<<blocks_for(1 + model.outputs), kThreads, 0, kStream>>>(
        data.sample_weight, rows, start, batch, model.outputs, b.weight_sum, b.error, b.scaled_error, grad_bias,
        b.step_loss, loss_out, sse_out, state);
    const int64_t weights = model.outputs * model.features;
    if (weights > 0)
        weight_gradient_kernel<T><<<blocks_for(weights), kThreads, 0, kStream>>>(
            data, rows, start, batch, model.outputs, model.features, b.scaled_error, grad_weight, state);
}

template <typename T>
void copy_to_host(T* host, const T* device, const char* what) {
    check(cudaMemcpy(host, device, sizeof(T), cudaMemcpyDeviceToHost), what);
}

}  // namespace

template <typename T>
T loss(const Data<T>& data, const Model<T>& model) {
    if (data.rows == 0 || model.outputs == 0) return T(NAN);
    DeviceArray<T> squared(data.rows * model.outputs), value(1);
    enqueue_loss<T>(data, model, squared.get(), value.get(), nullptr, nullptr);
    T out;
    copy_to_host(&out, value.get(), "computing the loss on the device");
    return out;
}

template <typename T>
T gradient(const Data<T>& data, const Model<T>& model, T* grad_weight, T* grad_bias) {
    const int64_t cells = data.rows * model.outputs;
    if (cells == 0) return T(NAN);
    launch_check(cells);
    launch_check(model.outputs * model.features);
    DeviceArray<T> error(cells), scaled_error(cells), scalars(2);
    DeviceArray<double> weight_sum(1);
    DeviceArray<DeviceState> state(1);
    check(cudaMemsetAsync(state.get(), 0, sizeof(DeviceState), kStream), "cudaMemsetAsync");
    const StepBuffers<T> buffers{error.get(), scaled_error.get(), scalars.get(), weight_sum.get(), scalars.get() + 1};
    enqueue_gradient<T>(data, nullptr, 0, data.rows, model, buffers, grad_weight, model.bias ? grad_bias : nullptr,
                        nullptr, state.get());
    check_launch();
    T out;
    copy_to_host(&out, buffers.step_loss, "computing the gradient on the device");
    return out;
}

template <typename T>
T partial_gradient(const Data<T>& data, const Model<T>& model, double weight_total, T* grad_weight, T* grad_bias) {
    const int64_t cells = data.rows * model.outputs;
    if (cells == 0) return T(0);
    launch_check(cells);
    launch_check(model.outputs * model.features);
    DeviceArray<T> error(cells), scaled_error(cells), scalars(3);
    DeviceArray<double> weight_sum(1);
    DeviceArray<DeviceState> state(1);
    check(cudaMemsetAsync(state.get(), 0, sizeof(DeviceState), kStream), "cudaMemsetAsync");
    const StepBuffers<T> buffers{error.get(), scaled_error.get(), scalars.get(), weight_sum.get(), scalars.get() + 1};
    enqueue_gradient<T>(data, nullptr, 0, data.rows, model, buffers, grad_weight, model.bias ? grad_bias : nullptr,
                        nullptr, state.get(), weight_total, scalars.get() + 2);
    check_launch();
    T out;
    copy_to_host(&out, scalars.get() + 2, "computing the partial gradient on the device");
    return out;
}

template <typename T>
bool update(const Model<T>& model, const T* grad_weight, const T* grad_bias, T* buf_weight, T* buf_bias, double lr,
            const SgdHyper& h, bool momentum_initialized) {
    const int64_t params = model.outputs * model.features + (model.bias ? model.outputs : 0);
    if (params == 0) return true;
    launch_check(params);
    const SgdScalars<T> s =
        make_sgd_scalars<T>(lr, h.weight_decay, h.decay_bias, h.l2, h.momentum, h.dampening, h.nesterov, h.maximize);
    const bool use_momentum = h.momentum != 0.0;
    DeviceArray<T> step_loss(1);  // zero: a finite loss, so the update runs
    DeviceArray<DeviceState> state(1);
    DeviceState init{};
    init.momentum_ready = momentum_initialized ? 1 : 0;
    check(cudaMemsetAsync(step_loss.get(), 0, sizeof(T), kStream), "cudaMemsetAsync");
    check(cudaMemcpy(state.get(), &init, sizeof init, cudaMemcpyHostToDevice), "cudaMemcpy");
    update_kernel<T><<<blocks_for(params), kThreads, 0, kStream>>>(
        model, grad_weight, grad_bias, use_momentum ? buf_weight : nullptr,
        use_momentum && model.bias ? buf_bias : nullptr, s, step_loss.get(), state.get());
    check_launch();
    DeviceState final_state;
    check(cudaMemcpy(&final_state, state.get(), sizeof final_state, cudaMemcpyDeviceToHost), "updating on the device");
    return final_state.nonfinite == 0;
}

template <typename T>
TrainOutcome train(const TrainArgs<T>& a, const StopCheck& stop) {
    TrainOutcome out;
    const Model<T>& model = a.model;
    if (a.epochs == 0 || a.rows_per_epoch == 0) return out;
    const EpochSteps plan(a.rows_per_epoch, a.batch_size);
    const int64_t params = model.outputs * model.features + (model.bias ? model.outputs : 0);
    launch_check(plan.batch * model.outputs);
    launch_check(model.outputs * model.features);
    launch_check(params);
    if (a.valid_losses) launch_check(a.valid.rows * model.outputs);

    DeviceArray<T> error(plan.batch * model.outputs), scaled_error(plan.batch * model.outputs);
    DeviceArray<T> grad_weight(model.outputs * model.features), grad_bias(model.outputs), scalars(2);
    DeviceArray<double> weight_sum(1);
    DeviceArray<T> valid_squared(a.valid_losses ? a.valid.rows * model.outputs : 0);
    DeviceArray<DeviceState> state(1);
    MappedFlag device_stopped;
    DeviceState init{};
    init.momentum_ready = a.momentum_initialized ? 1 : 0;
    check(cudaMemcpy(state.get(), &init, sizeof init, cudaMemcpyHostToDevice), "cudaMemcpy");

    const bool use_momentum = a.hyper.momentum != 0.0;
    T* const buf_weight = use_momentum ? a.buf_weight : nullptr;
    T* const buf_bias = use_momentum && model.bias ? a.buf_bias : nullptr;
    T* const bias_grad = model.bias ? grad_bias.get() : nullptr;
    const StepBuffers<T> buffers{error.get(), scaled_error.get(), scalars.get(), weight_sum.get(), scalars.get() + 1};
    // Launches block once the device's queue is full, so the host never runs more than that
    // queue ahead of the device, and Ctrl-C is asked about as often as in the CPU loop.
    StopPoll poll(plan.batch, model.features, model.outputs);
    bool interrupted = false;

    for (int64_t e = 0; e < a.epochs && !interrupted && !device_stopped.raised(); ++e) {
        const SgdScalars<T> s =
            make_sgd_scalars<T>(a.lr[e], a.hyper.weight_decay, a.hyper.decay_bias, a.hyper.l2, a.hyper.momentum,
                                a.hyper.dampening, a.hyper.nesterov, a.hyper.maximize);
        const int64_t* epoch_rows = a.order ? a.order + e * plan.rows : nullptr;
        int64_t step = 0;
        for (; step < plan.steps; ++step) {
            if (device_stopped.raised()) break;
            if (poll.due() && stop()) {
                interrupted = true;
                break;
            }
            enqueue_gradient<T>(a.data, epoch_rows, plan.start(step), plan.size(step), model, buffers,
                                grad_weight.get(), bias_grad, a.losses + e * plan.steps + step, state.get());
            if (params > 0)
                update_kernel<T><<<blocks_for(params), kThreads, 0, kStream>>>(
                    model, grad_weight.get(), bias_grad, buf_weight, buf_bias, s, buffers.step_loss, state.get());
            finish_step_kernel<T>
                <<<1, 1, 0, kStream>>>(buffers.step_loss, a.target_loss, state.get(), device_stopped.device());
            check_launch();
        }
        if (step == plan.steps && a.valid_losses)
            enqueue_loss<T>(a.valid, model, valid_squared.get(), nullptr, a.valid_losses + e, state.get());
    }

    check(cudaStreamSynchronize(kStream), "training on the device");
    DeviceState final_state;
    check(cudaMemcpy(&final_state, state.get(), sizeof final_state, cudaMemcpyDeviceToHost), "cudaMemcpy");
    out.steps_done = final_state.steps_done;
    if (final_state.stop)
        out.status = static_cast<TrainStatus>(final_state.status);
    else if (interrupted)
        out.status = TrainStatus::interrupted;
    return out;
}

#define LINSGD_INSTANTIATE(T)                                                                            \
    template T loss<T>(const Data<T>&, const Model<T>&);                                                 \
    template T gradient<T>(const Data<T>&, const Model<T>&, T*, T*);                                     \
    template T partial_gradient<T>(const Data<T>&, const Model<T>&, double, T*, T*);                     \
    template bool update<T>(const Model<T>&, const T*, const T*, T*, T*, double, const SgdHyper&, bool); \
    template TrainOutcome train<T>(const TrainArgs<T>&, const StopCheck&);

LINSGD_INSTANTIATE(float)
LINSGD_INSTANTIATE(double)

#undef LINSGD_INSTANTIATE

}  // namespace cuda
}  // namespace linsgd
