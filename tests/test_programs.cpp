// The logic of the command-line programs (txt2img, reconstruct, evaluate), tested without running
// them: from examples/common/ (program code) the flag checks, output names and model-file lookup;
// from include/diffuse/app/ (library API) batching a run-time count into compile-time chunks, the
// 32 <-> 28 border, PSNR, grid layout, the class prompts and scoring with the shipped classifier.
#include <doctest/doctest.h>

#include <omp.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "diffuse/app/class_prompts.hpp"
#include "diffuse/app/classify.hpp"
#include "diffuse/app/evaluation.hpp"
#include "diffuse/app/generation.hpp"
#include "diffuse/app/images.hpp"
#include "diffuse/app/reconstruction.hpp"
#include "diffuse/data/fashion_batches.hpp"
#include "diffuse/io/idx.hpp"
#include "diffuse/io/png.hpp"
#include "diffuse/models/latent_diffusion.hpp"
#include "diffuse/text/tokenizer.hpp"
#include "diffuse/train/classifier_training.hpp"

#include "../examples/common/cli.hpp"
#include "../examples/common/generation_flags.hpp"
#include "../examples/common/model_files.hpp"
#include "../examples/common/output_paths.hpp"
#include "one_thread.hpp"

using namespace diffuse;
using namespace diffuse::app;
using namespace cli;

namespace {
GenerationFlags good_flags() {
    GenerationFlags f;
    f.prompt = "a photo of a dress";
    f.out_dir = "out";
    return f;
}
std::string source_root() { return std::filesystem::path(DIFFUSE_TEST_DATA_DIR).parent_path().parent_path().string(); }
}  // namespace

TEST_CASE("txt2img flags: good ones pass, each bad one is named") {
    CHECK(validate(good_flags()) == "");
    auto bad = [](auto change) {
        GenerationFlags f = good_flags();
        change(f);
        return validate(f);
    };
    CHECK(bad([](auto& f) { f.n = 0; }).find("--n") != std::string::npos);
    CHECK(bad([](auto& f) { f.steps = 0; }).find("--steps") != std::string::npos);
    CHECK(bad([](auto& f) { f.sampler = "lms"; }).find("'lms' is not one of") != std::string::npos);
    CHECK(bad([](auto& f) { f.guidance = -0.5; }).find("--guidance") != std::string::npos);
    CHECK(bad([](auto& f) { f.guidance = std::nan(""); }).find("--guidance") != std::string::npos);
    CHECK(bad([](auto& f) { f.seed = -1; }).find("--seed") != std::string::npos);
    CHECK(bad([](auto& f) { f.threads = -2; }).find("--threads") != std::string::npos);
    CHECK(bad([](auto& f) { f.prompt.clear(); }).find("--prompt") != std::string::npos);
    CHECK(bad([](auto& f) { f.grid = "g.png"; }).find("not both") != std::string::npos);
    CHECK(bad([](auto& f) { f.out_dir.clear(); }).find("--out-dir") != std::string::npos);
    CHECK(bad([](auto& f) { f.guidance = 0; }) == "");  // 0 = unconditional: allowed
    CHECK(bad([](auto& f) { f.guidance = std::nan(""); }).find("finite") != std::string::npos);
    CHECK(bad([](auto& f) { f.prompts_file = "p.txt"; }).find("not both") != std::string::npos);
    CHECK(bad([](auto& f) {
              f.prompt.clear();
              f.prompts_file = "p.txt";
          }) == "");
    // evaluate has no prompt or output directory.
    GenerationFlags e;
    CHECK(validate(e, false) == "");
    e.steps = -3;
    CHECK(validate(e, false).find("--steps") != std::string::npos);
}

