// Training resumes exactly from a checkpoint: N steps straight vs N/2 + save + load into fresh
// objects + N/2 give bitwise the same losses and final state, in the VAE phase and in the
// diffusion phase (Tiny preset, float, real Fashion-MNIST images). Loading names what does not fit.
#include <doctest/doctest.h>

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "diffuse/io/idx.hpp"
#include "diffuse/train/checkpoint.hpp"
#include "diffuse/train/latent_diffusion_trainer.hpp"

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
    o.seed = 42;
    o.vae_warmup_steps = 2;
    o.warmup_steps = 2;
    o.scale_batches = 2;
    o.min_snr_gamma = 5;  // exercise the weighting too
    o.ema_decay = 0.99;
    return o;
}

/// A model and its trainer, built fresh (as a resumed program would).
struct Run {
    std::unique_ptr<Model> model = std::make_unique<Model>(7);
    // 10 images, batches of 4: epochs end after 2 batches, so the runs cross epoch boundaries.
    std::unique_ptr<Trainer> trainer = std::make_unique<Trainer>(*model, few_images(10), options());
};

std::vector<double> vae_steps(Trainer& t, int n) {
    std::vector<double> l;
    for (int i = 0; i < n; ++i) l.push_back(t.vae_step().loss);
    return l;
}
std::vector<double> diffusion_steps(Trainer& t, int n) {
    std::vector<double> l;
    for (int i = 0; i < n; ++i) {
        const auto s = t.diffusion_step();
        l.push_back(s.weighted_loss);
        l.push_back(s.grad_norm);
    }
    return l;
}

bool same_bits(const float* a, const float* b, std::size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

/// The first piece of training state in which two runs differ, or "" when they are bitwise equal.
std::string state_difference(Run& a, Run& b) {
    const Model &ma = *a.model, &mb = *b.model;
    const Trainer &ta = *a.trainer, &tb = *b.trainer;
    if (!same_bits(ma.vae_store.values(), mb.vae_store.values(), ma.vae_store.size())) return "VAE parameters";
    if (!same_bits(ma.diffusion_store.values(), mb.diffusion_store.values(), ma.diffusion_store.size()))
        return "diffusion parameters";
    if (!same_bits(ma.ema.values(), mb.ema.values(), ma.ema.size())) return "EMA weights";
    if (!same_bits(ta.vae_adam.m(), tb.vae_adam.m(), ta.vae_adam.size())) return "VAE Adam m";
    if (!same_bits(ta.vae_adam.v(), tb.vae_adam.v(), ta.vae_adam.size())) return "VAE Adam v";
    if (!same_bits(ta.diffusion_adam.m(), tb.diffusion_adam.m(), ta.diffusion_adam.size())) return "diffusion Adam m";
    if (!same_bits(ta.diffusion_adam.v(), tb.diffusion_adam.v(), ta.diffusion_adam.size())) return "diffusion Adam v";
    if (ma.latent_scale != mb.latent_scale) return "latent scale";
    if (ma.ema.update_count() != mb.ema.update_count()) return "EMA update count";
    if (ta.vae_steps != tb.vae_steps || ta.diffusion_steps != tb.diffusion_steps) return "step counts";
    if (ta.data.epoch() != tb.data.epoch() || ta.data.position() != tb.data.position()) return "data position";
    return "";
}

void check_same_state(Run& a, Run& b) { CHECK(state_difference(a, b) == ""); }

std::string temp_path(const char* name) { return (std::filesystem::temp_directory_path() / name).string(); }

}  // namespace

