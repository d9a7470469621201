// Data parallelism over MPI (dist/mpi.hpp), run by CTest as `mpirun -np 2` (any R that divides 8):
//   1. R ranks × batch 8/R give the losses and parameters of one process × batch 8 (VAE steps, the
//      latent scale, diffusion steps), within a tolerance: the weight gradients sum over the batch
//      inside GEMMs, and a sum over 8 images is not bitwise the sum of two sums over 4;
//   2. the replicas stay bitwise identical on every rank (every parameter, EMA, Adam moment);
//   3. synchronize() makes them start equal: rank > 0 is built from another seed;
//   4. buckets are reduced while the backward pass runs (some start before average()): the distributed
//      run takes its batches whole (Parts = 1; as two halves, the reduction starts after the backward
//      pass), the one-process runs in halves (the trainer's default);
//   5. a checkpoint the R-rank run wrote resumes in one process (another number of ranks) and
//      continues as the distributed run did, within the same tolerance.
// Exit code 0 on success, 1 on a failed check, 77 (CTest: skipped) without Fashion-MNIST.
#include <mpi.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "diffuse/dist/mpi.hpp"
#include "diffuse/io/idx.hpp"
#include "diffuse/train/checkpoint.hpp"
#include "diffuse/train/latent_diffusion_trainer.hpp"

using namespace diffuse;

namespace {

constexpr int kGlobalBatch = 8;
constexpr int kVaeSteps = 4, kDiffusionSteps = 6, kSaveAt = 3;  // checkpoint after 3 diffusion steps
// Relative tolerance on losses, grad norms and parameters (max |a − b| / max |b| per buffer) after
// these steps: measured differences are up to 2e-5 (float sums in another order, amplified by Adam
// over 13 steps); a wrong shard or a missing average is ~1e-1.
constexpr double kTolerance = 1e-4;

using Model = LatentDiffusion<float, presets::Tiny>;
template <int N, int Parts = default_batch_parts<N>>
using Trainer = LatentDiffusionTrainer<float, presets::Tiny, N, data::FashionSource, Parts>;

int failures = 0;
int my_rank = 0;
double worst = 0;  // the largest relative difference measured, for the record

void expect(bool ok, const std::string& what) {
    if (ok) return;
    std::fprintf(stderr, "rank %d: FAILED: %s\n", my_rank, what.c_str());
    ++failures;
}

io::FashionMnist images() {
    static const io::FashionMnist all = io::load_fashion_mnist(io::Split::train, DIFFUSE_FASHION_MNIST_DIR);
    return io::first_images(all, 40);  // 5 global batches an epoch: the runs cross epochs
}

LatentDiffusionTrainOptions options() {
    LatentDiffusionTrainOptions o;
    o.seed = 11;
    o.vae_warmup_steps = 2;
    o.warmup_steps = 2;
    o.scale_batches = 2;
    o.ema_decay = 0.9;
    o.caption_dropout = 0.25;
    return o;
}

/// Losses and grad norms of `diffusion` diffusion steps.
template <class Tr>
void diffusion_steps(Tr& t, int diffusion, std::vector<double>& trace) {
    for (int i = 0; i < diffusion; ++i) {
        const auto s = t.diffusion_step();
        trace.push_back(s.loss);
        trace.push_back(s.grad_norm);
    }
}

/// VAE steps, the latent scale and the first kSaveAt diffusion steps.
template <class Tr>
std::vector<double> first_part(Tr& t) {
    std::vector<double> trace;
    for (int i = 0; i < kVaeSteps; ++i) {
        const auto s = t.vae_step();
        trace.push_back(s.loss);
        trace.push_back(s.grad_norm);
    }
    trace.push_back(t.measure_latent_scale());
    diffusion_steps(t, kSaveAt, trace);
    return trace;
}

double relative_difference(const float* a, const float* b, std::size_t n) {
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < n; ++i) {
        diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
        scale = std::max(scale, std::abs(double(b[i])));
    }
    return scale > 0 ? diff / scale : diff;
}

void expect_close(const std::vector<double>& a, const std::vector<double>& b, const char* what) {
    expect(a.size() == b.size(), std::string(what) + ": lengths differ");
    for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
        worst = std::max(worst, std::abs(a[i] - b[i]) / std::max(1.0, std::abs(b[i])));
        expect(
            std::abs(a[i] - b[i]) <= kTolerance * std::max(1.0, std::abs(b[i])),
            std::string(what) + " #" + std::to_string(i) + ": " + std::to_string(a[i]) + " vs " + std::to_string(b[i]));
    }
}

/// Every trained buffer of a's run against b's, within the tolerance.
template <class A, class B>
void expect_close_state(const A& a, const B& b, const char* what) {
    const Model &ma = a.model, &mb = b.model;
    const auto close = [&](const float* x, const float* y, std::size_t n, const char* buffer) {
        const double d = relative_difference(x, y, n);
        worst = std::max(worst, d);
        expect(d <= kTolerance, std::string(what) + ": " + buffer + " differ by " + std::to_string(d));
    };
    close(ma.vae_store.values(), mb.vae_store.values(), ma.vae_store.size(), "VAE parameters");
    close(ma.diffusion_store.values(), mb.diffusion_store.values(), ma.diffusion_store.size(), "diffusion parameters");
    close(ma.ema.values(), mb.ema.values(), ma.ema.size(), "EMA weights");
    close(a.diffusion_adam.v(), b.diffusion_adam.v(), a.diffusion_adam.size(), "Adam second moments");
    expect(ma.ema.update_count() == mb.ema.update_count(), std::string(what) + ": EMA update counts differ");
    expect(a.data.epoch() == b.data.epoch() && a.data.offset() == b.data.offset(),
           std::string(what) + ": data positions differ");
}

