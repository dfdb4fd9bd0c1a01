// The arithmetic of one SGD step on an MSE linear model, in the order torch evaluates it.
//
// Shared by the CPU and CUDA kernels: plain C++ templated on the scalar type, no pybind11 or
// CUDA headers, every function callable from host and device code.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define LINSGD_HD __host__ __device__
#else
#define LINSGD_HD
#endif

namespace linsgd {

LINSGD_HD inline float fused_multiply_add(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
    return __fmaf_rn(a, b, c);
#else
    return std::fma(a, b, c);
#endif
}

LINSGD_HD inline double fused_multiply_add(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
    return __fma_rn(a, b, c);
#else
    return std::fma(a, b, c);
#endif
}

// ATen's sum kernel registers no AVX-512 variant, so torch runs its AVX2 code on every x86
// machine: 32-byte vectors, 4 doubles or 8 floats a lane group.
template <typename T>
struct CascadeLanes {
    static constexpr int value = 32 / static_cast<int>(sizeof(T));
};

LINSGD_HD inline int cascade_ceil_log2(int64_t x) {
    if (x <= 2) return 1;
    uint64_t v = static_cast<uint64_t>(x - 1);
    int bits = 0;
    while (v) {
        ++bits;
        v >>= 1;
    }
    return bits;
}

// ATen's multi_row_sum: NROWS x LANES independent sums sharing one control flow, each
// accumulated through four levels of partial sums that are flushed upward every 2^lp elements.
// load(i, k, l) returns element i of row k, lane l.
template <typename T, int NROWS, int LANES, typename Load>
LINSGD_HD inline void cascade_multi_row_sum(const Load& load, int64_t size, T (&out)[NROWS][LANES]) {
    int lp = cascade_ceil_log2(size) / 4;
    if (lp < 4) lp = 4;
    const int64_t step = int64_t(1) << lp;
    const int64_t mask = step - 1;
    T acc[4][NROWS][LANES];
    for (int j = 0; j < 4; ++j)
        for (int k = 0; k < NROWS; ++k)
            for (int l = 0; l < LANES; ++l) acc[j][k][l] = T(0);
    int64_t i = 0;
    while (i + step <= size) {
        for (int64_t s = 0; s < step; ++s, ++i)
            for (int k = 0; k < NROWS; ++k)
                for (int l = 0; l < LANES; ++l) acc[0][k][l] = acc[0][k][l] + load(i, k, l);
        for (int j = 1; j < 4; ++j) {
            for (int k = 0; k < NROWS; ++k)
                for (int l = 0; l < LANES; ++l) {
                    acc[j][k][l] = acc[j][k][l] + acc[j - 1][k][l];
                    acc[j - 1][k][l] = T(0);
                }
            if (i & (mask << (j * lp))) break;
        }
    }
    for (; i < size; ++i)
        for (int k = 0; k < NROWS; ++k)
            for (int l = 0; l < LANES; ++l) acc[0][k][l] = acc[0][k][l] + load(i, k, l);
    for (int j = 1; j < 4; ++j)
        for (int k = 0; k < NROWS; ++k)
            for (int l = 0; l < LANES; ++l) acc[0][k][l] = acc[0][k][l] + acc[j][k][l];
    for (int k = 0; k < NROWS; ++k)
        for (int l = 0; l < LANES; ++l) out[k][l] = acc[0][k][l];
}

// ATen's row_sum with ilp factor 4: four interleaved cascades, the leftover elements added to
// the first, then the other three added to it in order. load(i, l) returns lane l of element i.
template <typename T, int LANES, typename Load>
LINSGD_HD inline void cascade_row_sum(const Load& load, int64_t size, T (&out)[LANES]) {
    const int64_t n4 = size / 4;
    T part[4][LANES];
    cascade_multi_row_sum<T, 4, LANES>([&](int64_t i, int k, int l) { return load(4 * i + k, l); }, n4, part);
    for (int64_t i = 4 * n4; i < size; ++i)
        for (int l = 0; l < LANES; ++l) part[0][l] = part[0][l] + load(i, l);
    for (int k = 1; k < 4; ++k)
        for (int l = 0; l < LANES; ++l) part[0][l] = part[0][l] + part[k][l];
    for (int l = 0; l < LANES; ++l) out[l] = part[0][l];
}

// torch.sum over a contiguous sequence of n values: value(i) gives element i.
template <typename T, typename Value>
LINSGD_HD inline T cascade_sum_contiguous(const Value& value, int64_t n) {
    constexpr int V = CascadeLanes<T>::value;
    if (n >= V) {
        const int64_t nv = n / V;
        T lanes[V];
        cascade_row_sum<T, V>([&](int64_t i, int l) { return value(i * V + l); }, nv, lanes);
        T total = T(0);
        for (int64_t k = nv * V; k < n; ++k) total = total + value(k);
        for (int l = 0; l < V; ++l) total = total + lanes[l];
        return total;
    }
    T one[1];
    cascade_row_sum<T, 1>([&](int64_t i, int) { return value(i); }, n, one);
    return one[0];
}

// torch's G.sum(0) for a row-major [rows, cols] matrix: column j of it.
template <typename T>
LINSGD_HD inline T cascade_column_sum(const T* g, int64_t rows, int64_t cols, int64_t j) {
    if (cols == 1) return cascade_sum_contiguous<T>([&](int64_t i) { return g[i]; }, rows);
    constexpr int V = CascadeLanes<T>::value;
    // ATen vectorises the outer reduction over groups of columns; only those columns get the
    // plain multi-level cascade, the remainder the ilp-4 row sum.
    const int64_t plain = cols >= V ? (4 * V) * (cols / (4 * V)) : 4 * (cols / 4);
    T out[1];
    if (j < plain) {
        T tmp[1][1];
        cascade_multi_row_sum<T, 1, 1>([&](int64_t i, int, int) { return g[i * cols + j]; }, rows, tmp);
        return tmp[0][0];
    }
    cascade_row_sum<T, 1>([&](int64_t i, int) { return g[i * cols + j]; }, rows, out);
    return out[0];
}

// Lanes of the blocked dot product: two 64-byte vectors' worth, enough independent sums to
// hide the add latency. Fixed per dtype, not per instruction set, so every build of the kernel
// (baseline, AVX2, AVX-512, CUDA) rounds identically.
template <typename T>
struct DotLanes {
    static constexpr int value = 128 / static_cast<int>(sizeof(T));
};

// The halving tree that combines the lanes, unrolled at compile time so that it stays in
// registers: lane l takes lane l + half, for half = L/2, L/4, ..., 1.
template <typename T, int HALF>
LINSGD_HD inline void fold_lanes(T* acc) {
    for (int l = 0; l < HALF; ++l) acc[l] = acc[l] + acc[l + HALF];
    if constexpr (HALF > 1) fold_lanes<T, HALF / 2>(acc);
}

// x . w without fused multiply-adds (torch's GEMM rounds each product on small problems).
// Below one block of lanes the sum is sequential, which is the order torch's addmm uses for
// small N and so reproduces its bits; from there on, a blocked sum (lanes accumulated
// sequentially, combined by a halving tree, then the tail) is both faster and more accurate.
template <typename T>
LINSGD_HD inline T dot(const T* x, const T* w, int64_t n) {
    constexpr int L = DotLanes<T>::value;
    if (n < L) {
        T acc = T(0);
        if (n > 0) acc = x[0] * w[0];
        for (int64_t j = 1; j < n; ++j) acc = acc + x[j] * w[j];
        return acc;
    }
    T acc[L];
    for (int l = 0; l < L; ++l) acc[l] = x[l] * w[l];
    int64_t j = L;
    for (; j + L <= n; j += L)
        for (int l = 0; l < L; ++l) acc[l] = acc[l] + x[j + l] * w[j + l];
    fold_lanes<T, L / 2>(acc);
    T total = acc[0];
    for (; j < n; ++j) total = total + x[j] * w[j];
    return total;
}

// One prediction as torch's addmm gives it: the dot product, the bias added afterwards.
template <typename T>
LINSGD_HD inline T predict_one(const T* x, const T* w, int64_t n, const T* bias) {
    const T acc = dot<T>(x, w, n);
    return bias ? acc + *bias : acc;
}

// The scalars of torch.optim.SGD, each formed in double and rounded once to T, as torch's
// Python-float alphas are.
template <typename T>
struct SgdScalars {
    T neg_lr;
    T decay_weight;
    T decay_bias;
    T momentum;
    T one_minus_dampening;
    bool use_decay_weight;
    bool use_decay_bias;
    bool use_momentum;
    bool nesterov;
    bool maximize;
};

template <typename T>
LINSGD_HD inline SgdScalars<T> make_sgd_scalars(double lr, double weight_decay, bool decay_bias, double l2,
                                                double momentum, double dampening, bool nesterov, bool maximize) {
    SgdScalars<T> s;
    s.neg_lr = static_cast<T>(-lr);
    // Keras's L2(l2) adds l2 * sum(W^2) to the loss: 2 * l2 * W to the weight gradient only.
    const double wd_weight = weight_decay + 2.0 * l2;
    const double wd_bias = decay_bias ? weight_decay : 0.0;
    s.decay_weight = static_cast<T>(wd_weight);
    s.decay_bias = static_cast<T>(wd_bias);
    s.use_decay_weight = wd_weight != 0.0;
    s.use_decay_bias = wd_bias != 0.0;
    s.momentum = static_cast<T>(momentum);
    s.one_minus_dampening = static_cast<T>(1.0 - dampening);
    s.use_momentum = momentum != 0.0;
    s.nesterov = nesterov;
    s.maximize = maximize;
    return s;
}

// One parameter's update, torch's single-tensor SGD path: every alpha-add is a fused
// multiply-add (ATen's vectorised add), the momentum scaling a plain multiply.
template <typename T>
LINSGD_HD inline T sgd_update(T p, T g, T* buf, const SgdScalars<T>& s, bool use_decay, T decay,
                              bool first_momentum_step) {
    T d = s.maximize ? -g : g;
    if (use_decay) d = fused_multiply_add(p, decay, d);
    if (s.use_momentum) {
        T b = first_momentum_step ? d : fused_multiply_add(d, s.one_minus_dampening, *buf * s.momentum);
        *buf = b;
        d = s.nesterov ? fused_multiply_add(b, s.momentum, d) : b;
    }
    return fused_multiply_add(d, s.neg_lr, p);
}

// Sample weights make the loss a weighted mean, sum(w * e^2) / (U * sum(w)), with the weights
// summed in double (exact for integer weights, so unit weights give the batch size and every
// result equals the unweighted one bit for bit). The gradient scale 2 / (U * sum(w)) is rounded
// to T, which is torch's 2 / numel when every weight is 1. All-zero weights contribute nothing.
template <typename T>
LINSGD_HD inline T weighted_gradient_scale(double weight_sum, int64_t outputs) {
    if (weight_sum == 0.0) return T(0);
    return static_cast<T>(2.0 / (static_cast<double>(outputs) * weight_sum));
}

template <typename T>
LINSGD_HD inline T weighted_mean(T total, double weight_sum, int64_t outputs) {
    if (weight_sum == 0.0) return T(0);
    return total / static_cast<T>(static_cast<double>(outputs) * weight_sum);
}

}  // namespace linsgd
