// Nearest-neighbour ranking (app/nearest.hpp) against hand computations — ties by index, top-k,
// the rank of one target and the best rank of several, bad input — and the prompt-following
// measurement (app/prompt_following.hpp): its picks, pixel features, and a run end to end on a Tiny
// model trained for a few steps on a folder the test writes.
#include <doctest/doctest.h>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "diffuse/app/nearest.hpp"
#include "diffuse/app/prompt_following.hpp"
#include "diffuse/data/image_folder.hpp"
#include "diffuse/io/png.hpp"
#include "diffuse/train/latent_diffusion_trainer.hpp"

#include "file_test_util.hpp"
#include "one_thread.hpp"
#include "tiny_folder_util.hpp"

using namespace diffuse;

TEST_CASE("squared distances, summed in double") {
    const float q[2] = {1, 2}, a[2] = {4, 6};
    CHECK(app::squared_distance(q, a, 2) == 25.0);
    const double items[4] = {1, 2, 4, 6};
    CHECK(app::distances(q, items, 2, 2) == std::vector<double>{0.0, 25.0});
}

TEST_CASE("ranking: the nearest first, ties broken by index") {
    // One-dimensional items 0, 3, 1, 1, 5 around the query 1: distances 1, 4, 0, 0, 16.
    const float items[5] = {0, 3, 1, 1, 5}, q[1] = {1};
    CHECK(app::nearest(q, items, 5, 1, 1) == std::vector<int>{2});
    CHECK(app::nearest(q, items, 5, 1, 3) == std::vector<int>{2, 3, 0});
    CHECK(app::nearest(q, items, 5, 1, 5) == std::vector<int>{2, 3, 0, 1, 4});
    CHECK(app::rank_of(q, items, 5, 1, 2) == 0);
    CHECK(app::rank_of(q, items, 5, 1, 3) == 1);  // as near as item 2, which has the lower index
    CHECK(app::rank_of(q, items, 5, 1, 0) == 2);
    CHECK(app::rank_of(q, items, 5, 1, 1) == 3);
    CHECK(app::rank_of(q, items, 5, 1, 4) == 4);

    const std::vector<double> d = app::distances(q, items, 5, 1);
    CHECK(app::best_rank(d, {4, 0}) == 2);  // item 0 is the better of the two
    CHECK(app::best_rank(d, {3, 3}) == 1);  // repeats are harmless
    CHECK(app::best_rank(d, {1, 3, 2}) == 0);
    CHECK(app::top_k(d, 2) == std::vector<int>{2, 3});

    // All equal: index order.
    const float flat[8] = {7, 7, 7, 7, 7, 7, 7, 7}, q2[2] = {0, 0};
    CHECK(app::nearest(q2, flat, 4, 2, 4) == std::vector<int>{0, 1, 2, 3});
    CHECK(app::rank_of(q2, flat, 4, 2, 3) == 3);
}

TEST_CASE("ranking: two dimensions, a target's rank agrees with its place in the full order") {
    // Points around the query (0, 0): (3, 4) → 25, (1, 1) → 2, (-1, 1) → 2, (0, 2) → 4, (5, 0) → 25.
    const double items[10] = {3, 4, 1, 1, -1, 1, 0, 2, 5, 0}, q[2] = {0, 0};
    const std::vector<int> order = app::nearest(q, items, 5, 2, 5);
    CHECK(order == std::vector<int>{1, 2, 3, 0, 4});
    for (int place = 0; place < 5; ++place) CHECK(app::rank_of(q, items, 5, 2, order[std::size_t(place)]) == place);
}

TEST_CASE("ranking: bad input throws") {
    const float items[3] = {0, 1, 2}, q[1] = {0};
    CHECK_THROWS_AS(app::nearest(q, items, 3, 1, 0), std::invalid_argument);
    CHECK_THROWS_AS(app::nearest(q, items, 3, 1, 4), std::invalid_argument);
    CHECK_THROWS_AS(app::nearest(q, items, 0, 1, 1), std::invalid_argument);
    CHECK_THROWS_AS(app::nearest(q, items, 3, 0, 1), std::invalid_argument);
    CHECK_THROWS_AS(app::nearest(static_cast<const float*>(nullptr), items, 3, 1, 1), std::invalid_argument);
    CHECK_THROWS_AS(app::rank_of(q, items, 3, 1, 3), std::out_of_range);
    CHECK_THROWS_AS(app::rank_of(q, items, 3, 1, -1), std::out_of_range);
    const std::vector<double> d = app::distances(q, items, 3, 1);
    CHECK_THROWS_AS(app::best_rank(d, {}), std::invalid_argument);
    CHECK_THROWS_AS(app::best_rank(d, {0, 7}), std::out_of_range);
    const float bad[3] = {0, std::numeric_limits<float>::quiet_NaN(), 2};
    CHECK_THROWS_AS(app::distances(q, bad, 3, 1), std::invalid_argument);
}

