// Sampling from one const LatentDiffusion on several threads at once gives the serial images bit for
// bit, with the EMA weights and with the raw ones: generate() reads the model and writes only the
// caller's workspace and images (the EMA weights are a second set of layers bound to their own
// buffer, never swapped into the trained ones).
//
// Threads: kThreads std::threads, each with OpenMP limited to one thread (omp_set_num_threads(1)
// inside the thread, so parallel_for runs inline and no OpenMP team is ever made). That keeps the
// only concurrency the std::threads' own, which ThreadSanitizer sees in full (Debian's libgomp is
// not instrumented: its barriers would be reported as races).
#include <doctest/doctest.h>

#include <omp.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "diffuse/models/latent_diffusion.hpp"

using namespace diffuse;

namespace {

using Model = LatentDiffusion<float, presets::Tiny>;
constexpr int kThreads = 4, kBatches = 4, N = 2;  // each thread: kBatches calls of N prompts
using Images = Tensor<float, N, Model::image_size, Model::image_size, Model::image_channels>;

const std::array<std::string, 8> kPrompts{"a photo of a bag", "a dress",    "an ankle boot", "a red coat",
                                          "a sneaker",        "a pullover", "a shirt",       "a sandal"};

/// A Tiny model with a vocabulary and EMA weights that differ from the trained ones (no training
/// needed: the images only have to be deterministic and depend on which weights ran).
std::unique_ptr<Model> model_with_ema() {
    auto m = std::make_unique<Model>(17);
    m->tokenizer = text::Tokenizer::learn(std::vector<std::string>(kPrompts.begin(), kPrompts.end()),
                                          std::size_t(Model::Text::vocab_size - 4));
    m->latent_scale = 1.7;
    float* e = m->ema.values();
    const float* p = m->diffusion_store.values();
    for (std::size_t i = 0; i < m->ema.size(); ++i) e[i] = 0.9f * p[i] + 0.01f * float(i % 7);
    m->ema.set_update_count(3);
    return m;
}

/// The options of call (thread, batch): each call its own seed and prompts.
Model::SampleOptions options(int thread, int batch, bool use_ema) {
    Model::SampleOptions o;
    o.sampler.steps = 10;
    o.sampler.guidance = 3;
    o.seed = std::uint64_t(1000 + 10 * thread + batch);
    o.use_ema = use_ema;
    return o;
}
std::array<std::string, N> prompts(int thread, int batch) {
    return {kPrompts[std::size_t(thread + batch) % kPrompts.size()],
            kPrompts[std::size_t(3 * thread + batch + 1) % kPrompts.size()]};
}

/// Every call's images, made by `kThreads` threads at once (or one after another on this thread).
std::vector<Images> sample_all(const Model& model, bool use_ema, bool concurrent) {
    std::vector<Images> out(kThreads * kBatches);
    std::latch start(concurrent ? kThreads : 1);  // the threads start together, so their calls overlap
    const auto work = [&](int thread) {
        omp_set_num_threads(1);  // this thread's OpenMP: inline, no team
        if (concurrent) start.arrive_and_wait();
        auto ws = make<Model::SampleWorkspace<N>>();
        for (int b = 0; b < kBatches; ++b)
            model.generate(prompts(thread, b), "", options(thread, b, use_ema), out[std::size_t(thread * kBatches + b)],
                           *ws);
    };
    if (concurrent) {
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t) threads.emplace_back(work, t);
        for (auto& t : threads) t.join();
    } else {
        for (int t = 0; t < kThreads; ++t) work(t);
    }
    return out;
}

bool same_bits(const Images& a, const Images& b) {
    return std::memcmp(a.data(), b.data(), sizeof(float) * a.size) == 0;
}

}  // namespace

TEST_CASE("generate(): 4 threads sampling from one const model give the serial images bit for bit") {
    omp_set_num_threads(1);
    const std::unique_ptr<Model> owner = model_with_ema();
    const Model& model = *owner;  // generate() is const: nothing in the model changes
    const std::vector<float> before(model.diffusion_store.values(),
                                    model.diffusion_store.values() + model.diffusion_store.size());

    for (bool use_ema : {true, false}) {
        CAPTURE(use_ema);
        const std::vector<Images> serial = sample_all(model, use_ema, false);
        for (int round = 0; round < 5; ++round) {  // a race shows in some rounds, not in every one
            const std::vector<Images> concurrent = sample_all(model, use_ema, true);
            for (std::size_t i = 0; i < serial.size(); ++i) {
                CAPTURE(round);
                CAPTURE(i);
                CHECK(same_bits(serial[i], concurrent[i]));
            }
        }
        CHECK(!same_bits(serial[0], serial[1]));  // the calls differ: a shared result would not pass
    }
    CHECK(std::memcmp(before.data(), model.diffusion_store.values(), before.size() * sizeof(float)) == 0);
}

TEST_CASE("generate(): the EMA weights give what the trained weights give after a copy of the EMA into them") {
    omp_set_num_threads(1);
    const std::unique_ptr<Model> m = model_with_ema();
    Images with_ema, raw, copied;
    m->generate(prompts(1, 2), "a shirt", options(1, 2, true), with_ema);
    m->generate(prompts(1, 2), "a shirt", options(1, 2, false), raw);
    CHECK(!same_bits(with_ema, raw));  // the EMA weights are the ones sampling used
    m->ema.copy_to(m->diffusion_store);
    m->generate(prompts(1, 2), "a shirt", options(1, 2, false), copied);
    CHECK(same_bits(with_ema, copied));
}
