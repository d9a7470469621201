#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "diffuse/blocks/time_embedding.hpp"
#include "diffuse/testing/gradient_check.hpp"

using namespace diffuse;
using diffuse::testing::check_gradients;

namespace {

/// Gradient check of a time embedding at batch N; timesteps spread over [0, Steps), one repeated
/// (repeated rows of the learned table must add up).
template <class Emb, int N, int Steps>
void check_time_embedding() {
    Emb emb;
    ParamStore<double> store(emb, 11);
    Tensor<std::int32_t, N> t;
    for (int n = 0; n < N; ++n) t[n] = std::int32_t((n * 7919) % Steps);
    if (N > 2) t[N - 1] = t[0];
    Tensor<double, N, Emb::out_features> y;
    auto cache = make<typename Emb::template Cache<Shape<N>>>();
    auto rep = check_gradients(
        testing::probes(store), y, [&] { emb.forward(t, y, *cache); },
        [&](auto dy) { emb.backward(t, y, *cache, dy); });
    INFO(rep.summary());
    CHECK(rep.clean());
    CHECK(rep.max_rel_error < 1e-6);
    CHECK(rep.checked == store.count());
}

}  // namespace

TEST_CASE("LearnedTimeEmbedding: gradients at two shapes") {
    check_time_embedding<LearnedTimeEmbedding<double, 10, 4, 6>, 5, 10>();
    check_time_embedding<LearnedTimeEmbedding<double, 1000, 3, 2>, 2, 1000>();
}

TEST_CASE("SinusoidalTimeEmbedding: gradients at two shapes") {
    check_time_embedding<SinusoidalTimeEmbedding<double, 4, 6>, 5, 1000>();
    check_time_embedding<SinusoidalTimeEmbedding<double, 8, 3>, 3, 1000>();
}

TEST_CASE("TimeEmbedding names its parameters as PyTorch does") {
    LearnedTimeEmbedding<float, 10, 4, 6> learned;
    ParamStore<float> a(learned);
    REQUIRE(a.infos().size() == 3);
    CHECK(a.infos()[0].name == "embedding.weight");
    CHECK(a.infos()[1].name == "linear.weight");
    CHECK(a.infos()[2].name == "linear.bias");
    static_assert(param_count<LearnedTimeEmbedding<float, 10, 4, 6>>() == 10 * 4 + 4 * 6 + 6);

    SinusoidalTimeEmbedding<float, 4, 6> sin;
    ParamStore<float> b(sin);
    REQUIRE(b.infos().size() == 4);
    CHECK(b.infos()[0].name == "linear_1.weight");
    CHECK(b.infos()[3].name == "linear_2.bias");
    static_assert(param_count<SinusoidalTimeEmbedding<float, 4, 6>>() == 4 * 6 + 6 + 6 * 6 + 6);
}

TEST_CASE("SinusoidalTimeEmbedding: features match diffusers' formula, and the output a direct MLP, in float") {
    constexpr int D = 8, Out = 5, N = 3;
    SinusoidalTimeEmbedding<float, D, Out> emb;
    ParamStore<float> store(emb, 3);
    Tensor<std::int32_t, N> t;
    t[0] = 0;
    t[1] = 1;
    t[2] = 999;
    Tensor<float, N, Out> y;
    auto cache = make<decltype(emb)::Cache<Shape<N>>>();
    emb.forward(t, y, *cache);
    for (int n = 0; n < N; ++n) {
        // cos half first (flip_sin_to_cos=True), frequencies 10000^(-i / (D/2)) (downscale_freq_shift=0)
        float f[D];
        for (int i = 0; i < D / 2; ++i) {
            const double freq = std::pow(10000.0, -double(i) / (D / 2));
            f[i] = float(std::cos(t[n] * freq));
            f[D / 2 + i] = float(std::sin(t[n] * freq));
            CHECK(cache->f(n, i) == doctest::Approx(f[i]).epsilon(1e-6));
            CHECK(cache->f(n, D / 2 + i) == doctest::Approx(f[D / 2 + i]).epsilon(1e-6));
        }
        if (t[n] == 0) {
            CHECK(cache->f(n, 0) == 1.0f);
            CHECK(cache->f(n, D / 2) == 0.0f);
        }
        // t = 1, i = 0: cos(1), sin(1); i = 2 (of 4): frequency 1/100
        if (t[n] == 1) CHECK(cache->f(n, 2) == doctest::Approx(std::cos(0.01)));
        float h[Out], a[Out];
        const auto& l1 = emb.head.linear_1;
        const auto& l2 = emb.head.linear_2;
        for (int o = 0; o < Out; ++o) {
            h[o] = l1.bias.value()[o];
            for (int i = 0; i < D; ++i) h[o] += l1.weight.value()(o, i) * f[i];
            a[o] = h[o] / (1 + std::exp(-h[o]));
        }
        for (int o = 0; o < Out; ++o) {
            float want = l2.bias.value()[o];
            for (int i = 0; i < Out; ++i) want += l2.weight.value()(o, i) * a[i];
            CHECK(y(n, o) == doctest::Approx(want).epsilon(1e-5));
        }
    }
}

TEST_CASE("LearnedTimeEmbedding: forward is table row then Dense, in float") {
    constexpr int Steps = 6, D = 3, Out = 2, N = 2;
    LearnedTimeEmbedding<float, Steps, D, Out> emb;
    ParamStore<float> store(emb, 5);
    Tensor<std::int32_t, N> t;
    t[0] = 5;
    t[1] = 2;
    Tensor<float, N, Out> y;
    auto cache = make<decltype(emb)::Cache<Shape<N>>>();
    emb.forward(t, y, *cache);
    const auto table = emb.features.embedding.weight.value();
    const auto& lin = emb.head.linear;
    for (int n = 0; n < N; ++n)
        for (int o = 0; o < Out; ++o) {
            float want = lin.bias.value()[o];
            for (int i = 0; i < D; ++i) want += lin.weight.value()(o, i) * table(t[n], i);
            CHECK(y(n, o) == doctest::Approx(want).epsilon(1e-6));
        }
}

TEST_CASE("LearnedTimeEmbedding: a timestep outside the table throws a clear message") {
    LearnedTimeEmbedding<float, 10, 4, 6> emb;
    ParamStore<float> store(emb);
    Tensor<std::int32_t, 2> t;
    Tensor<float, 2, 6> y;
    auto cache = make<decltype(emb)::Cache<Shape<2>>>();
    for (std::int32_t bad : {10, -1}) {
        t[0] = 3;
        t[1] = bad;
        std::string what;
        try {
            emb.forward(t, y, *cache);
        } catch (const std::out_of_range& e) { what = e.what(); }
        INFO(what);
        CHECK(what.find("LearnedTimeEmbedding: timestep " + std::to_string(bad)) != std::string::npos);
        CHECK(what.find("[0, 10)") != std::string::npos);
        CHECK_THROWS_AS(emb.backward(t, y, *cache, y), std::out_of_range);
    }
}
