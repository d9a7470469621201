#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "diffuse/diffuse.hpp"
#include "diffuse/nn/attention.hpp"
#include "diffuse/testing/gradient_check.hpp"

#include "data/attention_reference.hpp"

using namespace diffuse;
using diffuse::testing::check_gradients;

namespace {

template <class T, int D, int Heads, int Dkv, int N, int Tq, int Tk>
struct Fixture {
    using MHA = MultiHeadAttention<T, D, Heads, Dkv>;
    using Cache = typename MHA::template Cache<Shape<N, Tq, D>, Shape<N, Tk, Dkv>>;
    MHA layer;
    ParamStore<T> store;
    std::unique_ptr<Cache> cache = make<Cache>();
    Tensor<T, N, Tq, D> x{}, dx{}, y{}, dy{};
    Tensor<T, N, Tk, Dkv> context{}, dcontext{};
    Tensor<std::uint8_t, N, Tk> mask{};
    explicit Fixture(std::uint64_t seed) : store(layer, seed) {}
};

/// Key j of sample n is padded when (n + 2j) % 5 == 4: some keys padded, never all when Tk >= 3.
template <class M>
void pad_some_keys(M& mask) {
    constexpr int N = shape_of<M>::first, Tk = shape_of<M>::last;
    for (int n = 0; n < N; ++n)
        for (int j = 0; j < Tk; ++j) mask(n, j) = (n + 2 * j) % 5 == 4;
}

template <int D, int Heads, int Dkv, int N, int Tq, int Tk>
void check_cross(bool masked) {
    Fixture<double, D, Heads, Dkv, N, Tq, Tk> f(7);
    Rng rng(3);
    fill_normal(f.x, rng);
    fill_normal(f.context, rng);
    if (masked) pad_some_keys(f.mask);
    // Larger q/k weights than the Xavier init give peaked (not near-uniform) attention.
    for (auto& w : f.layer.q_proj.weight.value()) w *= 3;
    auto probes = testing::probes(f.store);
    probes.push_back(testing::probe("x", f.x, f.dx));
    probes.push_back(testing::probe("context", f.context, f.dcontext));
    auto run = [&](auto& mask) {
        return check_gradients(
            probes, f.y, [&] { f.layer.forward(f.x, f.context, mask, f.y, *f.cache); },
            [&](auto dy) { f.layer.backward(f.x, f.context, mask, f.y, *f.cache, dy, f.dx, f.dcontext); });
    };
    auto rep = masked ? run(f.mask) : run(no_mask);
    INFO("D=", D, " Heads=", Heads, " Dkv=", Dkv, " N=", N, " Tq=", Tq, " Tk=", Tk, " masked=", masked);
    INFO(rep.summary());
    CHECK(rep.clean());
    CHECK(rep.max_rel_error < 1e-6);
}

template <int D, int Heads, int N, int T>
void check_self(bool masked) {
    Fixture<double, D, Heads, D, N, T, T> f(11);
    Rng rng(5);
    fill_normal(f.x, rng);
    if (masked) pad_some_keys(f.mask);
    auto probes = testing::probes(f.store);
    probes.push_back(testing::probe("x", f.x, f.dx));
    auto run = [&](auto& mask) {
        return check_gradients(
            probes, f.y, [&] { f.layer.forward_self(f.x, mask, f.y, *f.cache); },
            [&](auto dy) { f.layer.backward_self(f.x, mask, f.y, *f.cache, dy, f.dx); });
    };
    auto rep = masked ? run(f.mask) : run(no_mask);
    INFO("self D=", D, " Heads=", Heads, " N=", N, " T=", T, " masked=", masked);
    INFO(rep.summary());
    CHECK(rep.clean());
    CHECK(rep.max_rel_error < 1e-6);
}

/// Direct loops over (sample, head, query, key), in double, from the layer's float parameters.
template <class F, class X, class C, class M>
std::vector<double> naive_attention(const F& layer, const X& x, const C& context, const M* mask) {
    constexpr int D = F::model_width, Heads = F::num_heads, dh = F::head_width, Dkv = F::context_width;
    constexpr int N = shape_of<X>::first, Tq = shape_of<X>::template dim<1>, Tk = shape_of<C>::template dim<1>;
    auto lin = [](const auto& l, const auto* in, int in_w, int out_w, int o) {
        double s = l.bias.value()[o];
        for (int i = 0; i < in_w; ++i) s += double(in[i]) * double(l.weight.value()[std::size_t(o) * in_w + i]);
        return s;
    };
    std::vector<double> q(N * Tq * D), k(N * Tk * D), v(N * Tk * D), ctx(N * Tq * D, 0.0), y(N * Tq * D);
    for (int r = 0; r < N * Tq; ++r)
        for (int o = 0; o < D; ++o) q[r * D + o] = lin(layer.q_proj, x.data() + r * D, D, D, o);
    for (int r = 0; r < N * Tk; ++r)
        for (int o = 0; o < D; ++o) {
            k[r * D + o] = lin(layer.k_proj, context.data() + r * Dkv, Dkv, D, o);
            v[r * D + o] = lin(layer.v_proj, context.data() + r * Dkv, Dkv, D, o);
        }
    for (int n = 0; n < N; ++n)
        for (int h = 0; h < Heads; ++h)
            for (int t = 0; t < Tq; ++t) {
                std::vector<double> s(Tk);
                double mx = -1e300, z = 0;
                bool any = false;
                for (int j = 0; j < Tk; ++j) {
                    if (mask && (*mask)(n, j)) continue;
                    double d = 0;
                    for (int c = 0; c < dh; ++c)
                        d += q[(n * Tq + t) * D + h * dh + c] * k[(n * Tk + j) * D + h * dh + c];
                    s[j] = d / std::sqrt(double(dh));
                    mx = std::max(mx, s[j]);
                    any = true;
                }
                if (!any) continue;  // fully padded: context stays zero
                for (int j = 0; j < Tk; ++j) {
                    s[j] = (mask && (*mask)(n, j)) ? 0 : std::exp(s[j] - mx);
                    z += s[j];
                }
                for (int j = 0; j < Tk; ++j)
                    for (int c = 0; c < dh; ++c)
                        ctx[(n * Tq + t) * D + h * dh + c] += s[j] / z * v[(n * Tk + j) * D + h * dh + c];
            }
    for (int r = 0; r < N * Tq; ++r)
        for (int o = 0; o < D; ++o) y[r * D + o] = lin(layer.out_proj, ctx.data() + r * D, D, D, o);
    return y;
}

/// Largest |got - want| / max(1, |want|).
template <class G>
double max_error(const G* got, const double* want, std::size_t n) {
    double e = 0;
    for (std::size_t i = 0; i < n; ++i)
        e = std::max(e, std::abs(double(got[i]) - want[i]) / std::max(1.0, std::abs(want[i])));
    return e;
}

}  // namespace

