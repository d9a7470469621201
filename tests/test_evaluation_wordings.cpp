// evaluate's library parts beyond the per-class table: the wordings file (parse_wordings,
// read_wordings, class_prompt with a wording), the classifier's features from the same pass as its
// predictions (classify_with_features) and their Fréchet distance, the balanced choice of test
// images the distance compares with, and the wording table.
#include <doctest/doctest.h>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "diffuse/app/class_prompts.hpp"
#include "diffuse/app/classify.hpp"
#include "diffuse/app/evaluation.hpp"
#include "diffuse/app/frechet_distance.hpp"
#include "diffuse/app/reference_images.hpp"
#include "diffuse/app/wordings.hpp"
#include "diffuse/core/rng.hpp"
#include "diffuse/data/captions.hpp"
#include "diffuse/io/idx.hpp"

#include "one_thread.hpp"

using namespace diffuse;
using namespace diffuse::app;

namespace {
std::string source_root() { return std::filesystem::path(DIFFUSE_TEST_DATA_DIR).parent_path().parent_path().string(); }

std::string error_of(std::string_view text) {
    try {
        parse_wordings(text, "w.txt");
    } catch (const std::invalid_argument& e) { return e.what(); }
    return "";
}
}  // namespace

TEST_CASE("wordings: one per line, comments and blank lines skipped, blanks trimmed, in order") {
    const auto w = parse_wordings(
        "# a comment\n\n  my favourite {n}  \r\n\t# indented comment\n"
        "{a}, seen from the front\n   \nlast line {a} without newline");
    REQUIRE(w.size() == 3);
    CHECK(w[0] == "my favourite {n}");
    CHECK(w[1] == "{a}, seen from the front");
    CHECK(w[2] == "last line {a} without newline");
    CHECK(class_prompt(9, w[0]) == "my favourite ankle boot");
    CHECK(class_prompt(9, w[1]) == "an ankle boot, seen from the front");
    CHECK(class_prompt(9) == "a photo of an ankle boot");  // the training wording stays the default
    CHECK(class_prompt(9, kTrainingWording) == class_prompt(9));
}

TEST_CASE("wordings: a line without {a} or {n}, and a file without wordings, are errors naming where") {
    CHECK(error_of("{a}\na photo of a cat\n").find("w.txt:2:") == 0);
    CHECK(error_of("{a}\na photo of a cat\n").find("'a photo of a cat'") != std::string::npos);
    CHECK(error_of("{A} is not a placeholder") != "");
    CHECK(error_of("").find("no wordings") != std::string::npos);
    CHECK(error_of("# only\n\n  \n# comments\n").find("no wordings") != std::string::npos);
    CHECK(error_of("{n}") == "");
    CHECK_THROWS_AS(read_wordings(source_root() + "/no/such/wordings.txt"), std::runtime_error);
    const auto path = std::filesystem::temp_directory_path() / "diffuse_test_wordings.txt";
    { std::ofstream(path) << "# held out\n{a} on a shelf\n"; }
    CHECK(read_wordings(path.string()) == std::vector<std::string>{"{a} on a shelf"});
    std::filesystem::remove(path);
}

TEST_CASE("the shipped held-out wordings: all parse, fill every class, and none is a training template") {
    const auto w = read_wordings(source_root() + "/examples/data/heldout_wordings.txt");
    CHECK(w.size() >= 10);
    CHECK(std::set<std::string>(w.begin(), w.end()).size() == w.size());
    for (const auto& t : w) {
        CHECK(std::find(data::kCaptionTemplates.begin(), data::kCaptionTemplates.end(), t) ==
              data::kCaptionTemplates.end());
        for (int c = 0; c < kClassCount; ++c) {
            const std::string p = class_prompt(c, t);
            CHECK(p.find('{') == std::string::npos);
            CHECK(p.find(data::class_names(c).names[0]) != std::string::npos);
        }
    }
}

TEST_CASE("classify_with_features: the predictions of classify, one feature row per image, FID of a set to itself 0") {
    LoadedClassifier clf(source_root() + "/models/fashion_classifier.safetensors");
    const auto test = io::load_fashion_mnist(io::Split::test, DIFFUSE_FASHION_MNIST_DIR);
    constexpr int count = 150;  // 2 x 64 + 22: a padded last batch
    constexpr int dims = FashionClassifier<float>::features;
    const auto a = gather_images(test, balanced_reference_indices(test.labels.labels, count, kClassCount));
    std::vector<int> later(static_cast<std::size_t>(count));
    std::iota(later.begin(), later.end(), 5000);
    const auto b = gather_images(test, later);

    FeatureStats fa(dims), fa_again(dims), fb(dims);
    const auto pred = classify_with_features<64>(clf.model, a.data(), count, &fa);
    CHECK(pred == classify<64>(clf.model, a.data(), count));
    CHECK(fa.count() == count);  // the padding repeats of the last batch are not added
    // Another batch size sees the same images: the same statistics up to rounding.
    CHECK(classify_with_features<16>(clf.model, a.data(), count, &fa_again) == pred);
    CHECK((fa.mean() - fa_again.mean()).norm() <= 1e-5 * fa.mean().norm());
    classify_with_features<64>(clf.model, b.data(), count, &fb);

    const double self = frechet_distance(fa, fa_again), other = frechet_distance(fa, fb);
    MESSAGE("FID of 150 test images: to themselves " << self << ", to 150 others " << other);
    const double scale = fa.covariance().trace();
    CHECK(std::abs(self) <= 1e-4 * scale);
    CHECK(other > 100 * std::abs(self));

    // Noise is far from real images.
    std::vector<float> noise(a.size());
    Rng rng(3);
    for (auto& v : noise) v = float(rng.uniform(-1, 1));
    FeatureStats fn(dims);
    classify_with_features<64>(clf.model, noise.data(), count, &fn);
    CHECK(frechet_distance(fa, fn) > 2 * other);

    FeatureStats wrong(dims - 1);
    CHECK_THROWS_AS(classify_with_features<64>(clf.model, a.data(), count, &wrong), std::invalid_argument);
}

