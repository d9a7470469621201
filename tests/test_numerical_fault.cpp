// A NaN or Inf in a training step stops it before the update, with a message naming the phase, the
// step and the first parameter tensor (by state-dict name) that holds one: a poisoned weight, or
// (a poisoned input: the latent scale) the first non-finite gradient. The weights, Adam moments, EMA
// and step counters stay those of the last good step, so a checkpoint written then is the last good
// one (tests/crash_safety.cpp checks the program's file on disk).
#include <doctest/doctest.h>

#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "diffuse/io/idx.hpp"
#include "diffuse/train/latent_diffusion_trainer.hpp"
#include "diffuse/train/numerical_fault.hpp"

#include "fashion_images.hpp"
#include "one_thread.hpp"

using namespace diffuse;

namespace {

using Model = LatentDiffusion<float, presets::Tiny>;
using Trainer = LatentDiffusionTrainer<float, presets::Tiny, 4>;
constexpr float kNan = std::numeric_limits<float>::quiet_NaN();

using test::few_images;

struct Run {
    std::unique_ptr<Model> model = std::make_unique<Model>(3);
    std::unique_ptr<Trainer> trainer = std::make_unique<Trainer>(*model, few_images(8), LatentDiffusionTrainOptions{});
    Run() {
        for (int i = 0; i < 2; ++i) trainer->vae_step();
        trainer->measure_latent_scale();
        for (int i = 0; i < 2; ++i) trainer->diffusion_step();
    }
};

/// The message of the NumericalFault that step() throws ("" if none).
template <class Step>
std::string fault_of(Step step) {
    try {
        step();
    } catch (const NumericalFault& e) { return e.what(); }
    return "";
}

std::vector<float> copy(const float* p, std::size_t n) { return {p, p + n}; }
bool same(const std::vector<float>& a, const float* b) { return std::memcmp(a.data(), b, a.size() * 4) == 0; }

/// The state a faulty step must leave as it was.
struct Snapshot {
    std::vector<float> values, m, v, ema;
    std::int64_t steps, adam_t, ema_updates;
    explicit Snapshot(const Run& r)
        : values(copy(r.model->diffusion_store.values(), r.model->diffusion_store.size())),
          m(copy(r.trainer->diffusion_adam.m(), r.trainer->diffusion_adam.size())),
          v(copy(r.trainer->diffusion_adam.v(), r.trainer->diffusion_adam.size())),
          ema(copy(r.model->ema.values(), r.model->ema.size())),
          steps(r.trainer->diffusion_steps),
          adam_t(r.trainer->diffusion_adam.step_count()),
          ema_updates(r.model->ema.update_count()) {}
    void check_unchanged(const Run& r) const {
        CHECK(same(values, r.model->diffusion_store.values()));
        CHECK(same(m, r.trainer->diffusion_adam.m()));
        CHECK(same(v, r.trainer->diffusion_adam.v()));
        CHECK(same(ema, r.model->ema.values()));
        CHECK(r.trainer->diffusion_steps == steps);
        CHECK(r.trainer->diffusion_adam.step_count() == adam_t);
        CHECK(r.model->ema.update_count() == ema_updates);
    }
};

}  // namespace

TEST_CASE("a poisoned weight stops the diffusion step, naming the step and the tensor; nothing is updated") {
    Run r;
    float* w = r.model->diffusion_store.values() + r.model->diffusion_store.info("unet.conv_out.weight").offset;
    w[5] = kNan;
    const Snapshot before(r);
    CHECK_THROWS_WITH_AS(r.trainer->diffusion_step(),
                         "diffusion step 3: the loss is nan; first non-finite weight: unet.conv_out.weight "
                         "(element 5: nan); training stopped before the update",
                         NumericalFault);
    before.check_unchanged(r);
}

TEST_CASE("an infinite VAE weight stops the VAE step with its name") {
    Run r;
    const auto& info = r.model->vae_store.infos()[3];
    r.model->vae_store.values()[info.offset] = std::numeric_limits<float>::infinity();
    const std::vector<float> before = copy(r.model->vae_store.values(), r.model->vae_store.size());
    const std::string message = fault_of([&] { r.trainer->vae_step(); });
    MESSAGE(message);
    CHECK(message.starts_with("VAE step 3: the loss is "));
    CHECK(message.ends_with("; first non-finite weight: " + info.name +
                            " (element 0: inf); training stopped before the update"));
    CHECK(same(before, r.model->vae_store.values()));
    CHECK(r.trainer->vae_steps == 2);
}

TEST_CASE("a poisoned input (latent scale NaN) names the first non-finite gradient in state-dict order") {
    Run r;
    r.model->latent_scale = std::nan("");
    const Snapshot before(r);
    const std::string message = fault_of([&] { r.trainer->diffusion_step(); });
    MESSAGE(message);
    CHECK(message.starts_with("diffusion step 3: the loss is nan; first non-finite gradient: "));
    // The tensor it names holds a NaN gradient, and no tensor before it does.
    const auto& store = r.model->diffusion_store;
    std::string first;
    for (const auto& info : store.infos()) {
        for (std::size_t i = 0; i < info.size && first.empty(); ++i)
            if (std::isnan(store.grads()[info.offset + i])) first = info.name;
        if (!first.empty()) break;
    }
    REQUIRE(!first.empty());
    CHECK(message.find(": " + first + " (element ") != std::string::npos);
    before.check_unchanged(r);
}

TEST_CASE("a healthy step passes the check, and first_non_finite finds nothing in finite buffers") {
    Run r;
    const auto s = r.trainer->diffusion_step();
    CHECK(std::isfinite(s.loss));
    CHECK(r.trainer->diffusion_steps == 3);
    CHECK(first_non_finite(r.model->diffusion_store, r.model->diffusion_store.values()).empty());
}
