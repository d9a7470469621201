// The diffusion training step's text encoder + UNet pass (train/diffusion_pass.hpp) with the batch
// whole and as two halves, on 1 and on 2 threads: what the halves give (issue 15: 1 → 2-thread
// scaling, and passive OpenMP waits), timed by Google Benchmark (benchmarks/gbench.hpp).
//
//   cmake -S . -B build -DDIFFUSE_BUILD_BENCHMARKS=ON && cmake --build build --target bench_batch_split
//   OMP_WAIT_POLICY=passive build/benchmarks/bench_batch_split [--benchmark_* flags]
//
// Both run the forward and backward of bench_compare's train case (batch 32, the shipped weights
// models/diffusion.safetensors, MSE to a random target; no Adam):
//   whole batch   DiffusionPass<..., 1>: every layer's products split across the threads, ~190
//                 parallel regions a step (each wakes the other thread: under passive waits a futex
//                 round trip of tens of µs on a KVM guest);
//   two halves    DiffusionPass<..., 2> (LatentDiffusionTrainer's default): images 0-15 on one thread
//                 and 16-31 on the other, two regions a step, the second half's parameter gradients
//                 added to the first's after the backward pass.
// The halves' gradients equal the whole batch's up to float rounding (checked before timing).
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "diffuse/app/class_prompts.hpp"
#include "diffuse/io/param_store_io.hpp"
#include "diffuse/io/safetensors.hpp"
#include "diffuse/models/latent_diffusion.hpp"
#include "diffuse/nn/losses.hpp"
#include "diffuse/text/tokenizer.hpp"
#include "diffuse/train/diffusion_pass.hpp"

#include "bench_util.hpp"
#include "gbench.hpp"

using namespace diffuse;
using namespace diffuse::bench;

namespace {

constexpr int kBatch = 32;  // examples/train.cpp's kBatch
using Model = LatentDiffusion<float, presets::Default>;
constexpr int h = Model::latent_size, L = Model::latent_channels;
constexpr int Ctx = Model::context_length;

/// The inputs of a step, and its output and output gradient.
struct Batch {
    Tensor<std::int32_t, kBatch, Ctx> ids;
    Tensor<bool, kBatch, Ctx> pad_mask;
    Tensor<float, kBatch, h, h, L> zt, target, y, dy;
    Tensor<std::int32_t, kBatch> t;
};

/// Forward, MSE to the target, backward: the gradients in the store (zeroed first).
template <class Pass>
void step(Pass& pass, Batch& b, ParamStore<float>& store) {
    pass.forward(cview(b.ids), cview(b.pad_mask), cview(b.zt), cview(b.t), b.y.view());
    b.dy.fill(0);
    mse_loss(b.y, b.target, b.dy);
    store.zero_grad();
    pass.backward(cview(b.zt), cview(b.t), cview(b.y), cview(b.dy));
}

}  // namespace

int main(int argc, char** argv) {
    if (!init_benchmark(argc, argv, {"--benchmark_repetitions=5"}).empty()) {
        std::fprintf(stderr, "bench_batch_split: takes only --benchmark_* flags\n");
        return 2;
    }
    const std::string weights = "models/diffusion.safetensors";
    check(std::ifstream(weights).good(), weights + ": not found (run from the repository root)");
    Model::DiffusionPart part;
    ParamStore<float> store(part);
    const io::SafetensorsFile file(weights);
    io::read_store_buffer(file, store, store.values(), "");
    const auto tokenizer = text::Tokenizer::from_string(io::metadata_at(file, "tokenizer"));

    auto batch = make<Batch>();
    std::array<std::string, kBatch> prompts;  // bench_compare's: the classes in turn, every 8th empty
    for (int i = 0; i < kBatch; ++i)
        prompts[std::size_t(i)] = i % 8 == 7 ? "" : app::class_prompt(i % app::kClassCount);
    tokenizer.encode_batch<kBatch, Ctx>(prompts, batch->ids.view(), batch->pad_mask.view());
    Rng rng(101);
    fill_normal(batch->zt, rng);
    fill_normal(batch->target, rng);
    diffusion::draw_timesteps(diffusion::NoiseSchedule::scaled_linear(), rng, batch->t);
    DiffusionPass<float, presets::Default, kBatch, 1> whole(part, store);
    DiffusionPass<float, presets::Default, kBatch, 2> halves(part, store);
    const auto run_whole = [&] { step(whole, *batch, store); };
    const auto run_halves = [&] { step(halves, *batch, store); };

    // The halves compute the whole batch's gradients up to float rounding, with the same bits on 1
    // and on 2 threads.
    run_whole();
    const std::vector<float> want(store.grads(), store.grads() + store.size());
    std::vector<float> one_thread;
    for (int threads : {1, 2}) {
        omp_set_num_threads(threads);
        run_halves();
        check_close(fmt("two halves on %d threads: the whole batch's gradients", threads), want.size(), store.grads(),
                    want.data(), 1e-5);
        if (threads == 1) one_thread.assign(store.grads(), store.grads() + store.size());
        else
            check(std::equal(one_thread.begin(), one_thread.end(), store.grads()),
                  "two halves: the gradients' bits differ between 1 and 2 threads");
    }

    for (int threads : {1, 2}) {
        const auto add = [&](const char* name, auto run) {
            benchmark::RegisterBenchmark(fmt("%s/threads:%d", name, threads).c_str(),
                                         [=](benchmark::State& st) {
                                             omp_set_num_threads(threads);
                                             for (auto _ : st) run();
                                             st.counters["images/s"] = per_second(kBatch);
                                         })
                ->Unit(benchmark::kMillisecond)
                ->UseRealTime();
        };
        add("whole batch, layers across threads", run_whole);
        add("two halves, one a thread", run_halves);
    }
    std::printf("Default preset, batch %d, text encoder + UNet forward and backward\n", kBatch);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
}
