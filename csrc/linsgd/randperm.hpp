// torch's CPU randperm (randperm_cpu, n < 2^32 / 20) from its raw 32-bit generator outputs:
// r = 0..n-1, then for i in 0..n-2 swap r[i] and r[i + draws[i] % (n - i)]. The swaps are
// sequential, but their partners are known in advance, so each one's cache line is asked for
// a few swaps ahead; the permutation is built in 32 bits (half the cache) and widened at the end.
#pragma once

#include <cstdint>
#include <memory>

namespace linsgd {

inline void randperm_from_draws(const uint32_t* draws, int64_t n, int64_t* out) {
    if (n <= 0) return;
    std::unique_ptr<uint32_t[]> r(new uint32_t[static_cast<size_t>(n)]);
    for (int64_t i = 0; i < n; ++i) r[i] = static_cast<uint32_t>(i);
    constexpr int64_t kAhead = 16;  // a power of two: the ring of partners below
    uint32_t partner[kAhead];
    const int64_t swaps = n - 1;
    auto partner_of = [&](int64_t i) { return static_cast<uint32_t>(i) + draws[i] % static_cast<uint32_t>(n - i); };
    for (int64_t i = 0; i < kAhead && i < swaps; ++i) partner[i] = partner_of(i);
    for (int64_t i = 0; i < swaps; ++i) {
        const uint32_t j = partner[i & (kAhead - 1)];
        if (i + kAhead < swaps) {
            const uint32_t ahead = partner_of(i + kAhead);
            partner[i & (kAhead - 1)] = ahead;
#if defined(__GNUC__)
            __builtin_prefetch(r.get() + ahead, 1, 3);
#endif
        }
        const uint32_t t = r[i];
        r[i] = r[j];
        r[j] = t;
    }
    for (int64_t i = 0; i < n; ++i) out[i] = r[i];
}

}  // namespace linsgd
