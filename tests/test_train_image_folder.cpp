// Training on a user's own folder of captioned images, end to end at the Tiny preset: a folder the
// test writes (PNGs + metadata.jsonl), the tokenizer learned from its captions, VAE and diffusion
// steps that lower the loss, a checkpoint that restores the tokenizer and continues bit for bit,
// distractor words that reach the text encoder as <unk>, and a prompt in unseen words that samples.
#include <doctest/doctest.h>

#include <omp.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "diffuse/data/caption_augment.hpp"
#include "diffuse/data/image_folder.hpp"
#include "diffuse/io/png.hpp"
#include "diffuse/train/checkpoint.hpp"
#include "diffuse/train/latent_diffusion_trainer.hpp"

#include "file_test_util.hpp"
#include "one_thread.hpp"
#include "tiny_folder_util.hpp"

using namespace diffuse;

namespace {

constexpr int kBatch = 8, kSide = 8;
using Model = LatentDiffusion<float, presets::Tiny>;
using Trainer = LatentDiffusionTrainer<float, presets::Tiny, kBatch, data::ImageFolder>;

/// 32 images of 16x16 (loaded at 8x8): a bright square on black ("a bright square") or a dark frame
/// on white ("a dark frame on white"), each with a second caption.
void write_folder(const std::string& dir) {
    std::string meta;
    for (int i = 0; i < 32; ++i) {
        const bool square = i % 2 == 0;
        std::vector<std::uint8_t> px(16 * 16);
        for (int y = 0; y < 16; ++y)
            for (int x = 0; x < 16; ++x) {
                const bool inner = y >= 4 && y < 12 && x >= 4 && x < 12;
                px[std::size_t(y * 16 + x)] =
                    std::uint8_t(square ? (inner ? 230 - i : 10 + i) : (inner ? 240 - i : 20 + i));
            }
        const std::string name = "img" + std::to_string(i) + ".png";
        io::write_png(dir + "/" + name, 16, 16, 1, px.data());
        meta += "{\"file_name\": \"" + name + "\", \"text\": " +
                (square ? "[\"a bright square\", \"a white square on black\"]"
                        : "[\"a dark frame on white\", \"a frame\"]") +
                "}\n";
    }
    test_files::write_file(dir + "/metadata.jsonl", meta);
}

data::ImageFolder load(const std::string& dir) { return test_files::load_gray_folder(dir, kSide); }

LatentDiffusionTrainOptions options() { return test_files::quick_train_options(); }

struct Run {
    std::unique_ptr<Model> model = std::make_unique<Model>(3);
    std::unique_ptr<Trainer> trainer;
    explicit Run(const std::string& dir) {
        data::ImageFolder folder = load(dir);
        std::vector<std::string> captions;
        for (int i = 0; i < folder.size(); ++i)
            for (const auto& t : folder.texts(i)) captions.push_back(t);
        model->tokenizer = text::Tokenizer::learn(captions, std::size_t(Model::Text::vocab_size - 4));
        trainer = std::make_unique<Trainer>(*model, std::move(folder), options());
        trainer->distractors = data::CaptionAugmenter({"zebra", "quilt", "marble"}, {.probability = 0.5});
    }
};

double mean(const std::vector<double>& v, std::size_t from, std::size_t to) {
    double s = 0;
    for (std::size_t i = from; i < to; ++i) s += v[i];
    return s / double(to - from);
}

}  // namespace

TEST_CASE("train on an image folder: the loss falls, the tokenizer is the captions', a checkpoint resumes exactly") {
    test_files::TempDir dir;
    write_folder(dir.path.string());
    Run run(dir.path.string());
    CHECK(run.model->tokenizer.words().size() == 8);  // a bright square white on black dark frame
    CHECK(run.model->tokenizer.word_id("frame") >= 0);

    std::vector<double> vae;
    for (int i = 0; i < 60; ++i) vae.push_back(run.trainer->vae_step().loss);
    MESSAGE("VAE loss " << mean(vae, 0, 5) << " -> " << mean(vae, 55, 60));
    CHECK(mean(vae, 55, 60) < 0.5 * mean(vae, 0, 5));
    run.trainer->measure_latent_scale();
    std::vector<double> diff;
    for (int i = 0; i < 80; ++i) diff.push_back(run.trainer->diffusion_step().loss);
    MESSAGE("diffusion loss " << mean(diff, 0, 10) << " -> " << mean(diff, 70, 80));
    CHECK(mean(diff, 70, 80) < 0.9 * mean(diff, 0, 10));
    // Distractors reached some captions, and the text encoder saw them as <unk>.
    bool saw_unknown = false;
    for (int i = 0; i < 20 && !saw_unknown; ++i) {
        run.trainer->diffusion_step();
        for (const auto& c : run.trainer->captions()) saw_unknown |= run.model->tokenizer.unknown_count(c) > 0;
    }
    CHECK(saw_unknown);

    const std::string ckpt = dir.file("checkpoint.safetensors");
    save_checkpoint(ckpt, *run.trainer);
    std::vector<double> straight;
    for (int i = 0; i < 3; ++i) straight.push_back(run.trainer->diffusion_step().loss);

    Run resumed(dir.path.string());
    resumed.model->tokenizer = text::Tokenizer();  // forget it: the checkpoint must bring it back
    load_checkpoint(ckpt, *resumed.trainer);
    CHECK(resumed.model->tokenizer == run.model->tokenizer);
    std::vector<double> again;
    for (int i = 0; i < 3; ++i) again.push_back(resumed.trainer->diffusion_step().loss);
    CHECK(again == straight);
    CHECK(std::memcmp(resumed.model->diffusion_store.values(), run.model->diffusion_store.values(),
                      run.model->diffusion_store.size() * sizeof(float)) == 0);
}

TEST_CASE("a prompt in words the model never saw samples (unknown words are <unk>, not bytes)") {
    test_files::TempDir dir;
    write_folder(dir.path.string());
    Run run(dir.path.string());
    for (int i = 0; i < 10; ++i) run.trainer->vae_step();
    run.trainer->measure_latent_scale();
    for (int i = 0; i < 10; ++i) run.trainer->diffusion_step();
    const std::string prompt = "square seen afar";  // fits Tiny's context of 6 with start and end
    CHECK(run.model->tokenizer.unknown_count(prompt) == 2);
    auto images = make<Tensor<float, 2, kSide, kSide, 1>>();
    Model::SampleOptions o;
    o.sampler.steps = 5;
    const std::array<std::string, 2> prompts{prompt, "zebra quilt marble"};
    CHECK(run.model->generate(prompts, "", o, images->view()) == 0);
    for (float v : *images) REQUIRE(std::isfinite(v));
}