TEST_CASE("txt2img --prompts: lines of the file, blank lines and comments skipped; a bad file is named") {
    const auto dir = std::filesystem::temp_directory_path() / ("diffuse_prompts_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const std::string path = (dir / "p.txt").string();
    std::ofstream(path) << "# prompts\nred apple\r\n\n   \nan emoji of a cat\n";
    CHECK(read_prompts(path) == std::vector<std::string>{"red apple", "an emoji of a cat"});
    std::ofstream(path) << "# nothing\n\n";
    CHECK_THROWS_WITH_AS(read_prompts(path), doctest::Contains("no prompt"), std::runtime_error);
    CHECK_THROWS_WITH_AS(read_prompts((dir / "missing.txt").string()), doctest::Contains("missing.txt"),
                         std::runtime_error);
    std::filesystem::remove_all(dir);
}

TEST_CASE("sampler names") {
    CHECK(parse_sampler("ddpm") == diffusion::Method::ddpm);
    CHECK(parse_sampler("ddim") == diffusion::Method::ddim);
    CHECK(parse_sampler("euler") == diffusion::Method::euler);
    CHECK(parse_sampler("euler_a") == diffusion::Method::euler_ancestral);
    CHECK(parse_sampler("heun") == diffusion::Method::heun);
    CHECK(parse_sampler("dpmpp_2m") == diffusion::Method::dpmpp_2m);
    CHECK_FALSE(parse_sampler("DDIM"));
    CHECK_FALSE(parse_sampler(""));

    // The default: DPM-Solver++(2M) on Karras sigmas, 20 steps; sampler_options carries every flag over.
    GenerationFlags f;
    CHECK((f.sampler == "dpmpp_2m" && f.sigmas == "karras" && f.steps == 20));
    f.prompt = "a bag";
    f.grid = "g.png";
    f.sampler = "heun";
    f.sigmas = "timesteps";
    f.steps = 12;
    f.guidance = 2;
    CHECK(validate(f).empty());
    diffusion::SamplerOptions o = sampler_options(f);
    CHECK((o.method == diffusion::Method::heun && !o.karras_sigmas && o.steps == 12 && o.guidance == 2));
    f.sigmas = "karras";
    CHECK(sampler_options(f).karras_sigmas);
    f.sigmas = "Karras";
    CHECK(validate(f).find("--sigmas 'Karras'") != std::string::npos);
}

TEST_CASE("sample file names") {
    CHECK(sample_path("out", 0) == "out/0000.png");
    CHECK(sample_path("out/", 7) == "out/0007.png");
    CHECK(sample_path("a/b", 1234) == "a/b/1234.png");
    CHECK(sample_path("out", 12345) == "out/12345.png");
    CHECK(sample_path("", 3) == "0003.png");
}

TEST_CASE("reconstruction names: the input's file name in the output directory, no collisions") {
    CHECK(reconstruction_paths("rec", {"a/shoe.png", "b/bag.PNG", "c/d/x"}) ==
          std::vector<std::string>{"rec/shoe.png", "rec/bag.png", "rec/x.png"});
    CHECK_THROWS_WITH(reconstruction_paths("rec", {"a/shoe.png", "b/shoe.png"}), doctest::Contains("collide"));
    CHECK_THROWS_WITH(reconstruction_paths("imgs", {"imgs/shoe.png"}), doctest::Contains("overwrite"));
    CHECK_THROWS_WITH(reconstruction_paths("./imgs/", {"imgs/../imgs/shoe.png"}), doctest::Contains("overwrite"));
}

TEST_CASE("chunks cover n images exactly once, remainder last") {
    for (int n : {1, 15, 16, 17, 33, 100}) {
        const auto chunks = plan_chunks(n, 16);
        int next = 0;
        for (std::size_t i = 0; i < chunks.size(); ++i) {
            CHECK(chunks[i].index == int(i));
            CHECK(chunks[i].begin == next);
            CHECK(chunks[i].count >= 1);
            CHECK(chunks[i].count <= 16);
            if (i + 1 < chunks.size()) CHECK(chunks[i].count == 16);
            next += chunks[i].count;
        }
        CHECK(next == n);
        CHECK(int(chunks.size()) == (n + 15) / 16);
    }
    CHECK(plan_chunks(0, 16).empty());
    CHECK_THROWS(plan_chunks(5, 0));
    // Chunk 0 keeps the user's seed; the others get distinct seeds.
    CHECK(chunk_seed(42, 0) == 42);
    std::set<std::uint64_t> seeds;
    for (int c = 0; c < 100; ++c) seeds.insert(chunk_seed(42, c));
    CHECK(seeds.size() == 100);
    CHECK(chunk_seed(42, 1) != chunk_seed(43, 1));
}

namespace {
/// Stands in for LatentDiffusion: records each generate() call, writes 1000·call + first_item + item.
struct FakeModel {
    static constexpr int image_size = 2, image_channels = 1;
    struct Options {
        std::uint64_t seed = 0;
        int steps = 0;
        struct {
            std::uint64_t first_item = 0;
        } sampler;
    };
    template <int N>
    struct SampleWorkspace {
        int uses = 0;
    };
    std::vector<std::uint64_t> seeds;
    std::vector<int> batches;
    std::vector<std::string> negatives;
    template <class Prompts, Shaped Y, int N>
    int generate(const Prompts& prompts, std::string_view negative, const Options& o, Y&& images,
                 SampleWorkspace<N>& ws) {
        static_assert(shape_of<Y>::first == N);
        CHECK(prompts.size() == std::size_t(N));
        for (const auto& p : prompts) CHECK(p == "a bag");
        CHECK(o.steps == 7);
        ++ws.uses;
        for (int i = 0; i < N; ++i)
            for (int k = 0; k < 4; ++k)
                images.data()[i * 4 + k] = float(1000 * seeds.size() + o.sampler.first_item + std::uint64_t(i));
        seeds.push_back(o.seed);
        batches.push_back(N);
        negatives.emplace_back(negative);
        return seeds.size() == 2 ? 1 : 0;
    }
};
}  // namespace

TEST_CASE("generate_in_chunks: full batches, then the remainder image by image; per-chunk seeds; exactly n") {
    FakeModel m;
    FakeModel::Options o{.seed = 9, .steps = 7, .sampler = {}};
    std::vector<float> out(10 * 4 + 1, -5.0f);  // one sentinel past the end
    std::vector<std::pair<int, int>> progress;
    const bool truncated = generate_in_chunks<4>(m, "a bag", "blurry", o, 10, out.data(),
                                                 [&](int c, int total) { progress.emplace_back(c, total); });
    CHECK(truncated);  // the second call reported a truncation
    // Two calls of 4, then the remainder of 2 as two calls of 1: items 0 and 1 of chunk 2.
    CHECK(m.batches == std::vector<int>{4, 4, 1, 1});
    CHECK(m.seeds == std::vector<std::uint64_t>{9, chunk_seed(9, 1), chunk_seed(9, 2), chunk_seed(9, 2)});
    CHECK(m.negatives == std::vector<std::string>{"blurry", "blurry", "blurry", "blurry"});
    for (int j = 0; j < 8; ++j)
        for (int k = 0; k < 4; ++k) CHECK(out[std::size_t(j * 4 + k)] == float(1000 * (j / 4) + j % 4));
    for (int k = 0; k < 4; ++k) {
        CHECK(out[std::size_t(8 * 4 + k)] == 2000.0f);  // call 2, item 0 of chunk 2
        CHECK(out[std::size_t(9 * 4 + k)] == 3001.0f);  // call 3, item 1 of chunk 2
    }
    CHECK(out.back() == -5.0f);
    CHECK(progress == std::vector<std::pair<int, int>>{{0, 3}, {1, 3}, {2, 3}});
    FakeModel one;  // --n 1 with a batch of 16: one image generated, not 16
    std::vector<float> room(16 * 4, -5.0f);
    CHECK_FALSE(generate_in_chunks<16>(one, "a bag", "", o, 1, room.data(), [](int, int) {}));
    CHECK(one.seeds == std::vector<std::uint64_t>{9});  // a single chunk keeps the user's seed
    CHECK(one.batches == std::vector<int>{1});
    CHECK(room[0] == 0.0f);
    for (std::size_t k = 4; k < room.size(); ++k) CHECK(room[k] == -5.0f);
}

TEST_CASE("crop 32 -> 28 and pad 28 -> 32 are inverse on the centre") {
    std::vector<float> big(32 * 32), small(28 * 28), back(32 * 32);
    for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) big[std::size_t(y * 32 + x)] = float(y * 100 + x);
    crop_border(big.data(), 32, 32, 1, kBorder, small.data());
    CHECK(small[0] == 202.0f);                       // (2, 2)
    CHECK(small[27] == 229.0f);                      // (2, 29)
    CHECK(small[27 * 28 + 27] == 2929.0f);           // (29, 29)
    CHECK(small[5 * 28 + 3] == float(7 * 100 + 5));  // (7, 5)
    pad_border(small.data(), 28, 28, 1, kBorder, back.data());
    for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) {
            const bool inside = y >= 2 && y < 30 && x >= 2 && x < 30;
            CHECK(back[std::size_t(y * 32 + x)] == (inside ? big[std::size_t(y * 32 + x)] : -1.0f));
        }
    // Channels stay interleaved.
    std::vector<int> rgb(4 * 4 * 3), mid(2 * 2 * 3);
    for (std::size_t i = 0; i < rgb.size(); ++i) rgb[i] = int(i);
    crop_border(rgb.data(), 4, 4, 3, 1, mid.data());
    CHECK(mid == std::vector<int>{15, 16, 17, 18, 19, 20, 27, 28, 29, 30, 31, 32});
    CHECK_THROWS(crop_border(rgb.data(), 4, 4, 3, 2, mid.data()));
}

