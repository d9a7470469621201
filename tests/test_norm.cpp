#include <doctest/doctest.h>

#include <omp.h>

#include <cmath>
#include <vector>

#include "diffuse/diffuse.hpp"
#include "diffuse/nn/norm.hpp"
#include "diffuse/testing/gradient_check.hpp"

#include "data/norm_activation_reference.hpp"

using namespace diffuse;
using diffuse::testing::check_gradients;

namespace {

/// Non-trivial affine parameters (the defaults 1 and 0 would hide a swapped weight/bias).
template <class Layer, class T>
void randomize_affine(Layer& layer, std::uint64_t seed) {
    Rng rng(seed);
    for (auto& v : layer.weight.value()) v = T(1 + 0.5 * rng.normal());
    for (auto& v : layer.bias.value()) v = T(0.5 * rng.normal());
}

/// Gradient check of any norm layer on input shape [D...].
template <class Layer, int... D>
void check_norm() {
    Layer layer;
    ParamStore<double> store(layer, 7);
    randomize_affine<Layer, double>(layer, 3);
    Rng rng(1);
    Tensor<double, D...> x, dx, y;
    fill_normal(x, rng, 2.0);
    for (auto& v : x) v += 0.7;  // a mean far from zero
    auto cache = make<typename Layer::template Cache<Shape<D...>>>();
    auto probes = testing::probes(store);
    probes.push_back(testing::probe("x", x, dx));
    auto rep = check_gradients(
        probes, y, [&] { layer.forward(x, y, *cache); }, [&](auto dy) { layer.backward(x, y, *cache, dy, dx); });
    INFO(rep.summary());
    CHECK(rep.clean());
    CHECK(rep.max_rel_error < 1e-6);
}

/// Direct double-precision GroupNorm over [N, S, C] (S = H·W), the textbook definition.
template <class T, int N, int S, int C, int G>
std::vector<double> naive_group_norm(const T* x, const T* w, const T* b, double eps = 1e-5) {
    std::vector<double> y(static_cast<std::size_t>(N) * S * C);
    constexpr int cg = C / G;
    for (int n = 0; n < N; ++n)
        for (int g = 0; g < G; ++g) {
            double m = 0, v = 0;
            for (int s = 0; s < S; ++s)
                for (int j = 0; j < cg; ++j) m += x[(std::size_t(n) * S + s) * C + g * cg + j];
            m /= S * cg;
            for (int s = 0; s < S; ++s)
                for (int j = 0; j < cg; ++j) v += std::pow(x[(std::size_t(n) * S + s) * C + g * cg + j] - m, 2);
            v /= S * cg;
            for (int s = 0; s < S; ++s)
                for (int j = 0; j < cg; ++j) {
                    const std::size_t i = (std::size_t(n) * S + s) * C + g * cg + j;
                    y[i] = (x[i] - m) / std::sqrt(v + eps) * w[g * cg + j] + b[g * cg + j];
                }
        }
    return y;
}

template <class A, class B>
void check_close(const A& got, const B& want, std::size_t count, double tol, const char* what) {
    double worst = 0;
    for (std::size_t i = 0; i < count; ++i)
        worst = std::max(worst, std::abs(double(got[i]) - double(want[i])) / std::max(1.0, std::abs(double(want[i]))));
    INFO(what << ": largest error " << worst);
    CHECK(worst < tol);
}

}  // namespace

TEST_CASE("LayerNorm: gradients at several shapes") {
    check_norm<LayerNorm<double, 7>, 4, 7>();
    check_norm<LayerNorm<double, 16>, 2, 3, 16>();
    check_norm<LayerNorm<double, 1>, 3, 1>();  // a one-element row: x̂ = 0, y = bias
}

TEST_CASE("GroupNorm: gradients with several group counts") {
    check_norm<GroupNorm<double, 6, 3>, 2, 3, 4, 6>();  // 2 channels per group
    check_norm<GroupNorm<double, 4, 1>, 2, 2, 3, 4>();  // Groups = 1: one unit per sample
    check_norm<GroupNorm<double, 4, 4>, 2, 3, 2, 4>();  // Groups = C: instance norm
    check_norm<GroupNorm<double, 10, 2>, 3, 5, 10>();   // [N, T, C] tokens, 5 channels per group
}

