// Same seed → bitwise the same parameters after training steps, run twice or on another thread
// count (the pitfall of llama.cpp #95 / diffusers #4055 in DESIGN.md §10).
#include <doctest/doctest.h>

#include <omp.h>

#include <cstring>
#include <vector>

#include "diffuse/diffuse.hpp"
#include "diffuse/nn/activation.hpp"
#include "diffuse/train/adam.hpp"
#include "diffuse/train/grad_clip.hpp"

using namespace diffuse;

namespace {

constexpr int Out = 5;

template <int In, int Hidden>
struct Mlp {
    Linear<float, In, Hidden> fc1;
    ReLU<float> act;
    Linear<float, Hidden, Out> fc2;
    template <class V>
    constexpr void visit(V& v) {
        v("fc1", fc1);
        v("fc2", fc2);
    }
};

struct Run {
    std::vector<float> params;  // the whole flat buffer after training
    std::vector<float> losses;
};

/// A few Adam steps of an MLP on a fixed random regression problem; everything from `seed`.
template <int B = 32, int In = 12, int Hidden = 24>
Run train(std::uint64_t seed, int steps) {
    Mlp<In, Hidden> model;
    ParamStore<float> store(model, seed);
    Adam<float> opt(store, {1e-2, 0.9, 0.999, 1e-8, 1e-4, false});
    Rng rng(seed + 1);
    auto x = make<Tensor<float, B, In>>();
    auto target = make<Tensor<float, B, Out>>();
    fill_normal(*x, rng);
    fill_normal(*target, rng);

    auto z = make<Tensor<float, B, Hidden>>(), h = make<Tensor<float, B, Hidden>>();
    auto dz = make<Tensor<float, B, Hidden>>(), dh = make<Tensor<float, B, Hidden>>();
    auto y = make<Tensor<float, B, Out>>(), dy = make<Tensor<float, B, Out>>();
    Run run;
    for (int s = 0; s < steps; ++s) {
        store.zero_grad();
        model.fc1.forward(*x, *z);
        model.act.forward(*z, *h);
        model.fc2.forward(*h, *y);
        // MSE, mean over all elements; its gradient 2(y - t)/count
        double loss = 0;
        for (std::size_t i = 0; i < y->size; ++i) {
            const float d = (*y)[i] - (*target)[i];
            loss += double(d) * d;
            (*dy)[i] = 2 * d / float(y->size);
        }
        run.losses.push_back(float(loss / double(y->size)));
        dh->fill(0);
        dz->fill(0);
        model.fc2.backward(*h, *y, *dy, *dh);
        model.act.backward(*z, *h, *dh, *dz);
        model.fc1.backward(*x, *z, *dz, View<float, B, In>());  // no input gradient
        clip_grad_norm(store, 5.0f);
        opt.step();
    }
    run.params.assign(store.values(), store.values() + store.size());
    return run;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("A training step run twice from the same seed gives bitwise identical parameters") {
    const Run a = train(42, 8), b = train(42, 8);
    CHECK(same_bits(a.params, b.params));
    CHECK(same_bits(a.losses, b.losses));
    // Training does something: the loss falls.
    CHECK(a.losses.back() < a.losses.front());
}

TEST_CASE("A different seed gives different parameters (the comparison can fail)") {
    const Run a = train(42, 2), b = train(43, 2);
    CHECK_FALSE(same_bits(a.params, b.params));
}

TEST_CASE("1, 2 and 3 threads give bitwise identical parameters (products cut the same way for any count)") {
    // 512 rows × 256 × 192: large enough for gemm to cut the products into blocks across threads
    std::vector<Run> runs;
    for (int threads : {1, 2, 3}) {
        omp_set_num_threads(threads);
        runs.push_back(train<512, 192, 256>(7, 3));
    }
    omp_set_num_threads(1);
    CHECK(same_bits(runs[1].params, runs[0].params));
    CHECK(same_bits(runs[2].params, runs[0].params));
    CHECK(same_bits(runs[1].losses, runs[0].losses));
}
