// Same seed → bitwise the same parameters after training steps, run twice or on another thread
// count (the pitfall of llama.cpp #95 / diffusers #4055 in DESIGN.md §10): an MLP, and the whole
// latent-diffusion trainer and generate() at the Tiny preset.
#include <doctest/doctest.h>

#include <omp.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "diffuse/data/captions.hpp"
#include "diffuse/diffuse.hpp"
#include "diffuse/io/idx.hpp"
#include "diffuse/models/latent_diffusion.hpp"
#include "diffuse/nn/activation.hpp"
#include "diffuse/train/adam.hpp"
#include "diffuse/train/grad_clip.hpp"
#include "diffuse/train/latent_diffusion_trainer.hpp"

using namespace diffuse;

namespace {

constexpr int Out = 5;

template <int In, int Hidden>
struct Mlp {
    Linear<float, In, Hidden> fc1;
    ReLU<float> act;
    Linear<float, Hidden, Out> fc2;
    template <class V>
    constexpr void visit(V& v) {
        v("fc1", fc1);
        v("fc2", fc2);
    }
};

struct Run {
    std::vector<float> params;  // the whole flat buffer after training
    std::vector<float> losses;
};

/// A few Adam steps of an MLP on a fixed random regression problem; everything from `seed`.
template <int B = 32, int In = 12, int Hidden = 24>
Run train(std::uint64_t seed, int steps) {
    Mlp<In, Hidden> model;
    ParamStore<float> store(model, seed);
    Adam<float> opt(store, {1e-2, 0.9, 0.999, 1e-8, 1e-4, false});
    Rng rng(seed + 1);
    auto x = make<Tensor<float, B, In>>();
    auto target = make<Tensor<float, B, Out>>();
    fill_normal(*x, rng);
    fill_normal(*target, rng);

    auto z = make<Tensor<float, B, Hidden>>(), h = make<Tensor<float, B, Hidden>>();
    auto dz = make<Tensor<float, B, Hidden>>(), dh = make<Tensor<float, B, Hidden>>();
    auto y = make<Tensor<float, B, Out>>(), dy = make<Tensor<float, B, Out>>();
    Run run;
    for (int s = 0; s < steps; ++s) {
        store.zero_grad();
        model.fc1.forward(*x, *z);
        model.act.forward(*z, *h);
        model.fc2.forward(*h, *y);
        // MSE, mean over all elements; its gradient 2(y - t)/count
        double loss = 0;
        for (std::size_t i = 0; i < y->size; ++i) {
            const float d = (*y)[i] - (*target)[i];
            loss += double(d) * d;
            (*dy)[i] = 2 * d / float(y->size);
        }
        run.losses.push_back(float(loss / double(y->size)));
        dh->fill(0);
        dz->fill(0);
        model.fc2.backward(*h, *y, *dy, *dh);
        model.act.backward(*z, *h, *dh, *dz);
        model.fc1.backward(*x, *z, *dz, View<float, B, In>());  // no input gradient
        clip_grad_norm(store, 5.0f);
        opt.step();
    }
    run.params.assign(store.values(), store.values() + store.size());
    return run;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// CPU time, in seconds, spent so far by this process's threads other than the main one (the
/// OpenMP workers): Linux's /proc/self/task/<tid>/schedstat, whose first field is nanoseconds run.
double worker_cpu_seconds() {
    double ns = 0;
    const std::string main_tid = std::to_string(getpid());
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
        if (task.path().filename() == main_tid) continue;
        std::ifstream f(task.path() / "schedstat");
        double run = 0;
        if (f >> run) ns += run;
    }
    return ns * 1e-9;
}

using Tiny = LatentDiffusion<float, presets::Tiny>;

struct LdmRun {
    std::vector<double> losses;                      // VAE losses, diffusion losses and gradient norms
    std::vector<float> vae, diffusion, ema, images;  // the state after training, then generated images
};

/// A few VAE and diffusion steps of the Tiny model on 32 Fashion-MNIST images, then generate().
LdmRun train_and_sample(int threads) {
    omp_set_num_threads(threads);
    static const io::FashionMnist all = io::load_fashion_mnist(io::Split::train, DIFFUSE_FASHION_MNIST_DIR);
    auto model = std::make_unique<Tiny>(3);
    model->tokenizer = text::Tokenizer::learn(data::all_fashion_captions(), std::size_t(Tiny::Text::vocab_size - 4));
    LatentDiffusionTrainOptions o;
    o.seed = 11;
    o.warmup_steps = 2;
    o.scale_batches = 2;
    o.ema_decay = 0.9;
    LdmRun r;
    {
        LatentDiffusionTrainer<float, presets::Tiny, 8> tr(*model, io::first_images(all, 32), o);
        for (int i = 0; i < 3; ++i) r.losses.push_back(tr.vae_step().loss);
        r.losses.push_back(tr.measure_latent_scale());
        for (int i = 0; i < 3; ++i) {
            const auto s = tr.diffusion_step();
            r.losses.push_back(s.weighted_loss);
            r.losses.push_back(s.grad_norm);
        }
    }
    r.vae.assign(model->vae_store.values(), model->vae_store.values() + model->vae_store.size());
    r.diffusion.assign(model->diffusion_store.values(),
                       model->diffusion_store.values() + model->diffusion_store.size());
    r.ema.assign(model->ema.values(), model->ema.values() + model->ema.size());
    const std::array<std::string, 4> prompts{"a photo of a bag", "a dress", "a sneaker", "a coat"};
    Tiny::SampleOptions so;
    so.sampler.steps = 6;
    so.sampler.guidance = 3;
    so.seed = 5;
    auto images = make<Tensor<float, 4, 8, 8, 1>>();
    model->generate(prompts, "", so, *images);
    r.images.assign(images->begin(), images->end());
    return r;
}

}  // namespace