TEST_CASE("MultiHeadAttention: cross-attention gradients (Tq != Tk, D != Dkv), with and without a mask") {
    for (bool masked : {false, true}) {
        check_cross<4, 1, 3, 2, 3, 5>(masked);
        check_cross<6, 3, 5, 2, 4, 3>(masked);
        check_cross<8, 2, 8, 1, 2, 7>(masked);
    }
}

TEST_CASE("MultiHeadAttention: self-attention gradients sum the query, key and value paths") {
    for (bool masked : {false, true}) {
        check_self<4, 1, 2, 3>(masked);
        check_self<6, 2, 2, 5>(masked);
    }
}

TEST_CASE("MultiHeadAttention: a fully padded sample gives out_proj.bias and finite, checked gradients") {
    Fixture<double, 4, 2, 3, 2, 3, 4> f(13);
    Rng rng(9);
    fill_normal(f.x, rng);
    fill_normal(f.context, rng);
    for (auto& b : f.layer.out_proj.bias.value()) b = rng.normal();
    for (int j = 0; j < 4; ++j) f.mask(0, j) = 1;  // sample 0: every key padded
    f.mask(1, 2) = 1;
    f.layer.forward(f.x, f.context, f.mask, f.y, *f.cache);
    for (int t = 0; t < 3; ++t)
        for (int o = 0; o < 4; ++o) CHECK(f.y(0, t, o) == f.layer.out_proj.bias.value()[o]);
    auto probes = testing::probes(f.store);
    probes.push_back(testing::probe("x", f.x, f.dx));
    probes.push_back(testing::probe("context", f.context, f.dcontext));
    auto rep = check_gradients(
        probes, f.y, [&] { f.layer.forward(f.x, f.context, f.mask, f.y, *f.cache); },
        [&](auto dy) { f.layer.backward(f.x, f.context, f.mask, f.y, *f.cache, dy, f.dx, f.dcontext); });
    INFO(rep.summary());
    CHECK(rep.clean());
    CHECK(rep.max_rel_error < 1e-6);
    // No gradient reaches the fully padded sample's context, nor the padded key of sample 1.
    f.dcontext.fill(0);
    Tensor<double, 2, 3, 4> dy;
    fill_normal(dy, rng);
    f.layer.backward(f.x, f.context, f.mask, f.y, *f.cache, dy, View<double, 2, 3, 4>(), f.dcontext);
    for (int j = 0; j < 4; ++j)
        for (int c = 0; c < 3; ++c) {
            CHECK(f.dcontext(0, j, c) == 0.0);
            CHECK(f.dcontext(1, 2, c) == 0.0);
        }
}

