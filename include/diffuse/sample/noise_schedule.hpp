// The diffusion forward process: a variance schedule beta_1..beta_T, its cumulative products
// alpha_bar_t (held in double), the noising q(z_t | z_0), training targets, and the conversions
// from a model output back to (eps, x0).
//
//   z_t = sqrt(ab_t)·z0 + sqrt(1 − ab_t)·eps          (ab_t = alpha_bar_t = prod_{s<=t} (1 − beta_s))
//   v   = sqrt(ab_t)·eps − sqrt(1 − ab_t)·z0          (v-prediction, Salimans & Ho 2022)
//   snr = ab/(1 − ab),  sigma = sqrt((1 − ab)/ab)     (k-diffusion's noise level: z_t/sqrt(ab) = z0 + sigma·eps)
//
// Timesteps are 0-based, t in [0, T), as in diffusers: index t holds the schedule after t + 1 betas.
// The kinds follow diffusers' beta_schedule names:
//   linear         betas evenly spaced from 1e-4 to 0.02 (DDPM)
//   scaled_linear  sqrt(beta) evenly spaced from sqrt(0.00085) to sqrt(0.012) (Stable Diffusion)
//   cosine         "squaredcos_cap_v2": beta_t = min(1 − f(t+1)/f(t), 0.999),
//                  f(t) = cos²((t/T + s)/(1 + s)·π/2), s = 0.008 (Nichol & Dhariwal 2021)
// and zero_terminal_snr() rescales any of them so that ab_{T-1} = 0 exactly (Lin et al. 2024).
//
// Min-SNR-γ loss weights (Hang et al. 2023) are written so that a zero SNR gives the limit of the
// formula instead of 0/0 (the Min-SNR-Diffusion-Training #2 pitfall with zero terminal SNR).
#ifndef DIFFUSE_SAMPLE_NOISE_SCHEDULE_HPP
#define DIFFUSE_SAMPLE_NOISE_SCHEDULE_HPP

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/core/rng.hpp"
#include "diffuse/core/simd.hpp"
#include "diffuse/core/tensor.hpp"

namespace diffuse::diffusion {

enum class BetaSchedule { linear, scaled_linear, cosine };

/// What the denoiser predicts.
enum class Prediction { epsilon, v };

class NoiseSchedule {
public:
    /// The smallest alpha_bar used where a schedule with zero terminal SNR would divide by zero
    /// (sigma, log-sigma): diffusers' 2^-24 for its Euler schedulers.
    static constexpr double kMinAlphaBar = 0x1.0p-24;

    /// A schedule of the given kind with its usual constants and T steps.
    explicit NoiseSchedule(BetaSchedule kind = BetaSchedule::linear, int steps = 1000)
        : NoiseSchedule(kind == BetaSchedule::linear          ? linear_betas(steps, 1e-4, 0.02)
                        : kind == BetaSchedule::scaled_linear ? scaled_linear_betas(steps, 0.00085, 0.012)
                                                              : cosine_betas(steps, 0.008, 0.999)) {}

    /// Any betas in [0, 1], one per step.
    explicit NoiseSchedule(std::vector<double> betas) : betas_(std::move(betas)) {
        if (betas_.size() < 2) throw std::invalid_argument("NoiseSchedule: needs at least 2 steps");
        ab_.resize(betas_.size());
        double prod = 1;
        for (std::size_t t = 0; t < betas_.size(); ++t) {
            if (!(betas_[t] >= 0 && betas_[t] <= 1))
                throw std::invalid_argument("NoiseSchedule: beta " + std::to_string(betas_[t]) + " at step " +
                                            std::to_string(t) + " is outside [0, 1]");
            prod *= 1 - betas_[t];
            ab_[t] = prod;
        }
        log_sigmas_.resize(ab_.size());
        for (std::size_t t = 0; t < ab_.size(); ++t) log_sigmas_[t] = std::log(sigma(int(t)));
    }

    static NoiseSchedule linear(int steps = 1000, double beta_start = 1e-4, double beta_end = 0.02) {
        return NoiseSchedule(linear_betas(steps, beta_start, beta_end));
    }
    static NoiseSchedule scaled_linear(int steps = 1000, double beta_start = 0.00085, double beta_end = 0.012) {
        return NoiseSchedule(scaled_linear_betas(steps, beta_start, beta_end));
    }
    static NoiseSchedule cosine(int steps = 1000, double s = 0.008, double max_beta = 0.999) {
        return NoiseSchedule(cosine_betas(steps, s, max_beta));
    }

    /// The same schedule shifted and scaled in sqrt(alpha_bar) so that the last step has zero SNR
    /// and the first keeps its value (diffusers' rescale_zero_terminal_snr).
    NoiseSchedule zero_terminal_snr() const {
        const std::size_t n = ab_.size();
        std::vector<double> s(n);
        for (std::size_t t = 0; t < n; ++t) s[t] = std::sqrt(ab_[t]);
        const double first = s[0], last = s[n - 1];
        for (auto& x : s) x = (x - last) * first / (first - last);
        std::vector<double> betas(n);
        betas[0] = 1 - s[0] * s[0];
        for (std::size_t t = 1; t < n; ++t) betas[t] = 1 - (s[t] * s[t]) / (s[t - 1] * s[t - 1]);
        return NoiseSchedule(std::move(betas));
    }

