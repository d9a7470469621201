// The Fréchet distance between two sets of feature vectors, each summarised as a Gaussian (mean μ,
// covariance Σ): what FID reports, here over any feature extractor (the programs use the shipped
// Fashion-MNIST classifier's penultimate layer):
//
//   d² = |μ₁ − μ₂|² + tr(Σ₁ + Σ₂ − 2·(Σ₁^½ Σ₂ Σ₁^½)^½)
//
// The matrix square roots come from symmetric eigendecompositions (Eigen, in double): Σ₁^½ Σ₂ Σ₁^½ is
// symmetric positive semi-definite, so its root is exact up to rounding, unlike the general sqrtm of
// Σ₁Σ₂ that scipy needs. Negative eigenvalues from rounding are clamped to zero.
#ifndef DIFFUSE_APP_FRECHET_DISTANCE_HPP
#define DIFFUSE_APP_FRECHET_DISTANCE_HPP

#include "diffuse/core/intrinsics.hpp"

#include <Eigen/Dense>
#include <cstddef>
#include <stdexcept>
#include <string>

namespace diffuse::app {

/// Running mean and covariance of D-dimensional features, accumulated in double in the order added.
class FeatureStats {
public:
    explicit FeatureStats(int dims) : sum_(Eigen::VectorXd::Zero(dims)), outer_(Eigen::MatrixXd::Zero(dims, dims)) {}

    int dims() const { return int(sum_.size()); }
    long count() const { return count_; }

    /// count feature vectors [count, dims], row-major.
    template <class T>
    void add(const T* features, long count) {
        Eigen::VectorXd v(dims());
        for (long i = 0; i < count; ++i) {
            for (int k = 0; k < dims(); ++k)
                v[k] = double(features[std::size_t(i) * std::size_t(dims()) + std::size_t(k)]);
            sum_ += v;
            outer_.selfadjointView<Eigen::Lower>().rankUpdate(v);
        }
        count_ += count;
    }

    Eigen::VectorXd mean() const { return sum_ / double(count_); }
    /// The unbiased sample covariance (numpy.cov's default, as FID implementations use).
    Eigen::MatrixXd covariance() const {
        if (count_ < 2) throw std::invalid_argument("FeatureStats: a covariance needs at least two samples");
        const Eigen::VectorXd m = mean();
        Eigen::MatrixXd c = outer_.selfadjointView<Eigen::Lower>();
        return (c - double(count_) * m * m.transpose()) / double(count_ - 1);
    }

private:
    Eigen::VectorXd sum_;
    Eigen::MatrixXd outer_;  // Σ v vᵀ, lower triangle
    long count_ = 0;
};

// The functions below are templates over a defaulted parameter, never deduced, so that Eigen's eigensolver
// is compiled only where a distance is computed: as inline functions they were compiled in every file that
// includes diffuse.hpp (GCC: examples/quickstart.cpp, which needs none of it, took 13.5 s with them, 8.6 without).
namespace detail {
/// The square root of a symmetric positive semi-definite matrix.
template <int = 0>
Eigen::MatrixXd psd_sqrt(const Eigen::MatrixXd& a) {
    const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(a);
    if (es.info() != Eigen::Success) throw std::runtime_error("frechet_distance: eigendecomposition failed");
    return es.eigenvectors() * es.eigenvalues().cwiseMax(0.0).cwiseSqrt().asDiagonal() * es.eigenvectors().transpose();
}
}  // namespace detail

/// d² between N(mu1, cov1) and N(mu2, cov2).
template <int = 0>
double frechet_distance(const Eigen::VectorXd& mu1, const Eigen::MatrixXd& cov1, const Eigen::VectorXd& mu2,
                        const Eigen::MatrixXd& cov2) {
    if (mu1.size() != mu2.size() || cov1.rows() != mu1.size() || cov2.rows() != mu2.size())
        throw std::invalid_argument("frechet_distance: the two Gaussians must have the same dimension");
    const Eigen::MatrixXd r1 = detail::psd_sqrt(cov1);
    const Eigen::MatrixXd m = r1 * cov2 * r1;
    const double cross = detail::psd_sqrt(0.5 * (m + m.transpose())).trace();
    return (mu1 - mu2).squaredNorm() + cov1.trace() + cov2.trace() - 2 * cross;
}
template <int = 0>
double frechet_distance(const FeatureStats& a, const FeatureStats& b) {
    if (a.dims() != b.dims())
        throw std::invalid_argument("frechet_distance: features of " + std::to_string(a.dims()) + " and " +
                                    std::to_string(b.dims()) + " dimensions");
    return frechet_distance(a.mean(), a.covariance(), b.mean(), b.covariance());
}

}  // namespace diffuse::app

#endif
