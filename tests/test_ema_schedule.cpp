// EMA of the flat parameter buffer (the rule, train/ema.hpp, on EmaWeights: warm-up, thread-count
// invariance, checkpoint state) and the
// learning-rate schedules, against diffusers' formulas written out here.
#include <doctest/doctest.h>

#include <omp.h>

#include <cmath>
#include <cstring>
#include <numbers>
#include <vector>

#include "diffuse/core/rng.hpp"
#include "diffuse/train/ema.hpp"
#include "diffuse/train/lr_schedule.hpp"

using namespace diffuse;

namespace {

// diffusers EMAModel.get_decay(optimization_step) with use_ema_warmup=False, update_after_step=0,
// where step() first increments optimization_step: update number k (1-based) uses get_decay(k).
double diffusers_decay(int optimization_step, double decay, double min_decay = 0) {
    const int step = std::max(0, optimization_step - 0 - 1);
    if (step <= 0) return 0.0;
    double cur = (1.0 + step) / (10.0 + step);
    cur = std::min(cur, decay);
    return std::max(cur, min_decay);
}

template <class T>
std::vector<T> random_vector(std::size_t n, std::uint64_t seed) {
    Rng rng(seed);
    std::vector<T> v(n);
    for (auto& x : v) x = T(rng.normal());
    return v;
}

}  // namespace

TEST_CASE("EMA decay: diffusers' warm-up schedule, capped at decay, floored at min_decay") {
    Ema ema({0.999, true, 0.0});
    for (int k = 1; k <= 5000; k += 37) CHECK(ema.decay_at(k - 1) == diffusers_decay(k, 0.999));
    CHECK(ema.decay_at(0) == 0.0);
    CHECK(ema.decay_at(1) == doctest::Approx(2.0 / 11.0));
    CHECK(ema.decay_at(100000) == 0.999);
    ema.options.min_decay = 0.5;
    CHECK(ema.decay_at(1) == 0.5);
    CHECK(ema.decay_at(0) == 0.0);  // the first update always copies
    ema.options.warmup = false;
    CHECK(ema.decay_at(0) == 0.999);
    CHECK(ema.decay_at(7) == 0.999);
}

TEST_CASE_TEMPLATE("EMA update equals the scalar formula, across chunks and the SIMD tail", T, float, double) {
    const std::size_t n = 2 * kFlatChunk + 13;
    std::vector<T> p = random_vector<T>(n, 1);
    const Ema rule({0.99});
    EmaWeights<T> ema(p.data(), n);
    std::vector<T> ref = p;
    for (int k = 0; k < 30; ++k) {
        p = random_vector<T>(n, std::uint64_t(k + 2));
        CHECK(rule.next_decay(ema) == rule.decay_at(k));
        const T c = T(1 - rule.decay_at(k));
        rule.update(ema, p.data());
        for (std::size_t i = 0; i < n; ++i) ref[i] = ref[i] - c * (ref[i] - p[i]);
    }
    CHECK(ema.update_count() == 30);
    double worst = 0;
    for (std::size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(double(ema.values()[i]) - double(ref[i])));
    CHECK(worst < (std::is_same_v<T, float> ? 1e-6 : 1e-15));
}

TEST_CASE("EMA warm-up forgets the random initialization; constant decay keeps half of it after 700 steps (#1772)") {
    // Parameters move from their random init to a trained value over the first 100 steps, then stay.
    const std::size_t n = 1000;
    const std::vector<float> init = random_vector<float>(n, 5);
    const Ema warm_rule({0.999, true}), cold_rule({0.999, false});
    EmaWeights<float> warm(init.data(), n), cold(init.data(), n);
    std::vector<float> p(n);
    for (int k = 0; k < 700; ++k) {
        const float f = std::min(1.0f, float(k + 1) / 100.0f);
        for (std::size_t i = 0; i < n; ++i) p[i] = (1 - f) * init[i] + f * 1.0f;
        warm_rule.update(warm, p.data());
        cold_rule.update(cold, p.data());
    }
    // share of init left = (s − trained)/(init − trained), the same for every element
    double warm_share = 0, cold_share = 0;
    for (std::size_t i = 0; i < n; ++i) {
        if (std::abs(init[i] - 1) < 0.1) continue;
        warm_share = std::max(warm_share, std::abs((warm.values()[i] - 1.0) / (init[i] - 1.0)));
        cold_share = std::max(cold_share, std::abs((cold.values()[i] - 1.0) / (init[i] - 1.0)));
    }
    MESSAGE("share of the initialization after 700 updates: warm-up " << warm_share << ", constant decay "
                                                                      << cold_share);
    CHECK(warm_share < 1e-3);
    CHECK(cold_share > 0.45);  // 0.999^700 = 0.496 of the init, plus a little of the early path
}

