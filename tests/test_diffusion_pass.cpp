// The trainers' passes over a batch run as two halves (train/batch_halves.hpp): DiffusionPass (text
// encoder + UNet) and VaePass give the whole batch's outputs or losses and, up to float rounding, its
// parameter gradients; the same bits on 1 and 2 threads and from one step to the next (the second
// half's gradient buffer starts each step at zero).
#include <doctest/doctest.h>

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "diffuse/models/latent_diffusion.hpp"
#include "diffuse/nn/losses.hpp"
#include "diffuse/sample/noise_schedule.hpp"
#include "diffuse/train/diffusion_pass.hpp"
#include "diffuse/train/vae_pass.hpp"

using namespace diffuse;

namespace {

constexpr int N = 4;
using Model = LatentDiffusion<float, presets::Tiny>;
constexpr int h = Model::latent_size, L = Model::latent_channels, Ctx = Model::context_length;

struct Batch {
    Tensor<std::int32_t, N, Ctx> ids;
    Tensor<bool, N, Ctx> pad_mask;
    Tensor<float, N, h, h, L> zt, target, y, dy;
    Tensor<std::int32_t, N> t;
};

struct Result {
    std::vector<float> y, grads;
};

/// Forward, MSE to the target, backward; the output and the store's gradients (zeroed first).
template <class Pass>
Result step(Pass& pass, Batch& b, ParamStore<float>& store) {
    pass.forward(cview(b.ids), cview(b.pad_mask), cview(b.zt), cview(b.t), b.y.view());
    b.dy.fill(0);
    mse_loss(b.y, b.target, b.dy);
    store.zero_grad();
    pass.backward(cview(b.zt), cview(b.t), cview(b.y), cview(b.dy));
    return {{b.y.begin(), b.y.end()}, {store.grads(), store.grads() + store.size()}};
}

/// max |a − b| / max |b|.
double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
    double err = 0, scale = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        err = std::max(err, double(std::abs(a[i] - b[i])));
        scale = std::max(scale, double(std::abs(b[i])));
    }
    return err / scale;
}

}  // namespace

TEST_CASE("DiffusionPass: two halves give the whole batch's output and gradients, the same bits on any thread count") {
    auto model = std::make_unique<Model>(3);
    auto b = make<Batch>();
    const std::array<std::string, N> prompts{"a photo of a sneaker", "", "a bag", "a dress"};
    model->tokenizer.encode_batch<N, Ctx>(prompts, b->ids.view(), b->pad_mask.view());
    Rng rng(11);
    fill_normal(b->zt, rng);
    fill_normal(b->target, rng);
    diffusion::draw_timesteps(model->schedule, rng, b->t);

    auto& store = model->diffusion_store;
    DiffusionPass<float, presets::Tiny, N, 1> whole(model->diffusion_part, store);
    DiffusionPass<float, presets::Tiny, N, 2> halves(model->diffusion_part, store);
    const int threads = omp_get_max_threads();
    const Result want = step(whole, *b, store);
    REQUIRE(std::any_of(want.grads.begin(), want.grads.end(), [](float g) { return g != 0; }));

    omp_set_num_threads(1);
    const Result one = step(halves, *b, store);
    omp_set_num_threads(2);
    const Result two = step(halves, *b, store);
    const Result again = step(halves, *b, store);
    omp_set_num_threads(threads);

    // Per image, the forward pass is the whole batch's, bit for bit; the gradients' sums over the batch
    // are cut in two, so they agree to float rounding (a half left out would be off by ~50 %).
    CHECK(one.y == want.y);
    CHECK(relative_error(one.grads, want.grads) < 1e-5);
    CHECK(two.grads == one.grads);
    CHECK(again.grads == one.grads);  // the second half's buffer starts each step at zero
}

TEST_CASE("VaePass: two halves give the whole batch's losses and gradients, the same bits on any thread count") {
    constexpr int S = Model::image_size, C = Model::image_channels;
    auto model = std::make_unique<Model>(5);
    auto x = make<Tensor<float, N, S, S, C>>();
    auto eps = make<Tensor<float, N, h, h, L>>();
    Rng rng(12);
    fill_uniform(*x, rng, -1, 1);
    fill_normal(*eps, rng);
    auto& store = model->vae_store;
    const float beta = 0.1f;  // large enough that the KL term's gradient counts
    const auto step = [&](auto& pass) {
        store.zero_grad();
        const auto l = pass.step(cview(*x), cview(*eps), beta);
        return std::pair{l.total, std::vector<float>(store.grads(), store.grads() + store.size())};
    };
    VaePass<float, presets::Tiny, N, 1> whole(model->vae_part, store);
    VaePass<float, presets::Tiny, N, 2> halves(model->vae_part, store);
    const int threads = omp_get_max_threads();
    const auto [want_loss, want] = step(whole);
    REQUIRE(std::any_of(want.begin(), want.end(), [](float g) { return g != 0; }));
    omp_set_num_threads(1);
    const auto [loss, one] = step(halves);
    omp_set_num_threads(2);
    const auto two = step(halves).second;
    const auto again = step(halves).second;
    omp_set_num_threads(threads);

    CHECK(loss == doctest::Approx(want_loss).epsilon(1e-6));
    CHECK(relative_error(one, want) < 1e-5);
    CHECK(two == one);
    CHECK(again == one);
}