TEST_CASE("padding a Fashion-MNIST image matches the training data's padding") {
    std::vector<std::uint8_t> bytes(28 * 28);
    for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = std::uint8_t((i * 37) % 256);
    Tensor<float, 32, 32, 1> ours, theirs;
    std::vector<float> unit(28 * 28);
    for (std::size_t i = 0; i < unit.size(); ++i) unit[i] = io::from_byte(bytes[i]);
    pad_border(unit.data(), 28, 28, 1, model_input_border(28, 28, 1), ours.data());
    data::pad_and_scale<float>(bytes.data(), theirs);
    for (std::size_t i = 0; i < ours.size; ++i)
        CHECK(ours.data()[i] == doctest::Approx(theirs.data()[i]).epsilon(1e-6));
    CHECK(model_input_border(32, 32, 1) == 0);
    CHECK_THROWS_WITH(model_input_border(30, 30, 1), doctest::Contains("28x28 or 32x32"));
    CHECK_THROWS_WITH(model_input_border(28, 28, 3), doctest::Contains("grayscale"));
}

TEST_CASE("PSNR in [-1, 1] equals the 8-bit figure, clips the test image, is infinite for equal images") {
    const std::vector<float> a = {-1, -0.5f, 0, 0.5f, 1};
    CHECK(std::isinf(psnr(a.data(), a.data(), a.size())));
    // A constant error of one 8-bit level (2/255): 20·log10(255) = 48.13 dB.
    std::vector<float> b(a);
    for (auto& v : b) v = v < 1 ? v + 2.0f / 255 : v - 2.0f / 255;
    CHECK(psnr(a.data(), b.data(), a.size()) == doctest::Approx(20 * std::log10(255.0)).epsilon(1e-5));
    // Error 0.5 everywhere: mse 0.25, 10·log10(4 / 0.25) = 12.04 dB.
    std::vector<double> c = {0.5, 0.5}, d = {0, 1};
    CHECK(psnr(c.data(), d.data(), 2) == doctest::Approx(10 * std::log10(16.0)));
    // Values beyond the range are clipped before comparing (an image cannot show them).
    std::vector<double> e = {1, -1}, f = {3, -7};
    CHECK(std::isinf(psnr(e.data(), f.data(), 2)));
    CHECK_THROWS(psnr(e.data(), f.data(), 0));
}

