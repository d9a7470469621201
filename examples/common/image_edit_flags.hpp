// The flags of img2img and inpaint beside txt2img's (examples/common/generation_flags.hpp), their
// checks, including the files (input and mask readable images of matching shape, the output
// writable), all made before the model is loaded; and the writing of the results. Program code,
// tested in tests/test_image_edit_programs.cpp.
#ifndef DIFFUSE_EXAMPLES_IMAGE_EDIT_FLAGS_HPP
#define DIFFUSE_EXAMPLES_IMAGE_EDIT_FLAGS_HPP

#include <omp.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "diffuse/app/image_edit.hpp"
#include "diffuse/app/images.hpp"
#include "diffuse/io/byte_image.hpp"
#include "diffuse/io/image.hpp"
#include "diffuse/io/png.hpp"

#include "cli.hpp"
#include "generation_flags.hpp"
#include "grid_flags.hpp"
#include "model_files.hpp"
#include "output_paths.hpp"
#include "preset_dispatch.hpp"
#include "progress_bar.hpp"

namespace cli {

/// The flags of an img2img or inpaint run, as typed.
struct ImageEditFlags {
    GenerationFlags gen;  // --prompt, --negative, --n, the sampler, --seed, --weights, --grid / --out-dir
    std::string input, mask;
    double strength = 0.75;  // inpaint's default is 1
    int jumps = 0;
    double mask_threshold = 0;
    bool no_paste_back = false;
    bool with_input = false;  // the grid starts with the input
    GridFlags look;           // --scale, --captions (on: the row is one prompt), --font
    ImageEditFlags() { gen.n = 4; }
};

/// Limits that keep a typo from running for hours.
inline constexpr int kMaxJumps = 50;

/// "" when `path` can be written, else why not: a file needs an existing writable directory, a
/// directory one above it (the missing directories between are made when writing). Creates nothing.
inline std::string output_problem(const std::string& path, bool directory) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::path p = fs::absolute(path, ec);
    if (ec) return "cannot resolve " + path;
    if (fs::exists(p, ec)) {
        if (directory != fs::is_directory(p, ec))
            return path + (directory ? " exists and is not a directory" : " is a directory");
        return ::access(p.c_str(), W_OK) == 0 ? "" : path + " is not writable";
    }
    if (!directory && !fs::is_directory(p.parent_path(), ec))
        return "the directory " + p.parent_path().string() + " does not exist";
    for (fs::path up = p.parent_path();; up = up.parent_path()) {  // the nearest existing directory above
        if (fs::exists(up, ec)) {
            if (!fs::is_directory(up, ec)) return up.string() + " is not a directory";
            return ::access(up.c_str(), W_OK) == 0 ? "" : "cannot write in " + up.string();
        }
        if (up == up.parent_path()) return "cannot resolve " + path;
    }
}

/// The first problem with the flags (no files read), or "". `inpaint`: the mask is required.
inline std::string validate_edit(const ImageEditFlags& f, bool inpaint) {
    if (f.gen.prompt.empty()) return "--prompt is required";
    if (const std::string g = validate(f.gen); !g.empty()) return g;
    if (f.input.empty()) return "--input IMAGE is required";
    if (inpaint && f.mask.empty()) return "--mask IMAGE is required (white = regenerate, black = keep)";
    if (!(f.strength > 0 && f.strength <= 1)) return "--strength must be in (0, 1], not " + std::to_string(f.strength);
    if (f.jumps < 0 || f.jumps > kMaxJumps)
        return "--jumps must be in [0, " + std::to_string(kMaxJumps) + "], not " + std::to_string(f.jumps);
    if (!(f.mask_threshold >= 0 && f.mask_threshold < 1))
        return "--mask-threshold must be in [0, 1), not " + std::to_string(f.mask_threshold);
    return grid_problem(settled(f.look, true), !f.gen.grid.empty());
}

/// The files: the input (and mask) readable PNG or JPEG, the mask of the input's shape (the same size,
/// or the same aspect ratio, so that it resizes onto it), the output writable. "" or the problem.
inline std::string check_edit_files(const ImageEditFlags& f, bool inpaint) {
    diffuse::io::ByteImage in, mask;
    try {
        in = diffuse::io::read_image(f.input);
    } catch (const std::exception& e) { return std::string("--input: ") + e.what(); }
    if (inpaint) {
        try {
            mask = diffuse::io::read_image(f.mask);
        } catch (const std::exception& e) { return std::string("--mask: ") + e.what(); }
        if (std::int64_t(mask.width) * in.height != std::int64_t(in.width) * mask.height)
            return "--mask: " + std::to_string(mask.width) + "x" + std::to_string(mask.height) +
                   " does not fit the input's " + std::to_string(in.width) + "x" + std::to_string(in.height) +
                   " (it needs the same size or the same aspect ratio)";
    }
    const bool dir = !f.gen.out_dir.empty();
    if (const std::string p = output_problem(dir ? f.gen.out_dir : f.gen.grid, dir); !p.empty())
        return (dir ? "--out-dir: " : "--grid: ") + p;
    return {};
}

