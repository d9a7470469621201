// Scores a trained text-to-image model with the shipped Fashion-MNIST classifier: for each class,
// images generated from the training wording "a photo of {a}" ("a photo of an ankle boot") are
// classified and the share recognised as the class is reported (conditional accuracy), per class
// and averaged, beside the classifier's own test accuracy (the ceiling), the VAE's reconstruction
// PSNR on the test images and an FID-style Fréchet distance: the classifier's 256 penultimate
// features of the generated images against those of as many Fashion-MNIST test images (a fixed
// seeded choice, balanced over the classes).
//
// --wordings FILE scores every caption template of the file too (one per line, '#' comments;
// {a}: the name with its article, {n}: the bare name), --per-class images per class each, in a
// second table: per wording the mean and worst class accuracy, the difference to the training
// wording and the Fréchet distance, then the mean over the file's wordings and the worst one.
// Wording w (0: the training one) and class c sample from seed stream (seed, w, c).
//
//   evaluate --per-class 100 --steps 50 --grid classes.png
//   evaluate --per-class 50 --wordings examples/data/heldout_wordings.txt --vae-images 0
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/app/class_prompts.hpp"
#include "diffuse/app/classify.hpp"
#include "diffuse/app/evaluation.hpp"
#include "diffuse/app/frechet_distance.hpp"
#include "diffuse/app/generation.hpp"
#include "diffuse/app/images.hpp"
#include "diffuse/app/reconstruction.hpp"
#include "diffuse/app/reference_images.hpp"
#include "diffuse/app/wordings.hpp"
#include "diffuse/data/fashion_batches.hpp"
#include "diffuse/io/idx.hpp"
#include "diffuse/io/png.hpp"
#include "diffuse/models/latent_diffusion.hpp"
#include "diffuse/train/classifier_training.hpp"

#include "common/cli.hpp"
#include "common/generation_flags.hpp"
#include "common/grid_flags.hpp"
#include "common/model_files.hpp"
#include "common/output_paths.hpp"

