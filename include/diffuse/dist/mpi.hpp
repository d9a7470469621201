// Data-parallel training over MPI (Open MPI: Debian's libopenmpi-dev and openmpi-bin), the way
// Horovod and PyTorch DDP use it: one process (rank) per socket or machine, OpenMP threads inside.
// Optional: only a build that finds MPI compiles this header (CMake: find_package(MPI), target
// MPI::MPI_CXX); nothing else in the library includes it.
//
//   dist::Mpi mpi(argc, argv);                    // MPI_Init … MPI_Finalize, errors as exceptions
//   dist::MpiDataParallel<float> parallel;        // over MPI_COMM_WORLD
//   LatentDiffusionTrainer<…> trainer(model, data, options, &parallel);
//   trainer.synchronize();                        // every rank from rank 0 (at start, after a resume)
//
// Gradients are averaged with MPI_Allreduce over the store's flat gradient buffer, in buckets of
// `bucket_bytes` counted from the buffer's end: the backward pass finishes the last parameters first
// (the UNet's output head, then its up levels), so a bucket is started (MPI_Iallreduce) as soon as the
// backward pass has reported every part it spans, and later reports drive the started ones on
// (MPI_Testall: Open MPI progresses a non-blocking collective inside MPI calls), so communication
// overlaps the rest of the backward pass where it can. average() starts what is left, waits, and
// scales by 1/ranks. Only the main thread calls MPI (MPI_THREAD_FUNNELED).
//
// Determinism: the sum over ranks of one bucket is computed by Open MPI's allreduce, whose
// algorithm is fixed by the communicator and message sizes: run to run and on every rank, the same
// bits (the test checks both). It differs from one process with the whole batch by the order of
// the sums over the batch (a GEMM over N images is not the sum of two over N/2): equal within
// rounding, not bitwise (tests/test_dist.cpp states the tolerance).
//
// Errors: every MPI call is checked (MPI_ERRORS_RETURN on the communicator) and throws with MPI's
// message; a program catches it and calls Mpi::abort, which stops every rank (MPI_Abort). A rank
// that dies is seen by mpirun, which stops the others ("mpirun noticed that process rank 1 ...
// exited on signal 9") instead of letting them wait in an allreduce forever.
#ifndef DIFFUSE_DIST_MPI_HPP
#define DIFFUSE_DIST_MPI_HPP

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "diffuse/train/data_parallel.hpp"

namespace diffuse::dist {

/// Throws std::runtime_error with MPI's message when rc is not MPI_SUCCESS.
inline void check(int rc, const char* what) {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw std::runtime_error(std::string(what) + ": " + std::string(msg, std::size_t(len)));
}

/// Whether this process was started by mpirun (Open MPI, or a PMI launcher such as MPICH's or
/// Slurm's): a program started alone need not initialize MPI at all.
inline bool launched_by_mpirun() {
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"})
        if (std::getenv(v)) return true;
    return false;
}

/// MPI for this process, from construction to destruction.
class Mpi {
public:
    Mpi(int& argc, char**& argv) {
        int provided = 0;
        check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
        MPI_Comm_size(MPI_COMM_WORLD, &size_);
    }
    Mpi(const Mpi&) = delete;
    Mpi& operator=(const Mpi&) = delete;
    ~Mpi() { MPI_Finalize(); }

    int rank() const { return rank_; }
    int size() const { return size_; }

    /// Stops every rank with `code` after printing why (on this rank's stderr).
    [[noreturn]] void abort(const std::string& why, int code = 1) const {
        std::fprintf(stderr, "rank %d of %d: %s; stopping all ranks\n", rank_, size_, why.c_str());
        std::fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, code);
        std::exit(code);  // MPI_Abort does not return; this satisfies [[noreturn]]
    }

private:
    int rank_ = 0, size_ = 1;
};

template <class T>
inline MPI_Datatype mpi_type() {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "mpi_type: float or double");
    return std::is_same_v<T, float> ? MPI_FLOAT : MPI_DOUBLE;
}

/// The DataParallel of the trainers over an MPI communicator (see the header comment).
template <class T>
class MpiDataParallel final : public DataParallel<T> {
public:
    static constexpr std::size_t kDefaultBucketBytes = std::size_t(4) << 20;

    explicit MpiDataParallel(MPI_Comm comm = MPI_COMM_WORLD, std::size_t bucket_bytes = kDefaultBucketBytes)
        : comm_(comm), bucket_(std::max<std::size_t>(1, bucket_bytes / sizeof(T))) {
        MPI_Comm_rank(comm_, &rank_);
        MPI_Comm_size(comm_, &ranks_);
    }