TEST_CASE("LayerNorm: float forward matches a direct computation") {
    constexpr int R = 5, D = 37;  // 37: vector body and scalar tail
    LayerNorm<float, D> layer;
    ParamStore<float> store(layer, 1);
    randomize_affine<LayerNorm<float, D>, float>(layer, 9);
    Rng rng(4);
    Tensor<float, R, D> x, y;
    fill_normal(x, rng, 3.0);
    layer.forward(x, y);
    // LayerNorm is GroupNorm with one group over one "pixel" per row.
    auto want = naive_group_norm<float, R, 1, D, 1>(x.data(), layer.weight.data(), layer.bias.data());
    check_close(y, want, y.size, 2e-6, "LayerNorm float");
}

TEST_CASE("GroupNorm: float forward matches a direct computation") {
    constexpr int N = 2, H = 4, W = 4, C = 12, G = 4;
    GroupNorm<float, C, G> layer;
    ParamStore<float> store(layer, 1);
    randomize_affine<GroupNorm<float, C, G>, float>(layer, 9);
    Rng rng(5);
    Tensor<float, N, H, W, C> x, y;
    fill_normal(x, rng, 2.0);
    auto cache = make<GroupNorm<float, C, G>::Cache<Shape<N, H, W, C>>>();
    layer.forward(x, y, *cache);
    auto want = naive_group_norm<float, N, H * W, C, G>(x.data(), layer.weight.data(), layer.bias.data());
    check_close(y, want, y.size, 2e-6, "GroupNorm float");
}

TEST_CASE("LayerNorm and GroupNorm: a constant input gives y = bias and finite gradients, not NaN") {
    LayerNorm<float, 9> ln;
    ParamStore<float> store(ln, 1);
    randomize_affine<LayerNorm<float, 9>, float>(ln, 2);
    Tensor<float, 3, 9> x, y, dy, dx;
    x.fill(3.25f);
    dy.fill(0.5f);
    dx.fill(0);
    LayerNorm<float, 9>::Cache<Shape<3, 9>> cache;
    ln.forward(x, y, cache);
    ln.backward(x, y, cache, dy, dx);
    for (int r = 0; r < 3; ++r)
        for (int d = 0; d < 9; ++d) {
            CHECK(std::isfinite(y(r, d)));
            CHECK(y(r, d) == doctest::Approx(ln.bias.value()[d]));
            CHECK(std::isfinite(dx(r, d)));
        }
    for (int d = 0; d < 9; ++d) CHECK(std::isfinite(ln.weight.grad()[d]));

    GroupNorm<float, 4, 2> gn;
    ParamStore<float> gstore(gn, 1);
    Tensor<float, 1, 2, 2, 4> gx, gy;
    gx.fill(-1.0f);
    gn.forward(gx, gy);
    for (auto v : gy) CHECK(v == 0.0f);  // default bias is zero
}

TEST_CASE_TEMPLATE("LayerNorm matches torch.nn.functional.layer_norm", T, float, double) {
    // Reference: tools/reference/norm_activation_reference.py (float64 PyTorch). Tolerance relative
    // to max(1, |value|): 1e-12 in double (rounding only), 1e-5 in float (single-precision sums).
    namespace ref = norm_activation_ref;
    const double tol = std::is_same_v<T, double> ? 1e-12 : 1e-5;
    constexpr int R0 = ref::ln_rows0, R1 = ref::ln_rows1, D = ref::ln_width;
    using Layer = LayerNorm<T, D>;
    Layer layer;
    ParamStore<T> store(layer);
    std::copy(ref::ln_weight, ref::ln_weight + D, layer.weight.value().begin());
    std::copy(ref::ln_bias, ref::ln_bias + D, layer.bias.value().begin());
    Tensor<T, R0, R1, D> x, y, dy, dx;
    std::copy(ref::ln_x, ref::ln_x + x.size, x.begin());
    std::copy(ref::ln_dy, ref::ln_dy + dy.size, dy.begin());
    dx.fill(0);
    typename Layer::template Cache<Shape<R0, R1, D>> cache;
    layer.forward(x, y, cache);
    layer.backward(x, y, cache, dy, dx);
    check_close(y, ref::ln_y, y.size, tol, "y");
    check_close(dx, ref::ln_dx, dx.size, tol, "dx");
    check_close(layer.weight.grad(), ref::ln_dweight, D, tol, "dweight");
    check_close(layer.bias.grad(), ref::ln_dbias, D, tol, "dbias");
}

