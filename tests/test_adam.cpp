#include <doctest/doctest.h>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "diffuse/diffuse.hpp"
#include "diffuse/train/adam.hpp"
#include "diffuse/train/grad_clip.hpp"

#include "data/adam_reference.hpp"

using namespace diffuse;

namespace {

// The formulas of tools/reference/adam_reference.py, term for term.
double p0(int i) { return double((i * 37 + 11) % 101) / 50.0 - 1.0; }
double grad(int t, int i) {
    constexpr double scale[4] = {1.0, 0.1, 0.01, 0.001};
    return double((i * 13 + t * 7) % 29 - 14) / 10.0 * scale[i % 4];
}
double lr_at(int t) { return t <= 5 ? adam_ref::LR_FIRST : adam_ref::LR_LATER; }

enum class Kind { adam, adam_l2, adamw };

const double (*reference(Kind k))[adam_ref::N] {
    switch (k) {
        case Kind::adam:
            return adam_ref::adam;
        case Kind::adam_l2:
            return adam_ref::adam_l2;
        default:
            return adam_ref::adamw;
    }
}

AdamOptions options(Kind k) {
    AdamOptions o;
    o.lr = adam_ref::LR_FIRST;
    o.beta1 = adam_ref::BETA1;
    o.beta2 = adam_ref::BETA2;
    o.eps = adam_ref::EPS;
    o.weight_decay = k == Kind::adam ? 0.0 : adam_ref::WD;
    o.decoupled_weight_decay = k == Kind::adamw;
    return o;
}

/// Runs the reference trajectory on n = 37 raw elements (the scalar tail runs) and returns the
/// largest error after any step, relative to max(|reference|, 1) (parameters are O(1)).
template <class T>
double max_error_vs_torch(Kind k) {
    constexpr int N = adam_ref::N;
    std::vector<T> p(N), g(N);
    for (int i = 0; i < N; ++i) p[i] = T(p0(i));
    Adam<T> opt(p.data(), g.data(), N, options(k));
    double worst = 0;
    for (int t = 1; t <= adam_ref::STEPS; ++t) {
        for (int i = 0; i < N; ++i) g[i] = T(grad(t, i));
        opt.lr = lr_at(t);
        opt.step();
        for (int i = 0; i < N; ++i) {
            const double want = reference(k)[t - 1][i];
            worst = std::max(worst, std::abs(double(p[i]) - want) / std::max(std::abs(want), 1.0));
        }
    }
    return worst;
}

/// One parameter vector of length N, for a ParamStore.
template <class T, int N>
struct Vec {
    Param<T, N> w{Init::Normal(1.0)};
    template <class V>
    constexpr void visit(V& v) {
        v("w", w);
    }
};

template <class T>
bool same_bits(const T* a, const T* b, std::size_t n) {
    return std::memcmp(a, b, n * sizeof(T)) == 0;
}

}  // namespace

TEST_CASE("Adam: the test's formulas reproduce the reference inputs exactly") {
    for (int i = 0; i < adam_ref::N; ++i) {
        CHECK(p0(i) == adam_ref::p0[i]);
        for (int t = 1; t <= adam_ref::STEPS; ++t) CHECK(grad(t, i) == adam_ref::grads[t - 1][i]);
    }
}

// Double: the same algorithm in the same precision; only the order of a few roundings differs from
// torch (1/sqrt(bc2) multiplied, not divided; β·m + (1-β)·g instead of lerp), so errors are a few
// ulps: relative tolerance 1e-12.
TEST_CASE("Adam, Adam+L2 and AdamW match torch.optim in double (rel 1e-12)") {
    for (Kind k : {Kind::adam, Kind::adam_l2, Kind::adamw}) {
        const double err = max_error_vs_torch<double>(k);
        INFO("kind " << int(k) << " max rel error " << err);
        CHECK(err < 1e-12);
    }
}

