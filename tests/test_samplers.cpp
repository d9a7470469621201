// Noise schedules, forward noising, prediction conversions and the samplers, all without a network:
// the samplers run against exact denoisers (a single data point, a Gaussian data distribution).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <numbers>
#include <string>
#include <vector>

#include "diffuse/sample/noise_schedule.hpp"
#include "diffuse/sample/samplers.hpp"

using namespace diffuse;
using namespace diffuse::diffusion;

namespace {

// numpy.linspace(a, b, n)[i] in float64: a + i·step, step = (b − a)/(n − 1); the last is b exactly.
double np_linspace(double a, double b, int n, int i) { return i == n - 1 ? b : a + i * ((b - a) / (n - 1)); }

std::vector<double> cumprod_one_minus(const std::vector<double>& betas) {
    std::vector<double> ab(betas.size());
    double p = 1;
    for (std::size_t i = 0; i < betas.size(); ++i) ab[i] = p *= 1 - betas[i];
    return ab;
}

double max_rel(const std::vector<double>& a, const std::vector<double>& b) {
    double w = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        w = std::max(w, std::abs(a[i] - b[i]) / std::max(std::abs(b[i]), 1e-300));
    return w;
}

/// The exact denoiser of a data distribution that is one point z0 (one value per element).
template <class T>
struct PointOracle {
    std::vector<T> z0;  // [item]
    Prediction pred = Prediction::epsilon;
    int calls = 0;
    void operator()(const DenoiseCall<T>& c) {
        ++calls;
        const double sa = std::sqrt(c.alpha_bar), sb = std::sqrt(1 - c.alpha_bar);
        for (int i = 0; i < c.batch; ++i)
            for (std::size_t k = 0; k < c.item_size; ++k) {
                const std::size_t j = std::size_t(i) * c.item_size + k;
                const double eps = (double(c.z[j]) - sa * double(z0[k])) / sb;
                c.out[j] = T(pred == Prediction::epsilon ? eps : sa * eps - sb * double(z0[k]));
            }
    }
};

/// The exact denoiser of N(mu, s²) data, element-wise: E[eps | z] and E[x0 | z] are linear in z.
struct GaussianOracle {
    double mu, s;
    Prediction pred = Prediction::epsilon;
    void operator()(const DenoiseCall<double>& c) const {
        const double ab = c.alpha_bar, sa = std::sqrt(ab), sb = std::sqrt(1 - ab);
        const double var = ab * s * s + 1 - ab;
        for (std::size_t j = 0; j < std::size_t(c.batch) * c.item_size; ++j) {
            const double r = c.z[j] - sa * mu;
            const double eps = sb * r / var, x0 = mu + sa * s * s * r / var;
            c.out[j] = pred == Prediction::epsilon ? eps : sa * eps - sb * x0;
        }
    }
};

struct Moments {
    double mean, std;
};
Moments moments(const std::vector<double>& x) {
    double m = 0;
    for (double v : x) m += v;
    m /= double(x.size());
    double q = 0;
    for (double v : x) q += (v - m) * (v - m);
    return {m, std::sqrt(q / double(x.size() - 1))};
}

/// The moment check every sampler must pass on N(mu, sd²) data: mean within 0.01, std within 3 %.
bool moments_match(const Moments& got, double mu, double sd) {
    return std::abs(got.mean - mu) < 0.01 && std::abs(got.std - sd) <= 0.03 * sd;
}

std::string name(Method m) {
    switch (m) {
        case Method::ddpm:
            return "ddpm";
        case Method::ddim:
            return "ddim";
        case Method::euler:
            return "euler";
        case Method::heun:
            return "heun";
        case Method::dpmpp_2m:
            return "dpmpp_2m";
        default:
            return "euler_ancestral";
    }
}

constexpr Method kMethods[] = {Method::ddpm, Method::ddim,    Method::euler, Method::euler_ancestral,
                               Method::heun, Method::dpmpp_2m};

}  // namespace

