// How well a model trained on an image folder follows its prompts: for --names entries spread evenly
// over the data set, --per-name images are generated from each entry's first caption, and every
// training image is ranked by its distance to each generated image. Printed as a Markdown table:
// top-1 (the named entry is the nearest training image) and top-5 (among the 5 nearest) beside
// chance (1/size, 5/size), the VAE's reconstruction PSNR over the whole data set, and timing.
// Entries sharing one first caption all count as the named one (the table says how many names had
// such twins).
//
//   prompt_following --data emoji_ds --weights run/diffusion.safetensors --grid nearest.png
//
// Feature space (--space): pixels (default), the images box-averaged to 16x16 with their colours, a
// ruler that does not depend on the model being judged, so different models and checkpoints are
// measured alike and a VAE that maps many images to similar latents can neither inflate nor spoil
// the score; or latent, the model's own VAE posterior means (the space it generates in, more
// tolerant of small shifts, but a ruler the model made). include/diffuse/app/prompt_following.hpp
// has the details. The folder is loaded at the model's resolution and channels, transparent
// pixels over --background as train does. --grid: for the first 8 names one row each, the named
// training image, then each generated image beside its nearest training image.
#include "diffuse/app/prompt_following.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/data/image_folder.hpp"
#include "diffuse/io/png.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/models/latent_diffusion.hpp"

#include "common/cli.hpp"
#include "common/colour_flag.hpp"
#include "common/generation_flags.hpp"
#include "common/grid_flags.hpp"
#include "common/output_paths.hpp"
#include "common/preset_dispatch.hpp"

