// Host kernels: the batch gradient, the SGD step and whole epochs, all in one compiled loop.
//
// This file is compiled once per instruction-set variant (CMake defines LINSGD_CPU_VARIANT as
// baseline, avx2 or avx512 and passes that variant's -m flags); dispatch.cpp picks one at run
// time. The source fixes every rounding (no contraction, explicit fma), so all variants give
// the same bits.
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "cpu/simd.hpp"
#include "cpu/variants.hpp"
#include "cpu/worker_pool.hpp"
#include "linsgd/math.hpp"
#include "linsgd/steps.hpp"

#ifndef LINSGD_CPU_VARIANT
#error "LINSGD_CPU_VARIANT must name the instruction-set variant being compiled"
#endif

namespace linsgd {
namespace cpu {
namespace LINSGD_CPU_VARIANT {
namespace {

// How far ahead the rows are prefetched, in bytes: rows read in order need only a short lead
// (the hardware streams them, but falls behind while the core computes); rows gathered through
// a shuffled index need time for a full trip to memory.
constexpr int64_t kPrefetchBytesInOrder = 2048;
constexpr int64_t kPrefetchBytesGathered = 4096;
constexpr int64_t kLongBlockBytes = 8192;
// Rows per chunk of the fused pass: about this much of X, so that a chunk stays in L1.
constexpr int64_t kChunkBytes = 16384;
// A multiple of four rows, about kChunkBytes of X.
template <typename T>
inline int64_t chunk_rows(int64_t n) {
    const int64_t row_bytes = n * static_cast<int64_t>(sizeof(T)) + 1;
    const int64_t rows = kChunkBytes / row_bytes / 4 * 4;
    return rows < 4 ? 4 : rows;
}

// How many rows ahead to prefetch: at least the next block, and about `bytes` ahead.
template <typename T>
inline int64_t prefetch_ahead(int64_t n, int64_t block, int64_t bytes) {
    const int64_t row_bytes = n * static_cast<int64_t>(sizeof(T)) + 1;
    const int64_t rows = (bytes + row_bytes - 1) / row_bytes;
    return rows <= block ? block : (rows + block - 1) / block * block;
}

// Asks for a row's cache lines ahead of use. Rows gathered through a shuffled index defeat the
// hardware prefetcher altogether; rows read in order it streams, but not far enough ahead to
// keep the memory bus busy while the core computes.
template <typename T>
inline void prefetch_row(const T* row, int64_t n) {
#if defined(__GNUC__)
    const char* p = reinterpret_cast<const char*>(row);
    const int64_t bytes = n * static_cast<int64_t>(sizeof(T));
    for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off, 0, 3);
#else
    (void)row;
    (void)n;
#endif
}

// The weights of a batch's rows, summed in double: exact for integer weights, so unit weights
// give the batch size itself and every result equals the unweighted one bit for bit.
template <typename T>
double sum_weights(const T* weight, const int64_t* rows, int64_t batch) {
    double total = 0.0;
    for (int64_t i = 0; i < batch; ++i) total += static_cast<double>(weight[rows[i]]);
    return total;
}

// The bias gradient and the batch loss from the stored errors, by torch's cascade sums; the
// (weighted) sum of squared errors itself to *sse when asked.
template <typename T>
T batch_finish(const Data<T>& data, const int64_t* rows, int64_t batch, int64_t u_count, double weight_sum,
               T* grad_bias, const T* error, const T* scaled_error, T* sse) {
    const T* const weight = data.sample_weight;
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

// The errors of batch rows [begin, end): what the fused pass computes, without X^T e.
template <typename T>
void batch_errors(const Data<T>& data, const int64_t* rows, int64_t rows_readable, bool gathered, int64_t begin,
                  int64_t end, const Model<T>& model, T scale, T* error, T* scaled_error) {
    const int64_t n = model.features;
    const int64_t u_count = model.outputs;
    const T* const weight = data.sample_weight;
    // Rows per block: as many as simd::dot_rows keeps in registers at once for long rows.
    constexpr int kBlock = 4;
    const int64_t ahead = prefetch_ahead<T>(n, kBlock, gathered ? kPrefetchBytesGathered : kPrefetchBytesInOrder);
    // Long rows read in order keep the hardware prefetcher ahead by themselves.
    const int64_t prefetch_end =
        gathered || n * static_cast<int64_t>(sizeof(T)) * kBlock <= kLongBlockBytes ? rows_readable : 0;
    int64_t i = begin;
    for (; i + kBlock <= end; i += kBlock) {
        for (int64_t k = i + ahead; k < i + ahead + kBlock && k < prefetch_end; ++k)
            prefetch_row(data.x + rows[k] * n, n);
        const T* xs[kBlock];
        for (int r = 0; r < kBlock; ++r) xs[r] = data.x + rows[i + r] * n;
        for (int64_t u = 0; u < u_count; ++u) {
            T p[kBlock];
            simd::dot_rows<T, kBlock>(xs, model.weight + u * n, n, p);
            for (int r = 0; r < kBlock; ++r) {
                const int64_t row = rows[i + r];
                const T pred = model.bias ? p[r] + model.bias[u] : p[r];
                const T e = pred - data.y[row * u_count + u];
                error[(i + r) * u_count + u] = e;
                scaled_error[(i + r) * u_count + u] = weight ? (e * scale) * weight[row] : e * scale;
            }
        }
    }
    for (; i < end; ++i) {
        const int64_t row = rows[i];
        for (int64_t u = 0; u < u_count; ++u) {
            const T e =
                predict_one<T>(data.x + row * n, model.weight + u * n, n, model.bias ? model.bias + u : nullptr) -
                data.y[row * u_count + u];
            error[i * u_count + u] = e;
            scaled_error[i * u_count + u] = weight ? (e * scale) * weight[row] : e * scale;
        }
    }
}

// X^T e of rows [begin, end) added to columns [j_begin, j_end) of the weight gradient, each
// element taking the rows' terms in order. Two loop orders, the same bits: short rows, many to a
// chunk, keep a block of gradient columns in registers across all the chunk's rows; long rows
// (few to a chunk) update the gradient four rows at a time, one output after the other.
template <typename T>
void chunk_weight_gradient(const Data<T>& data, const int64_t* rows, int64_t begin, int64_t end, const Model<T>& model,
                           const T* scaled_error, T* grad_weight, int64_t j_begin, int64_t j_end) {
    const int64_t n = model.features;
    const int64_t u_count = model.outputs;
    if (end - begin >= 16) {
        simd::accumulate_weight_gradient<T>(grad_weight, n, u_count, data.x, rows + begin,
                                            scaled_error + begin * u_count, end - begin, j_begin, j_end);
        return;
    }
    const int64_t width = j_end - j_begin;
    for (int64_t u = 0; u < u_count; ++u) {
        T* gw = grad_weight + u * n + j_begin;
        int64_t i = begin;
        for (; i + 4 <= end; i += 4) {
            const T* xs[4];
            T g[4];
            for (int r = 0; r < 4; ++r) {
                xs[r] = data.x + rows[i + r] * n + j_begin;
                g[r] = scaled_error[(i + r) * u_count + u];
            }
            simd::accumulate_rows<T, 4>(gw, xs, g, width);
        }
        for (; i < end; ++i) {
            const T* xs[1] = {data.x + rows[i] * n + j_begin};
            const T g[1] = {scaled_error[i * u_count + u]};
            simd::accumulate_rows<T, 1>(gw, xs, g, width);
        }
    }
}

// Columns [j_begin, j_end) of the weight gradient, each summed over the batch rows in order:
// the same sequence of roundings as the fused pass, whichever thread owns the columns.
template <typename T>
void batch_weight_gradient(const Data<T>& data, const int64_t* rows, int64_t batch, const Model<T>& model,
                           const T* scaled_error, T* grad_weight, int64_t j_begin, int64_t j_end) {
    const int64_t n = model.features;
    const int64_t u_count = model.outputs;
    for (int64_t u = 0; u < u_count; ++u)
        for (int64_t j = j_begin; j < j_end; ++j) grad_weight[u * n + j] = T(0);
    const int64_t chunk = chunk_rows<T>(n);
    for (int64_t begin = 0; begin < batch; begin += chunk) {
        const int64_t end = batch - begin < chunk ? batch : begin + chunk;
        chunk_weight_gradient<T>(data, rows, begin, end, model, scaled_error, grad_weight, j_begin, j_end);
    }
}

// The batch gradient on several threads: rows split for the errors, then feature columns split
// for X^T e. Each value is computed in the single-threaded order, so the bits do not depend on
// the thread count.
template <typename T>
T batch_gradient_threaded(WorkerPool& pool, const Data<T>& data, const int64_t* rows, bool gathered, int64_t batch,
                          const Model<T>& model, T* grad_weight, T* grad_bias, T* error, T* scaled_error) {
    const T* const weight = data.sample_weight;
    const double weight_sum = weight ? sum_weights(weight, rows, batch) : static_cast<double>(batch);
    const T scale = weighted_gradient_scale<T>(weight_sum, model.outputs);
    auto errors = [&](int t, int count) {
        int64_t begin, end;
        thread_share(batch, t, count, begin, end);
        batch_errors<T>(data, rows, batch, gathered, begin, end, model, scale, error, scaled_error);
    };
    pool.run(errors);
    // Columns go out in whole cache lines so that no two threads write the same line.
    const int64_t per_line = 64 / static_cast<int64_t>(sizeof(T));
    const int64_t lines = (model.features + per_line - 1) / per_line;
    auto columns = [&](int t, int count) {
        int64_t begin, end;
        thread_share(lines, t, count, begin, end);
        const int64_t j_end = end * per_line < model.features ? end * per_line : model.features;
        batch_weight_gradient<T>(data, rows, batch, model, scaled_error, grad_weight, begin * per_line, j_end);
    };
    pool.run(columns);
    return batch_finish<T>(data, rows, batch, model.outputs, weight_sum, grad_bias, error, scaled_error, nullptr);
}

// Forward, error and X^T e for one batch in a single pass over its rows, so each row is read
// while it is in cache. The weight gradient is summed sequentially over the batch, the order
// torch's GEMM uses for it on small problems; the bias gradient and the loss take torch's
// cascade sums over the stored errors. weight_total >= 0 normalises by a larger batch than these
// rows (its row count, or its weight sum), of which they are a part: the rows' share of that
// batch's gradient, their sum of squared errors to *sse (partial_gradient).
template <typename T>
T batch_gradient(const Data<T>& data, const int64_t* rows, int64_t rows_readable, bool gathered, int64_t batch,
                 const Model<T>& model, T* grad_weight, T* grad_bias, T* error, T* scaled_error,
                 double weight_total = -1.0, T* sse = nullptr) {
    const int64_t n = model.features;
    const int64_t u_count = model.outputs;
    const T* const weight = data.sample_weight;
    const double weight_sum = weight_total >= 0.0 ? weight_total
                              : weight            ? sum_weights(weight, rows, batch)
                                                  : static_cast<double>(batch);
    const T scale = weighted_gradient_scale<T>(weight_sum, u_count);
    if (u_count * n > 0) std::memset(grad_weight, 0, sizeof(T) * static_cast<size_t>(u_count * n));
    // A chunk of rows at a time, small enough to stay in L1: first every row's errors (the dot
    // products of different rows are independent, so many are in flight while the chunk streams
    // in), then the chunk's terms added to X^T e from cache. Each weight-gradient element still
    // takes the rows' terms in batch order.
    const int64_t chunk = chunk_rows<T>(n);
    for (int64_t begin = 0; begin < batch; begin += chunk) {
        const int64_t end = batch - begin < chunk ? batch : begin + chunk;
        batch_errors<T>(data, rows, rows_readable, gathered, begin, end, model, scale, error, scaled_error);
        chunk_weight_gradient<T>(data, rows, begin, end, model, scaled_error, grad_weight, 0, n);
    }
    return batch_finish<T>(data, rows, batch, u_count, weight_sum, grad_bias, error, scaled_error, sse);
}

// Applies one update to every parameter; returns false when one became NaN or infinite.
template <typename T>
bool apply_update(const Model<T>& model, const T* grad_weight, const T* grad_bias, T* buf_weight, T* buf_bias,
                  const SgdScalars<T>& s, bool first_momentum_step) {
    const int64_t count = model.outputs * model.features;
    T check = T(0);
    for (int64_t k = 0; k < count; ++k) {
        const T p = sgd_update<T>(model.weight[k], grad_weight[k], buf_weight ? buf_weight + k : nullptr, s,
                                  s.use_decay_weight, s.decay_weight, first_momentum_step);
        model.weight[k] = p;
        check = check + (p - p);
    }
    if (model.bias) {
        for (int64_t u = 0; u < model.outputs; ++u) {
            const T p = sgd_update<T>(model.bias[u], grad_bias[u], buf_bias ? buf_bias + u : nullptr, s,
                                      s.use_decay_bias, s.decay_bias, first_momentum_step);
            model.bias[u] = p;
            check = check + (p - p);
        }
    }
    return check == T(0);
}

// The squared errors of rows [begin, end) for one output when the feature count NF is a
// small compile-time constant: a vector holds one feature of several consecutive rows, so the
// sequential dot product of every row runs lane by lane.
template <typename T, int NF>
void squared_errors_small(const Data<T>& data, const Model<T>& model, int64_t u, int64_t begin, int64_t end,
                          T* __restrict squares) {
    using simd::Vec;
    constexpr int VL = simd::kLanes<T>;
    const int64_t u_count = model.outputs;
    const T* const weight = data.sample_weight;
    const T* const x = data.x;
    T w[NF];
    Vec<T> wv[NF];
    for (int j = 0; j < NF; ++j) {
        w[j] = model.weight[u * NF + j];
        wv[j] = simd::splat<T>(w[j]);
    }
    const bool has_bias = model.bias != nullptr;
    const T b = has_bias ? model.bias[u] : T(0);
    const Vec<T> bv = simd::splat<T>(b);
    int64_t r = begin;
    for (; r + VL <= end; r += VL) {
        Vec<T> col, y;
        for (int k = 0; k < VL; ++k) col[k] = x[(r + k) * NF];
        Vec<T> acc = col * wv[0];
        for (int j = 1; j < NF; ++j) {
            for (int k = 0; k < VL; ++k) col[k] = x[(r + k) * NF + j];
            acc = acc + col * wv[j];
        }
        for (int k = 0; k < VL; ++k) y[k] = data.y[(r + k) * u_count + u];
        const Vec<T> e = (has_bias ? acc + bv : acc) - y;
        Vec<T> sq = e * e;
        if (weight) {
            Vec<T> wr;
            for (int k = 0; k < VL; ++k) wr[k] = weight[r + k];
            sq = sq * wr;
        }
        if (u_count == 1)
            simd::store(squares + r, sq);
        else
            for (int k = 0; k < VL; ++k) squares[(r + k) * u_count + u] = sq[k];
    }
    for (; r < end; ++r) {
        const T* xs[1] = {x + r * NF};
        T p[1];
        simd::dot_sequential_rows_fixed<T, 1, NF>(xs, w, p);
        const T e = (has_bias ? p[0] + b : p[0]) - data.y[r * u_count + u];
        squares[r * u_count + u] = weight ? (e * e) * weight[r] : e * e;
    }
}

#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define LINSGD_HAVE_SHUFFLEVECTOR 1
#endif
#endif

#if defined(LINSGD_HAVE_SHUFFLEVECTOR)
// Four features and one output (the seed notebooks' shape): four rows are loaded as four
// vectors and transposed in registers, so that each feature's products of the four rows are
// one multiply and the sequential dot products run lane by lane.
template <typename T>
void squared_errors_four_features(const Data<T>& data, const T* w, const T* bias, int64_t begin, int64_t end,
                                  T* __restrict squares) {
    typedef T Quad __attribute__((vector_size(4 * sizeof(T))));
    const T* const x = data.x;
    const T* const weight = data.sample_weight;
    Quad wv[4];
    for (int j = 0; j < 4; ++j) wv[j] = Quad{w[j], w[j], w[j], w[j]};
    const T b = bias ? *bias : T(0);
    const Quad bv = Quad{b, b, b, b};
    int64_t r = begin;
    for (; r + 4 <= end; r += 4) {
        Quad r0, r1, r2, r3, y;
        std::memcpy(&r0, x + r * 4, sizeof(Quad));
        std::memcpy(&r1, x + r * 4 + 4, sizeof(Quad));
        std::memcpy(&r2, x + r * 4 + 8, sizeof(Quad));
        std::memcpy(&r3, x + r * 4 + 12, sizeof(Quad));
        std::memcpy(&y, data.y + r, sizeof(Quad));
        const Quad t0 = __builtin_shufflevector(r0, r1, 0, 4, 2, 6);
        const Quad t1 = __builtin_shufflevector(r0, r1, 1, 5, 3, 7);
        const Quad t2 = __builtin_shufflevector(r2, r3, 0, 4, 2, 6);
        const Quad t3 = __builtin_shufflevector(r2, r3, 1, 5, 3, 7);
        const Quad c0 = __builtin_shufflevector(t0, t2, 0, 1, 4, 5);
        const Quad c1 = __builtin_shufflevector(t1, t3, 0, 1, 4, 5);
        const Quad c2 = __builtin_shufflevector(t0, t2, 2, 3, 6, 7);
        const Quad c3 = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
        Quad acc = c0 * wv[0];
        acc = acc + c1 * wv[1];
        acc = acc + c2 * wv[2];
        acc = acc + c3 * wv[3];
        const Quad e = (bias ? acc + bv : acc) - y;
        Quad sq = e * e;
        if (weight) {
            Quad wr;
            std::memcpy(&wr, weight + r, sizeof(Quad));
            sq = sq * wr;
        }
        std::memcpy(squares + r, &sq, sizeof(Quad));
    }
    for (; r < end; ++r) {
        const T* xr = x + r * 4;
        T acc = xr[0] * w[0];
        acc = acc + xr[1] * w[1];
        acc = acc + xr[2] * w[2];
        acc = acc + xr[3] * w[3];
        const T e = (bias ? acc + b : acc) - data.y[r];
        squares[r] = weight ? (e * e) * weight[r] : e * e;
    }
}
#endif

// The full-set MSE, with the squared errors written to `squares` (rows * outputs) first so
// that the forward pass and torch's cascade sum each run as a tight loop.
template <typename T>
void squared_errors(const Data<T>& data, const Model<T>& model, int64_t begin, int64_t end, T* squares) {
    const int64_t n = model.features;
    const int64_t u_count = model.outputs;
#if defined(LINSGD_HAVE_SHUFFLEVECTOR)
    if (n == 4 && u_count == 1 && DotLanes<T>::value > 4) {
        squared_errors_four_features<T>(data, model.weight, model.bias, begin, end, squares);
        return;
    }
#endif
    if (n >= 1 && n <= 8 && n < DotLanes<T>::value) {
        for (int64_t u = 0; u < u_count; ++u) {
            switch (n) {
                case 1:
                    squared_errors_small<T, 1>(data, model, u, begin, end, squares);
                    break;
                case 2:
                    squared_errors_small<T, 2>(data, model, u, begin, end, squares);
                    break;
                case 3:
                    squared_errors_small<T, 3>(data, model, u, begin, end, squares);
                    break;
                case 4:
                    squared_errors_small<T, 4>(data, model, u, begin, end, squares);
                    break;
                case 5:
                    squared_errors_small<T, 5>(data, model, u, begin, end, squares);
                    break;
                case 6:
                    squared_errors_small<T, 6>(data, model, u, begin, end, squares);
                    break;
                case 7:
                    squared_errors_small<T, 7>(data, model, u, begin, end, squares);
                    break;
                default:
                    squared_errors_small<T, 8>(data, model, u, begin, end, squares);
                    break;
            }
        }
        return;
    }
    const T* const weight = data.sample_weight;
    constexpr int kRows = 4;
    int64_t r = begin;
    for (; r + kRows <= end; r += kRows) {
        const T* xs[kRows];
        for (int k = 0; k < kRows; ++k) xs[k] = data.x + (r + k) * n;
        for (int64_t k = r + 3 * kRows; k < r + 4 * kRows && k < end; ++k) prefetch_row(data.x + k * n, n);
        for (int64_t u = 0; u < u_count; ++u) {
            T p[kRows];
            simd::dot_rows<T, kRows>(xs, model.weight + u * n, n, p);
            for (int k = 0; k < kRows; ++k) {
                const T pred = model.bias ? p[k] + model.bias[u] : p[k];
                const T e = pred - data.y[(r + k) * u_count + u];
                squares[(r + k) * u_count + u] = weight ? (e * e) * weight[r + k] : e * e;
            }
        }
    }
    for (; r < end; ++r) {
        const T* xs[1] = {data.x + r * n};
        for (int64_t u = 0; u < u_count; ++u) {
            T p[1];
            simd::dot_rows<T, 1>(xs, model.weight + u * n, n, p);
            const T e = (model.bias ? p[0] + model.bias[u] : p[0]) - data.y[r * u_count + u];
            squares[r * u_count + u] = weight ? (e * e) * weight[r] : e * e;
        }
    }
}

template <typename T>
T loss_into(WorkerPool& pool, const Data<T>& data, const Model<T>& model, T* squares) {
    const int64_t u_count = model.outputs;
    if (data.rows == 0 || u_count == 0) return T(NAN);
    const T* const weight = data.sample_weight;
    auto rows = [&](int t, int count) {
        int64_t begin, end;
        thread_share(data.rows, t, count, begin, end);
        squared_errors<T>(data, model, begin, end, squares);
    };
    pool.run(rows);
    const T total = cascade_sum_contiguous<T>([&](int64_t k) { return squares[k]; }, data.rows * u_count);
    double weight_sum = static_cast<double>(data.rows);
    if (weight) {
        weight_sum = 0.0;
        for (int64_t i = 0; i < data.rows; ++i) weight_sum += static_cast<double>(weight[i]);
        if (weight_sum == 0.0) return T(0);
    }
    return total / static_cast<T>(static_cast<double>(u_count) * weight_sum);
}

}  // namespace

template <typename T>
T loss(const Data<T>& data, const Model<T>& model) {
    std::vector<T> squares(static_cast<size_t>(data.rows * model.outputs));
    WorkerPool single(1);
    return loss_into<T>(single, data, model, squares.data());
}

template <typename T>
T gradient(const Data<T>& data, const Model<T>& model, T* grad_weight, T* grad_bias) {
    const size_t cells = static_cast<size_t>(data.rows * model.outputs);
    std::vector<T> error(cells), scaled_error(cells);
    std::vector<int64_t> rows(static_cast<size_t>(data.rows));
    for (int64_t i = 0; i < data.rows; ++i) rows[static_cast<size_t>(i)] = i;
    return batch_gradient<T>(data, rows.data(), data.rows, false, data.rows, model, grad_weight,
                             model.bias ? grad_bias : nullptr, error.data(), scaled_error.data());
}

template <typename T>
T partial_gradient(const Data<T>& data, const Model<T>& model, double weight_total, T* grad_weight, T* grad_bias) {
    const size_t cells = static_cast<size_t>(data.rows * model.outputs);
    std::vector<T> error(cells), scaled_error(cells);
    std::vector<int64_t> rows(static_cast<size_t>(data.rows));
    for (int64_t i = 0; i < data.rows; ++i) rows[static_cast<size_t>(i)] = i;
    T sse = T(0);
    batch_gradient<T>(data, rows.data(), data.rows, false, data.rows, model, grad_weight,
                      model.bias ? grad_bias : nullptr, error.data(), scaled_error.data(), weight_total, &sse);
    return sse;
}

template <typename T>
bool update(const Model<T>& model, const T* grad_weight, const T* grad_bias, T* buf_weight, T* buf_bias, double lr,
            const SgdHyper& h, bool momentum_initialized) {
    const SgdScalars<T> s =
        make_sgd_scalars<T>(lr, h.weight_decay, h.decay_bias, h.l2, h.momentum, h.dampening, h.nesterov, h.maximize);
    const bool use_momentum = h.momentum != 0.0;
    return apply_update<T>(model, grad_weight, grad_bias, use_momentum ? buf_weight : nullptr,
                           use_momentum ? buf_bias : nullptr, s, use_momentum && !momentum_initialized);
}

namespace {

// What the training pass has shown finite so far (TrainArgs::find_bad_data): a batch's rows
// when its loss is finite, all rows once an epoch that reads each of them has run, the
// validation set once its loss is finite.
template <typename T>
struct DataCheck {
    bool on = false;
    bool train_shown = false;
    bool valid_shown = false;

