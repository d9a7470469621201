// lora_train: fine-tunes a trained text-to-image model on a folder of captioned images through
// low-rank adapters (LoRA) on the attention projections of its text encoder and UNet, everything
// else frozen, and writes the adapters as a small safetensors file for txt2img --lora. A trigger word
// (--trigger) gets its own token-embedding row, trained with the adapters and saved with them.
//
//   lora_train --data sparkly/ --trigger sparkly --steps 600 --out sparkly.safetensors
//   txt2img --lora sparkly.safetensors --prompt "a photo of a sparkly shirt" --grid shirts.png
//
// The folder holds images and metadata.jsonl (or metadata.csv), as train --data DIR reads it; images
// are loaded at the base model's size and channels. The preset is read from the --weights file.
#include <omp.h>

#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>

#include "diffuse/data/image_folder.hpp"
#include "diffuse/models/latent_diffusion.hpp"
#include "diffuse/models/lora.hpp"
#include "diffuse/train/lora_trainer.hpp"

#include "common/cli.hpp"
#include "common/model_files.hpp"
#include "common/preset_dispatch.hpp"
#include "common/progress_bar.hpp"

namespace {

using namespace diffuse;

constexpr int kBatch = 8;  // images per step (compile-time: sizes every workspace)

struct Args {
    std::string weights, data, out, trigger;
    std::string parts = "both";  // text, unet or both
    std::string progress = "auto";
    int rank = 4, threads = 0;
    double alpha = 4;
    long long steps = 500, seed = 1, log_every = 50, warmup = 20;
    double lr = 1e-3, caption_dropout = 0.1;
};

template <class Preset>
int run(const Args& a, const std::string& weights) {
    using Model = LatentDiffusion<float, Preset>;
    using Tuner = LoraTrainer<float, Preset, kBatch, data::ImageFolder>;
    auto model = std::make_unique<Model>();
    model->load(weights);
    data::ImageFolderOptions fo;
    fo.resolution = Model::image_size;
    fo.channels = Model::image_channels;
    data::ImageFolder folder(a.data, fo);
    std::printf("%s: %d captioned images at %dx%dx%d\n", a.data.c_str(), folder.size(), Model::image_size,
                Model::image_size, Model::image_channels);

    LoraOptions lo;
    lo.rank = a.rank;
    lo.alpha = a.alpha;
    lo.text_encoder = a.parts != "unet";
    lo.unet = a.parts != "text";
    lo.trigger_word = a.trigger;
    lo.seed = std::uint64_t(a.seed);
    LoraAdapters<float, Preset> lora(*model, lo);
    std::printf("%zu adapted projections, rank %d, alpha %g: %zu trained values", lora.modules().size(), a.rank,
                a.alpha, lora.parameter_count());
    if (lora.has_trigger()) std::printf(" (trigger word '%s' is token %d)", a.trigger.c_str(), lora.trigger_id());
    std::printf("\n");

    LoraTrainOptions to;
    to.seed = std::uint64_t(a.seed);
    to.lr = a.lr;
    to.warmup_steps = a.warmup;
    to.caption_dropout = a.caption_dropout;
    Tuner tuner(*model, lora, std::move(folder), to);
    cli::TrainDisplay display(*cli::parse_progress(a.progress, stdout), a.log_every);
    tuner.train(a.steps, [&display](const TrainProgress& p) { display.step(p); });
    display.finish();
    lora.save(a.out);
    std::printf("wrote %s\n", a.out.c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Args a;
    cli::Parser cli("lora_train",
                    "fine-tune a trained model on a folder of captioned images through low-rank adapters (LoRA),\n"
                    "everything else frozen; writes the adapters for txt2img --lora. Batch " +
                        std::to_string(kBatch) +
                        " (kBatch in examples/lora_train.cpp).\n"
                        "Usage: lora_train --data DIR --out FILE.safetensors [options]");
    cli.option("--weights", a.weights, "base model weights (default: the shipped models/diffusion.safetensors)")
        .option("--data", a.data, "a folder of images with metadata.jsonl (or metadata.csv)")
        .option("--out", a.out, "where the adapters go (.safetensors)")
        .option("--trigger", a.trigger,
                "a new word with its own trained token embedding, e.g. sparkly (\"\": none); use it in the captions")
        .option("--rank", a.rank, "rank r of each adapter")
        .option("--alpha", a.alpha, "scale alpha: the update is (alpha / r) * up * down")
        .option("--parts", a.parts, "which attention projections get adapters: text, unet or both")
        .option("--steps", a.steps, "training steps")
        .option("--lr", a.lr, "Adam learning rate (after warm-up)")
        .option("--warmup", a.warmup, "learning-rate warm-up steps")
        .option("--caption-dropout", a.caption_dropout, "share of captions dropped to \"\" (for guidance)")
        .option("--seed", a.seed, "seed of initialization, data order and noise")
        .option("--log-every", a.log_every, "print the mean loss every N steps")
        .option("--progress", a.progress, cli::kProgressHelp)
        .option("--threads", a.threads, "OpenMP threads (0: OpenMP's default)");
    cli.parse(argc, argv);
    if (a.data.empty()) cli.fail("--data is required: a folder of images with metadata.jsonl");
    if (!std::filesystem::is_directory(a.data)) cli.fail("--data '" + a.data + "' is not a folder");
    if (a.out.empty()) cli.fail("--out is required: the adapter file to write");
    if (a.rank < 1 || a.rank > 256) cli.fail("--rank must be in [1, 256]");
    if (!(a.alpha > 0)) cli.fail("--alpha must be positive");
    if (a.parts != "text" && a.parts != "unet" && a.parts != "both")
        cli.fail("--parts must be text, unet or both, not '" + a.parts + "'");
    if (a.steps < 1) cli.fail("--steps must be at least 1");
    if (!(a.lr > 0)) cli.fail("--lr must be positive");
    if (a.warmup < 0) cli.fail("--warmup must not be negative");
    if (!(a.caption_dropout >= 0 && a.caption_dropout < 1)) cli.fail("--caption-dropout must be in [0, 1)");
    if (a.log_every < 1) cli.fail("--log-every must be at least 1");
    if (const std::string p = cli::progress_problem(a.progress); !p.empty()) cli.fail(p);
    if (a.threads < 0) cli.fail("--threads must not be negative");
    if (a.threads > 0) omp_set_num_threads(a.threads);
    try {
        const std::string weights = cli::diffusion_weights(a.weights, __FILE__);
        return cli::with_preset(cli::preset_of(weights), [&]<class Preset>() { return run<Preset>(a, weights); });
    } catch (const std::exception& e) {
        std::fprintf(stderr, "lora_train: %s\n", e.what());
        return 1;
    }
}
