// Image to image: redraws an input picture towards a prompt with a trained latent diffusion model.
// The input (PNG or JPEG, any size) is fitted to the model as its training images were (converted
// to the model's channels, scaled to cover, centre-cropped, the data set's border added), encoded,
// noised to --strength and denoised with the prompt from there (the last ⌈strength·steps⌉ steps);
// strength 1 ignores the input (plain txt2img). The preset is read from the weights file.
//
//   img2img --input shirt.png --prompt "a photo of a pullover" --strength 0.5 --grid out.png
//   img2img --input photo.jpg --weights models/emoji.safetensors --prompt "red apple" --out-dir out/

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
    std::vector<float> input(std::size_t(S) * S * C), images(std::size_t(f.gen.n) * S * S * C);
    app::model_image(io::read_image(f.input), S, C, model->image_border, input.data());
    const bool cut = cli::edit_with_progress<kBatch, Model>(
        f, input.data(), opt, images.data(),
        [&](const auto& inputs, const auto& prompts, const auto& o, auto out, auto& ws) {
            return app::img2img(*model, inputs, prompts, f.gen.negative, o, f.strength, out, ws);
        });
    if (cut) std::fprintf(stderr, "img2img: warning: the prompt was cut to %d tokens\n", Model::context_length);
    cli::write_edit_outputs(f, images.data(), f.gen.n, S, C, model->image_border,
                            f.with_input ? input.data() : nullptr);
    return 0;
}
}  // namespace

int main(int argc, char** argv) {
    using namespace diffuse;
    cli::ImageEditFlags f;
    cli::GenerationFlags& g = f.gen;
    bool raw = false;
    cli::Parser cli("img2img",
                    "redraw an input image towards a prompt with a trained model (its preset read from the weights).\n"
                    "Usage: img2img --input IMAGE --prompt TEXT (--out-dir DIR | --grid FILE.png) [options]");
    cli.option("--input", f.input, "the image to start from (PNG or JPEG, any size: fitted to the model)")
        .option("--prompt", g.prompt, "what to turn it into, e.g. \"a photo of a pullover\"")
        .option("--strength", f.strength,
                "in (0, 1]: how much to change; the last ceil(strength * steps) steps run (1: ignore the input)")
        .flag("--with-input", f.with_input, "--grid: put the fitted input first in the row");
    cli::add_shared_edit_options(cli, f, raw);
    cli.parse(argc, argv);
    return cli::run_edit_program(cli, "img2img", f, false, __FILE__, [&]<class Preset>(const std::string& weights) {
        return run<Preset>(f, weights, raw);
    });
}