TEST_CASE_TEMPLATE("GroupNorm matches torch.nn.functional.group_norm (NHWC vs NCHW)", T, float, double) {
    // Reference and tolerances as for LayerNorm above.
    namespace ref = norm_activation_ref;
    const double tol = std::is_same_v<T, double> ? 1e-12 : 1e-5;
    constexpr int N = ref::gn_n, H = ref::gn_h, W = ref::gn_w, C = ref::gn_c, G = ref::gn_groups;
    using Layer = GroupNorm<T, C, G>;
    Layer layer;
    ParamStore<T> store(layer);
    std::copy(ref::gn_weight, ref::gn_weight + C, layer.weight.value().begin());
    std::copy(ref::gn_bias, ref::gn_bias + C, layer.bias.value().begin());
    Tensor<T, N, H, W, C> x, y, dy, dx;
    std::copy(ref::gn_x, ref::gn_x + x.size, x.begin());
    std::copy(ref::gn_dy, ref::gn_dy + dy.size, dy.begin());
    dx.fill(0);
    typename Layer::template Cache<Shape<N, H, W, C>> cache;
    layer.forward(x, y, cache);
    layer.backward(x, y, cache, dy, dx);
    check_close(y, ref::gn_y, y.size, tol, "y");
    check_close(dx, ref::gn_dx, dx.size, tol, "dx");
    check_close(layer.weight.grad(), ref::gn_dweight, C, tol, "dweight");
    check_close(layer.bias.grad(), ref::gn_dbias, C, tol, "dbias");
}

TEST_CASE("LayerNorm: a null dx skips the input gradient but not the parameter gradients") {
    LayerNorm<double, 5> layer;
    ParamStore<double> store(layer, 1);
    Rng rng(3);
    Tensor<double, 4, 5> x, y, dy, dx;
    fill_normal(x, rng);
    fill_normal(dy, rng);
    dx.fill(0);
    LayerNorm<double, 5>::Cache<Shape<4, 5>> cache;
    layer.forward(x, y, cache);
    layer.backward(x, y, cache, dy, dx);
    std::vector<double> with(store.grads(), store.grads() + store.size());
    store.zero_grad();
    layer.backward(x, y, cache, dy, View<double, 4, 5>{});
    for (std::size_t i = 0; i < store.size(); ++i) CHECK(store.grads()[i] == with[i]);
}

TEST_CASE("LayerNorm and GroupNorm: gradients are bitwise the same for 1 and several threads") {
    // 100 rows > kNormBlocks: every reduction block holds several units.
    auto run = [](int threads) {
        const int saved = omp_get_max_threads();
        omp_set_num_threads(threads);
        LayerNorm<float, 24> ln;
        GroupNorm<float, 8, 2> gn;
        ParamStore<float> s1(ln, 1), s2(gn, 1);
        Rng rng(8);
        auto x = make<Tensor<float, 100, 24>>(), y = make<Tensor<float, 100, 24>>();
        auto dy = make<Tensor<float, 100, 24>>(), dx = make<Tensor<float, 100, 24>>();
        fill_normal(*x, rng);
        fill_normal(*dy, rng);
        auto c1 = make<LayerNorm<float, 24>::Cache<Shape<100, 24>>>();
        ln.forward(*x, *y, *c1);
        ln.backward(*x, *y, *c1, *dy, *dx);
        auto gx = x->reshape<50, 6, 8>(), gy = y->reshape<50, 6, 8>();
        auto gdy = dy->reshape<50, 6, 8>(), gdx = dx->reshape<50, 6, 8>();
        auto c2 = make<GroupNorm<float, 8, 2>::Cache<Shape<50, 6, 8>>>();
        gn.forward(gx, gy, *c2);
        gn.backward(gx, gy, *c2, gdy, gdx);
        omp_set_num_threads(saved);
        std::vector<float> out(s1.grads(), s1.grads() + s1.size());
        out.insert(out.end(), s2.grads(), s2.grads() + s2.size());
        out.insert(out.end(), dx->begin(), dx->end());
        return out;
    };
    const auto one = run(1), many = run(4);
    REQUIRE(one.size() == many.size());
    std::size_t differ = 0;
    for (std::size_t i = 0; i < one.size(); ++i) differ += one[i] != many[i];
    CHECK(differ == 0);
}

