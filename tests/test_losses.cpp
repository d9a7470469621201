#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>
#include <vector>

#include "diffuse/diffuse.hpp"
#include "diffuse/nn/losses.hpp"
#include "diffuse/testing/gradient_check.hpp"

#include "data/norm_activation_reference.hpp"

using namespace diffuse;
using diffuse::testing::check_gradients;

namespace {

// The checker differentiates sum(y · dy); a loss is wrapped as a one-element y, and its upstream
// gradient dy[0] is passed as the loss's dloss.

template <int... D>
void check_mse() {
    Rng rng(1);
    Tensor<double, D...> pred, target, dpred;
    Tensor<double, 1> y;
    fill_normal(pred, rng);
    fill_normal(target, rng);
    std::vector<testing::Probe> probes{testing::probe("pred", pred, dpred)};
    auto rep = check_gradients(
        probes, y, [&] { y[0] = mse_loss(pred, target, View<double, D...>{}); },
        [&](auto dy) { mse_loss(pred, target, dpred, dy[0]); });
    INFO(rep.summary());
    CHECK(rep.clean());
    CHECK(rep.max_rel_error < 1e-6);
}

template <int N, int K, bool Weighted>
void check_cross_entropy() {
    Rng rng(2);
    Tensor<double, N, K> logits, dlogits;
    Tensor<int, N> labels;
    Tensor<double, N> weights;
    Tensor<double, 1> y;
    fill_normal(logits, rng, 3.0);
    for (int i = 0; i < N; ++i) labels[i] = int(rng.below(K));
    fill_uniform(weights, rng, 0.1, 2.0);
    auto loss = [&](auto&& dl, double dloss) {
        if constexpr (Weighted) return cross_entropy(logits, labels, weights, dl, dloss);
        else return cross_entropy(logits, labels, dl, dloss);
    };
    std::vector<testing::Probe> probes{testing::probe("logits", logits, dlogits)};
    auto rep = check_gradients(
        probes, y, [&] { y[0] = loss(View<double, N, K>{}, 1.0); }, [&](auto dy) { loss(mview(dlogits), dy[0]); });
    INFO(rep.summary());
    CHECK(rep.clean());
    CHECK(rep.max_rel_error < 1e-6);
}

}  // namespace

TEST_CASE("mse_loss: gradients at several shapes") {
    check_mse<7>();
    check_mse<2, 3, 4, 5>();  // 120 elements: vector body and tail
}

TEST_CASE("cross_entropy: gradients at several shapes, with and without per-sample weights") {
    check_cross_entropy<4, 5, false>();
    check_cross_entropy<3, 10, false>();
    check_cross_entropy<6, 3, true>();
    check_cross_entropy<2, 17, true>();
}

TEST_CASE("mse_loss: float value and gradient match a direct computation") {
    constexpr int n = 9001;  // several 4096-element chunks and a tail
    auto p = make<Tensor<float, n>>(), t = make<Tensor<float, n>>(), g = make<Tensor<float, n>>();
    Rng rng(5);
    fill_normal(*p, rng);
    fill_normal(*t, rng);
    g->fill(1.0f);
    const float loss = mse_loss(*p, *t, *g, 0.5f);
    double want = 0;
    for (int i = 0; i < n; ++i) want += std::pow(double((*p)[i]) - (*t)[i], 2);
    want /= n;
    CHECK(loss == doctest::Approx(want).epsilon(1e-6));
    for (int i = 0; i < n; i += 97)
        CHECK((*g)[i] == doctest::Approx(1.0 + 0.5 * 2 * ((*p)[i] - (*t)[i]) / n).epsilon(1e-6));
}

TEST_CASE_TEMPLATE("cross_entropy matches torch.nn.functional.cross_entropy", T, float, double) {
    // Reference: tools/reference/norm_activation_reference.py (float64 PyTorch). Row 2 of the
    // logits is shifted by +1000, so an unshifted log-sum-exp would overflow. Tolerance: 1e-12 in
    // double; 1e-4 in float, where a logit near 1000 carries a rounding error of 3e-5 already.
    namespace ref = norm_activation_ref;
    constexpr int N = ref::ce_n, K = ref::ce_classes;
    const double tol = std::is_same_v<T, double> ? 1e-12 : 1e-4;
    Tensor<T, N, K> logits, dl, dlw;
    Tensor<int, N> labels;
    Tensor<T, N> weights;
    std::copy(ref::ce_logits, ref::ce_logits + logits.size, logits.begin());
    std::copy(ref::ce_labels, ref::ce_labels + N, labels.begin());
    std::copy(ref::ce_weights, ref::ce_weights + N, weights.begin());
    dl.fill(0);
    dlw.fill(0);
    CHECK(std::abs(cross_entropy(logits, labels, dl) - ref::ce_loss) < tol);
    CHECK(std::abs(cross_entropy(logits, labels, weights, dlw) - ref::ce_loss_weighted) < tol);
    for (int i = 0; i < N * K; ++i) {
        CHECK(std::abs(dl[i] - ref::ce_dlogits[i]) < tol);
        CHECK(std::abs(dlw[i] - ref::ce_dlogits_weighted[i]) < tol);
    }
}

TEST_CASE("cross_entropy: huge logits stay finite, bad labels throw") {
    Tensor<float, 2, 3> logits, dl;
    Tensor<int, 2> labels;
    const float v[6] = {1e4f, -1e4f, 0.0f, 88.0f, 89.0f, 90.0f};
    std::copy(v, v + 6, logits.begin());
    labels[0] = 0;
    labels[1] = 2;
    dl.fill(0);
    const float loss = cross_entropy(logits, labels, dl);
    CHECK(std::isfinite(loss));
    // Row 0 is certain and right (loss 0); row 1: logsumexp(88, 89, 90) - 90 = log(1 + e^-1 + e^-2).
    CHECK(loss == doctest::Approx(0.5 * std::log(1 + std::exp(-1.0) + std::exp(-2.0))).epsilon(1e-5));
    for (auto g : dl) CHECK(std::isfinite(g));

    labels[1] = 3;
    CHECK_THROWS_AS(cross_entropy(logits, labels, View<float, 2, 3>{}), std::out_of_range);
    labels[1] = -1;
    CHECK_THROWS_AS(cross_entropy(logits, labels, View<float, 2, 3>{}), std::out_of_range);
}

TEST_CASE("accuracy: argmax against labels, ties to the first class") {
    Tensor<float, 4, 3> logits;
    Tensor<int, 4> labels;
    const float v[12] = {0.1f,  0.9f,  0.0f,    // argmax 1
                         2.0f,  1.0f,  0.0f,    // argmax 0
                         0.5f,  0.5f,  0.2f,    // tie: 0
                         -1.0f, -3.0f, -0.5f};  // argmax 2
    std::copy(v, v + 12, logits.begin());
    const int l[4] = {1, 0, 1, 0};
    std::copy(l, l + 4, labels.begin());
    CHECK(accuracy(logits, labels) == doctest::Approx(0.5));
}