    int rank() const override { return rank_; }
    int ranks() const override { return ranks_; }
    std::size_t bucket_elements() const { return bucket_; }

    void begin(T* grads, std::size_t n) override {
        grads_ = grads, n_ = n, frontier_ = n, next_bucket_ = 0;
        done_.clear();
        requests_.clear();
        buckets_ = (n + bucket_ - 1) / bucket_;
    }

    void finished(const void* first, const void* last) override {
        const auto* f = static_cast<const T*>(first);
        const auto* l = static_cast<const T*>(last);
        if (f < grads_ || l > grads_ + n_) return;  // not this buffer's (e.g. a frozen part)
        done_.emplace_back(std::size_t(f - grads_), std::size_t(l - grads_));
        // The frontier moves down while a finished range ends at it: [frontier, n) is final.
        for (bool moved = true; moved;) {
            moved = false;
            for (const auto& [b, e] : done_)
                if (e >= frontier_ && b < frontier_) frontier_ = b, moved = true;
        }
        while (next_bucket_ < buckets_ && bucket_begin(next_bucket_) >= frontier_) {
            start(next_bucket_++);
            ++early_buckets_;
        }
        progress();
    }

    void average() override {
        while (next_bucket_ < buckets_) start(next_bucket_++);
        const auto t0 = std::chrono::steady_clock::now();
        check(MPI_Waitall(int(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
        const auto t1 = std::chrono::steady_clock::now();
        wait_seconds_ += std::chrono::duration<double>(t1 - t0).count();
        comm_seconds_ += std::chrono::duration<double>(t1 - t0).count();
        if (ranks_ > 1) {
            const T inv = T(1) / T(ranks_);
            for (std::size_t i = 0; i < n_; ++i) grads_[i] *= inv;
        }
    }

    void sum(double* v, int n) override {
        timed([&] { check(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, comm_), "MPI_Allreduce"); });
    }

    void broadcast(T* p, std::size_t n) override {
        for (std::size_t at = 0; at < n; at += kMaxCount) {
            const int count = int(std::min<std::size_t>(kMaxCount, n - at));
            check(MPI_Bcast(p + at, count, mpi_type<T>(), 0, comm_), "MPI_Bcast");
        }
    }

    /// Seconds inside MPI calls of the gradient reduction and sums (and, of them, waiting in
    /// average()): a step's communication cost that the backward pass did not hide.
    double comm_seconds() const { return comm_seconds_; }
    double wait_seconds() const { return wait_seconds_; }
    void reset_timers() { comm_seconds_ = wait_seconds_ = 0; }
    /// Buckets started before average(), while the backward pass ran (over all steps).
    std::size_t early_buckets() const { return early_buckets_; }

private:
    static constexpr std::size_t kMaxCount = std::size_t(1) << 30;  // MPI counts are int

    /// Bucket k spans [bucket_begin(k), bucket_begin(k - 1)), counted from the buffer's end.
    std::size_t bucket_begin(std::size_t k) const { return n_ > (k + 1) * bucket_ ? n_ - (k + 1) * bucket_ : 0; }

    void start(std::size_t k) {
        const std::size_t b = bucket_begin(k), e = k == 0 ? n_ : bucket_begin(k - 1);
        requests_.emplace_back();
        timed([&] {
            check(
                MPI_Iallreduce(MPI_IN_PLACE, grads_ + b, int(e - b), mpi_type<T>(), MPI_SUM, comm_, &requests_.back()),
                "MPI_Iallreduce");
        });
    }

    void progress() {
        if (requests_.empty()) return;
        int all = 0;
        timed([&] {
            check(MPI_Testall(int(requests_.size()), requests_.data(), &all, MPI_STATUSES_IGNORE), "MPI_Testall");
        });
    }

    template <class F>
    void timed(F&& f) {
        const auto t0 = std::chrono::steady_clock::now();
        f();
        comm_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }

    MPI_Comm comm_;
    std::size_t bucket_;
    int rank_ = 0, ranks_ = 1;
    T* grads_ = nullptr;
    std::size_t n_ = 0, frontier_ = 0, buckets_ = 0, next_bucket_ = 0, early_buckets_ = 0;
    std::vector<std::pair<std::size_t, std::size_t>> done_;
    std::vector<MPI_Request> requests_;
    double comm_seconds_ = 0, wait_seconds_ = 0;
};

}  // namespace diffuse::dist

#endif