TEST_CASE("grid layout: square-ish, every image placed, no empty row") {
    CHECK(grid_layout(1).rows == 1);
    CHECK(grid_layout(1).cols == 1);
    CHECK(grid_layout(16).rows == 4);
    CHECK(grid_layout(16).cols == 4);
    CHECK(grid_layout(10).cols == 4);
    CHECK(grid_layout(10).rows == 3);
    CHECK(grid_layout(100).rows == 10);
    for (int n = 1; n <= 300; ++n) {
        const auto g = grid_layout(n);
        CHECK(g.rows * g.cols >= n);
        CHECK((g.rows - 1) * g.cols < n);  // the last row holds at least one image
        CHECK(g.cols >= g.rows);
        CHECK(g.cols - g.rows <= 1 + g.cols / 4);
    }
    CHECK_THROWS(grid_layout(0));
}

TEST_CASE("a grid of cropped samples writes as one 8-bit PNG of the expected size") {
    const auto dir = std::filesystem::temp_directory_path() / "diffuse_test_programs";
    std::filesystem::create_directories(dir);
    constexpr int n = 5;
    Tensor<float, n, 32, 32, 1> gen;
    for (std::size_t i = 0; i < gen.size; ++i) gen.data()[i] = float(i % 7) / 3.0f - 1.0f;
    Tensor<float, n, 28, 28, 1> cropped;
    crop_to_image_size(gen.data(), n, cropped.data());
    for (int i = 0; i < n; ++i) CHECK(cropped(i, 27, 0, 0) == gen(i, 29, 2, 0));
    const auto g = grid_layout(n);
    const std::string path = (dir / "grid.png").string();
    io::write_png_grid(path, cropped, g.rows, g.cols);
    const io::Image img = io::read_png(path);
    CHECK(img.channels == 1);
    CHECK(img.width == 3 * 28 + 2);
    CHECK(img.height == 2 * 28 + 1);
    // Cell (1, 1) is sample 4; its pixel (0, 0) is the generated (2, 2).
    CHECK(img(29, 29, 0) == doctest::Approx(io::from_byte(io::to_byte(gen.data()[4 * 1024 + 2 * 32 + 2]))));
    // One file per sample, 28x28.
    const std::string one = sample_path(dir.string(), 3);
    io::write_png(one, cropped.item(3));
    const io::Image s = io::read_png(one);
    CHECK(s.width == 28);
    CHECK(s.height == 28);
    CHECK(s.channels == 1);
    std::filesystem::remove_all(dir);
}

