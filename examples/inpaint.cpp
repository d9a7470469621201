// Inpainting: redraws the masked part of an input picture from a prompt with a trained latent
// diffusion model (an ordinary one: no inpainting UNet). The mask is an image of the input's shape:
// white = regenerate, black = keep (gray between: regenerate, blended back by its value when the
// kept pixels are pasted back). Input and mask are fitted to the model as its training images were;
// the mask is averaged over each latent cell, and a cell above --mask-threshold is regenerated.
// At every step the kept cells are set to the input's latents noised to the step's level;
// --jumps J re-noises each step back and redoes it J times (RePaint), for a better joined seam at
// J + 1 times the model calls. The kept pixels are pasted back from the input at the end
// (--no-paste-back to see what the model alone makes of them).
//
//   inpaint --input sneaker.png --mask lower_half.png --prompt "an ankle boot" --grid out.png

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "diffuse/app/image_edit.hpp"
#include "diffuse/io/image.hpp"
#include "diffuse/models/latent_diffusion.hpp"

#include "common/cli.hpp"
#include "common/generation_flags.hpp"
#include "common/image_edit_flags.hpp"

namespace {
constexpr int kBatch = 4;  // the sampling workspace's compile-time batch; --n images are drawn in such chunks

template <class Preset>
int run(const cli::ImageEditFlags& f, const std::string& weights, bool raw) {
    using namespace diffuse;
    using Model = LatentDiffusion<float, Preset>;
    constexpr int S = Model::image_size, C = Model::image_channels;
    auto model = std::make_unique<Model>();
    model->load(weights);
    const auto opt = cli::edit_sample_options<typename Model::SampleOptions>(f, raw);
    app::InpaintOptions edit;
    edit.strength = f.strength;
    edit.jumps = f.jumps;
    edit.threshold = f.mask_threshold;
    edit.paste_back = !f.no_paste_back;
    const int b = model->image_border;
    std::vector<float> input(std::size_t(S) * S * C), images(std::size_t(f.gen.n) * S * S * C);
    app::model_image(io::read_image(f.input), S, C, b, input.data());
    auto masks = make<Tensor<float, kBatch, S, S>>();
    app::model_mask(io::read_image(f.mask), S, b, masks->data());
    for (int k = 1; k < kBatch; ++k) std::copy_n(masks->data(), S * S, masks->data() + std::size_t(k) * S * S);
    const bool cut = cli::edit_with_progress<kBatch, Model>(
        f, input.data(), opt, images.data(),
        [&](const auto& inputs, const auto& prompts, const auto& o, auto out, auto& ws) {
            return app::inpaint(*model, inputs, *masks, prompts, f.gen.negative, o, edit, out, ws);
        });
    if (cut) std::fprintf(stderr, "inpaint: warning: the prompt was cut to %d tokens\n", Model::context_length);
    std::vector<float> shown;  // the input with the region to regenerate in gray, first in the grid
    if (f.with_input) {
        shown = input;
        for (std::size_t p = 0; p < std::size_t(S) * S; ++p)
            for (int c = 0; c < C; ++c) shown[p * C + c] = input[p * C + c] * (1 - masks->data()[p]);
    }
    cli::write_edit_outputs(f, images.data(), f.gen.n, S, C, b, f.with_input ? shown.data() : nullptr);
    return 0;
}
}  // namespace

int main(int argc, char** argv) {
    using namespace diffuse;
    cli::ImageEditFlags f;
    f.strength = 1;
    cli::GenerationFlags& g = f.gen;
    bool raw = false;
    cli::Parser cli("inpaint",
                    "redraw the masked part of an image from a prompt with a trained model (its preset read from the "
                    "weights).\nUsage: inpaint --input IMAGE --mask IMAGE --prompt TEXT (--out-dir DIR | --grid "
                    "FILE.png) [options]");
    cli.option("--input", f.input, "the image to edit (PNG or JPEG, any size: fitted to the model)")
        .option("--mask", f.mask,
                "an image of the input's shape (same size or aspect ratio): white = regenerate, black = keep")
        .option("--prompt", g.prompt, "what to draw in the masked region, e.g. \"an ankle boot\"")
        .option("--jumps", f.jumps, "RePaint: re-noise and redo every step this many times (costs jumps + 1 times)")
        .option("--mask-threshold", f.mask_threshold,
                "in [0, 1): a latent cell is regenerated when its mask average is above this")
        .option("--strength", f.strength, "in (0, 1]: below 1 the masked region starts from the input's latents too")
        .flag("--no-paste-back", f.no_paste_back, "keep the decoded kept region instead of the input's pixels")
        .flag("--with-input", f.with_input,
              "--grid: put the input first in the row, the region to regenerate grayed out");
    cli::add_shared_edit_options(cli, f, raw);
    cli.parse(argc, argv);
    return cli::run_edit_program(cli, "inpaint", f, true, __FILE__, [&]<class Preset>(const std::string& weights) {
        return run<Preset>(f, weights, raw);
    });
}
