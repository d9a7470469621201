// Image-to-image and inpainting on the sampler level, against exact denoisers as in
// tests/test_samplers.cpp: partial runs (strength), the latent blend of inpainting, RePaint jumps,
// the mask's downsampling to the latent grid and the pixel paste-back.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/app/image_edit.hpp"
#include "diffuse/sample/img2img.hpp"
#include "diffuse/sample/inpaint.hpp"
#include "diffuse/sample/samplers.hpp"

using namespace diffuse;
using namespace diffuse::diffusion;

namespace {

constexpr Method kMethods[] = {Method::ddpm, Method::ddim,    Method::euler, Method::euler_ancestral,
                               Method::heun, Method::dpmpp_2m};

/// The exact denoiser of N(mu, s²) data, element-wise; records every call's input and level.
struct GaussianOracle {
    double mu = 0, s = 1;
    int calls = 0;
    std::vector<std::vector<double>> inputs;  // z of every call
    std::vector<double> levels;               // alpha_bar of every call
    std::vector<int> steps;                   // step of every call
    bool record = false;
    void operator()(const DenoiseCall<double>& c) {
        ++calls;
        const std::size_t n = std::size_t(c.batch) * c.item_size;
        if (record) {
            inputs.emplace_back(c.z, c.z + n);
            levels.push_back(c.alpha_bar);
            steps.push_back(c.step);
        }
        const double ab = c.alpha_bar, sa = std::sqrt(ab), sb = std::sqrt(1 - ab), var = ab * s * s + 1 - ab;
        for (std::size_t j = 0; j < n; ++j) c.out[j] = sb * (c.z[j] - sa * mu) / var;  // E[eps | z]
    }
};

SamplerOptions options(Method m, int steps) {
    SamplerOptions o;
    o.method = m;
    o.steps = steps;
    o.eta = 0.5;
    o.karras_sigmas = m == Method::dpmpp_2m || m == Method::heun;
    return o;
}

double mean_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0;
    for (std::size_t i = 0; i < a.size(); ++i) s += std::abs(a[i] - b[i]);
    return s / double(a.size());
}

}  // namespace

TEST_CASE("strength keeps the last ceil(s * steps) steps; s = 1 starts from pure noise") {
    CHECK(kept_steps(0.5, 20) == 10);
    CHECK(kept_steps(0.75, 20) == 15);
    CHECK(kept_steps(0.3, 10) == 3);   // 0.3 * 10 is 3.0000000000000004 in double
    CHECK(kept_steps(0.31, 10) == 4);  // rounded up
    CHECK(kept_steps(0.001, 20) == 1);
    CHECK(kept_steps(1, 7) == 7);
    for (double bad : {0.0, -0.5, 1.5, std::numeric_limits<double>::quiet_NaN()})
        CHECK_THROWS_WITH_AS(kept_steps(bad, 10), doctest::Contains("strength must be in (0, 1]"),
                             std::invalid_argument);
    const double clean[2] = {1, 2};
    CHECK(img2img_start(0.5, 20, clean).first_step == 10);
    CHECK(img2img_start(0.5, 20, clean).clean == clean);
    CHECK(img2img_start(1.0, 20, clean).first_step == 0);
    CHECK(img2img_start(1.0, 20, clean).clean == nullptr);
}

TEST_CASE("img2img: every sampler starts at plan[first]'s level from the noised input and runs the rest") {
    const NoiseSchedule sched(BetaSchedule::scaled_linear);
    constexpr int N = 2, M = 5, steps = 12;
    const std::uint64_t seed = 9;
    std::vector<double> clean(N * M);
    for (std::size_t i = 0; i < clean.size(); ++i) clean[i] = 0.3 * double(i) - 1;
    for (Method m : kMethods) {
        CAPTURE(int(m));
        const SamplerOptions o = options(m, steps);
        const RunControl<double> c = img2img_start(0.5, steps, clean.data());
        GaussianOracle oracle;
        oracle.record = true;
        std::vector<double> out(N * M);
        SamplerWorkspace<double> ws;
        sample(sched, o, N, M, seed, out.data(), oracle, ws, c, [](const RunLevel<double>&) {});
        CHECK(oracle.calls == model_calls(m, steps - c.first_step));
        const std::vector<PlannedStep> plan = plan_steps(sched, o);
        REQUIRE(!oracle.levels.empty());
        CHECK(oracle.levels[0] == plan[std::size_t(c.first_step)].alpha_bar);
        CHECK(oracle.steps[0] == c.first_step);
        // The first model input is sqrt(ab)·z0 + sqrt(1 − ab)·eps, eps item i's first draw.
        const double ab = oracle.levels[0];
        double worst = 0;
        for (int i = 0; i < N; ++i) {
            Rng rng = stream_rng(seed, i);
            for (int k = 0; k < M; ++k) {
                const double want = std::sqrt(ab) * clean[i * M + k] + std::sqrt(1 - ab) * rng.normal();
                worst = std::max(worst, std::abs(oracle.inputs[0][std::size_t(i * M + k)] - want));
            }
        }
        CHECK(worst < 1e-12);
    }
}

