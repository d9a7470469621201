// The UNet trains: in float, with Adam, it learns to predict a fixed target for fixed inputs.
#include <doctest/doctest.h>

#include <cstdio>

#include "diffuse/models/unet.hpp"
#include "diffuse/train/adam.hpp"
#include "diffuse/train/losses.hpp"
#include "test_unet_util.hpp"

using namespace diffuse;

TEST_CASE("UNet Tiny overfits a fixed target in float (loss falls a lot in 150 Adam steps)") {
    unet_test::OneThread one;
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
    float first = 0, last = 0;
    for (int step = 0; step < 150; ++step) {
        model.forward(in.z, in.t, in.ctx, in.mask, y, *ws);
        dy.fill(0);
        last = mse_loss(y, target, dy);
        if (step == 0) first = last;
        store.zero_grad();
        // No input gradients wanted: null views for d z_t and d context.
        model.backward(in.z, in.t, in.ctx, in.mask, y, *ws, dy, ViewOf<float, shape_of<decltype(in.z)>>(),
                       ViewOf<float, shape_of<decltype(in.ctx)>>());
        adam.step();
    }
    std::printf("UNet Tiny overfit: loss %.4f -> %.6f in 150 steps\n", first, last);
    CHECK(std::isfinite(last));
    CHECK(first > 0.5f);
    CHECK(last < 0.02f * first);
}
