// A fixed set of threads that run one task at a time, all of them together, for the length of
// one training call. Each step dispatches two tasks, so the hand-off must cost microseconds:
// workers spin briefly on a generation counter, then yield the core.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LINSGD_PAUSE() _mm_pause()
#else
#define LINSGD_PAUSE() ((void)0)
#endif

namespace linsgd {
namespace cpu {
// Internal linkage: cpu/sgd.cpp is compiled once per instruction set, and a shared (weak)
// definition would let the linker run one variant's code on a CPU that lacks its instructions.
namespace {

class WorkerPool {
  public:
    explicit WorkerPool(int threads) : count_(threads < 1 ? 1 : threads) {
        for (int t = 1; t < count_; ++t) workers_.emplace_back([this, t] { work(t); });
    }

    ~WorkerPool() {
        stop_.store(true, std::memory_order_relaxed);
        generation_.fetch_add(1, std::memory_order_release);
        for (auto& w : workers_) w.join();
    }

    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    int size() const { return count_; }

    // Runs f(thread_index, thread_count) on every thread, the caller being thread 0; returns
    // when all are done.
    template <typename F>
    void run(F& f) {
        if (count_ == 1) {
            f(0, 1);
            return;
        }
        task_ = &f;
        call_ = [](void* fn, int t, int n) { (*static_cast<F*>(fn))(t, n); };
        remaining_.store(count_ - 1, std::memory_order_relaxed);
        generation_.fetch_add(1, std::memory_order_release);
        f(0, count_);
        wait([this] { return remaining_.load(std::memory_order_acquire) == 0; });
    }

  private:
    template <typename Ready>
    static void wait(Ready ready) {
        for (int spin = 0; !ready(); ++spin) {
            if (spin < 2000)
                LINSGD_PAUSE();
            else
                std::this_thread::yield();
        }
    }

    void work(int t) {
        uint64_t seen = 0;
        for (;;) {
            wait([&] { return generation_.load(std::memory_order_acquire) != seen; });
            seen = generation_.load(std::memory_order_acquire);
            if (stop_.load(std::memory_order_relaxed)) return;
            call_(task_, t, count_);
            remaining_.fetch_sub(1, std::memory_order_release);
        }
    }

    const int count_;
    std::vector<std::thread> workers_;
    std::atomic<uint64_t> generation_{0};
    std::atomic<int> remaining_{0};
    std::atomic<bool> stop_{false};
    void* task_ = nullptr;
    void (*call_)(void*, int, int) = nullptr;
};

// The half-open share [begin, end) of `total` items that thread t of n takes.
inline void thread_share(int64_t total, int t, int n, int64_t& begin, int64_t& end) {
    const int64_t base = total / n, extra = total % n;
    begin = t * base + (t < extra ? t : extra);
    end = begin + base + (t < extra ? 1 : 0);
}

}  // namespace
}  // namespace cpu
}  // namespace linsgd