// Float: inputs and arithmetic rounded to 24 bits; over 10 steps of size <= 0.01 the error stays
// near float epsilon times the O(1) parameters: tolerance 1e-6 relative to max(|p|, 1).
TEST_CASE("Adam, Adam+L2 and AdamW match torch.optim in float (rel 1e-6)") {
    for (Kind k : {Kind::adam, Kind::adam_l2, Kind::adamw}) {
        const double err = max_error_vs_torch<float>(k);
        INFO("kind " << int(k) << " max rel error " << err);
        CHECK(err < 1e-6);
    }
}

TEST_CASE("Adam: a wrong hyperparameter is caught by the reference") {
    // Proves the comparison can fail: eps placed as torch does matters for the small gradients.
    constexpr int N = adam_ref::N;
    std::vector<double> p(N), g(N);
    for (int i = 0; i < N; ++i) p[i] = p0(i);
    AdamOptions o = options(Kind::adam);
    o.eps = 1e-8;
    Adam<double> opt(p.data(), g.data(), N, o);
    for (int i = 0; i < N; ++i) g[i] = grad(1, i);
    opt.step();
    double worst = 0;
    for (int i = 0; i < N; ++i) worst = std::max(worst, std::abs(p[i] - adam_ref::adam[0][i]));
    CHECK(worst > 1e-6);
}

TEST_CASE("Adam over a ParamStore: torch trajectory, padding stays zero, step counter") {
    Vec<double, adam_ref::N> model;
    ParamStore<double> store(model);
    REQUIRE(store.size() > std::size_t(adam_ref::N));  // padded to 64 bytes
    for (int i = 0; i < adam_ref::N; ++i) model.w.value()[i] = p0(i);
    Adam<double> opt(store, options(Kind::adam_l2));
    CHECK(opt.step_count() == 0);
    for (int t = 1; t <= adam_ref::STEPS; ++t) {
        store.zero_grad();
        for (int i = 0; i < adam_ref::N; ++i) model.w.grad()[i] = grad(t, i);
        opt.lr = lr_at(t);
        opt.step();
        CHECK(opt.step_count() == t);
    }
    for (int i = 0; i < adam_ref::N; ++i)
        CHECK(std::abs(model.w.value()[i] - adam_ref::adam_l2[adam_ref::STEPS - 1][i]) < 1e-12);
    for (std::size_t i = adam_ref::N; i < store.size(); ++i) {
        CHECK(store.values()[i] == 0.0);
        CHECK(opt.m()[i] == 0.0);
        CHECK(opt.v()[i] == 0.0);
    }
}

TEST_CASE("AdamW is Adam with decoupled decay, bit for bit") {
    constexpr int N = adam_ref::N;
    std::vector<float> a(N), b(N), g(N);
    for (int i = 0; i < N; ++i) a[i] = b[i] = float(p0(i));
    AdamOptions o = options(Kind::adamw);
    Adam<float> x(a.data(), g.data(), N, o);
    AdamW<float> y(b.data(), g.data(), N, {o.lr, o.beta1, o.beta2, o.eps, o.weight_decay});
    for (int t = 1; t <= 4; ++t) {
        for (int i = 0; i < N; ++i) g[i] = float(grad(t, i));
        x.step();
        y.step();
    }
    CHECK(same_bits(a.data(), b.data(), N));
}

namespace {
// A buffer of several chunks and a ragged end, with pseudo-random values and gradients.
template <class T>
struct Problem {
    static constexpr std::size_t n = 5 * kFlatChunk + 13;
    AlignedBuffer<T> p{n}, g{n};
    explicit Problem(std::uint64_t seed) {
        Rng rng(seed);
        for (std::size_t i = 0; i < n; ++i) p[i] = T(rng.normal());
    }
    void gradients(int t) {
        Rng rng(100 + t);
        for (std::size_t i = 0; i < n; ++i) g[i] = T(rng.normal() * 0.1);
    }
};

template <class T>
AlignedBuffer<T> run_threads(int threads, int steps) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    Problem<T> pb(5);
    Adam<T> opt(pb.p.data(), pb.g.data(), pb.n, {1e-2, 0.9, 0.999, 1e-8, 0.05, false});
    for (int t = 1; t <= steps; ++t) {
        pb.gradients(t);
        opt.step();
    }
    omp_set_num_threads(saved);
    return std::move(pb.p);
}
}  // namespace

