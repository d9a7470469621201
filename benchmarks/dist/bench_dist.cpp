// Data-parallel training over MPI (dist/mpi.hpp) on this machine, and a model of its scaling.
// Run by benchmarks/dist.sh under mpirun, once with 1 rank × 2 threads and once with 2 ranks × 1
// thread; both train the Default preset (examples/train.cpp's model) at a global batch of 32 on
// Fashion-MNIST (or on random images where it is missing):
//
//   images/s      global batch / median seconds of a diffusion step (text encoder + UNet), all ranks
//   comm share    seconds inside MPI calls of the step (the gradient allreduce and the loss sums) /
//                 step seconds; "waited" is the part average() waited for, which the backward pass
//                 did not hide
//   allreduce     MPI_Allreduce of 4 B … 64 MB over the ranks, median of repeats, read as
//                 t(n) = a + n / B: a, the per-call latency, is the time of 4 bytes; B, the bus
//                 bandwidth, is read at the bucket size (4 MB), the messages training sends
//
// The scaling model is the textbook ring allreduce (Horovod's, NCCL's): on R ranks a buffer of n
// bytes costs 2 (R − 1) α + 2 (R − 1) / R · n / β, where α (one hop's latency) and β (one link's
// bandwidth) come from the sweep on 2 ranks (a = 2α, B = β), or are typical figures of networks. A step computes for b · c seconds (b
// images per rank, c seconds per image measured on one core) and reduces 4 P bytes in ⌈4P / s⌉
// buckets of s bytes; its efficiency against perfect scaling, without any overlap, is
// compute / (compute + allreduce). Both compute and bytes grow with the parameter count P, so the
// bandwidth term's share does not depend on the model size: it depends on b, and the batch below
// which communication dominates is printed. The latency term grows with the number of buckets.
// Shared memory is not a network: the model also shows 100 Gb/s InfiniBand and 10 Gb/s Ethernet,
// and --latency-us and --bandwidth-gbs add a row for the user's own links.
//
//   mpirun -np R bench_dist [--steps S] [--single IMAGES_PER_S] [--latency-us A --bandwidth-gbs B]
#include <mpi.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "diffuse/dist/mpi.hpp"
#include "diffuse/train/latent_diffusion_trainer.hpp"

#include "../bench_util.hpp"

using namespace diffuse;
using namespace diffuse::bench;

