// The UNet trains: in float, with Adam, it learns to predict a fixed target for fixed inputs; and the
// same steps give bitwise the same parameters on 1 and 2 threads.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "diffuse/models/unet.hpp"
#include "diffuse/nn/losses.hpp"
#include "diffuse/train/adam.hpp"

#include "test_unet_util.hpp"

using namespace diffuse;

namespace {

struct Trained {
    std::vector<float> losses, params;
};

/// `steps` Adam steps of UNet Tiny towards a fixed target, on `threads` OpenMP threads.
Trained train(int steps, int threads) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    using Cfg = unet::TinyConfig;
    constexpr int N = 4;
    using Model = unet::UNet<float, Cfg>;
    Model model;
    ParamStore<float> store(model, 3);
    unet_test::Inputs<float, Cfg, N> in(21);
    decltype(in.z) target, y, dy;
    Rng rng(77);
    fill_normal(target, rng);
    auto ws = make<Model::Workspace<N>>();
    Adam<float> adam(store, {.lr = 1e-2});
    Trained out;
    for (int step = 0; step < steps; ++step) {
        model.forward(in.z, in.t, in.ctx, in.mask, y, *ws);
        dy.fill(0);
        out.losses.push_back(mse_loss(y, target, dy));
        store.zero_grad();
        // No input gradients wanted: null views for d z_t and d context.
        model.backward(in.z, in.t, in.ctx, in.mask, y, *ws, dy, ViewOf<float, shape_of<decltype(in.z)>>(),
                       ViewOf<float, shape_of<decltype(in.ctx)>>());
        adam.step();
    }
    out.params.assign(store.values(), store.values() + store.size());
    omp_set_num_threads(saved);
    return out;
}

}  // namespace

TEST_CASE("UNet Tiny overfits a fixed target in float (loss falls a lot in 150 Adam steps)") {
    const Trained run = train(150, 1);
    const float first = run.losses.front(), last = run.losses.back();
    std::printf("UNet Tiny overfit: loss %.4f -> %.6f in 150 steps\n", first, last);
    CHECK(std::isfinite(last));
    CHECK(first > 0.5f);
    CHECK(last < 0.02f * first);
}

TEST_CASE("UNet Tiny: training steps on 1 and 2 threads give bitwise the same parameters") {
    const Trained one = train(4, 1), two = train(4, 2);
    REQUIRE(one.params.size() == two.params.size());
    CHECK(std::memcmp(one.params.data(), two.params.data(), one.params.size() * sizeof(float)) == 0);
    CHECK(one.losses == two.losses);
    CHECK(one.losses.back() < one.losses.front());  // the steps did change the parameters
}