TEST_CASE("prompt following: picks spread evenly, pixel features box-averaged") {
    CHECK(app::spread_indices(10, 3) == std::vector<int>{1, 5, 8});
    CHECK(app::spread_indices(5, 5) == std::vector<int>{0, 1, 2, 3, 4});
    CHECK(app::spread_indices(7, 1) == std::vector<int>{3});
    const std::vector<int> many = app::spread_indices(1906, 200);
    CHECK(many.size() == 200);
    CHECK(std::adjacent_find(many.begin(), many.end(), [](int a, int b) { return b <= a; }) == many.end());
    CHECK(many.front() >= 0);
    CHECK(many.back() < 1906);
    CHECK_THROWS_AS(app::spread_indices(3, 4), std::invalid_argument);
    CHECK_THROWS_AS(app::spread_indices(3, 0), std::invalid_argument);

    CHECK(app::pixel_feature_side(32) == 16);
    CHECK(app::pixel_feature_side(64) == 16);
    CHECK(app::pixel_feature_side(16) == 16);
    CHECK(app::pixel_feature_side(8) == 8);
    CHECK(app::pixel_feature_side(24) == 24);
    // 4x4, 2 channels → 2x2: each output the mean of a 2x2 block, per channel.
    std::vector<float> src(32), dst(8);
    for (int y = 0; y < 4; ++y)
        for (int x = 0; x < 4; ++x) {
            src[std::size_t((y * 4 + x) * 2)] = float(y * 4 + x);
            src[std::size_t((y * 4 + x) * 2 + 1)] = 1;
        }
    app::box_downsample(src.data(), 4, 2, 2, dst.data());
    CHECK(dst == std::vector<float>{2.5f, 1, 4.5f, 1, 10.5f, 1, 12.5f, 1});  // (0+1+4+5)/4, (2+3+6+7)/4, ...
    CHECK_THROWS_AS(app::box_downsample(src.data(), 4, 2, 3, dst.data()), std::invalid_argument);
}

namespace {

constexpr int kBatch = 8, kSide = 8, kEntries = 12;
using Model = LatentDiffusion<float, presets::Tiny>;
using Trainer = LatentDiffusionTrainer<float, presets::Tiny, kBatch, data::ImageFolder>;

/// 12 entries of 8x8 gray: a bright square on black ("square"), a dark frame on white ("frame"), a
/// plain mid-gray ("gray") or dark ("dark") image, each of its own brightness and named with its
/// index ("frame 5"), except that entry 9 shares entry 0's caption ("square 0").
void write_folder(const std::string& dir) {
    std::string meta;
    for (int i = 0; i < kEntries; ++i) {
        std::vector<std::uint8_t> px(kSide * kSide);
        for (int y = 0; y < kSide; ++y)
            for (int x = 0; x < kSide; ++x) {
                const bool inner = y >= 2 && y < 6 && x >= 2 && x < 6;
                const int kind = i % 4;
                px[std::size_t(y * kSide + x)] = std::uint8_t(kind == 0   ? (inner ? 240 - i : 10 + i)
                                                              : kind == 1 ? (inner ? 20 + i : 235 - i)
                                                              : kind == 2 ? 120 + 3 * i
                                                                          : 30 + 2 * i);
            }
        const std::string name = "img" + std::to_string(i) + ".png";
        io::write_png(dir + "/" + name, kSide, kSide, 1, px.data());
        const char* kinds[4] = {"square", "frame", "gray", "dark"};
        const std::string caption = i == 9 ? "square 0" : std::string(kinds[i % 4]) + " " + std::to_string(i);
        meta += "{\"file_name\": \"" + name + "\", \"text\": [\"" + caption + "\", \"picture\"]}\n";
    }
    test_files::write_file(dir + "/metadata.jsonl", meta);
}

data::ImageFolder load(const std::string& dir) { return test_files::load_gray_folder(dir, kSide); }

/// A Tiny model trained for a few VAE and diffusion steps on the folder.
std::unique_ptr<Model> trained(const std::string& dir) {
    auto model = std::make_unique<Model>(3);
    data::ImageFolder folder = load(dir);
    std::vector<std::string> captions;
    for (int i = 0; i < folder.size(); ++i)
        for (const auto& t : folder.texts(i)) captions.push_back(t);
    model->tokenizer = text::Tokenizer::learn(captions, std::size_t(Model::Text::vocab_size - 4));
    Trainer trainer(*model, std::move(folder), test_files::quick_train_options());
    for (int i = 0; i < 20; ++i) trainer.vae_step();
    trainer.measure_latent_scale();
    for (int i = 0; i < 10; ++i) trainer.diffusion_step();
    return model;
}

}  // namespace