namespace {
using Model = diffuse::LatentDiffusion<float, diffuse::presets::Default>;
constexpr int kBatch = 16;          // sampling and codec workspaces' compile-time batch
constexpr int kGridCols = 10;       // samples per class in the grid
constexpr int kMaxPerClass = 1000;  // 10 classes x 1000: the 10,000 test images the FID can compare with

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

int main(int argc, char** argv) {
    using namespace diffuse;
    cli::GenerationFlags f;
    f.n = 100;
    std::string classifier_path, data_dir = io::fashion_mnist_dir(), wordings_path;
    int vae_images = 10000;
    bool raw = false;
    cli::GridFlags look;
    cli::Parser cli("evaluate",
                    "score the text-to-image model: the share of its images that the shipped classifier\n"
                    "assigns to the prompted class (prompt \"a photo of {a}\"), the classifier's test accuracy,\n"
                    "the VAE's test PSNR, and the Frechet distance (FID) of the classifier's 256 penultimate\n"
                    "features of the generated images to those of as many Fashion-MNIST test images.\n"
                    "--wordings FILE also scores each caption template of FILE ({a}: \"an ankle boot\",\n"
                    "{n}: \"ankle boot\"; '#' comments), one table row each; wording w and class c draw\n"
                    "from seed stream (seed, w, c), w = 0 being the training wording.\n"
                    "Usage: evaluate [--per-class N] [--wordings FILE] [--grid FILE.png] [options]");
    cli.option("--per-class", f.n, "images generated per class (and per wording); at most 1000")
        .option("--wordings", wordings_path,
                "also score the caption templates in this file (e.g. examples/data/heldout_wordings.txt)")
        .option("--steps", f.steps, "sampler steps")
        .option("--sampler", f.sampler, "ddpm, ddim, euler, euler_a, heun or dpmpp_2m (DPM-Solver++ 2M)")
        .option("--sigmas", f.sigmas,
                "noise levels of euler, euler_a, heun and dpmpp_2m: karras (Karras et al.) or timesteps")
        .option("--guidance", f.guidance, "classifier-free guidance scale")
        .option("--seed", f.seed, "seed (each wording and class draws from its own stream)")
        .option("--weights", f.weights, "model weights (default: the shipped models/diffusion.safetensors)")
        .option("--classifier", classifier_path,
                "classifier weights (default: the shipped models/fashion_classifier.safetensors)")
        .option("--data", data_dir, "directory of the Fashion-MNIST IDX files")
        .option("--vae-images", vae_images, "test images for the VAE's PSNR (0: skip it, the quick way)")
        .option("--grid", f.grid, "also write a 10x10 grid PNG, one row per class")
        .option("--threads", f.threads, "OpenMP threads (0: OpenMP's default; on a busy machine 1 can be much faster)")
        .flag("--raw-weights", raw, "sample with the trained weights instead of their EMA");
    cli::add_grid_options(cli, look, "on: each row's prompt");
    cli.parse(argc, argv);
    cli::settle_captions(look, true);
    if (const std::string p = cli::grid_problem(look, !f.grid.empty()); !p.empty()) cli.fail(p);
    if (std::string problem = cli::validate(f, false); !problem.empty()) {
        if (problem.starts_with("--n ")) problem = "--per-class" + problem.substr(3);
        cli.fail(problem);
    }
    if (vae_images < 0 || vae_images > 10000) cli.fail("--vae-images must be in 0..10000");
    if (!f.grid.empty() && f.n < kGridCols) cli.fail("--grid needs --per-class of at least 10");
    if (f.n > kMaxPerClass) cli.fail("--per-class must be at most 1000 (the FID compares with as many test images)");
    if (!f.grid.empty())  // before any work: not found after an hour of sampling
        if (const std::string p = cli::unwritable_file(f.grid); !p.empty()) cli.fail("--grid: " + p);
    std::vector<std::string> wordings{std::string(app::kTrainingWording)};
    if (!wordings_path.empty()) {
        try {
            for (auto& w : app::read_wordings(wordings_path)) wordings.push_back(std::move(w));
        } catch (const std::exception& e) { cli.fail(std::string("--wordings: ") + e.what()); }
    }

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

        if (model->image_border != app::kBorder)
            throw std::runtime_error(weights + ": image_border " + std::to_string(model->image_border) +
                                     ", evaluate expects Fashion-MNIST's padding of " + std::to_string(app::kBorder));

        // The FID's real side: as many test images as each wording generates, balanced over classes.
        const int count = f.n * app::kClassCount;
        constexpr int dims = FashionClassifier<float>::features;
        app::FeatureStats reference(dims);
        {
            const auto real =
                app::gather_images(test, app::balanced_reference_indices(test.labels.labels, count, app::kClassCount));
            app::classify_with_features<kBatch>(clf.model, real.data(), count, &reference);
        }

        Model::SampleOptions opt;
        opt.sampler = cli::sampler_options(f);
        opt.use_ema = !raw;
        std::vector<app::WordingScore> scores;
        std::vector<float> images(std::size_t(f.n) * px), cropped(std::size_t(f.n) * side * side);
        std::vector<float> grid(std::size_t(app::kClassCount) * kGridCols * side * side);
        for (std::size_t w = 0; w < wordings.size(); ++w) {
            app::WordingScore& score = scores.emplace_back();
            score.wording = wordings[w];
            app::FeatureStats generated(dims);
            for (int c = 0; c < app::kClassCount; ++c) {
                // Every wording and class its own noise, the same whatever else is scored.
                opt.seed = stream_seed(std::uint64_t(f.seed), std::uint64_t(w), std::uint64_t(c));
                app::generate_in_chunks<kBatch>(*model, app::class_prompt(c, wordings[w]), "", opt, f.n, images.data(),
                                                [](int, int) {});
                app::crop_to_image_size(images.data(), f.n, cropped.data());
                score.accuracy.add(c, app::classify_with_features<kBatch>(clf.model, cropped.data(), f.n, &generated));
                std::fprintf(stderr, "  %-12s %.3f (%.0f s)\n", io::kFashionMnistClasses[std::size_t(c)],
                             score.accuracy.accuracy(c), seconds_since(start));
                if (w == 0 && !f.grid.empty())
                    std::copy(cropped.begin(), cropped.begin() + std::ptrdiff_t(kGridCols * side * side),
                              grid.begin() + std::ptrdiff_t(c) * kGridCols * side * side);
            }
            score.images = generated.count();
            score.fid = app::frechet_distance(generated, reference);
            std::fprintf(stderr, "wording %zu/%zu \"%s\": accuracy %.3f, FID %.2f (%.0f s)\n", w + 1, wordings.size(),
                         wordings[w].c_str(), score.accuracy.mean_accuracy(), score.fid, seconds_since(start));
        }
        summary.fid = scores[0].fid;
        summary.fid_images = scores[0].images;
        std::printf("Model %s; %d images per class, %s %d steps, guidance %g, seed %lld%s.\n\n", weights.c_str(), f.n,
                    f.sampler.c_str(), f.steps, f.guidance, f.seed, raw ? ", raw weights" : "");
        std::printf("%s", app::markdown_report(scores[0].accuracy, summary).c_str());
        if (wordings.size() > 1) {
            std::printf(
                "\nPrompt wordings: the training one, then %zu from %s, %d images per class each. "
                "FID (classifier features): each wording's %d generated images against %d Fashion-MNIST "
                "test images (balanced over the classes) on the classifier's 256 penultimate features.\n\n",
                wordings.size() - 1, wordings_path.c_str(), f.n, count, count);
            std::printf("%s", app::markdown_wording_report(scores).c_str());
        }
        if (!f.grid.empty()) {
            const auto prompts = app::class_prompts();
            cli::write_grid(f.grid, grid.data(), app::kClassCount * kGridCols, side, side, 1, app::kClassCount,
                            kGridCols, {prompts.begin(), prompts.end()}, look);
            std::fprintf(stderr, "wrote %s (one row per class, labels 0-9 top to bottom)\n", f.grid.c_str());
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "evaluate: %s\n", e.what());
        return 1;
    }
}