TEST_CASE("A training step run twice from the same seed gives bitwise identical parameters") {
    const Run a = train(42, 8), b = train(42, 8);
    CHECK(same_bits(a.params, b.params));
    CHECK(same_bits(a.losses, b.losses));
    // Training does something: the loss falls.
    CHECK(a.losses.back() < a.losses.front());
}

TEST_CASE("A different seed gives different parameters (the comparison can fail)") {
    const Run a = train(42, 2), b = train(43, 2);
    CHECK_FALSE(same_bits(a.params, b.params));
}

TEST_CASE("1, 2 and 3 threads give bitwise identical parameters (products cut the same way for any count)") {
    // 512 rows × 256 × 192: large enough for gemm to cut the products into blocks across threads
    std::vector<Run> runs;
    for (int threads : {1, 2, 3}) {
        omp_set_num_threads(threads);
        runs.push_back(train<512, 192, 256>(7, 3));
    }
    omp_set_num_threads(1);
    CHECK(same_bits(runs[1].params, runs[0].params));
    CHECK(same_bits(runs[2].params, runs[0].params));
    CHECK(same_bits(runs[1].losses, runs[0].losses));
}

TEST_CASE("LatentDiffusion Tiny: training and generate() give the same bits on 1 and 2 threads, and 2 did run") {
    const LdmRun one = train_and_sample(1);
    const double before = worker_cpu_seconds();
    const LdmRun two = train_and_sample(2);
    const double worker = worker_cpu_seconds() - before;
    omp_set_num_threads(1);
    MESSAGE("CPU time of the OpenMP worker thread during the 2-thread run: " << worker << " s");
    CHECK(worker > 0);  // a second thread did part of the work (the comparison below is not 1 vs 1)
    CHECK(one.losses == two.losses);
    CHECK(same_bits(one.vae, two.vae));
    CHECK(same_bits(one.diffusion, two.diffusion));
    CHECK(same_bits(one.ema, two.ema));
    CHECK(same_bits(one.images, two.images));
}
