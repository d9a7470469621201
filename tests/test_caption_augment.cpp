// data::CaptionAugmenter: distractors are drawn from the list only, keep the caption's own words in
// order, follow the options, are reproducible from the seed stream, and the word list leaves out
// every vocabulary word.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "diffuse/data/caption_augment.hpp"

#include "file_test_util.hpp"

using namespace diffuse;

namespace {

std::vector<std::string> split_words(const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(s);
    for (std::string w; in >> w;) out.push_back(w);
    return out;
}

}  // namespace

TEST_CASE("CaptionAugmenter: inserted words come from the list, the caption's own stay in order") {
    const std::vector<std::string> list{"zebra", "quilt", "marble"};
    const data::CaptionAugmenter aug(list, {.probability = 1, .max_words = 3, .punctuation = 0});
    const std::string original = "a photo of an ankle boot";
    std::set<int> counts;
    for (std::uint64_t i = 0; i < 200; ++i) {
        std::string c = original;
        Rng rng = stream_rng(7, 3, i);
        aug.apply(c, rng);
        std::vector<std::string> kept;
        int inserted = 0;
        for (const auto& w : split_words(c)) {
            if (std::find(list.begin(), list.end(), w) != list.end()) ++inserted;
            else kept.push_back(w);
        }
        CHECK(kept == split_words(original));
        CHECK(inserted >= 1);
        CHECK(inserted <= 3);
        CHECK(c.find("  ") == std::string::npos);
        CHECK(c.front() != ' ');
        CHECK(c.back() != ' ');
        counts.insert(inserted);
    }
    CHECK(counts.size() == 3);  // 1, 2 and 3 words all occur
}

TEST_CASE("CaptionAugmenter: probability, punctuation, empty captions and reproducibility") {
    const std::vector<std::string> list{"zebra"};
    const data::CaptionAugmenter never(list, {.probability = 0});
    const data::CaptionAugmenter always(list, {.probability = 1, .max_words = 1, .punctuation = 1});
    int changed_half = 0, punctuated = 0;
    const data::CaptionAugmenter half(list, {.probability = 0.5, .max_words = 1, .punctuation = 0});
    for (std::uint64_t i = 0; i < 400; ++i) {
        std::string a = "a bag", b = "a bag", c = "a bag", e;
        Rng r1 = stream_rng(1, i), r2 = stream_rng(1, i), r3 = stream_rng(2, i), r4 = stream_rng(3, i);
        never.apply(a, r1);
        CHECK(a == "a bag");
        half.apply(b, r2);
        changed_half += b != "a bag";
        always.apply(c, r3);
        punctuated += c.find_first_of(",.!?'") != std::string::npos;
        always.apply(e, r4);
        CHECK(e.empty());  // the unconditional caption stays empty
    }
    CHECK(changed_half > 150);
    CHECK(changed_half < 250);
    CHECK(punctuated == 400);
    // The same stream gives the same caption.
    std::string x = "a photo of a coat", y = x;
    Rng rx = stream_rng(9, 1), ry = stream_rng(9, 1);
    always.apply(x, rx);
    always.apply(y, ry);
    CHECK(x == y);
    CHECK_FALSE(data::CaptionAugmenter().enabled());
    CHECK_THROWS_AS(data::CaptionAugmenter({}, {}), std::invalid_argument);
    CHECK_THROWS_AS(data::CaptionAugmenter(list, {.probability = 1.5}), std::invalid_argument);
    CHECK_THROWS_AS(data::CaptionAugmenter(list, {.max_words = 0}), std::invalid_argument);
}

TEST_CASE("CaptionAugmenter::load_word_list keeps short lower-case words the tokenizer does not know") {
    test_files::TempDir dir;
    const std::string path = dir.file("words");
    test_files::write_file(path, "bag\nzebra\nQuilt\nab\nmarble's\nverylongwordindeed\ncoat\nmarble\n");
    const text::Tokenizer vocab = text::Tokenizer::learn(std::vector<std::string>{"a bag", "a coat"}, 10);
    CHECK(data::CaptionAugmenter::load_word_list(path, vocab) == std::vector<std::string>{"zebra", "marble"});
    CHECK_THROWS_WITH_AS(data::CaptionAugmenter::load_word_list(dir.file("missing"), vocab),
                         doctest::Contains("missing"), std::runtime_error);
    test_files::write_file(path, "bag\ncoat\n");
    CHECK_THROWS_WITH_AS(data::CaptionAugmenter::load_word_list(path, vocab), doctest::Contains("no usable word"),
                         std::runtime_error);
}
