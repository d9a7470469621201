// Encodes and decodes grayscale PNGs through the diffusion model's VAE and prints each image's
// PSNR: how much of an image survives the 8x8x4 latent. 28x28 inputs (Fashion-MNIST's size) are
// padded to the model's 32x32 with black and cropped back after; 32x32 inputs go through as they are.
//
//   reconstruct --out-dir rec/ shoe.png bag.png      (writes rec/shoe.png, rec/bag.png)
#include <omp.h>

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
#include "common/model_files.hpp"
#include "common/output_paths.hpp"

namespace {
using Model = diffuse::LatentDiffusion<float, diffuse::presets::Default>;
constexpr int kBatch = 8;  // the codec workspace's compile-time batch
}  // namespace

int main(int argc, char** argv) {
    using namespace diffuse;
    std::string weights, out_dir;
    int threads = 0;
    std::vector<std::string> inputs;
    cli::Parser cli("reconstruct",
                    "encode and decode 28x28 or 32x32 grayscale PNGs through the VAE; print each one's PSNR.\n"
                    "Usage: reconstruct --out-dir DIR [--weights PATH] IMAGE.png...");
    cli.option("--weights", weights, "model weights (default: the shipped models/diffusion.safetensors)")
        .option("--out-dir", out_dir, "where the reconstructions go, named as their inputs")
        .option("--threads", threads, "OpenMP threads (0: OpenMP's default; on a busy machine 1 can be much faster)")
        .positional("IMAGE.png", inputs, "the images to reconstruct (color is converted to gray)");
    cli.parse(argc, argv);
    if (out_dir.empty()) cli.fail("--out-dir is required");
    if (inputs.empty()) cli.fail("give at least one IMAGE.png");

    if (threads < 0) cli.fail("--threads must not be negative (0: OpenMP's default)");
    if (const std::string p = cli::unwritable_directory(out_dir); !p.empty()) cli.fail("--out-dir: " + p);
    if (threads > 0) omp_set_num_threads(threads);
    try {
        const auto outputs = cli::reconstruction_paths(out_dir, inputs);
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
        }
        auto model = std::make_unique<Model>();
        model->load(cli::diffusion_weights(weights, __FILE__));
        std::vector<float> rec(padded.size());
        app::reconstruct_in_chunks<kBatch>(*model, padded.data(), n, rec.data());

        std::filesystem::create_directories(out_dir);
        std::vector<double> scores;
        std::vector<float> back;
        for (int i = 0; i < n; ++i) {
            const io::Image& img = originals[std::size_t(i)];
            back.resize(img.pixels.size());
            app::crop_border(rec.data() + std::size_t(i) * px, S, S, 1, borders[std::size_t(i)], back.data());
            io::write_png(outputs[std::size_t(i)], img.height, img.width, 1, back.data());
            scores.push_back(app::psnr(img.pixels.data(), back.data(), back.size()));
            std::printf("%s -> %s  PSNR %.2f dB\n", inputs[std::size_t(i)].c_str(), outputs[std::size_t(i)].c_str(),
                        scores.back());
        }
        if (n > 1) std::printf("mean PSNR %.2f dB over %d images\n", app::mean_psnr(scores), n);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "reconstruct: %s\n", e.what());
        return 1;
    }
}