TEST_CASE("class prompts: one per class, in label order, every word in the tokenizer's vocabulary") {
    const auto prompts = class_prompts();
    CHECK(prompts[0] == "a photo of a t-shirt");
    CHECK(prompts[1] == "a photo of a trouser");
    CHECK(prompts[4] == "a photo of a coat");
    CHECK(prompts[9] == "a photo of an ankle boot");
    CHECK(std::set<std::string>(prompts.begin(), prompts.end()).size() == 10);
    for (int c = 0; c < kClassCount; ++c) {
        // It is one of the captions the model was trained on for this class, and only for it.
        for (int o = 0; o < kClassCount; ++o) {
            const auto all = data::all_captions(o);
            const bool found = std::find(all.begin(), all.end(), prompts[std::size_t(c)]) != all.end();
            CHECK(found == (o == c));
        }
    }
    CHECK_THROWS(class_prompt(10));
}

TEST_CASE("model files: source tree first, then ./models, and a clear error when missing") {
    const auto c = model_candidates("diffusion.safetensors", "/src/repo/examples/txt2img.cpp");
    REQUIRE(c.size() == 2);
    CHECK(c[0] == "/src/repo/models/diffusion.safetensors");
    CHECK(c[1] == "models/diffusion.safetensors");
    CHECK(model_candidates("x", "txt2img.cpp").size() == 1);  // a relative __FILE__ gives no source tree
    const std::string here = source_root() + "/examples/evaluate.cpp";
    CHECK(find_model("fashion_classifier.safetensors", here, "classifier", "") ==
          source_root() + "/models/fashion_classifier.safetensors");
    CHECK_THROWS_WITH(find_model("no_such_model.safetensors", here, "diffusion model", "pass --weights"),
                      doctest::Contains("has not been trained or shipped"));
}

