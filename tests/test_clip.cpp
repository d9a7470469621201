// clip::TextEncoder: gradient checks of every parameter in double, the tokenizer end to end, padding
// invariance, a tiny training run, and parity with PyTorch. clip::Layer alone: test_clip_layer.cpp.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "diffuse/diffuse.hpp"
#include "diffuse/models/clip.hpp"
#include "diffuse/testing/gradient_check.hpp"

using namespace diffuse;
using diffuse::testing::check_gradients;

namespace {

using TinyNoHead = clip::WithSeedHead<clip::TinyConfig, false>;
using TinyHead = clip::WithSeedHead<clip::TinyConfig, true>;

constexpr int kCtx = clip::TinyConfig::context_length;
// "bag": 3 tokens + 3 pads; "a dark coat": 5 + 1 pad; the third is cut to fit.
const std::vector<std::string> kPrompts = {"bag", "a dark coat", "a photo of a pair of sandals"};

/// A vocabulary holding every word the prompts below use.
const text::Tokenizer& tokenizer() {
    static const text::Tokenizer t =
        text::Tokenizer::learn(std::vector<std::string>{"a photo of a pair of sandals", "a dark coat",
                                                        "an ankle boots on a white background", "a bag", "a shoe"},
                               100);
    return t;
}

template <class Cfg>
void check_encoder() {
    constexpr int N = 3;
    clip::TextEncoder<double, Cfg> enc;
    ParamStore<double> store(enc, 21);
    REQUIRE(store.count() == enc.parameter_count);
    Rng rng(6);
    for (std::size_t i = 0; i < store.size(); ++i) store.values()[i] += 0.1 * rng.normal();
    Tensor<std::int32_t, N, kCtx> ids;
    Tensor<bool, N, kCtx> mask;
    CHECK(tokenizer().encode_batch<N, kCtx>(kPrompts, ids.view(), mask.view()) == 1);
    CHECK(mask(0, 3));
    CHECK_FALSE(mask(2, 5));
    auto ws = make<typename decltype(enc)::template Workspace<N>>();
    Tensor<double, N, kCtx, clip::TinyConfig::width> y;
    testing::GradCheckOptions opt;
    opt.max_elements_per_probe = 12;
    auto rep = check_gradients(
        testing::probes(store), y, [&] { enc.forward(ids, mask, y, *ws); },
        [&](auto dy) { enc.backward(ids, mask, y, *ws, dy); }, opt);
    MESSAGE(std::string(Cfg::seed_head ? "TextEncoder (seed head): " : "TextEncoder: ") << rep.summary());
    CHECK(rep.clean());
    CHECK(rep.max_rel_error < 1e-6);
    CHECK(rep.checked >= store.infos().size() * 8);
}

}  // namespace

TEST_CASE("clip::TextEncoder: gradients of every parameter at Tiny, padded prompts, seed head off and on") {
    check_encoder<TinyNoHead>();
    check_encoder<TinyHead>();
}