TEST_CASE("checkpoint: N steps straight == N/2 + save + load + N/2, bit for bit, in both phases") {
    constexpr int kVae = 6, kDiff = 6;
    const std::string path = temp_path("diffuse_test_resume.safetensors");

    Run straight;
    std::vector<double> vae_a = vae_steps(*straight.trainer, kVae);
    const double scale_a = straight.trainer->measure_latent_scale();
    std::vector<double> diff_a = diffusion_steps(*straight.trainer, kDiff);

    // VAE phase, interrupted half-way.
    std::vector<double> vae_b;
    {
        Run first;
        vae_b = vae_steps(*first.trainer, kVae / 2);
        save_checkpoint(path, *first.trainer);
    }
    Run second;
    load_checkpoint(path, *second.trainer);
    for (double l : vae_steps(*second.trainer, kVae - kVae / 2)) vae_b.push_back(l);
    const double scale_b = second.trainer->measure_latent_scale();
    std::vector<double> diff_b = diffusion_steps(*second.trainer, kDiff / 2);
    save_checkpoint(path, *second.trainer);

    // Diffusion phase, interrupted half-way.
    Run third;
    load_checkpoint(path, *third.trainer);
    for (double l : diffusion_steps(*third.trainer, kDiff - kDiff / 2)) diff_b.push_back(l);

    std::printf("resume: VAE losses %.5f .. %.5f, latent scale %.4f, diffusion losses %.5f .. %.5f\n", vae_a.front(),
                vae_a.back(), scale_a, diff_a.front(), diff_a[diff_a.size() - 2]);
    CHECK(vae_a == vae_b);  // exact double equality of every step's loss
    CHECK(scale_a == scale_b);
    CHECK(diff_a == diff_b);  // weighted losses and gradient norms
    check_same_state(straight, third);
    CHECK(third.model->has_ema());
    std::filesystem::remove(path);
}

TEST_CASE("checkpoint: a resumed run that skipped the checkpoint would differ (the test can fail)") {
    Run a, b;
    vae_steps(*a.trainer, 2);
    vae_steps(*b.trainer, 2);
    b.trainer->vae_step();  // one step more than a
    const double la = a.trainer->vae_step().loss, lb = b.trainer->vae_step().loss;
    CHECK(la != lb);
}

TEST_CASE("checkpoint: a resume that loses any one piece of the state is caught (the test above can fail)") {
    constexpr int kDiff = 6;
    const std::string path = temp_path("diffuse_test_resume_loss.safetensors");
    Run straight;
    vae_steps(*straight.trainer, 2);
    straight.trainer->measure_latent_scale();
    diffusion_steps(*straight.trainer, kDiff / 2);
    save_checkpoint(path, *straight.trainer);
    const std::vector<double> rest = diffusion_steps(*straight.trainer, kDiff - kDiff / 2);
    const auto resume = [&](const std::function<void(Run&)>& forget) {
        auto r = std::make_unique<Run>();
        load_checkpoint(path, *r->trainer);
        forget(*r);
        const bool same_losses = diffusion_steps(*r->trainer, kDiff - kDiff / 2) == rest;
        return same_losses && state_difference(straight, *r).empty();
    };
    CHECK(resume([](Run&) {}));  // the whole state: the same run
    // Each resume below restores the checkpoint, then loses one piece, as a loader that skipped it would.
    const std::pair<const char*, std::function<void(Run&)>> losses[] = {
        {"diffusion Adam m",
         [](Run& r) { std::fill_n(r.trainer->diffusion_adam.m(), r.trainer->diffusion_adam.size(), 0.0f); }},
        {"diffusion Adam v",
         [](Run& r) { std::fill_n(r.trainer->diffusion_adam.v(), r.trainer->diffusion_adam.size(), 0.0f); }},
        {"EMA weights",
         [](Run& r) { std::copy_n(r.model->diffusion_store.values(), r.model->ema.size(), r.model->ema.values()); }},
        {"data position", [](Run& r) { r.trainer->data.seek(0, 0); }},
        {"step count (noise streams, learning-rate schedule)", [](Run& r) { r.trainer->diffusion_steps = 0; }},
        {"latent scale", [](Run& r) { r.model->latent_scale = 1; }},
    };
    for (const auto& [what, forget] : losses) CHECK_MESSAGE(!resume(forget), "lost: ", what);
    std::filesystem::remove(path);
}