namespace {

constexpr int kSampleBatch = 4;  // the sampling workspace's batch (one name's 4 images at a time)
constexpr int kCodecBatch = 16;  // the VAE's batch when encoding and reconstructing the data set
constexpr int kGridNames = 8;

struct Flags {
    std::string data, weights, space = "pixels", background = "ffffff";
    int names = 200, per_name = 4;
    cli::GenerationFlags gen;  // steps, sampler, guidance, seed, threads, grid (prompt and n unused)
    cli::GridFlags look;       // --scale, --captions (on: each row's prompt), --font
};

/// Rows of the first kGridNames names: the named training image, then (generated, its nearest) pairs.
void write_grid(const std::string& path, const diffuse::app::PromptFollowingResult& r,
                const diffuse::data::ImageFolder& data, const cli::GridFlags& look) {
    const int s = r.image_size, c = r.image_channels, per = r.per_name;
    const std::size_t image = std::size_t(s) * s * c;
    const int rows = std::min(kGridNames, int(r.names.size())), cols = 1 + 2 * per;
    std::vector<float> cells(std::size_t(rows) * cols * image);
    for (int y = 0; y < rows; ++y) {
        const auto& name = r.names[std::size_t(y)];
        float* row = cells.data() + std::size_t(y) * cols * image;
        data.image(name.entry, row);
        for (int j = 0; j < per; ++j) {
            const float* gen = r.images.data() + (std::size_t(y) * per + std::size_t(j)) * image;
            std::copy(gen, gen + image, row + std::size_t(1 + 2 * j) * image);
            data.image(name.nearest[std::size_t(j)].front(), row + std::size_t(2 + 2 * j) * image);
        }
    }
    std::vector<std::string> prompts;
    for (int y = 0; y < rows; ++y) prompts.push_back(r.names[std::size_t(y)].prompt);
    cli::write_grid(path, cells.data(), rows * cols, s, s, c, rows, cols, prompts, look);
}

template <class Preset>
int run(const cli::Parser& cli, const Flags& f, const diffuse::data::ImageFolderOptions& base) {
    using namespace diffuse;
    using Model = LatentDiffusion<float, Preset>;
    data::ImageFolderOptions o = base;
    o.resolution = Model::image_size;
    o.channels = Model::image_channels;
    const auto load_start = std::chrono::steady_clock::now();
    const data::ImageFolder folder(f.data, o);
    if (f.names > folder.size())
        cli.fail("--names " + std::to_string(f.names) + " exceeds the " + std::to_string(folder.size()) +
                 " usable entries of " + f.data);
    auto model = std::make_unique<Model>();
    model->load(f.weights);
    std::fprintf(stderr, "loaded %d images and the %s model in %.1f s\n", folder.size(), Preset::name,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count());

    typename Model::SampleOptions sample;
    sample.sampler = cli::sampler_options(f.gen);
    sample.seed = std::uint64_t(f.gen.seed);
    app::PromptFollowingOptions opt;
    opt.names = f.names;
    opt.per_name = f.per_name;
    opt.top_k = std::min(5, folder.size());
    opt.space = f.space == "latent" ? app::FeatureSpace::latent : app::FeatureSpace::pixels;

    const auto start = std::chrono::steady_clock::now();
    const auto progress = [&](int done, int total) {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::fprintf(stderr, "\rname %d/%d, %.1f s", done, total, s);
    };
    const app::PromptFollowingResult r =
        app::measure_prompt_following<kSampleBatch, kCodecBatch>(*model, folder, opt, sample, progress);
    std::fprintf(stderr, "\n");

    std::printf("Prompt-following of %s on %s (%s, %d steps, guidance %g, seed %lld)\n\n", f.weights.c_str(),
                f.data.c_str(), f.gen.sampler.c_str(), f.gen.steps, f.gen.guidance, f.gen.seed);
    std::printf("%s\n", app::markdown_report(r).c_str());
    std::printf(
        "| entry | prompt | rank of the named entry, per image (0 = nearest) | nearest to image 1 |\n"
        "|---:|---|---|---|\n");
    for (std::size_t p = 0; p < std::min<std::size_t>(kGridNames, r.names.size()); ++p) {
        const auto& n = r.names[p];
        std::string ranks;
        for (int rank : n.ranks) ranks += (ranks.empty() ? "" : ", ") + std::to_string(rank);
        std::printf("| %d | %s | %s | %s |\n", n.entry, n.prompt.c_str(), ranks.c_str(),
                    folder.file_name(n.nearest.front().front()).c_str());
    }
    if (!f.gen.grid.empty()) {
        write_grid(f.gen.grid, r, folder, f.look);
        std::printf("\nwrote %s (per row: the named image, then each generated image beside its nearest)\n",
                    f.gen.grid.c_str());
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace diffuse;
    Flags f;
    f.gen.steps = 25;
    cli::Parser cli("prompt_following",
                    "measure how often images generated from an entry's caption are nearest to that entry.\n"
                    "Usage: prompt_following --data DIR --weights FILE [options]");
    cli.option("--data", f.data, "the image folder the model was trained on (images + metadata.jsonl)")
        .option("--weights", f.weights, "the model's weights or training checkpoint (its preset is read from it)")
        .option("--names", f.names, "entries prompted, spread evenly over the data set")
        .option("--per-name", f.per_name, "images generated per entry")
        .option("--steps", f.gen.steps, "sampler steps")
        .option("--sampler", f.gen.sampler, "ddpm, ddim, euler, euler_a, heun or dpmpp_2m (DPM-Solver++ 2M)")
        .option("--sigmas", f.gen.sigmas,
                "noise levels of euler, euler_a, heun and dpmpp_2m: karras (Karras et al.) or timesteps")
        .option("--guidance", f.gen.guidance, "classifier-free guidance scale (1: prompt only, 0: unconditional)")
        .option("--seed", f.gen.seed, "seed; the same seed gives the same images")
        .option("--space", f.space, "where distances are measured: pixels (16x16 box average) or latent (the VAE's)")
        .option("--background", f.background, "RRGGBB colour transparent pixels are composited over (as in train)")
        .option("--grid", f.gen.grid, "write the first 8 names' images beside their nearest training images")
        .option("--threads", f.gen.threads,
                "OpenMP threads (0: OpenMP's default; on a busy machine 1 can be much faster)");
    cli::add_grid_options(cli, f.look, "on: each row's prompt");
    cli.parse(argc, argv);
    cli::settle_captions(f.look, true);
    if (const std::string p = cli::grid_problem(f.look, !f.gen.grid.empty()); !p.empty()) cli.fail(p);

    std::error_code ec;
    if (f.data.empty()) cli.fail("--data DIR is required");
    if (!std::filesystem::is_directory(f.data, ec)) cli.fail("--data " + f.data + ": not a directory");
    if (f.weights.empty()) cli.fail("--weights FILE is required");
    if (!std::ifstream(f.weights, std::ios::binary)) cli.fail("--weights " + f.weights + ": cannot be read");
    if (f.names < 1) cli.fail("--names must be at least 1, not " + std::to_string(f.names));
    if (f.per_name < 1) cli.fail("--per-name must be at least 1, not " + std::to_string(f.per_name));
    if (const std::string problem = cli::validate(f.gen, false); !problem.empty()) cli.fail(problem);
    if (f.space != "pixels" && f.space != "latent") cli.fail("--space must be pixels or latent, not '" + f.space + "'");
    if (!cli::parse_rgb_hex(f.background))
        cli.fail("--background must be six hex digits (RRGGBB), not '" + f.background + "'");
    if (!f.gen.grid.empty())
        if (const std::string p = cli::unwritable_file(f.gen.grid); !p.empty()) cli.fail("--grid: " + p);

    std::string preset;
    try {
        preset = cli::preset_of(f.weights);
    } catch (const std::exception& e) { cli.fail(std::string("--weights: ") + e.what()); }

    if (f.gen.threads > 0) omp_set_num_threads(f.gen.threads);
    data::ImageFolderOptions o;
    o.background = *cli::parse_rgb_hex(f.background);
    try {
        return cli::with_preset(preset, [&]<class Preset>() { return run<Preset>(cli, f, o); });
    } catch (const std::exception& e) {
        std::fprintf(stderr, "prompt_following: %s\n", e.what());
        return 1;
    }
}
