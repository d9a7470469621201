// app::frechet_distance and FeatureStats against closed forms: commuting covariances (a shared
// eigenbasis), where tr((Σ₁^½ Σ₂ Σ₁^½)^½) = Σ √(λ₁ λ₂); and the sample statistics against a direct
// computation.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "diffuse/app/frechet_distance.hpp"
#include "diffuse/core/rng.hpp"

using namespace diffuse;

TEST_CASE("frechet_distance: Gaussians with a shared eigenbasis match the closed form") {
    constexpr int D = 6;
    Rng rng(4);
    Eigen::MatrixXd g(D, D);
    for (int i = 0; i < D; ++i)
        for (int j = 0; j < D; ++j) g(i, j) = rng.normal();
    const Eigen::MatrixXd q = Eigen::HouseholderQR<Eigen::MatrixXd>(g).householderQ();  // a random rotation
    Eigen::VectorXd l1(D), l2(D), mu1(D), mu2(D);
    double want = 0;
    for (int i = 0; i < D; ++i) {
        l1[i] = 0.1 + rng.uniform() * 3;
        l2[i] = i == 0 ? 0.0 : 0.1 + rng.uniform() * 3;  // one zero eigenvalue: only semi-definite
        mu1[i] = rng.normal();
        mu2[i] = rng.normal();
        want += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]) + l1[i] + l2[i] - 2 * std::sqrt(l1[i] * l2[i]);
    }
    const Eigen::MatrixXd c1 = q * l1.asDiagonal() * q.transpose(), c2 = q * l2.asDiagonal() * q.transpose();
    // Σ₂'s zero eigenvalue leaves the eigensolver as ±(a few ulps of the largest, ~1e-15), and its square
    // root, ~3e-8, is what the distance is off by: the root of rounding, not rounding (an AVX-512 build of
    // Eigen gave 5e-8 where others gave 2e-8, over a distance of 22). So 1e-6, not a relative 1e-9.
    constexpr double root_of_rounding = 1e-6;
    CHECK(std::abs(app::frechet_distance(mu1, c1, mu2, c2) - want) < root_of_rounding);
    CHECK(std::abs(app::frechet_distance(mu1, c1, mu1, c1)) < 1e-9);
    // Symmetric in its arguments.
    CHECK(std::abs(app::frechet_distance(mu2, c2, mu1, c1) - want) < root_of_rounding);
    CHECK_THROWS_AS(app::frechet_distance(mu1, c1, Eigen::VectorXd::Zero(D - 1), c2), std::invalid_argument);
}

TEST_CASE("FeatureStats: mean and unbiased covariance of the rows added") {
    constexpr int D = 3, n = 50;
    Rng rng(5);
    std::vector<float> x(std::size_t(n) * D);
    for (auto& v : x) v = float(rng.normal());
    app::FeatureStats s(D);
    s.add(x.data(), 20);
    s.add(x.data() + 20 * D, n - 20);  // in two parts: the same as one
    REQUIRE(s.count() == n);
    Eigen::VectorXd m = Eigen::VectorXd::Zero(D);
    for (int i = 0; i < n; ++i)
        for (int k = 0; k < D; ++k) m[k] += x[std::size_t(i * D + k)] / double(n);
    Eigen::MatrixXd c = Eigen::MatrixXd::Zero(D, D);
    for (int i = 0; i < n; ++i)
        for (int a = 0; a < D; ++a)
            for (int b = 0; b < D; ++b)
                c(a, b) += (x[std::size_t(i * D + a)] - m[a]) * (x[std::size_t(i * D + b)] - m[b]);
    c /= double(n - 1);
    CHECK((s.mean() - m).norm() < 1e-12);
    CHECK((s.covariance() - c).norm() < 1e-12);
    // Two samples of the same distribution are near; a shifted one is far.
    app::FeatureStats t(D), u(D);
    std::vector<float> y(std::size_t(4000) * D), z(y.size());
    for (auto& v : y) v = float(rng.normal());
    for (auto& v : z) v = float(rng.normal() + 1);
    t.add(y.data(), 2000);
    u.add(y.data() + 2000 * D, 2000);
    app::FeatureStats w(D);
    w.add(z.data(), 4000);
    CHECK(app::frechet_distance(t, u) < 0.02);
    CHECK(app::frechet_distance(t, w) == doctest::Approx(3.0).epsilon(0.05));
    CHECK_THROWS_AS(app::FeatureStats(D).covariance(), std::invalid_argument);
    CHECK_THROWS_AS(app::frechet_distance(t, app::FeatureStats(D + 1)), std::invalid_argument);
}
