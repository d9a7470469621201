// Text to image: samples pictures from a prompt with a trained latent diffusion model and writes them
// as 8-bit PNGs (grayscale or RGB, as the model was trained; the padding its data set added, such as
// Fashion-MNIST's 2 pixels around 28x28, cropped off), one file per sample or one grid. The preset
// (image size, channels, vocabulary) is read from the weights file.
//
//   txt2img --prompt "a photo of an ankle boot" --n 16 --grid boots.png
//   txt2img --weights models/emoji.safetensors --prompt "red apple" --grid apple.png
//   txt2img --prompts prompts.txt --n 4 --grid rows.png   (one row of 4 per line of the file, captioned)
//   txt2img --prompt "a bag" --grid bags.png --scale 1    (28-pixel cells: no upscale)
//   txt2img --prompt "a pair of trousers" --negative "a dress" --sampler euler_a --out-dir out/
//   txt2img --lora sparkly.safetensors --lora-strength 0.8 --prompt "a photo of a sparkly bag" --grid bags.png
//
// Without --weights the shipped model models/diffusion.safetensors is used, looked up in the
// source tree this program was built from, then in ./models/ (examples/common/model_files.hpp).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/app/generation.hpp"
#include "diffuse/app/images.hpp"
#include "diffuse/io/png.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/models/latent_diffusion.hpp"
#include "diffuse/models/lora.hpp"

#include "common/cli.hpp"
#include "common/generation_flags.hpp"
#include "common/grid_flags.hpp"
#include "common/model_files.hpp"
#include "common/output_paths.hpp"
#include "common/preset_dispatch.hpp"
#include "common/progress_bar.hpp"

namespace {
// The sampling workspace is sized at compile time; --n images are drawn in batches of this many.
constexpr int kBatch = 16;

/// Low-rank adapters on top of the base model (lora_train's file): --lora FILE --lora-strength S.
struct LoraFlags {
    std::string file;
    double strength = 1;
    bool merge = false;
};

template <class Preset>
int run(const cli::GenerationFlags& f, const cli::GridFlags& look, const std::string& weights, bool raw,
        const LoraFlags& lf) {
    using namespace diffuse;
    using Model = LatentDiffusion<float, Preset>;
    auto model = std::make_unique<Model>();
    model->load(weights);
    std::unique_ptr<LoraAdapters<float, Preset>> lora;
    if (!lf.file.empty()) {
        lora = std::make_unique<LoraAdapters<float, Preset>>(*model, io::SafetensorsFile(lf.file), lf.strength);
        if (lf.merge) lora->merge();
    }
    typename Model::SampleOptions opt;
    opt.sampler = cli::sampler_options(f);
    opt.seed = std::uint64_t(f.seed);
    opt.use_ema = !raw;
    if (!f.out_dir.empty()) std::filesystem::create_directories(f.out_dir);

    constexpr int S = Model::image_size, C = Model::image_channels;
    const int b = model->image_border, side = S - 2 * b;
    const auto prompts =
        f.prompts_file.empty() ? std::vector<std::string>{f.prompt} : cli::read_prompts(f.prompts_file);
    const int total = f.n * int(prompts.size());
    // On stderr (stdout stays as it was); generate_in_chunks runs a full chunk at once, the rest one by one.
    cli::SamplingDisplay shown(*cli::parse_progress(f.progress, stderr), total,
                               int(prompts.size()) * (f.n / kBatch + f.n % kBatch));
    opt.sampler.on_step = shown.callback();
    std::vector<float> images(std::size_t(total) * S * S * C);
    for (std::size_t p = 0; p < prompts.size(); ++p) {  // each prompt draws from the same seeds: rows compare
        const int before = int(p) * f.n;
        const bool cut = app::generate_in_chunks<kBatch>(
            *model, prompts[p], f.negative, opt, f.n, images.data() + p * std::size_t(f.n) * S * S * C,
            [&](int c, int) { shown.images_done(before + std::min((c + 1) * kBatch, f.n)); });
        shown.finish();
        if (cut)
            std::fprintf(stderr, "txt2img: warning: \"%s\" was cut to %d tokens\n", prompts[p].c_str(),
                         Model::context_length);
        if (const int unknown = model->tokenizer.unknown_count(prompts[p]); unknown > 0)
            std::fprintf(stderr, "txt2img: note: %d token%s of \"%s\" stand%s for words outside the vocabulary\n",
                         unknown, unknown == 1 ? "" : "s", prompts[p].c_str(), unknown == 1 ? "s" : "");
    }

    const std::size_t px = std::size_t(side) * side * C;
    std::vector<float> cropped(std::size_t(total) * px);
    for (int i = 0; i < total; ++i)
        app::crop_border(images.data() + std::size_t(i) * S * S * C, S, S, C, b, cropped.data() + std::size_t(i) * px);
    if (!f.grid.empty()) {
        const auto g = prompts.size() > 1 ? app::GridLayout{int(prompts.size()), f.n} : app::grid_layout(f.n);
        // A row per prompt; one prompt's rows all carry it.
        std::vector<std::string> captions(std::size_t(g.rows), prompts.front());
        if (prompts.size() > 1) captions = prompts;
        cli::write_grid(f.grid, cropped.data(), total, side, side, C, g.rows, g.cols, captions, look);
        std::printf("wrote %s (%d images, %dx%d)\n", f.grid.c_str(), total, g.rows, g.cols);
    } else {
        for (int i = 0; i < total; ++i)
            io::write_png(cli::sample_path(f.out_dir, i), side, side, C, cropped.data() + std::size_t(i) * px);
        std::printf("wrote %d images to %s\n", total, f.out_dir.c_str());
    }
    return 0;
}
}  // namespace