TEST_CASE("schedules: betas as diffusers computes them, alpha_bar as their cumulative product") {
    const int T = 1000;
    std::vector<double> lin(T), sl(T), cos(T);
    const auto f = [](double t) { return std::pow(std::cos((t + 0.008) / 1.008 * std::numbers::pi / 2), 2); };
    for (int i = 0; i < T; ++i) {
        lin[i] = np_linspace(1e-4, 0.02, T, i);
        sl[i] = std::pow(np_linspace(std::sqrt(0.00085), std::sqrt(0.012), T, i), 2);
        cos[i] = std::min(1 - f(double(i + 1) / T) / f(double(i) / T), 0.999);
    }
    const NoiseSchedule a(BetaSchedule::linear), b(BetaSchedule::scaled_linear), c(BetaSchedule::cosine);
    CHECK(a.steps() == T);
    CHECK(max_rel(a.betas(), lin) < 1e-14);
    CHECK(max_rel(b.betas(), sl) < 1e-14);
    CHECK(max_rel(c.betas(), cos) < 1e-14);
    CHECK(max_rel(a.alphas_cumprod(), cumprod_one_minus(lin)) < 1e-13);
    CHECK(max_rel(b.alphas_cumprod(), cumprod_one_minus(sl)) < 1e-13);
    CHECK(max_rel(c.alphas_cumprod(), cumprod_one_minus(cos)) < 1e-13);
    CHECK(b.beta(0) == doctest::Approx(0.00085).epsilon(1e-14));
    CHECK(b.beta(T - 1) == doctest::Approx(0.012).epsilon(1e-14));

    // Published end points: DDPM's sqrt(ab_T) ≈ 0.0064, Stable Diffusion's 0.068265 (Lin et al. 2024, table 1).
    CHECK(a.sqrt_alpha_bar(T - 1) == doctest::Approx(0.006353).epsilon(1e-3));
    CHECK(b.sqrt_alpha_bar(T - 1) == doctest::Approx(0.068265).epsilon(1e-4));
    // Cosine: the betas telescope, so ab_t = f(t + 1)/f(0) wherever the clip at 0.999 did not bite.
    for (int t : {0, 1, 100, 500, 900, 990})
        CHECK(c.alpha_bar(t) == doctest::Approx(f(double(t + 1) / T) / f(0)).epsilon(1e-11));
    CHECK(c.beta(T - 1) == 0.999);

    // Helpers against their definitions.
    for (int t : {0, 17, 500, 999}) {
        const double ab = a.alphas_cumprod()[std::size_t(t)];
        CHECK(a.sqrt_alpha_bar(t) == std::sqrt(ab));
        CHECK(a.sqrt_one_minus_alpha_bar(t) == std::sqrt(1 - ab));
        CHECK(a.snr(t) == doctest::Approx(ab / (1 - ab)).epsilon(1e-15));
        CHECK(a.sigma(t) == doctest::Approx(std::sqrt((1 - ab) / ab)).epsilon(1e-15));
    }
    CHECK_THROWS_AS((void)a.alpha_bar(T), std::out_of_range);
    CHECK_THROWS_AS((void)a.alpha_bar(-1), std::out_of_range);
    CHECK_THROWS_AS(NoiseSchedule(std::vector<double>{0.1, 1.5}), std::invalid_argument);
}

TEST_CASE("zero terminal SNR: last alpha_bar is 0, first unchanged, Min-SNR weights stay finite") {
    const NoiseSchedule base(BetaSchedule::scaled_linear);
    const NoiseSchedule z = base.zero_terminal_snr();
    CHECK(z.alpha_bar(999) == 0.0);
    CHECK(z.snr(999) == 0.0);
    CHECK(z.alpha_bar(0) == doctest::Approx(base.alpha_bar(0)).epsilon(1e-14));
    // sqrt(ab) is an affine map of the old one: check it at a middle step.
    const double s0 = base.sqrt_alpha_bar(0), sT = base.sqrt_alpha_bar(999);
    CHECK(z.sqrt_alpha_bar(500) == doctest::Approx((base.sqrt_alpha_bar(500) - sT) * s0 / (s0 - sT)).epsilon(1e-12));
    CHECK(std::isfinite(z.sigma(999)));  // clamped at kMinAlphaBar

    Tensor<std::int32_t, 4> t;
    t[0] = 0;
    t[1] = 300;
    t[2] = 800;
    t[3] = 999;
    for (Prediction p : {Prediction::epsilon, Prediction::v}) {
        Tensor<double, 4> w;
        min_snr_weights(z, t.view(), 5.0, p, w.view());
        for (double x : w) CHECK(std::isfinite(x));
        CHECK(w[3] == (p == Prediction::epsilon ? 1.0 : 0.0));  // the limits at snr -> 0
        for (int i = 0; i < 3; ++i) {
            const double snr = z.snr(t[i]);
            const double want = p == Prediction::epsilon ? std::min(snr, 5.0) / snr : std::min(snr, 5.0) / (snr + 1);
            CHECK(w[i] == doctest::Approx(want).epsilon(1e-14));
        }
    }
    CHECK(min_snr_weight(100.0, 5.0, Prediction::epsilon) == doctest::Approx(0.05));
    CHECK(min_snr_weight(1.0, 5.0, Prediction::epsilon) == 1.0);
    CHECK(min_snr_weight(1.0, 5.0, Prediction::v) == 0.5);
}

