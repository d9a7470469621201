// The Seed preset (the seed's own widths) runs full training steps of the seed's composite:
// forward through conv_ip, the 128/256/512 VAE encoder, the 12-layer text encoder, the time table,
// two cross-attention blocks, three UNets and the decoder; MSE; backward through all of it; Adam.
// Reports the time per step and the peak memory beside the compile-time byte counts.
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "diffuse/models/presets.hpp"
#include "diffuse/train/adam.hpp"
#include "diffuse/train/seed_diffusion_training.hpp"

#include "bench_util.hpp"

using namespace diffuse;

int main() {
    constexpr int N = 1;
    using Model = SeedDiffusion<float, presets::Seed::seed_diffusion>;
    auto model = make<Model>();
    ParamStore<float> store(*model, 1);
    Adam<float> adam(store, {.lr = 1e-5});  // small: the first Adam steps move every weight by about lr
    auto ws = make<Model::Workspace<N>>();
    Rng rng(2);
    fill_uniform(ws->x, rng, -1, 1);
    fill_uniform(ws->target, rng, -1, 1);
    for (int k = 0; k < Model::Ctx; ++k) {
        ws->mask[k] = k >= 6;
        ws->ids[k] = ws->mask[k] ? 0 : 3 + k;
    }
    ws->t[0] = 500;

    std::printf("SeedDiffusion<Seed>: %zu parameters, batch %d, %d threads\n", Model::parameter_count, N,
                omp_get_max_threads());
    std::vector<double> seconds;
    std::vector<float> losses;
    for (int step = 0; step < 3; ++step) {
        const auto t0 = std::chrono::steady_clock::now();
        losses.push_back(fit(*model, 1, *ws, store, adam, [](auto&) {})[0]);
        seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        std::printf("step %d: loss %.5f, %.2f s\n", step + 1, losses.back(), seconds.back());
    }
    if (!std::isfinite(losses.back()) || !(losses.back() < losses.front())) {
        std::fprintf(stderr, "bench_seed_step: the loss did not fall (%g -> %g)\n", losses.front(), losses.back());
        return 1;
    }
    const double rss = bench::peak_rss_bytes();
    const double params_bytes = double(store.size()) * sizeof(float);
    const double expected = 4 * params_bytes + double(Model::workspace_bytes<N>);  // values, grads, Adam m and v
    std::printf(
        "steady step %.2f s; peak RSS %.0f MB; params+grads+Adam %.0f MB + workspace %.0f MB = %.0f MB (ratio %.2f)\n",
        seconds.back(), rss / 1e6, 4 * params_bytes / 1e6 * 1.0, Model::workspace_bytes<N> / 1e6, expected / 1e6,
        rss / expected);
}
