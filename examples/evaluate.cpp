// Scores a trained text-to-image model with the shipped Fashion-MNIST classifier: for each class,
// images generated from "a photo of {a} <class>" are classified and the share recognised as the
// class is reported (conditional accuracy), per class and averaged, beside the classifier's own
// test accuracy (the ceiling) and the VAE's reconstruction PSNR on the 10,000 test images.
// Prints a Markdown table; --grid also writes one row of samples per class.
//
//   evaluate --per-class 100 --steps 50 --grid classes.png
#include <chrono>
#include <cstdio>
#include <exception>
#include <memory>
#include <vector>

#include <omp.h>

#include "common/cli.hpp"
#include "common/generation_flags.hpp"
#include "common/model_files.hpp"
#include "diffuse/app/class_prompts.hpp"
#include "diffuse/app/classify.hpp"
#include "diffuse/app/evaluation.hpp"
#include "diffuse/app/generation.hpp"
#include "diffuse/app/images.hpp"
#include "diffuse/app/reconstruction.hpp"
#include "diffuse/data/fashion_batches.hpp"
#include "diffuse/io/idx.hpp"
#include "diffuse/io/png.hpp"
#include "diffuse/models/latent_diffusion.hpp"
#include "diffuse/train/classifier_training.hpp"

namespace {
using Model = diffuse::LatentDiffusion<float, diffuse::presets::Default>;
constexpr int kBatch = 16;    // sampling and codec workspaces' compile-time batch
constexpr int kGridCols = 10;  // samples per class in the grid

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

int main(int argc, char** argv) {
    using namespace diffuse;
    cli::GenerationFlags f;
    f.n = 100;
    std::string classifier_path, data_dir = io::fashion_mnist_dir();
    int vae_images = 10000;
    bool raw = false;
    cli::Parser cli("evaluate",
                    "score the text-to-image model: the share of its images that the shipped classifier\n"
                    "assigns to the prompted class, the classifier's test accuracy and the VAE's test PSNR.\n"
                    "Usage: evaluate [--per-class N] [--grid FILE.png] [options]");
    cli.option("--per-class", f.n, "images generated per class")
        .option("--steps", f.steps, "sampler steps")
        .option("--sampler", f.sampler, "ddpm, ddim, euler or euler_a")
        .option("--guidance", f.guidance, "classifier-free guidance scale")
        .option("--seed", f.seed, "seed (each class draws from its own stream)")
        .option("--weights", f.weights, "model weights (default: the shipped models/diffusion.safetensors)")
        .option("--classifier", classifier_path,
                "classifier weights (default: the shipped models/fashion_classifier.safetensors)")
        .option("--data", data_dir, "directory of the Fashion-MNIST IDX files")
        .option("--vae-images", vae_images, "test images for the VAE's PSNR (0: skip)")
        .option("--grid", f.grid, "also write a 10x10 grid PNG, one row per class")
        .option("--threads", f.threads, "OpenMP threads (0: OpenMP's default; on a busy machine 1 can be much faster)")
        .flag("--raw-weights", raw, "sample with the trained weights instead of their EMA");
    cli.parse(argc, argv);
    if (std::string problem = cli::validate(f, false); !problem.empty()) {
        if (problem.starts_with("--n ")) problem = "--per-class" + problem.substr(3);
        cli.fail(problem);
    }
    if (vae_images < 0 || vae_images > 10000) cli.fail("--vae-images must be in 0..10000");
    if (!f.grid.empty() && f.n < kGridCols) cli.fail("--grid needs --per-class of at least 10");

    if (f.threads > 0) omp_set_num_threads(f.threads);
    try {
        const auto start = std::chrono::steady_clock::now();
        const auto test = io::load_fashion_mnist(io::Split::test, data_dir);
        app::LoadedClassifier clf(cli::classifier_weights(classifier_path, __FILE__));
        const std::string weights = cli::diffusion_weights(f.weights, __FILE__);
        auto model = std::make_unique<Model>();
        model->load(weights);

        app::EvaluationSummary summary;
        summary.classifier_accuracy = evaluate_classifier<100>(clf.model, test);
        std::fprintf(stderr, "classifier test accuracy %.4f (%.0f s)\n", summary.classifier_accuracy,
                     seconds_since(start));

        static_assert(Model::image_size == app::kModelSide && Model::image_channels == 1,
                      "evaluate: expects a model of 32x32 grayscale images");
        constexpr int S = Model::image_size, side = app::kImageSide;
        constexpr std::size_t px = std::size_t(S) * S;
        if (vae_images > 0) {
            std::vector<float> x(std::size_t(vae_images) * px), y(x.size());
            for (int i = 0; i < vae_images; ++i)
                data::pad_and_scale<float>(test.images.image(i), View<float, S, S, 1>(x.data() + std::size_t(i) * px));
            app::reconstruct_in_chunks<kBatch>(*model, x.data(), vae_images, y.data());
            summary.vae_psnr = app::mean_psnr(app::psnr_per_image(x.data(), y.data(), vae_images, px));
            summary.vae_images = vae_images;
            std::fprintf(stderr, "VAE test PSNR %.2f dB over %d images (%.0f s)\n", summary.vae_psnr, vae_images,
                         seconds_since(start));
        }

        Model::SampleOptions opt;
        opt.sampler.method = *cli::parse_sampler(f.sampler);
        opt.sampler.steps = f.steps;
        opt.sampler.guidance = f.guidance;
        opt.use_ema = !raw;
        app::ConditionalAccuracy acc;
        std::vector<float> images(std::size_t(f.n) * px), cropped(std::size_t(f.n) * side * side);
        std::vector<float> grid(std::size_t(app::kClassCount) * kGridCols * side * side);
        for (int c = 0; c < app::kClassCount; ++c) {
            opt.seed = stream_seed(std::uint64_t(f.seed), std::uint64_t(c));  // classes never share noise
            app::generate_in_chunks<kBatch>(*model, app::class_prompt(c), "", opt, f.n, images.data(), [](int, int) {});
            app::crop_to_image_size(images.data(), f.n, cropped.data());
            acc.add(c, app::classify<kBatch>(clf.model, cropped.data(), f.n));
            if (!f.grid.empty())
                std::copy(cropped.begin(), cropped.begin() + std::ptrdiff_t(kGridCols * side * side),
                          grid.begin() + std::ptrdiff_t(c) * kGridCols * side * side);
            std::fprintf(stderr, "%-12s %.3f (%.0f s)\n", io::kFashionMnistClasses[std::size_t(c)], acc.accuracy(c),
                         seconds_since(start));
        }
        std::printf("Model %s; %d images per class, %s %d steps, guidance %g, seed %lld%s.\n\n", weights.c_str(), f.n,
                    f.sampler.c_str(), f.steps, f.guidance, f.seed, raw ? ", raw weights" : "");
        std::printf("%s", app::markdown_report(acc, summary).c_str());
        if (!f.grid.empty()) {
            io::write_png_grid(f.grid, grid.data(), app::kClassCount * kGridCols, side, side, 1, app::kClassCount,
                               kGridCols);
            std::fprintf(stderr, "wrote %s (one row per class, labels 0-9 top to bottom)\n", f.grid.c_str());
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "evaluate: %s\n", e.what());
        return 1;
    }
}
