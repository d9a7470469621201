#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "diffuse/diffuse.hpp"
#include "diffuse/nn/embedding.hpp"
#include "diffuse/nn/softmax.hpp"
#include "diffuse/testing/gradient_check.hpp"

using namespace diffuse;
using diffuse::testing::check_gradients;

// ---- Softmax ----

template <int... D>
void check_softmax() {
    Softmax<double> layer;
    Rng rng(1);
    Tensor<double, D...> x, dx, y;
    fill_normal(x, rng, 2.0);
    std::vector<testing::Probe> probes{testing::probe("x", x, dx)};
    auto rep = check_gradients(
        probes, y, [&] { layer.forward(x, y); }, [&](auto dy) { layer.backward(x, y, dy, dx); });
    INFO(rep.summary());
    CHECK(rep.clean());
    CHECK(rep.max_rel_error < 1e-6);
}

TEST_CASE("Softmax: gradients at several shapes (rows shorter and longer than a SIMD batch)") {
    check_softmax<3, 3>();
    check_softmax<2, 3, 17>();
    check_softmax<1, 1>();
}

TEST_CASE("Softmax: float forward matches a direct computation, and is stable for large inputs") {
    Softmax<float> layer;
    Tensor<float, 3, 19> x, y;
    Rng rng(2);
    fill_normal(x, rng, 3.0);
    for (int j = 0; j < 19; ++j) x(2, j) += 1000.0f;  // exp(1000) overflows a float: only max-subtraction survives
    layer.forward(x, y);
    for (int r = 0; r < 3; ++r) {
        double m = -1e300, z = 0, sum = 0;
        for (int j = 0; j < 19; ++j) m = std::max(m, double(x(r, j)));
        for (int j = 0; j < 19; ++j) z += std::exp(double(x(r, j)) - m);
        for (int j = 0; j < 19; ++j) {
            CHECK(y(r, j) == doctest::Approx(std::exp(double(x(r, j)) - m) / z).epsilon(1e-5));
            sum += y(r, j);
        }
        CHECK(sum == doctest::Approx(1.0).epsilon(1e-6));
    }
}

TEST_CASE_TEMPLATE("softmax_row: scale, masked (-inf) entries in the vector body and tail, a fully masked row", T,
                   float, double) {
    constexpr T inf = std::numeric_limits<T>::infinity();
    constexpr int n = 19;  // two float AVX batches and a tail
    T x[n], y[n];
    for (int j = 0; j < n; ++j) x[j] = (j % 4 == 1 || j == 17) ? -inf : T(std::sin(1.7 * j) * 3);
    softmax_row(n, x, y, T(0.5));
    double z = 0;
    for (T v : x) z += v == -inf ? 0 : std::exp(0.5 * double(v));
    for (int j = 0; j < n; ++j) {
        if (x[j] == -inf) CHECK(y[j] == T(0));
        else CHECK(double(y[j]) == doctest::Approx(std::exp(0.5 * double(x[j])) / z).epsilon(1e-5));
    }
    T all[n];
    std::fill(all, all + n, -inf);
    softmax_row(n, all, all);  // in place
    for (T v : all) CHECK(v == T(0));
    // Backward with a scale: dx = scale · y (dy − Σ dy y), accumulated.
    T dy[n], dx[n];
    for (int j = 0; j < n; ++j) dy[j] = T(std::sin(j + 1.0)), dx[j] = T(1);
    softmax_row_backward(n, y, dy, dx, Accumulate::yes, T(0.5));
    double s = 0;
    for (int j = 0; j < n; ++j) s += double(dy[j]) * y[j];
    for (int j = 0; j < n; ++j) CHECK(double(dx[j]) == doctest::Approx(1.0 + 0.5 * y[j] * (dy[j] - s)).epsilon(1e-5));
}

// ---- Embedding ----

namespace {
template <class Ids>
void fill_ids(Ids& ids, int vocab, std::uint64_t seed) {
    Rng rng(seed);
    for (auto& id : ids) id = std::int32_t(rng.below(std::uint64_t(vocab)));
    ids[0] = ids[ids.size - 1] = 0;  // a repeated id: its gradient rows must add up
}
}  // namespace

