// Explicit short vectors for the host kernels, and the dot products of math.hpp written with
// them. Each function here returns exactly the bits of its scalar counterpart in math.hpp: the
// vectors only compute the same lanes side by side, they never reorder a sum.
//
// GCC and Clang lower these vector types to the widest registers of the variant being compiled
// (cpu/sgd.cpp is built once per instruction set), so one source serves SSE2, AVX2 and AVX-512.
#pragma once

#include <cstdint>
#include <cstring>

#include "linsgd/math.hpp"

#ifndef LINSGD_CPU_VARIANT
#error "cpu/simd.hpp is compiled per instruction-set variant: LINSGD_CPU_VARIANT must be defined"
#endif

// Inside the variant's namespace: each variant object gets its own copy, compiled for its
// instruction set, instead of one weak definition that the linker would share among them.
namespace linsgd {
namespace cpu {
namespace LINSGD_CPU_VARIANT {
namespace simd {

#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
#else
constexpr int kVectorBytes = 32;
#endif

#if defined(__GNUC__)
template <typename T>
struct VectorOf;
template <>
struct VectorOf<double> {
    typedef double type __attribute__((vector_size(kVectorBytes)));
};
template <>
struct VectorOf<float> {
    typedef float type __attribute__((vector_size(kVectorBytes)));
};
template <typename T>
using Vec = typename VectorOf<T>::type;
#else
// Compilers without vector extensions get a plain array with the same element-wise meaning.
template <typename T>
struct Vec {
    T v[kVectorBytes / sizeof(T)];
    T& operator[](int i) { return v[i]; }
    T operator[](int i) const { return v[i]; }
    friend Vec operator+(Vec a, const Vec& b) {
        for (int i = 0; i < int(kVectorBytes / sizeof(T)); ++i) a.v[i] = a.v[i] + b.v[i];
        return a;
    }
    friend Vec operator-(Vec a, const Vec& b) {
        for (int i = 0; i < int(kVectorBytes / sizeof(T)); ++i) a.v[i] = a.v[i] - b.v[i];
        return a;
    }
    friend Vec operator*(Vec a, const Vec& b) {
        for (int i = 0; i < int(kVectorBytes / sizeof(T)); ++i) a.v[i] = a.v[i] * b.v[i];
        return a;
    }
};
#endif

#if defined(__GNUC__)
#define LINSGD_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define LINSGD_ALWAYS_INLINE inline
#endif

template <typename T>
constexpr int kLanes = kVectorBytes / static_cast<int>(sizeof(T));

template <typename T>
inline Vec<T> load(const T* p) {
    Vec<T> v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

template <typename T>
inline void store(T* p, const Vec<T>& v) {
    std::memcpy(p, &v, sizeof v);
}

template <typename T>
inline Vec<T> splat(T s) {
    Vec<T> v;
    for (int l = 0; l < kLanes<T>; ++l) v[l] = s;
    return v;
}

// dot()'s blocked order for R rows against one w (n >= DotLanes): the DotLanes partial sums
// live in K vectors, w is loaded once for all R rows, and the halving tree runs first across
// the vectors (lane l + half is lane l of vector k + half / lanes), then inside the last one.
template <typename T, int R>
LINSGD_ALWAYS_INLINE void dot_blocked_rows(const T* const* xs, const T* w, int64_t n, T* out) {
    constexpr int V = kLanes<T>;
    constexpr int L = DotLanes<T>::value;
    constexpr int K = L / V;
    static_assert(K * V == L && K >= 1, "the dot lanes must fill whole vectors");
    Vec<T> acc[R][K];
    for (int k = 0; k < K; ++k) {
        const Vec<T> wv = load(w + k * V);
        for (int r = 0; r < R; ++r) acc[r][k] = load(xs[r] + k * V) * wv;
    }
    int64_t j = L;
    for (; j + L <= n; j += L)
        for (int k = 0; k < K; ++k) {
            const Vec<T> wv = load(w + j + k * V);
            for (int r = 0; r < R; ++r) acc[r][k] = acc[r][k] + load(xs[r] + j + k * V) * wv;
        }
    for (int r = 0; r < R; ++r) {
        for (int half = K / 2; half >= 1; half /= 2)
            for (int k = 0; k < half; ++k) acc[r][k] = acc[r][k] + acc[r][k + half];
        T lanes[V];
        store(lanes, acc[r][0]);
        if constexpr (V > 1) fold_lanes<T, V / 2>(lanes);
        T total = lanes[0];
        for (int64_t t = j; t < n; ++t) total = total + xs[r][t] * w[t];
        out[r] = total;
    }
}

// dot()'s sequential order (n < DotLanes) for R rows with the feature count a compile-time
// constant: straight-line code, R independent chains in flight.
template <typename T, int R, int N>
LINSGD_ALWAYS_INLINE void dot_sequential_rows_fixed(const T* const* xs, const T* w, T* out) {
    T acc[R];
    for (int r = 0; r < R; ++r) acc[r] = xs[r][0] * w[0];
    for (int j = 1; j < N; ++j)
        for (int r = 0; r < R; ++r) acc[r] = acc[r] + xs[r][j] * w[j];
    for (int r = 0; r < R; ++r) out[r] = acc[r];
}

template <typename T, int R>
LINSGD_ALWAYS_INLINE void dot_sequential_rows(const T* const* xs, const T* w, int64_t n, T* out) {
    T acc[R];
    for (int r = 0; r < R; ++r) acc[r] = xs[r][0] * w[0];
    for (int64_t j = 1; j < n; ++j)
        for (int r = 0; r < R; ++r) acc[r] = acc[r] + xs[r][j] * w[j];
    for (int r = 0; r < R; ++r) out[r] = acc[r];
}

// R dot products x_r . w, each bit-identical to dot(x_r, w, n).
template <typename T, int R>
LINSGD_ALWAYS_INLINE void dot_rows(const T* const* xs, const T* w, int64_t n, T* out) {
    if (n >= DotLanes<T>::value) {
        // As many rows at a time as keep their accumulators, eight vectors in all, in registers
        // (two rows with 256-bit vectors, four with 512-bit ones): w is loaded once for them.
        constexpr int G = 8 / (DotLanes<T>::value / kLanes<T>) < 1 ? 1 : 8 / (DotLanes<T>::value / kLanes<T>);
        int r = 0;
        for (; r + G <= R; r += G) dot_blocked_rows<T, G>(xs + r, w, n, out + r);
        for (; r < R; ++r) dot_blocked_rows<T, 1>(xs + r, w, n, out + r);
        return;
    }
    switch (n) {
        case 0:
            for (int r = 0; r < R; ++r) out[r] = T(0);
            return;
        case 1:
            return dot_sequential_rows_fixed<T, R, 1>(xs, w, out);
        case 2:
            return dot_sequential_rows_fixed<T, R, 2>(xs, w, out);
        case 3:
            return dot_sequential_rows_fixed<T, R, 3>(xs, w, out);
        case 4:
            return dot_sequential_rows_fixed<T, R, 4>(xs, w, out);
        case 5:
            return dot_sequential_rows_fixed<T, R, 5>(xs, w, out);
        case 6:
            return dot_sequential_rows_fixed<T, R, 6>(xs, w, out);
        case 7:
            return dot_sequential_rows_fixed<T, R, 7>(xs, w, out);
        case 8:
            return dot_sequential_rows_fixed<T, R, 8>(xs, w, out);
        default:
            return dot_sequential_rows<T, R>(xs, w, n, out);
    }
}

// gw[j] = (((gw[j] + g[0] x_0[j]) + g[1] x_1[j]) + ...) + g[R-1] x_{R-1}[j] for every j: the
// rows' terms added in row order, each gradient element kept in a register meanwhile.
template <typename T, int R>
LINSGD_ALWAYS_INLINE void accumulate_rows(T* gw, const T* const* xs, const T* g, int64_t n) {
    constexpr int V = kLanes<T>;
    Vec<T> gv[R];
    for (int r = 0; r < R; ++r) gv[r] = splat<T>(g[r]);
    int64_t j = 0;
    for (; j + V <= n; j += V) {
        Vec<T> a = load(gw + j);
        for (int r = 0; r < R; ++r) a = a + gv[r] * load(xs[r] + j);
        store(gw + j, a);
    }
    for (; j < n; ++j) {
        T a = gw[j];
        for (int r = 0; r < R; ++r) a = a + g[r] * xs[r][j];
        gw[j] = a;
    }
}

}  // namespace simd
}  // namespace LINSGD_CPU_VARIANT
}  // namespace cpu
}  // namespace linsgd
