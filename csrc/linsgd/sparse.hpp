// The arithmetic of the dense kernels (math.hpp) for X in compressed sparse rows, skipping the
// entries that are not stored, and the entry points of the host kernels that take it
// (cpu/sparse.cpp).
//
// Why the bits are the dense kernel's on the densified X: a skipped entry is an exact zero, and
// adding the exact zero 0 * w (w finite) changes no floating-point sum except the sign of a zero
// sum. So a sparse sum that keeps the dense association (the lane of the blocked dot each column
// goes to, the fold of the lanes, the tail; the row order of X^T e) equals the dense sum bit for
// bit whenever it is not zero, and is a zero of either sign otherwise. The sign of a zero
// prediction cannot reach the fit: it changes neither e * e nor, as every gradient sum starts
// from +0, any gradient. Where the bits can differ: X holding NaN or infinity (refused, as for
// dense X), non-finite W (training has stopped by then), and an error so large that g * 0 is
// NaN in the dense X^T e (the batch loss is then infinite: training stops before the update).
#pragma once

#include <cstdint>

#include "linsgd/kernels.hpp"
#include "linsgd/math.hpp"

namespace linsgd {

// Row i's stored entries are values[k] in column indices[k], for k in [indptr[i], indptr[i+1]);
// the columns of a row strictly increasing (the bindings check it, and every index).
template <typename T, typename I>
struct Csr {
    const T* values = nullptr;
    const I* indices = nullptr;
    const I* indptr = nullptr;
    int64_t rows = 0;
};

// dot(x, w, n) of math.hpp for the stored entries [begin, end) of one row: a product goes to the
// lane its column has in the dense blocked sum (or to the sequential tail), in column order; the
// lanes are folded by the same halving tree. Each sum starts from +0 rather than the first
// product: the same value, but for the sign of a zero.
template <typename T, typename I>
LINSGD_HD inline T sparse_dot(const T* values, const I* indices, int64_t begin, int64_t end, const T* w, int64_t n) {
    constexpr int L = DotLanes<T>::value;
    int64_t k = begin;
    T total = T(0);
    if (n >= L) {
        const int64_t blocked = n / L * L;
        T acc[L];
        for (int l = 0; l < L; ++l) acc[l] = T(0);
        for (; k < end && static_cast<int64_t>(indices[k]) < blocked; ++k) {
            const int64_t j = static_cast<int64_t>(indices[k]);
            acc[j % L] = acc[j % L] + values[k] * w[j];
        }
        fold_lanes<T, L / 2>(acc);
        total = acc[0];
    }
    for (; k < end; ++k) total = total + values[k] * w[static_cast<int64_t>(indices[k])];
    return total;
}

// One row's terms of X^T e: gw[u][j] += g[u] * x[j] for every stored column j and output u, the
// product of the dense kernel (g * x, rounded, then added).
template <typename T, typename I>
LINSGD_HD inline void sparse_accumulate_row(T* gw, int64_t n, int64_t u_count, const T* values, const I* indices,
                                            int64_t begin, int64_t end, const T* g) {
    for (int64_t u = 0; u < u_count; ++u) {
        T* gu = gw + u * n;
        const T gv = g[u];
        for (int64_t k = begin; k < end; ++k) {
            const int64_t j = static_cast<int64_t>(indices[k]);
            gu[j] = gu[j] + gv * values[k];
        }
    }
}

// The sparse counterparts of TrainArgs: X (and, when valid_sparse, the validation X) in CSR;
// base.data gives Y, the row count and the sample weights (its x is unused), base.valid a dense
// validation set when valid_sparse is false.
template <typename T, typename I>
struct SparseTrainArgs {
    TrainArgs<T> base;
    Csr<T, I> x;
    Csr<T, I> valid_x;
    bool valid_sparse = false;
};

namespace cpu {

// loss(), gradient(), partial_gradient() and train() of kernels.hpp with X in CSR: the same
// bits as those entry points on the densified X. y, sample_weight and rows come from data
// (data.x is unused). sparse_gradient returns the batch loss; weight_total >= 0 normalises by a
// larger batch (partial_gradient's scaling), and *sse, when given, gets the rows' sum of squared
// errors.
template <typename T, typename I>
T sparse_loss(const Csr<T, I>& x, const Data<T>& data, const Model<T>& model);

template <typename T, typename I>
T sparse_gradient(const Csr<T, I>& x, const Data<T>& data, const Model<T>& model, double weight_total, T* grad_weight,
                  T* grad_bias, T* sse);

template <typename T, typename I>
TrainOutcome sparse_train(const SparseTrainArgs<T, I>& args, const StopCheck& stop);

}  // namespace cpu
}  // namespace linsgd