TEST_CASE("cli: file arguments are collected when a program asks for them") {
    std::string out = "x";
    std::vector<std::string> files;
    cli::Parser p("prog", "test");
    p.option("--out-dir", out, "where").positional("IMAGE.png", files, "inputs");
    std::vector<std::string> args = {"prog", "a.png", "--out-dir", "d", "b.png"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    p.parse(int(argv.size()), argv.data());
    CHECK(out == "d");
    CHECK(files == std::vector<std::string>{"a.png", "b.png"});
}

TEST_CASE("the shipped classifier (F16 storage) scores test images through the app path") {
    const std::string path = source_root() + "/models/fashion_classifier.safetensors";
    const auto test = io::load_fashion_mnist(io::Split::test, DIFFUSE_FASHION_MNIST_DIR);
    LoadedClassifier clf(path);
    constexpr int count = 1000;
    // The generator's range: bytes to [-1, 1] as the PNG reader and the training data do.
    std::vector<float> images(std::size_t(count) * 784);
    for (std::size_t i = 0; i < images.size(); ++i) images[i] = io::from_byte(test.images.pixels[i]);
    const auto pred = classify<64>(clf.model, images.data(), count);  // 1000 = 15 x 64 + 40: a padded last batch
    int correct = 0;
    for (int i = 0; i < count; ++i) correct += pred[std::size_t(i)] == test.labels.labels[std::size_t(i)];
    const double acc = double(correct) / count;
    MESSAGE("shipped classifier on the first 1000 test images: " << acc);
    CHECK(acc >= 0.9);
    // The same answer as the training code's own evaluation (its input is bytes / 255).
    CHECK(acc == doctest::Approx(evaluate_classifier<100>(clf.model, test, count)).epsilon(0.003));
}

namespace {
/// Stands in for LatentDiffusion's codec: "reconstructs" an image as 0.5 · image + 0.1.
struct FakeCodec {
    static constexpr int image_size = 2, image_channels = 1;
    template <int N>
    struct CodecWorkspace {};
    mutable int calls = 0;
    template <class X, class Y, int N>
    void reconstruct(const X& x, Y&& y, CodecWorkspace<N>&) const {
        ++calls;
        for (std::size_t i = 0; i < std::size_t(N) * 4; ++i) y.data()[i] = 0.5f * x.data()[i] + 0.1f;
    }
};
}  // namespace

TEST_CASE("reconstruct_in_chunks and the PSNR of what comes back") {
    FakeCodec m;
    std::vector<float> in(7 * 4), out(7 * 4 + 1, -9.0f);
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = float(i) / 28.0f;
    reconstruct_in_chunks<3>(m, in.data(), 7, out.data());
    CHECK(m.calls == 3);
    for (std::size_t i = 0; i < in.size(); ++i) CHECK(out[i] == doctest::Approx(0.5f * in[i] + 0.1f));
    CHECK(out.back() == -9.0f);
    const auto scores = psnr_per_image(in.data(), out.data(), 7, 4);
    REQUIRE(scores.size() == 7);
    for (int i = 0; i < 7; ++i)
        CHECK(scores[std::size_t(i)] == doctest::Approx(psnr(in.data() + i * 4, out.data() + i * 4, 4)));
    CHECK(mean_psnr({10, 20}) == doctest::Approx(15));
    CHECK(mean_psnr({10, std::numeric_limits<double>::infinity()}, 50) == doctest::Approx(30));
}

TEST_CASE("conditional accuracy: per class, mean over classes, most common mistake; Markdown report") {
    ConditionalAccuracy acc;
    acc.add(0, {0, 0, 6, 6, 2});  // 2 of 5 right; mistaken mostly for 6 (Shirt)
    acc.add(9, {9, 9, 9, 9});     // all right
    acc.add(9, {7});              // 4 of 5
    CHECK(acc.samples(0) == 5);
    CHECK(acc.accuracy(0) == doctest::Approx(0.4));
    CHECK(acc.accuracy(9) == doctest::Approx(0.8));
    CHECK(acc.accuracy(3) == 0);
    CHECK(acc.mean_accuracy() == doctest::Approx(0.6));  // over the classes that have images
    CHECK(acc.most_confused_with(0) == 6);
    CHECK(acc.most_confused_with(9) == 7);
    CHECK(acc.most_confused_with(3) == -1);
    CHECK_THROWS(acc.add(10, {0}));
    CHECK_THROWS(acc.add(0, {-1}));
    const std::string md = markdown_report(acc, EvaluationSummary{24.5, 10000, 0.9313});
    CHECK(md.find("| T-shirt/top | a photo of a t-shirt | 5 | 0.400 | Shirt (2) |") != std::string::npos);
    CHECK(md.find("| Ankle boot | a photo of an ankle boot | 5 | 0.800 | Sneaker (1) |") != std::string::npos);
    CHECK(md.find("| Dress | a photo of a dress | 0 | 0.000 | - |") != std::string::npos);
    CHECK(md.find("| **mean** | | 10 | **0.600** | |") != std::string::npos);
    CHECK(md.find("| classifier test accuracy (the ceiling) | 0.9313 |") != std::string::npos);
    CHECK(md.find("| VAE reconstruction PSNR, 10000 test images at 32x32 | 24.50 dB |") != std::string::npos);
    // Every table row has the same number of columns as its header.
    std::size_t rows = 0;
    for (std::size_t b = 0, e; (e = md.find('\n', b)) != std::string::npos; b = e + 1) {
        const std::string line = md.substr(b, e - b);
        if (line.empty()) continue;
        ++rows;
        const auto bars = std::count(line.begin(), line.end(), '|');
        CHECK((bars == 6 || bars == 3));
    }
    CHECK(rows == 2 + 10 + 1 + 2 + 3);
}

TEST_CASE("chunked generation and reconstruction through the real pipeline (Tiny preset)") {
    using M = LatentDiffusion<float, presets::Tiny>;
    constexpr int S = M::image_size, C = M::image_channels;
    constexpr std::size_t image = std::size_t(S) * S * C;
    auto m = std::make_unique<M>(5);
    M::SampleOptions o;
    o.sampler.steps = 3;
    o.seed = 11;
    std::vector<float> out(6 * image);
    generate_in_chunks<4>(*m, "a photo of a bag", "", o, 6, out.data(), [](int, int) {});
    // Chunk 0 is exactly a direct call with the user's seed; chunk 1 (two calls of 1) the first two
    // images of one call of 4 with chunk_seed(seed, 1): an item's image does not depend on the batch.
    std::array<std::string, 4> prompts;
    prompts.fill("a photo of a bag");
    auto direct = make<Tensor<float, 4, S, S, C>>();
    m->generate(prompts, "", o, direct->view());
    for (std::size_t k = 0; k < 4 * image; ++k) REQUIRE(out[k] == direct->data()[k]);
    M::SampleOptions o1 = o;
    o1.seed = chunk_seed(11, 1);
    m->generate(prompts, "", o1, direct->view());
    for (std::size_t k = 0; k < 2 * image; ++k) REQUIRE(out[4 * image + k] == direct->data()[k]);
    double differ = 0;  // a later chunk does not repeat the first one's noise
    for (std::size_t k = 0; k < image; ++k) differ += std::abs(out[4 * image + k] - out[k]);
    CHECK(differ > 0);

    std::vector<float> rec(out.size());
    reconstruct_in_chunks<4>(*m, out.data(), 6, rec.data());
    auto x = make<Tensor<float, 4, S, S, C>>(), y = make<Tensor<float, 4, S, S, C>>();
    std::copy(out.begin(), out.begin() + std::ptrdiff_t(4 * image), x->data());
    m->reconstruct(x->view(), y->view());
    for (std::size_t k = 0; k < 4 * image; ++k) REQUIRE(rec[k] == y->data()[k]);
    for (float v : rec) CHECK(std::isfinite(v));
}
