// The instruction-set variants of the host kernels (cpu/sgd.cpp and cpu/finite.cpp compiled once
// for each) and the names dispatch.cpp chooses among.
#pragma once

#include "linsgd/kernels.hpp"

#define LINSGD_DECLARE_CPU_VARIANT(NS)                                                                                 \
    namespace linsgd {                                                                                                 \
    namespace cpu {                                                                                                    \
    namespace NS {                                                                                                     \
    template <typename T>                                                                                              \
    T loss(const Data<T>& data, const Model<T>& model);                                                                \
    template <typename T>                                                                                              \
    T gradient(const Data<T>& data, const Model<T>& model, T* gw, T* gb);                                              \
    template <typename T>                                                                                              \
    T partial_gradient(const Data<T>& data, const Model<T>& model, double weight_total, T* gw, T* gb);                 \
    template <typename T>                                                                                              \
    bool update(const Model<T>& model, const T* gw, const T* gb, T* buf_w, T* buf_b, double lr, const SgdHyper& hyper, \
                bool momentum_initialized);                                                                            \
    template <typename T>                                                                                              \
    TrainOutcome train(const TrainArgs<T>& args, const StopCheck& stop);                                               \
    template <typename T>                                                                                              \
    bool all_finite(const T* p, int64_t n);                                                                            \
    }                                                                                                                  \
    }                                                                                                                  \
    }

LINSGD_DECLARE_CPU_VARIANT(baseline)
#if defined(LINSGD_HAVE_X86_VARIANTS)
LINSGD_DECLARE_CPU_VARIANT(avx2)
LINSGD_DECLARE_CPU_VARIANT(avx512)
#endif

#undef LINSGD_DECLARE_CPU_VARIANT