TEST_CASE("img2img: partial runs of every sampler land on the single data point with its exact denoiser") {
    // Whatever the start, an exact denoiser of one point predicts it at every step; a sampler that
    // starts part-way with stale state (DPM-Solver++'s previous x0 from a step it never took) misses.
    const NoiseSchedule sched(BetaSchedule::scaled_linear);
    constexpr int N = 2, M = 6;
    std::vector<double> point(M), clean(N * M);
    for (int k = 0; k < M; ++k) point[std::size_t(k)] = 0.25 * k - 0.6;
    for (std::size_t i = 0; i < clean.size(); ++i) clean[i] = std::cos(double(i)) * 1.5;
    for (Method m : kMethods)
        for (double s : {0.3, 0.6, 0.95}) {
            CAPTURE(int(m));
            CAPTURE(s);
            const auto oracle = [&](const DenoiseCall<double>& c) {
                const double sa = std::sqrt(c.alpha_bar), sb = std::sqrt(1 - c.alpha_bar);
                for (int i = 0; i < c.batch; ++i)
                    for (int k = 0; k < M; ++k) c.out[i * M + k] = (c.z[i * M + k] - sa * point[std::size_t(k)]) / sb;
            };
            std::vector<double> out(N * M);
            SamplerWorkspace<double> ws;
            sample(sched, options(m, 10), N, M, 5, out.data(), oracle, ws, img2img_start(s, 10, clean.data()),
                   [](const RunLevel<double>&) {});
            double worst = 0;
            for (int i = 0; i < N; ++i)
                for (int k = 0; k < M; ++k)
                    worst = std::max(worst, std::abs(out[std::size_t(i * M + k)] - point[std::size_t(k)]));
            CHECK(worst < 1e-9);
        }
}

TEST_CASE("img2img at strength 1 is bitwise the plain run, for every sampler") {
    const NoiseSchedule sched(BetaSchedule::scaled_linear);
    constexpr int N = 3, M = 7;
    std::vector<double> clean(N * M, 0.7);
    for (Method m : kMethods) {
        CAPTURE(int(m));
        const SamplerOptions o = options(m, 10);
        std::vector<double> plain(N * M), edit(N * M);
        GaussianOracle a, b;
        sample(sched, o, N, M, 3, plain.data(), a);
        SamplerWorkspace<double> ws;
        sample(sched, o, N, M, 3, edit.data(), b, ws, img2img_start(1.0, 10, clean.data()),
               [](const RunLevel<double>&) {});
        CHECK(std::memcmp(plain.data(), edit.data(), plain.size() * sizeof(double)) == 0);
    }
}

TEST_CASE("img2img: at small strength the output stays closer to the input than at large strength") {
    // Data N(0, 1) and inputs at 2.5, far out in its tail: the more steps are kept, the more of the
    // input the run forgets.
    const NoiseSchedule sched(BetaSchedule::scaled_linear);
    constexpr int N = 4, M = 256;
    std::vector<double> clean(N * M, 2.5);
    for (Method m : kMethods) {
        CAPTURE(int(m));
        const SamplerOptions o = options(m, 20);
        std::vector<double> dist;
        for (double s : {0.1, 0.5, 0.9}) {
            std::vector<double> out(N * M);
            GaussianOracle oracle;
            SamplerWorkspace<double> ws;
            sample(sched, o, N, M, 4, out.data(), oracle, ws, img2img_start(s, 20, clean.data()),
                   [](const RunLevel<double>&) {});
            dist.push_back(mean_abs_diff(out, clean));
        }
        MESSAGE(int(m) << ": mean |out - input| at s = 0.1, 0.5, 0.9: " << dist[0] << " " << dist[1] << " " << dist[2]);
        CHECK(dist[0] < 0.5);
        CHECK(dist[0] < dist[1]);
        CHECK(dist[1] < dist[2]);
    }
}

