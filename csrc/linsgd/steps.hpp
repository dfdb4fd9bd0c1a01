// The step bookkeeping of the epoch loops (cpu/sgd.cpp, cuda/sgd.cu) and of the bindings that
// size their outputs: how an epoch's rows split into batches, how often a loop asks whether to
// stop, and what the outcome of a step means. No pybind11 or CUDA headers.
#pragma once

#include <cmath>
#include <cstdint>

#include "linsgd/kernels.hpp"
#include "linsgd/math.hpp"

namespace linsgd {

// An epoch of `rows` rows cut into batches of `batch` rows (the batch size, at most the epoch's
// rows: a larger one is one batch per epoch, the same steps); the last batch may be ragged.
struct EpochSteps {
    int64_t rows;
    int64_t batch;
    int64_t steps;

    LINSGD_HD EpochSteps(int64_t rows_per_epoch, int64_t batch_size)
        : rows(rows_per_epoch),
          batch(batch_size < rows_per_epoch ? batch_size : rows_per_epoch),
          steps(batch > 0 ? rows / batch + (rows % batch != 0) : 0) {}

    LINSGD_HD int64_t start(int64_t step) const { return step * batch; }
    LINSGD_HD int64_t size(int64_t step) const {
        const int64_t left = rows - step * batch;
        return left < batch ? left : batch;
    }
    // Whether epochs * steps, the length of the loss array, fits in int64.
    LINSGD_HD bool total_fits(int64_t epochs) const { return steps == 0 || epochs <= INT64_MAX / steps; }
};

// Counts steps between two questions whether to stop (a pending Ctrl-C): about every few million
// multiply-adds, often enough for a prompt interrupt, rarely enough to cost nothing.
class StopPoll {
  public:
    StopPoll(int64_t batch, int64_t features, int64_t outputs) {
        constexpr int64_t kWork = int64_t(1) << 22;
        const int64_t work = batch * (features + 1) * (outputs + 1);
        every_ = work >= kWork ? 1 : kWork / work;
    }
    bool due() {
        if (++since_ < every_) return false;
        since_ = 0;
        return true;
    }

  private:
    int64_t every_ = 1;
    int64_t since_ = 0;
};

template <typename T>
LINSGD_HD inline bool is_finite(T v) {
    return v - v == T(0);
}

// The outcome of a step, in this order. A non-finite batch loss ends training before the
// update, which is not applied and not counted (loss_diverged). After the update, which counts,
// a non-finite parameter ends it, then a batch loss below target_loss (never when that is NaN);
// `completed` means go on.
template <typename T>
LINSGD_HD inline bool loss_diverged(T batch_loss) {
    return !is_finite(batch_loss);
}

template <typename T>
LINSGD_HD inline TrainStatus status_after_update(T batch_loss, bool parameters_finite, double target_loss) {
    if (!parameters_finite) return TrainStatus::diverged;
    if (static_cast<double>(batch_loss) < target_loss) return TrainStatus::target_loss;
    return TrainStatus::completed;
}

// The mean of an epoch's step losses as a training loop's history takes it: sum(l) / len(l) over
// the steps that ran (NaN marks one that did not; NaN when none did), the losses added in step
// order from 0 with one rounding each, which is Python's sum() of floats before 3.12 (later
// versions compensate, and the caller uses Python's own sum there).
LINSGD_HD inline double epoch_mean(const double* losses, int64_t steps) {
    double sum = 0.0;
    int64_t ran = 0;
    for (int64_t s = 0; s < steps; ++s) {
        const double v = losses[s];
        if (v != v) continue;
        sum += v;
        ++ran;
    }
    return ran ? sum / static_cast<double>(ran) : static_cast<double>(NAN);
}

}  // namespace linsgd