    // Rows [0, rows) of X and Y, through `rows` (contiguous when not gathered).
    static bool rows_finite(const Data<T>& d, const int64_t* rows, int64_t count, bool gathered, int64_t n,
                            int64_t u_count) {
        if (!gathered)
            return all_finite<T>(d.x + rows[0] * n, count * n) &&
                   all_finite<T>(d.y + rows[0] * u_count, count * u_count);
        for (int64_t i = 0; i < count; ++i)
            if (!all_finite<T>(d.x + rows[i] * n, n) || !all_finite<T>(d.y + rows[i] * u_count, u_count)) return false;
        return true;
    }
    // A batch with a non-finite loss (or, with row weights, a zero loss: an all-zero weight
    // sum makes the loss 0 whatever the rows hold) is scanned; any other batch is finite.
    bool batch_bad(const Data<T>& d, const int64_t* rows, int64_t count, bool gathered, const Model<T>& m,
                   T batch_loss) const {
        if (!on || train_shown) return false;
        if (!loss_diverged(batch_loss) && !(d.sample_weight && batch_loss == T(0))) return false;
        return !rows_finite(d, rows, count, gathered, m.features, m.outputs);
    }
    // After each epoch's validation loss.
    bool valid_bad(const Data<T>& v, const Model<T>& m, T loss) {
        if (!on || valid_shown) return false;
        if (!is_finite(loss) && !(all_finite<T>(v.x, v.rows * m.features) && all_finite<T>(v.y, v.rows * m.outputs)))
            return true;
        valid_shown = true;
        return false;
    }
    // Whether an epoch's order reads every row of X at least once.
    static bool covers(const int64_t* order, int64_t count, int64_t rows) {
        if (!order) return count == rows;
        const int64_t words = (rows + 63) / 64;
        std::unique_ptr<uint64_t[]> seen(new uint64_t[static_cast<size_t>(words)]());
        for (int64_t i = 0; i < count; ++i) seen[order[i] >> 6] |= uint64_t(1) << (order[i] & 63);
        for (int64_t w = 0; w + 1 < words; ++w)
            if (~seen[w] != 0) return false;
        const int64_t tail = rows - (words - 1) * 64;
        const uint64_t full = tail == 64 ? ~uint64_t(0) : (uint64_t(1) << tail) - 1;
        return seen[words - 1] == full;
    }
    // At the end: whatever training did not show finite, scanned whole.
    bool rest_bad(const TrainArgs<T>& a) const {
        const Model<T>& m = a.model;
        if (!train_shown &&
            !(all_finite<T>(a.data.x, a.data.rows * m.features) && all_finite<T>(a.data.y, a.data.rows * m.outputs)))
            return true;
        return a.valid_losses && !valid_shown &&
               !(all_finite<T>(a.valid.x, a.valid.rows * m.features) &&
                 all_finite<T>(a.valid.y, a.valid.rows * m.outputs));
    }
};

template <typename T>
TrainOutcome train_epochs(const TrainArgs<T>& a, const StopCheck& stop, DataCheck<T>& check) {
    TrainOutcome out;
    const Model<T>& model = a.model;
    const EpochSteps plan(a.rows_per_epoch, a.batch_size);
    const size_t cells = static_cast<size_t>(plan.batch * model.outputs);
    std::vector<T> error(cells), scaled_error(cells);
    std::vector<T> grad_weight(static_cast<size_t>(model.outputs * model.features));
    std::vector<T> grad_bias(static_cast<size_t>(model.outputs));
    std::vector<T> valid_squares(a.valid_losses ? static_cast<size_t>(a.valid.rows * model.outputs) : 0);
    // A plain array, not a resized std::vector: std::vector<int64_t>'s out-of-line members would
    // be one weak definition shared by every instruction-set variant.
    std::unique_ptr<int64_t[]> identity(a.order ? nullptr : new int64_t[static_cast<size_t>(plan.rows)]);
    if (!a.order) {
        for (int64_t i = 0; i < plan.rows; ++i) identity[i] = i;
    }
    const bool gathered = a.order != nullptr;
    // Threads pay off only when a step has enough work to hide two hand-offs.
    const int threads =
        a.threads > 1 && plan.batch * model.features * model.outputs >= (int64_t(1) << 14) ? a.threads : 1;
    WorkerPool pool(threads);
    const bool use_momentum = a.hyper.momentum != 0.0;
    bool momentum_ready = a.momentum_initialized;
    StopPoll poll(plan.batch, model.features, model.outputs);

    for (int64_t e = 0; e < a.epochs; ++e) {
        const SgdScalars<T> s =
            make_sgd_scalars<T>(a.lr[e], a.hyper.weight_decay, a.hyper.decay_bias, a.hyper.l2, a.hyper.momentum,
                                a.hyper.dampening, a.hyper.nesterov, a.hyper.maximize);
        const int64_t* epoch_rows = a.order ? a.order + e * plan.rows : identity.get();
        for (int64_t step = 0; step < plan.steps; ++step) {
            if (poll.due() && stop()) {
                out.status = TrainStatus::interrupted;
                return out;
            }
            const int64_t start = plan.start(step);
            const int64_t batch = plan.size(step);
            const int64_t* batch_rows = epoch_rows + start;
            T* gb = model.bias ? grad_bias.data() : nullptr;
            const T batch_loss =
                pool.size() > 1 ? batch_gradient_threaded<T>(pool, a.data, batch_rows, gathered, batch, model,
                                                             grad_weight.data(), gb, error.data(), scaled_error.data())
                                : batch_gradient<T>(a.data, batch_rows, plan.rows - start, gathered, batch, model,
                                                    grad_weight.data(), gb, error.data(), scaled_error.data());
            if (check.batch_bad(a.data, batch_rows, batch, gathered, model, batch_loss)) {
                out.status = TrainStatus::data_not_finite;
                return out;
            }
            a.losses[e * plan.steps + step] = static_cast<double>(batch_loss);
            if (loss_diverged(batch_loss)) {
                out.status = TrainStatus::diverged;
                return out;
            }
            const bool finite =
                apply_update<T>(model, grad_weight.data(), grad_bias.data(), use_momentum ? a.buf_weight : nullptr,
                                use_momentum ? a.buf_bias : nullptr, s, use_momentum && !momentum_ready);
            if (use_momentum) momentum_ready = true;
            ++out.steps_done;
            out.status = status_after_update(batch_loss, finite, a.target_loss);
            if (out.status != TrainStatus::completed) return out;
        }
        if (check.on && !check.train_shown) check.train_shown = DataCheck<T>::covers(a.order, plan.rows, a.data.rows);
        if (a.valid_losses) {
            const T valid_loss = loss_into<T>(pool, a.valid, model, valid_squares.data());
            a.valid_losses[e] = static_cast<double>(valid_loss);
            if (check.valid_bad(a.valid, model, valid_loss)) {
                out.status = TrainStatus::data_not_finite;
                return out;
            }
        }
    }
    return out;
}

}  // namespace

template <typename T>
TrainOutcome train(const TrainArgs<T>& a, const StopCheck& stop) {
    DataCheck<T> check;
    check.on = a.find_bad_data;
    TrainOutcome out = train_epochs<T>(a, stop, check);
    if (check.on && out.status != TrainStatus::interrupted && out.status != TrainStatus::data_not_finite &&
        check.rest_bad(a))
        out.status = TrainStatus::data_not_finite;
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

}  // namespace LINSGD_CPU_VARIANT
}  // namespace cpu
}  // namespace linsgd
