// Progress callbacks (train/progress.hpp, SamplerOptions::on_step): the trainers' driver loops call
// theirs once per step with increasing steps, the right total, a finite loss and the schedule's
// learning rate, and change no bit of training; the sampler calls its callback once per step (not
// per model call: guidance and Heun make more calls) and changes no bit of the images. Tiny preset.
#include <doctest/doctest.h>

#include <omp.h>

#include <array>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "diffuse/app/image_edit.hpp"
#include "diffuse/io/idx.hpp"
#include "diffuse/models/latent_diffusion.hpp"
#include "diffuse/sample/img2img.hpp"
#include "diffuse/sample/samplers.hpp"
#include "diffuse/train/latent_diffusion_trainer.hpp"
#include "diffuse/train/lora_trainer.hpp"
#include "diffuse/train/progress.hpp"

#include "fashion_images.hpp"
#include "one_thread.hpp"

using namespace diffuse;

namespace {

constexpr int kBatch = 4;
using Model = LatentDiffusion<float, presets::Tiny>;
using Trainer = LatentDiffusionTrainer<float, presets::Tiny, kBatch>;

using test::few_images;

LatentDiffusionTrainOptions options() {
    LatentDiffusionTrainOptions o;
    o.seed = 3;
    o.vae_warmup_steps = 3;  // the learning rate changes over the first steps: its report must follow
    o.warmup_steps = 3;
    o.scale_batches = 2;
    return o;
}

/// Checks one phase's reports: steps first+1 .. total in order, each with the schedule's rate.
void check_reports(const std::vector<TrainProgress>& seen, TrainPhase phase, std::int64_t first, std::int64_t total,
                   const LrSchedule& schedule) {
    REQUIRE(seen.size() == std::size_t(total - first));
    double elapsed = 0;
    for (std::size_t i = 0; i < seen.size(); ++i) {
        const TrainProgress& p = seen[i];
        CAPTURE(i);
        CHECK(p.phase == phase);
        CHECK(p.step == first + std::int64_t(i) + 1);
        CHECK(p.total == total);
        CHECK(p.first_step == first);
        CHECK(std::isfinite(p.loss));
        CHECK(p.loss > 0);
        CHECK(std::isfinite(p.grad_norm));
        CHECK(p.lr == schedule(p.step - 1));  // the rate of the update this step made
        CHECK(p.elapsed_seconds >= elapsed);
        CHECK(p.images_per_second > 0);
        CHECK(std::isfinite(p.seconds_left()));
        elapsed = p.elapsed_seconds;
    }
    CHECK(seen.back().seconds_left() == 0);
}

bool same_bits(const float* a, const float* b, std::size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

}  // namespace

TEST_CASE("progress: TrainProgress's time left and fraction follow this process's rate") {
    TrainProgress p;
    p.step = 30, p.first_step = 10, p.total = 110, p.elapsed_seconds = 5;  // 20 steps in 5 s
    CHECK(p.seconds_left() == doctest::Approx(20.0));                      // 80 steps to go at 4 steps/s
    CHECK(p.fraction() == doctest::Approx(30.0 / 110));
    p.step = 10;  // resumed, nothing timed yet
    CHECK(std::isnan(p.seconds_left()));
    CHECK(std::string(phase_name(TrainPhase::lora)) == "lora");
}

TEST_CASE("progress: the trainers call back once per step, with the schedule's rate, and change nothing") {
    auto model = std::make_unique<Model>(5);
    Trainer tr(*model, few_images(12), options());
    std::vector<TrainProgress> seen;
    const TrainCallback record = [&seen](const TrainProgress& p) { seen.push_back(p); };

    tr.train_vae(5, record);
    check_reports(seen, TrainPhase::vae, 0, 5, tr.vae_schedule());
    for (const auto& p : seen) CHECK((std::isfinite(p.reconstruction) && std::isfinite(p.kl)));
    seen.clear();
    tr.train_vae(5, record);  // done already: no step, no call
    CHECK(seen.empty());

    tr.measure_latent_scale();
    tr.train_diffusion(4, record);
    check_reports(seen, TrainPhase::diffusion, 0, 4, tr.diffusion_schedule());
    CHECK(std::isnan(seen.front().reconstruction));
    seen.clear();
    tr.train_diffusion(6, record);  // as after a resume: the phase goes on from step 4
    check_reports(seen, TrainPhase::diffusion, 4, 6, tr.diffusion_schedule());

    // The same steps without a callback, by hand: bitwise the same weights.
    auto plain = std::make_unique<Model>(5);
    Trainer tp(*plain, few_images(12), options());
    for (int i = 0; i < 5; ++i) tp.vae_step();
    tp.measure_latent_scale();
    for (int i = 0; i < 6; ++i) tp.diffusion_step();
    CHECK(same_bits(model->vae_store.values(), plain->vae_store.values(), model->vae_store.size()));
    CHECK(same_bits(model->diffusion_store.values(), plain->diffusion_store.values(), model->diffusion_store.size()));
}

TEST_CASE("progress: LoraTrainer::train calls back once per step in the lora phase") {
    auto model = std::make_unique<Model>(6);
    LoraOptions lo;
    lo.rank = 2;
    LoraAdapters<float, presets::Tiny> adapters(*model, lo);
    LoraTrainOptions to;
    to.warmup_steps = 2;
    LoraTrainer<float, presets::Tiny, kBatch, data::FashionSource> tuner(*model, adapters, few_images(8), to);
    std::vector<TrainProgress> seen;
    tuner.train(3, [&seen](const TrainProgress& p) { seen.push_back(p); });
    check_reports(seen, TrainPhase::lora, 0, 3, LrSchedule{to.lr, to.warmup_steps});
}

TEST_CASE("progress: the sampler calls back once per step, whatever the model calls") {
    const diffusion::NoiseSchedule schedule = diffusion::NoiseSchedule::scaled_linear();
    constexpr int B = 2;
    constexpr std::size_t item = 6;
    struct Case {
        diffusion::Method method;
        int steps;
        double guidance;
        bool batched;
        int first_step, jumps;
    };
    for (const Case c :
         {Case{diffusion::Method::ddim, 7, 1, true, 0, 0}, Case{diffusion::Method::ddim, 7, 3, false, 0, 0},
          Case{diffusion::Method::ddim, 7, 3, true, 0, 0}, Case{diffusion::Method::heun, 5, 3, false, 0, 0},
          Case{diffusion::Method::dpmpp_2m, 8, 2, false, 3, 0},
          Case{diffusion::Method::euler_ancestral, 6, 1, true, 2, 2}}) {
        CAPTURE(int(c.method));
        CAPTURE(c.steps);
        CAPTURE(c.guidance);
        CAPTURE(c.jumps);
        diffusion::SamplerOptions o;
        o.method = c.method;
        o.steps = c.steps;
        o.guidance = c.guidance;
        o.batch_branches = c.batched;
        int model_calls = 0;
        const auto denoise = [&model_calls](const diffusion::DenoiseCall<float>& call) {
            ++model_calls;
            for (std::size_t k = 0; k < std::size_t(call.batch) * call.item_size; ++k)
                call.out[k] = 0.5f * call.z[k];  // any deterministic model
        };
        std::array<float, B * item> clean{}, without{}, with{};
        for (std::size_t k = 0; k < clean.size(); ++k) clean[k] = 0.1f * float(k);
        diffusion::RunControl<float> control;
        control.first_step = c.first_step;
        control.clean = c.first_step > 0 ? clean.data() : nullptr;
        control.jumps = c.jumps;
        const auto no_hook = [](const diffusion::RunLevel<float>&) {};
        diffusion::SamplerWorkspace<float> ws;
        diffusion::sample(schedule, o, B, item, 9, without.data(), denoise, ws, control, no_hook);
        const int calls_without = model_calls;

        std::vector<std::pair<int, int>> seen;
        o.on_step = [&seen](int done, int total) { seen.emplace_back(done, total); };
        model_calls = 0;
        diffusion::sample(schedule, o, B, item, 9, with.data(), denoise, ws, control, no_hook);
        const int run = (c.steps - c.first_step) * (c.jumps + 1);
        const int per_step = c.guidance != 1 && !c.batched ? 2 : 1;  // unbatched guidance: two calls of N
        CHECK(model_calls == calls_without);
        CHECK(model_calls == per_step * (c.jumps + 1) * diffusion::model_calls(c.method, c.steps - c.first_step));
        REQUIRE(seen.size() == std::size_t(run));
        for (int i = 0; i < run; ++i) CHECK(seen[std::size_t(i)] == std::pair<int, int>(i + 1, run));
        CHECK(same_bits(with.data(), without.data(), with.size()));
    }
}

TEST_CASE("progress: LatentDiffusion::generate and img2img pass the callback on and draw the same images") {
    auto model = std::make_unique<Model>(8);
    constexpr int N = 2;
    using Images = Tensor<float, N, Model::image_size, Model::image_size, Model::image_channels>;
    auto ws = make<Model::SampleWorkspace<N>>();
    auto without = make<Images>(), with = make<Images>(), edited = make<Images>();
    const std::array<std::string, N> prompts = {"a photo of a shirt", "a bag"};
    Model::SampleOptions o;
    o.sampler.steps = 6;
    o.sampler.guidance = 3;
    model->generate(prompts, "", o, without->view(), *ws);

    int calls = 0, last = 0, total = 0;
    o.sampler.on_step = [&](int done, int of) { ++calls, last = done, total = of; };
    model->generate(prompts, "", o, with->view(), *ws);
    CHECK(calls == o.sampler.steps);
    CHECK(last == o.sampler.steps);
    CHECK(total == o.sampler.steps);
    CHECK(same_bits(with->data(), without->data(), with->size));

    calls = 0;  // img2img at strength 0.5 runs the last ⌈0.5 · 6⌉ = 3 steps
    app::img2img(*model, *without, prompts, "", o, 0.5, edited->view(), *ws);
    CHECK(calls == diffusion::kept_steps(0.5, o.sampler.steps));
    CHECK(total == 3);
}
