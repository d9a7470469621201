// ResidualBlock, AttentionBlock, CrossAttentionBlock: gradient checks in double at
// several shapes (both norm kinds, identity and projected skip, with and without a time embedding,
// image and token inputs, with and without a key padding mask), and float forwards against a naive
// direct computation.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "diffuse/blocks/attention_block.hpp"
#include "diffuse/blocks/cross_attention.hpp"
#include "diffuse/blocks/residual.hpp"
#include "diffuse/testing/gradient_check.hpp"

using namespace diffuse;
using diffuse::testing::check_gradients;

namespace {

void require_clean(const testing::GradCheckReport& rep) {
    INFO(rep.summary());
    CHECK(rep.clean());
    CHECK(rep.max_rel_error < 1e-6);
}

template <class Block, int N, int H, int W>
void check_residual() {
    constexpr int Cin = Block::in_channels, Cout = Block::out_channels, Td = Block::time_dim;
    using XS = Shape<N, H, W, Cin>;
    Block block;
    ParamStore<double> store(block, 11);
    Rng rng(3);
    auto x = make<TensorOf<double, XS>>(), dx = make<TensorOf<double, XS>>();
    auto y = make<Tensor<double, N, H, W, Cout>>();
    auto cache = make<typename Block::template Cache<XS>>();
    fill_normal(*x, rng);
    auto probes = testing::probes(store);
    probes.push_back(testing::probe("x", *x, *dx));
    if constexpr (Block::has_time) {
        auto t = make<Tensor<double, N, Td>>(), dt = make<Tensor<double, N, Td>>();
        fill_normal(*t, rng);
        probes.push_back(testing::probe("temb", *t, *dt));
        require_clean(check_gradients(
            probes, *y, [&] { block.forward(*x, *t, *y, *cache); },
            [&](auto dy) { block.backward(*x, *t, *y, *cache, dy, *dx, *dt); }));
    } else {
        require_clean(check_gradients(
            probes, *y, [&] { block.forward(*x, *y, *cache); },
            [&](auto dy) { block.backward(*x, *y, *cache, dy, *dx); }));
    }
}

// ---- naive references (double arithmetic over float parameters) ----
using Vec = std::vector<double>;

template <class P>
Vec values(const P& p) {
    return Vec(p.value().begin(), p.value().end());
}

/// Normalizes each of `items` items of `rows` rows of C channels over (rows · C/G) per group.
template <class NormLayer>
Vec naive_norm(const Vec& x, int items, int rows, int C, int G, const NormLayer& n) {
    const Vec w = values(n.weight), b = values(n.bias);
    Vec y(x.size());
    const int len = C / G;
    for (int it = 0; it < items; ++it)
        for (int g = 0; g < G; ++g) {
            double m = 0, v = 0;
            auto at = [&](int r, int c) { return std::size_t(it) * rows * C + std::size_t(r) * C + g * len + c; };
            for (int r = 0; r < rows; ++r)
                for (int c = 0; c < len; ++c) m += x[at(r, c)];
            m /= rows * len;
            for (int r = 0; r < rows; ++r)
                for (int c = 0; c < len; ++c) v += (x[at(r, c)] - m) * (x[at(r, c)] - m);
            const double rs = 1 / std::sqrt(v / (rows * len) + 1e-5);
            for (int r = 0; r < rows; ++r)
                for (int c = 0; c < len; ++c) y[at(r, c)] = (x[at(r, c)] - m) * rs * w[g * len + c] + b[g * len + c];
        }
    return y;
}
template <class NormLayer>
Vec naive_norm_any(const Vec& x, int N, int HW, int C, const NormLayer& n) {
    if constexpr (requires { NormLayer::num_groups; }) return naive_norm(x, N, HW, C, NormLayer::num_groups, n);
    else return naive_norm(x, N * HW, 1, C, 1, n);
}

Vec naive_silu(Vec x) {
    for (auto& v : x) v = v / (1 + std::exp(-v));
    return x;
}

/// 'same' conv, stride 1, weight [Cout, K, K, Cin].
template <class ConvLayer>
Vec naive_conv(const Vec& x, int N, int H, int W, const ConvLayer& conv) {
    constexpr int Cin = ConvLayer::in_channels, Cout = ConvLayer::out_channels, K = ConvLayer::kernel_size;
    const Vec w = values(conv.weight), b = values(conv.bias);
    Vec y(std::size_t(N) * H * W * Cout);
    for (int n = 0; n < N; ++n)
        for (int h = 0; h < H; ++h)
            for (int x0 = 0; x0 < W; ++x0)
                for (int o = 0; o < Cout; ++o) {
                    double s = b[o];
                    for (int kh = 0; kh < K; ++kh)
                        for (int kw = 0; kw < K; ++kw) {
                            const int ih = h + kh - (K - 1) / 2, iw = x0 + kw - (K - 1) / 2;
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                            for (int c = 0; c < Cin; ++c)
                                s += w[((std::size_t(o) * K + kh) * K + kw) * Cin + c] *
                                     x[((std::size_t(n) * H + ih) * W + iw) * Cin + c];
                        }
                    y[((std::size_t(n) * H + h) * W + x0) * Cout + o] = s;
                }
    return y;
}

template <class L>
Vec naive_linear(const Vec& x, int rows, const L& lin) {
    constexpr int In = L::in_features, Out = L::out_features;
    const Vec w = values(lin.weight), b = values(lin.bias);
    Vec y(std::size_t(rows) * Out);
    for (int r = 0; r < rows; ++r)
        for (int o = 0; o < Out; ++o) {
            double s = b[o];
            for (int i = 0; i < In; ++i) s += w[std::size_t(o) * In + i] * x[std::size_t(r) * In + i];
            y[std::size_t(r) * Out + o] = s;
        }
    return y;
}

/// MHA over q-input [N, Tq, D] and kv-input [N, Tk, Dkv]; padded[n·Tk + j] hides key j.
template <class A>
Vec naive_mha(const Vec& xq, const Vec& xkv, int N, int Tq, int Tk, const std::vector<bool>& padded, const A& a) {
    constexpr int D = A::model_width, Hh = A::num_heads, dh = A::head_width;
    const Vec q = naive_linear(xq, N * Tq, a.q_proj), k = naive_linear(xkv, N * Tk, a.k_proj),
              v = naive_linear(xkv, N * Tk, a.v_proj);
    Vec ctx(std::size_t(N) * Tq * D, 0.0);
    for (int n = 0; n < N; ++n)
        for (int h = 0; h < Hh; ++h)
            for (int t = 0; t < Tq; ++t) {
                Vec s(Tk);
                double mx = -1e300;
                for (int j = 0; j < Tk; ++j) {
                    double d = 0;
                    for (int e = 0; e < dh; ++e)
                        d += q[(std::size_t(n) * Tq + t) * D + h * dh + e] *
                             k[(std::size_t(n) * Tk + j) * D + h * dh + e];
                    s[j] = d / std::sqrt(double(dh));
                    if (!padded.empty() && padded[std::size_t(n) * Tk + j]) s[j] = -1e300;
                    mx = std::max(mx, s[j]);
                }
                double z = 0;
                for (auto& e : s) z += (e = e <= -1e299 ? 0.0 : std::exp(e - mx));
                for (int j = 0; j < Tk; ++j)
                    for (int e = 0; e < dh; ++e)
                        ctx[(std::size_t(n) * Tq + t) * D + h * dh + e] +=
                            s[j] / z * v[(std::size_t(n) * Tk + j) * D + h * dh + e];
            }
    return naive_linear(ctx, N * Tq, a.out_proj);
}

template <class Y>
void check_close(const Y& y, const Vec& want, double tol) {
    REQUIRE(want.size() == shape_of<Y>::size);
    double worst = 0;
    for (std::size_t i = 0; i < want.size(); ++i)
        worst = std::max(worst, std::abs(double(y[i]) - want[i]) / (1 + std::abs(want[i])));
    CHECK(worst < tol);
}

template <class X>
Vec to_vec(const X& x) {
    return Vec(x.begin(), x.end());
}

}  // namespace