TEST_CASE("latent mask: area average over each cell, then a threshold (hand computation)") {
    // An 8x4 mask on a 2x2 grid: cells of 4 wide x 2 high (8 pixels each).
    // clang-format off
    const float px[4 * 8] = {
        0, 0, 0, 0,   1, 1, 1, 1,
        0, 0, 0, 0,   1, 1, 1, 1,    // top-left 0/8, top-right 8/8
        0, 0, 0, 0,   0, 0, 0, 0.5f,
        0, 0, 0, 0,   1, 1, 1, 1,    // bottom-left 0, bottom-right 4.5/8 = 0.5625
    };
    // clang-format on
    float cells[4];
    latent_mask(px, 4, 8, 2, 2, cells);
    CHECK(cells[0] == 0);
    CHECK(cells[1] == 1);
    CHECK(cells[2] == 0);
    CHECK(cells[3] == 1);
    latent_mask(px, 4, 8, 2, 2, cells, 0.6);  // 0.5625 is not above 0.6
    CHECK(cells[3] == 0);
    CHECK(cells[1] == 1);
    const float one[4] = {0, 0, 0, 1.0f / 255};  // a single faint pixel regenerates its cell at threshold 0
    latent_mask(one, 2, 2, 1, 1, cells);
    CHECK(cells[0] == 1);
    CHECK_THROWS_WITH_AS(latent_mask(px, 4, 8, 3, 2, cells), doctest::Contains("does not divide"),
                         std::invalid_argument);
}

TEST_CASE("inpainting: the kept cells are the noised input at every step and the input at the end") {
    const NoiseSchedule sched(BetaSchedule::scaled_linear);
    constexpr int N = 2, cells = 4, L = 3, M = cells * L, steps = 10;
    const std::uint64_t seed = 21;
    std::vector<double> known(N * M), mask = {1, 0, 0, 1, 0, 1, 1, 0};  // [N, cells]: 1 = regenerate
    for (std::size_t i = 0; i < known.size(); ++i) known[i] = std::sin(double(i)) * 2;
    for (Method m : kMethods)
        for (int jumps : {0, 2}) {
            CAPTURE(int(m));
            CAPTURE(jumps);
            const SamplerOptions o = options(m, steps);
            const LatentBlend<double> blend(known.data(), mask.data(), N, cells, L, seed);
            RunControl<double> c;
            c.jumps = jumps;
            GaussianOracle oracle;
            oracle.record = true;
            std::vector<double> out(N * M);
            SamplerWorkspace<double> ws;
            sample(sched, o, N, M, seed, out.data(), oracle, ws, c, blend);
            CHECK(oracle.calls == (jumps + 1) * model_calls(m, steps));
            const std::vector<PlannedStep> plan = plan_steps(sched, o);
            // Every call that starts a step (Heun's second call is at its own Euler prediction).
            double worst = 0;
            int checked = 0;
            for (std::size_t k = 0; k < oracle.inputs.size(); ++k) {
                if (oracle.levels[k] != plan[std::size_t(oracle.steps[k])].alpha_bar) continue;
                const double ab = oracle.levels[k];
                ++checked;
                for (int i = 0; i < N; ++i)
                    for (int cell = 0; cell < cells; ++cell) {
                        if (mask[std::size_t(i * cells + cell)] != 0) continue;
                        for (int l = 0; l < L; ++l) {
                            const std::size_t j = std::size_t(i * M + cell * L + l);
                            const double want = std::sqrt(ab) * known[j] + std::sqrt(1 - ab) * blend.noise()[j];
                            worst = std::max(worst, std::abs(oracle.inputs[k][j] - want));
                        }
                    }
            }
            CHECK(checked == (jumps + 1) * steps);
            CHECK(worst < 1e-9);
            // The end: the kept cells exactly the input, the others generated.
            bool kept_exact = true;
            double moved = 0;
            for (int i = 0; i < N; ++i)
                for (int cell = 0; cell < cells; ++cell)
                    for (int l = 0; l < L; ++l) {
                        const std::size_t j = std::size_t(i * M + cell * L + l);
                        if (mask[std::size_t(i * cells + cell)] == 0) kept_exact &= out[j] == known[j];
                        else moved += std::abs(out[j] - known[j]);
                    }
            CHECK(kept_exact);
            CHECK(moved > 0.1);
        }
}

