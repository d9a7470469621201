// Encodes and decodes grayscale PNGs through the diffusion model's VAE and prints each image's
// PSNR: how much of an image survives the 8x8x4 latent. 28x28 inputs (Fashion-MNIST's size) are
// padded to the model's 32x32 with black and cropped back after; 32x32 inputs go through as they are.
//
//   reconstruct --out-dir rec/ shoe.png bag.png      (writes rec/shoe.png, rec/bag.png)
//   reconstruct --grid pairs.png shoe.png bag.png    (inputs in a row above, reconstructions below)
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <vector>

#include "diffuse/app/images.hpp"
#include "diffuse/app/reconstruction.hpp"
#include "diffuse/io/png.hpp"
#include "diffuse/models/latent_diffusion.hpp"

#include "common/cli.hpp"
#include "common/grid_flags.hpp"
#include "common/model_files.hpp"
#include "common/output_paths.hpp"

namespace {
using Model = diffuse::LatentDiffusion<float, diffuse::presets::Default>;
constexpr int kBatch = 8;  // the codec workspace's compile-time batch
}  // namespace

int main(int argc, char** argv) {
    using namespace diffuse;
    std::string weights, out_dir, grid;
    int threads = 0;
    cli::GridFlags look;
    std::vector<std::string> inputs;
    cli::Parser cli("reconstruct",
                    "encode and decode 28x28 or 32x32 grayscale PNGs through the VAE; print each one's PSNR.\n"
                    "Usage: reconstruct (--out-dir DIR | --grid FILE.png) [--weights PATH] IMAGE.png...");
    cli.option("--weights", weights, "model weights (default: the shipped models/diffusion.safetensors)")
        .option("--out-dir", out_dir, "where the reconstructions go, named as their inputs")
        .option("--grid", grid, "write the inputs (a row) above their reconstructions (a row) as one PNG")
        .option("--threads", threads, "OpenMP threads (0: OpenMP's default; on a busy machine 1 can be much faster)")
        .positional("IMAGE.png", inputs, "the images to reconstruct (color is converted to gray)");
    cli::add_grid_options(cli, look, "on: \"input\" and \"reconstruction\"");
    cli.parse(argc, argv);
    if (out_dir.empty() && grid.empty()) cli.fail("--out-dir DIR or --grid FILE.png is required");
    if (inputs.empty()) cli.fail("give at least one IMAGE.png");

    if (threads < 0) cli.fail("--threads must not be negative (0: OpenMP's default)");
    cli::settle_captions(look, true);
    if (const std::string p = cli::grid_problem(look, !grid.empty()); !p.empty()) cli.fail(p);
    if (!out_dir.empty())
        if (const std::string p = cli::unwritable_directory(out_dir); !p.empty()) cli.fail("--out-dir: " + p);
    if (!grid.empty())
        if (const std::string p = cli::unwritable_file(grid); !p.empty()) cli.fail("--grid: " + p);
    if (threads > 0) omp_set_num_threads(threads);
    try {
        const auto outputs = out_dir.empty() ? inputs : cli::reconstruction_paths(out_dir, inputs);
        constexpr int S = Model::image_size;
        constexpr std::size_t px = std::size_t(S) * S;
        const int n = int(inputs.size());
        // Read and check every input before the model is loaded: a bad file fails fast.
        std::vector<io::Image> originals;
        std::vector<int> borders;
        std::vector<float> padded(std::size_t(n) * px);
        for (int i = 0; i < n; ++i) {
            io::Image img = io::read_png(inputs[std::size_t(i)], 1);
            int border = 0;
            try {
                border = app::model_input_border(img.height, img.width, img.channels);
            } catch (const std::exception& e) { throw std::runtime_error(inputs[std::size_t(i)] + ": " + e.what()); }
            app::pad_border(img.pixels.data(), img.height, img.width, 1, border, padded.data() + std::size_t(i) * px);
            borders.push_back(border);
            originals.push_back(std::move(img));
            if (!grid.empty() && (originals.back().height != originals.front().height ||
                                  originals.back().width != originals.front().width))
                throw std::runtime_error("--grid needs images of one size: " + inputs[std::size_t(i)] + " is " +
                                         std::to_string(originals.back().width) + "x" +
                                         std::to_string(originals.back().height) + ", " + inputs.front() + " " +
                                         std::to_string(originals.front().width) + "x" +
                                         std::to_string(originals.front().height));
        }
        auto model = std::make_unique<Model>();
        model->load(cli::diffusion_weights(weights, __FILE__));
        std::vector<float> rec(padded.size());
        app::reconstruct_in_chunks<kBatch>(*model, padded.data(), n, rec.data());

        if (!out_dir.empty()) std::filesystem::create_directories(out_dir);
        std::vector<double> scores;
        std::vector<float> back, rows;  // rows: [2, n, h, w, 1], the inputs then their reconstructions
        for (int i = 0; i < n; ++i) {
            const io::Image& img = originals[std::size_t(i)];
            back.resize(img.pixels.size());
            app::crop_border(rec.data() + std::size_t(i) * px, S, S, 1, borders[std::size_t(i)], back.data());
            if (!out_dir.empty()) io::write_png(outputs[std::size_t(i)], img.height, img.width, 1, back.data());
            if (!grid.empty()) {
                rows.resize(2 * std::size_t(n) * back.size());
                std::copy(img.pixels.begin(), img.pixels.end(), rows.begin() + std::ptrdiff_t(i * back.size()));
                std::copy(back.begin(), back.end(), rows.begin() + std::ptrdiff_t((n + i) * back.size()));
            }
            scores.push_back(app::psnr(img.pixels.data(), back.data(), back.size()));
            if (out_dir.empty()) std::printf("%s  PSNR %.2f dB\n", inputs[std::size_t(i)].c_str(), scores.back());
            else
                std::printf("%s -> %s  PSNR %.2f dB\n", inputs[std::size_t(i)].c_str(), outputs[std::size_t(i)].c_str(),
                            scores.back());
        }
        if (n > 1) std::printf("mean PSNR %.2f dB over %d images\n", app::mean_psnr(scores), n);
        if (!grid.empty()) {
            const io::Image& first = originals.front();
            cli::write_grid(grid, rows.data(), 2 * n, first.height, first.width, 1, 2, n, {"input", "reconstruction"},
                            look);
            std::printf("wrote %s (inputs above, reconstructions below)\n", grid.c_str());
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "reconstruct: %s\n", e.what());
        return 1;
    }
}