TEST_CASE("prompt following end to end: a Tiny model trained on a folder, ranked in pixels and latents") {
    test_files::TempDir dir;
    write_folder(dir.path.string());
    const data::ImageFolder folder = load(dir.path.string());
    auto model = trained(dir.path.string());

    app::PromptFollowingOptions opt;
    opt.names = 4;
    opt.per_name = 3;
    opt.top_k = 5;
    Model::SampleOptions sample;
    sample.sampler.steps = 4;
    sample.seed = 11;
    int calls = 0;
    const auto r = app::measure_prompt_following<2, 4>(*model, folder, opt, sample, [&](int done, int total) {
        CHECK(done == ++calls);
        CHECK(total == 4);
    });
    CHECK(calls == 4);
    CHECK(r.data_size == kEntries);
    CHECK(r.feature_dim == std::size_t(kSide * kSide));  // 8x8 is below 16x16: used whole
    REQUIRE(r.names.size() == 4);
    CHECK(r.images.size() == std::size_t(4 * 3 * kSide * kSide));
    for (float v : r.images) REQUIRE(std::isfinite(v));
    const std::vector<int> picks = app::spread_indices(kEntries, 4);  // 1, 4, 7, 10
    int hits1 = 0, hits5 = 0;
    for (std::size_t p = 0; p < 4; ++p) {
        const auto& n = r.names[p];
        CHECK(n.entry == picks[p]);
        CHECK(n.prompt == folder.texts(n.entry).front());
        CHECK(std::find(n.targets.begin(), n.targets.end(), n.entry) != n.targets.end());
        REQUIRE(n.ranks.size() == 3);
        REQUIRE(n.nearest.size() == 3);
        for (std::size_t j = 0; j < 3; ++j) {
            const int rank = n.ranks[j];
            CHECK(rank >= 0);
            CHECK(rank < kEntries);
            REQUIRE(n.nearest[j].size() == 5);
            // The rank agrees with the top-5 list: rank r < 5 puts a target at place r and none before it.
            const auto& top = n.nearest[j];
            const auto first = std::find_if(top.begin(), top.end(), [&](int e) {
                return std::find(n.targets.begin(), n.targets.end(), e) != n.targets.end();
            });
            CHECK(int(first - top.begin()) == std::min(rank, 5));
            hits1 += rank < 1;
            hits5 += rank < 5;
        }
    }
    CHECK(r.hits(1) == hits1);
    CHECK(r.hits(5) == hits5);
    CHECK(r.rate(5) == doctest::Approx(hits5 / 12.0));
    CHECK(r.chance(1) == doctest::Approx(1.0 / kEntries));
    CHECK(r.chance(5) == doctest::Approx(5.0 / kEntries));
    CHECK(r.shared_names == 0);  // picks 1, 4, 7, 10 have captions of their own
    CHECK(r.vae_psnr > 0);
    CHECK(std::isfinite(r.vae_psnr));
    const std::string table = app::markdown_report(r);
    CHECK(table.find("| **top-1: the named entry is the nearest** |") != std::string::npos);
    CHECK(table.find("chance, top-5 (5/12) | 0.4167 |") != std::string::npos);
    MESSAGE(table);

    // The same seed gives the same measurement; the latent space ranks the model's own latents.
    opt.space = app::FeatureSpace::latent;
    opt.names = 12;  // every entry: 0 and 9 share "square 0", so each counts a hit on either
    opt.per_name = 1;
    const auto lat = app::measure_prompt_following<2, 4>(*model, folder, opt, sample, [](int, int) {});
    CHECK(lat.feature_dim == Model::latent_elements);
    CHECK(lat.shared_names == 2);
    CHECK(lat.names[0].targets == std::vector<int>{0, 9});
    CHECK(lat.vae_psnr == doctest::Approx(r.vae_psnr));
    opt.space = app::FeatureSpace::pixels;
    opt.names = 4;
    opt.per_name = 3;
    const auto again = app::measure_prompt_following<2, 4>(*model, folder, opt, sample, [](int, int) {});
    for (std::size_t p = 0; p < 4; ++p) CHECK(again.names[p].ranks == r.names[p].ranks);
    CHECK(again.images == r.images);

    // Bad counts and a data set of the wrong size throw before any generation.
    const auto measure = [&](const data::ImageFolder& f) {
        return app::measure_prompt_following<2, 4>(*model, f, opt, sample, [](int, int) { FAIL("generated"); });
    };
    opt.names = kEntries + 1;
    CHECK_THROWS_AS(measure(folder), std::invalid_argument);
    opt.names = 4;
    opt.top_k = kEntries + 1;
    CHECK_THROWS_AS(measure(folder), std::invalid_argument);
    data::ImageFolderOptions big;
    big.resolution = 16;
    big.channels = 1;
    const data::ImageFolder wrong(dir.path.string(), big);
    opt.top_k = 5;
    CHECK_THROWS_AS(measure(wrong), std::invalid_argument);
}