TEST_CASE("MultiHeadAttention: float forward matches a naive per-head computation") {
    Fixture<float, 8, 2, 6, 2, 3, 5> f(21);
    Rng rng(4);
    fill_normal(f.x, rng);
    fill_normal(f.context, rng);
    for (auto* p : {&f.layer.q_proj.bias, &f.layer.k_proj.bias, &f.layer.v_proj.bias, &f.layer.out_proj.bias})
        for (auto& b : p->value()) b = float(rng.normal() * 0.5);  // the init zeroes them: exercise them here
    pad_some_keys(f.mask);
    for (int masked = 0; masked < 2; ++masked) {
        if (masked) f.layer.forward(f.x, f.context, f.mask, f.y, *f.cache);
        else f.layer.forward(f.x, f.context, no_mask, f.y, *f.cache);
        const auto want = naive_attention(f.layer, f.x, f.context, masked ? &f.mask : nullptr);
        INFO("masked=", masked);
        CHECK(max_error(f.y.data(), want.data(), want.size()) < 2e-6);
    }
}

TEST_CASE("MultiHeadAttention: padded keys do not affect the output, bit for bit") {
    Fixture<float, 8, 4, 6, 2, 3, 5> f(5);
    Rng rng(6);
    fill_normal(f.x, rng);
    fill_normal(f.context, rng);
    pad_some_keys(f.mask);
    Tensor<bool, 2, 5> bmask;  // the same mask as bool
    for (int i = 0; i < 10; ++i) bmask[i] = f.mask[i] != 0;
    f.layer.forward(f.x, f.context, bmask, f.y, *f.cache);
    const auto before = f.y;
    int changed = 0;
    for (int n = 0; n < 2; ++n)
        for (int j = 0; j < 5; ++j)
            if (f.mask(n, j))
                for (int c = 0; c < 6; ++c) f.context(n, j, c) = float(100 * rng.normal()), ++changed;
    REQUIRE(changed > 0);
    f.layer.forward(f.x, f.context, bmask, f.y, *f.cache);
    for (std::size_t i = 0; i < f.y.size; ++i) CHECK(f.y[i] == before[i]);
    // ...while changing a visible key does.
    f.context(0, 0, 0) += 1.0f;
    f.layer.forward(f.x, f.context, bmask, f.y, *f.cache);
    bool differs = false;
    for (std::size_t i = 0; i < f.y.size; ++i) differs |= f.y[i] != before[i];
    CHECK(differs);
}

