// The real training steps of the Default preset (examples/train.cpp's batch), on 1 and on 2
// threads in alternating rounds, and the peak memory of training beside its compile-time bytes.
//
//   VAE step:        data batch, AutoencoderKL forward/backward, clip, Adam
//   diffusion step:  data batch, frozen VAE encoder, noising, text encoder + UNet forward/backward,
//                    clip, Adam, EMA
//
// Scaling = (seconds on 1 thread) / (seconds on 2 threads), medians of rounds measured in one run.
// Memory: peak RSS (VmHWM) against parameters + gradients + both Adams' moments + EMA + every
// workspace (sizeof of the compile-time-shaped structs) + the data set as loaded.
#include <omp.h>

#include <cstdio>
#include <string>

#include "diffuse/train/latent_diffusion_trainer.hpp"

#include "bench_util.hpp"

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
    const double params = f * (4 * vae + 5 * diffusion);  // values, grads, Adam m, v (+ EMA shadow)
    constexpr int h = Model::latent_size, L = Model::latent_channels;
    const double workspaces =
        double(Model::Vae::workspace_bytes<kBatch>) + double(Model::Text::workspace_bytes<kBatch>) +
        double(Model::Denoiser::workspace_bytes<kBatch>) + sizeof(Model::Vae::EncoderT::Cache<kBatch>) +
        f * kBatch * (2 * 32 * 32 + 10 * h * h * L);  // batches, latents, noise, targets
    const double dataset = double(data.images.pixels.size()) + double(data.labels.labels.size());
    return params + workspaces + dataset;
}

}  // namespace

int main(int argc, char** argv) {
    const int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
    io::FashionMnist data = io::load_fashion_mnist(io::Split::train);
    const double constexpr_bytes = constexpr_training_bytes(data);
    auto model = std::make_unique<Model>(1);
    Trainer trainer(*model, std::move(data), {});

    // Warm: workspaces, OpenMP teams, GEMM packing buffers; the latent scale for the diffusion phase.
    for (int threads : {1, 2}) {
        omp_set_num_threads(threads);
        trainer.vae_step();
    }
    trainer.measure_latent_scale();
    for (int threads : {1, 2}) {
        omp_set_num_threads(threads);
        trainer.diffusion_step();
    }

    struct Case {
        const char* name;
        std::function<void()> step;
        Timing t1, t2;
    };
    Case cases[] = {{"VAE step", [&] { trainer.vae_step(); }, {}, {}},
                    {"diffusion step (text encoder + UNet)", [&] { trainer.diffusion_step(); }, {}, {}}};
    for (int r = 0; r < rounds; ++r)
        for (Case& c : cases) {
            omp_set_num_threads(1);
            time_once(c.t1, c.step, 2);
            omp_set_num_threads(2);
            time_once(c.t2, c.step, 2);
        }

    std::printf("Default preset, batch %d, %d rounds of 2 steps, medians\n\n", kBatch, rounds);
    Table table({"step", "1 thread", "2 threads", "images/s (2 threads)", "scaling 2 vs 1"},
                {false, true, true, true, true});
    for (const Case& c : cases)
        table.row({c.name, fmt("%.1f ms", 1e3 * c.t1.median()), fmt("%.1f ms", 1e3 * c.t2.median()),
                   fmt("%.0f", kBatch / c.t2.median()), fmt("%.2f×", c.t1.median() / c.t2.median())});
    table.print();
    const double rss = peak_rss_bytes();
    std::printf(
        "\npeak RSS %.1f MB; compile-time bytes (parameters, gradients, Adam, EMA, workspaces, data set) "
        "%.1f MB; ratio %.3f\n",
        rss / 1e6, constexpr_bytes / 1e6, rss / constexpr_bytes);
}