TEST_CASE("RePaint jumps change the result and cost (jumps + 1) model calls a step; re-noising keeps the data") {
    // With nothing kept, a jump re-noises exactly to the step's level (q(z_t | z_{t-1})) and the
    // exact denoiser brings it back: the samples still have the data's mean and std.
    const NoiseSchedule sched(BetaSchedule::linear);
    constexpr int N = 4, M = 2048;
    const double mu = 0.5, sd = 0.3;
    std::vector<double> none(N * M, 0.0), regenerate_all(N, 1.0);
    for (Method m : {Method::ddpm, Method::ddim, Method::euler, Method::euler_ancestral, Method::dpmpp_2m}) {
        CAPTURE(int(m));
        SamplerOptions o;
        o.method = m;
        o.steps = m == Method::dpmpp_2m ? 100 : 500;
        o.eta = 1;
        std::vector<double> plain(N * M), jumped(N * M);
        GaussianOracle a, b;
        a.mu = b.mu = mu;
        a.s = b.s = sd;
        const LatentBlend<double> blend(none.data(), regenerate_all.data(), N, 1, M, 1);
        SamplerWorkspace<double> ws;
        sample(sched, o, N, M, 6, plain.data(), a, ws, RunControl<double>{}, blend);
        sample(sched, o, N, M, 6, jumped.data(), b, ws, RunControl<double>{0, nullptr, 2}, blend);
        CHECK(a.calls == o.steps);
        CHECK(b.calls == 3 * o.steps);
        CHECK(std::memcmp(plain.data(), jumped.data(), plain.size() * sizeof(double)) != 0);
        double mean = 0, var = 0;
        for (double v : jumped) mean += v;
        mean /= double(jumped.size());
        for (double v : jumped) var += (v - mean) * (v - mean);
        const double sdev = std::sqrt(var / double(jumped.size() - 1));
        MESSAGE(int(m) << " with 2 jumps: mean " << mean << " std " << sdev);
        CHECK(std::abs(mean - mu) < 0.01);
        CHECK(sdev == doctest::Approx(sd).epsilon(0.04));
    }
}

TEST_CASE("a partial run does not depend on what its workspace ran before, for every sampler") {
    // DPM-Solver++ must start a partial run first order: a previous x0 left by an earlier run is stale.
    const NoiseSchedule sched(BetaSchedule::scaled_linear);
    constexpr int N = 2, M = 9;
    std::vector<double> clean(N * M, -0.8);
    for (Method m : kMethods)
        for (int jumps : {0, 1}) {
            CAPTURE(int(m));
            CAPTURE(jumps);
            RunControl<double> c = img2img_start(0.5, 12, clean.data());
            c.jumps = jumps;
            std::vector<double> fresh(N * M), reused(N * M);
            GaussianOracle oracle;
            SamplerWorkspace<double> a, b;
            sample(sched, options(m, 12), N, M, 8, fresh.data(), oracle, a, c, [](const RunLevel<double>&) {});
            sample(sched, options(m, 12), N, M, 99, reused.data(), oracle, b);  // leaves its state in b
            sample(sched, options(m, 12), N, M, 8, reused.data(), oracle, b, c, [](const RunLevel<double>&) {});
            CHECK(std::memcmp(fresh.data(), reused.data(), fresh.size() * sizeof(double)) == 0);
        }
}