TEST_CASE("sigma_to_t: log-sigma interpolation gives training timesteps back, halfway between in log sigma") {
    const NoiseSchedule s(BetaSchedule::scaled_linear);
    for (int t : {0, 1, 2, 250, 777, 998, 999})
        CHECK(s.sigma_to_t(s.sigma(t)) == doctest::Approx(double(t)).epsilon(1e-12));
    const double mid = std::exp(0.5 * (std::log(s.sigma(100)) + std::log(s.sigma(101))));
    CHECK(s.sigma_to_t(mid) == doctest::Approx(100.5).epsilon(1e-12));
    const double q = std::exp(0.75 * std::log(s.sigma(500)) + 0.25 * std::log(s.sigma(501)));
    CHECK(s.sigma_to_t(q) == doctest::Approx(500.25).epsilon(1e-12));
    CHECK(s.sigma_to_t(s.sigma(0) / 2) == 0.0);
    CHECK(s.sigma_to_t(s.sigma(999) * 2) == 999.0);
}

TEST_CASE("sampling timesteps: leading, trailing, linspace as diffusers spaces them") {
    const std::vector<int> lead = sampling_timesteps(1000, 10, Spacing::leading);
    CHECK(lead == std::vector<int>{900, 800, 700, 600, 500, 400, 300, 200, 100, 0});
    CHECK(sampling_timesteps(1000, 10, Spacing::leading, 1).front() == 901);
    CHECK(sampling_timesteps(1000, 10, Spacing::trailing) ==
          std::vector<int>{999, 899, 799, 699, 599, 499, 399, 299, 199, 99});
    CHECK(sampling_timesteps(1000, 10, Spacing::linspace) ==
          std::vector<int>{999, 888, 777, 666, 555, 444, 333, 222, 111, 0});
    CHECK(sampling_timesteps(1000, 3, Spacing::trailing) ==
          std::vector<int>{999, 666, 332});  // round(1000 − 333.3·i) − 1
    CHECK(sampling_timesteps(1000, 1000, Spacing::trailing).back() == 0);
    CHECK(sampling_timesteps(1000, 1000, Spacing::leading).front() == 999);
    CHECK_THROWS_AS(sampling_timesteps(1000, 0, Spacing::trailing), std::invalid_argument);
    CHECK_THROWS_AS(sampling_timesteps(1000, 1000, Spacing::leading, 1), std::invalid_argument);

    const std::vector<double> k = karras_sigmas(0.03, 14.6, 5);
    CHECK(k.front() == doctest::Approx(14.6).epsilon(1e-12));
    CHECK(k.back() == doctest::Approx(0.03).epsilon(1e-12));
    CHECK(std::pow(k[2], 1 / 7.0) == doctest::Approx(0.5 * (std::pow(0.03, 1 / 7.0) + std::pow(14.6, 1 / 7.0))));
}

TEST_CASE("q(z_t | z_0): exact per element, mean sqrt(ab)·z0 and variance 1 − ab over many draws") {
    const NoiseSchedule s;
    constexpr int N = 3, M = 40000;
    std::vector<double> z0(N * M), eps(N * M), zt(N * M);
    Rng rng(7);
    for (int i = 0; i < N * M; ++i) {
        z0[i] = i < M ? 0.7 : (i < 2 * M ? -0.3 : 1.0);
        eps[i] = rng.normal();
    }
    const std::int32_t t[N] = {10, 500, 990};
    add_noise(s, z0.data(), eps.data(), t, N, M, zt.data());
    for (int i = 0; i < N; ++i) {
        const double sa = s.sqrt_alpha_bar(t[i]), sb = s.sqrt_one_minus_alpha_bar(t[i]);
        CHECK(zt[std::size_t(i) * M + 5] ==
              doctest::Approx(sa * z0[std::size_t(i) * M + 5] + sb * eps[std::size_t(i) * M + 5]).epsilon(1e-15));
        const Moments m = moments(std::vector<double>(zt.begin() + i * M, zt.begin() + (i + 1) * M));
        CHECK(std::abs(m.mean - sa * z0[std::size_t(i) * M]) < 4 * sb / std::sqrt(double(M)));
        CHECK(m.std == doctest::Approx(sb).epsilon(0.02));
    }

    // The shaped form agrees with the flat one, in float.
    Tensor<float, 2, 4, 4, 1> a, e, y;
    Tensor<std::int32_t, 2> ts;
    fill_normal(a, rng);
    fill_normal(e, rng);
    ts[0] = 3;
    ts[1] = 900;
    add_noise(s, a.view(), e.view(), ts.view(), y.view());
    for (int i = 0; i < 2; ++i)
        for (int k = 0; k < 16; ++k) {
            const std::size_t j = std::size_t(i) * 16 + std::size_t(k);
            CHECK(y[j] == doctest::Approx(float(s.sqrt_alpha_bar(ts[i])) * a[j] +
                                          float(s.sqrt_one_minus_alpha_bar(ts[i])) * e[j])
                              .epsilon(1e-6));
        }
}