TEST_CASE_TEMPLATE("Adam: 1 and 2 threads give bitwise identical parameters", T, float, double) {
    const auto one = run_threads<T>(1, 3);
    const auto two = run_threads<T>(2, 3);
    CHECK(same_bits(one.data(), two.data(), one.size()));
}

TEST_CASE("Adam: restoring parameters, m, v and the step count resumes exactly") {
    using T = float;
    Problem<T> full(9), half(9);
    const AdamOptions o{3e-3, 0.9, 0.999, 1e-8, 0.01, true};
    Adam<T> a(full.p.data(), full.g.data(), full.n, o);
    for (int t = 1; t <= 6; ++t) {
        full.gradients(t);
        a.step();
    }

    Adam<T> b(half.p.data(), half.g.data(), half.n, o);
    for (int t = 1; t <= 3; ++t) {
        half.gradients(t);
        b.step();
    }
    // "Checkpoint": copy everything into a fresh optimizer over fresh buffers.
    Problem<T> resumed(1234);
    std::copy(half.p.begin(), half.p.end(), resumed.p.begin());
    Adam<T> c(resumed.p.data(), resumed.g.data(), resumed.n, o);
    std::copy(b.m(), b.m() + b.size(), c.m());
    std::copy(b.v(), b.v() + b.size(), c.v());
    c.set_step_count(b.step_count());
    for (int t = 4; t <= 6; ++t) {
        resumed.gradients(t);
        c.step();
    }

    CHECK(c.step_count() == 6);
    CHECK(same_bits(full.p.data(), resumed.p.data(), full.n));
    CHECK(same_bits(a.m(), c.m(), full.n));
    CHECK(same_bits(a.v(), c.v(), full.n));
}

// clip_grad_norm --------------------------------------------------------------------------------

namespace {
template <class T>
double naive_norm(const T* g, std::size_t n) {
    double s = 0;
    for (std::size_t i = 0; i < n; ++i) s += double(g[i]) * double(g[i]);
    return std::sqrt(s);
}
template <class T>
double norm_with_threads(ParamStore<T>& store, int threads) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    const T r = grad_norm(store);
    omp_set_num_threads(saved);
    return r;
}
}  // namespace

TEST_CASE_TEMPLATE("clip_grad_norm: norm matches a naive sum, clips to max_norm, thread-independent", T, float,
                   double) {
    constexpr int N = 3 * int(kFlatChunk) + 77;
    // Float sums 16k squares per chunk in float: relative error well under 1e-5. Double: 1e-12.
    const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
    Vec<T, N> model;
    ParamStore<T> store(model, 3);
    Rng rng(8);
    for (auto& x : model.w.grad()) x = T(rng.normal());
    const double want = naive_norm(store.grads(), store.size());

    const double n1 = norm_with_threads(store, 1), n2 = norm_with_threads(store, 2);
    CHECK(std::memcmp(&n1, &n2, sizeof n1) == 0);
    CHECK(std::abs(n1 - want) <= tol * want);

    // Above the norm: nothing changes, and the norm is returned.
    std::vector<T> before(store.grads(), store.grads() + store.size());
    const T big = T(2 * want);
    CHECK(std::abs(double(clip_grad_norm(store, big)) - want) <= tol * want);
    CHECK(same_bits(before.data(), store.grads(), store.size()));

    // Below: scaled by max_norm / (norm + 1e-6), as torch does.
    const T returned = clip_grad_norm(store, T(1.5));
    CHECK(std::abs(double(returned) - want) <= tol * want);
    const double scale = 1.5 / (double(returned) + 1e-6);
    CHECK(naive_norm(store.grads(), store.size()) == doctest::Approx(want * scale).epsilon(tol * 10));
    CHECK(naive_norm(store.grads(), store.size()) == doctest::Approx(1.5).epsilon(1e-6));
    for (int i = 0; i < N; i += 997)
        CHECK(double(store.grads()[i]) == doctest::Approx(before[i] * scale).epsilon(tol * 10));
}
