// clip::Layer: gradient checks in double (with and without padded keys), a null dx, and a naive float
// forward. The whole text encoder is tested in test_clip.cpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "diffuse/blocks/transformer_layer.hpp"
#include "diffuse/core/rng.hpp"
#include "diffuse/testing/gradient_check.hpp"

using namespace diffuse;
using diffuse::testing::check_gradients;

namespace {

/// Marks the last pads[n] positions of sample n as padded.
template <int N, int Len>
Tensor<bool, N, Len> tail_mask(const std::array<int, N>& pads) {
    Tensor<bool, N, Len> m;
    for (int n = 0; n < N; ++n)
        for (int t = 0; t < Len; ++t) m(n, t) = t >= Len - pads[std::size_t(n)];
    return m;
}

template <int D, int Heads, int Hidden, int N, int Len, class M>
void check_layer(const M& mask) {
    clip::Layer<double, D, Heads, Hidden> layer;
    ParamStore<double> store(layer, 11);
    // Non-trivial LayerNorm affine and attention biases, so every path carries signal.
    Rng rng(5);
    for (std::size_t i = 0; i < store.size(); ++i) store.values()[i] += 0.2 * rng.normal();
    Tensor<double, N, Len, D> x, dx, y;
    fill_normal(x, rng);
    auto cache = make<typename decltype(layer)::template Cache<Shape<N, Len, D>>>();
    auto probes = testing::probes(store);
    probes.push_back(testing::probe("x", x, dx));
    auto rep = check_gradients(
        probes, y, [&] { layer.forward(x, mask, y, *cache); },
        [&](auto dy) { layer.backward(x, mask, y, *cache, dy, dx); });
    INFO(rep.summary());
    CHECK(rep.clean());
    CHECK(rep.max_rel_error < 1e-6);
}

}  // namespace

TEST_CASE("clip::Layer: gradients with and without padded keys") {
    check_layer<8, 2, 16, 2, 5>(tail_mask<2, 5>({0, 2}));
    check_layer<6, 3, 12, 3, 4>(no_mask);
    check_layer<4, 1, 8, 2, 3>(tail_mask<2, 3>({1, 2}));
}

TEST_CASE("clip::Layer: a null dx still accumulates every parameter gradient") {
    clip::Layer<double, 4, 2, 8> layer;
    ParamStore<double> store(layer, 3);
    Rng rng(2);
    Tensor<double, 2, 3, 4> x, y, dy, dx;
    fill_normal(x, rng);
    fill_normal(dy, rng);
    auto cache = make<decltype(layer)::Cache<Shape<2, 3, 4>>>();
    layer.forward(x, no_mask, y, *cache);
    store.zero_grad();
    dx.fill(0);
    layer.backward(x, no_mask, y, *cache, dy, dx);
    const std::vector<double> with(store.grads(), store.grads() + store.size());
    store.zero_grad();
    layer.backward(x, no_mask, y, *cache, dy, View<double, 2, 3, 4>());
    for (std::size_t i = 0; i < store.size(); ++i) CHECK(store.grads()[i] == with[i]);
}

namespace {

/// A direct, loop-by-loop computation of the layer in double from the float parameters.
template <class LayerT, int N, int Len, int D>
std::vector<double> naive_layer(const LayerT& l, const Tensor<float, N, Len, D>& x, const Tensor<bool, N, Len>& mask) {
    constexpr int H = LayerT::num_heads, dh = D / H, F = LayerT::mlp_hidden;
    auto ln = [&](const auto& norm, const std::vector<double>& in) {
        std::vector<double> out(in.size());
        for (std::size_t r = 0; r < in.size() / D; ++r) {
            double mean = 0, var = 0;
            for (int c = 0; c < D; ++c) mean += in[r * D + c] / D;
            for (int c = 0; c < D; ++c) var += (in[r * D + c] - mean) * (in[r * D + c] - mean) / D;
            for (int c = 0; c < D; ++c)
                out[r * D + c] =
                    (in[r * D + c] - mean) / std::sqrt(var + 1e-5) * norm.weight.value()[c] + norm.bias.value()[c];
        }
        return out;
    };
    auto linear = [](const auto& lin, const std::vector<double>& in, int fin, int fout) {
        std::vector<double> out(in.size() / fin * fout);
        for (std::size_t r = 0; r < in.size() / fin; ++r)
            for (int o = 0; o < fout; ++o) {
                double s = lin.bias.value()[o];
                for (int i = 0; i < fin; ++i) s += in[r * fin + i] * lin.weight.value()(o, i);
                out[r * fout + o] = s;
            }
        return out;
    };
    std::vector<double> xv(x.begin(), x.end());
    const auto h1 = ln(l.ln1, xv);
    const auto q = linear(l.attn.q_proj, h1, D, D), k = linear(l.attn.k_proj, h1, D, D),
               v = linear(l.attn.v_proj, h1, D, D);
    std::vector<double> ctx(xv.size(), 0.0);
    for (int n = 0; n < N; ++n)
        for (int h = 0; h < H; ++h)
            for (int i = 0; i < Len; ++i) {
                std::vector<double> p(Len, 0.0);
                double mx = -1e300, sum = 0;
                for (int j = 0; j < Len; ++j) {
                    if (mask(n, j)) continue;
                    double s = 0;
                    for (int c = 0; c < dh; ++c)
                        s += q[(n * Len + i) * D + h * dh + c] * k[(n * Len + j) * D + h * dh + c];
                    p[j] = s / std::sqrt(double(dh));
                    mx = std::max(mx, p[j]);
                }
                for (int j = 0; j < Len; ++j) sum += p[j] = mask(n, j) ? 0.0 : std::exp(p[j] - mx);
                for (int j = 0; j < Len; ++j)
                    for (int c = 0; c < dh; ++c)
                        ctx[(n * Len + i) * D + h * dh + c] += p[j] / sum * v[(n * Len + j) * D + h * dh + c];
            }
    const auto a = linear(l.attn.out_proj, ctx, D, D);
    std::vector<double> r(xv.size());
    for (std::size_t i = 0; i < r.size(); ++i) r[i] = xv[i] + a[i];
    auto f = linear(l.fc1, ln(l.ln2, r), D, F);
    for (auto& e : f) e = 0.5 * e * (1 + std::erf(e / std::sqrt(2.0)));
    const auto m = linear(l.fc2, f, F, D);
    for (std::size_t i = 0; i < r.size(); ++i) r[i] += m[i];
    return r;
}

}  // namespace

TEST_CASE("clip::Layer: float forward matches a direct computation") {
    clip::Layer<float, 8, 2, 32> layer;
    ParamStore<float> store(layer, 4);
    Rng rng(9);
    for (std::size_t i = 0; i < store.size(); ++i) store.values()[i] += float(0.1 * rng.normal());
    Tensor<float, 2, 5, 8> x, y;
    fill_normal(x, rng);
    const auto mask = tail_mask<2, 5>({1, 3});
    auto cache = make<decltype(layer)::Cache<Shape<2, 5, 8>>>();
    layer.forward(x, mask, y, *cache);
    const auto want = naive_layer(layer, x, mask);
    double worst = 0;
    for (std::size_t i = 0; i < want.size(); ++i)
        worst = std::max(worst, std::abs(double(y[i]) - want[i]) / std::max(1.0, std::abs(want[i])));
    MESSAGE("float forward error " << worst);
    CHECK(worst < 2e-6);  // measured 2.3e-7 (AVX-512, Zen 4): float rounding only
}