TEST_CASE_TEMPLATE("eps and v targets convert back to (eps, x0)", T, float, double) {
    const NoiseSchedule s(BetaSchedule::cosine);
    constexpr int N = 4, M = 37;
    std::vector<T> z0(N * M), eps(N * M), zt(N * M), target(N * M), e(N * M), x(N * M);
    Rng rng(3);
    for (auto& v : z0) v = T(rng.uniform(-1, 1));
    for (auto& v : eps) v = T(rng.normal());
    const std::int32_t t[N] = {0, 250, 750, 990};
    add_noise(s, z0.data(), eps.data(), t, N, M, zt.data());
    const double tol = std::is_same_v<T, float> ? 2e-4 : 1e-11;
    for (Prediction p : {Prediction::epsilon, Prediction::v}) {
        training_target(s, p, z0.data(), eps.data(), t, N, M, target.data());
        for (int i = 0; i < N; ++i) {
            const std::size_t o = std::size_t(i) * M;
            to_eps_x0(p, s.alpha_bar(t[i]), zt.data() + o, target.data() + o, M, e.data() + o, x.data() + o);
            for (std::size_t k = o; k < o + M; ++k) {
                const double ab = s.alpha_bar(t[i]);
                if (p == Prediction::v)
                    CHECK(double(target[k]) ==
                          doctest::Approx(std::sqrt(ab) * double(eps[k]) - std::sqrt(1 - ab) * double(z0[k]))
                              .epsilon(1e-5));
                CHECK(std::abs(double(e[k]) - double(eps[k])) < tol);
                // x0 from eps divides by sqrt(ab): near t = T−1 float error grows as 1/sqrt(ab).
                CHECK(std::abs(double(x[k]) - double(z0[k])) < tol / std::sqrt(ab));
            }
        }
    }
    // null destinations are skipped
    to_eps_x0<T>(Prediction::v, 0.5, zt.data(), target.data(), M, nullptr, x.data());
}

TEST_CASE_TEMPLATE("every sampler lands on the single data point with an exact denoiser", T, float, double) {
    const NoiseSchedule sched(BetaSchedule::scaled_linear);
    constexpr int N = 3, M = 19;
    PointOracle<T> oracle;
    Rng rng(11);
    for (int k = 0; k < M; ++k) oracle.z0.push_back(T(rng.uniform(-1, 1)));
    const double tol = std::is_same_v<T, float> ? 1e-4 : 1e-10;
    for (Prediction pred : {Prediction::epsilon, Prediction::v})
        for (Method m : kMethods)
            for (int steps : {1, 4, 25, 100})
                for (Spacing sp : {Spacing::leading, Spacing::trailing, Spacing::linspace}) {
                    SamplerOptions o;
                    o.method = m;
                    o.steps = steps;
                    o.spacing = sp;
                    o.prediction = pred;
                    o.eta = 0.5;
                    o.karras_sigmas = steps == 25;
                    o.guidance = steps == 4 ? 3.0 : 1.0;
                    oracle.pred = pred;
                    oracle.calls = 0;
                    std::vector<T> out(N * M);
                    sample(sched, o, N, M, 42, out.data(), oracle);
                    CAPTURE(name(m));
                    CAPTURE(steps);
                    CAPTURE(int(sp));
                    CAPTURE(int(pred));
                    CHECK(oracle.calls == model_calls(m, steps));
                    double worst = 0;
                    for (int i = 0; i < N; ++i)
                        for (int k = 0; k < M; ++k)
                            worst = std::max(worst, std::abs(double(out[i * M + k]) - double(oracle.z0[k])));
                    CHECK(worst < tol);
                }
}