    /// T, the number of training timesteps.
    int steps() const { return int(betas_.size()); }
    const std::vector<double>& betas() const { return betas_; }
    const std::vector<double>& alphas_cumprod() const { return ab_; }

    double beta(int t) const { return betas_[index(t)]; }
    double alpha_bar(int t) const { return ab_[index(t)]; }
    double sqrt_alpha_bar(int t) const { return std::sqrt(alpha_bar(t)); }
    double sqrt_one_minus_alpha_bar(int t) const { return std::sqrt(1 - alpha_bar(t)); }
    /// ab/(1 − ab); 0 where ab = 0 (zero terminal SNR).
    double snr(int t) const {
        const double a = alpha_bar(t);
        return a / (1 - a);
    }
    /// sqrt((1 − ab)/ab), with ab at least kMinAlphaBar so that it stays finite.
    double sigma(int t) const { return sigma_of(alpha_bar(t)); }

    static double sigma_of(double alpha_bar) {
        const double a = std::max(alpha_bar, kMinAlphaBar);
        return std::sqrt((1 - a) / a);
    }
    static double alpha_bar_of_sigma(double sigma) { return 1 / (1 + sigma * sigma); }

    /// The continuous timestep of a noise level: linear interpolation of t in log(sigma) between
    /// the two neighbouring training steps, clamped to [0, T−1] (diffusers' _sigma_to_t,
    /// k-diffusion's sigma_to_t). Exact training sigmas give back their integer timestep.
    double sigma_to_t(double sigma) const {
        const double ls = std::log(std::max(sigma, 1e-10));
        const int last = steps() - 2;
        int low = 0;  // the last step whose log-sigma is <= ls (sigmas increase with t)
        while (low < last && log_sigmas_[std::size_t(low) + 1] <= ls) ++low;
        const double lo = log_sigmas_[std::size_t(low)], hi = log_sigmas_[std::size_t(low) + 1];
        const double w = std::clamp((lo - ls) / (lo - hi), 0.0, 1.0);
        return (1 - w) * low + w * (low + 1);
    }

private:
    std::size_t index(int t) const {
        if (t < 0 || t >= steps())
            throw std::out_of_range("NoiseSchedule: timestep " + std::to_string(t) + " is outside [0, " +
                                    std::to_string(steps()) + ")");
        return std::size_t(t);
    }

    static void check_steps(int steps) {
        if (steps < 2) throw std::invalid_argument("NoiseSchedule: needs at least 2 steps");
    }
    static std::vector<double> linear_betas(int steps, double b0, double b1) {
        check_steps(steps);
        std::vector<double> b(static_cast<std::size_t>(steps));
        for (int t = 0; t < steps; ++t) b[std::size_t(t)] = b0 + (b1 - b0) * t / (steps - 1);
        return b;
    }
    static std::vector<double> scaled_linear_betas(int steps, double b0, double b1) {
        std::vector<double> b = linear_betas(steps, std::sqrt(b0), std::sqrt(b1));
        for (auto& x : b) x *= x;
        return b;
    }
    static std::vector<double> cosine_betas(int steps, double s, double max_beta) {
        check_steps(steps);
        const auto f = [&](double t) {
            const double c = std::cos((t + s) / (1 + s) * std::numbers::pi / 2);
            return c * c;
        };
        std::vector<double> b(static_cast<std::size_t>(steps));
        for (int t = 0; t < steps; ++t)
            b[std::size_t(t)] = std::min(1 - f(double(t + 1) / steps) / f(double(t) / steps), max_beta);
        return b;
    }