TEST_CASE("MultiHeadAttention: parameter names, count and PyTorch's initialisation") {
    using MHA = MultiHeadAttention<float, 8, 2, 6>;
    static_assert(param_count<MHA>() == 2 * (8 * 8 + 8) + 2 * (8 * 6 + 8));
    MHA layer;
    ParamStore<float> store(layer, 1);
    std::vector<std::string> names;
    for (const auto& i : store.infos()) names.push_back(i.name);
    CHECK(names == std::vector<std::string>{"q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias",
                                            "v_proj.weight", "v_proj.bias", "out_proj.weight", "out_proj.bias"});
    for (float b : layer.k_proj.bias.value()) CHECK(b == 0.0f);
    const float bound = float(std::sqrt(6.0 / (8 + 6)));
    float biggest = 0;
    for (float w : layer.k_proj.weight.value()) biggest = std::max(biggest, std::abs(w));
    CHECK(biggest <= bound);
    CHECK(biggest > 0.5f * bound);
}

// ---- Parity with torch.nn.MultiheadAttention (tests/data/attention_reference.hpp) ----

namespace {

template <class X>
void fill_formula(X&& x, attention_ref::Phase p) {
    using T = std::remove_cvref_t<decltype(*x.data())>;
    for (std::size_t i = 0; i < shape_of<X>::size; ++i) x.data()[i] = T(p.amp * std::sin(0.37 * double(i) + p.phase));
}

template <class MHA>
void set_reference_weights(MHA& l) {
    using namespace attention_ref;
    fill_formula(l.q_proj.weight.value(), phase_q_w);
    fill_formula(l.q_proj.bias.value(), phase_q_b);
    fill_formula(l.k_proj.weight.value(), phase_k_w);
    fill_formula(l.k_proj.bias.value(), phase_k_b);
    fill_formula(l.v_proj.weight.value(), phase_v_w);
    fill_formula(l.v_proj.bias.value(), phase_v_b);
    fill_formula(l.out_proj.weight.value(), phase_o_w);
    fill_formula(l.out_proj.bias.value(), phase_o_b);
}

template <class F, class Ref>
void check_param_grads(F& f, double tol) {
    auto g = [&](const char* name) { return f.store.grads() + f.store.info(name).offset; };
    CHECK(max_error(g("q_proj.weight"), Ref::d_q_proj_weight, std::size(Ref::d_q_proj_weight)) < tol);
    CHECK(max_error(g("q_proj.bias"), Ref::d_q_proj_bias, std::size(Ref::d_q_proj_bias)) < tol);
    CHECK(max_error(g("k_proj.weight"), Ref::d_k_proj_weight, std::size(Ref::d_k_proj_weight)) < tol);
    CHECK(max_error(g("k_proj.bias"), Ref::d_k_proj_bias, std::size(Ref::d_k_proj_bias)) < tol);
    CHECK(max_error(g("v_proj.weight"), Ref::d_v_proj_weight, std::size(Ref::d_v_proj_weight)) < tol);
    CHECK(max_error(g("v_proj.bias"), Ref::d_v_proj_bias, std::size(Ref::d_v_proj_bias)) < tol);
    CHECK(max_error(g("out_proj.weight"), Ref::d_out_proj_weight, std::size(Ref::d_out_proj_weight)) < tol);
    CHECK(max_error(g("out_proj.bias"), Ref::d_out_proj_bias, std::size(Ref::d_out_proj_bias)) < tol);
}

struct CrossRef {
    static constexpr const auto& d_q_proj_weight = attention_ref::cross::d_q_proj_weight;
    static constexpr const auto& d_q_proj_bias = attention_ref::cross::d_q_proj_bias;
    static constexpr const auto& d_k_proj_weight = attention_ref::cross::d_k_proj_weight;
    static constexpr const auto& d_k_proj_bias = attention_ref::cross::d_k_proj_bias;
    static constexpr const auto& d_v_proj_weight = attention_ref::cross::d_v_proj_weight;
    static constexpr const auto& d_v_proj_bias = attention_ref::cross::d_v_proj_bias;
    static constexpr const auto& d_out_proj_weight = attention_ref::cross::d_out_proj_weight;
    static constexpr const auto& d_out_proj_bias = attention_ref::cross::d_out_proj_bias;
};
struct SelfRef {
    static constexpr const auto& d_q_proj_weight = attention_ref::self::d_q_proj_weight;
    static constexpr const auto& d_q_proj_bias = attention_ref::self::d_q_proj_bias;
    static constexpr const auto& d_k_proj_weight = attention_ref::self::d_k_proj_weight;
    static constexpr const auto& d_k_proj_bias = attention_ref::self::d_k_proj_bias;
    static constexpr const auto& d_v_proj_weight = attention_ref::self::d_v_proj_weight;
    static constexpr const auto& d_v_proj_bias = attention_ref::self::d_v_proj_bias;
    static constexpr const auto& d_out_proj_weight = attention_ref::self::d_out_proj_weight;
    static constexpr const auto& d_out_proj_bias = attention_ref::self::d_out_proj_bias;
};

}  // namespace

