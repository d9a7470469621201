// Adam's memory bandwidth on ~10M float parameters, beside a plain fused loop with the same
// traffic (7 streams of 4 bytes per element: read p, g, m, v; write p, m, v). Adam is memory-bound,
// so the plain loop is its ceiling on this machine. Both results are checked before timing, which
// runs on Google Benchmark (benchmarks/gbench.hpp: medians of interleaved repetitions, B/s counters).
//
//   cmake -S . -B build -DDIFFUSE_BUILD_BENCHMARKS=ON && cmake --build build --target bench_adam
//   OMP_NUM_THREADS=2 build/benchmarks/bench_adam [--benchmark_* flags] [n]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/core/rng.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/train/adam.hpp"

#include "bench_util.hpp"
#include "gbench.hpp"

using namespace diffuse;

namespace {

int fail(const char* what, std::size_t i, double got, double want) {
    std::fprintf(stderr, "CHECK FAILED: %s at %zu: got %.9g, want %.9g\n", what, i, got, want);
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    const std::vector<std::string> args = bench::init_benchmark(argc, argv);
    const std::size_t n = args.empty() ? 10'000'000 : std::size_t(std::atoll(args[0].c_str()));
    if (n == 0) {
        std::fprintf(stderr, "bench_adam: the parameter count must be a positive number (got '%s')\n", args[0].c_str());
        return 2;
    }
    AlignedBuffer<float> p(n), g(n), p0(n);
    Rng rng(1);
    for (std::size_t i = 0; i < n; ++i) {
        p0[i] = p[i] = float(rng.normal() * 0.02);
        g[i] = float(rng.normal() * 1e-3);
    }

    // Check Adam's first step against the formula in double, element by element. (Weight decay
    // would change only two per-step constants of the same loop, not its cost; without it the
    // float gradient is exact and the check can be tight.)
    const AdamOptions opt{1e-3, 0.9, 0.999, 1e-8, 0.0, false};
    Adam<float> adam(p.data(), g.data(), n, opt);
    adam.step();
    for (std::size_t i = 0; i < n; ++i) {
        const double gi = double(g[i]) + opt.weight_decay * double(p0[i]);
        const double m = (1 - opt.beta1) * gi, v = (1 - opt.beta2) * gi * gi;
        const double mhat = m / (1 - opt.beta1), vhat = v / (1 - opt.beta2);
        const double want = double(p0[i]) - opt.lr * mhat / (std::sqrt(vhat) + opt.eps);
        if (std::abs(double(p[i]) - want) > 1e-6 * std::max(std::abs(want), 1e-2)) return fail("adam p", i, p[i], want);
        if (std::abs(double(adam.m()[i]) - m) > 1e-6 * std::abs(m)) return fail("adam m", i, adam.m()[i], m);
    }

    // Check the plain loop's one pass.
    AlignedBuffer<float> q(n), m(n), v(n);
    std::copy(p0.begin(), p0.end(), q.begin());
    bench::plain_fused(n, 0.5f, q.data(), g.data(), m.data(), v.data());
    for (std::size_t i = 0; i < n; ++i) {
        const double want = double(p0[i]) - 0.5 * double(g[i]);
        if (std::abs(double(q[i]) - want) > 1e-6 * std::abs(want) + 1e-12) return fail("plain p", i, q[i], want);
    }

    // Timing: the buffers keep changing, harmlessly. Bytes: 7 streams of n floats per step.
    const double bytes = 7.0 * sizeof(float) * double(n);
    benchmark::RegisterBenchmark("adam_step",
                                 [&](benchmark::State& st) {
                                     for (auto _ : st) adam.step();
                                     st.counters["B/s"] = bench::per_second(bytes);
                                 })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark("plain_fused_loop",
                                 [&](benchmark::State& st) {
                                     for (auto _ : st)
                                         bench::plain_fused(n, 1e-6f, q.data(), g.data(), m.data(), v.data());
                                     st.counters["B/s"] = bench::per_second(bytes);
                                 })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    std::printf("n = %zu float params, %d threads, 7 streams x 4 B; checks passed\n", n, num_threads());
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