    std::vector<double> betas_, ab_, log_sigmas_;
};

/// Min-SNR-γ weight of one sample's MSE for a model that predicts `p`: min(snr, γ)/snr for eps,
/// min(snr, γ)/(snr + 1) for v. Written as a choice, not a quotient, so snr = 0 gives the formula's
/// limit (1 for eps, 0 for v) instead of NaN.
inline double min_snr_weight(double snr, double gamma, Prediction p) {
    if (p == Prediction::epsilon) return snr <= gamma ? 1.0 : gamma / snr;
    return std::min(snr, gamma) / (snr + 1);
}

namespace detail {
/// f(offset of item i, alpha_bar at t[i]) for each item of a batch of flat items.
template <class F>
void for_each_item(const NoiseSchedule& s, const std::int32_t* t, int batch, std::size_t item, F f) {
    for (int i = 0; i < batch; ++i) f(std::size_t(i) * item, s.alpha_bar(int(t[i])));
}
template <Shaped X>
using elem_t = std::remove_const_t<typename std::remove_cvref_t<X>::value_type>;
}  // namespace detail

/// z_t = sqrt(ab)·z0 + sqrt(1 − ab)·eps for a batch of `batch` flat items of `item` elements,
/// each at its own timestep t[i].
template <class T>
void add_noise(const NoiseSchedule& s, const T* z0, const T* eps, const std::int32_t* t, int batch, std::size_t item,
               T* zt) {
    detail::for_each_item(s, t, batch, item, [&](std::size_t o, double ab) {
        const T a = T(std::sqrt(ab)), b = T(std::sqrt(1 - ab));
        simd::map2(item, z0 + o, eps + o, zt + o,
                   [a, b](auto x, auto e) { return decltype(x)(a) * x + decltype(x)(b) * e; });
    });
}

/// What a model predicting `p` is trained to output: eps itself, or v = sqrt(ab)·eps − sqrt(1 − ab)·z0.
template <class T>
void training_target(const NoiseSchedule& s, Prediction p, const T* z0, const T* eps, const std::int32_t* t, int batch,
                     std::size_t item, T* target) {
    detail::for_each_item(s, t, batch, item, [&](std::size_t o, double ab) {
        if (p == Prediction::epsilon) {
            std::copy(eps + o, eps + o + item, target + o);
            return;
        }
        const T a = T(std::sqrt(ab)), b = T(std::sqrt(1 - ab));
        simd::map2(item, z0 + o, eps + o, target + o,
                   [a, b](auto x, auto e) { return decltype(x)(a) * e - decltype(x)(b) * x; });
    });
}

/// From a model output `out` for z at noise level ab to the predicted noise and clean sample
/// (either destination may be null; neither may alias z or out):
///   eps: eps = out,                          x0 = (z − sqrt(1 − ab)·eps)/sqrt(ab)
///   v:   eps = sqrt(1 − ab)·z + sqrt(ab)·v,  x0 = sqrt(ab)·z − sqrt(1 − ab)·v
/// With eps-prediction at ab = 0 the clean sample is undetermined (division by zero): use v there.
template <class T>
void to_eps_x0(Prediction p, double ab, const T* z, const T* out, std::size_t n, T* eps, T* x0) {
    const double sa = std::sqrt(ab), sb = std::sqrt(1 - ab);
    if (p == Prediction::epsilon) {
        if (eps) std::copy(out, out + n, eps);
        if (x0) {
            const T c = T(1 / sa), d = T(sb / sa);
            simd::map2(n, z, out, x0, [c, d](auto zv, auto e) { return decltype(zv)(c) * zv - decltype(zv)(d) * e; });
        }
        return;
    }
    const T a = T(sa), b = T(sb);
    if (eps) simd::map2(n, z, out, eps, [a, b](auto zv, auto v) { return decltype(zv)(b) * zv + decltype(zv)(a) * v; });
    if (x0) simd::map2(n, z, out, x0, [a, b](auto zv, auto v) { return decltype(zv)(a) * zv - decltype(zv)(b) * v; });
}

/// Batched views: images or latents x [N, ...], timesteps [N] (int32).
template <Shaped Z0, Shaped E, Shaped TS, Shaped ZT>
void add_noise(const NoiseSchedule& s, const Z0& z0, const E& eps, const TS& t, ZT&& zt) {
    using S = shape_of<Z0>;
    static_assert(same_shape<S, shape_of<E>> && same_shape<S, shape_of<ZT>>,
                  "add_noise: z0, eps and z_t must have one shape");
    static_assert(shape_of<TS>::rank == 1 && shape_of<TS>::size == std::size_t(S::first),
                  "add_noise: timesteps must be [N]");
    add_noise(s, z0.data(), eps.data(), t.data(), S::first, S::size / std::size_t(S::first), zt.data());
}
template <Shaped Z0, Shaped E, Shaped TS, Shaped Y>
void training_target(const NoiseSchedule& s, Prediction p, const Z0& z0, const E& eps, const TS& t, Y&& target) {
    using S = shape_of<Z0>;
    static_assert(same_shape<S, shape_of<E>> && same_shape<S, shape_of<Y>>,
                  "training_target: z0, eps and target must have one shape");
    static_assert(shape_of<TS>::rank == 1 && shape_of<TS>::size == std::size_t(S::first),
                  "training_target: timesteps must be [N]");
    training_target(s, p, z0.data(), eps.data(), t.data(), S::first, S::size / std::size_t(S::first), target.data());
}

/// Min-SNR-γ weights [N] for timesteps [N] (for the per-sample weighted MSE).
template <Shaped TS, Shaped W>
void min_snr_weights(const NoiseSchedule& s, const TS& t, double gamma, Prediction p, W&& w) {
    static_assert(same_shape<shape_of<TS>, shape_of<W>> && shape_of<TS>::rank == 1,
                  "min_snr_weights: timesteps and weights must both be [N]");
    for (std::size_t i = 0; i < shape_of<TS>::size; ++i)
        w[i] = detail::elem_t<W>(min_snr_weight(s.snr(int(t[i])), gamma, p));
}

/// Training timesteps drawn uniformly from [0, T).
template <Shaped TS>
void draw_timesteps(const NoiseSchedule& s, Rng& rng, TS&& t) {
    for (auto& v : t) v = std::int32_t(rng.below(std::uint64_t(s.steps())));
}

}  // namespace diffuse::diffusion

#endif