TEST_CASE("samplers reproduce a Gaussian data distribution's mean and std with its exact denoiser") {
    const NoiseSchedule sched(BetaSchedule::linear);
    constexpr int N = 4, M = 4096;  // 16384 samples: standard errors 0.0023 (mean), 0.0017 (std)
    const double mu = 0.5, sd = 0.3;
    struct Case {
        Method m;
        int steps;
        double eta;
        Prediction p;
    };
    // Step counts where discretization error is small: at 50 steps DDIM's std is 9% low on this
    // narrow Gaussian, as the exact recursion says (next test).
    const Case cases[] = {
        {Method::ddpm, 1000, 0, Prediction::epsilon},
        {Method::ddpm, 1000, 0, Prediction::v},
        {Method::ddim, 1000, 0, Prediction::epsilon},
        {Method::ddim, 500, 1, Prediction::v},
        {Method::euler, 1000, 0, Prediction::epsilon},
        {Method::euler, 1000, 0, Prediction::v},
        {Method::euler_ancestral, 1000, 0, Prediction::epsilon},
        {Method::euler_ancestral, 1000, 0, Prediction::v},
        {Method::heun, 200, 0, Prediction::epsilon},
        {Method::heun, 200, 0, Prediction::v},
        {Method::dpmpp_2m, 200, 0, Prediction::epsilon},
        {Method::dpmpp_2m, 200, 0, Prediction::v},
    };
    for (const Case& c : cases) {
        SamplerOptions o;
        o.method = c.m;
        o.steps = c.steps;
        o.eta = c.eta;
        o.prediction = c.p;
        std::vector<double> out(N * M);
        sample(sched, o, N, M, 5, out.data(), GaussianOracle{mu, sd, c.p});
        const Moments got = moments(out);
        CAPTURE(name(c.m));
        CAPTURE(c.steps);
        CAPTURE(c.eta);
        CAPTURE(int(c.p));
        MESSAGE(name(c.m) << " " << c.steps << " steps, eta " << c.eta << ", pred " << int(c.p) << ": mean " << got.mean
                          << " std " << got.std);
        CHECK(moments_match(got, mu, sd));
    }
}

TEST_CASE("DDIM (eta 0) on Gaussian data is the affine map the exact recursion predicts; Euler takes the same path") {
    // Deterministic sampling of N(mu, s²) data maps each element of z_T affinely: out = A·z_T + B.
    // Derive A, B by running the DDIM update on the coefficients, then check every element.
    const NoiseSchedule sched(BetaSchedule::linear);
    const double mu = 0.5, sd = 0.3;
    constexpr int N = 2, M = 64;
    for (int steps : {5, 50}) {
        SamplerOptions o;
        o.steps = steps;
        double A = 1, B = 0;
        for (const PlannedStep& p : plan_steps(sched, o)) {
            const double ab = p.alpha_bar, abn = p.alpha_bar_next, sa = std::sqrt(ab), sb = std::sqrt(1 - ab);
            const double var = ab * sd * sd + 1 - ab;
            const double rA = A, rB = B - sa * mu;
            const double eA = sb * rA / var, eB = sb * rB / var, xA = sa * sd * sd * rA / var,
                         xB = mu + sa * sd * sd * rB / var;
            A = std::sqrt(abn) * xA + std::sqrt(1 - abn) * eA;
            B = std::sqrt(abn) * xB + std::sqrt(1 - abn) * eB;
        }
        std::vector<double> ddim(N * M), euler(N * M);
        sample(sched, o, N, M, 21, ddim.data(), GaussianOracle{mu, sd});
        o.method = Method::euler;
        sample(sched, o, N, M, 21, euler.data(), GaussianOracle{mu, sd});
        double worst = 0, worst_euler = 0;
        for (int i = 0; i < N; ++i) {
            Rng r = stream_rng(21, i);  // the sampler's documented noise stream for item i
            for (int k = 0; k < M; ++k) {
                const std::size_t j = std::size_t(i) * M + std::size_t(k);
                worst = std::max(worst, std::abs(ddim[j] - (A * r.normal() + B)));
                worst_euler = std::max(worst_euler, std::abs(euler[j] - ddim[j]));
            }
        }
        MESSAGE(steps << " DDIM steps: output std factor A = " << A << " (data std " << sd << "), B = " << B);
        CAPTURE(steps);
        CHECK(worst < 1e-12);
        // DDIM is Euler's method in x = z/sqrt(ab), sigma (Karras et al. 2022): the same numbers.
        CHECK(worst_euler < 1e-12);
    }
}