TEST_CASE("EMA: bitwise the same with 1 and several threads; checkpoint state resumes exactly; copy and swap") {
    const std::size_t n = 3 * kFlatChunk + 5;
    const std::vector<float> p0 = random_vector<float>(n, 9);
    const Ema rule({0.995});
    auto run = [&](int threads, int steps, EmaWeights<float>* resume_from) {
        const int saved = omp_get_max_threads();
        omp_set_num_threads(threads);
        EmaWeights<float> e(p0.data(), n);
        if (resume_from) {
            std::copy(resume_from->values(), resume_from->values() + n, e.values());
            e.set_update_count(resume_from->update_count());
        }
        for (int k = int(e.update_count()); k < steps; ++k)
            rule.update(e, random_vector<float>(n, std::uint64_t(100 + k)).data());
        omp_set_num_threads(saved);
        return e;
    };
    EmaWeights<float> one = run(1, 20, nullptr), many = run(4, 20, nullptr);
    CHECK(std::memcmp(one.values(), many.values(), n * sizeof(float)) == 0);

    EmaWeights<float> half = run(2, 12, nullptr);
    EmaWeights<float> resumed = run(2, 20, &half);
    CHECK(resumed.update_count() == 20);
    CHECK(std::memcmp(one.values(), resumed.values(), n * sizeof(float)) == 0);

    std::vector<float> params = p0, out(n);
    one.copy_to(out.data());
    CHECK(std::memcmp(out.data(), one.values(), n * sizeof(float)) == 0);
    one.swap_with(params.data());  // params now hold the average, the shadow the raw weights
    CHECK(std::memcmp(params.data(), out.data(), n * sizeof(float)) == 0);
    CHECK(std::memcmp(one.values(), p0.data(), n * sizeof(float)) == 0);
    one.swap_with(params.data());
    CHECK(std::memcmp(params.data(), p0.data(), n * sizeof(float)) == 0);
}

TEST_CASE("LR schedule: linear warm-up, then constant or cosine to the floor (diffusers' lambdas)") {
    LrSchedule c{1e-3, 100};
    for (int s : {0, 1, 50, 99}) CHECK(c(s) == doctest::Approx(1e-3 * s / 100.0));
    CHECK(c(0) == 0.0);
    for (int s : {100, 101, 5000}) CHECK(c(s) == 1e-3);
    CHECK(LrSchedule{2e-4, 0}(0) == 2e-4);  // no warm-up: full rate from the start

    LrSchedule cos{1e-3, 100, LrSchedule::Kind::cosine, 1100, 0};
    const auto diffusers_cosine = [](int step, int warmup, int total) {
        if (step < warmup) return double(step) / std::max(1, warmup);
        const double progress = double(step - warmup) / std::max(1, total - warmup);
        return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * 0.5 * 2.0 * progress)));
    };
    for (int s = 0; s <= 1100; s += 7)
        CHECK(cos(s) == doctest::Approx(1e-3 * diffusers_cosine(s, 100, 1100)).epsilon(1e-12));
    CHECK(cos(100) == doctest::Approx(1e-3));
    CHECK(cos(600) == doctest::Approx(5e-4));
    CHECK(cos(1100) == doctest::Approx(0.0));
    CHECK(cos(1500) == 0.0);  // clamped: diffusers' lambda would climb back up here
    cos.min_lr = 1e-5;
    CHECK(cos(600) == doctest::Approx(1e-5 + (1e-3 - 1e-5) * 0.5));
    CHECK(cos(2000) == doctest::Approx(1e-5));
}