/// Gradient check of a layer that maps ids [N, T] below Vocab to vectors [N, T, D] (no input gradient).
template <class Layer, int Vocab, int D, int N, int T>
void check_id_layer(std::uint64_t param_seed, std::uint64_t id_seed) {
    Layer layer;
    ParamStore<double> store(layer, param_seed);
    Tensor<std::int32_t, N, T> ids;
    fill_ids(ids, Vocab, id_seed);
    Tensor<double, N, T, D> y;
    auto rep = check_gradients(
        testing::probes(store), y, [&] { layer.forward(ids, y); }, [&](auto dy) { layer.backward(ids, y, dy); });
    INFO(rep.summary());
    CHECK(rep.clean());
    CHECK(rep.max_rel_error < 1e-6);
}

template <int Vocab, int D, int N, int T>
void check_embedding() {
    check_id_layer<Embedding<double, Vocab, D>, Vocab, D, N, T>(3, 4);
}

TEST_CASE("Embedding: weight gradients at several shapes, repeated ids included") {
    check_embedding<7, 5, 2, 6>();
    check_embedding<3, 16, 3, 4>();
    check_embedding<1, 1, 1, 2>();
}

TEST_CASE("Embedding: float forward copies the weight rows; name and N(0, 1) init") {
    Embedding<float, 1000, 64> layer;
    ParamStore<float> store(layer, 5);
    CHECK(store.infos()[0].name == "weight");
    double s = 0, s2 = 0;
    for (float w : layer.weight.value()) s += w, s2 += double(w) * w;
    const double n = 1000.0 * 64, mean = s / n, sd = std::sqrt(s2 / n - mean * mean);
    CHECK(std::abs(mean) < 0.02);
    CHECK(std::abs(sd - 1.0) < 0.02);

    Tensor<std::int32_t, 2, 3> ids;
    fill_ids(ids, 1000, 6);
    Tensor<float, 2, 3, 64> y;
    layer.forward(ids, y);
    for (int n = 0; n < 2; ++n)
        for (int t = 0; t < 3; ++t)
            for (int d = 0; d < 64; ++d) CHECK(y(n, t, d) == layer.weight.value()(ids(n, t), d));
}

TEST_CASE("Embedding: an id outside the vocabulary throws std::out_of_range and writes nothing") {
    Embedding<float, 10, 4> layer;
    ParamStore<float> store(layer, 5);
    Tensor<std::int32_t, 1, 3> ids;
    Tensor<float, 1, 3, 4> y;
    y.fill(7.0f);
    for (std::int32_t bad : {10, -1, 1 << 30}) {
        ids[0] = 1, ids[1] = bad, ids[2] = 2;
        CHECK_THROWS_AS(layer.forward(ids, y), std::out_of_range);
        CHECK_THROWS_AS(layer.backward(ids, y, y), std::out_of_range);
        try {
            layer.forward(ids, y);
        } catch (const std::out_of_range& e) {
            CHECK(std::string(e.what()) ==
                  "Embedding: token id " + std::to_string(bad) + " at position 1 is outside the vocabulary [0, 10)");
        }
        for (float v : y) CHECK(v == 7.0f);
    }
    ids[1] = 9;
    CHECK_NOTHROW(layer.forward(ids, y));
}

// ---- TokenPositionEmbedding ----

template <int Vocab, int Ctx, int D, int N, int T>
void check_token_position() {
    check_id_layer<TokenPositionEmbedding<double, Vocab, Ctx, D>, Vocab, D, N, T>(8, 9);
}

TEST_CASE("TokenPositionEmbedding: gradients with the sequence shorter than and equal to the context") {
    check_token_position<9, 6, 4, 2, 5>();
    check_token_position<5, 4, 11, 3, 4>();
}

TEST_CASE("TokenPositionEmbedding: names and float forward against a direct sum") {
    TokenPositionEmbedding<float, 20, 8, 6> layer;
    ParamStore<float> store(layer, 2);
    REQUIRE(store.infos().size() == 2);
    CHECK(store.infos()[0].name == "token.weight");
    CHECK(store.infos()[1].name == "position.weight");
    Tensor<std::int32_t, 2, 5> ids;
    fill_ids(ids, 20, 3);
    Tensor<float, 2, 5, 6> y;
    layer.forward(ids, y);
    for (int n = 0; n < 2; ++n)
        for (int t = 0; t < 5; ++t)
            for (int d = 0; d < 6; ++d)
                CHECK(y(n, t, d) == layer.token.weight.value()(ids(n, t), d) + layer.position.weight.value()(t, d));
    ids(1, 4) = 20;
    CHECK_THROWS_AS(layer.forward(ids, y), std::out_of_range);
}