int main(int argc, char** argv) {
    using namespace diffuse;
    cli::GenerationFlags f;
    bool raw = false;
    LoraFlags lf;
    cli::GridFlags look;
    cli::Parser cli("txt2img",
                    "generate images from a text prompt with a trained model (its preset read from the weights).\n"
                    "Usage: txt2img --prompt TEXT (--out-dir DIR | --grid FILE.png) [options]");
    cli.option("--prompt", f.prompt, "what to draw, e.g. \"a photo of a sneaker\"")
        .option("--prompts", f.prompts_file, "a file of prompts, one per line: --n images each (a grid row each)")
        .option("--negative", f.negative, "steer away from this prompt (empty: the unconditional prompt)")
        .option("--n", f.n, "number of images")
        .option("--steps", f.steps, "sampler steps")
        .option("--sampler", f.sampler, "ddpm, ddim, euler, euler_a, heun or dpmpp_2m (DPM-Solver++ 2M)")
        .option("--sigmas", f.sigmas,
                "noise levels of euler, euler_a, heun and dpmpp_2m: karras (Karras et al.) or timesteps")
        .option("--guidance", f.guidance, "classifier-free guidance scale (1: prompt only, 0: unconditional)")
        .option("--seed", f.seed, "seed; the same seed gives the same images")
        .option("--weights", f.weights, "model weights (default: the shipped models/diffusion.safetensors)")
        .option("--out-dir", f.out_dir, "write DIR/0000.png, DIR/0001.png, ... (one per image)")
        .option("--grid", f.grid, "write all images as one grid PNG")
        .option("--threads", f.threads, "OpenMP threads (0: OpenMP's default; on a busy machine 1 can be much faster)")
        .flag("--raw-weights", raw, "sample with the trained weights instead of their EMA")
        .option("--lora", lf.file, "low-rank adapters (and trigger word) from lora_train, on top of the model")
        .option("--lora-strength", lf.strength, "how strongly the adapters act: 0 is the base model, 1 as trained")
        .flag("--lora-merge", lf.merge, "merge the adapters into the weights before sampling (same images, faster)")
        .option("--progress", f.progress, cli::kProgressHelp);
    cli::add_grid_options(cli, look, "on with --prompts, where a row is one prompt");
    cli.parse(argc, argv);
    if (const std::string problem = cli::validate(f); !problem.empty()) cli.fail(problem);
    cli::settle_captions(look, !f.prompts_file.empty());
    if (const std::string problem = cli::grid_problem(look, !f.grid.empty()); !problem.empty()) cli.fail(problem);
    if (!lf.file.empty() && !std::filesystem::is_regular_file(lf.file))
        cli.fail("--lora '" + lf.file + "' is not a file");
    if ((lf.strength != 1 || lf.merge) && lf.file.empty())
        cli.fail("--lora-strength and --lora-merge need --lora FILE");
    if (!f.prompts_file.empty()) {
        try {
            cli::read_prompts(f.prompts_file);  // before any work: a bad file is a bad flag
        } catch (const std::exception& e) { cli.fail(std::string("--prompts: ") + e.what()); }
    }
    // Before the model loads: an output that cannot be written is found now, not after sampling.
    if (!f.grid.empty()) {
        if (const std::string p = cli::unwritable_file(f.grid); !p.empty()) cli.fail("--grid: " + p);
    } else if (const std::string p = cli::unwritable_directory(f.out_dir); !p.empty()) {
        cli.fail("--out-dir: " + p);
    }

    if (f.threads > 0) omp_set_num_threads(f.threads);
    try {
        const std::string weights = cli::diffusion_weights(f.weights, __FILE__);
        return cli::with_preset(cli::preset_of(weights),
                                [&]<class Preset>() { return run<Preset>(f, look, weights, raw, lf); });
    } catch (const std::exception& e) {
        std::fprintf(stderr, "txt2img: %s\n", e.what());
        return 1;
    }
}
