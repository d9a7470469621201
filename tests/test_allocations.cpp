// No heap allocation in a training step or a sampling call after the first, at the Default preset
// (the shipped model's architecture; batch 4 to stay fast), with 1 and 2 OpenMP threads.
//
// Why "after the first": workspaces are allocated on a phase's first step and on the first
// generate() with a workspace (by design), GEMM's per-thread packing buffers grow on first use, and
// OpenMP creates its thread team on the first parallel region after the thread count changes.
//
// Counting: allocation_counter.hpp replaces every operator new and the C allocators (malloc, calloc,
// realloc, aligned_alloc, posix_memalign, ...) and counts calls inside a window, on every thread.
// Each case also checks that the window does see an allocation, so a broken hook cannot pass.
//
// Matrix products. Eigen's expression GEMM mallocs its packing buffers for large products
// (gemm_blocking_space through Eigen's aligned_malloc); core/gemm.hpp calls Eigen's kernel with
// per-thread buffers kept between calls instead, so it must not allocate either. To say which
// allocations are Eigen's when a check fails, this file builds Eigen with EIGEN_RUNTIME_NO_MALLOC
// and its own eigen_assert: an Eigen heap allocation made while Eigen's "malloc allowed" flag is
// off is counted in `eigen` instead of aborting (any other failed Eigen assertion still aborts).
//
// Sampling: the whole generate() call (text encoding of prompt and negative prompt, every sampler
// step, decoding) is checked, not only the steps.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

// Before anything includes Eigen: an Eigen allocation while malloc is "forbidden" lands here.
namespace alloc_counter {
inline std::atomic<long> eigen_count{0};
[[noreturn]] inline void eigen_assert_abort(const char* what, const char* file, int line) {
    std::fprintf(stderr, "%s:%d: Eigen assertion failed: %s\n", file, line, what);
    std::abort();
}
inline void eigen_assert_failed(const char* what, const char* file, int line) {
    if (std::strstr(what, "heap allocation is forbidden")) eigen_count.fetch_add(1, std::memory_order_relaxed);
    else eigen_assert_abort(what, file, line);
}
}  // namespace alloc_counter
#define EIGEN_RUNTIME_NO_MALLOC
#define eigen_assert(x) ((x) ? void(0) : ::alloc_counter::eigen_assert_failed(#x, __FILE__, __LINE__))

#include <doctest/doctest.h>

#include <omp.h>

#include <algorithm>
#include <array>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "diffuse/io/idx.hpp"
#include "diffuse/models/latent_diffusion.hpp"
#include "diffuse/train/latent_diffusion_trainer.hpp"

#include "allocation_counter.hpp"

using namespace diffuse;

namespace {

constexpr int kBatch = 4;
using Model = LatentDiffusion<float, presets::Default>;
using Trainer = LatentDiffusionTrainer<float, presets::Default, kBatch>;

struct Counts {
    long total = 0;  // every heap allocation in the window
    long eigen = 0;  // of which Eigen's (matrix products)
};

/// What f allocates, on any thread.
template <class F>
Counts count(F&& f) {
    Counts c;
    alloc_counter::eigen_count.store(0);
    Eigen::internal::set_is_malloc_allowed(false);
    c.total = alloc_counter::count_allocations(f);
    Eigen::internal::set_is_malloc_allowed(true);
    c.eigen = alloc_counter::eigen_count.load();
    return c;
}

void check_no_allocations(const Counts& c, const std::string& what) {
    INFO(what << ": " << c.total << " allocations, " << c.eigen << " of them Eigen's");
    CHECK(c.total == 0);
}

/// The window sees an allocation: a new through a pointer the optimizer cannot see through.
[[gnu::noinline]] void allocate_once() {
    int* volatile p = new int(7);
    delete p;
}
void check_counter_works() {
    CHECK(count(allocate_once).total == 1);
    CHECK(count([] {
              std::vector<float> v(100);
              asm volatile("" : : "r"(v.data()) : "memory");
          }).total >= 1);
}

const io::FashionMnist& test_images() {
    static const io::FashionMnist all = io::load_fashion_mnist(io::Split::test, DIFFUSE_FASHION_MNIST_DIR);
    return all;
}

LatentDiffusionTrainOptions options() {
    LatentDiffusionTrainOptions o;
    o.seed = 3;
    o.scale_batches = 2;
    o.min_snr_gamma = 5;  // the weighted path too
    return o;
}

}  // namespace

