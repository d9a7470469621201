// Fashion-MNIST captions (tokenizer coverage, articles, seeded draws), 28→32 padding and [-1, 1]
// scaling, and the shuffled caption batches.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "diffuse/data/captions.hpp"
#include "diffuse/data/fashion_batches.hpp"
#include "diffuse/text/tokenizer.hpp"

#include "test_skip.hpp"

using namespace diffuse;
using namespace diffuse::data;
using text::Tokenizer;

namespace {

/// The vocabulary learned from every caption of every class (what train learns from Fashion-MNIST).
const Tokenizer& fashion_tokenizer() {
    static const Tokenizer t = [] { return Tokenizer::learn(all_fashion_captions(), 1000); }();
    return t;
}

bool starts_with_vowel(const std::string& w) {
    return !w.empty() && std::string("aeiou").find(w[0]) != std::string::npos;
}

/// A synthetic data set of `count` images whose first two pixels encode the image index.
io::FashionMnist synthetic(int count) {
    io::FashionMnist d;
    d.images.count = count;
    d.images.rows = d.images.cols = 28;
    d.images.pixels.assign(std::size_t(count) * 784, 0);
    d.labels.count = count;
    d.labels.labels.resize(std::size_t(count));
    for (int i = 0; i < count; ++i) {
        std::uint8_t* p = d.images.pixels.data() + std::size_t(i) * 784;
        p[0] = std::uint8_t(i & 255);
        p[1] = std::uint8_t(i >> 8);
        for (int k = 2; k < 784; ++k) p[k] = std::uint8_t((k * 7 + i) % 256);
        d.labels.labels[std::size_t(i)] = std::uint8_t((i * 3) % 10);
    }
    return d;
}

/// The image index encoded in a padded, scaled image.
template <class T>
int decode_index(View<T, 32, 32, 1> img) {
    const auto byte = [](T v) { return int(std::lround((double(v) + 1.0) * 127.5)); };
    return byte(img(2, 2, 0)) | byte(img(2, 3, 0)) << 8;
}

}  // namespace

TEST_CASE("every caption tokenizes into learned words only, untruncated in a context of 16") {
    const Tokenizer& tok = fashion_tokenizer();
    MESSAGE(tok.words().size() << " words learned from the captions");
    CHECK(tok.vocab_size() <= 332);  // fits the Fashion presets' token table (clip::fashion_vocab)
    int longest = 0, total = 0;
    for (int label = 0; label < 10; ++label) {
        for (const std::string& c : all_captions(label)) {
            CAPTURE(c);
            ++total;
            for (std::int32_t id : tok.tokens(c)) CHECK(id >= tok.word_base());  // no <unk>
            const auto e = tok.encode<16>(c);
            CHECK_FALSE(e.truncated);
            longest = std::max(longest, e.length);
            CHECK(tok.decode(e.ids) == c);  // words separated by single spaces round-trip
        }
    }
    MESSAGE(total << " distinct captions; the longest is " << longest << " tokens with start and end");
    CHECK(longest <= 16);
    const auto every = all_fashion_captions();  // the tokenizer's text: the same captions, label by label
    CHECK(int(every.size()) == total);
    CHECK(every.front() == all_captions(0).front());
    CHECK(every.back() == all_captions(9).back());
}

TEST_CASE("captions: right article, the class's names, the examples of the brief") {
    for (int label = 0; label < 10; ++label) {
        const ClassNames& names = class_names(label);
        for (const std::string& c : all_captions(label)) {
            CAPTURE(c);
            std::vector<std::string> words;
            for (std::int32_t id : fashion_tokenizer().tokens(c)) words.push_back(fashion_tokenizer().token_text(id));
            for (std::size_t i = 0; i + 1 < words.size(); ++i) {
                if (words[i] == "a") CHECK_FALSE(starts_with_vowel(words[i + 1]));
                if (words[i] == "an") CHECK(starts_with_vowel(words[i + 1]));
            }
            bool has_name = false;
            for (int k = 0; k < names.count; ++k) has_name |= c.find(names.names[std::size_t(k)]) != std::string::npos;
            CHECK(has_name);
        }
    }
    const auto has = [](int label, const std::string& c) {
        const auto all = all_captions(label);
        return std::find(all.begin(), all.end(), c) != all.end();
    };
    CHECK(has(7, "a photo of a sneaker"));
    CHECK(has(7, "sneaker"));
    CHECK(has(7, "a black and white picture of a sneaker"));
    CHECK(has(9, "a picture of an ankle boot"));
    CHECK(has(1, "a photo of a pair of trousers"));
    CHECK(has(0, "an image of a t-shirt"));
    CHECK_FALSE(has(9, "a picture of a ankle boot"));
    CHECK(article_for("ankle boot") == "an");
    CHECK(article_for("bag") == "a");
    CHECK_THROWS_AS(all_captions(10), std::out_of_range);
}

TEST_CASE("caption draws are seeded, stateless and cover the templates") {
    CHECK(caption_for(3, 42, 0, 17) == caption_for(3, 42, 0, 17));
    std::set<std::string> seen;
    int differ_by_seed = 0;
    for (int i = 0; i < 2000; ++i) {
        seen.insert(caption_for(8, 42, 0, std::uint64_t(i)));
        differ_by_seed += caption_for(8, 42, 0, std::uint64_t(i)) != caption_for(8, 43, 0, std::uint64_t(i));
    }
    CHECK(seen.size() == all_captions(8).size());  // 2000 draws reach all 45
    CHECK(differ_by_seed > 1500);
}

