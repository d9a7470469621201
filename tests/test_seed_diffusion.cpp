// The seed's composite: gradients through every part at the Tiny preset, and fit() lowering the
// loss on a small fixed problem (the seed's own fit never used the model output).
#include <doctest/doctest.h>

#include "diffuse/models/seed_diffusion.hpp"
#include "diffuse/testing/gradient_check.hpp"
#include "diffuse/train/seed_diffusion_training.hpp"

using namespace diffuse;

namespace {
template <class T, int N>
void fill_problem(typename SeedDiffusion<T, seed_diffusion::TinyConfig>::template Workspace<N>& ws, Rng& rng) {
    fill_uniform(ws.x, rng, -1, 1);
    for (int n = 0; n < N; ++n) {
        constexpr int ctx = int(std::remove_cvref_t<decltype(ws.ids)>::size) / N;
        for (int k = 0; k < ctx; ++k) {
            const int i = n * ctx + k;
            ws.mask[i] = k >= 3 + n % 2;  // sample 0 has 3 tokens, sample 1 has 4
            ws.ids[i] = ws.mask[i] ? 0 : std::int32_t(1 + (7 * i) % 40);
        }
        ws.t[n] = n * 3 + 1;
    }
}
}  // namespace

TEST_CASE("SeedDiffusion (Tiny): gradients of every part match central differences") {
    using Model = SeedDiffusion<double, seed_diffusion::TinyConfig>;
    Model model;
    ParamStore<double> store(model, 11);
    auto ws = make<Model::Workspace<2>>();
    Rng rng(3);
    fill_problem<double, 2>(*ws, rng);
    testing::GradCheckOptions opt;
    opt.max_elements_per_probe = 3;
    auto rep = testing::check_gradients(
        testing::probes(store), ws->y, [&] { model.forward(*ws); },
        [&](auto dy) {
            std::copy(dy.begin(), dy.end(), ws->dy.begin());
            model.backward(*ws);
        },
        opt);
    INFO(rep.summary());
    CHECK(rep.clean());
    CHECK(rep.max_rel_error < 1e-5);
    // Every named part took part in the check.
    for (const char* part :
         {"conv_ip.", "encoder.", "clip.", "time.", "ca1.", "ca2.", "unet1.", "unet2.", "unet3.", "decoder."}) {
        bool found = false;
        for (const auto& i : store.infos()) found |= i.name.rfind(part, 0) == 0;
        CHECK_MESSAGE(found, part);
    }
}

TEST_CASE("SeedDiffusion (Tiny): fit lowers the MSE on a small fixed problem") {
    using Model = SeedDiffusion<float, seed_diffusion::TinyConfig>;
    Model model;
    ParamStore<float> store(model, 5);
    Adam<float> adam(store, {.lr = 3e-3});
    auto ws = make<Model::Workspace<2>>();
    Rng rng(9);
    fill_problem<float, 2>(*ws, rng);
    // Target: a fixed smooth image per sample, different for the two prompts.
    for (int i = 0; i < int(ws->target.size); ++i) ws->target[i] = 0.5f * std::sin(0.3f * float(i));
    const auto losses = fit(model, 300, *ws, store, adam, [](auto&) {});
    MESSAGE("loss " << losses.front() << " -> " << losses.back());
    CHECK(losses.back() < 0.2f * losses.front());
}

static_assert(SeedDiffusion<float, seed_diffusion::TinyConfig>::parameter_count > 0);
static_assert(SeedDiffusion<float, seed_diffusion::TinyConfig>::workspace_bytes<2> > 0);