namespace {

constexpr int kGlobalBatch = 32;  // examples/train.cpp's kBatch on one rank
using Model = LatentDiffusion<float, presets::Default>;

struct Args {
    int steps = 6;
    double single_images_per_s = 0;  // the 1-rank run's figure, for the table
    double latency_us = 0, bandwidth_gbs = 0;
};

struct TrainFigures {
    double step_s = 0, comm_s = 0, wait_s = 0;
    std::size_t gradient_bytes = 0, buckets = 0;
};

io::FashionMnist training_images() {
    const char* dir = "/usr/share/datasets/fashion-mnist";
    if (std::filesystem::exists(std::string(dir) + "/train-images-idx3-ubyte.gz"))
        return io::first_images(io::load_fashion_mnist(io::Split::train, dir), 4096);
    io::FashionMnist d;  // random images: the step's cost does not depend on what they show
    d.images.count = 4096, d.images.rows = 28, d.images.cols = 28;
    d.images.pixels.resize(std::size_t(d.images.count) * 28 * 28);
    d.labels.count = d.images.count;
    d.labels.labels.resize(std::size_t(d.images.count));
    std::uint32_t s = 1;
    for (auto& p : d.images.pixels) p = std::uint8_t((s = s * 1664525u + 1013904223u) >> 24);
    for (std::size_t i = 0; i < d.labels.labels.size(); ++i) d.labels.labels[i] = std::uint8_t(i % 10);
    return d;
}

/// Median seconds of a diffusion step with N images per rank, and its communication.
template <int N>
TrainFigures train(dist::MpiDataParallel<float>& parallel, int steps) {
    auto model = std::make_unique<Model>(1);
    LatentDiffusionTrainer<float, presets::Default, N> tr(*model, training_images(), {}, &parallel);
    tr.synchronize();
    tr.vae_step();
    tr.measure_latent_scale();
    tr.diffusion_step();  // warm: workspaces, OpenMP teams, packing buffers, MPI connections
    Timing t;
    std::vector<double> comm, wait;
    for (int i = 0; i < steps; ++i) {
        parallel.reset_timers();
        MPI_Barrier(MPI_COMM_WORLD);
        time_once(t, [&] { tr.diffusion_step(); });
        comm.push_back(parallel.comm_seconds());
        wait.push_back(parallel.wait_seconds());
    }
    std::sort(comm.begin(), comm.end());
    std::sort(wait.begin(), wait.end());
    TrainFigures f;
    f.step_s = t.median();
    f.comm_s = comm[comm.size() / 2];
    f.wait_s = wait[wait.size() / 2];
    f.gradient_bytes = model->diffusion_store.size() * sizeof(float);
    f.buckets = (model->diffusion_store.size() + parallel.bucket_elements() - 1) / parallel.bucket_elements();
    // The slowest rank sets the pace: report its figures.
    MPI_Allreduce(MPI_IN_PLACE, &f.step_s, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &f.comm_s, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &f.wait_s, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return f;
}

struct Point {
    double bytes, seconds;
};

/// Median seconds of MPI_Allreduce (float sum, in place) over sizes 4 B … 64 MB.
std::vector<Point> allreduce_sweep() {
    std::vector<Point> points;
    std::vector<float> buf(std::size_t(16) << 20, 1.0f);
    for (std::size_t n = 1; n <= buf.size(); n *= 4) {
        const int reps = int(std::clamp<std::size_t>((std::size_t(64) << 20) / (n * 4), 5, 200));
        std::vector<double> t;
        for (int r = 0; r < reps; ++r) {
            MPI_Barrier(MPI_COMM_WORLD);
            const double t0 = MPI_Wtime();
            MPI_Allreduce(MPI_IN_PLACE, buf.data(), int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            t.push_back(MPI_Wtime() - t0);
        }
        std::sort(t.begin(), t.end());
        double median = t[t.size() / 2];
        MPI_Allreduce(MPI_IN_PLACE, &median, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        points.push_back({double(n * 4), median});
    }
    return points;
}

/// t = a + bytes / bandwidth: a is the time of the smallest size, the bandwidth that of the bucket
/// size, the messages a training step sends (larger ones fall out of cache, smaller ones are
/// latency-bound).
void fit(const std::vector<Point>& p, double bucket_bytes, double& a, double& bandwidth) {
    a = p.front().seconds;
    const Point& q = *std::min_element(p.begin(), p.end(), [&](const Point& x, const Point& y) {
        return std::abs(std::log(x.bytes / bucket_bytes)) < std::abs(std::log(y.bytes / bucket_bytes));
    });
    bandwidth = q.bytes / (q.seconds - a);
}

/// Ring allreduce seconds of `bytes` in `buckets` calls on R ranks.
double ring_seconds(int R, double bytes, double buckets, double alpha, double beta) {
    return buckets * 2 * (R - 1) * alpha + 2.0 * (R - 1) / R * bytes / beta;
}

void report(const Args& args, int ranks, const TrainFigures& f, const std::vector<Point>& sweep) {
    const double images_per_s = kGlobalBatch / f.step_s;
    std::printf("## Data-parallel training, Default preset, global batch %d\n\n", kGlobalBatch);
    Table table({"configuration", "step", "images/s", "in MPI", "waited", "speed-up"},
                {false, true, true, true, true, true});
    if (args.single_images_per_s > 0)
        table.row({"1 rank × 2 threads, batch 32", fmt("%.0f ms", 1e3 * kGlobalBatch / args.single_images_per_s),
                   fmt("%.1f", args.single_images_per_s), "–", "–", "1.00×"});
    table.row({fmt("%d ranks × %d thread%s, batch %d each", ranks, omp_get_max_threads(),
                   omp_get_max_threads() > 1 ? "s" : "", kGlobalBatch / ranks),
               fmt("%.0f ms", 1e3 * f.step_s), fmt("%.1f", images_per_s), fmt("%.1f %%", 100 * f.comm_s / f.step_s),
               fmt("%.1f %%", 100 * f.wait_s / f.step_s),
               args.single_images_per_s > 0 ? fmt("%.2f×", images_per_s / args.single_images_per_s) : "–"});
    table.print();
    std::printf("\ngradients: %.1f MB a step in %zu buckets of %.0f MB\n", f.gradient_bytes / 1e6, f.buckets,
                double(dist::MpiDataParallel<float>::kDefaultBucketBytes) / (1 << 20));
    if (ranks < 2) return;

    const double bucket_bytes = double(dist::MpiDataParallel<float>::kDefaultBucketBytes);
    double a = 0, B = 0;
    fit(sweep, bucket_bytes, a, B);
    std::printf("\n## MPI_Allreduce on %d ranks (float sum, in place, median)\n\n", ranks);
    Table ar({"bytes", "time", "bus bandwidth"}, {true, true, true});
    for (const Point& p : sweep)
        ar.row({p.bytes >= 1 << 20   ? fmt("%.0f MB", p.bytes / (1 << 20))
                : p.bytes >= 1 << 10 ? fmt("%.0f KB", p.bytes / (1 << 10))
                                     : fmt("%.0f B", p.bytes),
                fmt("%.1f µs", 1e6 * p.seconds), fmt("%.2f GB/s", p.bytes / p.seconds / 1e9)});
    ar.print();
    std::printf(
        "\nread as t = a + n / B: latency a = %.1f µs a call (4 B), bandwidth B = %.2f GB/s (at the %.0f MB "
        "bucket size)\n",
        1e6 * a, B / 1e9, bucket_bytes / (1 << 20));

    // Links: this machine's (2 ranks: two hops of α, one pass of n at β), typical networks, the user's.
    struct Links {
        std::string name;
        double alpha, beta;
    };
    std::vector<Links> links = {{"this machine (shared memory)", a / 2, B},
                                {"100 Gb/s InfiniBand (assumed: 2 µs, 12.5 GB/s)", 2e-6, 12.5e9},
                                {"10 Gb/s Ethernet (assumed: 25 µs, 1.25 GB/s)", 25e-6, 1.25e9}};
    if (args.latency_us > 0 && args.bandwidth_gbs > 0)
        links.push_back({fmt("given (%.1f µs, %.2f GB/s)", args.latency_us, args.bandwidth_gbs), args.latency_us * 1e-6,
                         args.bandwidth_gbs * 1e9});
    // Seconds per image on one core: the 2-rank step less what it waited for, times its threads.
    const double per_image = (f.step_s - f.wait_s) * omp_get_max_threads() / (kGlobalBatch / ranks);
    const double P = double(f.gradient_bytes), buckets = double(f.buckets);
    std::printf(
        "\n## Scaling model: ring allreduce of %.1f MB in %.0f buckets a step, %.1f ms an image on one core, "
        "no overlap\n\n",
        P / 1e6, buckets, 1e3 * per_image);
    std::printf(
        "Efficiency = compute / (compute + allreduce) at a batch of 4, 16 and 32 images per rank (one core "
        "each).\n\n");
    Table model({"links", "ranks", "allreduce", "batch 4", "batch 16", "batch 32", "comm dominates below"},
                {false, true, true, true, true, true, true});
    for (const Links& l : links)
        for (int R : {8, 64, 512}) {
            const double comm = ring_seconds(R, P, buckets, l.alpha, l.beta);
            const auto efficiency = [&](int b) { return fmt("%.0f %%", 100 * b * per_image / (b * per_image + comm)); };
            model.row({l.name, fmt("%d", R), fmt("%.1f ms", 1e3 * comm), efficiency(4), efficiency(16), efficiency(32),
                       fmt("%.1f images", comm / per_image)});  // comm = b · per_image
        }
    model.print();
    // Buckets: a bucket's latency, 2 (R − 1) α, should stay under 10 % of its transfer time,
    // 2 (R − 1) / R · s / β, so s ≥ 10 α β R; and there should be several buckets to overlap.
    std::printf(
        "\nBucket size: at least 10 α β R bytes, so a bucket's latency stays under 10 %% of its time, and "
        "at most a quarter of the gradients (%.1f MB), so the backward pass has buckets to overlap. Where the "
        "first exceeds the second, the ring is latency-bound: one bucket, or a tree allreduce.\n\n",
        P / 4e6);
    Table bucket({"links", "8 ranks", "64 ranks", "512 ranks"}, {false, true, true, true});
    for (const Links& l : links)
        bucket.row({l.name, fmt("%.2f MB", 80 * l.alpha * l.beta / 1e6), fmt("%.2f MB", 640 * l.alpha * l.beta / 1e6),
                    fmt("%.2f MB", 5120 * l.alpha * l.beta / 1e6)});
    bucket.print();
}

}  // namespace

int main(int argc, char** argv) {
    dist::Mpi mpi(argc, argv);
    Args args;
    for (int i = 1; i < argc; ++i) {
        const auto value = [&] {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "bench_dist: %s needs a value\n", argv[i]);
                std::exit(2);
            }
            return std::atof(argv[++i]);
        };
        if (!std::strcmp(argv[i], "--steps")) args.steps = std::max(1, int(value()));
        else if (!std::strcmp(argv[i], "--single")) args.single_images_per_s = value();
        else if (!std::strcmp(argv[i], "--latency-us")) args.latency_us = value();
        else if (!std::strcmp(argv[i], "--bandwidth-gbs")) args.bandwidth_gbs = value();
        else {
            std::fprintf(stderr, "bench_dist: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    dist::MpiDataParallel<float> parallel;
    TrainFigures f;
    if (mpi.size() == 1) f = train<kGlobalBatch>(parallel, args.steps);
    else if (mpi.size() == 2) f = train<kGlobalBatch / 2>(parallel, args.steps);
    else {
        if (mpi.rank() == 0) std::fprintf(stderr, "bench_dist: runs on 1 or 2 ranks\n");
        return 2;
    }
    const std::vector<Point> sweep = mpi.size() > 1 ? allreduce_sweep() : std::vector<Point>{};
    if (mpi.rank() == 0) report(args, mpi.size(), f, sweep);
    if (mpi.rank() == 0 && mpi.size() == 1) std::printf("images/s %.2f\n", kGlobalBatch / f.step_s);
    return 0;
}