TEST_CASE("RePaint with DPM-Solver++(2M): a redone step uses the previous step's x0, as the first try did") {
    // Calls with one jump: (step i, x_i), then the redo (step i, x_i'), then (step i + 1, x_{i+1}).
    // x_{i+1} is the second-order step from x_i' with D = x0(x_i') and D_prev = x0 of step i − 1's
    // last call, computed here by hand from the exact denoiser of N(mu, s²).
    const NoiseSchedule sched(BetaSchedule::scaled_linear);
    constexpr int N = 1, M = 4, steps = 8;
    GaussianOracle oracle;
    oracle.mu = 0.4;
    oracle.s = 0.7;
    oracle.record = true;
    std::vector<double> out(N * M);
    SamplerWorkspace<double> ws;
    RunControl<double> c;
    c.jumps = 1;
    sample(sched, options(Method::dpmpp_2m, steps), N, M, 3, out.data(), oracle, ws, c, [](const RunLevel<double>&) {});
    REQUIRE(oracle.calls == 2 * steps);
    const auto sigma = [](double ab) { return std::sqrt((1 - ab) / ab); };
    const auto x0 = [&](std::size_t call, int k) {  // the exact x0 of a call's input
        const double ab = oracle.levels[call], sa = std::sqrt(ab), sb = std::sqrt(1 - ab);
        const double z = oracle.inputs[call][std::size_t(k)], var = ab * oracle.s * oracle.s + 1 - ab;
        return (z - sb * (sb * (z - sa * oracle.mu) / var)) / sa;
    };
    double worst = 0;
    for (int i = 1; i + 1 < steps; ++i) {  // second-order steps that end on a model call
        const std::size_t redo = std::size_t(2 * i + 1), next = redo + 1, prev_last = redo - 2;
        const double s0 = sigma(oracle.levels[redo]), s1 = sigma(oracle.levels[next]);
        const double sp = sigma(oracle.levels[prev_last]);
        const double h = std::log(s0 / s1), r = std::log(sp / s0) / h, gain = -std::expm1(-h);
        for (int k = 0; k < M; ++k) {
            const double x = oracle.inputs[redo][std::size_t(k)] / std::sqrt(oracle.levels[redo]);
            const double want =
                s1 / s0 * x + gain * (1 + 1 / (2 * r)) * x0(redo, k) - gain / (2 * r) * x0(prev_last, k);
            const double got = oracle.inputs[next][std::size_t(k)] / std::sqrt(oracle.levels[next]);
            worst = std::max(worst, std::abs(got - want));
        }
    }
    CHECK(worst < 1e-9);
}

TEST_CASE("sample: a bad run control is refused with its reason") {
    const NoiseSchedule sched(BetaSchedule::scaled_linear);
    std::vector<double> out(4), clean(4);
    GaussianOracle oracle;
    SamplerWorkspace<double> ws;
    const auto run = [&](RunControl<double> c) {
        sample(sched, options(Method::ddim, 5), 1, 4, 0, out.data(), oracle, ws, c, [](const RunLevel<double>&) {});
    };
    CHECK_THROWS_WITH_AS(run({5, clean.data(), 0}), doctest::Contains("first step 5 of a 5-step run"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(run({2, nullptr, 0}), doctest::Contains("needs latents"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(run({0, nullptr, -1}), doctest::Contains("jumps"), std::invalid_argument);
}

TEST_CASE("paste-back: the input exactly where the mask is 0, a blend where it is between") {
    const float gen[6] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f}, in[6] = {-1, 0.25f, 1, -0.3f, 0, 0.7f};
    const float mask[3] = {0, 1, 0.25f};  // 3 pixels of 2 channels
    float out[6];
    app::paste_back(gen, in, mask, 3, 2, out);
    CHECK(out[0] == -1);
    CHECK(out[1] == 0.25f);
    CHECK(out[2] == 0.5f);
    CHECK(out[3] == 0.5f);
    CHECK(out[4] == doctest::Approx(0.25 * 0.5));
    CHECK(out[5] == doctest::Approx(0.25 * 0.5 + 0.75 * 0.7));
}

TEST_CASE("input images and masks: fitted as the image-folder loader fits them, padded with the border") {
    io::ByteImage img{2, 4, 3, {}};  // 4 wide, 2 high, RGB: scaled to cover 2x2, the centre 2 columns kept
    for (int p = 0; p < 8; ++p)
        for (int c = 0; c < 3; ++c) img.pixels.push_back(std::uint8_t(p * 30 + c));
    float x[4 * 4 * 1];
    app::model_image(img, 4, 1, 1, x);  // 2x2 gray in a 1-pixel border of -1
    const std::vector<std::uint8_t> fit = io::fit_image(img, 2, 2, 1);
    for (int y = 0; y < 4; ++y)
        for (int xx = 0; xx < 4; ++xx) {
            const bool border = y == 0 || y == 3 || xx == 0 || xx == 3;
            const float want = border ? -1.0f : float(fit[std::size_t((y - 1) * 2 + xx - 1)] / 127.5 - 1.0);
            CHECK(x[y * 4 + xx] == want);
        }
    float m[16];
    app::model_mask(img, 4, 1, m);
    for (int y = 0; y < 4; ++y)
        for (int xx = 0; xx < 4; ++xx) {
            const bool border = y == 0 || y == 3 || xx == 0 || xx == 3;
            const float want = border ? 0.0f : float(fit[std::size_t((y - 1) * 2 + xx - 1)] / 255.0);
            CHECK(m[y * 4 + xx] == want);
        }
}
