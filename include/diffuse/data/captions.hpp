// Text captions for Fashion-MNIST's ten classes, for training a text-conditioned model: each image
// gets a caption drawn from templates ("a photo of {a}", "{n} on a black background", ...) filled
// with one of its class's names ("sneaker", "pair of sneakers"), with the right article
// ("an ankle boot", "a bag"). Every word is in text::Tokenizer's vocabulary (no byte-fallback
// tokens; the longest caption is 13 tokens with start and end), which the tests check.
//
// Draws are seeded and stateless: caption_for(label, seed, epoch, index) depends on nothing else,
// so a caption does not change with the batch size or the order images are visited in.
#ifndef DIFFUSE_DATA_CAPTIONS_HPP
#define DIFFUSE_DATA_CAPTIONS_HPP

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "diffuse/core/rng.hpp"

namespace diffuse::data {

/// The names a class is called by in captions; the first is the data set's own class name
/// (Fashion-MNIST's "T-shirt/top" becomes "t-shirt": '/' is not a vocabulary word).
struct ClassNames {
    std::array<std::string_view, 3> names;
    int count;
};

inline constexpr std::array<ClassNames, 10> kFashionClassNames = {{
    {{"t-shirt", "top", "tee"}, 3},
    {{"trouser", "pair of trousers", "pair of pants"}, 3},
    {{"pullover", "sweater", "jumper"}, 3},
    {{"dress"}, 1},
    {{"coat", "jacket"}, 2},
    {{"sandal", "pair of sandals"}, 2},
    {{"shirt"}, 1},
    {{"sneaker", "pair of sneakers"}, 2},
    {{"bag", "handbag", "purse"}, 3},
    {{"ankle boot", "boot", "pair of boots"}, 3},
}};

/// Caption templates: "{a}" is the name with its article ("an ankle boot"), "{n}" the bare name.
inline constexpr std::array<std::string_view, 15> kCaptionTemplates = {
    "{n}",
    "{a}",
    "a photo of {a}",
    "a picture of {a}",
    "an image of {a}",
    "a black and white photo of {a}",
    "a black and white picture of {a}",
    "a grayscale image of {a}",
    "a low resolution photo of {a}",
    "a small gray picture of {a}",
    "a fashion photo of {a}",
    "a product photo of {a}",
    "{a} on a black background",
    "a photo of {a} on a black background",
    "this is {a}",
};

/// "an" before a vowel letter, else "a" (right for every name here: none starts with a silent
/// consonant or a "yoo" vowel).
constexpr std::string_view article_for(std::string_view phrase) {
    const char c = phrase.empty() ? 'x' : phrase.front();
    return (c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u') ? "an" : "a";
}

/// A template filled with a name, as pieces of text in order: emit(std::string_view) for each.
/// "{a}" becomes article + " " + name, "{n}" the name. One walk serves the string and its length.
template <class Emit>
constexpr void expand_caption(std::string_view tmpl, std::string_view name, Emit emit) {
    for (std::size_t i = 0; i < tmpl.size(); ++i) {
        if (tmpl.substr(i, 3) == "{a}") {
            emit(article_for(name));
            emit(" ");
            emit(name);
            i += 2;
        } else if (tmpl.substr(i, 3) == "{n}") {
            emit(name);
            i += 2;
        } else {
            emit(tmpl.substr(i, 1));
        }
    }
}

/// A template filled with a name, written into out (replacing its text). Appending into a string
/// whose capacity already holds kMaxCaptionLength allocates nothing: training steps fill the same
/// strings every batch.
inline void format_caption_into(std::string& out, std::string_view tmpl, std::string_view name) {
    out.clear();
    expand_caption(tmpl, name, [&](std::string_view piece) { out.append(piece); });
}

/// A template filled with a name.
inline std::string format_caption(std::string_view tmpl, std::string_view name) {
    std::string out;
    format_caption_into(out, tmpl, name);
    return out;
}

/// The length format_caption gives, at compile time.
constexpr std::size_t formatted_length(std::string_view tmpl, std::string_view name) {
    std::size_t n = 0;
    expand_caption(tmpl, name, [&](std::string_view piece) { n += piece.size(); });
    return n;
}

/// The longest caption any label can get (what to reserve for a caption string).
inline constexpr std::size_t kMaxCaptionLength = [] {
    std::size_t m = 0;
    for (const ClassNames& c : kFashionClassNames)
        for (std::string_view t : kCaptionTemplates)
            for (int k = 0; k < c.count; ++k) m = std::max(m, formatted_length(t, c.names[std::size_t(k)]));
    return m;
}();

inline const ClassNames& class_names(int label) {
    if (label < 0 || label >= int(kFashionClassNames.size()))
        throw std::out_of_range("captions: label " + std::to_string(label) + " is outside 0..9");
    return kFashionClassNames[std::size_t(label)];
}

/// A caption for label drawn from rng, into out: a uniform template and a uniform name of the class.
inline void draw_caption_into(std::string& out, int label, Rng& rng) {
    const ClassNames& c = class_names(label);
    const auto& tmpl = kCaptionTemplates[rng.below(kCaptionTemplates.size())];
    format_caption_into(out, tmpl, c.names[rng.below(std::uint64_t(c.count))]);
}
inline std::string draw_caption(int label, Rng& rng) {
    std::string out;
    draw_caption_into(out, label, rng);
    return out;
}

/// The caption of image `index` in `epoch` under `seed`: its own random stream, no shared state.
inline void caption_into(std::string& out, int label, std::uint64_t seed, std::uint64_t epoch, std::uint64_t index) {
    Rng rng = stream_rng(seed, 1, epoch, index);
    draw_caption_into(out, label, rng);
}
inline std::string caption_for(int label, std::uint64_t seed, std::uint64_t epoch, std::uint64_t index) {
    std::string out;
    caption_into(out, label, seed, epoch, index);
    return out;
}

/// Every caption a label can get (templates × names), for tests and listings.
inline std::vector<std::string> all_captions(int label) {
    const ClassNames& c = class_names(label);
    std::vector<std::string> out;
    for (const auto& t : kCaptionTemplates)
        for (int k = 0; k < c.count; ++k) out.push_back(format_caption(t, c.names[std::size_t(k)]));
    return out;
}

/// Every caption of every class, label by label: the text a Fashion-MNIST tokenizer is learned from.
inline std::vector<std::string> all_fashion_captions() {
    std::vector<std::string> out;
    for (int label = 0; label < int(kFashionClassNames.size()); ++label)
        for (auto& c : all_captions(label)) out.push_back(std::move(c));
    return out;
}

}  // namespace diffuse::data

#endif
