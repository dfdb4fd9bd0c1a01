// Host kernel: whether every element of a contiguous float array is finite (no NaN, no
// infinity), one pass, no allocation.
//
// Compiled once per instruction-set variant like sgd.cpp (CMake defines LINSGD_CPU_VARIANT and
// passes that variant's -m flags); dispatch.cpp picks one at run time. Integer operations only,
// so every variant gives the same answer.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "cpu/variants.hpp"

#ifndef LINSGD_CPU_VARIANT
#error "LINSGD_CPU_VARIANT must name the instruction-set variant being compiled"
#endif

namespace linsgd {
namespace cpu {
namespace LINSGD_CPU_VARIANT {
namespace {

// A float is NaN or infinite exactly when its exponent bits are all ones. (bits & exponent) +
// (lowest exponent bit) then carries into the sign bit, and only then, so the OR of these terms
// over the array has its sign bit set exactly when some element is not finite. Integer AND, ADD
// and OR vectorise on any x86-64 (and need no floating-point port); independent lanes, and one
// test per block so that a NaN early in a large array stops the scan early.
template <typename T>
struct FloatBits;
template <>
struct FloatBits<float> {
    using U = uint32_t;
    static constexpr U kExponent = 0x7f800000u, kLowest = 0x00800000u, kSign = 0x80000000u;
};
template <>
struct FloatBits<double> {
    using U = uint64_t;
    static constexpr U kExponent = 0x7ff0000000000000ull, kLowest = 0x0010000000000000ull,
                       kSign = 0x8000000000000000ull;
};

template <typename T>
bool finite_scan(const T* p, int64_t n) {
    using B = FloatBits<T>;
    using U = typename B::U;
    constexpr int64_t kLanes = 64 / sizeof(T);  // two 256-bit registers of lanes
    constexpr int64_t kBlock = int64_t(1) << 12;
    for (int64_t start = 0; start < n; start += kBlock) {
        const int64_t end = std::min(n, start + kBlock);
        U acc[kLanes] = {};
        int64_t i = start;
        for (; i + kLanes <= end; i += kLanes)
            for (int64_t l = 0; l < kLanes; ++l) {
                U bits;
                std::memcpy(&bits, p + i + l, sizeof(bits));
                acc[l] |= (bits & B::kExponent) + B::kLowest;
            }
        for (; i < end; ++i) {
            U bits;
            std::memcpy(&bits, p + i, sizeof(bits));
            acc[0] |= (bits & B::kExponent) + B::kLowest;
        }
        U total = 0;
        for (int64_t l = 0; l < kLanes; ++l) total |= acc[l];
        if (total & B::kSign) return false;
    }
    return true;
}
}  // namespace

template <typename T>
bool all_finite(const T* p, int64_t n) {
    return finite_scan<T>(p, n);
}

template bool all_finite<float>(const float*, int64_t);
template bool all_finite<double>(const double*, int64_t);

}  // namespace LINSGD_CPU_VARIANT
}  // namespace cpu
}  // namespace linsgd