/// Writes n images [n, S, S, C] in [-1, 1], the border cropped off, as --grid (one row, after
/// `first` when given: the input) or --out-dir (DIR/0000.png, ...).
inline void write_edit_outputs(const ImageEditFlags& f, const float* images, int n, int S, int C, int border,
                               const float* first = nullptr) {
    using namespace diffuse;
    const int side = S - 2 * border;
    const std::size_t px = std::size_t(side) * side * C;
    const int lead = first ? 1 : 0;
    std::vector<float> cropped(std::size_t(n + lead) * px);
    if (first) app::crop_border(first, S, S, C, border, cropped.data());
    for (int i = 0; i < n; ++i)
        app::crop_border(images + std::size_t(i) * S * S * C, S, S, C, border,
                         cropped.data() + std::size_t(i + lead) * px);
    if (!f.gen.grid.empty()) {
        write_grid(f.gen.grid, cropped.data(), n + lead, side, side, C, 1, n + lead, {f.gen.prompt},
                   settled(f.look, true));
        std::printf("wrote %s (%d images in a row)\n", f.gen.grid.c_str(), n + lead);
        return;
    }
    std::filesystem::create_directories(f.gen.out_dir);
    for (int i = 0; i < n; ++i)
        io::write_png(sample_path(f.gen.out_dir, i), side, side, C, cropped.data() + std::size_t(i + lead) * px);
    std::printf("wrote %d images to %s\n", n, f.gen.out_dir.c_str());
}

/// Registers the flags img2img and inpaint share, after their own.
inline void add_shared_edit_options(Parser& p, ImageEditFlags& f, bool& raw) {
    GenerationFlags& g = f.gen;
    p.option("--negative", g.negative, "steer away from this prompt (empty: the unconditional prompt)")
        .option("--n", g.n, "number of images")
        .option("--steps", g.steps, "sampler steps of a full run (a strength below 1 runs part of them)")
        .option("--sampler", g.sampler, "ddpm, ddim, euler, euler_a, heun or dpmpp_2m (DPM-Solver++ 2M)")
        .option("--sigmas", g.sigmas,
                "noise levels of euler, euler_a, heun and dpmpp_2m: karras (Karras et al.) or timesteps")
        .option("--guidance", g.guidance, "classifier-free guidance scale (1: prompt only, 0: unconditional)")
        .option("--seed", g.seed, "seed; the same seed gives the same images")
        .option("--weights", g.weights, "model weights (default: the shipped models/diffusion.safetensors)")
        .option("--out-dir", g.out_dir, "write DIR/0000.png, DIR/0001.png, ... (one per image)")
        .option("--grid", g.grid, "write all images as one row in a PNG")
        .option("--threads", g.threads, "OpenMP threads (0: OpenMP's default; on a busy machine 1 can be much faster)")
        .flag("--raw-weights", raw, "sample with the trained weights instead of their EMA")
        .option("--progress", g.progress, kProgressHelp);
    add_grid_options(p, f.look, "on: the row is one prompt");
}

/// The model's sampling options from the flags (validated).
template <class Options>
Options edit_sample_options(const ImageEditFlags& f, bool raw) {
    Options o;
    o.sampler = sampler_options(f.gen);
    o.seed = std::uint64_t(f.gen.seed);
    o.use_ema = !raw;
    return o;
}

/// app::edit_in_chunks(input, prompt, opt, n, out, edit) for the flags' prompt and --n, showing the
/// sampling progress on stderr as --progress says. Returns whether the prompt was truncated.
template <int K, class Model, class T, class Edit>
bool edit_with_progress(const ImageEditFlags& f, const T* input, typename Model::SampleOptions opt, T* out, Edit edit) {
    SamplingDisplay shown(*parse_progress(f.gen.progress, stderr), f.gen.n, (f.gen.n + K - 1) / K);  // a run a chunk
    opt.sampler.on_step = shown.callback();
    int made = 0;
    const bool cut = diffuse::app::edit_in_chunks<K, Model>(
        input, f.gen.prompt, opt, f.gen.n, out,
        [&](const auto& inputs, const auto& prompts, const auto& o, auto images, auto& ws) {
            const int truncated = edit(inputs, prompts, o, images, ws);
            shown.images_done(made += K);
            return truncated;
        });
    shown.finish();
    return cut;
}

/// The rest of an editing program's main once its flags are parsed: checks the flags and files
/// (exit 2 naming the problem), then run.template operator()<Preset>(weights) for the weights'
/// preset; any error afterwards is one line and exit 1.
template <class Run>
int run_edit_program(const Parser& p, const char* name, const ImageEditFlags& f, bool inpaint,
                     const std::string& source_file, Run&& run) {
    if (const std::string problem = validate_edit(f, inpaint); !problem.empty()) p.fail(problem);
    if (const std::string problem = check_edit_files(f, inpaint); !problem.empty()) p.fail(problem);
    if (f.gen.threads > 0) omp_set_num_threads(f.gen.threads);
    try {
        const std::string weights = diffusion_weights(f.gen.weights, source_file);
        return with_preset(preset_of(weights),
                           [&]<class Preset>() { return run.template operator()<Preset>(weights); });
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", name, e.what());
        return 1;
    }
}

}  // namespace cli

#endif