namespace {
struct TwoNorms {
    LayerNorm<float, 8> norm1;
    GroupNorm<float, 8, 4> norm2;
    template <class V>
    constexpr void visit(V& v) {
        v("norm1", norm1);
        v("norm2", norm2);
    }
};
}  // namespace

TEST_CASE("Norm layers name their parameters as PyTorch does") {
    using Model = TwoNorms;
    static_assert(param_count<Model>() == 4 * 8);
    Model m;
    ParamStore<float> store(m);
    CHECK(store.infos()[0].name == "norm1.weight");
    CHECK(store.infos()[3].name == "norm2.bias");
    CHECK(store.values()[store.info("norm2.weight").offset] == 1.0f);
    CHECK(store.values()[store.info("norm2.bias").offset] == 0.0f);
}

namespace {
/// forward_activated / backward_activated against the norm and the activation run one after the other:
/// the same bits for y, a, the parameter gradients and dx, accumulated into (dx starting non-zero) or
/// written over da (Accumulate::no, dx being da's memory).
template <class Layer, class Kind, int... D>
void check_fused_activation(Accumulate acc) {
    Layer fused, plain;
    ParamStore<float> sf(fused, 2), sp(plain, 2);
    randomize_affine<Layer, float>(fused, 5);
    randomize_affine<Layer, float>(plain, 5);
    Rng rng(6);
    using X = Tensor<float, D...>;
    auto x = make<X>(), da = make<X>(), dx0 = make<X>();
    fill_normal(*x, rng, 2.0);
    fill_normal(*da, rng);
    fill_normal(*dx0, rng);
    // Unfused: the norm, the activation, then back through both (the activation into a zeroed dy).
    auto yp = make<X>(), ap = make<X>(), dyp = make<X>(), dxp = make<X>();
    auto cp = make<typename Layer::template Cache<Shape<D...>>>();
    const Activation<float, Kind> act;
    plain.forward(*x, *yp, *cp);
    act.forward(*yp, *ap);
    dyp->fill(0.f);
    act.backward(*yp, *ap, *da, *dyp);
    if (acc == Accumulate::yes) *dxp = *dx0;
    else dxp->fill(0.f);
    plain.backward(*x, *yp, *cp, *dyp, *dxp);
    // Fused.
    auto yf = make<X>(), af = make<X>(), dyf = make<X>(), daf = make<X>(), dxf = make<X>();
    *daf = *da;
    *dxf = *dx0;
    auto cf = make<typename Layer::template Cache<Shape<D...>>>();
    fused.template forward_activated<Kind>(*x, *yf, *af, *cf);
    if (acc == Accumulate::yes) fused.template backward_activated<Kind>(*x, *yf, *cf, *daf, *dyf, *dxf);
    else fused.template backward_activated<Kind>(*x, *yf, *cf, *daf, *dyf, *daf, Accumulate::no);
    const X& dx = acc == Accumulate::yes ? *dxf : *daf;
    std::size_t differ = 0;
    for (std::size_t i = 0; i < X::size; ++i)
        differ += (yf->data()[i] != yp->data()[i]) + (af->data()[i] != ap->data()[i]) +
                  (dx.data()[i] != dxp->data()[i]) + (dyf->data()[i] != dyp->data()[i]);
    for (std::size_t i = 0; i < sf.size(); ++i) differ += sf.grads()[i] != sp.grads()[i];
    INFO("accumulate ", acc == Accumulate::yes);
    CHECK(differ == 0);
}
}  // namespace

TEST_CASE("Norm then activation in one pass: the bits of the two layers one after the other") {
    for (Accumulate acc : {Accumulate::yes, Accumulate::no}) {
        check_fused_activation<GroupNorm<float, 64, 32>, act::SiLU, 6, 8, 8, 64>(acc);  // a UNet block's
        check_fused_activation<GroupNorm<float, 40, 8>, act::GELU, 3, 5, 7, 40>(acc);   // items not whole vectors
        check_fused_activation<LayerNorm<float, 24>, act::SiLU, 50, 24>(acc);
    }
}