TEST_CASE("the moment check fails samplers that are wrong (the test above can fail)") {
    const NoiseSchedule sched(BetaSchedule::linear);
    constexpr int N = 4, M = 4096;
    const double mu = 0.5, sd = 0.3;
    const auto library = [&](SamplerOptions o, GaussianOracle oracle) {
        std::vector<double> out(N * M);
        sample(sched, o, N, M, 5, out.data(), oracle);
        return moments(out);
    };
    SamplerOptions o;
    o.method = Method::ddim;
    o.steps = 1000;
    REQUIRE(moments_match(library(o, GaussianOracle{mu, sd}), mu, sd));
    // A sampler that reads a v-predicting model's output as epsilon.
    CHECK_FALSE(moments_match(library(o, GaussianOracle{mu, sd, Prediction::v}), mu, sd));
    // Too few steps: DDIM's discretization error at 10 steps (its std is far below sd).
    o.steps = 10;
    CHECK_FALSE(moments_match(library(o, GaussianOracle{mu, sd}), mu, sd));

    // DDIM written out here, once right and once with a one-symbol slip (the noise coefficient
    // taken at the current level instead of the next): the check passes the first, fails the second.
    o.steps = 1000;
    const auto hand_ddim = [&](bool slip) {
        std::vector<double> z(N * M);
        Rng rng(9);
        for (double& v : z) v = rng.normal();
        for (const PlannedStep& p : plan_steps(sched, o)) {
            const double sa = std::sqrt(p.alpha_bar), sb = std::sqrt(1 - p.alpha_bar);
            const double var = p.alpha_bar * sd * sd + 1 - p.alpha_bar;
            for (double& v : z) {
                const double eps = sb * (v - sa * mu) / var, x0 = (v - sb * eps) / sa;
                v = std::sqrt(p.alpha_bar_next) * x0 + (slip ? sb : std::sqrt(1 - p.alpha_bar_next)) * eps;
            }
        }
        return moments(z);
    };
    CHECK(moments_match(hand_ddim(false), mu, sd));
    CHECK_FALSE(moments_match(hand_ddim(true), mu, sd));
}

TEST_CASE("DDPM equals DDIM with eta = 1 and Euler ancestral (same posterior, same noise draws)") {
    // scaled_linear: its sigmas stay below the 2^-24 alpha_bar clamp that the Euler samplers apply
    // (cosine's last alpha_bar is ~2e-9, where Euler's first step then differs on purpose).
    const NoiseSchedule sched(BetaSchedule::scaled_linear);
    for (int steps : {10, 1000}) {
        SamplerOptions o;
        o.steps = steps;
        o.method = Method::ddpm;
        std::vector<double> a(2 * 64), b(2 * 64);
        sample(sched, o, 2, 64, 9, a.data(), GaussianOracle{0.1, 0.8});
        o.method = Method::ddim;
        o.eta = 1;
        sample(sched, o, 2, 64, 9, b.data(), GaussianOracle{0.1, 0.8});
        // Euler ancestral's sigma_up² = sigma_next²·(sigma² − sigma_next²)/sigma² is DDIM eta = 1's
        // variance seen in x = z/sqrt(ab): one path in two parametrizations.
        std::vector<double> c(2 * 64);
        o.method = Method::euler_ancestral;
        sample(sched, o, 2, 64, 9, c.data(), GaussianOracle{0.1, 0.8});
        double worst = 0, worst_ea = 0;
        for (std::size_t i = 0; i < a.size(); ++i) {
            worst = std::max(worst, std::abs(a[i] - b[i]));
            worst_ea = std::max(worst_ea, std::abs(a[i] - c[i]));
        }
        CAPTURE(steps);
        CHECK(worst < 1e-9);
        CHECK(worst_ea < 1e-9);
    }
}

TEST_CASE("classifier-free guidance: uncond + g·(cond − uncond), one call of 2N or two of N") {
    const NoiseSchedule sched(BetaSchedule::scaled_linear);
    constexpr int N = 2, M = 8;
    // conditional data point a, unconditional b: the guided x0 prediction is b + g·(a − b) at every
    // step (x0 is affine in the model output), so DDIM ends there.
    const double a = 0.25, b = -0.5;
    for (bool batched : {true, false}) {
        std::vector<Branch> seen;
        std::vector<int> batches;
        auto denoise = [&](const DenoiseCall<double>& c) {
            seen.push_back(c.branch);
            batches.push_back(c.batch);
            const double sa = std::sqrt(c.alpha_bar), sb = std::sqrt(1 - c.alpha_bar);
            for (int i = 0; i < c.batch; ++i) {
                const bool cond = c.branch == Branch::conditional || (c.branch == Branch::both && i < N);
                for (std::size_t k = 0; k < c.item_size; ++k) {
                    const std::size_t j = std::size_t(i) * c.item_size + k;
                    c.out[j] = (c.z[j] - sa * (cond ? a : b)) / sb;
                }
            }
        };
        SamplerOptions o;
        o.steps = 10;
        o.guidance = 3;
        o.batch_branches = batched;
        std::vector<double> out(N * M);
        sample(sched, o, N, M, 1, out.data(), denoise);
        for (double v : out) CHECK(v == doctest::Approx(b + 3 * (a - b)).epsilon(1e-9));
        if (batched) {
            CHECK(seen.size() == 10);
            CHECK(seen[0] == Branch::both);
            CHECK(batches[0] == 2 * N);
        } else {
            CHECK(seen.size() == 20);
            CHECK(seen[0] == Branch::conditional);
            CHECK(seen[1] == Branch::unconditional);
            CHECK(batches[0] == N);
        }
    }
}

