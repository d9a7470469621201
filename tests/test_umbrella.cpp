// The umbrella header alone is enough: one type from each folder of include/diffuse/, used through
// <diffuse/diffuse.hpp> and nothing else of the library. This file is also the strict consumer of
// issue 14: tests/CMakeLists.txt compiles it with -Wall -Wextra -Wpedantic -Wshadow -Wconversion
// -Werror and the library headers as ordinary (non-system) includes, and it instantiates the main
// models' forward and backward passes (VAE, text encoder, UNet through a training step) and sampling.
// dist/ joins the umbrella only with diffuse::dist (DIFFUSE_WITH_MPI); tests/dist covers it.
#include <doctest/doctest.h>

#include <omp.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <diffuse/diffuse.hpp>
#include <string>
#include <vector>

#include "one_thread.hpp"

using namespace diffuse;

namespace {

using Model = LatentDiffusion<float, presets::Tiny>;

/// data/: a captioned image source of our own (the CaptionedImageSource concept): bright and dark
/// 8×8 squares.
struct Squares {
    int size() const { return 16; }
    static constexpr int height() { return Model::image_size; }
    static constexpr int width() { return Model::image_size; }
    static constexpr int channels() { return Model::image_channels; }
    static constexpr std::size_t max_caption_length() { return 16; }
    std::int32_t label(int i) const { return i % 2; }
    template <class T>
    void image(int i, T* dst) const {
        for (int p = 0; p < height() * width(); ++p) dst[p] = T(i % 2 ? 0.8 : -0.8);
    }
    void caption(std::string& out, int i, std::uint64_t, std::uint64_t) const {
        out = i % 2 ? "a bright square" : "a dark square";
    }
};
static_assert(data::CaptionedImageSource<Squares, float>);

}  // namespace

TEST_CASE("diffuse.hpp alone: one type from each folder") {
    // version
    CHECK(DIFFUSE_VERSION_MAJOR >= 0);

    // core/ and nn/: a Linear layer in double, its gradients checked by testing/
    Linear<double, 3, 2> layer;
    ParamStore<double> store(layer, 7);
    Rng rng(1);
    Tensor<double, 4, 3> x, dx;
    Tensor<double, 4, 2> y;
    fill_normal(x, rng);
    auto probes = testing::probes(store);
    probes.push_back(testing::probe("x", x, dx));
    const auto rep = testing::check_gradients(
        probes, y, [&] { layer.forward(x, y); }, [&](auto dy) { layer.backward(x, y, dy, dx); });
    CHECK(rep.clean());

    // io/
    const io::json::Value v = io::json::parse(R"({"steps": 3})");
    REQUIRE(v.find("steps") != nullptr);
    CHECK(v.find("steps")->text == "3");

    // text/
    const auto tok = text::Tokenizer::learn(std::vector<std::string>{"a bright square", "a dark square"}, 10);
    CHECK(tok.encode<8>("a bright square").ids[2] != tok.encode<8>("a dark square").ids[2]);

    // sample/
    const diffusion::NoiseSchedule schedule(diffusion::BetaSchedule::cosine, 100);
    CHECK(schedule.steps() == 100);

    // blocks/
    using Time = SinusoidalTimeEmbedding<float, 8, 16>;
    Time time_embedding;
    ParamStore<float> time_store(time_embedding, 3);
    Tensor<std::int32_t, 2> t;
    t[0] = 1;
    t[1] = 90;
    Tensor<float, 2, 16> emb;
    auto cache = make<Time::Cache<Shape<2>>>();
    time_embedding.forward(t, emb, *cache);
    CHECK(emb(0, 0) != emb(1, 0));

    // app/
    const std::array<float, 2> a{0, 0}, b{3, 4};
    CHECK(app::squared_distance(a.data(), b.data(), 2) == doctest::Approx(25));
}

TEST_CASE("diffuse.hpp alone: models/ and train/ train the Tiny pipeline and sample from it") {
    Model model(3);
    model.tokenizer = text::Tokenizer::learn(std::vector<std::string>{"a bright square", "a dark square"},
                                             std::size_t(Model::Text::vocab_size - 4));
    LatentDiffusionTrainOptions o;
    o.seed = 5;
    o.vae_lr = 3e-3;
    o.lr = 3e-3;
    o.vae_warmup_steps = 2;
    o.warmup_steps = 2;
    LatentDiffusionTrainer<float, presets::Tiny, 4, Squares> trainer(model, Squares{}, o);
    double first = 0, last = 0;  // the VAE's reconstruction loss over its first and last 5 steps
    for (int i = 0; i < 40; ++i) {
        const double loss = trainer.vae_step().reconstruction;
        if (i < 5) first += loss;
        if (i >= 35) last += loss;
    }
    CHECK(last < 0.5 * first);
    trainer.measure_latent_scale();
    for (int i = 0; i < 3; ++i) CHECK(std::isfinite(trainer.diffusion_step().loss));

    Model::SampleOptions opt;
    opt.sampler.steps = 4;
    Tensor<float, 2, Model::image_size, Model::image_size, Model::image_channels> images;
    model.generate(std::array<std::string, 2>{"a bright square", "a dark square"}, "", opt, images);
    for (float p : images) REQUIRE((std::isfinite(p) && p >= -1 && p <= 1));
}
