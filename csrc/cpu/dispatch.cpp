// Chooses, once per process, the widest instruction-set variant of the host kernels that this
// CPU runs; LINSGD_CPU_VARIANT in the environment, or set_variant(), can force a narrower one.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/variants.hpp"

namespace linsgd {
namespace cpu {
namespace {

enum Variant : int { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };
const char* const kNames[] = {"baseline", "avx2", "avx512"};

bool cpu_has(Variant v) {
#if defined(LINSGD_HAVE_X86_VARIANTS)
    __builtin_cpu_init();
    switch (v) {
        case kAvx512:
            return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("fma");
        case kAvx2:
            return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        default:
            return true;
    }
#else
    return v == kBaseline;
#endif
}

int best_variant() {
    int best = kBaseline;
    for (int v = kAvx512; v > kBaseline; --v)
        if (cpu_has(static_cast<Variant>(v))) {
            best = v;
            break;
        }
    if (const char* forced = std::getenv("LINSGD_CPU_VARIANT")) {
        for (int v = kBaseline; v <= kAvx512; ++v)
            if (std::strcmp(forced, kNames[v]) == 0 && cpu_has(static_cast<Variant>(v))) return v;
    }
    return best;
}

std::atomic<int>& active() {
    static std::atomic<int> variant{best_variant()};
    return variant;
}

}  // namespace

const char* variant_name() { return kNames[active().load()]; }

std::vector<std::string> supported_variants() {
    std::vector<std::string> out;
    for (int v = kBaseline; v <= kAvx512; ++v)
        if (cpu_has(static_cast<Variant>(v))) out.emplace_back(kNames[v]);
    return out;
}

bool set_variant(const char* name) {
    for (int v = kBaseline; v <= kAvx512; ++v)
        if (std::strcmp(name, kNames[v]) == 0 && cpu_has(static_cast<Variant>(v))) {
            active().store(v);
            return true;
        }
    return false;
}

#if defined(LINSGD_HAVE_X86_VARIANTS)
#define LINSGD_DISPATCH(call)      \
    switch (active().load()) {     \
        case kAvx512:              \
            return avx512::call;   \
        case kAvx2:                \
            return avx2::call;     \
        default:                   \
            return baseline::call; \
    }
#else
#define LINSGD_DISPATCH(call) return baseline::call;
#endif

template <typename T>
T loss(const Data<T>& data, const Model<T>& model) {
    LINSGD_DISPATCH(loss<T>(data, model))
}

template <typename T>
T gradient(const Data<T>& data, const Model<T>& model, T* gw, T* gb) {
    LINSGD_DISPATCH(gradient<T>(data, model, gw, gb))
}

template <typename T>
T partial_gradient(const Data<T>& data, const Model<T>& model, double weight_total, T* gw, T* gb) {
    LINSGD_DISPATCH(partial_gradient<T>(data, model, weight_total, gw, gb))
}

template <typename T>
bool update(const Model<T>& model, const T* gw, const T* gb, T* buf_w, T* buf_b, double lr, const SgdHyper& hyper,
            bool momentum_initialized) {
    LINSGD_DISPATCH(update<T>(model, gw, gb, buf_w, buf_b, lr, hyper, momentum_initialized))
}

template <typename T>
TrainOutcome train(const TrainArgs<T>& args, const StopCheck& stop) {
    LINSGD_DISPATCH(train<T>(args, stop))
}

template <typename T>
bool all_finite(const T* p, int64_t n) {
    LINSGD_DISPATCH(all_finite<T>(p, n))
}

#undef LINSGD_DISPATCH

template float loss<float>(const Data<float>&, const Model<float>&);
template double loss<double>(const Data<double>&, const Model<double>&);
template float gradient<float>(const Data<float>&, const Model<float>&, float*, float*);
template double gradient<double>(const Data<double>&, const Model<double>&, double*, double*);
template float partial_gradient<float>(const Data<float>&, const Model<float>&, double, float*, float*);
template double partial_gradient<double>(const Data<double>&, const Model<double>&, double, double*, double*);
template bool update<float>(const Model<float>&, const float*, const float*, float*, float*, double, const SgdHyper&,
                            bool);
template bool update<double>(const Model<double>&, const double*, const double*, double*, double*, double,
                             const SgdHyper&, bool);
template TrainOutcome train<float>(const TrainArgs<float>&, const StopCheck&);
template TrainOutcome train<double>(const TrainArgs<double>&, const StopCheck&);
template bool all_finite<float>(const float*, int64_t);
template bool all_finite<double>(const double*, int64_t);

}  // namespace cpu
}  // namespace linsgd
