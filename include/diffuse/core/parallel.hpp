// OpenMP helpers with a static schedule: the same thread count always splits work the same way,
// and reductions are combined in a fixed order, so results are bitwise reproducible.
#ifndef DIFFUSE_CORE_PARALLEL_HPP
#define DIFFUSE_CORE_PARALLEL_HPP

#include <omp.h>

#include <algorithm>
#include <cstddef>

namespace diffuse {

/// f(i) for i in [0, n), split statically across threads. Runs inline when already inside a
/// parallel region (no nesting) or when there is one thread: libgomp mallocs and frees a team for
/// every region of one thread (it caches only teams of several), which would put a heap
/// allocation in every call; inline, the loop runs in the same order as the one-thread team did.
template <class F>
inline void parallel_for(int n, F f) {
    if (n <= 1 || omp_in_parallel() || omp_get_max_threads() == 1) {
        for (int i = 0; i < n; ++i) f(i);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; ++i) f(i);
}

/// Elements below which a light pass over memory (elementwise maps, norms, copies) runs on the
/// calling thread. A parallel region wakes the other threads: under OMP_WAIT_POLICY=passive a futex
/// round trip, measured at ~40 µs on a 2-core KVM guest, more than a thread's share of 2^17 floats takes
/// (PyTorch's at::parallel_for has a grain of 32768 elements for the same reason).
inline constexpr std::size_t kParallelGrain = std::size_t(1) << 17;

/// parallel_for over a pass that touches `elements` values: inline below kParallelGrain (the same
/// iterations in the same order, so the same bits).
template <class F>
inline void parallel_for_light(int n, std::size_t elements, F f) {
    if (elements < kParallelGrain) {
        for (int i = 0; i < n; ++i) f(i);
        return;
    }
    parallel_for(n, f);
}

/// f(begin, end) over [0, n) in fixed chunks of `chunk` elements, spread over threads (a light
/// pass: inline below kParallelGrain). The chunk boundaries depend only on n and chunk, never on the
/// thread count, so per-chunk partial results combined in chunk order are reproducible.
template <class F>
inline void parallel_chunks(std::size_t n, std::size_t chunk, F f) {
    const int count = int((n + chunk - 1) / chunk);
    parallel_for_light(count, n, [&](int c) {
        const std::size_t b = std::size_t(c) * chunk;
        f(b, std::min(n, b + chunk));
    });
}

/// Elements per work item over a flat parameter-sized buffer (Adam, EMA, gradient norms): large
/// enough to amortize scheduling, small enough to balance; a multiple of every SIMD width.
inline constexpr std::size_t kFlatChunk = 16384;
inline int flat_chunk_count(std::size_t n) { return int((n + kFlatChunk - 1) / kFlatChunk); }
template <class F>
inline void for_each_flat_chunk(std::size_t n, F f) {
    parallel_chunks(n, kFlatChunk, f);
}

/// p[0, n) = v, by every thread where n is large (for_each_flat_chunk): a tensor's or a parameter store's
/// gradients, zeroed before each backward pass.
template <class T>
inline void parallel_fill(T* p, std::size_t n, T v) {
    for_each_flat_chunk(n, [&](std::size_t b, std::size_t e) { std::fill(p + b, p + e, v); });
}

inline int num_threads() { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

/// first(t, n) on each thread t of n, then, once every thread has finished it, then(t, n): one parallel
/// region with a barrier between the two phases, for a second phase that reads all of the first's
/// results. Under passive waits a barrier costs about half a region (~30 µs against ~60 µs on a 2-core
/// KVM guest, each wakes a sleeping thread). Inline, as t = 0 of n = 1, on one thread or inside a
/// region. Neither phase may throw.
template <class F0, class F1>
inline void parallel_two_phases(F0 first, F1 then) {
    if (num_threads() == 1) {
        first(0, 1);
        then(0, 1);
        return;
    }
#pragma omp parallel
    {
        const int t = omp_get_thread_num(), n = omp_get_num_threads();
        first(t, n);
#pragma omp barrier
        then(t, n);
    }
}

/// f(begin, end) over contiguous shares of [0, n), one a thread, in one parallel region; f(0, n) on the
/// calling thread when `split` is false (work whose bits would follow the cut).
template <class F>
inline void parallel_shares(int n, F f, bool split = true) {
    const int shares = split ? std::min(num_threads(), n) : 1;
    parallel_for(shares, [&](int s) { f(s * n / shares, (s + 1) * n / shares); });
}

/// parallel_shares, then, after a barrier in the same region (parallel_two_phases), task(j) for each j
/// in [0, tasks), the threads taking them in turn: for tasks that read every share's results. Without
/// `split`, f(0, n), then the tasks in a region of their own.
template <class F, class Task>
inline void parallel_shares_then(int n, F f, int tasks, Task task, bool split = true) {
    if (!split) {
        f(0, n);
        parallel_for(tasks, task);
        return;
    }
    parallel_two_phases(
        [&](int t, int threads) {
            const int shares = std::min(threads, n);
            if (t < shares) f(t * n / shares, (t + 1) * n / shares);
        },
        [&](int t, int threads) {
            for (int j = t; j < tasks; j += threads) task(j);
        });
}

/// first() and second() at once when exactly two threads are available, one after the other
/// otherwise. For two independent halves of a batch: one parallel region in place of one per layer
/// inside them (each region wakes the other thread, under OMP_WAIT_POLICY=passive a futex round trip
/// of tens of microseconds). With more threads the halves' own parallel loops use them all instead.
/// Neither may throw (an exception cannot leave a parallel region).
template <class F0, class F1>
inline void run_pair(F0 first, F1 second) {
    if (num_threads() != 2) {
        first();
        second();
        return;
    }
#pragma omp parallel num_threads(2)
    {
        if (omp_get_thread_num() == 0) first();
        else second();
    }
}

}  // namespace diffuse

#endif