TEST_CASE("ResidualBlock: gradients, GroupNorm and LayerNorm, identity and projected skip, with time") {
    check_residual<ResidualBlock<double, 4, 6, norm::Group<2>>, 2, 4, 4>();  // projected skip
    check_residual<ResidualBlock<double, 4, 4, norm::Group<2>>, 1, 3, 5>();  // identity skip
    check_residual<ResidualBlock<double, 3, 5, norm::Layer, 4>, 2, 3, 3>();  // time, projected
    check_residual<ResidualBlock<double, 4, 4, norm::Layer, 3>, 3, 2, 4>();  // time, identity
}

TEST_CASE("ResidualBlock: state-dict names and parameter count") {
    using B = ResidualBlock<float, 4, 6, norm::Group<2>, 3>;
    B block;
    ParamStore<float> store(block);
    std::vector<std::string> names;
    for (const auto& i : store.infos()) names.push_back(i.name);
    CHECK(names == std::vector<std::string>{"norm1.weight", "norm1.bias", "conv1.weight", "conv1.bias",
                                            "time_proj.weight", "time_proj.bias", "norm2.weight", "norm2.bias",
                                            "conv2.weight", "conv2.bias", "skip.weight", "skip.bias"});
    static_assert(param_count<B>() == 2 * 4 + 6 * 9 * 4 + 6 + 3 * 6 + 6 + 2 * 6 + 6 * 9 * 6 + 6 + 4 * 6 + 6);
    static_assert(param_count<ResidualBlock<float, 4, 4, norm::Layer>>() == 2 * (2 * 4 + 4 * 9 * 4 + 4));
    CHECK(store.count() == param_count<B>());
}

