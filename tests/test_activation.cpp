#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "diffuse/diffuse.hpp"
#include "diffuse/nn/activation.hpp"
#include "diffuse/testing/gradient_check.hpp"

#include "data/norm_activation_reference.hpp"

using namespace diffuse;
using diffuse::testing::check_gradients;

namespace {

/// Direct definitions in double, independent of the kind functors.
double naive(act::ReLU, double x) { return x > 0 ? x : 0; }
double naive(act::SiLU, double x) { return x / (1 + std::exp(-x)); }
double naive(act::GELU, double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }
double naive(act::GELUTanh, double x) {
    return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}

template <class Kind, int... D>
void check_activation() {
    Activation<double, Kind> layer;
    Rng rng(1);
    Tensor<double, D...> x, dx, y;
    fill_normal(x, rng, 2.0);
    // Keep away from ReLU's kink at 0, where central differences see both slopes.
    for (auto& v : x) v += v >= 0 ? 0.05 : -0.05;
    std::vector<testing::Probe> probes{testing::probe("x", x, dx)};
    auto rep = check_gradients(
        probes, y, [&] { layer.forward(x, y); }, [&](auto dy) { layer.backward(x, y, dy, dx); });
    INFO(Kind::name << ": " << rep.summary());
    CHECK(rep.clean());
    CHECK(rep.max_rel_error < 1e-6);
}

template <class Kind>
void check_float_forward() {
    // 3 parallel chunks plus a scalar tail.
    constexpr int n = 3 * (1 << 14) + 5;
    Activation<float, Kind> layer;
    auto x = make<Tensor<float, n>>(), y = make<Tensor<float, n>>();
    for (int i = 0; i < n; ++i) (*x)[i] = -8.0f + 16.0f * float(i) / n;
    layer.forward(*x, *y);
    double worst = 0;
    for (int i = 0; i < n; ++i) {
        const double want = naive(Kind{}, (*x)[i]);
        worst = std::max(worst, std::abs((*y)[i] - want) / std::max(1.0, std::abs(want)));
    }
    INFO(Kind::name << ": largest error " << worst);
    CHECK(worst < 2e-6);
}

template <class T, class Kind>
void check_reference(const double* want_y, const double* want_dx) {
    // Reference: tools/reference/norm_activation_reference.py (float64 PyTorch). Tolerance relative
    // to max(1, |value|): 1e-13 in double (xsimd's erf/exp/tanh are accurate to a few ulp),
    // 2e-6 in float.
    namespace ref = norm_activation_ref;
    constexpr int n = ref::act_n;
    const double tol = std::is_same_v<T, double> ? 1e-13 : 2e-6;
    Activation<T, Kind> layer;
    Tensor<T, n> x, y, dy, dx;
    std::copy(ref::act_x, ref::act_x + n, x.begin());
    std::copy(ref::act_dy, ref::act_dy + n, dy.begin());
    dx.fill(0);
    layer.forward(x, y);
    layer.backward(x, y, dy, dx);
    for (int i = 0; i < n; ++i) {
        INFO(Kind::name << " at x = " << ref::act_x[i]);
        CHECK(std::abs(y[i] - want_y[i]) <= tol * std::max(1.0, std::abs(want_y[i])));
        CHECK(std::abs(dx[i] - want_dx[i]) <= tol * std::max(1.0, std::abs(want_dx[i])));
    }
}

}  // namespace

TEST_CASE("Activations: gradients at several shapes") {
    check_activation<act::ReLU, 3, 5>();
    check_activation<act::ReLU, 2, 3, 11>();
    check_activation<act::SiLU, 3, 5>();
    check_activation<act::SiLU, 2, 3, 11>();
    check_activation<act::GELU, 3, 5>();
    check_activation<act::GELU, 2, 3, 11>();
    check_activation<act::GELUTanh, 3, 5>();
    check_activation<act::GELUTanh, 2, 3, 11>();
}

TEST_CASE("Activations: float forward matches direct formulas") {
    check_float_forward<act::ReLU>();
    check_float_forward<act::SiLU>();
    check_float_forward<act::GELU>();
    check_float_forward<act::GELUTanh>();
}

TEST_CASE_TEMPLATE("Activations match torch.nn.functional gelu, gelu(tanh) and silu", T, float, double) {
    namespace ref = norm_activation_ref;
    check_reference<T, act::GELU>(ref::gelu_y, ref::gelu_dx);
    check_reference<T, act::GELUTanh>(ref::gelu_tanh_y, ref::gelu_tanh_dx);
    check_reference<T, act::SiLU>(ref::silu_y, ref::silu_dx);
}

TEST_CASE("ReLU: in place (y aliasing x) gives the same output and gradient") {
    static_assert(ReLU<float>::in_place_ok && !GELU<float>::in_place_ok && !SiLU<float>::in_place_ok);
    ReLU<float> relu;
    Rng rng(3);
    Tensor<float, 4, 9> x, y, dy, dx1, dx2;
    fill_normal(x, rng);
    fill_normal(dy, rng);
    dx1.fill(0.25f);
    dx2.fill(0.25f);
    relu.forward(x, y);
    relu.backward(x, y, dy, dx1);
    relu.forward(x, x);  // in place: x now holds y
    relu.backward(x, x, dy, dx2);
    for (std::size_t i = 0; i < x.size; ++i) {
        CHECK(x[i] == y[i]);
        CHECK(dx1[i] == dx2[i]);
    }
    // The gradient at exactly 0 is 0, as PyTorch's.
    Tensor<float, 1> z, zy, zdy, zdx;
    z[0] = 0;
    zdy[0] = 1;
    zdx[0] = 0;
    relu.forward(z, zy);
    relu.backward(z, zy, zdy, zdx);
    CHECK(zdx[0] == 0.0f);
}

TEST_CASE("Activations: large inputs stay finite and a null dx is skipped") {
    SiLU<float> silu;
    GELU<float> gelu;
    Tensor<float, 6> x, y, dy, dx;
    const float v[6] = {-200.0f, -90.0f, -20.0f, 20.0f, 90.0f, 200.0f};
    std::copy(v, v + 6, x.begin());
    dy.fill(1);
    dx.fill(0);
    for (int k = 0; k < 2; ++k) {
        if (k == 0) {
            silu.forward(x, y);
            silu.backward(x, y, dy, dx);
        } else {
            gelu.forward(x, y);
            gelu.backward(x, y, dy, dx);
        }
        for (int i = 0; i < 6; ++i) {
            CHECK(std::isfinite(y[i]));
            CHECK(std::isfinite(dx[i]));
        }
        CHECK(y[0] == doctest::Approx(0.0f));
        CHECK(y[5] == doctest::Approx(200.0f));
    }
    silu.backward(x, y, dy, View<float, 6>{});  // must not touch anything
}
