// A tokenizer that maps ANY byte string to token ids and never fails: a lower-cased word
// vocabulary (the words of Fashion-MNIST captions) with one fallback token per byte value, so
// unknown words, punctuation, invalid UTF-8 and NUL bytes all have ids. Like the seed's
// StartEndPacker, a sequence is  start, tokens..., end, pad...  in a fixed context of Ctx ids,
// with a padding mask; a prompt too long for the context is cut (the end token is kept) and the
// result says so.
//
// Splitting: ASCII letters are lower-cased; ASCII whitespace separates; a word is a run of
// [a-z0-9-]. A word in the vocabulary is one token. Otherwise, if it holds hyphens, its parts
// are looked up on their own ("dark-gray" -> dark, '-', gray); anything still unknown is spelled
// as byte tokens. Every other byte (punctuation, control bytes, bytes >= 0x80) is its own byte
// token. Whitespace leaves no token, so "a  bag" and "a bag" encode alike.
//
// Ids: 0 pad, 1 start, 2 end, 3..258 the bytes 0..255, then the words in list order. The list
// is append-only: ids are baked into trained embedding tables.
#ifndef DIFFUSE_TEXT_TOKENIZER_HPP
#define DIFFUSE_TEXT_TOKENIZER_HPP

#include <iterator>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "diffuse/core/tensor.hpp"

namespace diffuse::text {

/// One encoded prompt in a context of Ctx tokens.
template <int Ctx>
struct Encoded {
    Tensor<std::int32_t, Ctx> ids;  // [Ctx] start, tokens..., end, pad...
    Tensor<bool, Ctx> pad_mask;     // [Ctx] true where ids holds padding
    int length = 0;                 // non-pad ids, start and end included
    bool truncated = false;         // the prompt had more tokens than fit
};

/// What encode_into reports besides the ids it wrote.
struct EncodeInfo {
    int length = 0;
    bool truncated = false;
};

class Tokenizer {
public:
    static constexpr std::int32_t pad_id = 0, start_id = 1, end_id = 2;
    static constexpr std::int32_t byte_base = 3;
    static constexpr std::int32_t word_base = byte_base + 256;

    /// The caption vocabulary. Append only: a word's id is word_base + its index.
    static constexpr std::string_view words[] = {
        // framing words of captions
        "a", "an", "the", "of", "and", "in", "on", "with", "photo", "picture", "image", "drawing", "sketch",
        "black", "white", "gray", "grey", "dark", "light", "small", "low", "resolution", "grayscale",
        "fashion", "clothing", "item", "product", "pair", "piece", "one", "this", "is", "for", "background",
        // the ten classes and their usual synonyms and plurals
        "t-shirt", "tshirt", "tee", "top", "trouser", "trousers", "pants", "jeans", "pullover", "sweater",
        "jumper", "dress", "coat", "jacket", "sandal", "sandals", "shirt", "sneaker", "sneakers", "shoe",
        "shoes", "bag", "handbag", "purse", "ankle", "boot", "boots", "t-shirts", "tops", "pullovers",
        "dresses", "coats", "shirts", "bags", "sweaters", "jackets", "some", "two", "style"};

    static constexpr int vocab_size = word_base + int(std::size(words));

    static constexpr std::int32_t byte_id(unsigned char b) { return byte_base + std::int32_t(b); }
    /// The id of a (lower-case) vocabulary word, or -1.
    static constexpr std::int32_t word_id(std::string_view w) {
        for (std::size_t i = 0; i < std::size(words); ++i)
            if (words[i] == w) return word_base + std::int32_t(i);
        return -1;
    }

    /// Calls emit(id) for each token of text (no start/end); stops early when emit returns false.
    template <class Emit>
    static void tokenize(std::string_view text, Emit&& emit) {
        std::size_t i = 0;
        const std::size_t n = text.size();
        char buf[32];  // lower-cased word; longer runs cannot be vocabulary words
        while (i < n) {
            const unsigned char c = static_cast<unsigned char>(text[i]);
            if (is_space(c)) { ++i; continue; }
            if (!is_word_char(c)) {
                if (!emit(byte_id(c))) return;
                ++i;
                continue;
            }
            std::size_t j = i;
            while (j < n && is_word_char(static_cast<unsigned char>(text[j]))) ++j;
            if (!emit_word(text.substr(i, j - i), buf, emit)) return;
            i = j;
        }
    }

    /// All tokens of text, without start/end and without a length limit.
    static std::vector<std::int32_t> tokens(std::string_view text) {
        std::vector<std::int32_t> out;
        tokenize(text, [&](std::int32_t id) { out.push_back(id); return true; });
        return out;
    }

    /// Writes start, tokens, end, then padding into ids [Ctx] and the mask [Ctx] (true = pad).
    template <int Ctx>
    static EncodeInfo encode_into(std::string_view text, View<std::int32_t, Ctx> ids, View<bool, Ctx> pad_mask) {
        static_assert(Ctx >= 2, "Tokenizer: the context must hold at least the start and end tokens");
        EncodeInfo info;
        int k = 0;
        ids[k++] = start_id;
        tokenize(text, [&](std::int32_t id) {
            if (k == Ctx - 1) { info.truncated = true; return false; }
            ids[k++] = id;
            return true;
        });
        ids[k++] = end_id;
        info.length = k;
        for (int p = 0; p < Ctx; ++p) pad_mask[p] = p >= k;
        for (; k < Ctx; ++k) ids[k] = pad_id;
        return info;
    }