TEST_CASE("ResidualBlock: float forward matches a naive computation") {
    constexpr int N = 2, H = 4, W = 3, Cin = 4, Cout = 6, Td = 5;
    SUBCASE("GroupNorm, time, projected skip") {
        ResidualBlock<float, Cin, Cout, norm::Group<2>, Td> b;
        ParamStore<float> store(b, 5);
        Rng rng(8);
        for (std::size_t i = 0; i < store.size(); ++i)
            store.values()[i] += float(0.1 * rng.normal());  // non-trivial norm affine
        auto x = make<Tensor<float, N, H, W, Cin>>();
        auto t = make<Tensor<float, N, Td>>();
        auto y = make<Tensor<float, N, H, W, Cout>>();
        auto cache = make<decltype(b)::Cache<Shape<N, H, W, Cin>>>();
        fill_normal(*x, rng);
        fill_normal(*t, rng);
        b.forward(*x, *t, *y, *cache);
        Vec h = naive_conv(naive_silu(naive_norm_any(to_vec(*x), N, H * W, Cin, b.norm1)), N, H, W, b.conv1);
        const Vec tp = naive_linear(naive_silu(to_vec(*t)), N, b.time_proj);
        for (std::size_t i = 0; i < h.size(); ++i) h[i] += tp[i / (H * W * Cout) * Cout + i % Cout];
        Vec want = naive_conv(naive_silu(naive_norm_any(h, N, H * W, Cout, b.norm2)), N, H, W, b.conv2);
        const Vec s = naive_conv(to_vec(*x), N, H, W, b.skip);
        for (std::size_t i = 0; i < want.size(); ++i) want[i] += s[i];
        check_close(*y, want, 1e-5);
    }
    SUBCASE("LayerNorm, identity skip") {
        ResidualBlock<float, Cin, Cin, norm::Layer> b;
        ParamStore<float> store(b, 6);
        Rng rng(9);
        for (std::size_t i = 0; i < store.size(); ++i) store.values()[i] += float(0.1 * rng.normal());
        auto x = make<Tensor<float, N, H, W, Cin>>();
        auto y = make<Tensor<float, N, H, W, Cin>>();
        auto cache = make<decltype(b)::Cache<Shape<N, H, W, Cin>>>();
        fill_normal(*x, rng);
        b.forward(*x, *y, *cache);
        const Vec h = naive_conv(naive_silu(naive_norm_any(to_vec(*x), N, H * W, Cin, b.norm1)), N, H, W, b.conv1);
        Vec want = naive_conv(naive_silu(naive_norm_any(h, N, H * W, Cin, b.norm2)), N, H, W, b.conv2);
        for (std::size_t i = 0; i < want.size(); ++i) want[i] += (*x)[i];
        check_close(*y, want, 1e-5);
    }
}

