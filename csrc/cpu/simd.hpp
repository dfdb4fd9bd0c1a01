// Explicit short vectors for the host kernels, and the dot products of math.hpp written with
// them. Each function here returns exactly the bits of its scalar counterpart in math.hpp: the
// vectors only compute the same lanes side by side, they never reorder a sum.
//
// GCC and Clang lower these vector types to the widest registers of the variant being compiled
// (cpu/sgd.cpp is built once per instruction set), so one source serves SSE2, AVX2 and AVX-512.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

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
constexpr int kRegisters = 32;
#else
constexpr int kVectorBytes = 32;
constexpr int kRegisters = 16;
#endif
// Accumulators a register-blocked loop may keep: the rest of the registers hold the operands
// being loaded, broadcast and multiplied.
constexpr int kAccumulators = kRegisters * 3 / 4;

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

// An empty asm that takes v in a register: the compiler then loads v once into it, instead of
// folding the load into every instruction that uses v (one load per use).
template <typename V>
LINSGD_ALWAYS_INLINE void keep_in_register(V& v) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#if defined(__AVX512F__)
    constexpr size_t kRegisterBytes = 64;
#elif defined(__AVX__)
    constexpr size_t kRegisterBytes = 32;
#else
    constexpr size_t kRegisterBytes = 16;
#endif
    // (a vector wider than one register, as on the SSE2 baseline, is left to the compiler)
    if constexpr (sizeof(V) <= kRegisterBytes) asm("" : "+v"(v));
#else
    (void)v;
#endif
}

template <typename T>
inline Vec<T> splat(T s) {
    Vec<T> v;
    for (int l = 0; l < kLanes<T>; ++l) v[l] = s;
    return v;
}

// W lanes of T as one vector (W = 1 included).
template <typename T, int W>
struct LanesOf {
    typedef T type __attribute__((vector_size(W * sizeof(T))));
};

