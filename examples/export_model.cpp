// Turns a training checkpoint (or a weights file) of any built preset into the weights file txt2img
// ships with: the VAE, the text encoder and UNet with their EMA, the latent scale and the tokenizer,
// stored as F16 by default (half the size; loading converts back to float).
#include <cstdio>
#include <exception>
#include <fstream>
#include <memory>

#include "diffuse/models/latent_diffusion.hpp"

#include "common/cli.hpp"
#include "common/output_paths.hpp"
#include "common/preset_dispatch.hpp"

int main(int argc, char** argv) {
    using namespace diffuse;
    std::string from, out, dtype = "f16";
    cli::Parser cli("export_model",
                    "write a checkpoint's weights as a compact weights file for txt2img\n"
                    "Usage: export_model --from CHECKPOINT --out FILE [--dtype f16|bf16|f32]");
    cli.option("--from", from, "a training checkpoint or weights file (its preset is read from it)")
        .option("--out", out, "the weights file to write")
        .option("--dtype", dtype, "stored element type: f16, bf16 or f32");
    cli.parse(argc, argv);
    if (from.empty() || out.empty()) cli.fail("--from and --out are required");
    io::DType as = io::DType::F16;
    if (dtype == "bf16") as = io::DType::BF16;
    else if (dtype == "f32") as = io::DType::F32;
    else if (dtype != "f16") cli.fail("--dtype must be f16, bf16 or f32, not '" + dtype + "'");
    if (!std::ifstream(from, std::ios::binary)) cli.fail("--from " + from + ": cannot be read");
    if (const std::string p = cli::unwritable_file(out); !p.empty()) cli.fail("--out: " + p);
    try {
        cli::with_preset(cli::preset_of(from), [&]<class Preset>() {
            auto model = std::make_unique<LatentDiffusion<float, Preset>>();
            model->load(from);
            model->save(out, as);
            return 0;
        });
        std::printf("wrote %s (%s)\n", out.c_str(), dtype.c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "export_model: %s\n", e.what());
        return 1;
    }
}