/// FNV-1a over every trained buffer's bits: equal on every rank iff the replicas are identical.
template <class Tr>
std::uint64_t state_hash(const Tr& t) {
    std::uint64_t h = 1469598103934665603ULL;
    const auto add = [&](const float* p, std::size_t n) {
        const auto* b = reinterpret_cast<const unsigned char*>(p);
        for (std::size_t i = 0; i < n * sizeof(float); ++i) h = (h ^ b[i]) * 1099511628211ULL;
    };
    add(t.model.vae_store.values(), t.model.vae_store.size());
    add(t.model.diffusion_store.values(), t.model.diffusion_store.size());
    add(t.model.ema.values(), t.model.ema.size());
    add(t.vae_adam.m(), t.vae_adam.size());
    add(t.vae_adam.v(), t.vae_adam.size());
    add(t.diffusion_adam.m(), t.diffusion_adam.size());
    add(t.diffusion_adam.v(), t.diffusion_adam.size());
    return h;
}

template <int N>
void run(int ranks) {
    const std::string path = (std::filesystem::temp_directory_path() / "diffuse_test_dist.safetensors").string();
    // Small buckets: the Tiny UNet's gradients span several, so reports start some early.
    dist::MpiDataParallel<float> parallel(MPI_COMM_WORLD, 16 << 10);
    Model model(my_rank == 0 ? 7 : 8);  // other ranks start elsewhere: synchronize() must fix it
    Trainer<N, 1> dp(model, images(), options(), &parallel);
    dp.synchronize();
    std::vector<double> trace = first_part(dp);
    if (my_rank == 0) save_checkpoint(path, dp);
    MPI_Barrier(MPI_COMM_WORLD);
    diffusion_steps(dp, kDiffusionSteps - kSaveAt, trace);
    expect(dp.data.global_batch() == kGlobalBatch, "global batch is not 8");

    // 2. The replicas are identical, bit for bit.
    const std::uint64_t mine = state_hash(dp);
    std::vector<std::uint64_t> all(std::size_t(ranks), 0);
    MPI_Allgather(&mine, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD);
    for (int r = 0; r < ranks; ++r)
        expect(all[std::size_t(r)] == mine, "rank " + std::to_string(r) + "'s replica differs from this rank's");
    // 4. Reduction overlapped the backward pass (with more than one rank there is something to reduce).
    if (ranks > 1) expect(parallel.early_buckets() > 0, "no bucket was started before average()");
    if (my_rank != 0) return;

    // 1. One process with the whole batch.
    Model ref_model(7);
    Trainer<kGlobalBatch> ref(ref_model, images(), options());
    std::vector<double> ref_trace = first_part(ref);
    diffusion_steps(ref, kDiffusionSteps - kSaveAt, ref_trace);
    expect_close(trace, ref_trace, "losses, grad norms and latent scale against one process");
    expect_close_state(dp, ref, "against one process");

    // 5. The R-rank checkpoint, resumed by one process.
    Model resumed_model(3);
    Trainer<kGlobalBatch> resumed(resumed_model, images(), options());
    load_checkpoint(path, resumed);
    std::vector<double> resumed_trace;
    diffusion_steps(resumed, kDiffusionSteps - kSaveAt, resumed_trace);
    const std::vector<double> dp_tail(trace.end() - 2 * (kDiffusionSteps - kSaveAt), trace.end());
    expect_close(resumed_trace, dp_tail, "resumed in one process: losses");
    expect_close_state(resumed, dp, "resumed in one process");
    std::filesystem::remove(path);
    std::printf(
        "test_dist: %d ranks x batch %d against 1 x batch %d: largest relative difference %.2g (tolerance "
        "%.0e): %s\n",
        ranks, N, kGlobalBatch, worst, kTolerance, failures ? "FAILED" : "ok");
}

}  // namespace

int main(int argc, char** argv) {
    dist::Mpi mpi(argc, argv);
    my_rank = mpi.rank();
    omp_set_num_threads(1);
    if (!std::filesystem::exists(std::string(DIFFUSE_FASHION_MNIST_DIR) + "/train-images-idx3-ubyte.gz")) {
        if (my_rank == 0) std::printf("Fashion-MNIST not found: skipped\n");
        return 77;
    }
    try {
        switch (mpi.size()) {
            case 1:
                run<8>(1);
                break;
            case 2:
                run<4>(2);
                break;
            case 4:
                run<2>(4);
                break;
            case 8:
                run<1>(8);
                break;
            default:
                mpi.abort("test_dist: run with 1, 2, 4 or 8 ranks");
        }
    } catch (const std::exception& e) { mpi.abort(std::string("test_dist: ") + e.what()); }
    int total = 0;
    MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    return total ? 1 : 0;
}