    template <int Ctx>
    Encoded<Ctx> encode(std::string_view text) const {
        Encoded<Ctx> e;
        const EncodeInfo info = encode_into<Ctx>(text, e.ids.view(), e.pad_mask.view());
        e.length = info.length;
        e.truncated = info.truncated;
        return e;
    }

    /// Encodes a batch of N prompts into ids [N, Ctx] and pad_mask [N, Ctx]; returns how many
    /// were truncated. prompts is any sized range of things convertible to std::string_view.
    template <int N, int Ctx, class Prompts>
    static int encode_batch(const Prompts& prompts, View<std::int32_t, N, Ctx> ids, View<bool, N, Ctx> pad_mask) {
        if (std::size(prompts) != std::size_t(N))
            throw std::invalid_argument("Tokenizer::encode_batch: " + std::to_string(std::size(prompts)) +
                                        " prompts for a batch of " + std::to_string(N));
        int truncated = 0, i = 0;
        for (const auto& p : prompts) {
            truncated += encode_into<Ctx>(std::string_view(p), ids.item(i), pad_mask.item(i)).truncated;
            ++i;
        }
        return truncated;
    }

    /// A readable form of one id: "<pad>", "<start>", "<end>", a word, a printable byte, or
    /// "<0xNN>"; "<unk:ID>" for an id outside the vocabulary.
    static std::string token_text(std::int32_t id) {
        if (id == pad_id) return "<pad>";
        if (id == start_id) return "<start>";
        if (id == end_id) return "<end>";
        if (id >= byte_base && id < word_base) {
            const int b = id - byte_base;
            if (b > 0x20 && b < 0x7F) return std::string(1, char(b));
            static constexpr char hex[] = "0123456789ABCDEF";
            return std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">";
        }
        if (id >= word_base && id < vocab_size) return std::string(words[std::size_t(id - word_base)]);
        return "<unk:" + std::to_string(id) + ">";
    }

    /// Text for ids, for logs and tests: stops at the end token, skips start and pad, puts a
    /// space between words (whitespace itself was not kept, so this is not an exact inverse).
    template <class Ids>
    static std::string decode(const Ids& ids) {
        std::string out;
        enum { other, word, alnum_byte } prev = other;
        for (std::int32_t id : ids) {
            if (id == end_id) break;
            if (id == pad_id || id == start_id) continue;
            if (id >= byte_base && id < word_base) {
                const auto b = static_cast<unsigned char>(id - byte_base);
                const bool alnum = is_word_char(b) && b != '-';
                if (alnum && prev == word) out += ' ';
                out += char(b);
                prev = alnum ? alnum_byte : other;
            } else {
                if (prev != other) out += ' ';
                out += token_text(id);
                prev = id >= word_base && id < vocab_size ? word : other;
            }
        }
        return out;
    }

    /// Words are unique, non-empty, lower case and made of word characters (checked below).
    static constexpr bool vocabulary_is_valid() {
        for (std::size_t i = 0; i < std::size(words); ++i) {
            if (words[i].empty() || words[i].size() > 32) return false;
            for (char c : words[i])
                if (!is_word_char((unsigned char)c) || lower((unsigned char)c) != c) return false;
            for (std::size_t j = 0; j < i; ++j)
                if (words[i] == words[j]) return false;
        }
        return true;
    }

private:
    static constexpr bool is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
    static constexpr bool is_word_char(unsigned char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    }
    static constexpr char lower(unsigned char c) { return char((c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c); }

    /// One run of word characters: a vocabulary word, else its hyphen-separated parts, else bytes.
    template <class Emit>
    static bool emit_word(std::string_view run, char* buf, Emit& emit) {
        if (run.size() <= 32) {
            for (std::size_t k = 0; k < run.size(); ++k) buf[k] = lower(static_cast<unsigned char>(run[k]));
            const std::int32_t id = word_id(std::string_view(buf, run.size()));
            if (id >= 0) return emit(id);
        }
        if (run.find('-') != std::string_view::npos) {
            std::size_t start = 0;
            while (true) {
                const std::size_t h = run.find('-', start);
                const std::string_view part = run.substr(start, h == std::string_view::npos ? run.size() - start : h - start);
                if (!part.empty() && !emit_word(part, buf, emit)) return false;
                if (h == std::string_view::npos) return true;
                if (!emit(byte_id('-'))) return false;
                start = h + 1;
            }
        }
        for (char ch : run)
            if (!emit(byte_id(static_cast<unsigned char>(lower(static_cast<unsigned char>(ch)))))) return false;
        return true;
    }
};

static_assert(Tokenizer::vocabulary_is_valid(), "Tokenizer: vocabulary words must be unique, lower case, [a-z0-9-]");

}  // namespace diffuse::text

#endif
