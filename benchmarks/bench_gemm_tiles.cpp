// The float GEMM's register tiles side by side, on the products the layers run: GFLOP/s of every
// tile shape (MR rows × NV vectors) on one thread, beside the tile core/gemm_kernel.hpp picks for
// the shape, and this core's FMA peak (a register-resident FMA loop). This is how the tiles of
// gemm_kernel.hpp were chosen; rerun it on a new kind of CPU.
//
//   cmake -S . -B build-bench -DDIFFUSE_BUILD_BENCHMARKS=ON && cmake --build build-bench --target bench_gemm_tiles
//   taskset -c 1 build-bench/benchmarks/bench_gemm_tiles [rounds=5]
//
// Each product is checked against double dot products before it is timed (a wrong one aborts).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "diffuse/core/gemm_kernel.hpp"
#include "diffuse/core/rng.hpp"

#include "bench_util.hpp"

using namespace diffuse;
using namespace diffuse::detail::packed;

namespace {

struct Product {
    const char* name;
    int M, N, K;
    bool trans_a, trans_b;
};

// Conv2d at batch 32 (kConvGemmRows = 256 rows a product): forward [rows, Cout] = col · Wᵀ, weight
// gradient [Cout, patch] = dyᵀ · col, input gradient [rows, patch] = dy · W; then the rest.
const Product kProducts[] = {
    {"SGEMM 1024³", 1024, 1024, 1024, false, false},      {"conv 64→64 fwd", 256, 64, 576, false, true},
    {"conv 64→64 dW", 64, 576, 256, true, false},         {"conv 64→64 dx", 256, 576, 64, false, false},
    {"conv 128→128 fwd", 256, 128, 1152, false, true},    {"conv 128→128 dW", 128, 1152, 256, true, false},
    {"conv 128→128 dx", 256, 1152, 128, false, false},    {"conv 16→16 32² fwd", 1024, 16, 144, false, true},
    {"conv 16→16 32² dW", 16, 144, 1024, true, false},    {"conv 16→16 32² dx", 1024, 144, 16, false, false},
    {"attention head 64·64·32", 64, 64, 32, false, true}, {"Linear 128→512", 8192, 512, 128, false, true},
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

template <class Tl, bool TA, bool TB>
void run(const Product& p, const float* A, const float* B, float* C) {
    gemm_add_tiled<Tl, TA, TB>(p.M, p.N, p.K, A, TA ? p.M : p.K, B, TB ? p.K : p.N, C, p.N);
}

/// GFLOP/s of one tile on one product: best of `rounds` timings of ≥ 0.1 s each.
template <class Tl>
double rate(const Product& p, const std::vector<float>& A, const std::vector<float>& B, std::vector<float>& C,
            int rounds) {
    const auto call = [&] {
        if (p.trans_a) run<Tl, true, false>(p, A.data(), B.data(), C.data());
        else if (p.trans_b) run<Tl, false, true>(p, A.data(), B.data(), C.data());
        else run<Tl, false, false>(p, A.data(), B.data(), C.data());
    };
    std::fill(C.begin(), C.end(), 0.f);
    call();
    for (int s = 0; s < 16; ++s) {
        const int i = (s * 37) % p.M, j = (s * 101) % p.N;
        double want = 0;
        for (int k = 0; k < p.K; ++k)
            want += double(p.trans_a ? A[std::size_t(k) * p.M + i] : A[std::size_t(i) * p.K + k]) *
                    (p.trans_b ? B[std::size_t(j) * p.K + k] : B[std::size_t(k) * p.N + j]);
        if (std::abs(want - C[std::size_t(i) * p.N + j]) > 1e-4 * (1 + std::abs(want))) {
            std::fprintf(stderr, "bench_gemm_tiles: %s is wrong at (%d, %d)\n", p.name, i, j);
            std::exit(1);
        }
    }
    const double flops = 2.0 * p.M * p.N * p.K;
    const int calls = std::max(1, int(2e10 / 100 / flops));  // ~0.1 s at 200 GFLOP/s
    double best = 1e30;
    for (int r = 0; r < rounds; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int c = 0; c < calls; ++c) call();
        best = std::min(best, seconds_since(t0) / calls);
    }
    return flops / best * 1e-9;
}

/// A register-resident FMA loop: 16 independent chains, the core's FP32 peak.
/// GFLOP/s of bench_util's FMA loop on this thread (best of 3): 12 chains fit AVX2's 16 registers,
/// where 16 accumulators would spill and report a third of the peak.
double fma_peak() {
    bench::FmaPeak peak;
    peak.threads = 1;
    peak.iters = 1 << 22;
    double best = 1e30;
    for (int r = 0; r < 3; ++r) best = std::min(best, bench::seconds([&] { peak.run(); }));
    return peak.flops() / best * 1e-9;
}

template <class... Tiles>
void table(int rounds) {
    std::printf("%-26s", "product (M×N×K)");
    ((std::printf(" %5d×%d", Tiles::MR, Tiles::NV)), ...);
    std::printf("  picked\n");
    Rng rng(1);
    for (const Product& p : kProducts) {
        std::vector<float> A(std::size_t(p.M) * p.K), B(std::size_t(p.K) * p.N), C(std::size_t(p.M) * p.N);
        for (float& v : A) v = float(rng.normal());
        for (float& v : B) v = float(rng.normal());
        std::printf("%-26s", p.name);
        ((std::printf(" %7.0f", rate<Tiles>(p, A, B, C, rounds))), ...);
        std::printf("  %d×%d\n", tile_rows<float>(p.N), tile_vectors<float>(p.N));
    }
}

/// Tile<float, NV> with another MR, for the table.
template <int MR_, int NV_>
struct Custom {
    using V = xsimd::batch<float>;
    static constexpr int W = int(V::size), MR = MR_, NV = NV_, NR = NV * W;
    static constexpr int KC = Tile<float, 1>::KC, MC = 16 * MR, NC = 64 * NR;  // KC is every tile's
};

}  // namespace

int main(int argc, char** argv) {
    const int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
    std::printf("bench_gemm_tiles: %zu floats a vector, %d vector registers; GFLOP/s on one thread\n",
                xsimd::batch<float>::size, vector_registers<float>);
    std::printf("FMA peak: %.0f GFLOP/s\n\n", fma_peak());
    if constexpr (vector_registers<float> == 32)
        table<Custom<12, 1>, Custom<24, 1>, Custom<6, 2>, Custom<8, 2>, Custom<12, 2>, Custom<14, 2>, Custom<8, 3>,
              Custom<6, 4>>(rounds);
    else table<Custom<12, 1>, Custom<8, 1>, Custom<6, 2>, Custom<4, 2>, Custom<4, 3>, Custom<3, 4>>(rounds);
}
