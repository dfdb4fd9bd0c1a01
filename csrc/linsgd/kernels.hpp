// The kernel entry points, declared once for every device; cpu/sgd.cpp (and cpu/finite.cpp) define
// them for the host, cuda/sgd.cu (same names, namespace linsgd::cuda) for the GPU.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace linsgd {

// A data set and a model, as raw row-major buffers. bias == nullptr: a model without one.
template <typename T>
struct Model {
    T* weight;  // (outputs, features)
    T* bias;    // (outputs,) or nullptr
    int64_t outputs;
    int64_t features;
};

template <typename T>
struct Data {
    const T* x;  // (rows, features)
    const T* y;  // (rows, outputs)
    int64_t rows;
    const T* sample_weight = nullptr;  // (rows,) or nullptr: every row weighs 1
};

struct SgdHyper {
    double weight_decay = 0.0;
    bool decay_bias = true;
    double l2 = 0.0;
    double momentum = 0.0;
    double dampening = 0.0;
    bool nesterov = false;
    bool maximize = false;
};

// data_not_finite: only with TrainArgs::find_bad_data; the binding restores the model and raises.
enum class TrainStatus : int { completed = 0, target_loss = 1, diverged = 2, interrupted = 3, data_not_finite = 4 };

struct TrainOutcome {
    int64_t steps_done = 0;
    TrainStatus status = TrainStatus::completed;
};

// Asked between chunks of work; returning true stops training (status interrupted).
struct StopCheck {
    bool (*fn)(void*) = nullptr;
    void* context = nullptr;
    bool operator()() const { return fn != nullptr && fn(context); }
};

template <typename T>
struct TrainArgs {
    Data<T> data;
    Model<T> model;
    const int64_t* order = nullptr;  // (epochs, rows_per_epoch) row indices, or nullptr: 0..rows-1
    int64_t rows_per_epoch = 0;
    int64_t batch_size = 1;
    const double* lr = nullptr;  // (epochs,)
    int64_t epochs = 0;
    SgdHyper hyper;
    T* buf_weight = nullptr;  // (outputs, features), used when momentum != 0
    T* buf_bias = nullptr;    // (outputs,)
    bool momentum_initialized = false;
    double* losses = nullptr;  // (epochs * steps_per_epoch)
    Data<T> valid{nullptr, nullptr, 0};
    double* valid_losses = nullptr;  // (epochs,) or nullptr
    double target_loss = NAN;
    // Host threads for large batches; results are the same for every count.
    int threads = 1;
    // Check the data for NaN and infinity inside the training pass (host only): a non-finite
    // datum makes its batch's (or the validation set's) loss non-finite, so only such a batch is
    // scanned, and whatever training did not read at the end; status data_not_finite if any.
    bool find_bad_data = false;
};

namespace cpu {

template <typename T>
T loss(const Data<T>& data, const Model<T>& model);

template <typename T>
T gradient(const Data<T>& data, const Model<T>& model, T* grad_weight, T* grad_bias);

// A part of a larger batch (these rows, of a batch that data-parallel training splits): the
// rows' share of that batch's gradient, scaled by 2 / (U * weight_total), where weight_total is
// the whole batch's row count (or weight sum); returns the rows' (weighted) sum of squared
// errors. Summed over the parts, and with weight_total = rows, it is gradient() bit for bit.
template <typename T>
T partial_gradient(const Data<T>& data, const Model<T>& model, double weight_total, T* grad_weight, T* grad_bias);

// The update half of a step: torch.optim.SGD's update of (W, b) and the momentum buffers by a
// given gradient at learning rate lr; false when a parameter became NaN or infinite.
template <typename T>
bool update(const Model<T>& model, const T* grad_weight, const T* grad_bias, T* buf_weight, T* buf_bias, double lr,
            const SgdHyper& hyper, bool momentum_initialized);

template <typename T>
TrainOutcome train(const TrainArgs<T>& args, const StopCheck& stop);

// Whether all n elements at p (contiguous, aligned) are finite: no NaN, no infinity. One pass,
// no allocation; a block-wise test stops early at a non-finite element. Host memory only.
template <typename T>
bool all_finite(const T* p, int64_t n);

// The instruction-set variant the host kernels run ("baseline", "avx2", "avx512"), the ones
// this CPU supports, and a way to force one (false when the CPU lacks it). Every variant gives
// the same bits.
const char* variant_name();
std::vector<std::string> supported_variants();
bool set_variant(const char* name);

}  // namespace cpu

// The same entry points on a CUDA device (cuda/sgd.cu; pointers are device pointers).
namespace cuda {

template <typename T>
T loss(const Data<T>& data, const Model<T>& model);

template <typename T>
T gradient(const Data<T>& data, const Model<T>& model, T* grad_weight, T* grad_bias);

template <typename T>
T partial_gradient(const Data<T>& data, const Model<T>& model, double weight_total, T* grad_weight, T* grad_bias);

template <typename T>
bool update(const Model<T>& model, const T* grad_weight, const T* grad_bias, T* buf_weight, T* buf_bias, double lr,
            const SgdHyper& hyper, bool momentum_initialized);

template <typename T>
TrainOutcome train(const TrainArgs<T>& args, const StopCheck& stop);

}  // namespace cuda

}  // namespace linsgd