namespace {
template <class Block, class XS>
void check_attention_block() {
    Block block;
    ParamStore<double> store(block, 13);
    Rng rng(4);
    auto x = make<TensorOf<double, XS>>(), dx = make<TensorOf<double, XS>>(), y = make<TensorOf<double, XS>>();
    auto cache = make<typename Block::template Cache<XS>>();
    fill_normal(*x, rng);
    auto probes = testing::probes(store);
    probes.push_back(testing::probe("x", *x, *dx));
    require_clean(check_gradients(
        probes, *y, [&] { block.forward(*x, *y, *cache); }, [&](auto dy) { block.backward(*x, *y, *cache, dy, *dx); }));
}

template <class Block, class XS, class CS, bool Masked>
void check_cross_block() {
    Block block;
    ParamStore<double> store(block, 17);
    Rng rng(5);
    auto x = make<TensorOf<double, XS>>(), dx = make<TensorOf<double, XS>>(), y = make<TensorOf<double, XS>>();
    auto c = make<TensorOf<double, CS>>(), dc = make<TensorOf<double, CS>>();
    auto cache = make<typename Block::template Cache<XS, CS>>();
    fill_normal(*x, rng);
    fill_normal(*c, rng);
    Tensor<bool, CS::first, CS::template dim<1>> mask;
    mask.fill(false);
    mask(0, CS::template dim<1> - 1) = true;  // the last key of sample 0 is padding
    auto probes = testing::probes(store);
    probes.push_back(testing::probe("x", *x, *dx));
    probes.push_back(testing::probe("context", *c, *dc));
    auto run = [&](const auto& m) {
        require_clean(check_gradients(
            probes, *y, [&] { block.forward(*x, *c, m, *y, *cache); },
            [&](auto dy) { block.backward(*x, *c, m, *y, *cache, dy, *dx, *dc); }));
    };
    if constexpr (Masked) {
        run(mask);
        // A padded key gets no gradient: perturbing it leaves y unchanged.
        dc->fill(0);
        block.forward(*x, *c, mask, *y, *cache);
        auto dyt = make<TensorOf<double, XS>>();
        fill_normal(*dyt, rng);
        block.backward(*x, *c, mask, *y, *cache, *dyt, *dx, *dc);
        for (int e = 0; e < CS::last; ++e) CHECK((*dc)(0, CS::template dim<1> - 1, e) == 0.0);
    } else {
        run(no_mask);
    }
}
}  // namespace

TEST_CASE("AttentionBlock: gradients on images and token sequences, both norms") {
    check_attention_block<AttentionBlock<double, 4, 2, norm::Group<2>>, Shape<2, 3, 3, 4>>();
    check_attention_block<AttentionBlock<double, 6, 3, norm::Layer>, Shape<1, 2, 4, 6>>();
    check_attention_block<AttentionBlock<double, 4, 1, norm::Layer>, Shape<2, 5, 4>>();
}

TEST_CASE("AttentionBlock: float forward matches a naive computation") {
    constexpr int N = 2, H = 3, W = 2, C = 6;
    AttentionBlock<float, C, 2, norm::Group<3>> b;
    ParamStore<float> store(b, 21);
    Rng rng(10);
    for (std::size_t i = 0; i < store.size(); ++i) store.values()[i] += float(0.1 * rng.normal());
    auto x = make<Tensor<float, N, H, W, C>>(), y = make<Tensor<float, N, H, W, C>>();
    auto cache = make<decltype(b)::Cache<Shape<N, H, W, C>>>();
    fill_normal(*x, rng);
    b.forward(*x, *y, *cache);
    const Vec h = naive_norm_any(to_vec(*x), N, H * W, C, b.norm);
    Vec want = naive_mha(h, h, N, H * W, H * W, {}, b.attn);
    for (std::size_t i = 0; i < want.size(); ++i) want[i] += (*x)[i];
    check_close(*y, want, 1e-5);
}

TEST_CASE("CrossAttentionBlock: gradients with and without a key padding mask") {
    check_cross_block<CrossAttentionBlock<double, 4, 6, 2>, Shape<2, 3, 3, 4>, Shape<2, 5, 6>, true>();
    check_cross_block<CrossAttentionBlock<double, 8, 5, 2>, Shape<2, 4, 8>, Shape<2, 3, 5>, false>();
}

TEST_CASE("CrossAttentionBlock: float forward matches a naive computation, mask honoured") {
    constexpr int N = 2, H = 2, W = 3, C = 4, Tc = 5, Dc = 6;
    CrossAttentionBlock<float, C, Dc, 2> b;
    ParamStore<float> store(b, 23);
    Rng rng(11);
    for (std::size_t i = 0; i < store.size(); ++i) store.values()[i] += float(0.1 * rng.normal());
    auto x = make<Tensor<float, N, H, W, C>>(), y = make<Tensor<float, N, H, W, C>>();
    auto ctx = make<Tensor<float, N, Tc, Dc>>();
    auto cache = make<decltype(b)::Cache<Shape<N, H, W, C>, Shape<N, Tc, Dc>>>();
    fill_normal(*x, rng);
    fill_normal(*ctx, rng);
    Tensor<std::uint8_t, N, Tc> mask;
    mask.fill(0);
    mask(1, 3) = mask(1, 4) = 1;
    std::vector<bool> padded(N * Tc, false);
    padded[1 * Tc + 3] = padded[1 * Tc + 4] = true;
    b.forward(*x, *ctx, mask, *y, *cache);
    const Vec h = naive_norm_any(to_vec(*x), N, H * W, C, b.norm);
    Vec want = naive_mha(h, to_vec(*ctx), N, H * W, Tc, padded, b.attn);
    for (std::size_t i = 0; i < want.size(); ++i) want[i] += (*x)[i];
    check_close(*y, want, 1e-5);
}