TEST_CASE("reference images: a seeded permutation dealt out by class, every prefix balanced") {
    const auto test = io::load_fashion_mnist(io::Split::test, DIFFUSE_FASHION_MNIST_DIR);
    const auto& labels = test.labels.labels;
    const auto idx = balanced_reference_indices(labels, 200, kClassCount);
    REQUIRE(idx.size() == 200);
    CHECK(std::set<int>(idx.begin(), idx.end()).size() == 200);
    std::vector<int> per_class(kClassCount);
    for (int i : idx) ++per_class[labels[std::size_t(i)]];
    CHECK(per_class == std::vector<int>(kClassCount, 20));
    for (int i = 0; i < kClassCount; ++i) CHECK(labels[std::size_t(idx[std::size_t(i)])] == i);  // label order
    const auto shorter = balanced_reference_indices(labels, 57, kClassCount);
    CHECK(std::equal(shorter.begin(), shorter.end(), idx.begin()));  // a prefix of the longer choice
    CHECK(balanced_reference_indices(labels, 200, kClassCount) == idx);
    CHECK(balanced_reference_indices(labels, 200, kClassCount, 1) != idx);
    CHECK(balanced_reference_indices(labels, 10000, kClassCount).size() == 10000);
    CHECK_THROWS_AS(balanced_reference_indices(labels, 10001, kClassCount), std::invalid_argument);
    // A class that runs out is skipped.
    const std::vector<std::uint8_t> uneven{0, 0, 1, 0, 0};
    const auto u = balanced_reference_indices(uneven, 5, 2);
    CHECK(uneven[std::size_t(u[0])] == 0);
    CHECK(u[1] == 2);
    CHECK(std::set<int>(u.begin(), u.end()).size() == 5);
    CHECK_THROWS_AS(balanced_reference_indices(uneven, 2, 1), std::invalid_argument);  // label 1 of 1 class
    const auto img = gather_images(test, {idx[0]});
    CHECK(img.size() == 784);
    CHECK(img[400] == io::from_byte(test.images.image(idx[0])[400]));
}

TEST_CASE("wording report: one row per wording, the held-out mean and the worst; FID in the reference table") {
    auto scored = [](const std::string& wording, int right_of_ten, double fid) {
        WordingScore s;
        s.wording = wording;
        for (int c = 0; c < kClassCount; ++c) {
            std::vector<int> pred(10, c);
            for (int i = right_of_ten + (c == 6 ? -2 : 0); i < 10; ++i) pred[std::size_t(i)] = (c + 1) % kClassCount;
            s.accuracy.add(c, pred);
        }
        s.fid = fid;
        s.images = 100;
        return s;
    };
    const std::vector<WordingScore> rows{scored("a photo of {a}", 10, 1.5), scored("my {n} | pipe", 8, 4.0),
                                         scored("{a}, seen from the front", 6, 9.0)};
    CHECK(rows[1].accuracy.worst_class() == std::pair<int, double>{6, 0.6});
    const std::string md = markdown_wording_report(rows);
    MESSAGE(md);
    CHECK(md.find("| a photo of {a} (training) | 100 | 0.980 | 0.800 (Shirt) | +0.000 | 1.50 |") != std::string::npos);
    CHECK(md.find("| my {n} \\| pipe | 100 | 0.780 | 0.600 (Shirt) | -0.200 | 4.00 |") != std::string::npos);
    CHECK(md.find("| **mean over 2 held-out wordings** | 200 | 0.680 | 0.500 (mean) | -0.300 | 6.50 |") !=
          std::string::npos);
    CHECK(md.find("| **worst held-out wording:** {a}, seen from the front | 100 | 0.580 | 0.400 (Shirt) | -0.400 | "
                  "9.00 |") != std::string::npos);
    CHECK_THROWS_AS(markdown_wording_report({}), std::invalid_argument);
    const std::string long_wording = std::string(600, 'x') + " {a}";
    CHECK(markdown_wording_report({scored(long_wording, 10, 1.0)}).find(long_wording + " (training) | 100 |") !=
          std::string::npos);  // not cut short

    EvaluationSummary s{24.5, 10000, 0.9313};
    CHECK(markdown_report(rows[0].accuracy, s).find("FID") == std::string::npos);  // not computed: no row
    CHECK(markdown_report(rows[0].accuracy, EvaluationSummary{0, 0, 0.93})
              .find("| VAE reconstruction PSNR | not measured |") != std::string::npos);
    s.fid = 12.345;
    s.fid_images = 100;
    CHECK(markdown_report(rows[0].accuracy, s)
              .find("| FID (classifier features), 100 generated vs 100 test images | "
                    "12.35 |") != std::string::npos);
}
