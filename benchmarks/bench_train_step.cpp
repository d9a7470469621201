// The real training steps of the Default preset (examples/train.cpp's batch), on 1 and on 2
// threads, timed by Google Benchmark (benchmarks/gbench.hpp: repetitions in random interleaved
// order, medians, an images/s counter), and the peak memory of training beside its compile-time bytes.
//
//   cmake -S . -B build -DDIFFUSE_BUILD_BENCHMARKS=ON && cmake --build build --target bench_train_step
//   build/benchmarks/bench_train_step [--benchmark_* flags]
//
//   VAE step:        data batch, AutoencoderKL forward/backward, clip, Adam
//   diffusion step:  data batch, frozen VAE encoder, noising, text encoder + UNet forward/backward,
//                    clip, Adam, EMA
//
// Scaling from 1 to 2 threads: the ratio of the two medians (threads:1 and threads:2 rows).
// Memory: peak RSS (VmHWM) against parameters + gradients + both Adams' moments + EMA + every
// workspace (sizeof of the compile-time-shaped structs) + the data set as loaded.
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "diffuse/train/latent_diffusion_trainer.hpp"

#include "bench_util.hpp"
#include "gbench.hpp"

using namespace diffuse;
using namespace diffuse::bench;

namespace {

constexpr int kBatch = 32;  // examples/train.cpp's kBatch
using Model = LatentDiffusion<float, presets::Default>;
using Trainer = LatentDiffusionTrainer<float, presets::Default, kBatch>;

/// The bytes training needs by construction (what a perfect allocator would hold).
double constexpr_training_bytes(const io::FashionMnist& data) {
    constexpr double f = sizeof(float);
    constexpr double vae = Model::vae_parameter_count, diffusion = Model::diffusion_parameter_count;
    // values, grads, Adam m, v (+ EMA shadow), + the second half's gradients (train/batch_halves.hpp)
    constexpr int second = Trainer::Pass::parts - 1;
    const double params = f * ((4 + second) * vae + (5 + second) * diffusion);
    constexpr int h = Model::latent_size, L = Model::latent_channels;
    const double workspaces = double(Trainer::VaeTrainPass::workspace_bytes) + double(Trainer::Pass::workspace_bytes) +
                              sizeof(Model::Vae::EncoderT::Cache<kBatch>) +
                              f * kBatch * (4 * 32 * 32 + 11 * h * h * L);  // batches, latents, noise, targets
    const double dataset = double(data.images.pixels.size()) + double(data.labels.labels.size());
    return params + workspaces + dataset;
}

}  // namespace

int main(int argc, char** argv) {
    if (!init_benchmark(argc, argv, {"--benchmark_repetitions=5"}).empty()) {
        std::fprintf(stderr, "bench_train_step: takes only --benchmark_* flags\n");
        return 2;
    }
    io::FashionMnist data = io::load_fashion_mnist(io::Split::train);
    const double constexpr_bytes = constexpr_training_bytes(data);
    auto model = std::make_unique<Model>(1);
    Trainer trainer(*model, std::move(data), {});

    // Warm: workspaces, OpenMP teams, GEMM packing buffers; the latent scale for the diffusion phase.
    // The steps' own check: every loss they report is finite.
    const auto check_finite = [](double loss, const char* what) {
        if (!std::isfinite(loss)) fail(fmt("%s: loss %g is not finite", what, loss));
    };
    for (int threads : {1, 2}) {
        omp_set_num_threads(threads);
        check_finite(trainer.vae_step().loss, "VAE step");
    }
    trainer.measure_latent_scale();
    for (int threads : {1, 2}) {
        omp_set_num_threads(threads);
        check_finite(trainer.diffusion_step().loss, "diffusion step");
    }

    for (int threads : {1, 2}) {
        const auto add = [&](const char* name, auto step) {
            benchmark::RegisterBenchmark(fmt("%s/threads:%d", name, threads).c_str(),
                                         [=, &trainer](benchmark::State& st) {
                                             omp_set_num_threads(threads);
                                             for (auto _ : st) step(trainer);
                                             st.counters["images/s"] = per_second(kBatch);
                                         })
                ->Unit(benchmark::kMillisecond)
                ->UseRealTime();
        };
        add("VAE step", [](Trainer& t) { t.vae_step(); });
        add("diffusion step (text encoder + UNet)", [](Trainer& t) { t.diffusion_step(); });
    }
    std::printf("Default preset, batch %d\n", kBatch);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    const double rss = peak_rss_bytes();
    std::printf(
        "\npeak RSS %.1f MB; compile-time bytes (parameters, gradients, Adam, EMA, workspaces, data set) "
        "%.1f MB; ratio %.3f\n",
        rss / 1e6, constexpr_bytes / 1e6, rss / constexpr_bytes);
}