TEST_CASE("guidance with cond == uncond is bitwise no guidance, for every sampler") {
    const NoiseSchedule sched;
    for (Method m : kMethods) {
        SamplerOptions o;
        o.method = m;
        o.steps = 12;
        o.eta = 1;
        std::vector<float> plain(3 * 16), guided(3 * 16), split(3 * 16);
        const GaussianOracle g{0.2, 0.5};
        auto f = [&](const DenoiseCall<float>& c) {  // ignores the branch
            std::vector<double> z(c.z, c.z + std::size_t(c.batch) * c.item_size), y(z.size());
            DenoiseCall<double> d;
            d.z = z.data();
            d.out = y.data();
            d.batch = c.batch;
            d.item_size = c.item_size;
            d.alpha_bar = c.alpha_bar;
            g(d);
            for (std::size_t j = 0; j < y.size(); ++j) c.out[j] = float(y[j]);
        };
        sample(sched, o, 3, 16, 77, plain.data(), f);
        o.guidance = 7.5;
        sample(sched, o, 3, 16, 77, guided.data(), f);
        o.batch_branches = false;
        sample(sched, o, 3, 16, 77, split.data(), f);
        CAPTURE(name(m));
        CHECK(std::memcmp(plain.data(), guided.data(), plain.size() * sizeof(float)) == 0);
        CHECK(std::memcmp(plain.data(), split.data(), plain.size() * sizeof(float)) == 0);
    }
}

TEST_CASE("seeds: same seed bitwise the same on every call, another seed differs, items independent of batch size") {
    const NoiseSchedule sched;
    for (Method m : kMethods) {
        SamplerOptions o;
        o.method = m;
        o.steps = 8;
        o.eta = 1;
        const GaussianOracle g{0.0, 1.0};
        std::vector<double> a(4 * 32), b(4 * 32), c(4 * 32), small(2 * 32);
        sample(sched, o, 4, 32, 123, a.data(), g);
        sample(sched, o, 4, 32, 123, b.data(), g);  // no generator state carried over
        sample(sched, o, 4, 32, 124, c.data(), g);
        sample(sched, o, 2, 32, 123, small.data(), g);
        CAPTURE(name(m));
        CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
        CHECK(std::memcmp(a.data(), c.data(), a.size() * sizeof(double)) != 0);
        CHECK(std::memcmp(a.data(), small.data(), small.size() * sizeof(double)) == 0);
        CHECK(std::memcmp(a.data(), a.data() + 32, 32 * sizeof(double)) != 0);  // items get their own noise
    }
}

TEST_CASE("DenoiseCall: shaped views of the request, checked at run time") {
    const NoiseSchedule sched;
    SamplerOptions o;
    o.steps = 2;
    o.guidance = 2;
    Tensor<float, 2, 4, 4, 3> out;
    int calls = 0;
    sample(sched, o, 7, out.view(), [&](const DenoiseCall<float>& c) {
        ++calls;
        auto z = c.input<4, 4, 4, 3>();
        auto y = c.output<4, 4, 4, 3>();
        auto t = c.timestep_view<4>();
        CHECK(t[3] == t[0]);
        for (std::size_t j = 0; j < y.size; ++j) y[j] = 0.1f * z[j];
        const auto wrong_shape = [&] { return c.input<2, 4, 4, 3>(); };
        const auto wrong_batch = [&] { return c.timestep_view<2>(); };
        CHECK_THROWS_AS(wrong_shape(), std::invalid_argument);
        CHECK_THROWS_AS(wrong_batch(), std::invalid_argument);
    });
    CHECK(calls == 2);
}

TEST_CASE("clip_sample clamps the predicted x0 (DDPM/DDIM), so a data point outside lands on the bound") {
    const NoiseSchedule sched;
    PointOracle<double> oracle;
    oracle.z0 = {2.0, -3.0, 0.5, 0.0};  // 4 elements: GCC 12 warns falsely about SIMD loops over 3
    for (Method m : {Method::ddpm, Method::ddim}) {
        SamplerOptions o;
        o.method = m;
        o.steps = 20;
        o.clip_sample = 1;
        std::vector<double> out(4);
        sample(sched, o, 1, 4, 4, out.data(), oracle);
        CAPTURE(name(m));
        CHECK(out[0] == doctest::Approx(1.0).epsilon(1e-12));
        CHECK(out[1] == doctest::Approx(-1.0).epsilon(1e-12));
        CHECK(out[2] == doctest::Approx(0.5).epsilon(1e-9));
    }
}