// Tolerance, relative to max(1, |reference|): 1e-13 in double (measured ~3e-15), 1e-6 in float
// (measured ~1.4e-7: float32 rounding against a float64 reference).
TEST_CASE_TEMPLATE("MultiHeadAttention: cross attention with a key padding mask matches PyTorch", T, double, float) {
    namespace R = attention_ref::cross;
    const double tol = std::is_same_v<T, double> ? 1e-13 : 1e-6;
    Fixture<T, R::D, R::Heads, R::Dkv, R::N, R::Tq, R::Tk> f(0);
    set_reference_weights(f.layer);
    fill_formula(f.x, attention_ref::phase_x);
    fill_formula(f.context, attention_ref::phase_context);
    fill_formula(f.dy, attention_ref::phase_dy);
    Tensor<bool, R::N, R::Tk> mask;
    std::copy(std::begin(R::key_padding_mask), std::end(R::key_padding_mask), mask.begin());
    f.store.zero_grad();
    f.layer.forward(f.x, f.context, mask, f.y, *f.cache);
    f.layer.backward(f.x, f.context, mask, f.y, *f.cache, f.dy, f.dx, f.dcontext);
    CHECK(max_error(f.y.data(), R::y, std::size(R::y)) < tol);
    CHECK(max_error(f.dx.data(), R::dx, std::size(R::dx)) < tol);
    CHECK(max_error(f.dcontext.data(), R::dcontext, std::size(R::dcontext)) < tol);
    check_param_grads<decltype(f), CrossRef>(f, tol);
}

TEST_CASE_TEMPLATE("MultiHeadAttention: self attention with a key padding mask matches PyTorch", T, double, float) {
    namespace R = attention_ref::self;
    const double tol = std::is_same_v<T, double> ? 1e-13 : 1e-6;
    Fixture<T, R::D, R::Heads, R::D, R::N, R::Tq, R::Tq> f(0);
    set_reference_weights(f.layer);
    fill_formula(f.x, attention_ref::phase_x);
    fill_formula(f.dy, attention_ref::phase_dy);
    Tensor<bool, R::N, R::Tk> mask;
    std::copy(std::begin(R::key_padding_mask), std::end(R::key_padding_mask), mask.begin());
    f.store.zero_grad();
    f.layer.forward_self(f.x, mask, f.y, *f.cache);
    f.layer.backward_self(f.x, mask, f.y, *f.cache, f.dy, f.dx);
    CHECK(max_error(f.y.data(), R::y, std::size(R::y)) < tol);
    CHECK(max_error(f.dx.data(), R::dx, std::size(R::dx)) < tol);
    check_param_grads<decltype(f), SelfRef>(f, tol);
}