TEST_CASE("allocations: the hook counts every way onto the heap, once each") {
    check_counter_works();
    const auto once = [](auto make, auto release) {
        return count([&] {
                   void* p = make();
                   asm volatile("" : : "r"(p) : "memory");  // keep the pair from being optimized away
                   release(p);
               })
            .total;
    };
    const auto c_free = [](void* p) { std::free(p); };
    CHECK(once([] { return std::malloc(64); }, c_free) == 1);
    CHECK(once([] { return std::calloc(8, 8); }, c_free) == 1);
    CHECK(once([] { return std::realloc(nullptr, 64); }, c_free) == 1);
    CHECK(once([] { return std::aligned_alloc(64, 128); }, c_free) == 1);
    CHECK(once(
              [] {
                  void* p = nullptr;
                  return posix_memalign(&p, 64, 128) == 0 ? p : nullptr;
              },
              c_free) == 1);
    CHECK(once([] { return ::operator new(64); }, [](void* p) { ::operator delete(p); }) == 1);
    CHECK(once([] { return ::operator new[](64); }, [](void* p) { ::operator delete[](p); }) == 1);
    CHECK(once([] { return ::operator new(64, std::nothrow); }, [](void* p) { ::operator delete(p, std::nothrow); }) ==
          1);
    CHECK(once([] { return ::operator new[](64, std::nothrow); },
               [](void* p) { ::operator delete[](p, std::nothrow); }) == 1);
    constexpr auto a = std::align_val_t(128);
    CHECK(once([] { return ::operator new(64, a); }, [](void* p) { ::operator delete(p, a); }) == 1);
    CHECK(once([] { return ::operator new[](64, a); }, [](void* p) { ::operator delete[](p, a); }) == 1);
    CHECK(once([] { return ::operator new(64, a, std::nothrow); },
               [](void* p) { ::operator delete(p, a, std::nothrow); }) == 1);
    CHECK(once([] { return ::operator new[](64, a, std::nothrow); },
               [](void* p) { ::operator delete[](p, a, std::nothrow); }) == 1);
    CHECK(count([] {
              std::string s(100, 'x');
              asm volatile("" : : "r"(s.data()) : "memory");
          }).total == 1);
    CHECK(count([] {}).total == 0);
    // An Eigen heap allocation is counted, and told apart as Eigen's.
    const Counts e = count([] {
        Eigen::MatrixXf m(64, 64);
        asm volatile("" : : "r"(m.data()) : "memory");
    });
    CHECK(e.total == 1);
    CHECK(e.eigen == 1);
}

TEST_CASE("allocations: batches write captions in place, into strings reserved for the longest caption") {
    std::size_t longest = 0;
    for (int label = 0; label < 10; ++label)
        for (const std::string& c : data::all_captions(label)) longest = std::max(longest, c.size());
    CHECK(data::kMaxCaptionLength == longest);

    // 12 images in batches of 4, a third of the captions dropped: epochs end, strings empty and refill.
    data::CaptionedBatches<float, kBatch> batches(io::first_images(test_images(), 12), 5, {0.3});
    auto images = make<Tensor<float, kBatch, data::kPaddedSize, data::kPaddedSize, 1>>();
    std::array<std::string, kBatch> captions;
    batches.next(images->view(), captions);
    check_no_allocations(count([&] {
                             for (int i = 0; i < 12; ++i) batches.next(images->view(), captions);
                         }),
                         "12 CaptionedBatches::next()");
    check_counter_works();
}

TEST_CASE("allocations: LatentDiffusionTrainer<Default, 4> steps after the first allocate nothing") {
    for (int threads : {1, 2}) {
        CAPTURE(threads);
        omp_set_num_threads(threads);
        auto model = std::make_unique<Model>(1);
        // 12 images: an epoch is 3 batches, so the steps below cross epoch boundaries (reshuffles).
        Trainer trainer(*model, io::first_images(test_images(), 12), options());

        trainer.vae_step();
        check_no_allocations(count([&] {
                                 for (int i = 0; i < 3; ++i) trainer.vae_step();
                             }),
                             "3 vae_step()");

        trainer.measure_latent_scale();
        trainer.diffusion_step();
        check_no_allocations(count([&] {
                                 for (int i = 0; i < 3; ++i) trainer.diffusion_step();
                             }),
                             "3 diffusion_step()");
        check_counter_works();
    }
}

TEST_CASE("allocations: LatentDiffusion<Default>::generate with a reused workspace allocates nothing") {
    for (int threads : {1, 2}) {
        CAPTURE(threads);
        omp_set_num_threads(threads);
        auto model = std::make_unique<Model>(2);
        Ema().update(model->ema, model->diffusion_store);  // sample through the EMA swap too
        auto ws = make<Model::SampleWorkspace<kBatch>>();
        auto images = make<Tensor<float, kBatch, Model::image_size, Model::image_size, Model::image_channels>>();
        const std::array<std::string, kBatch> prompts = {"a photo of an ankle boot",
                                                         "a black and white photo of a dress",
                                                         "a low resolution photo of a pair of sneakers", "a bag"};
        const std::string negative = "a grayscale image of a pair of trousers";  // longer than any small-string buffer

        Model::SampleOptions o;
        o.sampler.steps = 3;
        o.sampler.guidance = 3;
        o.sampler.method = diffusion::Method::ddim;
        model->generate(prompts, negative, o, images->view(), *ws);  // the first call: excluded
        check_no_allocations(count([&] { model->generate(prompts, negative, o, images->view(), *ws); }),
                             "generate() DDIM 3 steps, guidance 3");

        for (auto m : {diffusion::Method::euler_ancestral, diffusion::Method::ddpm, diffusion::Method::euler}) {
            o.sampler.method = m;
            o.sampler.steps = 4;  // another step count than the first call's
            CAPTURE(int(m));
            check_no_allocations(count([&] { model->generate(prompts, negative, o, images->view(), *ws); }),
                                 "generate() another sampler, 4 steps, guidance 3");
        }
        o.sampler.guidance = 1;  // the conditional branch alone: a UNet call of N, its workspace made once
        model->generate(prompts, "", o, images->view(), *ws);
        check_no_allocations(count([&] { model->generate(prompts, "", o, images->view(), *ws); }),
                             "generate() unguided");
        int calls = 0, last = 0;  // a progress callback (two references: stored inline) adds nothing
        o.sampler.on_step = [&calls, &last](int done, int) { ++calls, last = done; };
        model->generate(prompts, "", o, images->view(), *ws);
        check_no_allocations(count([&] { model->generate(prompts, "", o, images->view(), *ws); }),
                             "generate() with a progress callback");
        CHECK(calls == 2 * o.sampler.steps);
        CHECK(last == o.sampler.steps);
        check_counter_works();
    }
}