TEST_CASE("clip::TextEncoder: parameter names, counts and workspace sizes") {
    using Enc = clip::TextEncoder<float, clip::TinyConfig>;
    using EncHead = clip::TextEncoder<float, TinyHead>;
    constexpr int D = 8, Ctx = kCtx, V = clip::fashion_vocab;
    constexpr std::size_t layer = 2 * 2 * D + 4 * (D * D + D) + (D * 16 + 16) + (16 * D + D);
    static_assert(Enc::parameter_count == V * D + Ctx * D + 2 * layer + 2 * D);
    static_assert(EncHead::parameter_count == Enc::parameter_count + (Ctx * D * D + D) + (D * Ctx * D + Ctx * D));
    static_assert(Enc::workspace_bytes<4> < EncHead::workspace_bytes<4>);
    Enc enc;
    ParamStore<float> store(enc);
    CHECK(store.count() == Enc::parameter_count);
    CHECK(store.infos().front().name == "embed.token.weight");
    CHECK(store.info("layers.1.attn.out_proj.weight").dims == std::vector<int>{D, D});
    CHECK(store.info("layers.0.mlp.fc1.weight").dims == std::vector<int>{16, D});
    CHECK(store.infos().back().name == "ln_final.bias");
    EncHead eh;
    ParamStore<float> sh(eh);
    CHECK(sh.infos().back().name == "head.fc2.bias");

    using Def = clip::TextEncoder<float, clip::DefaultConfig>;
    using Seed = clip::TextEncoder<float, clip::SeedConfig>;
    MESSAGE("clip Tiny: " << Enc::parameter_count << " parameters (" << EncHead::parameter_count
                          << " with the seed head), workspace " << Enc::workspace_bytes<4> << " bytes at N=4");
    MESSAGE("clip Default: " << Def::parameter_count << " parameters, workspace "
                             << Def::workspace_bytes<64> << " bytes at N=64 (float)");
    MESSAGE("clip Seed: " << Seed::parameter_count << " parameters, workspace "
                          << Seed::workspace_bytes<1> << " bytes at N=1, "
                          << Seed::workspace_bytes<64> << " at N=64 (float)");
    CHECK(Def::parameter_count > 500'000);
    CHECK(Seed::parameter_count > 5 * Def::parameter_count);
}

TEST_CASE("clip::TextEncoder: prompts through the tokenizer, empty and over-long included") {
    using Enc = clip::TextEncoder<float, clip::TinyConfig>;
    Enc enc;
    ParamStore<float> store(enc, 1);
    auto ws = make<Enc::Workspace<3>>();
    const std::array<const char*, 3> prompts = {"", "a photo of a pair of ankle boots on a white background", "Coat"};
    CHECK(enc.encode(tokenizer(), prompts, *ws) == 1);
    // The empty prompt is start, end, then padding; "Coat" is lower-cased to a vocabulary word.
    CHECK(ws->ids(0, 0) == text::Tokenizer::start_id);
    CHECK(ws->ids(0, 1) == text::Tokenizer::end_id);
    for (int t = 0; t < kCtx; ++t) CHECK(ws->pad_mask(0, t) == (t >= 2));
    for (int t = 0; t < kCtx; ++t) CHECK_FALSE(ws->pad_mask(1, t));
    CHECK(ws->ids(1, kCtx - 1) == text::Tokenizer::end_id);
    CHECK(ws->ids(2, 1) == tokenizer().word_id("coat"));
    for (float v : ws->context) REQUIRE(std::isfinite(v));

    // encode() is forward() on the tokenizer's output; a vector of strings works the same.
    Tensor<float, 3, kCtx, 8> y;
    enc.forward(ws->ids, ws->pad_mask, y, *ws);
    for (std::size_t i = 0; i < y.size; ++i) CHECK(y[i] == ws->context[i]);
    const std::vector<std::string> again(prompts.begin(), prompts.end());
    CHECK(enc.encode(tokenizer(), again, *ws) == 1);
    for (std::size_t i = 0; i < y.size; ++i) CHECK(y[i] == ws->context[i]);
    const std::vector<std::string> two = {"a", "b"};
    CHECK_THROWS_AS(enc.encode(tokenizer(), two, *ws), std::invalid_argument);
    std::vector<std::string> many;  // more ids than the token table has rows
    for (int i = 0; i < clip::fashion_vocab; ++i) many.push_back(std::to_string(i) + "w");
    CHECK_THROWS_WITH_AS(enc.encode(text::Tokenizer(many, text::Tokenizer::Unknown::token), prompts, *ws),
                         doctest::Contains("token table"), std::invalid_argument);

    // Different prompts give different contexts (at the start token too, which attends to them).
    const std::array<std::string, 3> other = {"bag", "a photo of a pair of ankle boots on a white background", "coat"};
    enc.encode(tokenizer(), other, *ws);
    double diff0 = 0;
    for (int c = 0; c < 8; ++c) diff0 += std::abs(ws->context(0, 0, c) - y(0, 0, c));
    CHECK(diff0 > 1e-3);
    for (int t = 0; t < kCtx; ++t)
        for (int c = 0; c < 8; ++c) CHECK(ws->context(2, t, c) == y(2, t, c));  // "Coat" == "coat"
}

namespace {

template <class Cfg>
void check_padding_invariance() {
    constexpr int N = 3, D = Cfg::width;
    clip::TextEncoder<double, Cfg> enc;
    ParamStore<double> store(enc, 8);
    auto ws = make<typename decltype(enc)::template Workspace<N>>();
    Tensor<std::int32_t, N, kCtx> ids;
    Tensor<bool, N, kCtx> mask;
    tokenizer().encode_batch<N, kCtx>(kPrompts, ids.view(), mask.view());
    Tensor<double, N, kCtx, D> y0, y1;
    enc.forward(ids, mask, y0, *ws);
    Rng rng(3);
    int changed = 0;
    for (std::size_t i = 0; i < ids.size; ++i)
        if (mask[i]) {
            ids[i] = std::int32_t(rng.below(Cfg::vocab_size));
            ++changed;
        }
    REQUIRE(changed == 4);
    enc.forward(ids, mask, y1, *ws);
    for (int n = 0; n < N; ++n)
        for (int t = 0; t < kCtx; ++t)
            if (!mask(n, t))
                for (int c = 0; c < D; ++c) CHECK(y1(n, t, c) == y0(n, t, c));
    // Without the mask the padded ids do leak in: the test can fail.
    enc.forward(ids, no_mask, y1, *ws);
    double diff = 0;
    for (int t = 0; t < 3; ++t)
        for (int c = 0; c < D; ++c) diff += std::abs(y1(0, t, c) - y0(0, t, c));
    CHECK(diff > 1e-6);
}

}  // namespace

TEST_CASE("clip::TextEncoder: padded positions do not change non-padded outputs") {
    check_padding_invariance<TinyNoHead>();
    check_padding_invariance<TinyHead>();
}

TEST_CASE("clip::TextEncoder: with a linear probe on the start token, learns to tell two prompts apart") {
    using Enc = clip::TextEncoder<float, clip::TinyConfig>;
    constexpr int N = 4, D = 8;
    Enc enc;
    ParamStore<float> store(enc, 2);
    Linear<float, D, 2> probe;
    ParamStore<float> probe_store(probe, 3);
    Adam<float> opt(store, {.lr = 1e-2}), probe_opt(probe_store, {.lr = 1e-2});
    auto ws = make<Enc::Workspace<N>>();
    const std::array<const char*, N> prompts = {"a bag", "a shoe", "a shoe", "a bag"};
    Tensor<int, N> labels;
    labels[0] = 0;
    labels[1] = 1;
    labels[2] = 1;
    labels[3] = 0;
    Tensor<float, N, D> start, dstart;
    Tensor<float, N, 2> logits, dlogits;
    Tensor<float, N, kCtx, D> dcontext;
    float first = 0, last = 0;
    for (int step = 0; step < 60; ++step) {
        enc.encode(tokenizer(), prompts, *ws);
        for (int n = 0; n < N; ++n)
            for (int c = 0; c < D; ++c) start(n, c) = ws->context(n, 0, c);
        probe.forward(start, logits);
        store.zero_grad();
        probe_store.zero_grad();
        dlogits.fill(0);
        const float loss = cross_entropy(logits, labels, dlogits);
        if (step == 0) first = loss;
        last = loss;
        dstart.fill(0);
        probe.backward(start, logits, dlogits, dstart);
        dcontext.fill(0);
        for (int n = 0; n < N; ++n)
            for (int c = 0; c < D; ++c) dcontext(n, 0, c) = dstart(n, c);
        enc.encode_backward(*ws, dcontext);
        if (step == 0) {
            double g = 0;
            for (std::size_t i = 0; i < store.size(); ++i) g += std::abs(store.grads()[i]);
            CHECK(g > 0);  // the encoder learns too, not just the probe
        }
        opt.step();
        probe_opt.step();
    }
    MESSAGE("probe loss " << first << " -> " << last);
    CHECK(first > 0.3f);
    CHECK(last < 0.05f);
}

// ---- PyTorch parity -----------------------------------------------------------------------------

namespace {

template <class Cfg>
void check_parity(const std::string& file) {
    constexpr int N = 3, D = Cfg::width;
    clip::TextEncoder<double, Cfg> enc;
    ParamStore<double> store(enc);
    const io::SafetensorsFile f(std::string(DIFFUSE_TEST_DATA_DIR) + "/" + file);
    io::LoadOptions lo;
    lo.allow_extra = true;
    io::load_params(store, f, lo);
    Tensor<std::int32_t, N, kCtx> ids;
    Tensor<bool, N, kCtx> mask;
    Tensor<double, N, kCtx, D> y, dy, want;
    f.read("input.ids", ids.data(), ids.size);
    f.read("input.mask", mask.data(), mask.size);
    f.read("input.dy", dy.data(), dy.size);
    f.read("output.y", want.data(), want.size);
    auto ws = make<typename decltype(enc)::template Workspace<N>>();
    enc.forward(ids, mask, y, *ws);
    double worst = 0;
    for (std::size_t i = 0; i < y.size; ++i) worst = std::max(worst, std::abs(y[i] - want[i]));
    CHECK(worst < 1e-10);
    store.zero_grad();
    enc.backward(ids, mask, y, *ws, dy);
    double gworst = 0;
    std::string where;
    for (const auto& info : store.infos()) {
        const auto g = f.read<double>("grad." + info.name);
        REQUIRE(g.size() == info.size);
        for (std::size_t i = 0; i < info.size; ++i) {
            const double e = std::abs(store.grads()[info.offset + i] - g[i]) / std::max(1.0, std::abs(g[i]));
            if (e > gworst) {
                gworst = e;
                where = info.name;
            }
        }
    }
    MESSAGE(file << ": output max abs error " << worst << ", gradient max error " << gworst << " at " << where);
    CHECK(gworst < 1e-10);
}

}  // namespace

TEST_CASE("clip::TextEncoder: matches PyTorch (forward and every parameter gradient, float64, 1e-10)") {
    check_parity<TinyNoHead>("clip_reference.safetensors");
    check_parity<TinyHead>("clip_reference_seed_head.safetensors");
}