TEST_CASE("Euler with Karras sigmas: fractional timesteps from log-sigma interpolation, rounded for the model") {
    const NoiseSchedule sched(BetaSchedule::scaled_linear);
    SamplerOptions o;
    o.method = Method::euler;
    o.steps = 10;
    o.karras_sigmas = true;
    std::vector<double> ts, abs_;
    // 16 values: with fewer than one AVX-512 vector of doubles GCC 12 warns (-Warray-bounds) about
    // the vector loop of simd::map that never runs
    std::vector<double> out(16);
    sample(sched, o, 1, out.size(), 1, out.data(), [&](const DenoiseCall<double>& c) {
        ts.push_back(c.t);
        abs_.push_back(c.alpha_bar);
        CHECK(c.timesteps[0] == std::int32_t(std::lround(c.t)));
        CHECK(sched.sigma_to_t(NoiseSchedule::sigma_of(c.alpha_bar)) == doctest::Approx(c.t).epsilon(1e-12));
        for (std::size_t k = 0; k < out.size(); ++k) c.out[k] = 0;
    });
    REQUIRE(ts.size() == 10);
    CHECK(ts.front() == doctest::Approx(999.0));  // the ends are the training sigmas of t = 999 and 99
    CHECK(ts.back() == doctest::Approx(99.0));
    int fractional = 0;
    for (std::size_t i = 1; i < ts.size(); ++i) {
        CHECK(ts[i] < ts[i - 1]);
        fractional += std::abs(ts[i] - std::round(ts[i])) > 1e-3;
    }
    CHECK(fractional >= 5);
}

TEST_CASE("Heun and DPM-Solver++(2M) are second order on the probability-flow ODE of Gaussian data; Euler first") {
    // For N(mu, s²) data the ODE dx/dσ = eps(x, σ) = (x − mu)·σ/(s² + σ²) has the solution
    // x(σ) − mu ∝ sqrt(s² + σ²). Every sigma-form sampler ends with the same step from σ_min to 0 (x0
    // itself), so the reference is the exact flow from σ_max to σ_min, then x0 = mu + s²/(s² + σ²)·(x − mu).
    const NoiseSchedule sched(BetaSchedule::scaled_linear);
    const double mu = 0.3, sd = 0.6;
    constexpr int M = 32;
    const auto error = [&](Method m, int steps) {
        SamplerOptions o;
        o.method = m;
        o.steps = steps;
        o.karras_sigmas = true;
        const std::vector<PlannedStep> plan = plan_steps(sched, o);
        const double smax = plan.front().sigma, smin = plan.back().sigma;
        std::vector<double> out(M);
        sample(sched, o, 1, M, 3, out.data(), GaussianOracle{mu, sd});
        Rng rng = stream_rng(3, 0);
        double worst = 0;
        for (int k = 0; k < M; ++k) {
            const double xT = rng.normal() * std::sqrt(1 + smax * smax);
            const double xmin = mu + (xT - mu) * std::sqrt((sd * sd + smin * smin) / (sd * sd + smax * smax));
            const double want = mu + sd * sd / (sd * sd + smin * smin) * (xmin - mu);
            worst = std::max(worst, std::abs(out[std::size_t(k)] - want));
        }
        return worst;
    };
    for (Method m : {Method::euler, Method::heun, Method::dpmpp_2m}) {
        // From 80 steps on the errors are in their asymptotic regime (at 20–40 DPM-Solver++'s leading
        // terms still cancel: 0.0029 at 20 and 30 steps, 0.0020 at 40).
        const double e20 = error(m, 20), e80 = error(m, 80), e160 = error(m, 160);
        MESSAGE(name(m) << ": error at 20 / 80 / 160 Karras steps " << e20 << " / " << e80 << " / " << e160
                        << ", ratio 80→160 " << e80 / e160);
        CAPTURE(name(m));
        if (m == Method::euler) {  // halving the step halves the error
            CHECK(e80 / e160 > 1.6);
            CHECK(e80 / e160 < 2.4);
        } else {  // and quarters it for a second-order method, far below Euler's at equal steps
            CHECK(e80 / e160 > 3);
            CHECK(e20 < 0.2 * error(Method::euler, 20));
        }
    }
}