TEST_CASE("checkpoint: loading names what does not fit") {
    const std::string path = temp_path("diffuse_test_ckpt.safetensors");
    const std::string bad = temp_path("diffuse_test_ckpt_bad.safetensors");
    Run r;
    vae_steps(*r.trainer, 1);
    save_checkpoint(path, *r.trainer);

    SUBCASE("a weights file is not a checkpoint") {
        r.model->save(bad);
        Run fresh;
        CHECK_THROWS_WITH(load_checkpoint(bad, *fresh.trainer), doctest::Contains("not a training checkpoint"));
        // ... but a checkpoint is a weights file: txt2img can load it.
        Model m(99);
        m.load(path);
        CHECK(same_bits(m.vae_store.values(), r.model->vae_store.values(), m.vae_store.size()));
    }
    SUBCASE("a tensor with the wrong shape is named") {
        // Copy the checkpoint, storing one 2-D weight transposed in shape (same bytes).
        const io::SafetensorsFile f(path);
        io::SafetensorsWriter w;
        std::vector<std::vector<unsigned char>> keep;
        std::string victim;
        for (const auto& t : f.tensors()) {
            keep.push_back(f.read_raw(t.name));
            auto shape = t.shape;
            if (victim.empty() && t.name.starts_with("unet.") && shape.size() == 2 && shape[0] != shape[1]) {
                victim = t.name;
                std::swap(shape[0], shape[1]);
            }
            w.add_raw(t.name, t.dtype, shape, keep.back().data());
        }
        for (const auto& [k, v] : f.metadata()) w.set_metadata(k, v);
        w.save(bad);
        REQUIRE(!victim.empty());
        Run fresh;
        const std::string expected = "'" + victim + "' has shape";
        CHECK_THROWS_WITH(load_checkpoint(bad, *fresh.trainer), doctest::Contains(expected.c_str()));
    }
    SUBCASE("a checkpoint of another preset is refused by name, before any tensor is read") {
        // The Tiny checkpoint relabelled as the Default preset's: its tensors all fit this Tiny
        // model, so only the preset check stands between it and a silent load.
        const io::SafetensorsFile f(path);
        io::SafetensorsWriter w;
        std::vector<std::vector<unsigned char>> keep;
        for (const auto& t : f.tensors()) {
            keep.push_back(f.read_raw(t.name));
            w.add_raw(t.name, t.dtype, t.shape, keep.back().data());
        }
        for (const auto& [k, v] : f.metadata()) w.set_metadata(k, k == "config" ? "Default" : v);
        w.save(bad);
        Run fresh;
        CHECK_THROWS_WITH(load_checkpoint(bad, *fresh.trainer),
                          doctest::Contains("written for the Default preset; this model is Tiny"));
        Model m(99);
        CHECK_THROWS_WITH(m.load(bad), doctest::Contains("written for the Default preset; this model is Tiny"));
    }
    SUBCASE("a missing tensor is named") {
        const io::SafetensorsFile f(path);
        io::SafetensorsWriter w;
        std::vector<std::vector<unsigned char>> keep;
        for (const auto& t : f.tensors()) {
            if (t.name == "optim.vae.v.vae.decoder.conv_out.bias") continue;
            keep.push_back(f.read_raw(t.name));
            w.add_raw(t.name, t.dtype, t.shape, keep.back().data());
        }
        for (const auto& [k, v] : f.metadata()) w.set_metadata(k, v);
        w.save(bad);
        Run fresh;
        CHECK_THROWS_WITH(load_checkpoint(bad, *fresh.trainer),
                          doctest::Contains("missing tensor 'optim.vae.v.vae.decoder.conv_out.bias'"));
    }
    std::filesystem::remove(path);
    std::filesystem::remove(bad);
}
