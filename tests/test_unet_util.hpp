// Shared by the tests/test_unet*.cpp executables: deterministic inputs and the whole-model gradient check.
#ifndef DIFFUSE_TESTS_TEST_UNET_UTIL_HPP
#define DIFFUSE_TESTS_TEST_UNET_UTIL_HPP

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "diffuse/core/params.hpp"
#include "diffuse/core/rng.hpp"
#include "diffuse/core/tensor.hpp"
#include "diffuse/models/unet.hpp"
#include "diffuse/testing/gradient_check.hpp"

namespace unet_test {

using namespace diffuse;

/// One thread while alive: a gradient check runs thousands of tiny forwards, where OpenMP's fork and
/// join cost more than the work (50x slower on a loaded 2-core machine).
struct OneThread {
    int saved = omp_get_max_threads();
    OneThread() { omp_set_num_threads(1); }
    ~OneThread() { omp_set_num_threads(saved); }
};

/// Inputs of a batch of N for a UNet config, filled from a seed; sample 1 pads its last context key.
template <class T, class Cfg, int N>
struct Inputs {
    static constexpr int S = Cfg::latent_size, C = Cfg::latent_channels;
    Tensor<T, N, S, S, C> z, dz;
    Tensor<std::int32_t, N> t;
    Tensor<T, N, Cfg::context_length, Cfg::context_width> ctx, dctx;
    Tensor<bool, N, Cfg::context_length> mask;
    explicit Inputs(std::uint64_t seed) {
        Rng rng(seed);
        fill_normal(z, rng);
        fill_normal(ctx, rng);
        for (int n = 0; n < N; ++n) t[n] = std::int32_t((n * 7 + 3) % Cfg::timesteps);
        mask.fill(false);
        if (N > 1) mask(1, Cfg::context_length - 1) = true;
    }
};

struct GradResult {
    testing::GradCheckReport report;
    double padded_key_grad = 0;        // largest |d context| over the padded key of sample 1 (must be 0)
    double other_key_grad = 0;         // largest |d context| over the other keys (must not be)
    std::size_t expected_checked = 0;  // elements the checker should have compared: every probe sampled
};

/// Central differences on every parameter tensor, z_t and the context (8 elements of each), batch 2.
template <class Cfg>
GradResult check_unet_gradients(double step = 1e-5) {
    OneThread one;
    constexpr int N = 2, Ctx = Cfg::context_length;
    using Model = unet::UNet<double, Cfg>;
    Model model;
    ParamStore<double> store(model, 5);
    Inputs<double, Cfg, N> in(9);
    decltype(in.z) y, dy;
    auto ws = make<typename Model::template Workspace<N>>();
    auto probes = testing::probes(store);
    probes.push_back(testing::probe("z", in.z, in.dz));
    probes.push_back(testing::probe("context", in.ctx, in.dctx));
    testing::GradCheckOptions opt;
    opt.step = step;
    opt.max_elements_per_probe = 8;
    GradResult r;
    for (const auto& p : probes) r.expected_checked += std::min<std::size_t>(p.size, opt.max_elements_per_probe);
    r.report = testing::check_gradients(
        probes, y, [&] { model.forward(in.z, in.t, in.ctx, in.mask, y, *ws); },
        [&](auto g) { model.backward(in.z, in.t, in.ctx, in.mask, y, *ws, g, in.dz, in.dctx); }, opt);
    dy.fill(1.0);
    in.dctx.fill(0.0);
    model.backward(in.z, in.t, in.ctx, in.mask, y, *ws, dy, in.dz, in.dctx);
    for (int k = 0; k < Ctx; ++k)
        for (int d = 0; d < Cfg::context_width; ++d) {
            const double g = std::abs(in.dctx(1, k, d));
            double& slot = k == Ctx - 1 ? r.padded_key_grad : r.other_key_grad;
            slot = std::max(slot, g);
        }
    return r;
}

}  // namespace unet_test

#endif
