// Host kernels for X in compressed sparse rows: the batch gradient reads only the stored
// entries (linsgd/sparse.hpp), the weight gradient stays dense (U x N) and the update is the
// dense one (cpu::update, the instruction-set variant dispatch.cpp chose), which plain SGD
// applies only where it can change a weight (touched_update). One thread, compiled
// once: a row's stored entries are gathered through its column indices, which no vector width
// speeds up much.
#include "linsgd/sparse.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "linsgd/kernels.hpp"
#include "linsgd/math.hpp"
#include "linsgd/steps.hpp"

namespace linsgd {
namespace cpu {
namespace {

template <typename T, typename I>
inline int64_t row_begin(const Csr<T, I>& x, int64_t row) {
    return static_cast<int64_t>(x.indptr[row]);
}

template <typename T, typename I>
inline int64_t row_end(const Csr<T, I>& x, int64_t row) {
    return static_cast<int64_t>(x.indptr[row + 1]);
}

// The prediction of one row for output u, as predict_one gives it on the dense row.
template <typename T, typename I>
inline T predict_row(const Csr<T, I>& x, int64_t row, const Model<T>& model, int64_t u) {
    const T p = sparse_dot<T, I>(x.values, x.indices, row_begin(x, row), row_end(x, row),
                                 model.weight + u * model.features, model.features);
    return model.bias ? p + model.bias[u] : p;
}

// The columns a batch's rows store, each once: the only weight-gradient entries that can be
// non-zero (the others are exactly +0: a sum of exact zeros that starts from +0).
struct Touched {
    std::vector<unsigned char> mark;
    std::vector<int64_t> cols;
};

// cpu/sgd.cpp's batch_gradient for CSR rows: the errors of every batch row, X^T e added row by
// row in batch order, then the bias gradient and the loss by torch's cascade sums over the
// stored errors (the dense kernel's batch_finish).
template <typename T, typename I>
T batch_gradient(const Csr<T, I>& x, const Data<T>& data, const int64_t* rows, int64_t batch, const Model<T>& model,
                 T* grad_weight, T* grad_bias, T* error, T* scaled_error, double weight_total, T* sse,
                 Touched* touched = nullptr) {
    const int64_t n = model.features;
    const int64_t u_count = model.outputs;
    const T* const weight = data.sample_weight;
    double weight_sum = static_cast<double>(batch);
    if (weight_total >= 0.0) {
        weight_sum = weight_total;
    } else if (weight) {
        weight_sum = 0.0;
        for (int64_t i = 0; i < batch; ++i) weight_sum += static_cast<double>(weight[rows[i]]);
    }
    const T scale = weighted_gradient_scale<T>(weight_sum, u_count);
    // With `touched`, grad_weight is already zero but in the columns listed there last time,
    // which the caller cleared; the columns stored now are listed.
    if (!touched && u_count * n > 0) std::memset(grad_weight, 0, sizeof(T) * static_cast<size_t>(u_count * n));
    for (int64_t i = 0; i < batch; ++i) {
        const int64_t row = rows[i];
        for (int64_t u = 0; u < u_count; ++u) {
            const T e = predict_row<T, I>(x, row, model, u) - data.y[row * u_count + u];
            error[i * u_count + u] = e;
            scaled_error[i * u_count + u] = weight ? (e * scale) * weight[row] : e * scale;
        }
        sparse_accumulate_row<T, I>(grad_weight, n, u_count, x.values, x.indices, row_begin(x, row), row_end(x, row),
                                    scaled_error + i * u_count);
        if (touched) {
            for (int64_t k = row_begin(x, row); k < row_end(x, row); ++k) {
                const int64_t j = static_cast<int64_t>(x.indices[k]);
                if (!touched->mark[static_cast<size_t>(j)]) {
                    touched->mark[static_cast<size_t>(j)] = 1;
                    touched->cols.push_back(j);
                }
            }
        }
    }
    if (grad_bias) {
        for (int64_t u = 0; u < u_count; ++u) grad_bias[u] = cascade_column_sum<T>(scaled_error, batch, u_count, u);
    }
    const T total =
        weight ? cascade_sum_contiguous<T>([&](int64_t k) { return (error[k] * error[k]) * weight[rows[k / u_count]]; },
                                           batch * u_count)
               : cascade_sum_contiguous<T>([&](int64_t k) { return error[k] * error[k]; }, batch * u_count);
    if (sse) *sse = total;
    return weighted_mean<T>(total, weight_sum, u_count);
}

// cpu/sgd.cpp's loss_into: the squared errors of every row, then one cascade sum.
template <typename T, typename I>
T loss_into(const Csr<T, I>& x, const Data<T>& data, const Model<T>& model, T* squares) {
    const int64_t u_count = model.outputs;
    if (x.rows == 0 || u_count == 0) return T(NAN);
    const T* const weight = data.sample_weight;
    for (int64_t r = 0; r < x.rows; ++r)
        for (int64_t u = 0; u < u_count; ++u) {
            const T e = predict_row<T, I>(x, r, model, u) - data.y[r * u_count + u];
            squares[r * u_count + u] = weight ? (e * e) * weight[r] : e * e;
        }
    const T total = cascade_sum_contiguous<T>([&](int64_t k) { return squares[k]; }, x.rows * u_count);
    double weight_sum = static_cast<double>(x.rows);
    if (weight) {
        weight_sum = 0.0;
        for (int64_t i = 0; i < x.rows; ++i) weight_sum += static_cast<double>(weight[i]);
        if (weight_sum == 0.0) return T(0);
    }
    return total / static_cast<T>(static_cast<double>(u_count) * weight_sum);
}

// One column's plain SGD update in every output, fma(g, -lr, w) as sgd_update gives it without
// decay or momentum, its gradient cleared; `check` collects w - w (0 while finite).
template <typename T>
inline void plain_column(T* weight, T* grad, int64_t n, int64_t u_count, int64_t j, T neg_lr, T& check) {
    for (int64_t u = 0; u < u_count; ++u) {
        const int64_t k = u * n + j;
        const T p = fused_multiply_add(grad[k], neg_lr, weight[k]);
        weight[k] = p;
        check = check + (p - p);
        grad[k] = T(0);
    }
}

// The touched columns' updates, in the order they were met. Returns whether all are finite.
template <typename T>
inline bool plain_columns(T* weight, T* grad, int64_t n, int64_t u_count, T neg_lr, Touched& touched) {
    T check = T(0);
    for (const int64_t j : touched.cols) {
        plain_column<T>(weight, grad, n, u_count, j, neg_lr, check);
        touched.mark[static_cast<size_t>(j)] = 0;
    }
    touched.cols.clear();
    return check == T(0);
}

// After a dense update in plain mode: the touched columns' gradient cleared, the list emptied.
template <typename T>
void clear_touched(T* grad, int64_t n, int64_t u_count, Touched& touched) {
    for (const int64_t j : touched.cols) {
        for (int64_t u = 0; u < u_count; ++u) grad[u * n + j] = T(0);
        touched.mark[static_cast<size_t>(j)] = 0;
    }
    touched.cols.clear();
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
// The same, compiled for CPUs with FMA: one instruction instead of a call into libm for each
// fused multiply-add (both round once: the same bits).
template <typename T>
__attribute__((target("fma"))) bool plain_columns_fma(T* weight, T* grad, int64_t n, int64_t u_count, T neg_lr,
                                                      Touched& touched) {
    return plain_columns<T>(weight, grad, n, u_count, neg_lr, touched);
}

inline bool cpu_has_fma() {
    static const bool has = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("fma") != 0;
    }();
    return has;
}
#endif

// The update of plain SGD (no weight decay or l2 on W, no momentum, not maximize) in the
// columns a batch stored, the weight gradient cleared behind it. Every other weight's gradient
// is +0, and fma(+0, -lr, p) is p (the sign of a zero p included): the dense update's bits.
template <typename T>
bool touched_update(const Model<T>& model, T* grad_weight, const T* grad_bias, const SgdScalars<T>& s,
                    Touched& touched) {
    const int64_t n = model.features;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    bool finite = cpu_has_fma() ? plain_columns_fma<T>(model.weight, grad_weight, n, model.outputs, s.neg_lr, touched)
                                : plain_columns<T>(model.weight, grad_weight, n, model.outputs, s.neg_lr, touched);
#else
    bool finite = plain_columns<T>(model.weight, grad_weight, n, model.outputs, s.neg_lr, touched);
#endif
    if (model.bias) {
        T check = T(0);
        for (int64_t u = 0; u < model.outputs; ++u) {
            const T p = sgd_update<T>(model.bias[u], grad_bias[u], nullptr, s, s.use_decay_bias, s.decay_bias, false);
            model.bias[u] = p;
            check = check + (p - p);
        }
        finite = finite && check == T(0);
    }
    return finite;
}

}  // namespace

template <typename T, typename I>
T sparse_loss(const Csr<T, I>& x, const Data<T>& data, const Model<T>& model) {
    std::vector<T> squares(static_cast<size_t>(x.rows * model.outputs));
    return loss_into<T, I>(x, data, model, squares.data());
}

template <typename T, typename I>
T sparse_gradient(const Csr<T, I>& x, const Data<T>& data, const Model<T>& model, double weight_total, T* grad_weight,
                  T* grad_bias, T* sse) {
    const size_t cells = static_cast<size_t>(x.rows * model.outputs);
    std::vector<T> error(cells), scaled_error(cells);
    std::vector<int64_t> rows(static_cast<size_t>(x.rows));
    for (int64_t i = 0; i < x.rows; ++i) rows[static_cast<size_t>(i)] = i;
    return batch_gradient<T, I>(x, data, rows.data(), x.rows, model, grad_weight, model.bias ? grad_bias : nullptr,
                                error.data(), scaled_error.data(), weight_total, sse);
}

// cpu/sgd.cpp's train, one thread, the batch gradient above and the dense update.
template <typename T, typename I>
TrainOutcome sparse_train(const SparseTrainArgs<T, I>& sa, const StopCheck& stop) {
    const TrainArgs<T>& a = sa.base;
    TrainOutcome out;
    const Model<T>& model = a.model;
    const EpochSteps plan(a.rows_per_epoch, a.batch_size);
    const size_t cells = static_cast<size_t>(plan.batch * model.outputs);
    std::vector<T> error(cells), scaled_error(cells);
    std::vector<T> grad_weight(static_cast<size_t>(model.outputs * model.features));
    std::vector<T> grad_bias(static_cast<size_t>(model.outputs));
    std::vector<T> valid_squares(
        a.valid_losses && sa.valid_sparse ? static_cast<size_t>(sa.valid_x.rows * model.outputs) : 0);
    std::unique_ptr<int64_t[]> identity(a.order ? nullptr : new int64_t[static_cast<size_t>(plan.rows)]);
    if (!a.order) {
        for (int64_t i = 0; i < plan.rows; ++i) identity[i] = i;
    }
    const bool use_momentum = a.hyper.momentum != 0.0;
    bool momentum_ready = a.momentum_initialized;
    // Work per step: the stored entries of an average row stand in for the features.
    const int64_t stored = static_cast<int64_t>(sa.x.indptr[sa.x.rows]);
    StopPoll poll(plan.batch, stored / (sa.x.rows > 0 ? sa.x.rows : 1) + model.features / 64, model.outputs);
    const Data<T> valid_targets{nullptr, a.valid.y, sa.valid_x.rows, nullptr};
    // Plain SGD changes only the weights of the columns a batch stores: only those are updated.
    // A non-finite weight (only a direct call that skips the check can bring one) makes every
    // dense prediction NaN (0 * inf): the first batch loss is NaN, and training ends there.
    if (plan.steps > 0 && a.epochs > 0 && !all_finite<T>(model.weight, model.outputs * model.features)) {
        a.losses[0] = static_cast<double>(NAN);
        out.status = TrainStatus::diverged;
        return out;
    }
    const bool plain = !use_momentum && a.hyper.weight_decay + 2.0 * a.hyper.l2 == 0.0 && !a.hyper.maximize;
    Touched touched;
    if (plain) {
        touched.mark.assign(static_cast<size_t>(model.features), 0);
        std::fill(grad_weight.begin(), grad_weight.end(), T(0));
    }

    for (int64_t e = 0; e < a.epochs; ++e) {
        const int64_t* epoch_rows = a.order ? a.order + e * plan.rows : identity.get();
        const SgdScalars<T> s =
            make_sgd_scalars<T>(a.lr[e], a.hyper.weight_decay, a.hyper.decay_bias, a.hyper.l2, a.hyper.momentum,
                                a.hyper.dampening, a.hyper.nesterov, a.hyper.maximize);
        for (int64_t step = 0; step < plan.steps; ++step) {
            if (poll.due() && stop()) {
                out.status = TrainStatus::interrupted;
                return out;
            }
            const int64_t batch = plan.size(step);
            T* gb = model.bias ? grad_bias.data() : nullptr;
            const T batch_loss =
                batch_gradient<T, I>(sa.x, a.data, epoch_rows + plan.start(step), batch, model, grad_weight.data(), gb,
                                     error.data(), scaled_error.data(), -1.0, nullptr, plain ? &touched : nullptr);
            a.losses[e * plan.steps + step] = static_cast<double>(batch_loss);
            if (loss_diverged(batch_loss)) {
                out.status = TrainStatus::diverged;
                return out;
            }
            // A touched column's update costs a random access to W, the dense update a stream
            // through all of it: measured even at about a quarter of the columns touched.
            bool finite;
            if (plain && static_cast<int64_t>(touched.cols.size()) * 4 <= model.features) {
                finite = touched_update<T>(model, grad_weight.data(), grad_bias.data(), s, touched);
            } else {
                finite = update<T>(model, grad_weight.data(), grad_bias.data(), a.buf_weight, a.buf_bias, a.lr[e],
                                   a.hyper, momentum_ready);
                if (plain) clear_touched<T>(grad_weight.data(), model.features, model.outputs, touched);
            }
            if (use_momentum) momentum_ready = true;
            ++out.steps_done;
            out.status = status_after_update(batch_loss, finite, a.target_loss);
            if (out.status != TrainStatus::completed) return out;
        }
        if (a.valid_losses)
            a.valid_losses[e] = static_cast<double>(
                sa.valid_sparse ? loss_into<T, I>(sa.valid_x, valid_targets, model, valid_squares.data())
                                : loss<T>(a.valid, model));
    }
    return out;
}

#define LINSGD_INSTANTIATE(T, I)                                                                             \
    template T sparse_loss<T, I>(const Csr<T, I>&, const Data<T>&, const Model<T>&);                         \
    template T sparse_gradient<T, I>(const Csr<T, I>&, const Data<T>&, const Model<T>&, double, T*, T*, T*); \
    template TrainOutcome sparse_train<T, I>(const SparseTrainArgs<T, I>&, const StopCheck&);

LINSGD_INSTANTIATE(float, int32_t)
LINSGD_INSTANTIATE(float, int64_t)
LINSGD_INSTANTIATE(double, int32_t)
LINSGD_INSTANTIATE(double, int64_t)

#undef LINSGD_INSTANTIATE

}  // namespace cpu
}  // namespace linsgd
