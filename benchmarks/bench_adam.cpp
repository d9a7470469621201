// Adam's memory bandwidth on ~10M float parameters, beside a plain fused loop with the same
// traffic (7 streams of 4 bytes per element: read p, g, m, v; write p, m, v). Adam is memory-bound,
// so the plain loop is its ceiling on this machine. Both results are checked before timing.
//
//   cmake -S . -B build -DDIFFUSE_BUILD_BENCHMARKS=ON && cmake --build build --target bench_adam
//   OMP_NUM_THREADS=2 build/benchmarks/bench_adam [n]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "diffuse/core/aligned_buffer.hpp"
#include "diffuse/core/parallel.hpp"
#include "diffuse/core/rng.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/train/adam.hpp"

#include "bench_util.hpp"

using namespace diffuse;
using bench::time_once;
using bench::Timing;

namespace {

int fail(const char* what, std::size_t i, double got, double want) {
    std::fprintf(stderr, "CHECK FAILED: %s at %zu: got %.9g, want %.9g\n", what, i, got, want);
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    const std::size_t n = argc > 1 ? std::size_t(std::atoll(argv[1])) : 10'000'000;
    const int reps = 21;
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

    // Timing (after one warm-up call each; the buffers keep changing, harmlessly).
    adam.step();
    bench::plain_fused(n, 1e-6f, q.data(), g.data(), m.data(), v.data());
    const double bytes = 7.0 * sizeof(float) * double(n);
    // Interleaved, so that load from other processes on a shared machine hits both alike.
    Timing ta, tp;
    for (int r = 0; r < reps; ++r) {
        time_once(ta, [&] { adam.step(); });
        time_once(tp, [&] { bench::plain_fused(n, 1e-6f, q.data(), g.data(), m.data(), v.data()); });
    }
    const double gb = 1e-9 * bytes;
    std::printf("n = %zu float params, %d threads, %d interleaved runs, 7 streams x 4 B\n", n, num_threads(), reps);
    std::printf("                  median ms    GB/s   |  best ms    GB/s\n");
    const double am = ta.median(), pm = tp.median();
    std::printf("  adam step      %9.3f %8.2f   | %8.3f %7.2f\n", am * 1e3, gb / am, ta.min() * 1e3, gb / ta.min());
    std::printf("  plain fused    %9.3f %8.2f   | %8.3f %7.2f\n", pm * 1e3, gb / pm, tp.min() * 1e3, gb / tp.min());
    std::printf("  adam bandwidth / plain loop's (medians): %.2f\n", pm / am);
    return 0;
}