TEST_CASE_TEMPLATE("padding 28→32 and scaling to [-1, 1] are exact", T, float, double) {
    std::vector<std::uint8_t> img(784);
    for (int k = 0; k < 784; ++k) img[std::size_t(k)] = std::uint8_t((k * 31 + 5) % 256);
    img[0] = 0;
    img[1] = 255;
    Tensor<T, 32, 32, 1> out;
    out.fill(T(42));
    pad_and_scale<T>(img.data(), out.view());
    for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) {
            const bool inside = y >= 2 && y < 30 && x >= 2 && x < 30;
            const T want = inside ? T(double(img[std::size_t((y - 2) * 28 + (x - 2))]) / 127.5 - 1.0) : T(-1);
            CHECK(out(y, x, 0) == want);
        }
    CHECK(out(2, 2, 0) == T(-1));
    CHECK(out(2, 3, 0) == T(1));
    CHECK(byte_to_unit_table<T>()[51] == T(51 / 127.5 - 1));
}

TEST_CASE("batches: each epoch a seeded permutation, deterministic, resumable; captions match their images") {
    constexpr int N = 16, count = 100;  // 6 batches per epoch, 4 images dropped
    CaptionedBatches<float, N> a(synthetic(count), 7), b(synthetic(count), 7), other(synthetic(count), 8);
    CHECK(a.batches_per_epoch() == 6);
    auto images = make<Tensor<float, N, 32, 32, 1>>();
    std::array<std::string, N> caps;
    std::int32_t labels[N];
    std::vector<std::vector<int>> epochs(2);
    std::vector<std::string> caps_a, caps_b;
    for (int e = 0; e < 2; ++e)
        for (int k = 0; k < 6; ++k) {
            CHECK(a.epoch() == e);
            a.next(images->view(), caps, labels);
            for (int i = 0; i < N; ++i) {
                const int idx = decode_index<float>(images->item(i));
                epochs[std::size_t(e)].push_back(idx);
                CHECK(labels[i] == (idx * 3) % 10);
                CHECK(caps[std::size_t(i)] == caption_for(labels[i], 7, std::uint64_t(e), std::uint64_t(idx)));
                caps_a.push_back(caps[std::size_t(i)]);
            }
            b.next(images->view(), caps);
            caps_b.insert(caps_b.end(), caps.begin(), caps.end());
        }
    CHECK(caps_a == caps_b);  // same seed, same batches
    for (auto& ep : epochs) {
        std::set<int> unique(ep.begin(), ep.end());
        CHECK(unique.size() == std::size_t(6 * N));  // no image twice in an epoch
    }
    CHECK(epochs[0] != epochs[1]);  // a new order each epoch
    std::vector<int> first(epochs[0].begin(), epochs[0].end());
    std::vector<int> sorted = first;
    std::sort(sorted.begin(), sorted.end());
    CHECK(first != sorted);  // actually shuffled

    // another seed, another order
    other.next(images->view(), caps);
    std::vector<int> o;
    for (int i = 0; i < N; ++i) o.push_back(decode_index<float>(images->item(i)));
    CHECK(o != std::vector<int>(epochs[0].begin(), epochs[0].begin() + N));

    // resume at epoch 1, batch 3: the same images as the uninterrupted run
    CaptionedBatches<float, N> r(synthetic(count), 7);
    r.seek(1, 3);
    r.next(images->view(), caps);
    for (int i = 0; i < N; ++i) CHECK(decode_index<float>(images->item(i)) == epochs[1][std::size_t(3 * N + i)]);
}

TEST_CASE("batches: caption dropout for classifier-free guidance at the requested rate") {
    constexpr int N = 50;
    CaptionedBatches<float, N> d(synthetic(1000), 3, {0.25});
    auto images = make<Tensor<float, N, 32, 32, 1>>();
    std::array<std::string, N> caps;
    int empty = 0;
    for (int k = 0; k < 20; ++k) {
        d.next(images->view(), caps);
        for (const auto& c : caps) empty += c.empty();
    }
    MESSAGE("empty captions: " << empty << " of 1000");
    CHECK(empty > 200);
    CHECK(empty < 300);
}

TEST_CASE("real Fashion-MNIST test split: batches hold the labelled images") {
    const std::string dir = DIFFUSE_FASHION_MNIST_DIR;
    if (!std::filesystem::exists(dir + "/t10k-images-idx3-ubyte.gz"))
        DIFFUSE_SKIP("Fashion-MNIST not found in " << dir);
    io::FashionMnist raw = io::load_fashion_mnist(io::Split::test, dir);
    const io::FashionMnist copy = raw;
    CaptionedBatches<float, 32> d(std::move(raw), 1);
    auto images = make<Tensor<float, 32, 32, 32, 1>>();
    std::array<std::string, 32> caps;
    std::int32_t labels[32];
    d.next(images->view(), caps, labels);
    for (int i = 0; i < 32; ++i) {
        const int idx = d.order(i);
        CHECK(labels[i] == copy.labels.labels[std::size_t(idx)]);
        CHECK(images->item(i)(16, 16, 0) == byte_to_unit_table<float>()[copy.images.image(idx)[14 * 28 + 14]]);
        CHECK(fashion_tokenizer().encode<16>(caps[std::size_t(i)]).truncated == false);
    }
    MESSAGE("first caption: \"" << caps[0] << "\" for label " << labels[0]);
}