// fold_lanes in registers: lane l takes lane l + W/2 (the high half added to the low half), and
// so on down to one lane; the same additions, so the same bits.
template <typename T, int W>
LINSGD_ALWAYS_INLINE T fold_vector(const typename LanesOf<T, W>::type& v) {
    if constexpr (W == 1) {
        return v[0];
    } else {
        typedef typename LanesOf<T, W / 2>::type Half;
        Half lo, hi;
        std::memcpy(&lo, &v, sizeof lo);
        std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof lo, sizeof hi);
        return fold_vector<T, W / 2>(lo + hi);
    }
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
            Vec<T> wv = load(w + j + k * V);
            keep_in_register(wv);
            for (int r = 0; r < R; ++r) acc[r][k] = acc[r][k] + load(xs[r] + j + k * V) * wv;
        }
    for (int r = 0; r < R; ++r) {
        for (int half = K / 2; half >= 1; half /= 2)
            for (int k = 0; k < half; ++k) acc[r][k] = acc[r][k] + acc[r][k + half];
        T total = fold_vector<T, V>(acc[r][0]);
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
        // As many rows at a time as keep their accumulators in registers (three rows with
        // 256-bit vectors, twelve with 512-bit ones): w is loaded once for all of them.
        constexpr int K = DotLanes<T>::value / kLanes<T>;
        constexpr int G0 = 8 / K < 1 ? 1 : 8 / K;
        constexpr int G = G0 < R ? G0 : R;
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

// The weight gradient's columns [j0, j0 + CB * V) for UG outputs, kept in registers while the
// terms of `count` rows are added in row order: gw[u][j] + g_0[u] x_0[j] + g_1[u] x_1[j] + ...,
// each product rounded and then added, the order of accumulate_rows. Each vector of a row is read
// once for all UG outputs. Row i is x + rows[i] * n; its errors are g[i * g_stride + u].
template <typename T, int UG, int CB>
LINSGD_ALWAYS_INLINE void accumulate_block(T* gw, int64_t n, const T* x, const int64_t* rows, const T* g,
                                           int64_t g_stride, int64_t count, int64_t j0) {
    constexpr int V = kLanes<T>;
    Vec<T> acc[UG][CB];
    for (int u = 0; u < UG; ++u)
        for (int c = 0; c < CB; ++c) acc[u][c] = load(gw + u * n + j0 + c * V);
    for (int64_t i = 0; i < count; ++i) {
        const T* xr = x + rows[i] * n + j0;
        Vec<T> gs[UG];
        for (int u = 0; u < UG; ++u) gs[u] = splat<T>(g[i * g_stride + u]);
        for (int c = 0; c < CB; ++c) {
            const Vec<T> xv = load(xr + c * V);
            for (int u = 0; u < UG; ++u) acc[u][c] = acc[u][c] + gs[u] * xv;
        }
    }
    for (int u = 0; u < UG; ++u)
        for (int c = 0; c < CB; ++c) store(gw + u * n + j0 + c * V, acc[u][c]);
}

// The same for the last TW (< one vector) columns, as scalars.
template <typename T, int UG, int TW>
LINSGD_ALWAYS_INLINE void accumulate_tail(T* gw, int64_t n, const T* x, const int64_t* rows, const T* g,
                                          int64_t g_stride, int64_t count, int64_t j0) {
    T acc[UG][TW];
    for (int u = 0; u < UG; ++u)
        for (int c = 0; c < TW; ++c) acc[u][c] = gw[u * n + j0 + c];
    for (int64_t i = 0; i < count; ++i) {
        const T* xr = x + rows[i] * n + j0;
        for (int c = 0; c < TW; ++c) {
            const T xv = xr[c];
            for (int u = 0; u < UG; ++u) acc[u][c] = acc[u][c] + g[i * g_stride + u] * xv;
        }
    }
    for (int u = 0; u < UG; ++u)
        for (int c = 0; c < TW; ++c) gw[u * n + j0 + c] = acc[u][c];
}

// Calls f(std::integral_constant<int, width>) for a runtime width in [1, W].
template <int W, typename F>
LINSGD_ALWAYS_INLINE void with_width(int width, F&& f) {
    if constexpr (W >= 1) {
        if (width == W) return f(std::integral_constant<int, W>{});
        with_width<W - 1>(width, f);
    }
}

// Columns [j_begin, j_end) of UG outputs' weight gradient, in register-sized blocks of columns.
template <typename T, int UG>
void accumulate_outputs(T* gw, int64_t n, const T* x, const int64_t* rows, const T* g, int64_t g_stride, int64_t count,
                        int64_t j_begin, int64_t j_end) {
    constexpr int V = kLanes<T>;
    // UG * CB accumulators, UG broadcast errors, one row vector and one product in registers.
    constexpr int CB0 = (kRegisters - 2 - UG) / UG;
    constexpr int CB = CB0 > kAccumulators ? kAccumulators : (CB0 < 1 ? 1 : CB0);
    int64_t j = j_begin;
    for (; j + CB * V <= j_end; j += CB * V) accumulate_block<T, UG, CB>(gw, n, x, rows, g, g_stride, count, j);
    const int vectors = static_cast<int>((j_end - j) / V);
    if (vectors > 0) {
        with_width<CB - 1>(vectors, [&](auto w) {
            accumulate_block<T, UG, decltype(w)::value>(gw, n, x, rows, g, g_stride, count, j);
        });
        j += static_cast<int64_t>(vectors) * V;
    }
    if (j < j_end)
        with_width<V - 1>(static_cast<int>(j_end - j), [&](auto w) {
            accumulate_tail<T, UG, decltype(w)::value>(gw, n, x, rows, g, g_stride, count, j);
        });
}

// X^T e for `count` rows into columns [j_begin, j_end) of every output's weight gradient
// (gw is (u_count, n)): gw[u][j] += g[i][u] x_i[j] over the rows in order. Outputs go in groups
// of up to four, so that a row is read once per group rather than once per output.
template <typename T>
void accumulate_weight_gradient(T* gw, int64_t n, int64_t u_count, const T* x, const int64_t* rows, const T* g,
                                int64_t count, int64_t j_begin, int64_t j_end) {
    int64_t u = 0;
    for (; u + 4 <= u_count; u += 4)
        accumulate_outputs<T, 4>(gw + u * n, n, x, rows, g + u, u_count, count, j_begin, j_end);
    switch (u_count - u) {
        case 3:
            return accumulate_outputs<T, 3>(gw + u * n, n, x, rows, g + u, u_count, count, j_begin, j_end);
        case 2:
            return accumulate_outputs<T, 2>(gw + u * n, n, x, rows, g + u, u_count, count, j_begin, j_end);
        case 1:
            return accumulate_outputs<T, 1>(gw + u * n, n, x, rows, g + u, u_count, count, j_begin, j_end);
        default:
            return;
    }
}

}  // namespace simd
}  // namespace LINSGD_CPU_VARIANT
}  // namespace cpu
}  // namespace linsgd
